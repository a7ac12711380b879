//! Round trips through a real store in a temporary directory: append,
//! commit, query with every matcher type, commit accounting, label APIs,
//! metadata, and group commit under concurrency.

use std::sync::Arc;

use guardia::model::{Labels, MatchOp, Matcher, MetricMetadata, Sample, stale_nan};
use guardia::storage::{Appendable, CommitOutcome, Queryable, Series, StorageError};
use guardia::tsdb::{Options, Tsdb};

fn open(dir: &std::path::Path) -> Arc<Tsdb> {
    Tsdb::open(dir, Options::default()).expect("open store")
}

/// One sample to append: sorted label pairs, time, value.
type Input<'a> = (&'a [(&'a str, &'a str)], i64, f64);

fn commit(tsdb: &Tsdb, samples: &[Input]) -> CommitOutcome {
    let mut appender = tsdb.appender();
    for (labels, t, v) in samples {
        appender.append(labels, *t, *v).expect("append");
    }
    appender.commit().expect("commit")
}

fn select(tsdb: &Tsdb, mint: i64, maxt: i64, matchers: &[Matcher]) -> Vec<Series> {
    tsdb.querier()
        .expect("querier")
        .select(mint, maxt, matchers)
        .expect("select")
}

fn bits(samples: &[Sample]) -> Vec<(i64, u64)> {
    samples.iter().map(|s| (s.t, s.v.to_bits())).collect()
}

fn m(op: MatchOp, name: &str, value: &str) -> Matcher {
    Matcher::new(op, name, value).expect("matcher")
}

const UP_A: &[(&str, &str)] = &[("__name__", "up"), ("job", "a")];
const UP_B: &[(&str, &str)] = &[("__name__", "up"), ("job", "b"), ("zone", "east")];
const DOWN: &[(&str, &str)] = &[("__name__", "down"), ("job", "a")];

#[test]
fn samples_round_trip_bit_exactly_including_stale_markers() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    let values = [
        0.1 + 0.2,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
        stale_nan(),
        f64::MIN_POSITIVE / 3.0,
        1e300,
    ];
    let samples: Vec<Input> = values
        .iter()
        .enumerate()
        .map(|(index, v)| (UP_A, 1000 + index as i64 * 15_000, *v))
        .collect();
    let outcome = commit(&tsdb, &samples);
    assert_eq!(outcome.samples_appended, values.len() as u64);
    assert_eq!(outcome.series_created, 1);
    let result = select(&tsdb, 0, i64::MAX, &[Matcher::equal("job", "a")]);
    assert_eq!(result.len(), 1);
    assert_eq!(result[0].labels, Labels::from_pairs(UP_A.iter().copied()));
    let expected: Vec<(i64, u64)> = values
        .iter()
        .enumerate()
        .map(|(index, v)| (1000 + index as i64 * 15_000, v.to_bits()))
        .collect();
    assert_eq!(bits(&result[0].samples), expected);
    // Inclusive bounds.
    let bounded = select(&tsdb, 16_000, 31_000, &[Matcher::equal("job", "a")]);
    assert_eq!(bounded[0].samples.len(), 2);
    assert_eq!(bounded[0].samples[0].t, 16_000);
    assert_eq!(bounded[0].samples[1].t, 31_000);
    tsdb.close().unwrap();
}

#[test]
fn commit_outcome_counts_duplicates_out_of_order_and_duplicate_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    assert_eq!(
        commit(&tsdb, &[(UP_A, 100, 1.0), (UP_A, 200, 2.0)]).samples_appended,
        2
    );
    let outcome = commit(
        &tsdb,
        &[
            (UP_A, 200, 2.0), // same t, same value: duplicate, idempotent
            (UP_A, 200, 3.0), // same t, other value: rejected
            (UP_A, 150, 1.5), // older: rejected
            (UP_A, 300, 3.0), // fine
            (UP_A, 300, 3.0), // duplicate of a sample earlier in the same batch
            (UP_A, 250, 9.0), // older than a sample earlier in the same batch
        ],
    );
    assert_eq!(outcome.samples_appended, 1);
    assert_eq!(outcome.duplicates, 2);
    assert_eq!(outcome.duplicate_timestamp, 1);
    assert_eq!(outcome.out_of_order, 2);
    assert_eq!(outcome.rejected(), 3);
    assert_eq!(outcome.series_created, 0);
    assert!(!outcome.rejected_examples.is_empty());
    assert!(
        outcome.rejected_examples[0].contains("up{job=\"a\"}"),
        "{:?}",
        outcome.rejected_examples
    );
    let result = select(&tsdb, 0, 1000, &[]);
    assert_eq!(
        bits(&result[0].samples),
        vec![
            (100, 1f64.to_bits()),
            (200, 2f64.to_bits()),
            (300, 3f64.to_bits())
        ]
    );

    let mut exposition = guardia::telemetry::Exposition::new();
    tsdb.render_metrics(&mut exposition);
    let text = exposition.finish();
    assert!(text.contains("guardia_ingest_samples_total 3\n"), "{text}");
    assert!(
        text.contains("guardia_ingest_rejected_samples_total{reason=\"out_of_order\"} 2\n"),
        "{text}"
    );
    assert!(
        text.contains("guardia_ingest_rejected_samples_total{reason=\"duplicate_timestamp\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("guardia_ingest_out_of_order_samples_total 2\n"),
        "{text}"
    );
    assert!(text.contains("guardia_tsdb_head_series 1\n"), "{text}");
    assert!(text.contains("guardia_tsdb_poisoned 0\n"), "{text}");
}

