//! The reader. `querier()` snapshots, per series, the time of its newest
//! committed sample (one memcpy of a `Vec<i64>`) and the retention floor;
//! every later call caps what it returns by that snapshot, so data committed
//! after `querier()` is never seen.
//!
//! Each call takes the head read lock, begins a redb read transaction
//! *under* it and copies the head samples it needs, then releases the lock
//! and reads chunks. Because the commit thread updates the head only after
//! its transaction committed, and only under the write lock, the pair (head,
//! read transaction) misses nothing: a chunk sealed out of the head is in
//! the transaction, and a chunk just committed but still in the head shows
//! up twice, which the merge removes (de-duplication by timestamp).
//!
//! `select_latest` (instant selectors) answers a series from its open
//! chunk's last sample, without decoding and without redb, whenever that
//! sample lies in the range; only series whose newest sample in the range is
//! older than the open chunk read stored chunks. When the last sample lies
//! after the range (a scrape just after the query time), the one before it
//! is read back in O(1) too. Label names and values over all series come
//! from the postings index, one visibility check per name or value instead
//! of one label decode per series.

use std::collections::BTreeSet;

use rayon::slice::ParallelSliceMut;
use redb::{ReadTransaction, ReadableDatabase, ReadableTableMetadata};

use crate::chunk;
use crate::model::{Labels, Matcher, Sample, Timestamp};
use crate::storage::{Querier, Series, StorageError};
use crate::tsdb::encoding::{self, PARTITION_MS, PartitionSummary, chunk_key, partition_of};
use crate::tsdb::head::Head;
use crate::tsdb::postings::SeriesSlot;
use crate::tsdb::{RedbContext, Tsdb, TsdbError, block, tables};

/// Below this ratio of selected series to chunks in a partition, chunks are
/// looked up per series; above it one sequential scan of the partition is
/// cheaper than that many B-tree descents.
const PARTITION_SCAN_RATIO: u64 = 4;

pub struct TsdbQuerier<'a> {
    tsdb: &'a Tsdb,
    /// By slot: newest sample time visible to this querier.
    visible_newest: Vec<Timestamp>,
    visible_mint: Timestamp,
}

struct Selected {
    series_id: u64,
    /// The label set as the head encodes it; decoded off the head lock.
    encoded_labels: Box<[u8]>,
    /// Newest visible sample time of this series.
    cap: Timestamp,
    /// Stored samples (blocks, then chunks) in the range.
    samples: Vec<Sample>,
    /// The open head chunk's samples in the range.
    head_samples: Vec<Sample>,
    /// Nothing older is needed from stored chunks (latest-only selection
    /// answered from the head chunk).
    complete: bool,
}

