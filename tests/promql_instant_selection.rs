//! The instant-query fast paths against the general ones, over a real store
//! in a temporary directory: `select_latest` at a time between a series'
//! last head samples (the sample before the last is read back from the
//! Gorilla code, not decoded), the unsorted `select_latest_any_order`, and
//! `count`/`group` of a selector, which aggregate members in storage order
//! and must still give the groups, values and group order of the general
//! path (the same aggregation over `selector * 1`).

use std::sync::Arc;

use guardia::model::{Labels, MatchOp, Matcher, Sample, stale_nan};
use guardia::promql::{Engine, EngineOptions, QueryOptions, Value};
use guardia::storage::{Appendable, Queryable, Series};
use guardia::tsdb::{Options, Tsdb};

/// Enough series for the store's two-thread selection path.
const SERIES: usize = 600;
const STEPS: i64 = 30;
const STEP_MS: i64 = 15_000;
const JOBS: [&str; 4] = ["web", "api", "db", "zz"];

fn instance_of(series: usize) -> String {
    format!("i{series:03}")
}

/// `None` for series without a job label.
fn job_of(series: usize) -> Option<&'static str> {
    (series % 11 != 5).then(|| JOBS[(series * 7 / 3) % JOBS.len()])
}

/// Values that open new XOR windows, reuse them and repeat; every seventh
/// series ends with a staleness marker.
fn value_of(series: usize, step: i64) -> f64 {
    if step == STEPS - 1 && series.is_multiple_of(7) {
        return stale_nan();
    }
    match step % 4 {
        0 => series as f64 * 0.25 + step as f64,
        1 => series as f64 * 0.25 + step as f64,
        2 => -(step as f64) * 1e-3,
        _ => (series as f64 + 1.0).powf(step as f64 / 7.0),
    }
}

/// Time of `step`, with a jitter like a scrape's so deltas of delta vary.
fn time_of(series: usize, step: i64) -> i64 {
    step * STEP_MS + ((series as i64 + step) % 5)
}

/// A store whose series are created in the reverse of their label order,
/// so storage order (series id) and label order differ.
fn store() -> (tempfile::TempDir, Arc<Tsdb>) {
    let directory = tempfile::tempdir().expect("tempdir");
    let tsdb = Tsdb::open(directory.path(), Options::default()).expect("open store");
    for step in 0..STEPS {
        let mut appender = tsdb.appender();
        for series in (0..SERIES).rev() {
            let instance = instance_of(series);
            let mut labels = vec![("__name__", "probe"), ("instance", instance.as_str())];
            if let Some(job) = job_of(series) {
                labels.push(("job", job));
            }
            appender
                .append(&labels, time_of(series, step), value_of(series, step))
                .expect("append");
        }
        appender.commit().expect("commit");
    }
    (directory, tsdb)
}

fn probe() -> Vec<Matcher> {
    vec![Matcher::new(MatchOp::Equal, "__name__", "probe").expect("matcher")]
}

fn series_index(labels: &Labels) -> usize {
    let instance = labels.get("instance").expect("instance label");
    instance[1..].parse().expect("instance number")
}

/// (series, t, value bits) of a selection, in its order.
fn flatten(selection: &[Series]) -> Vec<(usize, i64, u64)> {
    selection
        .iter()
        .flat_map(|one| {
            let index = series_index(&one.labels);
            one.samples
                .iter()
                .map(move |sample: &Sample| (index, sample.t, sample.v.to_bits()))
        })
        .collect()
}