#[test]
fn dropped_appender_stores_nothing_and_invalid_labels_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    {
        let mut appender = tsdb.appender();
        appender.append(UP_A, 1, 1.0).unwrap();
        appender.append(UP_B, 1, 1.0).unwrap();
        assert_eq!(appender.len(), 2);
    }
    assert!(select(&tsdb, i64::MIN, i64::MAX, &[]).is_empty());
    assert_eq!(tsdb.stats().series, 0);
    let mut appender = tsdb.appender();
    assert!(matches!(
        appender.append(&[("job", "a"), ("__name__", "up")], 1, 1.0),
        Err(StorageError::InvalidSeries(_))
    ));
    assert!(matches!(
        appender.append(&[("job", "")], 1, 1.0),
        Err(StorageError::InvalidSeries(_))
    ));
    assert!(matches!(
        appender.append(&[], 1, 1.0),
        Err(StorageError::InvalidSeries(_))
    ));
}

#[test]
fn new_series_repeated_in_one_batch_and_across_concurrent_batches_are_created_once() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    let mut first = tsdb.appender();
    let mut second = tsdb.appender();
    first.append(UP_A, 1, 1.0).unwrap();
    first.append(UP_A, 2, 2.0).unwrap();
    second.append(UP_A, 3, 3.0).unwrap();
    let first_outcome = first.commit().unwrap();
    let second_outcome = second.commit().unwrap();
    assert_eq!(
        first_outcome.series_created + second_outcome.series_created,
        1
    );
    assert_eq!(tsdb.stats().series, 1);
    let result = select(&tsdb, 0, 10, &[]);
    assert_eq!(result.len(), 1);
    assert_eq!(result[0].samples.len(), 3);
}

fn names(series: &[Series]) -> Vec<String> {
    series.iter().map(|s| s.labels.to_string()).collect()
}

#[test]
fn select_with_every_matcher_type_and_empty_string_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    commit(&tsdb, &[(UP_A, 10, 1.0), (UP_B, 10, 2.0), (DOWN, 10, 3.0)]);
    let all = select(&tsdb, 0, 100, &[]);
    // Sorted by labels: __name__ first.
    assert_eq!(
        names(&all),
        vec![
            "down{job=\"a\"}",
            "up{job=\"a\"}",
            "up{job=\"b\", zone=\"east\"}"
        ]
    );
    let cases: Vec<(Vec<Matcher>, Vec<&str>)> = vec![
        (
            vec![Matcher::equal("__name__", "up")],
            vec!["up{job=\"a\"}", "up{job=\"b\", zone=\"east\"}"],
        ),
        (
            vec![
                Matcher::equal("__name__", "up"),
                m(MatchOp::NotEqual, "job", "a"),
            ],
            vec!["up{job=\"b\", zone=\"east\"}"],
        ),
        (
            vec![m(MatchOp::Regex, "__name__", "u.")],
            vec!["up{job=\"a\"}", "up{job=\"b\", zone=\"east\"}"],
        ),
        (
            vec![m(MatchOp::NotRegex, "job", "a|c")],
            vec!["up{job=\"b\", zone=\"east\"}"],
        ),
        // `zone=""` selects series without the label.
        (
            vec![Matcher::equal("zone", "")],
            vec!["down{job=\"a\"}", "up{job=\"a\"}"],
        ),
        // `zone!=""` requires the label.
        (
            vec![m(MatchOp::NotEqual, "zone", "")],
            vec!["up{job=\"b\", zone=\"east\"}"],
        ),
        // A regex that matches empty also selects series without the label.
        (
            vec![
                Matcher::equal("__name__", "up"),
                m(MatchOp::Regex, "zone", "west|"),
            ],
            vec!["up{job=\"a\"}"],
        ),
        (
            vec![m(MatchOp::Regex, "zone", ".*")],
            vec![
                "down{job=\"a\"}",
                "up{job=\"a\"}",
                "up{job=\"b\", zone=\"east\"}",
            ],
        ),
        (
            vec![m(MatchOp::NotRegex, "zone", ".+")],
            vec!["down{job=\"a\"}", "up{job=\"a\"}"],
        ),
        (vec![Matcher::equal("nonexistent", "x")], vec![]),
        (
            vec![m(MatchOp::NotEqual, "nonexistent", "x")],
            vec![
                "down{job=\"a\"}",
                "up{job=\"a\"}",
                "up{job=\"b\", zone=\"east\"}",
            ],
        ),
    ];
    for (matchers, expected) in cases {
        assert_eq!(
            names(&select(&tsdb, 0, 100, &matchers)),
            expected,
            "matchers {matchers:?}"
        );
    }
    // Outside the time range nothing is returned.
    assert!(select(&tsdb, 11, 100, &[]).is_empty());
    assert!(select(&tsdb, 0, 9, &[]).is_empty());
}

