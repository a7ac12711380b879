//! Append path of the tsdb: batches of 10 000 samples over 100 000
//! node_exporter-like series, committed durably (one fsync per commit).
//! Criterion measures one append+commit of a 10k batch; a report section
//! then prints throughput, CPU seconds per million samples (all threads),
//! commit latency percentiles, resident memory per series and the time to
//! reopen the store (series load + log replay).
//!
//! `cargo bench --bench append` (criterion + report at 100k series)
//! `cargo bench --bench append -- --report-only` (report only; RSS figures
//! are meaningful only this way, in a process criterion has not grown)
//! `GUARDIA_BENCH_SERIES=1000000 cargo bench --bench append -- --report-only`

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use guardia::storage::Appendable;
use guardia::tsdb::{Options, Tsdb};

const BATCH: usize = 10_000;
const SCRAPE_INTERVAL_MS: i64 = 15_000;

/// Label values of series `index`: 100 metric names x N/100 instances x job.
struct SeriesSet {
    names: Vec<String>,
    instances: Vec<String>,
}

impl SeriesSet {
    fn new(series: usize) -> SeriesSet {
        SeriesSet {
            names: (0..100)
                .map(|index| format!("node_metric_{index:03}_total"))
                .collect(),
            instances: (0..series.div_ceil(100))
                .map(|index| format!("host-{index:06}.example.net:9100"))
                .collect(),
        }
    }

    fn labels(&self, index: usize) -> [(&str, &str); 3] {
        [
            ("__name__", self.names[index % 100].as_str()),
            ("instance", self.instances[index / 100].as_str()),
            ("job", "node"),
        ]
    }
}

/// Appends one sample for series `[first, first + count)` at `t` and commits.
fn commit_batch(tsdb: &Tsdb, set: &SeriesSet, first: usize, count: usize, t: i64) {
    let mut appender = tsdb.appender();
    for index in first..first + count {
        appender
            .append(
                &set.labels(index),
                t,
                (index as f64) * 0.5 + t as f64 / 1000.0,
            )
            .expect("append");
    }
    appender.commit().expect("commit");
}

/// One scrape round: every series gets a sample at `t`, in batches.
fn scrape_round(
    tsdb: &Tsdb,
    set: &SeriesSet,
    series: usize,
    t: i64,
    latencies: &mut Vec<Duration>,
) {
    let mut first = 0;
    while first < series {
        let count = BATCH.min(series - first);
        let started = Instant::now();
        commit_batch(tsdb, set, first, count, t);
        latencies.push(started.elapsed());
        first += count;
    }
}

fn proc_status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with(field))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|value| value.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU seconds of this process (all threads).
fn cpu_seconds() -> f64 {
    stat_cpu_seconds("/proc/self/stat")
}

/// CPU seconds of the tsdb commit thread alone.
fn commit_thread_cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    for task in tasks.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.starts_with("guardia-tsdb") {
            return stat_cpu_seconds(&task.path().join("stat").to_string_lossy());
        }
    }
    0.0
}

fn stat_cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields after "(comm)": state is 0, utime is 11, stime is 12.
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * fraction).round() as usize]
}

fn report(series: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = SeriesSet::new(series);
    let rss_before = proc_status_kib("VmRSS:");
    // A small redb cache, so RSS reflects per-series state rather than cached pages.
    let options = Options {
        cache_bytes: 16 << 20,
        ..Options::default()
    };
    let tsdb = Tsdb::open(dir.path(), options).expect("open");
    let started = Instant::now();
    let mut latencies = Vec::new();
    scrape_round(&tsdb, &set, series, 0, &mut latencies);
    println!(
        "series={series}: created in {:.2?} ({} commits of <= {BATCH})",
        started.elapsed(),
        latencies.len()
    );
    let rss_one_sample = proc_status_kib("VmRSS:");
    println!(
        "  RSS after creation (1 sample/series): {:.0} bytes/series",
        (rss_one_sample.saturating_sub(rss_before) * 1024) as f64 / series as f64
    );

    // Steady state: rounds of samples for existing series.
    let rounds = if series >= 1_000_000 { 10 } else { 59 };
    latencies.clear();
    let cpu_before = cpu_seconds();
    let commit_cpu_before = commit_thread_cpu_seconds();
    let started = Instant::now();
    for round in 1..=rounds {
        scrape_round(
            &tsdb,
            &set,
            series,
            round as i64 * SCRAPE_INTERVAL_MS,
            &mut latencies,
        );
    }
    let elapsed = started.elapsed();
    let cpu = cpu_seconds() - cpu_before;
    let commit_cpu = commit_thread_cpu_seconds() - commit_cpu_before;
    let samples = (rounds * series) as f64;
    latencies.sort();
    println!(
        "  steady state: {} samples in {:.2?}: {:.0} samples/s, {:.3} CPU-s per million samples ({:.3} in the commit thread)",
        samples,
        elapsed,
        samples / elapsed.as_secs_f64(),
        cpu / samples * 1e6,
        commit_cpu / samples * 1e6
    );
    println!(
        "  commit latency per {BATCH}-sample batch: p50 {:.2?} p90 {:.2?} p99 {:.2?}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.9),
        percentile(&latencies, 0.99)
    );
    let stats = tsdb.stats();
    let rss = proc_status_kib("VmRSS:");
    println!(
        "  RSS with {} samples/series in open chunks: {:.0} bytes/series (head estimate {:.0} bytes/series), db file {} MiB",
        stats.head_samples / series as u64,
        (rss.saturating_sub(rss_before) * 1024) as f64 / series as f64,
        stats.head_memory_bytes as f64 / series as f64,
        stats.database_bytes >> 20
    );
    tsdb.close().expect("close");
    drop(tsdb);

    let started = Instant::now();
    let reopened = Tsdb::open(dir.path(), Options::default()).expect("reopen");
    println!(
        "  reopen (load {} series, replay {} samples): {:.2?}",
        series,
        reopened.stats().head_samples,
        started.elapsed()
    );
    reopened.close().expect("close");
}

fn bench_append(criterion: &mut Criterion) {
    const SERIES: usize = 100_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let set = SeriesSet::new(SERIES);
    let tsdb: Arc<Tsdb> = Tsdb::open(dir.path(), Options::default()).expect("open");
    let mut latencies = Vec::new();
    scrape_round(&tsdb, &set, SERIES, 0, &mut latencies);
    let mut group = criterion.benchmark_group("tsdb_append");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    let mut round: i64 = 1;
    let mut offset = 0usize;
    group.bench_function("commit_10k_samples_of_100k_series", |bencher| {
        bencher.iter(|| {
            commit_batch(&tsdb, &set, offset, BATCH, round * SCRAPE_INTERVAL_MS);
            offset += BATCH;
            if offset >= SERIES {
                offset = 0;
                round += 1;
            }
        })
    });
    group.finish();
    tsdb.close().expect("close");
}

fn main() {
    let report_only = std::env::args().any(|argument| argument == "--report-only");
    if !report_only {
        let mut criterion = Criterion::default().configure_from_args();
        bench_append(&mut criterion);
        criterion.final_summary();
    }
    let series = std::env::var("GUARDIA_BENCH_SERIES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(100_000);
    report(series);
}
