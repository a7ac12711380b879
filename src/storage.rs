//! The storage boundary: the traits the rest of guardia writes and reads
//! through. Only `tsdb` implements them; `promql`, `scrape`, `rules` and
//! `api` see these traits and never a redb or head type. Writes follow
//! Prometheus's appender shape (queue samples, then commit), with one
//! difference that matters: `commit` returns only once the batch is durable.

use crate::model::{Labels, Matcher, MetricMetadata, Sample, Timestamp};

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A commit failed earlier; no write is acknowledged until restart.
    #[error("storage refuses writes after a failed commit: {0}")]
    Poisoned(String),
    #[error("storage is shutting down")]
    Closed,
    #[error("storage backend error: {0}")]
    Backend(String),
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("invalid series: {0}")]
    InvalidSeries(String),
}

/// What a commit did with the samples it was given. Samples that were not
/// appended are counted by reason; none of them is silently lost.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitOutcome {
    pub samples_appended: u64,
    pub series_created: u64,
    /// Same series, same timestamp, same value bits as a stored sample: idempotent.
    pub duplicates: u64,
    /// Older than the newest sample of its series: rejected.
    pub out_of_order: u64,
    /// Same series and timestamp as a stored sample but a different value: rejected.
    pub duplicate_timestamp: u64,
    /// Up to a few rejected series in text form, for the response to the client.
    pub rejected_examples: Vec<String>,
}

impl CommitOutcome {
    pub fn rejected(&self) -> u64 {
        self.out_of_order + self.duplicate_timestamp
    }
}

/// Names a series inside one store, for `Appender::append_ref`.
pub type SeriesRef = u32;

/// Creates appenders. Implemented by `tsdb::Tsdb`.
pub trait Appendable: Send + Sync {
    fn appender(&self) -> Box<dyn Appender + '_>;
}

/// A batch under construction. Nothing is visible or durable before `commit`;
/// dropping an appender discards the batch.
pub trait Appender {
    /// Queues one sample. `labels` must be sorted by name with unique names
    /// and no empty values, `__name__` included (see `model::Labels`).
    fn append(&mut self, labels: &[(&str, &str)], t: Timestamp, v: f64)
    -> Result<(), StorageError>;

    /// Like `append`, and returns the series' reference when the series
    /// already exists in the store (`None` when this batch creates it).
    /// A caller may keep the reference, keyed by the text the series came
    /// from (Prometheus's scrape cache does the same), and pass it to
    /// `append_ref` later instead of the labels, while
    /// `series_refs_generation` still answers the same number.
    fn append_and_get_ref(
        &mut self,
        labels: &[(&str, &str)],
        t: Timestamp,
        v: f64,
    ) -> Result<Option<SeriesRef>, StorageError>;

    /// Queues one sample for the series `series_ref` names (a reference
    /// from `append_and_get_ref` of this store, taken while
    /// `series_refs_generation` had its current value): no label checks,
    /// no lookup. A series removed by retention after the generation was
    /// read has its samples rejected at commit, as with `append`.
    fn append_ref(
        &mut self,
        series_ref: SeriesRef,
        t: Timestamp,
        v: f64,
    ) -> Result<(), StorageError>;

    /// Changes whenever a reference handed out earlier may have stopped
    /// naming its series (retention removed series). Kept references must
    /// be dropped when it changes.
    fn series_refs_generation(&self) -> u64;

    /// Records `# TYPE`/`# HELP`/`# UNIT` for a metric family, committed with the batch.
    fn set_metadata(&mut self, metric: &str, metadata: &MetricMetadata);

    /// Number of samples queued so far.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lets the store hold this batch back up to `delay` before committing,
    /// so batches arriving within that time share one transaction and one
    /// fsync. For writers that can wait (a scrape loop: its next scrape does
    /// not depend on this one); durability and all-or-nothing are unchanged,
    /// `commit` still returns only after the fsync. Default: no wait.
    fn allow_commit_delay(&mut self, delay: std::time::Duration) {
        let _ = delay;
    }

