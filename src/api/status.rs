//! Liveness, readiness and self-metrics: `/-/healthy` (always 200 while the
//! process serves HTTP), `/-/ready` (503 while the store starts, after it is
//! poisoned by a failed commit, or while it closes) and `/metrics` (store
//! metrics, HTTP and ingest counters, process figures from `/proc/self`),
//! and Prometheus's `/api/v1/status/*` pages: build and runtime
//! information, flags, configuration, and the store's cardinality (`tsdb`).

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::api::params::{MAX_TIME, MIN_TIME, Params};
use crate::api::series::success_response;
use crate::api::{ApiState, run_blocking};
use crate::model::{Labels, METRIC_NAME, MatchOp, Matcher};
use crate::telemetry::Exposition;
use crate::tsdb::TsdbStats;

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
    if let Some(rule_manager) = state.rule_manager() {
        rule_manager.render_metrics(&mut exposition);
    }
    if let Some(notifier) = state.notifier() {
        notifier.render_metrics(&mut exposition);
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

/// `/api/v1/status/buildinfo`, with Prometheus's keys; `goVersion` names
/// the Rust toolchain generation guardia requires instead.
pub async fn buildinfo() -> Response {
    success_response(
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "revision": option_env!("GUARDIA_REVISION").unwrap_or(""),
            "branch": option_env!("GUARDIA_BRANCH").unwrap_or(""),
            "buildUser": "",
            "buildDate": "",
            "goVersion": concat!("rust ", env!("CARGO_PKG_RUST_VERSION")),
        }),
        Vec::new(),
    )
}

/// `/api/v1/status/runtimeinfo` with Prometheus's keys; the Go runtime
/// figures become their nearest equivalents (threads, available cores).
pub async fn runtimeinfo(State(state): State<ApiState>) -> Response {
    let start_time = crate::model::format_rfc3339_millis(state.start_time_ms());
    let working_directory = std::env::current_dir()
        .map(|path| path.display().to_string())
        .unwrap_or_default();
    let threads = read_status_kib("Threads:").unwrap_or(0.0) as u64;
    let cores = std::thread::available_parallelism()
        .map(|cores| cores.get())
        .unwrap_or(1);
    let flags = &state.query_settings().flags;
    let retention = flags
        .get("storage.retention.time")
        .cloned()
        .unwrap_or_default();
    let retention = match flags.get("storage.retention.size") {
        Some(size) if !size.is_empty() => format!("{retention} or {size}"),
        _ => retention,
    };
    success_response(
        json!({
            "startTime": start_time,
            "CWD": working_directory,
            "reloadConfigSuccess": true,
            "lastConfigTime": start_time,
            "corruptionCount": 0,
            "goroutineCount": threads,
            "GOMAXPROCS": cores,
            "GOMEMLIMIT": i64::MAX,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": retention,
        }),
        Vec::new(),
    )
}

/// `/api/v1/status/flags`: every flag of the running server as a string.
pub async fn flags(State(state): State<ApiState>) -> Response {
    let flags: Map<String, Value> = state
        .query_settings()
        .flags
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(value.clone())))
        .collect();
    success_response(Value::Object(flags), Vec::new())
}

/// `/api/v1/status/config`: the loaded configuration (or the defaults) as YAML.
pub async fn config(State(state): State<ApiState>) -> Response {
    success_response(
        json!({ "yaml": state.query_settings().config_yaml }),
        Vec::new(),
    )
}

/// Entries per list of `/api/v1/status/tsdb` when `limit` is not given.
const TSDB_STATUS_DEFAULT_LIMIT: usize = 10;

/// `/api/v1/status/tsdb`: cardinality of the store in Prometheus's shape —
/// which metric names, label names and label pairs cost the most series.
pub async fn tsdb_status(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = match params.first("limit") {
        None | Some("") => TSDB_STATUS_DEFAULT_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| *limit >= 1)
            .ok_or_else(|| ApiError::BadData("limit must be a positive number".to_string()))?,
    };
    let store = state.store().clone();
    let data = run_blocking(move || {
        let every_series = Matcher::new(MatchOp::Regex, METRIC_NAME, ".+")
            .map_err(|error| ApiError::Internal(error.to_string()))?;
        let series = store
            .querier()?
            .series(MIN_TIME, MAX_TIME, &[every_series])?;
        Ok(tsdb_status_json(&series, store.stats(), limit))
    })
    .await?;
    Ok(success_response(data, Vec::new()))
}

