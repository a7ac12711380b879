//! Range and instant query latency of the PromQL engine over a real `Tsdb`
//! (redb file in a tempdir), with the issue-3 query set.
//!
//! The dataset is built once per run: `GUARDIA_BENCH_TARGETS` simulated
//! node_exporter hosts (default 25; `chunk::testdata::NodeExporterHost`)
//! scraped 240 times at 15 s (one hour), plus a synthetic
//! `http_request_duration_seconds_bucket{handler,le}` counter family per host
//! (node_exporter has none worth a histogram_quantile), appended in commits of
//! 10 000 samples. Queries run at the end of that hour.
//!
//! `cargo bench --bench promql -- --warm-up-time 1 --measurement-time 5`
//! `GUARDIA_BENCH_TARGETS=100 cargo bench --bench promql -- ...` (full scale)

use std::sync::Arc;
use std::time::Duration;

use criterion::Criterion;
use guardia::chunk::testdata::NodeExporterHost;
use guardia::promql::{Engine, QueryOptions};
use guardia::storage::Appendable;
use guardia::tsdb::{Options, Tsdb};

const START_MS: i64 = 1_767_225_600_000;
const STEPS: usize = 240;
const STEP_MS: i64 = 15_000;
const COMMIT_SAMPLES: usize = 10_000;
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

fn build_dataset(targets: usize) -> (tempfile::TempDir, Arc<Tsdb>, i64, usize) {
    let directory = tempfile::tempdir().expect("tempdir");
    let tsdb = Tsdb::open(directory.path(), Options::default()).expect("open tsdb");
    let mut hosts: Vec<NodeExporterHost> = (0..targets)
        .map(|index| NodeExporterHost::new(42, index, START_MS))
        .collect();
    let host_labels: Vec<Vec<Vec<(String, String)>>> = hosts
        .iter()
        .map(|host| {
            host.labels()
                .iter()
                .map(|labels| {
                    labels
                        .iter()
                        .map(|label| (label.name.clone(), label.value.clone()))
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut values = Vec::new();
    let mut appender = tsdb.appender();
    let mut total = 0usize;
    let mut last_t = START_MS;
    let mut bucket_counts = vec![[0f64; 12]; targets * HANDLERS.len()];
    for step in 0..STEPS {
        for (host_index, host) in hosts.iter_mut().enumerate() {
            let t = host.scrape(&mut values);
            last_t = last_t.max(t);
            for (labels, value) in host_labels[host_index].iter().zip(values.iter()) {
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                appender.append(&pairs, t, *value).expect("append");
                total += 1;
            }
            let instance = format!("host-{host_index:04}:9100");
            for (handler_index, handler) in HANDLERS.iter().enumerate() {
                let counts = &mut bucket_counts[host_index * HANDLERS.len() + handler_index];
                let requests = 10 + ((step * 7 + host_index * 3 + handler_index) % 13) as u64;
                let mut cumulative = 0f64;
                for (bucket_index, le) in BUCKETS.iter().enumerate() {
                    // Requests spread over the lower buckets, a tail above.
                    let share = (requests as f64) * (bucket_index as f64 + 1.0) / 12.0;
                    cumulative = cumulative.max(share.floor());
                    counts[bucket_index] += cumulative;
                    appender
                        .append(
                            &[
                                ("__name__", "http_request_duration_seconds_bucket"),
                                ("handler", handler),
                                ("instance", &instance),
                                ("job", "app"),
                                ("le", le),
                            ],
                            t,
                            counts[bucket_index],
                        )
                        .expect("append");
                    total += 1;
                }
            }
            if appender.len() >= COMMIT_SAMPLES {
                appender.commit().expect("commit");
                appender = tsdb.appender();
            }
        }
    }
    appender.commit().expect("commit");
    (directory, tsdb, last_t, total)
}

fn bench_queries(criterion: &mut Criterion) {
    let targets: usize = std::env::var("GUARDIA_BENCH_TARGETS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(25);
    let started = std::time::Instant::now();
    let (_directory, tsdb, last_t, total) = build_dataset(targets);
    eprintln!(
        "dataset: {targets} targets, {total} samples, loaded in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let engine = Engine::default();
    let end = last_t - last_t % STEP_MS;
    let start = end - 3_600_000;
    let range_queries = [
        (
            "range_sum_by_mode_rate_cpu",
            "sum by (mode) (rate(node_cpu_seconds_total[5m]))",
        ),
        ("range_rate_cpu", "rate(node_cpu_seconds_total[5m])"),
        (
            "range_histogram_quantile",
            "histogram_quantile(0.99, sum by (le, handler) (rate(http_request_duration_seconds_bucket[5m])))",
        ),
        (
            "range_memory_ratio",
            "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
        ),
    ];
    let instant_queries = [
        (
            "instant_topk_network",
            "topk(5, rate(node_network_receive_bytes_total[5m]))",
        ),
        (
            "instant_count_by_job",
            "count by (job) ({__name__=~\".+\"})",
        ),
    ];
    let mut group = criterion.benchmark_group("promql");
    group.sample_size(10);
    for (name, query) in range_queries {
        let result = engine
            .range_query(
                tsdb.as_ref(),
                query,
                start,
                end,
                STEP_MS,
                QueryOptions::default(),
            )
            .expect("range query");
        if let guardia::promql::Value::Matrix(series) = &result.value {
            eprintln!("{name}: {} series", series.len());
        }
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                engine
                    .range_query(
                        tsdb.as_ref(),
                        query,
                        start,
                        end,
                        STEP_MS,
                        QueryOptions::default(),
                    )
                    .expect("range query")
            })
        });
    }
    for (name, query) in instant_queries {
        group.bench_function(name, |bencher| {
            bencher.iter(|| {
                engine
                    .instant_query(tsdb.as_ref(), query, end, QueryOptions::default())
                    .expect("instant query")
            })
        });
    }
    group.finish();
    tsdb.close().expect("close");
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    bench_queries(&mut criterion);
    criterion.final_summary();
}
