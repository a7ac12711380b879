//! Fuzzes the PromQL front end and evaluator: arbitrary query text (through
//! the duration/modifier rewriter, the parser and the engine) over a small
//! fixed data set must never panic, only answer or return an error.

#![no_main]

use libfuzzer_sys::fuzz_target;

use guardia::model::{Labels, Matcher, MetricMetadata, Sample, matches_all, stale_nan};
use guardia::promql::{Engine, EngineOptions, QueryOptions};
use guardia::storage::{Querier, Queryable, Series, StorageError};

struct FixedStore {
    series: Vec<(Labels, Vec<Sample>)>,
}

impl Queryable for FixedStore {
    fn querier(&self) -> Result<Box<dyn Querier + '_>, StorageError> {
        Ok(Box::new(FixedQuerier { store: self }))
    }

    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        Vec::new()
    }
}

struct FixedQuerier<'a> {
    store: &'a FixedStore,
}

impl Querier for FixedQuerier<'_> {
    fn select(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        Ok(self
            .store
            .series
            .iter()
            .filter(|(labels, _)| matches_all(matchers, labels))
            .map(|(labels, samples)| Series {
                labels: labels.clone(),
                samples: samples
                    .iter()
                    .filter(|sample| sample.t >= mint && sample.t <= maxt)
                    .copied()
                    .collect(),
            })
            .filter(|series| !series.samples.is_empty())
            .collect())
    }

    /// Reversed, so the engine's any-order paths see an order unlike the sorted one.
    fn select_latest_any_order(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<Vec<Series>, StorageError> {
        let mut series = self.select_latest(mint, maxt, matchers)?;
        series.reverse();
        Ok(series)
    }

    fn series(&self, mint: i64, maxt: i64, matchers: &[Matcher]) -> Result<Vec<Labels>, StorageError> {
        Ok(self.select(mint, maxt, matchers)?.into_iter().map(|s| s.labels).collect())
    }

    fn label_names(&self, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn label_values(&self, _: &str, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

fn store() -> FixedStore {
    let counter: Vec<Sample> = (0..40).map(|i| Sample { t: i * 15_000, v: (i * 7 % 50) as f64 }).collect();
    let mut gauge: Vec<Sample> = (0..40).map(|i| Sample { t: i * 15_000, v: (i as f64).sin() }).collect();
    gauge.push(Sample { t: 40 * 15_000, v: stale_nan() });
    let mut series = vec![
        (Labels::from_pairs([("__name__", "requests_total"), ("job", "a")]), counter.clone()),
        (Labels::from_pairs([("__name__", "requests_total"), ("job", "b")]), counter),
        (Labels::from_pairs([("__name__", "temperature"), ("instance", "x")]), gauge),
        (Labels::from_pairs([("__name__", "target_info"), ("instance", "x"), ("version", "1")]), vec![Sample { t: 0, v: 1.0 }]),
    ];
    for (index, le) in ["0.1", "1", "+Inf"].iter().enumerate() {
        series.push((
            Labels::from_pairs([("__name__", "latency_bucket"), ("le", *le)]),
            (0..40).map(|i| Sample { t: i * 15_000, v: (i * (index as i64 + 1)) as f64 }).collect(),
        ));
    }
    // The `Querier` contract: answers are sorted by labels.
    series.sort_by(|a, b| a.0.cmp(&b.0));
    FixedStore { series }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if text.len() > 512 {
        return;
    }
    let store = store();
    let engine = Engine::new(EngineOptions {
        max_samples: 200_000,
        timeout: std::time::Duration::from_secs(2),
        ..EngineOptions::default()
    });
    let _ = engine.instant_query(&store, text, 300_000, QueryOptions::default());
    let _ = engine.range_query(&store, text, 0, 600_000, 60_000, QueryOptions::default());
});
