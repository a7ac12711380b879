//! The per-series range evaluator against the step-by-step one: random
//! expressions from a small grammar (selectors with offsets, the rate family,
//! `*_over_time`, aggregations with grouping, binary operators, subqueries)
//! over a real `Tsdb` holding counters with resets, gauges, scrape gaps and
//! staleness markers, at random range-query bounds and steps. Both paths
//! must give the same series, timestamps, bit-identical values, the same
//! annotations in the same order, or the same error.

use std::sync::{Arc, OnceLock};

use guardia::model::stale_nan;
use guardia::promql::{Engine, QueryOptions, QueryResult, Value};
use guardia::storage::Appendable;
use guardia::tsdb::{Options, Tsdb};
use proptest::prelude::*;

const START_MS: i64 = 1_000_000;
const SCRAPE_MS: i64 = 15_000;
const SCRAPES: i64 = 200;

struct Store {
    _directory: tempfile::TempDir,
    tsdb: Arc<Tsdb>,
}

/// Deterministic pseudo-random numbers, so the store is the same every run.
fn next_random(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A bucket bound per mode, so that `c_bucket` forms histograms by job.
fn le_of_mode(mode: &str) -> &'static str {
    match mode {
        "idle" => "0.1",
        "user" => "1",
        _ => "+Inf",
    }
}

fn store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let directory = tempfile::tempdir().unwrap();
        let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
        let mut random = 7u64;
        let mut appender = tsdb.appender();
        let instances = ["i1", "i2", "i3"];
        let modes = ["idle", "user", "system"];
        for instance in instances {
            for mode in modes {
                for (metric, counter) in [("a_total", true), ("b", false), ("c_bucket", true)] {
                    let mut value = (next_random(&mut random) % 100) as f64;
                    let mut stale_until = -1i64;
                    for scrape in 0..SCRAPES {
                        let roll = next_random(&mut random) % 100;
                        if scrape < stale_until || roll < 4 {
                            continue; // a gap
                        }
                        let t = START_MS + scrape * SCRAPE_MS + (roll as i64 % 3);
                        let labels = [
                            ("__name__", metric),
                            ("instance", instance),
                            ("job", if instance == "i3" { "other" } else { "node" }),
                            ("le", le_of_mode(mode)),
                            ("mode", mode),
                        ];
                        if roll < 6 {
                            appender.append(&labels, t, stale_nan()).unwrap();
                            stale_until = scrape + 25;
                            continue;
                        }
                        if counter {
                            if roll < 8 {
                                value = (roll % 3) as f64; // a reset
                            } else {
                                value += (next_random(&mut random) % 50) as f64;
                            }
                        } else {
                            value = (next_random(&mut random) % 1000) as f64 / 7.0 - 40.0;
                        }
                        appender.append(&labels, t, value).unwrap();
                    }
                }
            }
        }
        appender.commit().unwrap();
        Store {
            _directory: directory,
            tsdb,
        }
    })
}

fn selector() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        Just("a_total".to_string()),
        Just("b".to_string()),
        Just("c_bucket".to_string()),
        Just("a_total{mode=\"idle\"}".to_string()),
        Just("b{instance=~\"i1|i3\"}".to_string()),
        Just("{__name__=~\"a_total|b\"}".to_string()),
        Just("nothing_here".to_string()),
    ];
    let offset = prop_oneof![
        Just(String::new()),
        Just(" offset 1m".to_string()),
        Just(" offset 7m".to_string()),
        Just(" offset -2m".to_string()),
    ];
    (base, offset).prop_map(|(base, offset)| format!("{base}{offset}"))
}

fn range_selector() -> impl Strategy<Value = String> {
    let range = prop_oneof![Just("30s"), Just("1m"), Just("2m"), Just("5m"), Just("11m")];
    let offset = prop_oneof![Just(""), Just(" offset 1m"), Just(" offset 4m")];
    let base = prop_oneof![
        Just("a_total"),
        Just("b"),
        Just("c_bucket"),
        Just("{__name__=~\"a_total|b\"}"),
    ];
    (base, range, offset).prop_map(|(base, range, offset)| format!("{base}[{range}]{offset}"))
}

