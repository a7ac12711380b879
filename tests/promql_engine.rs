//! Engine behaviour that the PromQL test scripts do not cover: limits,
//! timeouts, error kinds and the result shapes the HTTP layer renders, over
//! a real `Tsdb` in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use guardia::model::{Labels, stale_nan};
use guardia::promql::{Engine, EngineOptions, QueryError, QueryOptions, Value};
use guardia::storage::Appendable;
use guardia::tsdb::{Options, Tsdb};

/// A series to load: its label pairs and its (t, v) samples.
type SeriesData<'a> = (&'a [(&'a str, &'a str)], Vec<(i64, f64)>);

fn store_with(series: &[SeriesData<'_>]) -> (tempfile::TempDir, Arc<Tsdb>) {
    let directory = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
    let mut appender = tsdb.appender();
    for (labels, samples) in series {
        for (t, v) in samples {
            appender.append(labels, *t, *v).unwrap();
        }
    }
    appender.commit().unwrap();
    (directory, tsdb)
}

fn counter_store() -> (tempfile::TempDir, Arc<Tsdb>) {
    let samples: Vec<(i64, f64)> = (0..=20).map(|i| (i * 15_000, i as f64 * 30.0)).collect();
    store_with(&[
        (
            &[("__name__", "requests_total"), ("job", "api")],
            samples.clone(),
        ),
        (&[("__name__", "requests_total"), ("job", "web")], samples),
    ])
}

#[test]
fn rate_over_a_counter_is_its_slope() {
    let (_directory, tsdb) = counter_store();
    let engine = Engine::new(EngineOptions::default());
    let result = engine
        .instant_query(
            tsdb.as_ref(),
            "sum(rate(requests_total[1m]))",
            300_000,
            QueryOptions::default(),
        )
        .unwrap();
    let Value::Vector(samples) = result.value else {
        panic!("expected a vector, got {:?}", result.value);
    };
    assert_eq!(samples.len(), 1);
    assert_eq!(samples[0].labels, Labels::empty());
    assert!((samples[0].v - 4.0).abs() < 1e-9, "got {}", samples[0].v);
    assert_eq!(samples[0].t, 300_000);
}

#[test]
fn range_query_returns_one_series_per_label_set_sorted() {
    let (_directory, tsdb) = counter_store();
    let engine = Engine::new(EngineOptions::default());
    let result = engine
        .range_query(
            tsdb.as_ref(),
            "requests_total",
            0,
            60_000,
            30_000,
            QueryOptions::default(),
        )
        .unwrap();
    let Value::Matrix(series) = result.value else {
        panic!("expected a matrix");
    };
    assert_eq!(series.len(), 2);
    assert_eq!(series[0].labels.get("job"), Some("api"));
    assert_eq!(series[1].labels.get("job"), Some("web"));
    let points: Vec<(i64, f64)> = series[0].samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(points, vec![(0, 0.0), (30_000, 60.0), (60_000, 120.0)]);
}

#[test]
fn staleness_marker_ends_the_series_before_the_lookback_runs_out() {
    let (_directory, tsdb) = store_with(&[(
        &[("__name__", "up")],
        vec![(0, 1.0), (15_000, 1.0), (30_000, stale_nan())],
    )]);
    let engine = Engine::new(EngineOptions::default());
    let at_15s = engine
        .instant_query(tsdb.as_ref(), "up", 15_000, QueryOptions::default())
        .unwrap();
    assert!(matches!(&at_15s.value, Value::Vector(v) if v.len() == 1));
    let at_45s = engine
        .instant_query(tsdb.as_ref(), "up", 45_000, QueryOptions::default())
        .unwrap();
    assert!(matches!(&at_45s.value, Value::Vector(v) if v.is_empty()));
}

#[test]
fn lookback_override_narrows_the_instant_window() {
    let (_directory, tsdb) = store_with(&[(&[("__name__", "up")], vec![(0, 1.0)])]);
    let engine = Engine::new(EngineOptions::default());
    let default_lookback = engine
        .instant_query(tsdb.as_ref(), "up", 60_000, QueryOptions::default())
        .unwrap();
    assert!(matches!(&default_lookback.value, Value::Vector(v) if v.len() == 1));
    let short = engine
        .instant_query(
            tsdb.as_ref(),
            "up",
            60_000,
            QueryOptions {
                lookback_delta_ms: Some(30_000),
            },
        )
        .unwrap();
    assert!(matches!(&short.value, Value::Vector(v) if v.is_empty()));
}

#[test]
fn too_many_samples_is_an_error_not_an_allocation() {
    let (_directory, tsdb) = counter_store();
    let engine = Engine::new(EngineOptions {
        max_samples: 10,
        ..EngineOptions::default()
    });
    let error = engine
        .range_query(
            tsdb.as_ref(),
            "requests_total",
            0,
            300_000,
            15_000,
            QueryOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(error, QueryError::TooManySamples), "got {error:?}");
    assert_eq!(
        error.to_string(),
        "query processing would load too many samples into memory in query execution"
    );
}

#[test]
fn an_expired_deadline_times_out() {
    let (_directory, tsdb) = counter_store();
    let engine = Engine::new(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    });
    let error = engine
        .range_query(
            tsdb.as_ref(),
            "rate(requests_total[1m])",
            0,
            300_000,
            1_000,
            QueryOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(error, QueryError::Timeout), "got {error:?}");
}

