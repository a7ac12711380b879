//! Side-by-side PromQL latency benchmark over the Prometheus HTTP API (see
//! README, "PromQL benchmark").
//!
//! Runs the query list of the PromQL issue against one or more servers
//! (`--url` repeated: guardia, VictoriaMetrics, Prometheus), interleaving the
//! servers run by run so that load from elsewhere on the machine hits them
//! alike. Each query is sent `--warmups` times unmeasured, then `--runs`
//! times; the wall time of one run is request sent to last body byte read.
//! Prints median and p90 per query and server, the ratio to the first
//! server, and the geometric mean of the medians.
//!
//! The node_exporter template has no histogram, so `--push-histograms`
//! first pushes a synthetic classic histogram family
//! (`http_request_duration_seconds_bucket{handler,instance,job,le}`, the
//! same shape as `benches/promql.rs`) for the same targets and hour as
//! `examples/loadgen.rs`, identically to every server.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

#[derive(Parser, Debug)]
struct Args {
    /// Base URL of a server; repeat to compare (the first is the reference
    /// of the ratio column), e.g. http://127.0.0.1:9099
    #[arg(long, required = true)]
    url: Vec<String>,
    /// Measured runs per query and server.
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// Unmeasured runs per query and server before measuring.
    #[arg(long, default_value_t = 2)]
    warmups: usize,
    /// Timestamp of the first scrape loadgen pushed (ms), as its `--start-ms`.
    #[arg(long, default_value_t = 1_767_225_600_000)]
    start_ms: i64,
    /// Scrapes per target loadgen pushed, as its `--steps`.
    #[arg(long, default_value_t = 240)]
    steps: usize,
    /// Targets loadgen pushed, as its `--targets` (for `--push-histograms`).
    #[arg(long, default_value_t = 100)]
    targets: usize,
    /// Push the synthetic histogram family to every `--url` before measuring.
    #[arg(long)]
    push_histograms: bool,
    /// PID of the server behind each `--url`, in the same order: adds the
    /// server's CPU time per query (utime + stime from /proc/PID/stat over
    /// the measured runs, divided by the runs), which load from elsewhere on
    /// the machine disturbs far less than wall time.
    #[arg(long)]
    pid: Vec<u32>,
    /// Only run queries whose name contains this text.
    #[arg(long)]
    only: Option<String>,
}

const STEP_MS: i64 = 15_000;
const RANGE_MS: i64 = 3_600_000;
const HANDLERS: [&str; 5] = [
    "/",
    "/api/v1/query",
    "/api/v1/query_range",
    "/metrics",
    "/-/ready",
];
const BUCKETS: [&str; 12] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];