#[test]
fn label_names_values_and_series_honour_matchers_and_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    commit(&tsdb, &[(UP_A, 10, 1.0), (DOWN, 10, 3.0)]);
    commit(&tsdb, &[(UP_B, 1000, 2.0)]);
    let querier = tsdb.querier().unwrap();
    assert_eq!(
        querier.label_names(0, 2000, &[]).unwrap(),
        vec!["__name__", "job", "zone"]
    );
    assert_eq!(
        querier.label_names(0, 100, &[]).unwrap(),
        vec!["__name__", "job"]
    );
    assert_eq!(
        querier
            .label_names(0, 2000, &[Matcher::equal("__name__", "down")])
            .unwrap(),
        vec!["__name__", "job"]
    );
    assert_eq!(
        querier.label_values("job", 0, 2000, &[]).unwrap(),
        vec!["a", "b"]
    );
    assert_eq!(
        querier.label_values("job", 500, 2000, &[]).unwrap(),
        vec!["b"]
    );
    assert_eq!(
        querier
            .label_values("__name__", 0, 2000, &[Matcher::equal("job", "a")])
            .unwrap(),
        vec!["down", "up"]
    );
    assert!(
        querier
            .label_values("missing", 0, 2000, &[])
            .unwrap()
            .is_empty()
    );
    let series = querier
        .series(0, 100, &[Matcher::equal("__name__", "up")])
        .unwrap();
    assert_eq!(series, vec![Labels::from_pairs(UP_A.iter().copied())]);
    assert_eq!(querier.series(0, 2000, &[]).unwrap().len(), 3);
}

#[test]
fn querier_is_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    commit(&tsdb, &[(UP_A, 10, 1.0)]);
    let querier = tsdb.querier().unwrap();
    commit(&tsdb, &[(UP_A, 20, 2.0), (UP_B, 20, 2.0)]);
    let seen = querier.select(0, 100, &[]).unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].samples.len(), 1);
    assert_eq!(querier.series(0, 100, &[]).unwrap().len(), 1);
    assert_eq!(select(&tsdb, 0, 100, &[]).len(), 2);
}

#[test]
fn metadata_is_stored_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let metadata = MetricMetadata {
        metric_type: "counter".to_string(),
        help: "Requests served.".to_string(),
        unit: String::new(),
    };
    {
        let tsdb = open(dir.path());
        let mut appender = tsdb.appender();
        appender.set_metadata("http_requests_total", &metadata);
        appender.commit().unwrap();
        assert_eq!(
            tsdb.metadata(),
            vec![("http_requests_total".to_string(), metadata.clone())]
        );
        tsdb.close().unwrap();
    }
    let tsdb = open(dir.path());
    assert_eq!(
        tsdb.metadata(),
        vec![("http_requests_total".to_string(), metadata)]
    );
}

#[test]
fn concurrent_committers_share_commits_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    const THREADS: usize = 8;
    const BATCHES: usize = 40;
    const SERIES_PER_BATCH: usize = 50;
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let tsdb = &tsdb;
            scope.spawn(move || {
                let thread_label = thread.to_string();
                for batch in 0..BATCHES {
                    let mut appender = tsdb.appender();
                    for series in 0..SERIES_PER_BATCH {
                        let series_label = series.to_string();
                        let labels = [
                            ("__name__", "load"),
                            ("series", series_label.as_str()),
                            ("thread", thread_label.as_str()),
                        ];
                        appender
                            .append(
                                &labels,
                                batch as i64 * 1000,
                                (thread * 1_000_000 + batch) as f64,
                            )
                            .unwrap();
                    }
                    let outcome = appender.commit().unwrap();
                    assert_eq!(outcome.samples_appended, SERIES_PER_BATCH as u64);
                }
            });
        }
    });
    let stats = tsdb.stats();
    assert_eq!(stats.batches, (THREADS * BATCHES) as u64);
    assert!(
        stats.commits < stats.batches,
        "no group commit happened: {stats:?}"
    );
    assert_eq!(stats.series, (THREADS * SERIES_PER_BATCH) as u64);
    let result = select(
        &tsdb,
        i64::MIN,
        i64::MAX,
        &[Matcher::equal("__name__", "load")],
    );
    assert_eq!(result.len(), THREADS * SERIES_PER_BATCH);
    for series in &result {
        let thread: usize = series.labels.get("thread").unwrap().parse().unwrap();
        let expected: Vec<(i64, u64)> = (0..BATCHES)
            .map(|batch| {
                (
                    batch as i64 * 1000,
                    ((thread * 1_000_000 + batch) as f64).to_bits(),
                )
            })
            .collect();
        assert_eq!(bits(&series.samples), expected);
    }
}