/// The status document of `series`, lists cut to `limit` entries.
pub fn tsdb_status_json(series: &[Labels], stats: Option<TsdbStats>, limit: usize) -> Value {
    let mut series_by_metric: HashMap<&str, u64> = HashMap::new();
    let mut series_by_pair: HashMap<(&str, &str), u64> = HashMap::new();
    let mut values_by_name: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for labels in series {
        if let Some(name) = labels.metric_name() {
            *series_by_metric.entry(name).or_insert(0) += 1;
        }
        for label in labels.iter() {
            *series_by_pair
                .entry((label.name.as_str(), label.value.as_str()))
                .or_insert(0) += 1;
            values_by_name
                .entry(label.name.as_str())
                .or_default()
                .insert(label.value.as_str());
        }
    }
    let top = |entries: Vec<(String, u64)>| -> Value {
        let mut entries = entries;
        entries.sort_by(|left, right| right.1.cmp(&left.1).then_with(|| left.0.cmp(&right.0)));
        entries.truncate(limit);
        Value::from(
            entries
                .into_iter()
                .map(|(name, value)| json!({"name": name, "value": value}))
                .collect::<Vec<_>>(),
        )
    };
    let stats = stats.unwrap_or_default();
    json!({
        "headStats": {
            "numSeries": series.len(),
            "numLabelPairs": series_by_pair.len(),
            "chunkCount": stats.head_chunks + stats.stored_chunks,
            "minTime": stats.oldest_t.unwrap_or(0),
            "maxTime": stats.newest_t.unwrap_or(0),
        },
        "seriesCountByMetricName": top(
            series_by_metric
                .iter()
                .map(|(name, count)| (name.to_string(), *count))
                .collect()
        ),
        "labelValueCountByLabelName": top(
            values_by_name
                .iter()
                .map(|(name, values)| (name.to_string(), values.len() as u64))
                .collect()
        ),
        "memoryInBytesByLabelName": top(
            values_by_name
                .iter()
                .map(|(name, values)| {
                    (
                        name.to_string(),
                        values.iter().map(|value| value.len() as u64).sum(),
                    )
                })
                .collect()
        ),
        "seriesCountByLabelValuePair": top(
            series_by_pair
                .iter()
                .map(|((name, value), count)| (format!("{name}={value}"), *count))
                .collect()
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_rfc3339() {
        assert_eq!(
            crate::model::format_rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(
            crate::model::format_rfc3339_millis(0),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            crate::model::format_rfc3339_millis(-1),
            "1969-12-31T23:59:59.999Z"
        );
    }

    #[test]
    fn tsdb_status_counts_and_cuts() {
        let series = vec![
            Labels::from_pairs([("__name__", "up"), ("job", "a")]),
            Labels::from_pairs([("__name__", "up"), ("job", "b")]),
            Labels::from_pairs([("__name__", "x"), ("job", "a")]),
        ];
        let status = tsdb_status_json(&series, None, 1);
        assert_eq!(status["headStats"]["numSeries"], 3);
        assert_eq!(status["headStats"]["numLabelPairs"], 4);
        assert_eq!(
            status["seriesCountByMetricName"],
            json!([{"name": "up", "value": 2}])
        );
        assert_eq!(
            status["labelValueCountByLabelName"],
            json!([{"name": "__name__", "value": 2}])
        );
        assert_eq!(
            status["seriesCountByLabelValuePair"],
            json!([{"name": "__name__=up", "value": 2}])
        );
        assert_eq!(
            status["memoryInBytesByLabelName"],
            json!([{"name": "__name__", "value": 3}])
        );
    }
}
