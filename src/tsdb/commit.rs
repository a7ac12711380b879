//! The commit thread: the single writer of redb and of the head. It takes a
//! closed set of messages over a bounded channel. A `Commit` is merged with
//! every other commit already queued (group commit: one write transaction
//! and one fsync for all of them), validated against each series' newest
//! sample, written as one log record plus new series and sealed chunks,
//! committed with `Durability::Immediate`, and only then applied to the head
//! and acknowledged. A failed commit poisons the store.
//!
//! Per accepted sample the thread does: one hash-map probe (tentative state
//! of the series within the group), one varint encoding into the log
//! record, and one head-chunk append after the commit. Everything else is
//! per series or per group.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, WriteTransaction};

use crate::chunk::{self, HeadChunk};
use crate::model::{Labels, MetricMetadata, Sample, Timestamp};
use crate::storage::{CommitCallback, CommitOutcome, StorageError};
use crate::tsdb::block::block_key;
use crate::tsdb::compaction::{CompactionReport, compact_partition, plan_compaction};
use crate::tsdb::encoding::{
    self, LogRecordBuilder, PartitionSummary, SeriesTail, chunk_key, partition_of,
};
use crate::tsdb::head::{Head, HeadSeries};
use crate::tsdb::postings::SeriesSlot;
use crate::tsdb::retention::{PartitionInfo, RetentionReport, plan_retention};
use crate::tsdb::symbols::SeriesSymbols;
use crate::tsdb::tables;
use crate::tsdb::{MAX_SAMPLES_PER_CHUNK, RedbContext, Shared, TsdbError};

/// Marks a `BatchSample::series_ref` that indexes `Batch::new_series`
/// instead of naming a head slot.
pub const PENDING_SERIES_BIT: u32 = 1 << 31;

/// A group stops absorbing queued commits past this many samples, so one
/// transaction (and the head write lock after it) stays short.
const MAX_GROUP_SAMPLES: usize = 500_000;

/// Rejected-sample examples reported back per batch.
const MAX_REJECTED_EXAMPLES: usize = 5;

const NO_INDEX: u32 = u32::MAX;

#[derive(Clone, Copy, Debug)]
pub struct BatchSample {
    /// Head slot, or `PENDING_SERIES_BIT | index into new_series`.
    pub series_ref: u32,
    pub t: Timestamp,
    pub value_bits: u64,
}

/// Most emptied sample vectors the pool keeps, and most samples of room
/// it keeps in all: enough for the scrapes in flight at once (about a tenth
/// of the targets, each about one body of samples), little next to the head.
const MAX_POOLED_SAMPLE_BUFFERS: usize = 32;
const MAX_POOLED_SAMPLES: usize = 65_536;

/// Emptied sample vectors of committed batches, handed to new appenders.
/// Without it every scrape allocates its batch (tens of KB) on a worker
/// thread and the commit thread frees it: a large allocation crossing
/// threads each time, which the profile showed at several percent of the
/// scrape CPU.
#[derive(Default)]
pub struct SampleBufferPool {
    buffers: parking_lot::Mutex<Vec<Vec<BatchSample>>>,
}

impl SampleBufferPool {
    /// An empty vector with room for at least `samples` samples.
    pub fn take(&self, samples: usize) -> Vec<BatchSample> {
        let pooled = self.buffers.lock().pop();
        let mut buffer = pooled.unwrap_or_default();
        buffer.reserve(samples);
        buffer
    }

    /// Keeps `buffer`'s allocation for a later `take` while the pool has room.
    pub fn give_back(&self, mut buffer: Vec<BatchSample>) {
        if buffer.capacity() == 0 || buffer.capacity() > MAX_POOLED_SAMPLES {
            return;
        }
        buffer.clear();
        let mut buffers = self.buffers.lock();
        let pooled_samples: usize = buffers.iter().map(Vec::capacity).sum();
        if buffers.len() < MAX_POOLED_SAMPLE_BUFFERS
            && pooled_samples + buffer.capacity() <= MAX_POOLED_SAMPLES
        {
            buffers.push(buffer);
        }
    }
}

/// What an appender hands to the commit thread.
#[derive(Debug, Default)]
pub struct Batch {
    pub samples: Vec<BatchSample>,
    /// Label sets the appender did not find in the head, with their hash.
    pub new_series: Vec<(u64, Labels)>,
    pub metadata: Vec<(String, MetricMetadata)>,
    /// How long the batch may wait for others to share its commit (see
    /// `Appender::allow_commit_delay`); zero commits with whatever is queued.
    pub commit_within: Duration,
}

/// Where a batch's outcome goes once its group is durable (or failed).
pub enum CommitReply {
    /// A thread blocked in `Appender::commit`.
    Blocking(SyncSender<Result<CommitOutcome, StorageError>>),
    /// A caller that is told instead of waiting (`Appender::commit_then`): a
    /// scrape task awaiting a oneshot holds no OS thread while the group
    /// gathers and fsyncs. Dropped uncalled when the thread stops first.
    Notify(CommitCallback),
}

impl CommitReply {
    fn send(self, result: Result<CommitOutcome, StorageError>) {
        match self {
            // A waiter that went away has nothing left to learn.
            CommitReply::Blocking(sender) => {
                let _ = sender.send(result);
            }
            CommitReply::Notify(done) => done(result),
        }
    }
}

/// Everything the commit thread does; nothing else writes redb.
pub enum Message {
    Commit(Batch, CommitReply),
    Retention(SyncSender<Result<RetentionReport, TsdbError>>),
    Flush {
        older_than: Duration,
        reply: Option<SyncSender<Result<u64, TsdbError>>>,
    },
    /// Rewrite closed partitions (all with loose chunks when `force`) into
    /// blocks; see `compaction.rs`.
    Compact {
        force: bool,
        reply: Option<SyncSender<Result<CompactionReport, TsdbError>>>,
    },
    Shutdown(SyncSender<()>),
}

/// Log and id counters handed over by startup.
pub struct CommitState {
    pub next_series_id: u64,
    pub next_log_seq: u64,
    /// Sequence and byte size of every log record present, oldest first.
    pub log_records: VecDeque<(u64, u64)>,
    /// Open head chunks counted by the log sequence of their first sample.
    pub open_chunks_by_first_seq: BTreeMap<u64, u32>,
    /// Stored label symbols, for writing new series rows.
    pub series_symbols: SeriesSymbols,
}

impl CommitState {
    /// The oldest log sequence an open chunk still needs; records below it
    /// can be truncated. `next_log_seq` when no open chunk needs the log.
    fn oldest_needed_log_seq(&self, next_log_seq: u64) -> u64 {
        self.open_chunks_by_first_seq
            .keys()
            .next()
            .copied()
            .unwrap_or(next_log_seq)
    }
}