impl<'a> TsdbQuerier<'a> {
    pub fn new(tsdb: &'a Tsdb) -> Result<TsdbQuerier<'a>, StorageError> {
        tsdb.shared.database()?;
        let head = tsdb.shared.head.read();
        let visible_newest = head.newest_t.clone();
        let visible_mint = tsdb.shared.visible_mint();
        drop(head);
        Ok(TsdbQuerier {
            tsdb,
            visible_newest,
            visible_mint,
        })
    }

    /// Clamps a request range to what this querier may show; `None` when empty.
    fn clamp(&self, mint: Timestamp, maxt: Timestamp) -> Option<(Timestamp, Timestamp)> {
        let mint = mint.max(self.visible_mint);
        (mint <= maxt).then_some((mint, maxt))
    }

    /// Slots matching `matchers` that have data overlapping `[mint, maxt]`.
    fn matching_slots(
        &self,
        head: &Head,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Vec<SeriesSlot> {
        let mut slots = head.postings.select(&head.symbols, matchers);
        slots.retain(|slot| self.slot_visible(head, *slot, mint, maxt));
        slots
    }

    /// Whether the series in `slot` has data this querier shows in `[mint, maxt]`
    /// (the test `matching_slots` applies).
    fn slot_visible(
        &self,
        head: &Head,
        slot: SeriesSlot,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> bool {
        let Some(cap) = self.visible_newest.get(slot as usize).copied() else {
            return false;
        };
        cap >= mint
            && cap != Timestamp::MIN
            && head.series(slot).is_some_and(|series| series.min_t <= maxt)
    }

    /// Whether any slot of any list has visible data in the range; almost
    /// always decided by the first slot looked at.
    fn any_visible<'l>(
        &self,
        head: &Head,
        mut lists: impl Iterator<Item = &'l [SeriesSlot]>,
        mint: Timestamp,
        maxt: Timestamp,
    ) -> bool {
        lists.any(|list| {
            list.iter()
                .any(|slot| self.slot_visible(head, *slot, mint, maxt))
        })
    }

    /// Head samples and chunks of the selected series, merged.
    /// With `latest_only`, each series keeps only its newest sample in the
    /// range; a series whose open chunk holds that sample is answered from
    /// the chunk's last sample without decoding and without reading redb.
    ///
    /// Three phases keep the head lock short and let two threads share the
    /// decoding: under the lock, each selected series' encoded label set and
    /// open-chunk samples are copied; then the stored chunks' bytes are
    /// gathered from redb (one B-tree walk, copied so no redb guard crosses
    /// a thread); last, each half of the series decodes its labels and
    /// chunks and appends its head samples on its own thread. Unless
    /// `sorted`, the series stay in series id order (no label sort).
    fn select_series(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
        latest_only: bool,
        sorted: bool,
    ) -> Result<Vec<Series>, TsdbError> {
        let database = self.tsdb.shared.database()?;
        let (mut selected, partitions, transaction) = {
            let head = self.tsdb.shared.head.read();
            let transaction: ReadTransaction = database
                .begin_read()
                .context("beginning a read transaction")?;
            let slots = self.matching_slots(&head, mint, maxt, matchers);
            let selected =
                if slots.len() >= PARALLEL_SELECT_MIN_SERIES && rayon::current_num_threads() > 1 {
                    // Two threads under one read lock: halves the time the
                    // commit thread may wait for it.
                    let (first_slots, second_slots) = slots.split_at(slots.len() / 2);
                    let head: &Head = &head;
                    let (mut first, second) = rayon::join(
                        || self.copy_from_head(head, first_slots, mint, maxt, latest_only),
                        || self.copy_from_head(head, second_slots, mint, maxt, latest_only),
                    );
                    first.extend(second);
                    first
                } else {
                    self.copy_from_head(&head, &slots, mint, maxt, latest_only)
                };
            let partitions: Vec<(Timestamp, PartitionSummary)> = head
                .partitions
                .range(partition_of(mint)..=partition_of(maxt))
                .filter(|(_, summary)| summary.mint <= maxt && summary.maxt >= mint)
                .map(|(start, summary)| (*start, *summary))
                .collect();
            (selected, partitions, transaction)
        };
        debug_assert!(
            selected
                .windows(2)
                .all(|pair| pair[0].series_id < pair[1].series_id)
        );

        let mut stored_chunks = StoredChunks::default();
        let incomplete = selected.iter().filter(|entry| !entry.complete).count();
        if incomplete > 0 && !partitions.is_empty() {
            // Compacted partitions keep their samples in blocks. They are
            // the older partitions, so reading them before the loose chunks
            // keeps samples in time order in the common case.
            let blocks = transaction
                .open_table(tables::BLOCKS)
                .context("opening the blocks table")?;
            let series_ids: Vec<u64> = selected.iter().map(|entry| entry.series_id).collect();
            for (partition_start, _) in partitions.iter() {
                block::read_series(&blocks, *partition_start, &series_ids, |index, samples| {
                    let target = &mut selected[index];
                    if target.complete {
                        return;
                    }
                    let upper_t = maxt.min(target.cap);
                    target.samples.extend(
                        samples
                            .iter()
                            .filter(|sample| sample.t >= mint && sample.t <= upper_t)
                            .copied(),
                    );
                })?;
            }
            let chunks = transaction
                .open_table(tables::CHUNKS)
                .context("opening the chunks table")?;
            for &(partition_start, summary) in &partitions {
                let scan_whole_partition =
                    incomplete as u64 * PARTITION_SCAN_RATIO >= summary.chunks;
                if scan_whole_partition {
                    let lower = chunk_key(partition_start, 0, Timestamp::MIN);
                    let upper = chunk_key(partition_start, u64::MAX, Timestamp::MAX);
                    for entry in chunks
                        .range(lower.as_slice()..=upper.as_slice())
                        .context("scanning a partition")?
                    {
                        let (key, value) = entry.context("reading a chunk")?;
                        let key = encoding::decode_chunk_key(key.value())
                            .map_err(|error| TsdbError::Corrupt(format!("chunk key: {error}")))?;
                        let Ok(index) =
                            selected.binary_search_by_key(&key.series_id, |entry| entry.series_id)
                        else {
                            continue;
                        };
                        let target = &selected[index];
                        if target.complete {
                            continue;
                        }
                        stored_chunks.push(
                            index,
                            key.mint,
                            value.value(),
                            mint,
                            maxt.min(target.cap),
                        )?;
                    }
                } else {
                    for (index, target) in selected.iter().enumerate() {
                        let upper_t = maxt.min(target.cap);
                        if target.complete || upper_t < mint {
                            continue;
                        }
                        let lower = chunk_key(partition_start, target.series_id, Timestamp::MIN);
                        let upper = chunk_key(
                            partition_start,
                            target.series_id,
                            upper_t.min(partition_start.saturating_add(PARTITION_MS)),
                        );
                        for entry in chunks
                            .range(lower.as_slice()..=upper.as_slice())
                            .context("reading chunks of a series")?
                        {
                            let (key, value) = entry.context("reading a chunk")?;
                            let key = encoding::decode_chunk_key(key.value()).map_err(|error| {
                                TsdbError::Corrupt(format!("chunk key: {error}"))
                            })?;
                            stored_chunks.push(index, key.mint, value.value(), mint, upper_t)?;
                        }
                    }
                }
            }
        }
        drop(transaction);
        // Each series' chunks together, in the order they were read (by
        // partition, then by time within one): a stable sort keeps that.
        stored_chunks.jobs.sort_by_key(|job| job.index);

        let finish = |entries: &mut [Selected], first_index: usize, jobs: &[ChunkJob]| {
            finish_series(
                entries,
                first_index,
                jobs,
                &stored_chunks.bytes,
                latest_only,
            )
        };
        let mut result =
            if selected.len() >= PARALLEL_SELECT_MIN_SERIES && rayon::current_num_threads() > 1 {
                let middle = selected.len() / 2;
                let jobs_middle = stored_chunks
                    .jobs
                    .partition_point(|job| (job.index as usize) < middle);
                let (first_jobs, second_jobs) = stored_chunks.jobs.split_at(jobs_middle);
                let (first_entries, second_entries) = selected.split_at_mut(middle);
                let (first, second) = rayon::join(
                    || finish(first_entries, 0, first_jobs),
                    || finish(second_entries, middle, second_jobs),
                );
                let mut first = first?;
                first.extend(second?);
                first
            } else {
                finish(&mut selected, 0, &stored_chunks.jobs)?
            };
        if sorted {
            sort_by_label_sets(&mut result, |series| &series.labels);
        }
        Ok(result)
    }

    /// Copies, under the head lock, what each selected series needs from
    /// the head: its encoded labels and its open chunk's samples in the
    /// range (or, for `latest_only`, just the newest one when the open
    /// chunk answers it).
    fn copy_from_head(
        &self,
        head: &Head,
        slots: &[SeriesSlot],
        mint: Timestamp,
        maxt: Timestamp,
        latest_only: bool,
    ) -> Vec<Selected> {
        let mut selected = Vec::with_capacity(slots.len());
        for &slot in slots {
            let Some(series) = head.series(slot) else {
                continue;
            };
            let cap = self.visible_newest[slot as usize];
            let upper = maxt.min(cap);
            let mut head_samples = Vec::new();
            let mut complete = false;
            if let (Some(chunk_mint), Some(newest)) = (series.chunk.mint(), series.chunk.last()) {
                if latest_only && newest.t <= upper {
                    // The chunk's last sample is the series' newest one.
                    if newest.t >= mint {
                        head_samples.push(newest);
                    }
                    complete = true;
                } else if latest_only
                    && let Some(previous) = series.chunk.second_last()
                    && previous.t <= upper
                {
                    // The newest sample lies after the range (a scrape just
                    // after the query time): the one before it answers.
                    if previous.t >= mint {
                        head_samples.push(previous);
                    }
                    complete = true;
                } else if newest.t >= mint && chunk_mint <= upper {
                    series.chunk.samples_into(&mut head_samples);
                    if chunk_mint < mint || newest.t > upper {
                        head_samples.retain(|sample| sample.t >= mint && sample.t <= upper);
                    }
                    if latest_only && chunk_mint <= upper {
                        // Older chunks hold only older samples.
                        let newest_in_range = head_samples.last().copied();
                        head_samples.clear();
                        head_samples.extend(newest_in_range);
                        complete = true;
                    }
                }
            }
            if complete && head_samples.is_empty() {
                continue;
            }
            selected.push(Selected {
                series_id: series.id,
                encoded_labels: series.labels.clone(),
                cap,
                samples: Vec::new(),
                head_samples,
                complete,
            });
        }
        selected
    }
}

/// Below this many selected series, decoding runs on the calling thread
/// only: handing half to a pool worker costs a wake-up.
const PARALLEL_SELECT_MIN_SERIES: usize = 512;

/// One stored chunk to decode for a selected series.
struct ChunkJob {
    /// Position of the series in the selection.
    index: u32,
    /// Where the chunk's encoded samples lie in `StoredChunks::bytes`.
    start: usize,
    end: usize,
    /// Sample count from the chunk header, to size the output once.
    count: u32,
    /// Whether every sample of the chunk lies in the wanted range (no filter).
    inside: bool,
    /// The wanted range of the series.
    mint: Timestamp,
    maxt: Timestamp,
}

/// The stored chunks of a selection, copied out of the read transaction so
/// that decoding can run on any thread.
#[derive(Default)]
struct StoredChunks {
    jobs: Vec<ChunkJob>,
    bytes: Vec<u8>,
}

impl StoredChunks {
    /// Queues one stored chunk value of series `index` if it overlaps `[mint, maxt]`.
    fn push(
        &mut self,
        index: usize,
        chunk_mint: Timestamp,
        value: &[u8],
        mint: Timestamp,
        maxt: Timestamp,
    ) -> Result<(), TsdbError> {
        let (chunk_maxt, count, encoded) = encoding::decode_chunk_value(value)
            .map_err(|error| TsdbError::Corrupt(format!("chunk value: {error}")))?;
        if chunk_maxt < mint || chunk_mint > maxt {
            return Ok(());
        }
        let start = self.bytes.len();
        self.bytes.extend_from_slice(encoded);
        self.jobs.push(ChunkJob {
            index: u32::try_from(index)
                .map_err(|_| TsdbError::Corrupt("too many series selected".to_string()))?,
            start,
            end: self.bytes.len(),
            count,
            inside: chunk_mint >= mint && chunk_maxt <= maxt,
            mint,
            maxt,
        });
        Ok(())
    }
}

/// Turns the selected series `entries` (the selection from position
/// `first_index` on) into result series: decodes labels and the chunks of
/// `jobs` (this range's, grouped by series in read order), then appends the
/// head samples. Stored samples come first and the head holds the newest,
/// so the samples are usually in order already; only when they overlap (a
/// chunk just sealed is in both, or blocks and chunks interleave) are they
/// sorted, and a stable sort then keeps one copy per timestamp (the copies
/// of one sample are bit-identical).
fn finish_series(
    entries: &mut [Selected],
    first_index: usize,
    jobs: &[ChunkJob],
    bytes: &[u8],
    latest_only: bool,
) -> Result<Vec<Series>, TsdbError> {
    let mut result = Vec::with_capacity(entries.len());
    let mut edge_buffer: Vec<Sample> = Vec::new();
    let mut cursor = 0usize;
    for (position, entry) in entries.iter_mut().enumerate() {
        let index = first_index + position;
        let series_jobs_start = cursor;
        while jobs
            .get(cursor)
            .is_some_and(|job| job.index as usize == index)
        {
            cursor += 1;
        }
        let series_jobs = &jobs[series_jobs_start..cursor];
        let announced: usize = series_jobs.iter().map(|job| job.count as usize).sum();
        let mut samples = if series_jobs.is_empty() && entry.samples.is_empty() {
            // Only head samples (the common case for recent data): the
            // buffer copied under the head lock becomes the result as is,
            // instead of being copied once more.
            std::mem::take(&mut entry.head_samples)
        } else {
            let mut samples = std::mem::take(&mut entry.samples);
            samples.reserve(announced + entry.head_samples.len());
            samples
        };
        for job in series_jobs {
            let encoded = bytes.get(job.start..job.end).unwrap_or_default();
            let decoded_into = if job.inside {
                &mut samples
            } else {
                // A chunk at an edge of the range: decoded aside, then
                // only the samples inside the range are kept.
                edge_buffer.clear();
                &mut edge_buffer
            };
            chunk::decode_into(encoded, decoded_into).map_err(|error| {
                TsdbError::Corrupt(format!("chunk of series {}: {error}", entry.series_id))
            })?;
            if !job.inside {
                samples.extend(
                    edge_buffer
                        .iter()
                        .filter(|sample| sample.t >= job.mint && sample.t <= job.maxt)
                        .copied(),
                );
            }
        }
        samples.extend_from_slice(&entry.head_samples);
        if samples.is_empty() {
            continue;
        }
        if !samples.is_sorted_by(|a, b| a.t < b.t) {
            samples.sort_by_key(|sample| sample.t);
            samples.dedup_by_key(|sample| sample.t);
        }
        if latest_only && samples.len() > 1 {
            let newest = samples.last().copied();
            samples.clear();
            samples.extend(newest);
        }
        let labels = encoding::decode_labels(&entry.encoded_labels).unwrap_or_default();
        result.push(Series { labels, samples });
    }
    Ok(result)
}

/// Below this many series the label sort runs on the calling thread only.
const PARALLEL_SORT_MIN_SERIES: usize = 2048;

/// Sorts by label set. Label sets of distinct series differ, so the order is
/// total and an unstable sort is exact; above a size threshold the sort runs
/// on the worker pool (comparing label sets is most of a wide selection's
/// cost once the samples are read).
fn sort_by_label_sets<T: Send>(items: &mut [T], labels_of: impl Fn(&T) -> &Labels + Sync) {
    let order = |a: &T, b: &T| labels_of(a).cmp(labels_of(b));
    if items.len() < PARALLEL_SORT_MIN_SERIES {
        items.sort_unstable_by(order);
    } else {
        items.par_sort_unstable_by(order);
    }
}

impl TsdbQuerier<'_> {
    /// `select_series` within what this querier may show.
    fn select_visible(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
        latest_only: bool,
        sorted: bool,
    ) -> Result<Vec<Series>, StorageError> {
        let Some((mint, maxt)) = self.clamp(mint, maxt) else {
            return Ok(Vec::new());
        };
        Ok(self.select_series(mint, maxt, matchers, latest_only, sorted)?)
    }
}

impl Querier for TsdbQuerier<'_> {
    fn select(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        self.select_visible(mint, maxt, matchers, false, true)
    }

