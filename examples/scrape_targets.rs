//! Side-by-side scrape benchmark (issue 4; see README, "Scrape benchmark").
//!
//! One process serves `--targets` node_exporter-shaped targets, one loopback
//! port each, built from a real node_exporter scrape used as a template:
//! every sample line appears `--copies` times (copy k > 0 carries an extra
//! `replica="k"` label), HELP/TYPE lines included, so a body holds about
//! 1,000 series. Values move like a real exporter's: counters rise every
//! interval, about 30 % of gauges take a new value. A body is rendered once
//! per target and interval (and gzipped once when asked for, as
//! node_exporter does for `Accept-Encoding: gzip`), so every scraper of the
//! same interval gets the same bytes and the server's own work stays small.
//!
//! Unless `--serve-only` is given, it then writes one scrape config (one
//! job, every target static, 5 s interval), starts guardia (release binary)
//! and Debian's `prometheus` on it, waits `--warmup-seconds`, and over
//! `--measure-seconds` reads each process's utime + stime and RSS from
//! /proc. Scraped samples are counted on the server side, per scraper (by
//! User-Agent): bodies served × series per body. The server's CPU is not
//! counted: it runs in this process, not in either scraper.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::Parser;
use parking_lot::Mutex;

#[derive(Parser, Debug)]
struct Args {
    /// A node_exporter scrape in Prometheus text format.
    #[arg(long, default_value = "tests/data/node_exporter.prom")]
    template: PathBuf,
    #[arg(long, default_value_t = 100)]
    targets: usize,
    /// Times each template sample line appears in a body.
    #[arg(long, default_value_t = 2)]
    copies: usize,
    /// Scrape interval written into the config, and the interval at which
    /// the served values change.
    #[arg(long, default_value_t = 5)]
    interval_seconds: u64,
    #[arg(long, default_value_t = 30)]
    warmup_seconds: u64,
    #[arg(long, default_value_t = 60)]
    measure_seconds: u64,
    #[arg(long, default_value = "target/release/guardia")]
    guardia_bin: PathBuf,
    #[arg(long, default_value = "/usr/bin/prometheus")]
    prometheus_bin: PathBuf,
    /// Measure guardia alone.
    #[arg(long)]
    no_prometheus: bool,
    /// Measure Prometheus alone.
    #[arg(long)]
    no_guardia: bool,
    /// Only serve the targets (until killed) and print the scrape config.
    #[arg(long)]
    serve_only: bool,
}

/// One sample line of the body, before its value.
struct SeriesShape {
    /// `name{labels}` as written.
    series_text: String,
    initial_value: f64,
    is_counter: bool,
    /// Counter increase per second.
    rate_per_second: f64,
}

/// A family: its comment lines, then its series.
struct FamilyShape {
    comment_lines: String,
    series: Vec<SeriesShape>,
}

/// splitmix64: deterministic pseudo-randomness, the same every run.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn unit(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

fn with_replica_label(series_text: &str, replica: usize) -> String {
    if replica == 0 {
        return series_text.to_string();
    }
    match series_text.split_once('{') {
        Some((name, rest)) if rest.starts_with('}') => format!("{name}{{replica=\"{replica}\"}}"),
        Some((name, rest)) => format!("{name}{{replica=\"{replica}\",{rest}"),
        None => format!("{series_text}{{replica=\"{replica}\"}}"),
    }
}

