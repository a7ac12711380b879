//! Interim in-memory store implementing the storage traits, used by the API
//! tests until `tsdb::Tsdb` is merged. Same rules as the storage contract:
//! nothing visible before commit, out-of-order and duplicate-timestamp
//! samples rejected and counted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use guardia::api::Store;
use guardia::model::{Labels, Matcher, MetricMetadata, Sample, Timestamp, matches_all};
use guardia::storage::{
    Appendable, Appender, CommitOutcome, Querier, Queryable, Series, StorageError,
};
use guardia::telemetry::Exposition;
use parking_lot::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    series: Mutex<BTreeMap<Labels, Vec<Sample>>>,
    metadata: Mutex<BTreeMap<String, MetricMetadata>>,
    poisoned: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> Arc<MemoryStore> {
        Arc::new(MemoryStore::default())
    }

    pub fn poison(&self) {
        self.poisoned.store(true, Ordering::SeqCst);
    }
}

struct MemoryAppender<'a> {
    store: &'a MemoryStore,
    queued: Vec<(Labels, Sample)>,
    metadata: Vec<(String, MetricMetadata)>,
}

impl Appendable for MemoryStore {
    fn appender(&self) -> Box<dyn Appender + '_> {
        Box::new(MemoryAppender {
            store: self,
            queued: Vec::new(),
            metadata: Vec::new(),
        })
    }
}

impl Appender for MemoryAppender<'_> {
    fn append(
        &mut self,
        labels: &[(&str, &str)],
        t: Timestamp,
        v: f64,
    ) -> Result<(), StorageError> {
        self.queued
            .push((Labels::from_pairs(labels.iter().copied()), Sample { t, v }));
        Ok(())
    }

    fn set_metadata(&mut self, metric: &str, metadata: &MetricMetadata) {
        self.metadata.push((metric.to_string(), metadata.clone()));
    }

    fn len(&self) -> usize {
        self.queued.len()
    }

    fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        if self.store.poisoned.load(Ordering::SeqCst) {
            return Err(StorageError::Poisoned("test poison".into()));
        }
        let mut outcome = CommitOutcome::default();
        let mut series = self.store.series.lock();
        for (labels, sample) in self.queued {
            let samples = series.entry(labels.clone()).or_default();
            match samples.last() {
                Some(last) if sample.t < last.t => {
                    outcome.out_of_order += 1;
                    outcome
                        .rejected_examples
                        .push(format!("{labels} @{}: out of order", sample.t));
                }
                Some(last) if sample.t == last.t && sample.v.to_bits() == last.v.to_bits() => {
                    outcome.duplicates += 1;
                }
                Some(last) if sample.t == last.t => {
                    outcome.duplicate_timestamp += 1;
                    outcome
                        .rejected_examples
                        .push(format!("{labels} @{}: duplicate timestamp", sample.t));
                }
                _ => {
                    samples.push(sample);
                    outcome.samples_appended += 1;
                }
            }
        }
        series.retain(|_, samples| !samples.is_empty());
        let mut metadata = self.store.metadata.lock();
        for (metric, entry) in self.metadata {
            metadata.insert(metric, entry);
        }
        Ok(outcome)
    }
}

struct MemoryQuerier {
    snapshot: BTreeMap<Labels, Vec<Sample>>,
}

impl Queryable for MemoryStore {
    fn querier(&self) -> Result<Box<dyn Querier + '_>, StorageError> {
        Ok(Box::new(MemoryQuerier {
            snapshot: self.series.lock().clone(),
        }))
    }

    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        self.metadata
            .lock()
            .iter()
            .map(|(metric, entry)| (metric.clone(), entry.clone()))
            .collect()
    }
}

impl Querier for MemoryQuerier {
    fn select(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        Ok(self
            .snapshot
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

    fn series(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .select(mint, maxt, matchers)?
            .into_iter()
            .map(|series| series.labels)
            .collect())
    }

    fn label_names(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let mut names: Vec<String> = self
            .series(mint, maxt, matchers)?
            .iter()
            .flat_map(|labels| {
                labels
                    .iter()
                    .map(|label| label.name.clone())
                    .collect::<Vec<_>>()
            })
            .collect();
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn label_values(
        &self,
        name: &str,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let mut values: Vec<String> = self
            .series(mint, maxt, matchers)?
            .iter()
            .filter_map(|labels| labels.get(name).map(str::to_string))
            .collect();
        values.sort();
        values.dedup();
        Ok(values)
    }
}

impl Store for MemoryStore {
    fn is_ready(&self) -> bool {
        !self.poisoned.load(Ordering::SeqCst)
    }

    fn render_metrics(&self, exposition: &mut Exposition) {
        exposition.gauge(
            "guardia_test_store_series",
            "Series in the test store.",
            self.series.lock().len() as f64,
        );
    }
}
