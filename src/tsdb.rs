//! The time-series store: head (open chunks in memory), postings, the redb
//! tables, the commit thread, sealing, log truncation, retention and the
//! querier. The only module that touches redb; everything else reaches it
//! through the `storage` traits.
//!
//! # Map
//!
//! - `encoding`: byte layouts of every stored value (log records, labels,
//!   chunk keys and values, tails, partition totals); decoders never panic.
//! - `tables`: the redb table definitions and `meta` rows.
//! - `symbols`: label strings stored once; series rows are symbol ids.
//! - `head`, `postings`: series in memory, label hash index, inverted index.
//! - `appender`: resolves series and queues a batch (no I/O).
//! - `commit`: the commit thread (group commit, validation, sealing, log
//!   truncation, flush, retention apply); the single writer of redb and head.
//! - `startup`: open, format check, load series, replay the log.
//! - `querier`: reads one consistent view of head + chunks.
//! - `retention`: the pure retention planner.
//! - `block`, `compaction`: closed partitions rewritten into blocks (one
//!   redb value per run of series, timestamps stored once per column).
//! - `fault`: fault-injecting redb backend for crash tests.
//!
//! # Invariants
//!
//! - A sample becomes visible only after the write transaction holding its
//!   log record committed with `Durability::Immediate`.
//! - Per series, samples are strictly increasing in time across sealed
//!   chunks, the open chunk and the log.
//! - A chunk never spans two 2-hour partitions.
//! - A log record is deleted only when no open chunk holds a sample from it.
//! - After a failed commit nothing more is acknowledged (poisoned).

mod appender;
pub mod block;
mod commit;
pub mod compaction;
pub mod encoding;
pub mod fault;
mod head;
mod metrics;
mod postings;
mod querier;
pub mod retention;
mod startup;
mod state;
mod symbols;
mod tables;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::config;
use crate::model::{MetricMetadata, Timestamp};
use crate::storage::{self, StorageError};
use crate::telemetry;

pub use fault::FaultInjection;
pub use retention::RetentionReport;

use commit::Message;
use head::Head;
use metrics::TsdbMetrics;

/// Samples per chunk before it is cut. 120 samples is a chunk of 30 min at
/// a 15 s scrape interval: long enough that Gorilla encoding reaches ~1.3
/// bytes per sample, short enough that decoding a chunk to answer a query
/// over its last minutes stays cheap (the Prometheus choice, for the same reasons).
pub const MAX_SAMPLES_PER_CHUNK: usize = 120;

/// Default of `Options::cache_bytes` and `--storage.cache-size`.
pub const DEFAULT_CACHE_BYTES: usize = 4 << 20;

/// Tuning of the store. `Default` gives production values.
#[derive(Clone, Debug)]
pub struct Options {
    pub retention: config::Retention,
    /// How often the commit thread checks for open chunks to force-seal
    /// (series that stopped receiving samples would otherwise pin the log).
    pub flush_interval: Duration,
    /// An open chunk whose first log record is older than this is sealed by
    /// the periodic flush. Bounds both log size and replay time at start.
    pub open_chunk_max_age: Duration,
    /// When the log exceeds this many bytes, the periodic flush also seals
    /// the open chunks holding the older half of it.
    pub log_max_bytes: u64,
    /// Depth of the bounded queue in front of the commit thread.
    pub commit_queue_depth: usize,
    /// Loose chunks one compaction transaction merges (then it ends at the
    /// next series boundary). Writes wait behind one step at a time, so
    /// this bounds the ingest stall a compaction causes: a partition of
    /// 200k chunks took 100 steps of about 90 ms on the 2-core machine
    /// under load, where it used to hold writes for all 9 s.
    pub compaction_step_chunks: u64,
    /// redb page cache (reads and writes). Recent chunks and the log stay
    /// cached; the operating system's page cache holds the rest. Small by
    /// default: it is resident memory of its own, while the pages it would
    /// hold stay in the OS page cache anyway (`--storage.cache-size`).
    pub cache_bytes: usize,
    /// Crash tests only: route redb I/O through a fault-injecting backend.
    pub fault_injection: Option<Arc<FaultInjection>>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            retention: config::Retention::default(),
            flush_interval: Duration::from_secs(60),
            open_chunk_max_age: Duration::from_secs(3 * 60 * 60),
            log_max_bytes: 256 << 20,
            commit_queue_depth: 256,
            compaction_step_chunks: 2048,
            cache_bytes: DEFAULT_CACHE_BYTES,
            fault_injection: None,
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TsdbError {
    #[error("cannot create storage directory {path}: {message}")]
    CreateDirectory { path: PathBuf, message: String },
    #[error("database error while {context}: {message}")]
    Database {
        context: &'static str,
        message: String,
    },
    #[error(
        "storage format version {found} was written by a newer guardia; this one reads up to version {supported}"
    )]
    NewerFormat { found: u64, supported: u64 },
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    #[error("storage is closed")]
    Closed,
    #[error("storage refuses writes after a failed commit: {0}")]
    Poisoned(String),
}