pub struct Settings {
    pub flush_interval: Duration,
    pub open_chunk_max_age: Duration,
    pub log_max_bytes: u64,
    pub compaction_step_chunks: u64,
}

/// A series' state while a group is validated, before anything is written.
struct Tentative {
    series_id: u64,
    newest_t: Timestamp,
    newest_value_bits: u64,
    min_t: Timestamp,
    /// Samples in the open chunk (head + accepted so far in this group).
    open_len: u32,
    open_mint: Timestamp,
    initial_open: bool,
    initial_first_seq: u64,
    /// A chunk is cut in this group.
    seals: bool,
    first_accepted: u32,
    last_accepted: u32,
}

impl Tentative {
    fn from_head(series: &HeadSeries, newest_t: Timestamp) -> Tentative {
        debug_assert!(series.chunk.is_empty() || series.chunk.mint() == Some(series.chunk_mint));
        Tentative {
            series_id: series.id,
            newest_t,
            newest_value_bits: series.newest_value_bits,
            min_t: series.min_t,
            open_len: series.chunk.len() as u32,
            open_mint: series.chunk_mint,
            initial_open: !series.chunk.is_empty(),
            initial_first_seq: series.chunk_first_log_seq,
            seals: false,
            first_accepted: NO_INDEX,
            last_accepted: NO_INDEX,
        }
    }

    fn new_series(series_id: u64) -> Tentative {
        Tentative {
            series_id,
            newest_t: Timestamp::MIN,
            newest_value_bits: 0,
            min_t: Timestamp::MAX,
            open_len: 0,
            open_mint: Timestamp::MIN,
            initial_open: false,
            initial_first_seq: 0,
            seals: false,
            first_accepted: NO_INDEX,
            last_accepted: NO_INDEX,
        }
    }
}

/// An accepted sample, linked to the next accepted sample of its series so
/// sealing can walk one series without another lookup.
struct Accepted {
    next_same_series: u32,
    t: Timestamp,
    value_bits: u64,
}

struct NewSeries {
    slot: SeriesSlot,
    id: u64,
    labels: Labels,
}

/// A chunk cut from the head, ready to be written.
struct SealedChunk {
    series_id: u64,
    mint: Timestamp,
    maxt: Timestamp,
    count: u32,
    last_value_bits: u64,
    bytes: Vec<u8>,
}

impl SealedChunk {
    fn from_samples(series_id: u64, samples: &[Sample]) -> Option<SealedChunk> {
        let first = samples.first()?;
        let last = samples.last()?;
        Some(SealedChunk {
            series_id,
            mint: first.t,
            maxt: last.t,
            count: samples.len() as u32,
            last_value_bits: last.v.to_bits(),
            bytes: chunk::encode(samples),
        })
    }

    fn from_head_chunk(series_id: u64, head_chunk: &HeadChunk) -> Option<SealedChunk> {
        let last = head_chunk.last()?;
        Some(SealedChunk {
            series_id,
            mint: head_chunk.mint()?,
            maxt: last.t,
            count: head_chunk.len() as u32,
            last_value_bits: last.v.to_bits(),
            bytes: head_chunk.seal(),
        })
    }
}

/// Writes of sealed chunks prepared under the head read lock.
#[derive(Default)]
struct SealWrites {
    chunks: Vec<SealedChunk>,
    tails: Vec<(u64, SeriesTail)>,
    partitions: BTreeMap<Timestamp, PartitionSummary>,
}

impl SealWrites {
    /// Adds a chunk unless it lies entirely below the retention floor (then
    /// it would be invisible and deleted by the next retention pass anyway).
    fn add(&mut self, head: &Head, chunk: SealedChunk, floor: Timestamp) {
        if chunk.maxt < floor {
            return;
        }
        let partition_start = partition_of(chunk.mint);
        let stored_bytes = (encoding::CHUNK_KEY_BYTES
            + encoding::CHUNK_VALUE_HEADER_BYTES
            + chunk.bytes.len()) as u64;
        let summary = self.partitions.entry(partition_start).or_insert_with(|| {
            head.partitions
                .get(&partition_start)
                .copied()
                .unwrap_or(PartitionSummary {
                    bytes: 0,
                    chunks: 0,
                    mint: Timestamp::MAX,
                    maxt: Timestamp::MIN,
                })
        });
        summary.bytes += stored_bytes;
        summary.chunks += 1;
        summary.mint = summary.mint.min(chunk.mint);
        summary.maxt = summary.maxt.max(chunk.maxt);
        self.chunks.push(chunk);
    }

    fn write(&self, transaction: &WriteTransaction) -> Result<(), TsdbError> {
        if self.chunks.is_empty() {
            return Ok(());
        }
        let mut chunks = transaction
            .open_table(tables::CHUNKS)
            .context("opening the chunks table")?;
        for sealed in &self.chunks {
            let key = chunk_key(partition_of(sealed.mint), sealed.series_id, sealed.mint);
            let value = encoding::encode_chunk_value(sealed.maxt, sealed.count, &sealed.bytes);
            chunks
                .insert(key.as_slice(), value.as_slice())
                .context("writing a chunk")?;
        }
        let mut tails = transaction
            .open_table(tables::SERIES_TAIL)
            .context("opening the series_tail table")?;
        for (series_id, tail) in &self.tails {
            tails
                .insert(*series_id, encoding::encode_series_tail(tail).as_slice())
                .context("writing a series tail")?;
        }
        let mut partitions = transaction
            .open_table(tables::PARTITIONS)
            .context("opening the partitions table")?;
        for (start, summary) in &self.partitions {
            partitions
                .insert(
                    *start,
                    encoding::encode_partition_summary(summary).as_slice(),
                )
                .context("writing a partition summary")?;
        }
        Ok(())
    }
}

pub struct CommitThread {
    shared: Arc<Shared>,
    database: Arc<Database>,
    receiver: Receiver<Message>,
    settings: Settings,
    state: CommitState,
    flush_checkpoints: VecDeque<(Instant, u64)>,
    // Scratch reused across groups so the steady state does not allocate.
    // Tentative states live in a vector in first-seen order with a small
    // slot → index map beside it: the map's entries stay 8 bytes (a big
    // `Tentative` table turned every probe into a cache miss), and the head
    // is visited in slot order after the commit (see `try_commit_group`).
    tentative_index: HashMap<SeriesSlot, u32, foldhash::fast::RandomState>,
    tentative: Vec<(SeriesSlot, Tentative)>,
    accepted: Vec<Accepted>,
    record: LogRecordBuilder,
    /// Control messages that arrived between compaction steps, handled
    /// by the main loop before it reads the queue again (order kept).
    deferred_control: VecDeque<Message>,
}