fn instant_expression() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        selector(),
        (
            prop_oneof![
                Just("rate"),
                Just("increase"),
                Just("delta"),
                Just("irate"),
                Just("idelta"),
                Just("sum_over_time"),
                Just("max_over_time"),
            ],
            range_selector()
        )
            .prop_map(|(function, range)| format!("{function}({range})")),
        Just("max_over_time(rate(a_total[2m])[5m:1m])".to_string()),
        Just("vector(3)".to_string()),
    ];
    leaf.prop_recursive(3, 16, 3, |inner| {
        let operator = prop_oneof![
            Just("sum"),
            Just("avg"),
            Just("count"),
            Just("min"),
            Just("max"),
            Just("group"),
            Just("stddev"),
            Just("stdvar"),
        ];
        let grouping = prop_oneof![
            Just(""),
            Just(" by (mode)"),
            Just(" by (job, instance)"),
            Just(" without (instance)"),
            Just(" by (__name__)"),
            Just(" without ()"),
        ];
        let binary = prop_oneof![
            Just(" + "),
            Just(" / "),
            Just(" > "),
            Just(" < bool "),
            Just(" - on (mode, job) "),
            Just(" * ignoring (instance) "),
            Just(" != on (mode) "),
            Just(" and "),
            Just(" or "),
            Just(" unless "),
        ];
        prop_oneof![
            (operator, grouping, inner.clone())
                .prop_map(|(operator, grouping, inner)| format!("{operator}{grouping} ({inner})")),
            (inner.clone(), binary, inner.clone())
                .prop_map(|(left, operator, right)| format!("({left}){operator}({right})")),
            inner.clone().prop_map(|inner| format!("1 - ({inner})")),
            inner.clone().prop_map(|inner| format!("({inner}) * 2")),
            inner.clone().prop_map(|inner| format!("({inner}) > 20")),
            inner
                .clone()
                .prop_map(|inner| format!("10 >= bool ({inner})")),
            inner.clone().prop_map(|inner| format!("-({inner})")),
            inner.clone().prop_map(|inner| format!("topk(2, {inner})")),
            inner
                .clone()
                .prop_map(|inner| format!("timestamp({inner})")),
            inner
                .clone()
                .prop_map(|inner| format!("histogram_quantile(0.9, sum by (le, job) ({inner}))")),
            inner.prop_map(|inner| format!("avg_over_time(({inner})[3m:30s])")),
        ]
    })
}

