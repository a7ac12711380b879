//! Throughput of the text exposition parser (`guardia::ingest::text`) on
//! node_exporter output replicated to about 10,000 samples, in samples per
//! second: parse alone, parse plus the sorted label pairs an appender takes
//! (and their series hash), OpenMetrics, and the `prometheus-parse` crate on
//! the same text for comparison.
//!
//! The `parse_cpu_time` group repeats the first two measurements in
//! on-CPU time of the benchmark thread (`CLOCK_THREAD_CPUTIME_ID`)
//! instead of wall time: on a shared machine the wall-clock figures include
//! the time the thread waited for a core. It also parses the sample lines
//! and the comment lines of the same text separately (elements are lines
//! there), to show where the time goes, and parses the text as a scrape
//! loop does once its cache knows every series
//! (`next_entry_with_known_series`: labels skipped, one hash per line),
//! with and without `fingerprint_comment_lines` (HELP/TYPE lines hashed
//! instead of parsed, as the scrape loop reads them).
//!
//! Run: `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3`

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::{cpu_time_of, thread_cpu_nanoseconds};

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guardia::ingest::text::{Entry, Format, SampleBuf, TextParser};
use guardia::model::hash_label_pairs;

const NODE_EXPORTER_PROM: &str = include_str!("../tests/data/node_exporter.prom");
const NODE_EXPORTER_OM: &str = include_str!("../tests/data/node_exporter.om.txt");
const TARGET_SAMPLES: usize = 10_000;

fn count_samples(text: &str) -> usize {
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .count()
}

/// The capture repeated until it holds about `TARGET_SAMPLES` samples.
fn replicate(capture: &str, format: Format) -> (String, usize) {
    let body = capture.trim_end().trim_end_matches("# EOF");
    let per_copy = count_samples(body);
    let copies = TARGET_SAMPLES.div_ceil(per_copy);
    let mut text = String::with_capacity(body.len() * copies + 8);
    for _ in 0..copies {
        text.push_str(body.trim_end());
        text.push('\n');
    }
    if format == Format::OpenMetrics {
        text.push_str("# EOF\n");
    }
    (text, per_copy * copies)
}

fn parse_and_count<'a>(text: &'a str, format: Format, sample: &mut SampleBuf<'a>) -> usize {
    let mut parser = TextParser::new(black_box(text), format);
    let mut parsed = 0usize;
    while let Some(entry) = parser.next_entry(sample).expect("capture parses") {
        if entry == Entry::Sample {
            parsed += 1;
            black_box(sample.value());
        }
    }
    parsed
}

fn series_text_hash(series_text: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::quality::FixedState::with_seed(1).hash_one(series_text.as_bytes())
}

/// Hashes of every series text of `text`, from a full parse.
fn known_series_hashes(text: &str, format: Format) -> std::collections::HashSet<u64> {
    let mut sample = SampleBuf::new();
    let mut parser = TextParser::new(text, format);
    let mut known = std::collections::HashSet::new();
    while let Some(entry) = parser.next_entry(&mut sample).expect("capture parses") {
        if entry == Entry::Sample {
            known.insert(series_text_hash(sample.series_text()));
        }
    }
    known
}