impl CommitThread {
    pub fn new(
        shared: Arc<Shared>,
        database: Arc<Database>,
        receiver: Receiver<Message>,
        settings: Settings,
        state: CommitState,
    ) -> CommitThread {
        CommitThread {
            shared,
            database,
            receiver,
            settings,
            state,
            flush_checkpoints: VecDeque::new(),
            tentative_index: HashMap::default(),
            tentative: Vec::new(),
            accepted: Vec::new(),
            record: LogRecordBuilder::new(),
            deferred_control: VecDeque::new(),
        }
    }

    pub fn run(mut self) {
        let mut next_flush = Instant::now() + self.settings.flush_interval;
        loop {
            if let Some(message) = self.deferred_control.pop_front() {
                if !self.handle_control(message) {
                    return;
                }
                continue;
            }
            // Checked before reading the queue, so a queue that is never
            // empty (sustained pushes) does not starve sealing and compaction.
            if Instant::now() >= next_flush {
                self.periodic_flush();
                next_flush = Instant::now() + self.settings.flush_interval;
            }
            let timeout = next_flush.saturating_duration_since(Instant::now());
            let message = match self.receiver.recv_timeout(timeout) {
                Ok(message) => message,
                Err(RecvTimeoutError::Timeout) => {
                    self.periodic_flush();
                    next_flush = Instant::now() + self.settings.flush_interval;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            match message {
                Message::Commit(batch, reply) => {
                    let (group, deferred) = self.gather_group(batch, reply);
                    self.commit_group(group);
                    if let Some(other) = deferred
                        && !self.handle_control(other)
                    {
                        return;
                    }
                }
                other => {
                    if !self.handle_control(other) {
                        return;
                    }
                }
            }
        }
    }

    /// Collects the commits to make together with `first`: everything
    /// already queued, and, while every batch so far allows a delay, what
    /// arrives before the earliest of their deadlines. Scrapes are spread
    /// over the interval, so without the wait each one paid a transaction
    /// and an fsync of its own (the largest cost of scraping); a batch
    /// without a delay (a push) ends the wait. Also returns a control
    /// message that arrived meanwhile, to handle after the group (order kept).
    fn gather_group(
        &mut self,
        first: Batch,
        first_reply: CommitReply,
    ) -> (Vec<(Batch, CommitReply)>, Option<Message>) {
        let mut deadline = Instant::now() + first.commit_within;
        let mut group_samples = first.samples.len();
        let mut group = vec![(first, first_reply)];
        while group_samples < MAX_GROUP_SAMPLES {
            let received = match self.receiver.try_recv() {
                Ok(message) => message,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match self.receiver.recv_timeout(deadline - now) {
                        Ok(message) => message,
                        Err(_) => break,
                    }
                }
            };
            match received {
                Message::Commit(batch, reply) => {
                    deadline = deadline.min(Instant::now() + batch.commit_within);
                    group_samples += batch.samples.len();
                    group.push((batch, reply));
                }
                other => return (group, Some(other)),
            }
        }
        (group, None)
    }

    /// Handles a non-commit message; false means stop.
    fn handle_control(&mut self, message: Message) -> bool {
        match message {
            Message::Commit(batch, reply) => {
                self.commit_group(vec![(batch, reply)]);
                true
            }
            Message::Retention(reply) => {
                let result = self.apply_retention();
                let _ = reply.send(result);
                true
            }
            Message::Flush { older_than, reply } => {
                let threshold = self.threshold_for_age(older_than);
                let result = self.flush(threshold);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
                true
            }
            Message::Compact { force, reply } => {
                let result = self.compact_partitions(force);
                if let Some(reply) = reply {
                    let _ = reply.send(result);
                }
                true
            }
            Message::Shutdown(reply) => {
                let _ = reply.send(());
                false
            }
        }
    }

    fn poison(&self, error: &TsdbError) {
        tracing::error!(%error, "commit failed; storage refuses writes until restart");
        let mut poisoned = self.shared.poisoned.lock();
        if poisoned.is_none() {
            *poisoned = Some(error.to_string());
        }
        self.shared.metrics.commit_failures.inc();
        self.shared.metrics.poisoned.set(1.0);
    }

    fn check_poisoned(&self) -> Result<(), TsdbError> {
        match self.shared.poison_reason() {
            Some(reason) => Err(TsdbError::Poisoned(reason)),
            None => Ok(()),
        }
    }

    fn commit_group(&mut self, group: Vec<(Batch, CommitReply)>) {
        let metrics = &self.shared.metrics;
        metrics.batches.add(group.len() as u64);
        if let Some(reason) = self.shared.poison_reason() {
            for (_, reply) in group {
                reply.send(Err(StorageError::Poisoned(reason.clone())));
            }
            return;
        }
        let started = Instant::now();
        let result = self.try_commit_group(&group);
        self.shared
            .metrics
            .commit_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) => {
                for ((batch, reply), outcome) in group.into_iter().zip(outcomes) {
                    reply.send(Ok(outcome));
                    self.shared.sample_buffers.give_back(batch.samples);
                }
            }
            Err(error) => {
                self.poison(&error);
                let message = error.to_string();
                for (_, reply) in group {
                    reply.send(Err(StorageError::Backend(message.clone())));
                }
            }
        }
    }

    fn try_commit_group(
        &mut self,
        group: &[(Batch, CommitReply)],
    ) -> Result<Vec<CommitOutcome>, TsdbError> {
        let seq = self.state.next_log_seq;
        let floor = self.shared.retention_floor.load(Ordering::Acquire);
        self.tentative_index.clear();
        self.tentative.clear();
        self.accepted.clear();
        self.record.clear();
        let mut outcomes = vec![CommitOutcome::default(); group.len()];
        let mut new_series: Vec<NewSeries> = Vec::new();
        let mut new_series_by_hash: HashMap<u64, Vec<usize>, foldhash::fast::RandomState> =
            HashMap::default();
        let mut sealing_slots: Vec<SeriesSlot> = Vec::new();
        let mut replacement_chunks: Vec<(SeriesSlot, HeadChunk)> = Vec::new();
        let mut seal_writes = SealWrites::default();
        let mut metadata_changes: Vec<(String, MetricMetadata)> = Vec::new();

        {
            let head = self.shared.head.read();
            let base_slot = head.next_slot();
            for (batch_index, (batch, _)) in group.iter().enumerate() {
                let outcome = &mut outcomes[batch_index];
                let mut pending_slots: Vec<SeriesSlot> = Vec::with_capacity(batch.new_series.len());
                for (hash, labels) in &batch.new_series {
                    let slot = match head.lookup_labels(*hash, labels) {
                        Some(slot) => slot,
                        None => {
                            let known = new_series_by_hash.get(hash).and_then(|indexes| {
                                indexes
                                    .iter()
                                    .find(|index| new_series[**index].labels == *labels)
                                    .map(|index| new_series[*index].slot)
                            });
                            match known {
                                Some(slot) => slot,
                                None => {
                                    let slot = base_slot + new_series.len() as SeriesSlot;
                                    let id = self.state.next_series_id + new_series.len() as u64;
                                    new_series_by_hash
                                        .entry(*hash)
                                        .or_default()
                                        .push(new_series.len());
                                    new_series.push(NewSeries {
                                        slot,
                                        id,
                                        labels: labels.clone(),
                                    });
                                    outcome.series_created += 1;
                                    slot
                                }
                            }
                        }
                    };
                    pending_slots.push(slot);
                }

                for sample in &batch.samples {
                    let slot = if sample.series_ref & PENDING_SERIES_BIT != 0 {
                        match pending_slots.get((sample.series_ref & !PENDING_SERIES_BIT) as usize)
                        {
                            Some(slot) => *slot,
                            None => continue,
                        }
                    } else {
                        sample.series_ref
                    };
                    let entry_index = match self.tentative_index.entry(slot) {
                        Entry::Occupied(entry) => *entry.get() as usize,
                        Entry::Vacant(entry) => {
                            let initial = if slot < base_slot {
                                match head.series(slot) {
                                    Some(series) => {
                                        Tentative::from_head(series, head.newest_t[slot as usize])
                                    }
                                    None => {
                                        // Retention removed the series (no data for a
                                        // whole retention period) between the append
                                        // and this commit. Rare; counted, not lost silently.
                                        outcome.out_of_order += 1;
                                        if outcome.rejected_examples.len() < MAX_REJECTED_EXAMPLES {
                                            outcome.rejected_examples.push(format!(
                                                "sample @ {}: series was removed by retention while the batch was built; send it again",
                                                sample.t
                                            ));
                                        }
                                        continue;
                                    }
                                }
                            } else {
                                match new_series.get((slot - base_slot) as usize) {
                                    Some(created) => Tentative::new_series(created.id),
                                    None => continue,
                                }
                            };
                            let index = self.tentative.len();
                            self.tentative.push((slot, initial));
                            entry.insert(index as u32);
                            index
                        }
                    };
                    let Some((_, entry)) = self.tentative.get_mut(entry_index) else {
                        continue;
                    };
                    let rejection = if sample.t <= entry.newest_t {
                        if sample.t == entry.newest_t
                            && sample.value_bits == entry.newest_value_bits
                        {
                            outcome.duplicates += 1;
                            None
                        } else if sample.t == entry.newest_t {
                            outcome.duplicate_timestamp += 1;
                            Some("duplicate timestamp with a different value")
                        } else {
                            outcome.out_of_order += 1;
                            Some("out of order")
                        }
                    } else if sample.t < floor {
                        outcome.out_of_order += 1;
                        Some("older than the retention floor")
                    } else {
                        // Accepted: decide whether the open chunk is cut first.
                        if entry.open_len > 0
                            && (entry.open_len as usize >= MAX_SAMPLES_PER_CHUNK
                                || partition_of(sample.t) != partition_of(entry.open_mint))
                        {
                            if !entry.seals {
                                entry.seals = true;
                                sealing_slots.push(slot);
                            }
                            entry.open_len = 0;
                        }
                        if entry.open_len == 0 {
                            entry.open_mint = sample.t;
                        }
                        entry.open_len += 1;
                        entry.newest_t = sample.t;
                        entry.newest_value_bits = sample.value_bits;
                        entry.min_t = entry.min_t.min(sample.t);
                        let index = self.accepted.len() as u32;
                        if entry.last_accepted == NO_INDEX {
                            entry.first_accepted = index;
                        } else if let Some(previous) =
                            self.accepted.get_mut(entry.last_accepted as usize)
                        {
                            previous.next_same_series = index;
                        }
                        entry.last_accepted = index;
                        self.accepted.push(Accepted {
                            next_same_series: NO_INDEX,
                            t: sample.t,
                            value_bits: sample.value_bits,
                        });
                        self.record
                            .push(entry.series_id, sample.t, sample.value_bits);
                        outcome.samples_appended += 1;
                        None
                    };
                    if let Some(reason) = rejection
                        && outcome.rejected_examples.len() < MAX_REJECTED_EXAMPLES
                    {
                        let labels = if slot < base_slot {
                            head.labels_of(slot)
                        } else {
                            new_series
                                .get((slot - base_slot) as usize)
                                .map(|created| created.labels.clone())
                                .unwrap_or_default()
                        };
                        outcome
                            .rejected_examples
                            .push(format!("{labels} @ {}: {reason}", sample.t));
                    }
                }
            }

            // Cut chunks of the series that crossed a boundary in this group.
            for slot in &sealing_slots {
                let Some((_, entry)) = self
                    .tentative_index
                    .get(slot)
                    .and_then(|index| self.tentative.get(*index as usize))
                else {
                    continue;
                };
                let mut group_samples: Vec<Sample> = Vec::new();
                let mut index = entry.first_accepted;
                while let Some(accepted) = self.accepted.get(index as usize) {
                    group_samples.push(Sample {
                        t: accepted.t,
                        v: f64::from_bits(accepted.value_bits),
                    });
                    index = accepted.next_same_series;
                }
                let head_chunk = if *slot < base_slot {
                    head.series(*slot).map(|series| &series.chunk)
                } else {
                    None
                };
                let (sealed, remainder) = cut_chunks(entry.series_id, head_chunk, &group_samples);
                let mut last_sealed: Option<(Timestamp, u64)> = None;
                for chunk in sealed {
                    last_sealed = Some((chunk.maxt, chunk.last_value_bits));
                    seal_writes.add(&head, chunk, floor);
                }
                if let Some((last_t, last_value_bits)) = last_sealed {
                    seal_writes.tails.push((
                        entry.series_id,
                        SeriesTail {
                            first_t: entry.min_t,
                            last_t,
                            last_value_bits,
                        },
                    ));
                }
                replacement_chunks.push((*slot, remainder));
            }
        }

        {
            let known = self.shared.metadata.read();
            for batch in group.iter().map(|(batch, _)| batch) {
                for (metric, metadata) in &batch.metadata {
                    if known.get(metric) != Some(metadata) {
                        metadata_changes.push((metric.clone(), metadata.clone()));
                    }
                }
            }
        }

        // Open-chunk bookkeeping for log truncation. Only this thread reads it,
        // and a failed commit poisons the store, so it is updated up front.
        for (_, entry) in &self.tentative {
            if entry.first_accepted == NO_INDEX {
                continue;
            }
            if entry.seals || !entry.initial_open {
                if entry.initial_open {
                    release_first_seq(
                        &mut self.state.open_chunks_by_first_seq,
                        entry.initial_first_seq,
                    );
                }
                *self.state.open_chunks_by_first_seq.entry(seq).or_insert(0) += 1;
            }
        }
        let record_written = !self.record.is_empty();
        let next_log_seq = if record_written { seq + 1 } else { seq };
        let oldest_needed = self.state.oldest_needed_log_seq(next_log_seq);
        let record = (record_written && oldest_needed <= seq).then(|| self.record.finish());

        let mut transaction = self
            .database
            .begin_write()
            .context("beginning a write transaction")?;
        // Immediate is redb's default; set it so the guarantee is visible here.
        transaction
            .set_durability(redb::Durability::Immediate)
            .context("setting durability")?;
        {
            if !new_series.is_empty() {
                let mut series_table = transaction
                    .open_table(tables::SERIES)
                    .context("opening the series table")?;
                let mut symbols_table = transaction
                    .open_table(tables::SYMBOLS)
                    .context("opening the symbols table")?;
                for created in &new_series {
                    let encoded = self.state.series_symbols.encode_labels(
                        &mut symbols_table,
                        created
                            .labels
                            .iter()
                            .map(|label| (label.name.as_str(), label.value.as_str())),
                    )?;
                    series_table
                        .insert(created.id, encoded.as_slice())
                        .context("writing a series")?;
                }
            }
            if let Some(record) = &record {
                let mut log = transaction
                    .open_table(tables::LOG)
                    .context("opening the log table")?;
                log.insert(seq, record.as_slice())
                    .context("writing a log record")?;
            }
            seal_writes.write(&transaction)?;
            self.truncate_log(&transaction, oldest_needed)?;
            if !metadata_changes.is_empty() {
                let mut metadata_table = transaction
                    .open_table(tables::METADATA)
                    .context("opening the metadata table")?;
                for (metric, metadata) in &metadata_changes {
                    let encoded = postcard::to_allocvec(metadata)
                        .map_err(|error| TsdbError::Corrupt(error.to_string()))?;
                    metadata_table
                        .insert(metric.as_str(), encoded.as_slice())
                        .context("writing metadata")?;
                }
            }
            let next_series_id = self.state.next_series_id + new_series.len() as u64;
            write_meta_counters(&transaction, next_series_id, next_log_seq)?;
        }
        transaction.commit().context("committing")?;

        // Durable: account, then make it visible.
        let metrics = &self.shared.metrics;
        metrics.commits.inc();
        metrics.fsyncs.inc();
        if let Some(record) = &record {
            self.state.log_records.push_back((seq, record.len() as u64));
            self.shared
                .log_bytes
                .fetch_add(record.len() as u64, Ordering::Relaxed);
        }
        self.state.next_series_id += new_series.len() as u64;
        self.state.next_log_seq = next_log_seq;
        metrics.chunks_sealed.add(seal_writes.chunks.len() as u64);
        metrics.series_created.add(new_series.len() as u64);
        let mut group_newest = Timestamp::MIN;
        // Slot order makes the head visit below a forward walk the hardware
        // prefetcher follows; in map order each series was a cache miss
        // (≈18 % of the commit thread in the push profile). Series of one
        // target are adjacent slots and arrive together, so this is mostly
        // already sorted and cheap; done before the write lock is taken.
        self.tentative.sort_unstable_by_key(|(slot, _)| *slot);
        {
            let mut guard = self.shared.head.write();
            let head = &mut *guard;
            for created in &new_series {
                let slot = head.add_series(created.id, &created.labels);
                debug_assert_eq!(slot, created.slot);
            }
            for (slot, chunk) in replacement_chunks {
                if let Some(series) = head.series_mut(slot) {
                    series.chunk = chunk;
                }
            }
            // One visit per series: its accepted samples are chained.
            for (slot, entry) in self.tentative.iter() {
                if entry.first_accepted == NO_INDEX {
                    continue;
                }
                group_newest = group_newest.max(entry.newest_t);
                if let Some(newest) = head.newest_t.get_mut(*slot as usize) {
                    *newest = entry.newest_t;
                }
                let Some(series) = head.series_mut(*slot) else {
                    continue;
                };
                if !entry.seals {
                    let mut index = entry.first_accepted;
                    while let Some(accepted) = self.accepted.get(index as usize) {
                        series
                            .chunk
                            .append(accepted.t, f64::from_bits(accepted.value_bits));
                        index = accepted.next_same_series;
                    }
                }
                series.chunk_mint = entry.open_mint;
                series.newest_value_bits = entry.newest_value_bits;
                series.min_t = entry.min_t;
                if entry.seals || !entry.initial_open {
                    series.chunk_first_log_seq = seq;
                }
            }
            head.partitions.extend(seal_writes.partitions);
            metrics.head_series.set(head.live_series as f64);
        }
        self.shared
            .newest_t
            .fetch_max(group_newest, Ordering::AcqRel);
        if !metadata_changes.is_empty() {
            let mut known = self.shared.metadata.write();
            for (metric, metadata) in metadata_changes {
                known.insert(metric, metadata);
            }
        }
        for outcome in &outcomes {
            metrics.samples_appended.add(outcome.samples_appended);
            metrics.samples_out_of_order.add(outcome.out_of_order);
            metrics
                .samples_duplicate_timestamp
                .add(outcome.duplicate_timestamp);
            metrics.samples_duplicate.add(outcome.duplicates);
        }
        Ok(outcomes)
    }

    /// Deletes log records below `oldest_needed` inside `transaction`.
    fn truncate_log(
        &mut self,
        transaction: &WriteTransaction,
        oldest_needed: u64,
    ) -> Result<(), TsdbError> {
        let Some(&(oldest_present, _)) = self.state.log_records.front() else {
            return Ok(());
        };
        if oldest_present >= oldest_needed {
            return Ok(());
        }
        let mut log = transaction
            .open_table(tables::LOG)
            .context("opening the log table")?;
        log.retain_in(oldest_present..oldest_needed, |_, _| false)
            .context("truncating the log")?;
        let mut deleted_bytes = 0u64;
        let mut deleted_records = 0u64;
        while let Some(&(record_seq, bytes)) = self.state.log_records.front() {
            if record_seq >= oldest_needed {
                break;
            }
            deleted_bytes += bytes;
            deleted_records += 1;
            self.state.log_records.pop_front();
        }
        // Counted before the commit; a failed commit poisons the store anyway.
        self.shared
            .log_bytes
            .fetch_sub(deleted_bytes, Ordering::Relaxed);
        self.shared.metrics.log_records_deleted.add(deleted_records);
        Ok(())
    }

    /// First log sequence still needed by an open chunk older than `age`.
    fn threshold_for_age(&self, age: Duration) -> u64 {
        if age.is_zero() {
            return self.state.next_log_seq;
        }
        let now = Instant::now();
        self.flush_checkpoints
            .iter()
            .take_while(|(instant, _)| now.duration_since(*instant) >= age)
            .map(|(_, seq)| *seq)
            .last()
            .unwrap_or(0)
    }

    fn periodic_flush(&mut self) {
        let now = Instant::now();
        self.flush_checkpoints
            .push_back((now, self.state.next_log_seq));
        let mut threshold = self.threshold_for_age(self.settings.open_chunk_max_age);
        // Checkpoints below the one just used are no longer needed.
        while self
            .flush_checkpoints
            .front()
            .is_some_and(|(_, seq)| *seq < threshold)
        {
            self.flush_checkpoints.pop_front();
        }
        if self.shared.log_bytes.load(Ordering::Relaxed) > self.settings.log_max_bytes
            && let Some(&(oldest, _)) = self.state.log_records.front()
        {
            threshold = threshold.max(oldest + (self.state.next_log_seq - oldest) / 2);
        }
        if let Err(error) = self.flush(threshold) {
            tracing::warn!(%error, "periodic flush of open chunks failed");
        }
        if let Err(error) = self.compact_partitions(false) {
            tracing::warn!(%error, "partition compaction failed");
        }
        self.shared
            .metrics
            .database_bytes
            .set(self.shared.database_file_bytes() as f64);
    }

    /// Seals open chunks whose first log record is below `threshold_seq`.
    fn flush(&mut self, threshold_seq: u64) -> Result<u64, TsdbError> {
        self.check_poisoned()?;
        let oldest_open = self.state.open_chunks_by_first_seq.keys().next().copied();
        if oldest_open.is_none_or(|oldest| oldest >= threshold_seq) {
            return Ok(0);
        }
        let floor = self.shared.retention_floor.load(Ordering::Acquire);
        let mut seal_writes = SealWrites::default();
        let mut flushed_slots: Vec<SeriesSlot> = Vec::new();
        {
            let head = self.shared.head.read();
            for (slot, series) in head.series.iter().enumerate() {
                let Some(series) = series else { continue };
                if series.chunk.is_empty() || series.chunk_first_log_seq >= threshold_seq {
                    continue;
                }
                let Some(sealed) = SealedChunk::from_head_chunk(series.id, &series.chunk) else {
                    continue;
                };
                seal_writes.tails.push((
                    series.id,
                    SeriesTail {
                        first_t: series.min_t,
                        last_t: sealed.maxt,
                        last_value_bits: sealed.last_value_bits,
                    },
                ));
                seal_writes.add(&head, sealed, floor);
                flushed_slots.push(slot as SeriesSlot);
                release_first_seq(
                    &mut self.state.open_chunks_by_first_seq,
                    series.chunk_first_log_seq,
                );
            }
        }
        let oldest_needed = self.state.oldest_needed_log_seq(self.state.next_log_seq);
        let result = (|| {
            let transaction = self
                .database
                .begin_write()
                .context("beginning a write transaction")?;
            seal_writes.write(&transaction)?;
            self.truncate_log(&transaction, oldest_needed)?;
            transaction.commit().context("committing a flush")
        })();
        if let Err(error) = result {
            self.poison(&error);
            return Err(error);
        }
        self.shared.metrics.commits.inc();
        self.shared.metrics.fsyncs.inc();
        self.shared
            .metrics
            .chunks_sealed
            .add(seal_writes.chunks.len() as u64);
        let mut head = self.shared.head.write();
        for slot in &flushed_slots {
            if let Some(series) = head.series_mut(*slot) {
                series.chunk = HeadChunk::new();
            }
        }
        head.partitions.extend(seal_writes.partitions);
        Ok(flushed_slots.len() as u64)
    }

    /// Rewrites due partitions into blocks, one write transaction each, so
    /// ingest waits for at most one partition at a time. A partition
    /// counts as closed once its end lies `open_chunk_max_age` plus one
    /// flush interval behind the newest sample: by then the periodic flush
    /// has sealed every open chunk that reached into it.
    fn compact_partitions(&mut self, force: bool) -> Result<CompactionReport, TsdbError> {
        self.check_poisoned()?;
        let newest = self.shared.newest_t.load(Ordering::Acquire);
        let partitions: Vec<(Timestamp, PartitionSummary)> = self
            .shared
            .head
            .read()
            .partitions
            .iter()
            .map(|(start, summary)| (*start, *summary))
            .collect();
        let settle = self.settings.open_chunk_max_age + self.settings.flush_interval;
        let due = plan_compaction(
            &partitions,
            (newest != Timestamp::MIN).then_some(newest),
            i64::try_from(settle.as_millis()).unwrap_or(i64::MAX),
            force,
        );
        let mut report = CompactionReport::default();
        for partition_start in due {
            let started = Instant::now();
            let mut partition_report = CompactionReport::default();
            let mut resume_from = 0;
            let mut steps = 0u64;
            loop {
                let floor = self.shared.retention_floor.load(Ordering::Acquire);
                let transaction = match self.database.begin_write() {
                    Ok(transaction) => transaction,
                    Err(error) => {
                        let error = TsdbError::Database {
                            context: "beginning a compaction transaction",
                            message: error.to_string(),
                        };
                        self.poison(&error);
                        return Err(error);
                    }
                };
                let step = match compact_partition(
                    &transaction,
                    partition_start,
                    floor,
                    resume_from,
                    self.settings.compaction_step_chunks,
                    &mut partition_report,
                ) {
                    Ok(step) => step,
                    Err(TsdbError::Corrupt(reason)) => {
                        // Nothing acknowledged depends on compaction: leave the
                        // rest of the partition as it is (the transaction is
                        // dropped uncommitted) rather than refuse writes.
                        tracing::error!(partition_start, %reason, "partition not compacted: corrupt data");
                        break;
                    }
                    Err(error) => {
                        self.poison(&error);
                        return Err(error);
                    }
                };
                if let Err(error) = transaction.commit().context("committing a compaction") {
                    self.poison(&error);
                    return Err(error);
                }
                steps += 1;
                self.shared.metrics.commits.inc();
                self.shared.metrics.fsyncs.inc();
                {
                    let mut head = self.shared.head.write();
                    match step.summary {
                        Some(summary) => {
                            head.partitions.insert(partition_start, summary);
                        }
                        None => {
                            head.partitions.remove(&partition_start);
                        }
                    }
                }
                let Some(next) = step.resume_from else {
                    break;
                };
                resume_from = next;
                // Writes queued meanwhile go in between steps; a shutdown
                // ends the pass (the loose chunks left keep the partition due).
                if !self.commit_queued_between_steps() {
                    report.add(&partition_report);
                    return Ok(report);
                }
            }
            tracing::info!(
                partition_start,
                steps,
                chunks = partition_report.chunks_merged,
                blocks = partition_report.blocks_written,
                bytes_before = partition_report.bytes_before,
                bytes_after = partition_report.bytes_after,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "partition compacted"
            );
            report.add(&partition_report);
        }
        Ok(report)
    }

    /// Commits the writes already queued (without waiting for more) and
    /// sets other messages aside for the main loop. False when one of them
    /// is a shutdown, so a long compaction does not hold it up.
    fn commit_queued_between_steps(&mut self) -> bool {
        let mut group = Vec::new();
        let mut keep_going = true;
        while let Ok(message) = self.receiver.try_recv() {
            match message {
                Message::Commit(batch, reply) => group.push((batch, reply)),
                other => {
                    keep_going = !matches!(other, Message::Shutdown(_));
                    self.deferred_control.push_back(other);
                    break;
                }
            }
        }
        if !group.is_empty() {
            self.commit_group(group);
        }
        keep_going
    }

    fn apply_retention(&mut self) -> Result<RetentionReport, TsdbError> {
        self.check_poisoned()?;
        let current_floor = self.shared.retention_floor.load(Ordering::Acquire);
        let newest = self.shared.newest_t.load(Ordering::Acquire);
        let partitions: Vec<PartitionInfo> = self
            .shared
            .head
            .read()
            .partitions
            .iter()
            .map(|(start, summary)| PartitionInfo {
                start: *start,
                summary: *summary,
            })
            .collect();
        let plan = plan_retention(
            &partitions,
            (newest != Timestamp::MIN).then_some(newest),
            &self.shared.retention,
            current_floor,
        );
        let mut report = RetentionReport {
            floor: (plan.floor != Timestamp::MIN).then_some(plan.floor),
            ..RetentionReport::default()
        };
        self.shared.metrics.retention_runs.inc();
        if plan.delete_partitions.is_empty() && plan.floor == current_floor {
            return Ok(report);
        }
        // Series whose newest sample is below the floor have nothing visible
        // left: drop them from the store and the head, so churn does not
        // grow memory forever.
        let mut removed_series: Vec<(SeriesSlot, u64, Option<u64>)> = Vec::new();
        {
            let head = self.shared.head.read();
            for (slot, series) in head.series.iter().enumerate() {
                let Some(series) = series else { continue };
                if head.newest_t[slot] < plan.floor {
                    let open_first_seq =
                        (!series.chunk.is_empty()).then_some(series.chunk_first_log_seq);
                    removed_series.push((slot as SeriesSlot, series.id, open_first_seq));
                }
            }
        }
        for (_, _, open_first_seq) in &removed_series {
            if let Some(seq) = open_first_seq {
                release_first_seq(&mut self.state.open_chunks_by_first_seq, *seq);
            }
        }
        let oldest_needed = self.state.oldest_needed_log_seq(self.state.next_log_seq);
        let result = (|| {
            let transaction = self
                .database
                .begin_write()
                .context("beginning a retention transaction")?;
            self.truncate_log(&transaction, oldest_needed)?;
            if !removed_series.is_empty() {
                let mut series_table = transaction
                    .open_table(tables::SERIES)
                    .context("opening the series table")?;
                let mut tails = transaction
                    .open_table(tables::SERIES_TAIL)
                    .context("opening the series_tail table")?;
                for (_, series_id, _) in &removed_series {
                    series_table
                        .remove(*series_id)
                        .context("deleting a series")?;
                    tails.remove(*series_id).context("deleting a series tail")?;
                }
            }
            {
                let mut chunks = transaction
                    .open_table(tables::CHUNKS)
                    .context("opening the chunks table")?;
                let mut blocks = transaction
                    .open_table(tables::BLOCKS)
                    .context("opening the blocks table")?;
                let mut partition_table = transaction
                    .open_table(tables::PARTITIONS)
                    .context("opening the partitions table")?;
                for start in &plan.delete_partitions {
                    let lower = chunk_key(*start, 0, Timestamp::MIN);
                    let upper = chunk_key(*start, u64::MAX, Timestamp::MAX);
                    chunks
                        .retain_in(lower.as_slice()..=upper.as_slice(), |_, _| false)
                        .context("deleting a partition's chunks")?;
                    let block_lower = block_key(*start, 0);
                    let block_upper = block_key(*start, u64::MAX);
                    blocks
                        .retain_in(block_lower.as_slice()..=block_upper.as_slice(), |_, _| {
                            false
                        })
                        .context("deleting a partition's blocks")?;
                    partition_table
                        .remove(*start)
                        .context("deleting a partition summary")?;
                }
                let mut meta = transaction
                    .open_table(tables::META)
                    .context("opening the meta table")?;
                meta.insert(
                    tables::META_RETENTION_FLOOR,
                    (plan.floor as u64).to_le_bytes().as_slice(),
                )
                .context("writing the retention floor")?;
            }
            transaction.commit().context("committing retention")
        })();
        if let Err(error) = result {
            self.poison(&error);
            return Err(error);
        }
        self.shared.metrics.commits.inc();
        self.shared.metrics.fsyncs.inc();
        let mut head = self.shared.head.write();
        for (slot, _, _) in &removed_series {
            head.remove_series(*slot);
        }
        report.series_deleted = removed_series.len() as u64;
        self.shared.metrics.head_series.set(head.live_series as f64);
        for start in &plan.delete_partitions {
            if let Some(summary) = head.partitions.remove(start) {
                report.partitions_deleted += 1;
                report.chunks_deleted += summary.chunks;
                report.bytes_deleted += summary.bytes;
            }
        }
        drop(head);
        self.shared
            .retention_floor
            .store(plan.floor, Ordering::Release);
        self.shared
            .metrics
            .retention_partitions_deleted
            .add(report.partitions_deleted);
        Ok(report)
    }
}