impl From<TsdbError> for StorageError {
    fn from(error: TsdbError) -> StorageError {
        match error {
            TsdbError::Poisoned(reason) => StorageError::Poisoned(reason),
            TsdbError::Closed => StorageError::Closed,
            TsdbError::Corrupt(reason) => StorageError::Corrupt(reason),
            other => StorageError::Backend(other.to_string()),
        }
    }
}

/// Adds what the store was doing to a redb error.
trait RedbContext<T> {
    fn context(self, context: &'static str) -> Result<T, TsdbError>;
}

impl<T, E: Into<redb::Error>> RedbContext<T> for Result<T, E> {
    fn context(self, context: &'static str) -> Result<T, TsdbError> {
        self.map_err(|error| TsdbError::Database {
            context,
            message: error.into().to_string(),
        })
    }
}

/// A summary of the store for the status page and logs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TsdbStats {
    pub series: u64,
    pub head_samples: u64,
    /// Open (non-empty) head chunks.
    pub head_chunks: u64,
    /// Approximate bytes held by head structures.
    pub head_memory_bytes: u64,
    pub stored_chunks: u64,
    pub stored_chunk_bytes: u64,
    pub partitions: u64,
    pub database_bytes: u64,
    pub log_bytes: u64,
    pub newest_t: Option<Timestamp>,
    pub oldest_t: Option<Timestamp>,
    /// Up to ten metric names with the most series, most first.
    pub top_metric_names: Vec<(String, u64)>,
    pub commits: u64,
    pub batches: u64,
    pub chunks_sealed: u64,
    pub log_records_deleted: u64,
}

/// State shared by the public handle, appenders, queriers and the commit thread.
pub(crate) struct Shared {
    database: RwLock<Option<Arc<redb::Database>>>,
    head: RwLock<Head>,
    metrics: TsdbMetrics,
    poisoned: Mutex<Option<String>>,
    /// Newest sample time in the store (`i64::MIN` when empty).
    newest_t: AtomicI64,
    /// Samples older than this are invisible (set by retention).
    retention_floor: AtomicI64,
    log_bytes: AtomicU64,
    metadata: RwLock<std::collections::BTreeMap<String, MetricMetadata>>,
    retention: config::Retention,
    database_path: PathBuf,
    /// Sample vectors of committed batches, reused by appenders.
    sample_buffers: commit::SampleBufferPool,
}

impl Shared {
    fn poison_reason(&self) -> Option<String> {
        self.poisoned.lock().clone()
    }

    fn database(&self) -> Result<Arc<redb::Database>, TsdbError> {
        self.database.read().clone().ok_or(TsdbError::Closed)
    }

