//! The appender: validates label sets, resolves each sample's series under
//! a brief head read lock (no allocation for a known series), queues label
//! sets of unknown series, and hands the batch to the commit thread. Nothing
//! is visible or durable before `commit` returns.

use std::collections::HashMap;
use std::sync::mpsc::sync_channel;

use crate::model::{Labels, MetricMetadata, Timestamp, hash_label_pairs};
use crate::storage::{Appender, CommitOutcome, SeriesRef, StorageError};
use crate::tsdb::Tsdb;
use crate::tsdb::commit::{Batch, BatchSample, Message, PENDING_SERIES_BIT};

pub struct TsdbAppender<'a> {
    tsdb: &'a Tsdb,
    batch: Batch,
    /// Label hash → indexes into `batch.new_series`, to queue each new series once.
    pending_by_hash: HashMap<u64, Vec<u32>, foldhash::fast::RandomState>,
}

impl<'a> TsdbAppender<'a> {
    pub fn new(tsdb: &'a Tsdb) -> TsdbAppender<'a> {
        TsdbAppender {
            tsdb,
            batch: Batch::default(),
            pending_by_hash: HashMap::default(),
        }
    }
}

impl TsdbAppender<'_> {
    #[inline]
    fn push_sample(&mut self, series_ref: u32, t: Timestamp, v: f64) {
        if self.batch.samples.capacity() == 0 {
            // Skips the first doublings: batches are scrapes of hundreds of samples or more.
            self.batch.samples.reserve(512);
        }
        self.batch.samples.push(BatchSample {
            series_ref,
            t,
            value_bits: v.to_bits(),
        });
    }
}

/// Checks the canonical form `storage::Appender::append` promises.
fn check_labels(labels: &[(&str, &str)]) -> Result<(), StorageError> {
    if labels.is_empty() {
        return Err(StorageError::InvalidSeries("empty label set".to_string()));
    }
    let mut previous: Option<&str> = None;
    for (name, value) in labels {
        if name.is_empty() {
            return Err(StorageError::InvalidSeries("empty label name".to_string()));
        }
        if value.is_empty() {
            return Err(StorageError::InvalidSeries(format!(
                "label {name:?} has an empty value"
            )));
        }
        if previous.is_some_and(|previous| previous >= *name) {
            return Err(StorageError::InvalidSeries(format!(
                "labels not sorted by unique name at {name:?}"
            )));
        }
        previous = Some(name);
    }
    Ok(())
}

impl Appender for TsdbAppender<'_> {
    fn append(
        &mut self,
        labels: &[(&str, &str)],
        t: Timestamp,
        v: f64,
    ) -> Result<(), StorageError> {
        self.append_returning_ref(labels, t, v).map(|_| ())
    }

    fn append_ref(
        &mut self,
        series: SeriesRef,
        t: Timestamp,
        v: f64,
    ) -> Result<bool, StorageError> {
        let Ok(slot) = u32::try_from(series.0) else {
            return Ok(false);
        };
        // Slots are never reused, so a live slot is still the series the ref
        // was handed out for; a deleted one stays empty.
        if slot & PENDING_SERIES_BIT != 0 || self.tsdb.shared.head.read().series(slot).is_none() {
            return Ok(false);
        }
        self.push_sample(slot, t, v);
        Ok(true)
    }

    fn append_returning_ref(
        &mut self,
        labels: &[(&str, &str)],
        t: Timestamp,
        v: f64,
    ) -> Result<Option<SeriesRef>, StorageError> {
        check_labels(labels)?;
        let hash = hash_label_pairs(labels);
        let found = self.tsdb.shared.head.read().lookup(hash, labels);
        let series_ref = match found {
            Some(slot) => slot,
            None => {
                let new_series = &self.batch.new_series;
                let existing = self.pending_by_hash.get(&hash).and_then(|indexes| {
                    indexes.iter().copied().find(|index| {
                        let (_, queued) = &new_series[*index as usize];
                        queued.len() == labels.len()
                            && queued.iter().zip(labels).all(|(label, (name, value))| {
                                label.name == *name && label.value == *value
                            })
                    })
                });
                let index = match existing {
                    Some(index) => index,
                    None => {
                        let index = self.batch.new_series.len() as u32;
                        if index >= PENDING_SERIES_BIT {
                            return Err(StorageError::InvalidSeries(
                                "too many new series in one batch".to_string(),
                            ));
                        }
                        self.batch
                            .new_series
                            .push((hash, Labels::from_pairs(labels.iter().copied())));
                        self.pending_by_hash.entry(hash).or_default().push(index);
                        index
                    }
                };
                index | PENDING_SERIES_BIT
            }
        };
        self.push_sample(series_ref, t, v);
        Ok((series_ref & PENDING_SERIES_BIT == 0).then_some(SeriesRef(u64::from(series_ref))))
    }

    fn set_metadata(&mut self, metric: &str, metadata: &MetricMetadata) {
        self.batch
            .metadata
            .push((metric.to_string(), metadata.clone()));
    }

    fn len(&self) -> usize {
        self.batch.samples.len()
    }

    fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        if let Some(reason) = self.tsdb.shared.poison_reason() {
            return Err(StorageError::Poisoned(reason));
        }
        if self.batch.samples.is_empty() && self.batch.metadata.is_empty() {
            return Ok(CommitOutcome::default());
        }
        let (reply, answer) = sync_channel(1);
        self.tsdb.send(Message::Commit(self.batch, reply))?;
        answer.recv().map_err(|_| StorageError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_checks_reject_non_canonical_sets() {
        assert!(check_labels(&[("__name__", "up"), ("job", "x")]).is_ok());
        assert!(matches!(
            check_labels(&[]),
            Err(StorageError::InvalidSeries(_))
        ));
        assert!(matches!(
            check_labels(&[("b", "1"), ("a", "1")]),
            Err(StorageError::InvalidSeries(_))
        ));
        assert!(matches!(
            check_labels(&[("a", "1"), ("a", "2")]),
            Err(StorageError::InvalidSeries(_))
        ));
        assert!(matches!(
            check_labels(&[("a", "")]),
            Err(StorageError::InvalidSeries(_))
        ));
        assert!(matches!(
            check_labels(&[("", "x")]),
            Err(StorageError::InvalidSeries(_))
        ));
    }
}