fn release_first_seq(open_chunks_by_first_seq: &mut BTreeMap<u64, u32>, seq: u64) {
    if let Some(count) = open_chunks_by_first_seq.get_mut(&seq) {
        *count -= 1;
        if *count == 0 {
            open_chunks_by_first_seq.remove(&seq);
        }
    }
}

fn write_meta_counters(
    transaction: &WriteTransaction,
    next_series_id: u64,
    next_log_seq: u64,
) -> Result<(), TsdbError> {
    let mut meta = transaction
        .open_table(tables::META)
        .context("opening the meta table")?;
    meta.insert(
        tables::META_NEXT_SERIES_ID,
        next_series_id.to_le_bytes().as_slice(),
    )
    .context("writing meta")?;
    meta.insert(
        tables::META_NEXT_LOG_SEQ,
        next_log_seq.to_le_bytes().as_slice(),
    )
    .context("writing meta")?;
    Ok(())
}

/// Applies the cut rule (full at `MAX_SAMPLES_PER_CHUNK`, or the next sample
/// in another partition) to the head chunk followed by `group_samples`.
/// Returns the sealed chunks and the new open chunk. The head chunk itself
/// is always valid, so a cut falls at its end or among the group samples.
fn cut_chunks(
    series_id: u64,
    head_chunk: Option<&HeadChunk>,
    group_samples: &[Sample],
) -> (Vec<SealedChunk>, HeadChunk) {
    let mut sealed = Vec::new();
    let head_chunk = head_chunk.filter(|chunk| !chunk.is_empty());
    let mut includes_head = head_chunk.is_some();
    let mut current_len = head_chunk.map_or(0, |chunk| chunk.len());
    let mut current_mint = head_chunk
        .and_then(|chunk| chunk.mint())
        .unwrap_or(Timestamp::MIN);
    let mut current: Vec<Sample> = Vec::new();
    for sample in group_samples {
        if current_len > 0
            && (current_len >= MAX_SAMPLES_PER_CHUNK
                || partition_of(sample.t) != partition_of(current_mint))
        {
            let chunk = match head_chunk {
                Some(head_chunk) if includes_head && current.is_empty() => {
                    SealedChunk::from_head_chunk(series_id, head_chunk)
                }
                Some(head_chunk) if includes_head => {
                    let mut all = head_chunk.samples();
                    all.append(&mut current);
                    SealedChunk::from_samples(series_id, &all)
                }
                _ => SealedChunk::from_samples(series_id, &current),
            };
            sealed.extend(chunk);
            current.clear();
            includes_head = false;
            current_len = 0;
        }
        if current_len == 0 {
            current_mint = sample.t;
        }
        current.push(*sample);
        current_len += 1;
    }
    let mut open = HeadChunk::new();
    if includes_head {
        // No cut happened (callers only ask when one does); keep everything open.
        if let Some(head_chunk) = head_chunk {
            for sample in head_chunk.samples() {
                open.append(sample.t, sample.v);
            }
        }
    }
    for sample in &current {
        open.append(sample.t, sample.v);
    }
    (sealed, open)
}