    /// Oldest time a reader may see: retention is exact from the reader's
    /// view even though deletion is per partition.
    fn visible_mint(&self) -> Timestamp {
        let floor = self.retention_floor.load(Ordering::Acquire);
        let newest = self.newest_t.load(Ordering::Acquire);
        let by_time = match (self.retention.time, newest) {
            (Some(time), newest) if newest != Timestamp::MIN => {
                newest.saturating_sub(i64::try_from(time.as_millis()).unwrap_or(i64::MAX))
            }
            _ => Timestamp::MIN,
        };
        floor.max(by_time)
    }

    fn database_file_bytes(&self) -> u64 {
        std::fs::metadata(&self.database_path)
            .map(|metadata| metadata.len())
            .unwrap_or(0)
    }
}

/// The store. Open with [`Tsdb::open`]; share as `Arc<Tsdb>`.
pub struct Tsdb {
    shared: Arc<Shared>,
    sender: RwLock<Option<SyncSender<Message>>>,
    commit_thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Tsdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tsdb")
            .field("path", &self.shared.database_path)
            .finish_non_exhaustive()
    }
}

impl Tsdb {
    /// Opens (or creates) the store in `dir` (file `<dir>/guardia.redb`),
    /// loads the series index and replays the log, then starts the commit thread.
    pub fn open(dir: &Path, options: Options) -> Result<Arc<Tsdb>, TsdbError> {
        startup::open(dir, options)
    }

    /// Stops accepting writes, lets the commit thread finish what is
    /// queued, and closes the database file cleanly.
    pub fn close(&self) -> Result<(), TsdbError> {
        let Some(sender) = self.sender.write().take() else {
            return Ok(());
        };
        let (reply, answer) = sync_channel(1);
        let drained = sender.send(Message::Shutdown(reply)).is_ok() && answer.recv().is_ok();
        drop(sender);
        if let Some(thread) = self.commit_thread.lock().take() {
            let _ = thread.join();
        }
        let database = self.shared.database.write().take();
        if let Some(database) = database {
            // A reader still holding the database closes it when it drops.
            if let Ok(database) = Arc::try_unwrap(database) {
                database.close().context("closing the database")?;
            }
        }
        if drained {
            Ok(())
        } else {
            Err(TsdbError::Closed)
        }
    }

    /// False once a commit failed (poisoned) or the store was closed.
    pub fn is_ready(&self) -> bool {
        self.shared.poisoned.lock().is_none() && self.sender.read().is_some()
    }

    fn send(&self, message: Message) -> Result<(), TsdbError> {
        let sender = self.sender.read();
        let sender = sender.as_ref().ok_or(TsdbError::Closed)?;
        sender.send(message).map_err(|_| TsdbError::Closed)
    }

    /// Deletes data outside the retention limits (time from the newest
    /// sample, and size). The server calls this every minute.
    pub fn apply_retention(&self) -> Result<RetentionReport, TsdbError> {
        let (reply, answer) = sync_channel(1);
        self.send(Message::Retention(reply))?;
        answer.recv().map_err(|_| TsdbError::Closed)?
    }

    /// Seals every open chunk whose first log record is older than
    /// `older_than` (zero: all of them) and truncates the log. The commit
    /// thread does this by itself every `flush_interval`; tests and
    /// maintenance call it directly. Returns the number of chunks sealed.
    pub fn flush_open_chunks(&self, older_than: Duration) -> Result<u64, TsdbError> {
        let (reply, answer) = sync_channel(1);
        self.send(Message::Flush {
            older_than,
            reply: Some(reply),
        })?;
        answer.recv().map_err(|_| TsdbError::Closed)?
    }

