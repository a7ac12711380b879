//! The appender: validates label sets, resolves each sample's series under
//! a brief head read lock (no allocation for a known series), queues label
//! sets of unknown series, and hands the batch to the commit thread. Nothing
//! is visible or durable before `commit` returns.

use std::collections::HashMap;
use std::sync::mpsc::sync_channel;

use crate::model::{Labels, MetricMetadata, Timestamp, hash_label_pairs};
use crate::storage::{Appender, CommitCallback, CommitOutcome, SeriesRef, StorageError};
use crate::tsdb::Tsdb;
use crate::tsdb::commit::{Batch, BatchSample, CommitReply, Message, PENDING_SERIES_BIT};

pub struct TsdbAppender<'a> {
    tsdb: &'a Tsdb,
    batch: Batch,
    /// Label hash → indexes into `batch.new_series`, to queue each new series once.
    pending_by_hash: HashMap<u64, Vec<u32>, foldhash::fast::RandomState>,
    /// Largest reference passed to `append_ref`, checked once at commit
    /// (not per sample, which would take the head lock per sample): the
    /// commit thread reads a slot past the head as a series the group creates.
    largest_appended_ref: Option<SeriesRef>,
}

impl<'a> TsdbAppender<'a> {
    pub fn new(tsdb: &'a Tsdb) -> TsdbAppender<'a> {
        TsdbAppender {
            tsdb,
            batch: Batch::default(),
            pending_by_hash: HashMap::default(),
            largest_appended_ref: None,
        }
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

impl TsdbAppender<'_> {
    /// Queues a sample; answers the head slot when the series exists.
    fn append_by_labels(
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
        Ok(found)
    }

    #[inline]
    fn push_sample(&mut self, series_ref: u32, t: Timestamp, v: f64) {
        if self.batch.samples.capacity() == 0 {
            // Skips the first doublings: batches are scrapes of hundreds of samples or more.
            self.batch.samples = self.tsdb.shared.sample_buffers.take(512);
        }
        self.batch.samples.push(BatchSample {
            series_ref,
            t,
            value_bits: v.to_bits(),
        });
    }
}

impl Appender for TsdbAppender<'_> {
    fn append(
        &mut self,
        labels: &[(&str, &str)],
        t: Timestamp,
        v: f64,
    ) -> Result<(), StorageError> {
        self.append_by_labels(labels, t, v).map(|_| ())
    }

    fn append_and_get_ref(
        &mut self,
        labels: &[(&str, &str)],
        t: Timestamp,
        v: f64,
    ) -> Result<Option<SeriesRef>, StorageError> {
        self.append_by_labels(labels, t, v)
    }

    fn append_ref(
        &mut self,
        series_ref: SeriesRef,
        t: Timestamp,
        v: f64,
    ) -> Result<(), StorageError> {
        // The commit thread resolves the slot and rejects (counted, with a
        // message) samples of a series removed in the meantime.
        if series_ref & PENDING_SERIES_BIT != 0 {
            return Err(StorageError::InvalidSeries(format!(
                "series reference {series_ref} was not handed out by this store"
            )));
        }
        self.largest_appended_ref = self.largest_appended_ref.max(Some(series_ref));
        self.push_sample(series_ref, t, v);
        Ok(())
    }

    fn series_refs_generation(&self) -> u64 {
        self.tsdb.shared.head.read().removed_series_total
    }

    fn set_metadata(&mut self, metric: &str, metadata: &MetricMetadata) {
        // Scrape-shaped bodies repeat the same HELP/TYPE every time; the
        // commit thread would drop them as unchanged too, after two clones.
        if self.tsdb.shared.metadata.read().get(metric) == Some(metadata) {
            return;
        }
        self.batch
            .metadata
            .push((metric.to_string(), metadata.clone()));
    }

    fn allow_commit_delay(&mut self, delay: std::time::Duration) {
        self.batch.commit_within = delay;
    }

    fn reserve(&mut self, samples: usize) {
        if self.batch.samples.capacity() == 0 {
            self.batch.samples = self.tsdb.shared.sample_buffers.take(samples);
        } else {
            self.batch.samples.reserve(samples);
        }
    }

    fn len(&self) -> usize {
        self.batch.samples.len()
    }

    fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError> {
        let (reply, answer) = sync_channel(1);
        if let Some(done_early) = (*self).submit(CommitReply::Blocking(reply))? {
            return Ok(done_early);
        }
        answer.recv().map_err(|_| StorageError::Closed)?
    }

    fn commit_then(self: Box<Self>, done: CommitCallback) {
        // What is decided before the commit thread answers through `done`
        // here; after the send, the commit thread calls it.
        match self.check_before_send() {
            Err(error) => done(Err(error)),
            Ok(Some(outcome)) => done(Ok(outcome)),
            Ok(None) => {
                let tsdb = self.tsdb;
                if let Err(error) =
                    tsdb.send(Message::Commit(self.batch, CommitReply::Notify(done)))
                {
                    // The message (and `done` in it) was dropped with the
                    // closed channel; the caller sees its receiver closed.
                    tracing::debug!(%error, "commit thread gone before a batch was sent");
                }
            }
        }
    }
}

impl TsdbAppender<'_> {
    /// What `commit` decides without the commit thread: a poisoned store,
    /// an empty batch (`Some`: nothing to store), a reference never handed out.
    fn check_before_send(&self) -> Result<Option<CommitOutcome>, StorageError> {
        if let Some(reason) = self.tsdb.shared.poison_reason() {
            return Err(StorageError::Poisoned(reason));
        }
        if self.batch.samples.is_empty() && self.batch.metadata.is_empty() {
            return Ok(Some(CommitOutcome::default()));
        }
        if let Some(largest) = self.largest_appended_ref
            && largest >= self.tsdb.shared.head.read().next_slot()
        {
            return Err(StorageError::InvalidSeries(format!(
                "series reference {largest} was not handed out by this store"
            )));
        }
        Ok(None)
    }

    /// Checks, then hands the batch to the commit thread with `reply`;
    /// `Some` when nothing needed sending.
    fn submit(self, reply: CommitReply) -> Result<Option<CommitOutcome>, StorageError> {
        if let Some(outcome) = self.check_before_send()? {
            return Ok(Some(outcome));
        }
        self.tsdb.send(Message::Commit(self.batch, reply))?;
        Ok(None)
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