    fn select_latest(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        self.select_visible(mint, maxt, matchers, true, true)
    }

    fn select_latest_any_order(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        self.select_visible(mint, maxt, matchers, true, false)
    }

    fn series(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Labels>, StorageError> {
        let Some((mint, maxt)) = self.clamp(mint, maxt) else {
            return Ok(Vec::new());
        };
        let head = self.tsdb.shared.head.read();
        let mut labels: Vec<Labels> = self
            .matching_slots(&head, mint, maxt, matchers)
            .into_iter()
            .map(|slot| head.labels_of(slot))
            .collect();
        drop(head);
        sort_by_label_sets(&mut labels, |labels| labels);
        Ok(labels)
    }

    fn label_names(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let Some((mint, maxt)) = self.clamp(mint, maxt) else {
            return Ok(Vec::new());
        };
        let head = self.tsdb.shared.head.read();
        let mut names: BTreeSet<&str> = BTreeSet::new();
        if matchers.is_empty() {
            // Every series: the names come from the index, one visibility
            // check per name instead of one label decode per series.
            for (name, lists) in head.postings.names() {
                if self.any_visible(&head, lists, mint, maxt) {
                    names.insert(head.symbols.get(name));
                }
            }
            let result: Vec<String> = names.into_iter().map(str::to_string).collect();
            drop(head);
            return Ok(result);
        }
        for slot in self.matching_slots(&head, mint, maxt, matchers) {
            if let Some(series) = head.series(slot) {
                names.extend(series.label_pairs().map(|(name, _)| name));
            }
        }
        let result: Vec<String> = names.into_iter().map(str::to_string).collect();
        drop(head);
        Ok(result)
    }

    fn label_values(
        &self,
        name: &str,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        let Some((mint, maxt)) = self.clamp(mint, maxt) else {
            return Ok(Vec::new());
        };
        let head = self.tsdb.shared.head.read();
        let mut values: BTreeSet<&str> = BTreeSet::new();
        if matchers.is_empty() {
            if let Some(name_symbol) = head.symbols.find(name) {
                for (value, list) in head.postings.values_of(name_symbol) {
                    if self.any_visible(&head, std::iter::once(list), mint, maxt) {
                        values.insert(head.symbols.get(value));
                    }
                }
            }
            let result: Vec<String> = values.into_iter().map(str::to_string).collect();
            drop(head);
            return Ok(result);
        }
        for slot in self.matching_slots(&head, mint, maxt, matchers) {
            if let Some(series) = head.series(slot) {
                values.extend(
                    series
                        .label_pairs()
                        .filter(|(label_name, _)| *label_name == name)
                        .map(|(_, value)| value),
                );
            }
        }
        let result: Vec<String> = values.into_iter().map(str::to_string).collect();
        drop(head);
        Ok(result)
    }
}

/// Number of log records present (tests and stats).
pub fn log_record_count(tsdb: &Tsdb) -> Result<u64, TsdbError> {
    let database = tsdb.shared.database()?;
    let transaction = database
        .begin_read()
        .context("beginning a read transaction")?;
    let log = transaction
        .open_table(tables::LOG)
        .context("opening the log table")?;
    log.len().context("counting log records")
}