    /// Rewrites closed partitions into blocks (`compaction.rs`); with
    /// `force`, every partition that has loose chunks, closed or not. The
    /// commit thread compacts closed partitions by itself after each
    /// periodic flush; maintenance and benchmarks call this directly.
    pub fn compact_partitions(
        &self,
        force: bool,
    ) -> Result<compaction::CompactionReport, TsdbError> {
        let (reply, answer) = sync_channel(1);
        self.send(Message::Compact {
            force,
            reply: Some(reply),
        })?;
        answer.recv().map_err(|_| TsdbError::Closed)?
    }

    /// Number of records in the log table (what a restart would replay).
    pub fn log_record_count(&self) -> Result<u64, TsdbError> {
        querier::log_record_count(self)
    }

    pub fn stats(&self) -> TsdbStats {
        let head = self.shared.head.read();
        let mut head_samples = 0u64;
        let mut head_chunks = 0u64;
        let mut oldest: Option<Timestamp> = None;
        for series in head.series.iter().flatten() {
            let length = series.chunk.len() as u64;
            head_samples += length;
            if length > 0 {
                head_chunks += 1;
            }
            if series.min_t != Timestamp::MAX {
                oldest = Some(oldest.map_or(series.min_t, |oldest| oldest.min(series.min_t)));
            }
        }
        let mut top_metric_names: Vec<(String, u64)> =
            match head.symbols.find(crate::model::METRIC_NAME) {
                Some(name) => head
                    .postings
                    .values_of(name)
                    .map(|(value, list)| (head.symbols.get(value).to_string(), list.len() as u64))
                    .collect(),
                None => Vec::new(),
            };
        top_metric_names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top_metric_names.truncate(10);
        let newest = self.shared.newest_t.load(Ordering::Acquire);
        let visible_mint = self.shared.visible_mint();
        let metrics = &self.shared.metrics;
        TsdbStats {
            series: head.live_series as u64,
            head_samples,
            head_chunks,
            head_memory_bytes: head.memory_bytes() as u64,
            stored_chunks: head.partitions.values().map(|p| p.chunks).sum(),
            stored_chunk_bytes: head.partitions.values().map(|p| p.bytes).sum(),
            partitions: head.partitions.len() as u64,
            database_bytes: self.shared.database_file_bytes(),
            log_bytes: self.shared.log_bytes.load(Ordering::Relaxed),
            newest_t: (newest != Timestamp::MIN).then_some(newest),
            oldest_t: oldest.map(|oldest| oldest.max(visible_mint)),
            top_metric_names,
            commits: metrics.commits.get(),
            batches: metrics.batches.get(),
            chunks_sealed: metrics.chunks_sealed.get(),
            log_records_deleted: metrics.log_records_deleted.get(),
        }
    }

    pub fn render_metrics(&self, out: &mut telemetry::Exposition) {
        let metrics = &self.shared.metrics;
        metrics
            .head_series
            .set(self.shared.head.read().live_series as f64);
        metrics
            .database_bytes
            .set(self.shared.database_file_bytes() as f64);
        metrics
            .log_bytes
            .set(self.shared.log_bytes.load(Ordering::Relaxed) as f64);
        metrics
            .poisoned
            .set(if self.shared.poisoned.lock().is_some() {
                1.0
            } else {
                0.0
            });
        metrics.render(out);
    }
}

impl Drop for Tsdb {
    fn drop(&mut self) {
        // Without close(): the commit thread finishes what is queued and
        // exits when the channel disconnects; redb closes on drop.
        drop(self.sender.write().take());
        if let Some(thread) = self.commit_thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl storage::Appendable for Tsdb {
    fn appender(&self) -> Box<dyn storage::Appender + '_> {
        Box::new(appender::TsdbAppender::new(self))
    }
}

impl storage::Queryable for Tsdb {
    fn querier(&self) -> Result<Box<dyn storage::Querier + '_>, StorageError> {
        Ok(Box::new(querier::TsdbQuerier::new(self)?))
    }

    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        self.shared
            .metadata
            .read()
            .iter()
            .map(|(name, metadata)| (name.clone(), metadata.clone()))
            .collect()
    }
}