/// Reads one `meta` row.
pub fn read_meta_u64(
    meta: &impl ReadableTable<&'static str, &'static [u8]>,
    row: &str,
) -> Result<Option<u64>, TsdbError> {
    match meta.get(row).context("reading meta")? {
        Some(value) => encoding::decode_meta_u64(value.value())
            .map(Some)
            .map_err(|error| TsdbError::Corrupt(format!("meta row {row}: {error}"))),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tsdb::encoding::PARTITION_MS;

    fn samples(times: impl IntoIterator<Item = i64>) -> Vec<Sample> {
        times
            .into_iter()
            .map(|t| Sample { t, v: t as f64 })
            .collect()
    }

    #[test]
    fn cut_at_max_samples_seals_the_full_head_chunk_as_is() {
        let mut head_chunk = HeadChunk::new();
        for t in 0..MAX_SAMPLES_PER_CHUNK as i64 {
            head_chunk.append(t, t as f64);
        }
        let (sealed, open) = cut_chunks(1, Some(&head_chunk), &samples([1000, 1001]));
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].count as usize, MAX_SAMPLES_PER_CHUNK);
        assert_eq!(
            (sealed[0].mint, sealed[0].maxt),
            (0, MAX_SAMPLES_PER_CHUNK as i64 - 1)
        );
        assert_eq!(open.samples(), samples([1000, 1001]));
    }

    #[test]
    fn cut_combines_head_and_group_samples_and_splits_long_runs() {
        let mut head_chunk = HeadChunk::new();
        for t in 0..100 {
            head_chunk.append(t, t as f64);
        }
        let (sealed, open) = cut_chunks(1, Some(&head_chunk), &samples(100..400));
        let counts: Vec<u32> = sealed.iter().map(|chunk| chunk.count).collect();
        assert_eq!(counts, vec![120, 120, 120]);
        assert_eq!(chunk::decode(&sealed[1].bytes).unwrap(), samples(120..240));
        assert_eq!(open.samples(), samples(360..400));
    }

    #[test]
    fn cut_at_partition_boundary() {
        let (sealed, open) = cut_chunks(
            1,
            None,
            &samples([
                PARTITION_MS - 2,
                PARTITION_MS - 1,
                PARTITION_MS,
                PARTITION_MS + 1,
            ]),
        );
        assert_eq!(sealed.len(), 1);
        assert_eq!(sealed[0].maxt, PARTITION_MS - 1);
        assert_eq!(open.mint(), Some(PARTITION_MS));
        assert_eq!(open.len(), 2);
    }

    /// Commits one sample of `series` at `t`, allowing `delay`.
    fn commit_one(
        tsdb: &crate::tsdb::Tsdb,
        series: &str,
        t: Timestamp,
        delay: Duration,
    ) -> Result<CommitOutcome, StorageError> {
        use crate::storage::Appendable;
        let mut appender = tsdb.appender();
        appender.allow_commit_delay(delay);
        appender.append(&[("__name__", "gathered"), ("series", series)], t, 1.0)?;
        appender.commit()
    }

    #[test]
    fn batches_allowing_a_delay_share_one_commit() {
        let directory = tempfile::tempdir().unwrap();
        let tsdb = crate::tsdb::Tsdb::open(directory.path(), crate::tsdb::Options::default())
            .expect("open store");
        let before = tsdb.stats();
        // Whichever arrives first waits for the other: one transaction, one fsync.
        std::thread::scope(|scope| {
            let waiters: Vec<_> = ["a", "b"]
                .into_iter()
                .map(|series| {
                    let tsdb = &tsdb;
                    scope.spawn(move || commit_one(tsdb, series, 1000, Duration::from_secs(3)))
                })
                .collect();
            for waiter in waiters {
                let outcome = waiter.join().unwrap().expect("commit");
                assert_eq!(outcome.samples_appended, 1);
            }
        });
        let after = tsdb.stats();
        assert_eq!(after.batches - before.batches, 2);
        assert_eq!(after.commits - before.commits, 1, "{after:?}");
        assert_eq!(after.series, 2);
    }

    #[test]
    fn a_batch_without_delay_ends_the_wait_of_a_delayed_one() {
        let directory = tempfile::tempdir().unwrap();
        let tsdb = crate::tsdb::Tsdb::open(directory.path(), crate::tsdb::Options::default())
            .expect("open store");
        let (done_sender, done) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            let tsdb_for_waiter = &tsdb;
            scope.spawn(move || {
                let outcome =
                    commit_one(tsdb_for_waiter, "patient", 1000, Duration::from_secs(3600));
                let _ = done_sender.send(outcome);
            });
            // Pushes keep coming (a first one may beat the delayed batch to
            // the queue and commit alone); the next one ends the wait.
            let mut push_time = 1000;
            let outcome = loop {
                commit_one(&tsdb, "push", push_time, Duration::ZERO).expect("push commit");
                push_time += 1;
                match done.recv_timeout(Duration::from_millis(100)) {
                    Ok(outcome) => break outcome,
                    Err(_) => assert!(push_time < 1000 + 600, "the delayed batch never committed"),
                }
            };
            assert_eq!(outcome.expect("delayed commit").samples_appended, 1);
        });
        let stats = tsdb.stats();
        assert!(stats.commits < stats.batches, "{stats:?}");
    }
}