fn load_template(path: &Path, copies: usize) -> anyhow::Result<Vec<FamilyShape>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the template {}", path.display()))?;
    let mut counters: HashSet<String> = HashSet::new();
    let mut families: Vec<FamilyShape> = Vec::new();
    let mut lines_of_family: Vec<(String, f64)> = Vec::new();
    let mut comments = String::new();
    let mut seed = 0u64;
    let mut flush = |comments: &mut String,
                     lines: &mut Vec<(String, f64)>,
                     counters: &HashSet<String>,
                     families: &mut Vec<FamilyShape>| {
        if comments.is_empty() && lines.is_empty() {
            return;
        }
        let mut series = Vec::new();
        for (series_text, value) in lines.iter() {
            let name = series_text.split('{').next().unwrap_or(series_text);
            let family = name
                .strip_suffix("_sum")
                .or_else(|| name.strip_suffix("_count"))
                .or_else(|| name.strip_suffix("_bucket"))
                .unwrap_or(name);
            let is_counter = counters.contains(name) || counters.contains(family);
            for replica in 0..copies {
                seed += 1;
                // Most real counters move slowly; a third stand still.
                let rate_per_second = if unit(seed) < 0.33 {
                    0.0
                } else {
                    unit(seed ^ 0xabcd) * value.abs().max(1.0) * 1e-4
                };
                series.push(SeriesShape {
                    series_text: with_replica_label(series_text, replica),
                    initial_value: *value,
                    is_counter,
                    rate_per_second,
                });
            }
        }
        families.push(FamilyShape {
            comment_lines: std::mem::take(comments),
            series,
        });
        lines.clear();
    };
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with('#') {
            if !lines_of_family.is_empty() {
                flush(
                    &mut comments,
                    &mut lines_of_family,
                    &counters,
                    &mut families,
                );
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next())
                    && matches!(kind, "counter" | "summary" | "histogram")
                {
                    counters.insert(name.to_string());
                }
            }
            comments.push_str(line);
            comments.push('\n');
            continue;
        }
        let Some((series_text, value)) = line.rsplit_once(' ') else {
            bail!("template line without a value: {line}");
        };
        let value: f64 = match value {
            "NaN" => f64::NAN,
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().with_context(|| format!("value in {line}"))?,
        };
        lines_of_family.push((series_text.to_string(), value));
    }
    flush(
        &mut comments,
        &mut lines_of_family,
        &counters,
        &mut families,
    );
    Ok(families)
}

/// One target's current body, rendered for one interval.
#[derive(Default)]
struct RenderedBody {
    interval_index: u64,
    plain: Bytes,
    gzipped: Option<Bytes>,
}

struct TargetState {
    index: u64,
    body: Mutex<Option<RenderedBody>>,
}

struct ServerState {
    families: Vec<FamilyShape>,
    started: Instant,
    interval: Duration,
    targets: Vec<Arc<TargetState>>,
    bodies_served_to_guardia: AtomicU64,
    bodies_served_to_prometheus: AtomicU64,
    bodies_served_to_others: AtomicU64,
}

impl ServerState {
    fn series_per_body(&self) -> usize {
        self.families.iter().map(|family| family.series.len()).sum()
    }

    /// The body of `target` for interval `interval_index`: counters have
    /// risen by their rate, and a gauge's value is redrawn in about 30 % of
    /// intervals (its value is that of the last interval that redrew it).
    fn render(&self, target: u64, interval_index: u64) -> Bytes {
        let elapsed_seconds = interval_index as f64 * self.interval.as_secs_f64();
        let mut body = String::with_capacity(96 * 1024);
        let mut series_number = 0u64;
        for family in &self.families {
            body.push_str(&family.comment_lines);
            for series in &family.series {
                series_number += 1;
                let seed = (target << 32) ^ series_number;
                let value = if !series.initial_value.is_finite() {
                    series.initial_value
                } else if series.is_counter {
                    series.initial_value + series.rate_per_second * elapsed_seconds
                } else {
                    let mut last_change = interval_index;
                    // Walk back to the newest interval that redrew this gauge (a few steps).
                    while last_change > 0 && unit(seed ^ (last_change << 20)) >= 0.3 {
                        last_change -= 1;
                    }
                    if last_change == 0 {
                        series.initial_value
                    } else {
                        let drawn = unit(seed ^ (last_change << 40) ^ 0x5555);
                        let moved = series.initial_value * (0.9 + 0.2 * drawn);
                        if series.initial_value.fract() == 0.0 {
                            moved.round()
                        } else {
                            moved
                        }
                    }
                };
                body.push_str(&series.series_text);
                body.push(' ');
                if value.is_nan() {
                    body.push_str("NaN");
                } else if value == f64::INFINITY {
                    body.push_str("+Inf");
                } else if value == f64::NEG_INFINITY {
                    body.push_str("-Inf");
                } else {
                    let _ = write!(body, "{value}");
                }
                body.push('\n');
            }
        }
        Bytes::from(body)
    }
}