enum Request {
    Range(&'static str),
    Instant(&'static str),
    /// A path with its query string, sent as is.
    Path(&'static str),
}

const QUERIES: [(&str, Request); 8] = [
    (
        "sum_by_mode_rate_cpu",
        Request::Range("sum by (mode) (rate(node_cpu_seconds_total[5m]))"),
    ),
    (
        "rate_cpu",
        Request::Range("rate(node_cpu_seconds_total[5m])"),
    ),
    (
        "histogram_quantile",
        Request::Range(
            "histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        ),
    ),
    (
        "memory_ratio",
        Request::Range("1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes"),
    ),
    (
        "topk_network_instant",
        Request::Instant("topk(5, rate(node_network_receive_bytes_total[5m]))"),
    ),
    (
        "count_by_job_instant",
        Request::Instant("count by (job) ({__name__=~\".+\"})"),
    ),
    (
        "series_cpu",
        Request::Path("/api/v1/series?match[]=node_cpu_seconds_total"),
    ),
    ("labels", Request::Path("/api/v1/labels")),
];

/// The synthetic histogram family as Prometheus text with ms timestamps.
fn histogram_bodies(args: &Args) -> Vec<String> {
    let mut counts = vec![[0f64; BUCKETS.len()]; args.targets * HANDLERS.len()];
    let mut bodies = Vec::new();
    for step in 0..args.steps {
        let mut body = String::new();
        let timestamp = args.start_ms + step as i64 * STEP_MS;
        for target in 0..args.targets {
            for (handler_index, handler) in HANDLERS.iter().enumerate() {
                let bucket_counts = &mut counts[target * HANDLERS.len() + handler_index];
                let requests = 10 + ((step * 7 + target * 3 + handler_index) % 13) as u64;
                let mut cumulative = 0f64;
                for (bucket_index, le) in BUCKETS.iter().enumerate() {
                    // Requests spread over the lower buckets, a tail above.
                    let share = (requests as f64) * (bucket_index as f64 + 1.0) / 12.0;
                    cumulative = cumulative.max(share.floor());
                    bucket_counts[bucket_index] += cumulative;
                    let _ = writeln!(
                        body,
                        "http_request_duration_seconds_bucket{{handler=\"{handler}\",instance=\"host-{target:03}:9100\",job=\"app\",le=\"{le}\"}} {} {timestamp}",
                        bucket_counts[bucket_index]
                    );
                }
            }
        }
        bodies.push(body);
    }
    bodies
}

async fn push_histograms(client: &reqwest::Client, args: &Args) -> anyhow::Result<()> {
    let bodies = histogram_bodies(args);
    for url in &args.url {
        for body in &bodies {
            let response = client
                .post(format!("{url}/api/v1/import/prometheus"))
                .body(body.clone())
                .send()
                .await
                .with_context(|| format!("pushing to {url}"))?;
            if !response.status().is_success() {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                bail!("{url} answered {status} to a push: {text}");
            }
        }
        eprintln!(
            "pushed {} histogram samples to {url}",
            bodies
                .iter()
                .map(|body| body.lines().count())
                .sum::<usize>()
        );
    }
    Ok(())
}

fn request_url(base: &str, request: &Request, start_ms: i64, end_ms: i64) -> String {
    let seconds = |ms: i64| format!("{}.{:03}", ms / 1000, ms % 1000);
    match request {
        Request::Range(expr) => format!(
            "{base}/api/v1/query_range?query={}&start={}&end={}&step={}",
            encode_component(expr),
            seconds(start_ms),
            seconds(end_ms),
            STEP_MS / 1000
        ),
        Request::Instant(expr) => format!(
            "{base}/api/v1/query?query={}&time={}",
            encode_component(expr),
            seconds(end_ms)
        ),
        Request::Path(path) => {
            // Bound the series and label look-ups to the loaded hour, as
            // Grafana does; without bounds VM would search its default window.
            format!(
                "{base}{path}{}start={}&end={}",
                if path.contains('?') { "&" } else { "?" },
                seconds(start_ms),
                seconds(end_ms)
            )
        }
    }
}

fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// One request, timed to the last body byte; the body size and series count.
async fn timed_get(client: &reqwest::Client, url: &str) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let response = client.get(url).send().await.context("sending")?;
    let status = response.status();
    let body = response.bytes().await.context("reading the body")?;
    let elapsed = started.elapsed();
    if !status.is_success() {
        bail!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok((elapsed, body.len()))
}

/// CPU seconds (user + system) the process has used so far.
fn process_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) sit at 11 and 12 after the name.
    let ticks: f64 = fields.get(11).context("utime")?.parse::<f64>()?
        + fields.get(12).context("stime")?.parse::<f64>()?;
    Ok(ticks / 100.0)
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    if args.push_histograms {
        push_histograms(&client, &args).await?;
    }
    let end_ms = args.start_ms + (args.steps as i64 - 1) * STEP_MS;
    let end_ms = end_ms - end_ms % STEP_MS;
    let start_ms = end_ms - RANGE_MS;

    let mut medians: Vec<Vec<f64>> = vec![Vec::new(); args.url.len()];
    let mut cpu_lines: Vec<String> = Vec::new();
    let mut cpu_means: Vec<Vec<f64>> = vec![Vec::new(); args.url.len()];
    println!(
        "{:<22} {}",
        "query",
        args.url
            .iter()
            .enumerate()
            .map(|(index, _)| format!(
                "{:>28}",
                format!(
                    "[{index}] median / p90 ms{}",
                    if index > 0 { " (x)" } else { "" }
                )
            ))
            .collect::<String>()
    );
    for (name, request) in QUERIES.iter() {
        if let Some(only) = &args.only
            && !name.contains(only.as_str())
        {
            continue;
        }
        let urls: Vec<String> = args
            .url
            .iter()
            .map(|base| request_url(base, request, start_ms, end_ms))
            .collect();
        let mut sizes = vec![0usize; urls.len()];
        for _ in 0..args.warmups {
            for (index, url) in urls.iter().enumerate() {
                sizes[index] = timed_get(&client, url).await?.1;
            }
        }
        let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(args.runs); urls.len()];
        let mut cpu_seconds = vec![0f64; urls.len()];
        for _ in 0..args.runs {
            for (index, url) in urls.iter().enumerate() {
                let cpu_before = match args.pid.get(index) {
                    Some(pid) => process_cpu_seconds(*pid)?,
                    None => 0.0,
                };
                let (elapsed, _) = timed_get(&client, url).await?;
                times[index].push(elapsed.as_secs_f64() * 1000.0);
                if let Some(pid) = args.pid.get(index) {
                    cpu_seconds[index] += process_cpu_seconds(*pid)? - cpu_before;
                }
            }
        }
        if !args.pid.is_empty() {
            let per_query: Vec<String> = cpu_seconds
                .iter()
                .take(args.pid.len())
                .map(|seconds| format!("{:.1}", seconds * 1000.0 / args.runs.max(1) as f64))
                .collect();
            cpu_lines.push(format!("{name:<22} {}", per_query.join(" / ")));
            for (index, seconds) in cpu_seconds.iter().enumerate().take(args.pid.len()) {
                cpu_means[index].push((seconds * 1000.0 / args.runs.max(1) as f64).max(0.1));
            }
        }
        let mut line = format!("{name:<22}");
        let mut reference_median = f64::NAN;
        for (index, samples) in times.iter_mut().enumerate() {
            samples.sort_by(f64::total_cmp);
            let median = percentile(samples, 0.5);
            let p90 = percentile(samples, 0.9);
            medians[index].push(median);
            let cell = if index == 0 {
                reference_median = median;
                format!("{median:.1} / {p90:.1}")
            } else {
                format!("{median:.1} / {p90:.1} ({:.2})", median / reference_median)
            };
            let _ = write!(line, "{cell:>28}");
        }
        println!("{line}");
        eprintln!("  {name}: response bytes {sizes:?}");
    }
    let mut line = format!("{:<22}", "geometric mean");
    let mut reference = f64::NAN;
    for (index, values) in medians.iter().enumerate() {
        let geometric_mean =
            (values.iter().map(|value| value.ln()).sum::<f64>() / values.len().max(1) as f64).exp();
        let cell = if index == 0 {
            reference = geometric_mean;
            format!("{geometric_mean:.1}")
        } else {
            format!("{geometric_mean:.1} ({:.2})", geometric_mean / reference)
        };
        let _ = write!(line, "{cell:>28}");
    }
    println!("{line}");
    if !cpu_lines.is_empty() {
        println!("server CPU ms per query (mean over the measured runs; 10 ms ticks):");
        for cpu_line in &cpu_lines {
            println!("{cpu_line}");
        }
        let geometric_means: Vec<String> = cpu_means
            .iter()
            .take(args.pid.len())
            .map(|values| {
                let mean = (values.iter().map(|value| value.ln()).sum::<f64>()
                    / values.len().max(1) as f64)
                    .exp();
                format!("{mean:.1}")
            })
            .collect();
        println!("{:<22} {}", "geometric mean", geometric_means.join(" / "));
    }
    for (index, url) in args.url.iter().enumerate() {
        println!("[{index}] {url}");
    }
    Ok(())
}