#[test]
fn errors_are_classified() {
    let (_directory, tsdb) = counter_store();
    let engine = Engine::new(EngineOptions::default());
    let parse = engine
        .instant_query(tsdb.as_ref(), "sum(", 0, QueryOptions::default())
        .unwrap_err();
    assert!(matches!(parse, QueryError::Parse { .. }), "got {parse:?}");
    let execution = engine
        .instant_query(
            tsdb.as_ref(),
            "requests_total + on() requests_total",
            300_000,
            QueryOptions::default(),
        )
        .unwrap_err();
    assert!(
        matches!(execution, QueryError::Execution(_)),
        "got {execution:?}"
    );
    let resolution = engine
        .range_query(
            tsdb.as_ref(),
            "requests_total",
            0,
            100_000_000,
            1_000,
            QueryOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(resolution, QueryError::Execution(ref m) if m.contains("11,000")));
    let range_vector = engine
        .range_query(
            tsdb.as_ref(),
            "requests_total[1m]",
            0,
            60_000,
            15_000,
            QueryOptions::default(),
        )
        .unwrap_err();
    assert!(matches!(range_vector, QueryError::Execution(ref m) if m.contains("range vector")));
}

#[test]
fn rate_of_a_gauge_name_adds_an_info_annotation() {
    let samples: Vec<(i64, f64)> = (0..=8).map(|i| (i * 15_000, i as f64)).collect();
    let (_directory, tsdb) = store_with(&[(&[("__name__", "temperature")], samples)]);
    let engine = Engine::new(EngineOptions::default());
    let result = engine
        .instant_query(
            tsdb.as_ref(),
            "rate(temperature[1m])",
            120_000,
            QueryOptions::default(),
        )
        .unwrap();
    assert_eq!(
        result.infos,
        vec![
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"temperature\" (1:6)"
                .to_string()
        ]
    );
    assert!(result.warnings.is_empty());
}

#[test]
fn scalar_and_string_results_keep_their_type() {
    let (_directory, tsdb) = counter_store();
    let engine = Engine::new(EngineOptions::default());
    let scalar = engine
        .instant_query(tsdb.as_ref(), "1 + 2 * 3", 5_000, QueryOptions::default())
        .unwrap();
    assert_eq!(scalar.value, Value::Scalar { t: 5_000, v: 7.0 });
    let string = engine
        .instant_query(tsdb.as_ref(), "\"hello\"", 5_000, QueryOptions::default())
        .unwrap();
    assert_eq!(
        string.value,
        Value::String {
            t: 5_000,
            value: "hello".into()
        }
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "requests_total",
        "temperature",
        "{job=\"api\"}",
        "[1m]",
        "[5m:30s]",
        "[2m] anchored",
        "[1m] smoothed",
        " offset 1m",
        " offset -step()",
        " @ 60",
        " @ end()",
        "(",
        ")",
        " + ",
        " / on(job) group_left ",
        " and ",
        " or ",
        " > bool ",
        "sum by (job) (",
        "rate(",
        "histogram_quantile(0.9, ",
        "topk(2, ",
        "quantile(NaN, ",
        "count_values(\"v\", ",
        "label_replace(",
        ", \"a\", \"$1\", \"job\", \"(.*)\")",
        "info(",
        "scalar(",
        "vector(1)",
        "time()",
        "-",
        "2",
        "NaN",
        "[30m+step()]",
        "absent(",
        "sort_desc(",
        "predict_linear(",
        ", 60)",
        "deriv(",
        "changes(",
        "limit_ratio(0.5, ",
        "limitk(1, ",
        ",",
        "stddev(",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn arbitrary_compositions_answer_or_fail(indices in proptest::collection::vec(0..PIECES.len(), 1..10)) {
            static STORE: std::sync::OnceLock<(tempfile::TempDir, Arc<Tsdb>)> = std::sync::OnceLock::new();
            let (_, tsdb) = STORE.get_or_init(counter_store);
            let engine = Engine::new(EngineOptions::default());
            let query: String = indices.iter().map(|index| PIECES[*index]).collect();
            let _ = engine.instant_query(tsdb.as_ref(), &query, 300_000, QueryOptions::default());
            let _ = engine.range_query(tsdb.as_ref(), &query, 0, 300_000, 60_000, QueryOptions::default());
        }
    }
}
