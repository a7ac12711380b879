//! Issue 4's measurement, ignored by default (it runs for a minute):
//! guardia scraping 100 targets × 1000 series every 5 s into a tempdir
//! Tsdb, reporting process CPU seconds per million scraped samples and
//! resident memory per scraped series. The targets are one axum server in
//! the same process serving a fixed body, so its (small) CPU is included.
//!
//! `cargo test --release --test scrape_load -- --ignored --nocapture`

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use guardia::clock::SystemClock;
use guardia::config::file::parse_config;
use guardia::scrape::ScrapeManager;
use guardia::storage::Appendable;
use guardia::tsdb::{Options, Tsdb};

const TARGETS: usize = 100;
const SERIES_PER_TARGET: usize = 1000;
const RUN: Duration = Duration::from_secs(60);

fn cpu_seconds() -> f64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

fn rss_bytes() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .unwrap_or(0.0)
        * 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement: runs for a minute"]
async fn scrape_100_targets_of_1000_series_every_5s() {
    // node_exporter-like: a few families, counters that move.
    let body: Arc<String> = Arc::new(
        (0..SERIES_PER_TARGET)
            .map(|index| {
                format!(
                    "node_demo_seconds_total{{cpu=\"{}\",mode=\"m{}\"}} {}.{}\n",
                    index / 10,
                    index % 10,
                    index * 1000,
                    index % 97
                )
            })
            .collect(),
    );
    let router = Router::new().route(
        "/metrics",
        get(move || {
            let body = body.clone();
            async move { body.as_str().to_string() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let directory = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
    let appendable: Arc<dyn Appendable> = tsdb.clone();
    let manager = ScrapeManager::new(appendable, Arc::new(SystemClock));
    // One target per `?target=` parameter, all on the same server.
    let mut yaml = String::from(
        "scrape_configs:\n  - job_name: load\n    scrape_interval: 5s\n    static_configs:\n      - targets: [",
    );
    let targets: Vec<String> = (0..TARGETS).map(|index| format!("'t{index}'")).collect();
    yaml.push_str(&targets.join(","));
    yaml.push_str(&format!(
        "]\n    relabel_configs:\n      - {{source_labels: [__address__], target_label: __param_target}}\n      - {{source_labels: [__address__], target_label: instance}}\n      - {{target_label: __address__, replacement: '{address}'}}\n"
    ));
    let rss_before = rss_bytes();
    manager.apply_config(&parse_config(&yaml).unwrap()).unwrap();
    // Let every target scrape once, then measure whole intervals.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let samples_before: f64 = scraped_samples(&manager);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    let cpu = cpu_seconds() - cpu_before;
    let samples = scraped_samples(&manager) - samples_before;
    let wall = started.elapsed().as_secs_f64();
    let series = (TARGETS * (SERIES_PER_TARGET + 5)) as f64;
    let rss_after = rss_bytes();
    println!(
        "scraped {samples} samples in {wall:.1} s; CPU {cpu:.2} s = {:.2} CPU-s per million samples; RSS {:.1} MiB ({:.0} bytes per series over the start)",
        cpu / samples * 1e6,
        rss_after / (1 << 20) as f64,
        (rss_after - rss_before) / series
    );
    assert!(samples > 0.0);
    manager.shutdown().await;
    server.abort();
}

fn scraped_samples(manager: &ScrapeManager) -> f64 {
    manager
        .active_targets()
        .iter()
        .map(|target| target.status.scrape_count as f64 * (SERIES_PER_TARGET + 5) as f64)
        .sum()
}
