//! Throughput of the text exposition parser (`guardia::ingest::text`) on
//! node_exporter output replicated to about 10,000 samples, in samples per
//! second: parse alone, parse plus the sorted label pairs an appender takes
//! (and their series hash), OpenMetrics, and the `prometheus-parse` crate on
//! the same text for comparison.
//!
//! Run: `cargo bench --bench parse -- --warm-up-time 1 --measurement-time 3`

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
            bencher.iter(|| {
                let mut parser = TextParser::new(black_box(&text), format);
                let mut parsed = 0usize;
                while let Some(entry) = parser.next_entry(&mut sample).expect("capture parses") {
                    if entry == Entry::Sample {
                        parsed += 1;
                        black_box(sample.value());
                    }
                }
                assert_eq!(parsed, samples);
            })
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

criterion_group!(benches, bench_parse);
criterion_main!(benches);