/// Bit-exact comparison (NaN equals NaN).
fn same_results(
    fast: &Result<QueryResult, guardia::promql::QueryError>,
    reference: &Result<QueryResult, guardia::promql::QueryError>,
) -> Result<(), String> {
    match (fast, reference) {
        (Err(a), Err(b)) if a.to_string() == b.to_string() => Ok(()),
        (Ok(a), Ok(b)) => {
            if a.warnings != b.warnings || a.infos != b.infos {
                return Err(format!(
                    "annotations differ: {:?} {:?} vs {:?} {:?}",
                    a.warnings, a.infos, b.warnings, b.infos
                ));
            }
            match (&a.value, &b.value) {
                (Value::Matrix(left), Value::Matrix(right)) => {
                    if left.len() != right.len() {
                        return Err(format!("{} series vs {}", left.len(), right.len()));
                    }
                    for (one, other) in left.iter().zip(right) {
                        if one.labels != other.labels || one.samples.len() != other.samples.len() {
                            return Err(format!("series {:?} vs {:?}", one.labels, other.labels));
                        }
                        for (x, y) in one.samples.iter().zip(&other.samples) {
                            if x.t != y.t || !(x.v.to_bits() == y.v.to_bits() || x.v == y.v) {
                                return Err(format!("{:?}: {x:?} vs {y:?}", one.labels));
                            }
                        }
                    }
                    Ok(())
                }
                (left, right) if left == right => Ok(()),
                (left, right) => Err(format!("{left:?} vs {right:?}")),
            }
        }
        (a, b) => Err(format!("{a:?} vs {b:?}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    #[test]
    fn range_evaluator_equals_step_evaluator(
        expression in instant_expression(),
        start_scrape in 0i64..SCRAPES,
        span_minutes in 0i64..40,
        step_seconds in prop_oneof![Just(7i64), Just(15), Just(60), Just(150)],
    ) {
        let tsdb = store().tsdb.as_ref();
        let engine = Engine::default();
        let start = START_MS + start_scrape * SCRAPE_MS - 3_000;
        let end = start + span_minutes * 60_000;
        let step = step_seconds * 1000;
        let fast = engine.range_query(tsdb, &expression, start, end, step, QueryOptions::default());
        let reference = engine.range_query_step_by_step(
            tsdb, &expression, start, end, step, QueryOptions::default(),
        );
        if let Err(difference) = same_results(&fast, &reference) {
            prop_assert!(false, "{expression} [{start}, {end}] step {step}: {difference}");
        }
    }
}

#[test]
fn the_range_evaluator_covers_the_benchmark_shapes() {
    // Sanity check that the comparison is not vacuous: these produce data.
    let tsdb = store().tsdb.as_ref();
    let engine = Engine::default();
    let start = START_MS + 60 * SCRAPE_MS;
    for expression in [
        "sum by (mode) (rate(a_total[5m]))",
        "rate(a_total[5m])",
        "histogram_quantile(0.9, sum by (le, job) (rate(c_bucket[5m])))",
        "1 - b / b",
    ] {
        let result = engine
            .range_query(
                tsdb,
                expression,
                start,
                start + 1_800_000,
                SCRAPE_MS,
                QueryOptions::default(),
            )
            .unwrap();
        let Value::Matrix(series) = &result.value else {
            panic!("{expression}: not a matrix");
        };
        assert!(!series.is_empty(), "{expression}: no series");
        let reference = engine.range_query_step_by_step(
            tsdb,
            expression,
            start,
            start + 1_800_000,
            SCRAPE_MS,
            QueryOptions::default(),
        );
        let outcome = same_results(&Ok(result), &reference);
        assert!(outcome.is_ok(), "{expression}: {outcome:?}");
    }
}

/// A store wide enough that the range evaluator computes rates on two
/// threads and the querier sorts the selection on two threads.
fn wide_store() -> &'static Store {
    static STORE: OnceLock<Store> = OnceLock::new();
    STORE.get_or_init(|| {
        let directory = tempfile::tempdir().unwrap();
        let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
        let mut random = 11u64;
        let mut appender = tsdb.appender();
        for instance in 0..9000 {
            let instance_name = format!("host-{instance}");
            let job = if instance % 7 == 0 { "edge" } else { "node" };
            let mode = ["idle", "user", "system"][instance % 3];
            let mut value = (next_random(&mut random) % 100) as f64;
            for scrape in 0..40 {
                let roll = next_random(&mut random) % 100;
                if roll < 3 {
                    continue; // a gap
                }
                if roll < 6 {
                    value = (roll % 3) as f64; // a reset
                } else {
                    value += (next_random(&mut random) % 1000) as f64 / 7.0;
                }
                let labels = [
                    ("__name__", "w_total"),
                    ("instance", instance_name.as_str()),
                    ("job", job),
                    ("mode", mode),
                ];
                let t = START_MS + scrape * SCRAPE_MS + (roll as i64 % 5);
                appender.append(&labels, t, value).unwrap();
            }
        }
        appender.commit().unwrap();
        Store {
            _directory: directory,
            tsdb,
        }
    })
}

#[test]
fn the_two_thread_range_path_equals_the_step_evaluator_bit_for_bit() {
    let tsdb = wide_store().tsdb.as_ref();
    let engine = Engine::default();
    let start = START_MS + 10 * SCRAPE_MS;
    let end = START_MS + 39 * SCRAPE_MS;
    for expression in [
        "rate(w_total[2m])",
        "increase(w_total[1m])",
        "irate(w_total[1m])",
        "sum(rate(w_total[2m]))",
        "sum by (mode) (rate(w_total[2m]))",
        "avg by (job) (rate(w_total[2m]))",
        "stddev by (mode) (increase(w_total[2m]))",
        "count by (job) (w_total)",
        "max by (mode) (w_total) / 2",
    ] {
        let fast = engine.range_query(
            tsdb,
            expression,
            start,
            end,
            SCRAPE_MS,
            QueryOptions::default(),
        );
        let Ok(QueryResult {
            value: Value::Matrix(series),
            ..
        }) = &fast
        else {
            panic!("{expression}: {fast:?}");
        };
        assert!(!series.is_empty(), "{expression}: no series");
        let reference = engine.range_query_step_by_step(
            tsdb,
            expression,
            start,
            end,
            SCRAPE_MS,
            QueryOptions::default(),
        );
        let outcome = same_results(&fast, &reference);
        assert!(outcome.is_ok(), "{expression}: {outcome:?}");
    }
}
