//! End-to-end ingest benchmark client (see README, "Benchmarks").
//!
//! Builds the workload the storage issue specifies from a real node_exporter
//! scrape used as a template: `--targets` copies of it (one `instance` label
//! each), `--steps` scrapes at 15 s spacing, counters rising at rates derived
//! from their values and gauges wandering, about 30 % of series changing per
//! step. Every body (about `--samples-per-body` samples, Prometheus text with
//! ms timestamps) is generated before the clock starts, so the client's own
//! CPU does not compete with the server during the measurement. Bodies are
//! pushed over `--connections` keep-alive connections to any
//! `/api/v1/import/prometheus` endpoint (guardia or VictoriaMetrics).
//!
//! With `--server-pid`, the server's CPU seconds (utime + stime from
//! /proc/PID/stat) are read before and after, and its peak RSS (VmHWM) and
//! RSS after the run (VmRSS), also per active series.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Base URL of the server, e.g. http://127.0.0.1:9099
    #[arg(long)]
    url: String,
    /// A node_exporter scrape in Prometheus text format.
    #[arg(long, default_value = "tests/data/node_exporter.prom")]
    template: String,
    #[arg(long, default_value_t = 100)]
    targets: usize,
    /// Number of 15 s scrapes per target (240 = one hour).
    #[arg(long, default_value_t = 240)]
    steps: usize,
    #[arg(long, default_value_t = 10_000)]
    samples_per_body: usize,
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Timestamp of the first scrape (ms).
    #[arg(long, default_value_t = 1_767_225_600_000)]
    start_ms: i64,
    /// PID of the server, to report its CPU time and peak RSS.
    #[arg(long)]
    server_pid: Option<u32>,
}

struct TemplateSeries {
    /// `name{labels` without the closing brace, ready for `,instance="…"}`.
    prefix: String,
    value: f64,
    is_counter: bool,
    decimals: u32,
}

fn load_template(path: &str) -> anyhow::Result<Vec<TemplateSeries>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut counters: HashSet<String> = HashSet::new();
    let mut series = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some(kind)) = (parts.next(), parts.next())
                && matches!(kind, "counter" | "summary" | "histogram")
            {
                counters.insert(name.to_string());
            }
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((metric, value)) = line.rsplit_once(' ') else {
            bail!("template line without a value: {line}");
        };
        let value: f64 = match value {
            "NaN" => continue,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().with_context(|| format!("value in {line}"))?,
        };
        if !value.is_finite() {
            continue;
        }
        let name = metric.split('{').next().unwrap_or(metric);
        let family = name
            .strip_suffix("_bucket")
            .or_else(|| name.strip_suffix("_sum"))
            .or_else(|| name.strip_suffix("_count"))
            .unwrap_or(name);
        let is_counter = counters.contains(name) || counters.contains(family);
        let prefix = match metric.strip_suffix('}') {
            Some(open) if open.ends_with('{') => open.to_string(),
            Some(open) => format!("{open},"),
            None => format!("{metric}{{"),
        };
        let decimals = if value.fract() == 0.0 { 0 } else { 2 };
        series.push(TemplateSeries {
            prefix,
            value,
            is_counter,
            decimals,
        });
    }
    Ok(series)
}

/// splitmix64: a deterministic stream so every run pushes identical data.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

fn round_to(value: f64, decimals: u32) -> f64 {
    let scale = 10f64.powi(decimals as i32);
    (value * scale).round() / scale
}