#[test]
fn select_latest_between_the_last_samples_returns_the_one_before_in_either_order() {
    let (_directory, tsdb) = store();
    let querier = tsdb.querier().expect("querier");
    // Just before the newest scrape (the sample before the last answers),
    // in the middle of the chunk (decoded), and after the last sample.
    for wanted_step in [STEPS - 2, STEPS - 3, 10, STEPS - 1] {
        let maxt = (wanted_step + 1) * STEP_MS - 10;
        let mint = maxt - 300_000;
        let sorted = querier
            .select_latest(mint, maxt, &probe())
            .expect("select_latest");
        let want: Vec<(usize, i64, u64)> = (0..SERIES)
            .map(|series| {
                (
                    series,
                    time_of(series, wanted_step),
                    value_of(series, wanted_step).to_bits(),
                )
            })
            .collect();
        assert_eq!(flatten(&sorted), want, "sorted, step {wanted_step}");
        let mut any_order = querier
            .select_latest_any_order(mint, maxt, &probe())
            .expect("select_latest_any_order");
        assert_eq!(any_order.len(), SERIES);
        any_order.sort_by(|a, b| a.labels.cmp(&b.labels));
        assert_eq!(flatten(&any_order), want, "any order, step {wanted_step}");
    }
}

#[test]
fn select_latest_any_order_skips_the_label_sort() {
    let (_directory, tsdb) = store();
    let querier = tsdb.querier().expect("querier");
    let maxt = STEPS * STEP_MS;
    let any_order = querier
        .select_latest_any_order(maxt - 300_000, maxt, &probe())
        .expect("select_latest_any_order");
    // Series ids follow creation, the reverse of the label order.
    let first = series_index(&any_order[0].labels);
    let last = series_index(&any_order[SERIES - 1].labels);
    assert_eq!((first, last), (SERIES - 1, 0));
}

fn instant(tsdb: &Tsdb, query: &str, time_ms: i64) -> Vec<(Labels, i64, u64)> {
    let engine = Engine::new(EngineOptions::default());
    let result = engine
        .instant_query(tsdb, query, time_ms, QueryOptions::default())
        .unwrap_or_else(|error| panic!("{query}: {error}"));
    let Value::Vector(samples) = result.value else {
        panic!("{query}: expected a vector, got {:?}", result.value);
    };
    samples
        .into_iter()
        .map(|sample| (sample.labels, sample.t, sample.v.to_bits()))
        .collect()
}

#[test]
fn count_and_group_of_a_selector_match_the_general_path_in_value_and_order() {
    let (_directory, tsdb) = store();
    let aggregations = [
        "count by (job) (SELECTOR)",
        "group by (job) (SELECTOR)",
        "count without (instance) (SELECTOR)",
        "count(SELECTOR)",
        "count by (job, instance) (SELECTOR)",
        "count by (nonexistent) ((SELECTOR))",
    ];
    for time_ms in [
        (STEPS - 1) * STEP_MS - 10,
        STEPS * STEP_MS,
        12 * STEP_MS + 3,
    ] {
        for aggregation in aggregations {
            let fast = instant(&tsdb, &aggregation.replace("SELECTOR", "probe"), time_ms);
            let general = instant(
                &tsdb,
                &aggregation.replace("SELECTOR", "probe * 1"),
                time_ms,
            );
            assert!(!fast.is_empty(), "{aggregation} at {time_ms}");
            assert_eq!(fast, general, "{aggregation} at {time_ms}");
        }
    }
}

#[test]
fn count_by_job_orders_groups_by_their_first_member_and_skips_stale_series() {
    let (_directory, tsdb) = store();
    let after_last = STEPS * STEP_MS;
    let result = instant(&tsdb, "count by (job) (probe)", after_last);
    // Members sort by instance, so a group's first member is its lowest
    // instance; stale series are not members.
    let mut want: Vec<(Option<&str>, u64)> = Vec::new();
    for series in (0..SERIES).filter(|series| !series.is_multiple_of(7)) {
        match want.iter_mut().find(|group| group.0 == job_of(series)) {
            Some(group) => group.1 += 1,
            None => want.push((job_of(series), 1)),
        }
    }
    let got: Vec<(Option<&str>, u64)> = result
        .iter()
        .map(|(labels, t, bits)| {
            assert_eq!(*t, after_last);
            (labels.get("job"), f64::from_bits(*bits) as u64)
        })
        .collect();
    assert_eq!(got, want);
}