async fn serve_metrics(
    State((server, target)): State<(Arc<ServerState>, Arc<TargetState>)>,
    headers: HeaderMap,
) -> Response {
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("");
    let wants_gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.contains("gzip"));
    let interval_index =
        (server.started.elapsed().as_millis() / server.interval.as_millis().max(1)) as u64;
    let (body, gzipped) = {
        let mut slot = target.body.lock();
        let current = match slot.as_mut() {
            Some(rendered) if rendered.interval_index == interval_index => rendered,
            _ => slot.insert(RenderedBody {
                interval_index,
                plain: server.render(target.index, interval_index),
                gzipped: None,
            }),
        };
        if wants_gzip && current.gzipped.is_none() {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            let _ = encoder.write_all(&current.plain);
            current.gzipped = encoder.finish().ok().map(Bytes::from);
        }
        match (&current.gzipped, wants_gzip) {
            (Some(gzipped), true) => (gzipped.clone(), true),
            _ => (current.plain.clone(), false),
        }
    };
    let counter = if user_agent.starts_with("guardia") {
        &server.bodies_served_to_guardia
    } else if user_agent.starts_with("Prometheus") {
        &server.bodies_served_to_prometheus
    } else {
        &server.bodies_served_to_others
    };
    counter.fetch_add(1, Ordering::Relaxed);
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    if gzipped {
        response
            .headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

/// CPU seconds (utime + stime) and resident bytes of a process, from /proc.
fn process_usage(pid: u32) -> anyhow::Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc stat")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let ticks: f64 = fields
        .get(11)
        .and_then(|utime| utime.parse::<f64>().ok())
        .zip(fields.get(12).and_then(|stime| stime.parse::<f64>().ok()))
        .map(|(utime, stime)| utime + stime)
        .context("no utime/stime in /proc stat")?;
    // SAFETY: sysconf only reads a configuration value.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: f64 = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok((ticks / ticks_per_second, rss_kib * 1024.0))
}

fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// A started scraper, killed when dropped.
struct Scraper {
    name: &'static str,
    child: Child,
    served: fn(&ServerState) -> u64,
}

impl Drop for Scraper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_guardia(binary: &Path, config: &Path, directory: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(directory.join("guardia.log"))?;
    Command::new(binary)
        .arg("serve")
        .arg("--config.file")
        .arg(config)
        .arg("--storage.path")
        .arg(directory.join("guardia-data"))
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{}", free_loopback_port()?))
        .arg("--log.level")
        .arg("warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} (cargo build --release first)",
                binary.display()
            )
        })
}