    /// Room for `samples` more samples, when the caller knows the batch
    /// size (a scrape: about the last one's); saves regrowing it.
    fn reserve(&mut self, samples: usize) {
        let _ = samples;
    }

    /// Makes the batch durable (fsync'd) and visible, then reports what was
    /// stored. Blocks the calling thread; call it off the async runtime.
    fn commit(self: Box<Self>) -> Result<CommitOutcome, StorageError>;

    /// Like `commit`, but returns without waiting: `done` gets the same
    /// result once the batch is durable (or refused), called from whatever
    /// thread finishes the commit, or is dropped uncalled if the store shuts
    /// down first. Lets an async caller await a oneshot instead of parking
    /// an OS thread for the whole wait. Default: `commit` in place (blocks).
    fn commit_then(self: Box<Self>, done: CommitCallback) {
        done(self.commit());
    }
}

/// Receives the result of `Appender::commit_then`.
pub type CommitCallback = Box<dyn FnOnce(Result<CommitOutcome, StorageError>) + Send>;

/// One series with the samples of a time range, in time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// Opens consistent read views. Implemented by `tsdb::Tsdb`.
pub trait Queryable: Send + Sync {
    /// A snapshot: data committed after this call is not seen by the querier.
    fn querier(&self) -> Result<Box<dyn Querier + '_>, StorageError>;

    /// Metadata of every metric family seen, by metric name.
    fn metadata(&self) -> Vec<(String, MetricMetadata)>;
}

/// Reads one snapshot. Time bounds `mint`/`maxt` are inclusive milliseconds.
pub trait Querier {
    /// Series matching all matchers, with their samples in `[mint, maxt]`
    /// (staleness markers included), sorted by labels. Series without a
    /// sample in the range are omitted.
    fn select(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError>;

    /// Like `select`, but each series carries only its newest sample in
    /// `[mint, maxt]` (a staleness marker included): all an instant selector
    /// reads, which lets the store skip decoding and older chunks.
    fn select_latest(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        let mut series = self.select(mint, maxt, matchers)?;
        for one in &mut series {
            let newest = one.samples.last().copied();
            one.samples.clear();
            one.samples.extend(newest);
        }
        Ok(series)
    }

    /// Like `select_latest`, in any order: for a caller whose result cannot
    /// show the order, which spares the store sorting every label set.
    fn select_latest_any_order(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        self.select_latest(mint, maxt, matchers)
    }

    /// Label sets of the series matching all matchers that have data in the range, sorted.
    fn series(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Labels>, StorageError>;

    /// Sorted label names of matching series (all series when `matchers` is empty).
    fn label_names(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError>;

    /// Sorted values of label `name` over matching series.
    fn label_values(
        &self,
        name: &str,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError>;
}

/// The small keyed tables beside the series: alert state of the rules,
/// later SLA incidents and the notification outbox. Each names its own
/// redb table so the data of one never shadows another's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateTable {
    /// Active alerts per rule group (pending `for` timers and
    /// `keep_firing_for` included), restored at start.
    Rules,
    /// SLA incidents, their timelines and clocks.
    Incidents,
    /// Notifications waiting for delivery, and notification group state.
    Outbox,
    /// Silences, as Alertmanager keeps them.
    Silences,
}

/// Durable key → value storage for state that is not a time series. Keys
/// and values are opaque bytes; callers encode values with `postcard`.
/// Every `put` and `delete` is durable (fsync'd) when it returns.
pub trait StateStore: Send + Sync {
    fn put_state(&self, table: StateTable, key: &[u8], value: &[u8]) -> Result<(), StorageError>;

    fn get_state(&self, table: StateTable, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;

    /// True when the key existed.
    fn delete_state(&self, table: StateTable, key: &[u8]) -> Result<bool, StorageError>;

    /// Every entry whose key starts with `prefix`, in key order.
    fn scan_state(&self, table: StateTable, prefix: &[u8]) -> Result<StateEntries, StorageError>;
}

/// Key and value pairs of a state scan, in key order.
pub type StateEntries = Vec<(Vec<u8>, Vec<u8>)>;