fn bench_parse_cpu_time(criterion: &mut Criterion) {
    if thread_cpu_nanoseconds().is_none() {
        return;
    }
    let mut group = criterion.benchmark_group("parse_cpu_time");
    for (name, capture, format) in [
        ("node_exporter_text", NODE_EXPORTER_PROM, Format::Prometheus),
        (
            "node_exporter_openmetrics",
            NODE_EXPORTER_OM,
            Format::OpenMetrics,
        ),
    ] {
        let (text, samples) = replicate(capture, format);
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                let mut sample = SampleBuf::new();
                cpu_time_of(iterations, || {
                    assert_eq!(parse_and_count(&text, format, &mut sample), samples);
                })
            })
        });
    }
    // As a scrape loop's second and later scrapes: every series text is
    // known, so only the series text is hashed and the value parsed.
    let (text, samples) = replicate(NODE_EXPORTER_PROM, Format::Prometheus);
    let known_series = known_series_hashes(&text, Format::Prometheus);
    group.throughput(Throughput::Elements(samples as u64));
    // `_fingerprinted_comments`: as the scrape loop parses, also passing
    // over HELP/TYPE lines with one hash each instead of parsing them.
    for (name, fingerprint_comments) in [
        ("node_exporter_text_known_series", false),
        (
            "node_exporter_text_known_series_fingerprinted_comments",
            true,
        ),
    ] {
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                let mut sample = SampleBuf::new();
                cpu_time_of(iterations, || {
                    let mut parser = TextParser::new(black_box(&text), Format::Prometheus);
                    if fingerprint_comments {
                        parser.fingerprint_comment_lines();
                    }
                    let mut skipped = 0usize;
                    while let Some(entry) = parser
                        .next_entry_with_known_series(&mut sample, &mut |series_text| {
                            known_series.contains(&series_text_hash(series_text))
                        })
                        .expect("capture parses")
                    {
                        if entry == Entry::Sample && sample.labels_skipped() {
                            skipped += 1;
                        }
                    }
                    assert_eq!(skipped, samples);
                    black_box(parser.comment_fingerprint());
                })
            })
        });
    }
    // The same text split into its sample lines and its comment lines.
    let (text, _) = replicate(NODE_EXPORTER_PROM, Format::Prometheus);
    for (name, keep_comments) in [
        ("node_exporter_text_sample_lines_only", false),
        ("node_exporter_text_comment_lines_only", true),
    ] {
        let filtered: String = text
            .lines()
            .filter(|line| line.starts_with('#') == keep_comments)
            .map(|line| format!("{line}\n"))
            .collect();
        group.throughput(Throughput::Elements(filtered.lines().count() as u64));
        group.bench_function(name, |bencher| {
            bencher.iter_custom(|iterations| {
                let mut sample = SampleBuf::new();
                cpu_time_of(iterations, || {
                    let mut parser = TextParser::new(black_box(&filtered), Format::Prometheus);
                    while let Some(entry) = parser.next_entry(&mut sample).expect("capture parses")
                    {
                        black_box(entry);
                    }
                })
            })
        });
    }
    group.finish();
}

fn bench_parse(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("parse");
    for (name, capture, format) in [
        ("node_exporter_text", NODE_EXPORTER_PROM, Format::Prometheus),
        (
            "node_exporter_openmetrics",
            NODE_EXPORTER_OM,
            Format::OpenMetrics,
        ),
    ] {
        let (text, samples) = replicate(capture, format);
        group.throughput(Throughput::Elements(samples as u64));
        group.bench_function(name, |bencher| {
            let mut sample = SampleBuf::new();
            bencher.iter(|| assert_eq!(parse_and_count(&text, format, &mut sample), samples))
        });
    }

    let (text, samples) = replicate(NODE_EXPORTER_PROM, Format::Prometheus);
    group.throughput(Throughput::Elements(samples as u64));
    group.bench_function("node_exporter_text_sorted_pairs_and_hash", |bencher| {
        let mut sample = SampleBuf::new();
        bencher.iter(|| {
            let mut parser = TextParser::new(black_box(&text), Format::Prometheus);
            let mut hashes = 0u64;
            while let Some(entry) = parser.next_entry(&mut sample).expect("capture parses") {
                if entry == Entry::Sample {
                    hashes ^= sample.with_sorted_label_pairs(&[("instance", "site-1")], |pairs| {
                        hash_label_pairs(pairs)
                    });
                }
            }
            black_box(hashes)
        })
    });

    group.bench_function("prometheus_parse_crate_text", |bencher| {
        bencher.iter(|| {
            let scrape = prometheus_parse::Scrape::parse(
                black_box(&text).lines().map(|line| Ok(line.to_string())),
            )
            .expect("capture parses");
            black_box(scrape.samples.len())
        })
    });
    group.finish();
}

criterion_group!(benches, bench_parse, bench_parse_cpu_time);
criterion_main!(benches);
