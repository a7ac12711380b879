//! Liveness, readiness and self-metrics: `/-/healthy` (always 200 while the
//! process serves HTTP), `/-/ready` (503 while the store starts, after it is
//! poisoned by a failed commit, or while it closes) and `/metrics` (store
//! metrics, HTTP and ingest counters, process figures from `/proc/self`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::api::ApiState;
use crate::telemetry::Exposition;

pub async fn healthy() -> Response {
    (StatusCode::OK, "guardia is Healthy.\n").into_response()
}

pub async fn ready(State(state): State<ApiState>) -> Response {
    if state.store().is_ready() {
        (StatusCode::OK, "guardia is Ready.\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "guardia is not ready: storage is starting, closing, or refusing writes after a failed commit.\n",
        )
            .into_response()
    }
}

pub async fn metrics(State(state): State<ApiState>) -> Response {
    let mut exposition = Exposition::new();
    state.store().render_metrics(&mut exposition);
    state.metrics().render(&mut exposition);
    if let Some(hooks) = state.scrape_hooks() {
        hooks.manager.render_metrics(&mut exposition);
    }
    render_process_metrics(&mut exposition);
    (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        exposition.finish(),
    )
        .into_response()
}

/// Ticks per second of the CPU times in `/proc/<pid>/stat`: the kernel
/// reports them in USER_HZ, which is 100 on every Linux architecture guardia
/// targets.
const USER_HZ: f64 = 100.0;

/// Standard `process_*` metrics, when `/proc` is there to read.
pub fn render_process_metrics(exposition: &mut Exposition) {
    let Some(stat) = std::fs::read_to_string("/proc/self/stat").ok() else {
        return;
    };
    // Fields after the parenthesised command name, which may contain spaces.
    let Some(after_command) = stat.rfind(')').map(|index| &stat[index + 1..]) else {
        return;
    };
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    // `fields[0]` is field 3 (state) of proc(5).
    let field = |number: usize| -> Option<f64> { fields.get(number - 3)?.parse().ok() };
    if let (Some(user_ticks), Some(system_ticks)) = (field(14), field(15)) {
        exposition.counter_f64(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            (user_ticks + system_ticks) / USER_HZ,
        );
    }
    if let Some(virtual_bytes) = field(23) {
        exposition.gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            virtual_bytes,
        );
    }
    if let Some(resident_kib) = read_status_kib("VmRSS:") {
        exposition.gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            resident_kib * 1024.0,
        );
    }
    if let (Some(start_ticks), Some(boot_seconds)) = (field(22), boot_time_seconds()) {
        exposition.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            boot_seconds + start_ticks / USER_HZ,
        );
    }
    if let Ok(entries) = std::fs::read_dir("/proc/self/fd") {
        exposition.gauge(
            "process_open_fds",
            "Number of open file descriptors.",
            entries.count() as f64,
        );
    }
}

fn read_status_kib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

fn boot_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}