fn build_bodies(args: &Args, template: &[TemplateSeries]) -> (Vec<Vec<u8>>, usize) {
    let mut values: Vec<Vec<f64>> = (0..args.targets)
        .map(|_| template.iter().map(|s| s.value).collect())
        .collect();
    let mut bodies = Vec::new();
    let mut body = String::new();
    let mut in_body = 0usize;
    let mut total = 0usize;
    for step in 0..args.steps {
        for (target, target_values) in values.iter_mut().enumerate() {
            // Real scrapes land a few ms off the nominal interval.
            let jitter = (mix((target * 1_000_003 + step) as u64) % 7) as i64;
            let timestamp = args.start_ms + step as i64 * 15_000 + jitter;
            for (index, series) in template.iter().enumerate() {
                let key = ((target as u64) << 40) ^ ((index as u64) << 16) ^ step as u64;
                if step > 0 && unit(key) < 0.3 {
                    let current = target_values[index];
                    let next = if series.is_counter {
                        // A per-series rate so counters differ in speed,
                        // from slow error counters to busy byte counters.
                        let rate = (current.abs() * 1e-5).max(0.01) * (0.5 + unit(key ^ 0xabc));
                        current + rate.max(if series.decimals == 0 { 1.0 } else { 0.01 })
                    } else {
                        let wander = (unit(key ^ 0xdef) - 0.5) * 0.02 * current.abs().max(1.0);
                        current + wander
                    };
                    target_values[index] = round_to(next, series.decimals);
                }
                let _ = writeln!(
                    body,
                    "{}instance=\"host-{target:03}:9100\"}} {} {timestamp}",
                    series.prefix, target_values[index]
                );
                in_body += 1;
                total += 1;
            }
            if in_body >= args.samples_per_body {
                bodies.push(std::mem::take(&mut body).into_bytes());
                in_body = 0;
            }
        }
    }
    if !body.is_empty() {
        bodies.push(body.into_bytes());
    }
    (bodies, total)
}

fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) sit at 11 and 12 after the name.
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

/// A `/proc/PID/status` memory field (`VmHWM` peak, `VmRSS` now) in bytes.
fn status_bytes(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    for line in status.lines() {
        if let Some(rest) = line
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
        {
            let kib: u64 = rest.trim().trim_end_matches(" kB").trim().parse()?;
            return Ok(kib * 1024);
        }
    }
    bail!("no {field} in /proc/{pid}/status")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let template = load_template(&args.template)?;
    eprintln!(
        "template: {} series ({} counters); generating {} targets x {} steps",
        template.len(),
        template.iter().filter(|s| s.is_counter).count(),
        args.targets,
        args.steps
    );
    let (bodies, total_samples) = build_bodies(&args, &template);
    let total_bytes: usize = bodies.iter().map(Vec::len).sum();
    eprintln!(
        "{} bodies, {total_samples} samples, {:.1} MiB of text",
        bodies.len(),
        total_bytes as f64 / (1 << 20) as f64
    );

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(120))
        .build()?;
    let url = format!(
        "{}/api/v1/import/prometheus",
        args.url.trim_end_matches('/')
    );
    let cpu_before = args.server_pid.map(process_cpu_seconds).transpose()?;

    let queue = Arc::new(std::sync::Mutex::new(bodies.into_iter().enumerate()));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.connections {
        let queue = Arc::clone(&queue);
        let client = client.clone();
        let url = url.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let next = queue
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .next();
                let Some((index, body)) = next else { break };
                let sent = Instant::now();
                let response = client.post(&url).body(body).send().await?;
                let status = response.status();
                if !status.is_success() {
                    let text = response.text().await.unwrap_or_default();
                    bail!("body {index}: HTTP {status}: {text}");
                }
                latencies.push(sent.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index].as_secs_f64() * 1e3
    };
    println!("samples            {total_samples}");
    println!("wall seconds       {elapsed:.2}");
    println!("samples/s          {:.0}", total_samples as f64 / elapsed);
    println!(
        "push latency ms    p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}",
        percentile(0.5),
        percentile(0.9),
        percentile(0.99),
        percentile(1.0)
    );
    if let (Some(pid), Some(before)) = (args.server_pid, cpu_before) {
        let cpu = process_cpu_seconds(pid)? - before;
        println!("server CPU s       {cpu:.2}");
        println!(
            "CPU s / M samples  {:.3}",
            cpu / (total_samples as f64 / 1e6)
        );
        // Active series: every template series once per target.
        let series = (args.targets * template.len()) as f64;
        for (label, field) in [("peak RSS", "VmHWM"), ("RSS after run", "VmRSS")] {
            let bytes = status_bytes(pid, field)? as f64;
            println!(
                "server {label:<13} {:.1} MiB, {:.0} B per active series ({series} series)",
                bytes / (1 << 20) as f64,
                bytes / series
            );
        }
    }
    Ok(())
}
