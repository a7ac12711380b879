//! Parse + append: the CPU a push costs before its commit, on one core.
//!
//! Bodies are built from the real node_exporter capture in `tests/data`:
//! - `push_body`: 20 instances of every series as sample lines with ms
//!   timestamps (the shape `examples/loadgen.rs` pushes; ~10,000 samples);
//! - `scrape_body`: the capture verbatim (HELP/TYPE lines included) with an
//!   `extra_label` instance, as a pushed scrape arrives.
//!
//! Series exist in the store and in the push endpoint's series cache before
//! measuring (steady state, as in a server; `push_body_uncached` leaves the
//! cache out and shows what it saves), and appenders
//! are dropped instead of committed, so fsync is not part of this figure; the
//! `append` bench and the end-to-end bench in README measure commits.
//!
//! Run: `cargo bench --bench ingest -- --warm-up-time 1 --measurement-time 5`

use std::hint::black_box;

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_time_of;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guardia::api::import::{SeriesTextCache, append_text};
use guardia::config::IngestLimits;
use guardia::ingest::text::Format;
use guardia::storage::Appendable;
use guardia::tsdb::{Options, Tsdb};

const CAPTURE: &str = include_str!("../tests/data/node_exporter.prom");
const INSTANCES: usize = 20;
const TIMESTAMP_MS: i64 = 1_767_225_600_000;

fn push_body() -> (Vec<u8>, usize) {
    let mut body = String::new();
    let mut samples = 0;
    for instance in 0..INSTANCES {
        for line in CAPTURE.lines() {
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let Some((metric, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let labelled = match metric.strip_suffix('}') {
                Some(open) if open.ends_with('{') => {
                    format!("{open}instance=\"host-{instance}\"}}")
                }
                Some(open) => format!("{open},instance=\"host-{instance}\"}}"),
                None => format!("{metric}{{instance=\"host-{instance}\"}}"),
            };
            body.push_str(&format!("{labelled} {value} {TIMESTAMP_MS}\n"));
            samples += 1;
        }
    }
    (body.into_bytes(), samples)
}

fn count_samples(text: &str) -> usize {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .count()
}

fn bench_ingest(criterion: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tsdb = Tsdb::open(dir.path(), Options::default()).expect("open tsdb");
    let limits = IngestLimits::default();
    let (push, push_samples) = push_body();
    let scrape = CAPTURE.as_bytes().to_vec();
    let scrape_samples = count_samples(CAPTURE);
    let instance_label = [("instance", "host-scrape")];
    let series_cache = SeriesTextCache::default();

    // Create every series (committed), then let a second pass fill the
    // series cache, so the measurement is the steady state.
    for commit in [true, false] {
        for (body, extra) in [(&push, &[][..]), (&scrape, &instance_label[..])] {
            let mut appender = tsdb.appender();
            append_text(
                body,
                Format::Prometheus,
                extra,
                TIMESTAMP_MS,
                &limits,
                Some(&series_cache),
                appender.as_mut(),
            )
            .expect("bench body parses");
            if commit {
                appender.commit().expect("commit");
            }
        }
    }

    let parse_and_append =
        |body: &[u8], extra: &[(&str, &str)], cache: Option<&SeriesTextCache>| {
            let mut appender = tsdb.appender();
            append_text(
                black_box(body),
                Format::Prometheus,
                extra,
                TIMESTAMP_MS,
                &limits,
                cache,
                appender.as_mut(),
            )
            .expect("bench body parses");
            black_box(appender.len())
        };
    let bodies = [
        (
            "push_body",
            &push[..],
            &[][..],
            push_samples,
            Some(&series_cache),
        ),
        (
            "scrape_body",
            &scrape[..],
            &instance_label[..],
            scrape_samples,
            Some(&series_cache),
        ),
        ("push_body_uncached", &push[..], &[][..], push_samples, None),
    ];

    let mut group = criterion.benchmark_group("parse_and_append");
    for (name, body, extra, samples, cache) in bodies {
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(name, |bencher| {
            bencher.iter(|| parse_and_append(body, extra, cache))
        });
    }
    group.finish();

    // The same work timed in on-CPU time of this thread: the one-core figure
    // even while other processes share the machine.
    let mut group = criterion.benchmark_group("parse_and_append_cpu_time");
    for (name, body, extra, samples, cache) in bodies {
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                cpu_time_of(iterations, || {
                    parse_and_append(body, extra, cache);
                })
            })
        });
    }
    group.finish();
    tsdb.close().expect("close");
}

criterion_group!(benches, bench_ingest);
criterion_main!(benches);