/// Readers running while chunks are sealed out of the head must see every
/// committed sample exactly once: no gap (a chunk neither in their head copy
/// nor in their read transaction) and no duplicate (a chunk in both).
#[test]
fn readers_racing_with_sealing_see_no_gap_and_no_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    const COMMITS: i64 = 600;
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for t in 0..COMMITS {
                // Two samples per commit: a chunk is cut every 60 commits.
                commit(
                    &tsdb,
                    &[
                        (UP_A, 2 * t, 2.0 * t as f64),
                        (UP_A, 2 * t + 1, (2 * t + 1) as f64),
                    ],
                );
                if t % 97 == 0 {
                    tsdb.flush_open_chunks(std::time::Duration::ZERO).unwrap();
                }
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        scope.spawn(|| {
            let mut checks = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) || checks == 0 {
                let result = select(&tsdb, i64::MIN, i64::MAX, &[]);
                if let Some(series) = result.first() {
                    for (index, sample) in series.samples.iter().enumerate() {
                        assert_eq!(sample.t, index as i64, "gap or duplicate at {index}");
                        assert_eq!(sample.v, index as f64);
                    }
                }
                checks += 1;
            }
        });
    });
    let result = select(&tsdb, i64::MIN, i64::MAX, &[]);
    assert_eq!(result[0].samples.len(), 2 * COMMITS as usize);
    assert!(tsdb.stats().stored_chunks >= 10);
}

/// A selection wide enough to be decoded on two threads, of series whose
/// samples lie partly in sealed chunks (two 2-hour partitions) and partly in
/// the open head chunk: every series comes back complete, in time order,
/// without duplicates, sorted by labels, for full and partial ranges and for
/// `select_latest`.
#[test]
fn wide_selection_over_chunks_and_head_is_complete_and_ordered() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path());
    const SERIES: usize = 1200;
    const STEPS: i64 = 300;
    const STEP_MS: i64 = 30_000;
    let instances: Vec<String> = (0..SERIES)
        .map(|index| format!("host-{index:04}"))
        .collect();
    let value_of = |series: usize, step: i64| (series as i64 * 1_000 + step) as f64 * 0.5;
    for first_step in (0..STEPS).step_by(25) {
        let mut appender = tsdb.appender();
        for step in first_step..(first_step + 25).min(STEPS) {
            for (series, instance) in instances.iter().enumerate() {
                let labels = [("__name__", "wide"), ("instance", instance.as_str())];
                appender
                    .append(&labels, step * STEP_MS, value_of(series, step))
                    .expect("append");
            }
        }
        appender.commit().expect("commit");
    }
    assert!(tsdb.stats().stored_chunks >= SERIES as u64);
    let matcher = [m(MatchOp::Equal, "__name__", "wide")];
    for (first_step, last_step) in [(0, STEPS - 1), (100, 280), (250, STEPS - 1), (5, 60)] {
        let result = select(&tsdb, first_step * STEP_MS, last_step * STEP_MS, &matcher);
        assert_eq!(result.len(), SERIES, "range {first_step}..={last_step}");
        for (series, one) in result.iter().enumerate() {
            assert_eq!(one.labels.get("instance"), Some(instances[series].as_str()));
            let want: Vec<(i64, u64)> = (first_step..=last_step)
                .map(|step| (step * STEP_MS, value_of(series, step).to_bits()))
                .collect();
            assert_eq!(bits(&one.samples), want, "series {series}");
        }
    }
    let querier = tsdb.querier().expect("querier");
    for last_step in [STEPS - 1, 200, 50] {
        let latest = querier
            .select_latest(0, last_step * STEP_MS, &matcher)
            .expect("select_latest");
        assert_eq!(latest.len(), SERIES);
        for (series, one) in latest.iter().enumerate() {
            assert_eq!(
                bits(&one.samples),
                vec![(last_step * STEP_MS, value_of(series, last_step).to_bits())]
            );
        }
    }
}