fn start_prometheus(binary: &Path, config: &Path, directory: &Path) -> anyhow::Result<Child> {
    let log = std::fs::File::create(directory.join("prometheus.log"))?;
    Command::new(binary)
        .arg("--config.file")
        .arg(config)
        .arg("--storage.tsdb.path")
        .arg(directory.join("prometheus-data"))
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{}", free_loopback_port()?))
        .arg("--log.level")
        .arg("warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let families = load_template(&args.template, args.copies)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let interval = Duration::from_secs(args.interval_seconds.max(1));
    let server = Arc::new(ServerState {
        families,
        started: Instant::now(),
        interval,
        targets: (0..args.targets as u64)
            .map(|index| {
                Arc::new(TargetState {
                    index,
                    body: Mutex::new(None),
                })
            })
            .collect(),
        bodies_served_to_guardia: AtomicU64::new(0),
        bodies_served_to_prometheus: AtomicU64::new(0),
        bodies_served_to_others: AtomicU64::new(0),
    });
    let series_per_body = server.series_per_body();
    let addresses: Vec<SocketAddr> = runtime.block_on(async {
        let mut addresses = Vec::new();
        for target in &server.targets {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addresses.push(listener.local_addr()?);
            let router = Router::new()
                .route("/metrics", get(serve_metrics))
                .with_state((server.clone(), target.clone()));
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
        }
        anyhow::Ok(addresses)
    })?;
    let mut config = format!(
        "global:\n  scrape_interval: {0}s\n  scrape_timeout: {0}s\nscrape_configs:\n  - job_name: node\n    static_configs:\n      - targets:\n",
        args.interval_seconds
    );
    for address in &addresses {
        let _ = writeln!(config, "          - '{address}'");
    }
    let directory = tempfile::tempdir()?;
    let config_path = directory.path().join("scrape.yml");
    std::fs::write(&config_path, &config)?;
    eprintln!(
        "serving {} targets of {series_per_body} series each; config {}",
        addresses.len(),
        config_path.display()
    );
    if args.serve_only {
        print!("{config}");
        runtime.block_on(std::future::pending::<()>());
        return Ok(());
    }
    let mut scrapers = Vec::new();
    if !args.no_guardia {
        scrapers.push(Scraper {
            name: "guardia",
            child: start_guardia(&args.guardia_bin, &config_path, directory.path())?,
            served: |server| server.bodies_served_to_guardia.load(Ordering::Relaxed),
        });
    }
    if !args.no_prometheus {
        scrapers.push(Scraper {
            name: "prometheus",
            child: start_prometheus(&args.prometheus_bin, &config_path, directory.path())?,
            served: |server| server.bodies_served_to_prometheus.load(Ordering::Relaxed),
        });
    }
    eprintln!("warming up for {} s", args.warmup_seconds);
    std::thread::sleep(Duration::from_secs(args.warmup_seconds));
    let mut before = Vec::new();
    for scraper in &mut scrapers {
        if let Some(status) = scraper.child.try_wait()? {
            bail!(
                "{} exited during warm-up ({status}); see its log in {}",
                scraper.name,
                directory.path().display()
            );
        }
        before.push((
            process_usage(scraper.child.id())?,
            (scraper.served)(&server),
        ));
    }
    let load_at_start = load_average();
    let measure_started = Instant::now();
    let mut peak_rss = vec![0.0f64; scrapers.len()];
    while measure_started.elapsed() < Duration::from_secs(args.measure_seconds) {
        std::thread::sleep(Duration::from_secs(1));
        for (index, scraper) in scrapers.iter().enumerate() {
            if let Ok((_, rss)) = process_usage(scraper.child.id()) {
                peak_rss[index] = peak_rss[index].max(rss);
            }
        }
    }
    let seconds = measure_started.elapsed().as_secs_f64();
    let active_series = (addresses.len() * (series_per_body + 5)) as f64;
    println!(
        "{} targets x {series_per_body} series every {} s, {seconds:.0} s measured after {} s warm-up; load average {load_at_start} (start) / {} (end)",
        addresses.len(),
        args.interval_seconds,
        args.warmup_seconds,
        load_average()
    );
    for (index, scraper) in scrapers.iter().enumerate() {
        let ((cpu_before, _), served_before) = before[index];
        let (cpu_after, rss_after) = process_usage(scraper.child.id())?;
        let bodies = (scraper.served)(&server) - served_before;
        let samples = bodies as f64 * series_per_body as f64;
        let cpu = cpu_after - cpu_before;
        println!(
            "{:<10} {bodies:>5} bodies = {:>8.0} samples; CPU {cpu:6.2} s = {:5.2} CPU-s per million samples; RSS {:6.1} MiB (peak {:6.1} MiB) = {:5.2} KB per series",
            scraper.name,
            samples,
            cpu / samples.max(1.0) * 1e6,
            rss_after / (1 << 20) as f64,
            peak_rss[index] / (1 << 20) as f64,
            rss_after / active_series / 1000.0,
        );
    }
    let _ = std::io::stdout().flush();
    drop(scrapers);
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
