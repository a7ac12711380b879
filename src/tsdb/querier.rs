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
//! older than the open chunk read stored chunks. Label names and values over
//! all series come from the postings index, one visibility check per name or
//! value instead of one label decode per series.

use std::collections::BTreeSet;

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
    labels: Labels,
    /// Newest visible sample time of this series.
    cap: Timestamp,
    samples: Vec<Sample>,
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
    fn select_series(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
        latest_only: bool,
    ) -> Result<Vec<Series>, TsdbError> {
        let database = self.tsdb.shared.database()?;
        let (mut selected, partitions, transaction) = {
            let head = self.tsdb.shared.head.read();
            let transaction: ReadTransaction = database
                .begin_read()
                .context("beginning a read transaction")?;
            let slots = self.matching_slots(&head, mint, maxt, matchers);
            let mut selected = Vec::with_capacity(slots.len());
            for slot in slots {
                let Some(series) = head.series(slot) else {
                    continue;
                };
                let cap = self.visible_newest[slot as usize];
                let upper = maxt.min(cap);
                let mut samples = Vec::new();
                let mut complete = false;
                if let (Some(chunk_mint), Some(newest)) = (series.chunk.mint(), series.chunk.last())
                {
                    if latest_only && newest.t <= upper {
                        // The chunk's last sample is the series' newest one.
                        if newest.t >= mint {
                            samples.push(newest);
                        }
                        complete = true;
                    } else if newest.t >= mint && chunk_mint <= upper {
                        samples = series.chunk.samples();
                        samples.retain(|sample| sample.t >= mint && sample.t <= upper);
                        if latest_only && chunk_mint <= upper {
                            // Older chunks hold only older samples.
                            let newest_in_range = samples.last().copied();
                            samples.clear();
                            samples.extend(newest_in_range);
                            complete = true;
                        }
                    }
                }
                if complete && samples.is_empty() {
                    continue;
                }
                selected.push(Selected {
                    series_id: series.id,
                    labels: head.labels_of(slot),
                    cap,
                    samples,
                    complete,
                });
            }
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

        let incomplete = selected.iter().filter(|entry| !entry.complete).count();
        if incomplete > 0 && !partitions.is_empty() {
            let partitions = &partitions;
            let chunks = transaction
                .open_table(tables::CHUNKS)
                .context("opening the chunks table")?;
            for &(partition_start, summary) in partitions {
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
                        let target = &mut selected[index];
                        if target.complete {
                            continue;
                        }
                        read_chunk(
                            key.mint,
                            value.value(),
                            mint,
                            maxt.min(target.cap),
                            &mut target.samples,
                        )?;
                    }
                } else {
                    for target in selected.iter_mut() {
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
                            read_chunk(
                                key.mint,
                                value.value(),
                                mint,
                                upper_t,
                                &mut target.samples,
                            )?;
                        }
                    }
                }
            }
            // Compacted partitions keep their samples in blocks.
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
        }
        drop(transaction);

        let mut result = Vec::with_capacity(selected.len());
        for mut entry in selected {
            if entry.samples.is_empty() {
                continue;
            }
            // Chunks arrive in time order, head samples first: a stable sort
            // then keeps one sample per timestamp (the two copies of a
            // just-sealed sample are bit-identical).
            if !entry.samples.is_sorted_by(|a, b| a.t < b.t) {
                entry.samples.sort_by_key(|sample| sample.t);
                entry.samples.dedup_by_key(|sample| sample.t);
            }
            if latest_only && entry.samples.len() > 1 {
                let newest = entry.samples.last().copied();
                entry.samples.clear();
                entry.samples.extend(newest);
            }
            result.push(Series {
                labels: entry.labels,
                samples: entry.samples,
            });
        }
        sort_series_by_labels(&mut result);
        Ok(result)
    }
}

/// Below this many series the label sort runs on the calling thread only.
const PARALLEL_SORT_MIN_SERIES: usize = 8192;

/// Sorts by label set. Label sets of distinct series differ, so the order is
/// total and an unstable sort is exact; above a size threshold each half is
/// sorted on its own thread and the halves merged, which yields the same
/// order as one sort (comparing label sets is most of a wide selection's
/// cost once the samples are read).
fn sort_series_by_labels(series: &mut Vec<Series>) {
    let two_cores = std::thread::available_parallelism().is_ok_and(|cores| cores.get() > 1);
    if series.len() < PARALLEL_SORT_MIN_SERIES || !two_cores {
        series.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
        return;
    }
    let mut second = series.split_off(series.len() / 2);
    let mut first = std::mem::take(series);
    std::thread::scope(|scope| {
        let second = &mut second;
        scope.spawn(move || second.sort_unstable_by(|a, b| a.labels.cmp(&b.labels)));
        first.sort_unstable_by(|a, b| a.labels.cmp(&b.labels));
    });
    series.reserve(first.len() + second.len());
    let mut first = first.into_iter().peekable();
    let mut second = second.into_iter().peekable();
    loop {
        let take_first = match (first.peek(), second.peek()) {
            (Some(a), Some(b)) => a.labels < b.labels,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_first {
            first.next()
        } else {
            second.next()
        };
        series.extend(next);
    }
}

/// Decodes one stored chunk into `out` if it overlaps `[mint, maxt]`.
fn read_chunk(
    chunk_mint: Timestamp,
    value: &[u8],
    mint: Timestamp,
    maxt: Timestamp,
    out: &mut Vec<Sample>,
) -> Result<(), TsdbError> {
    let (chunk_maxt, _count, encoded) = encoding::decode_chunk_value(value)
        .map_err(|error| TsdbError::Corrupt(format!("chunk value: {error}")))?;
    if chunk_maxt < mint || chunk_mint > maxt {
        return Ok(());
    }
    let samples = chunk::decode(encoded)
        .map_err(|error| TsdbError::Corrupt(format!("chunk at {chunk_mint}: {error}")))?;
    out.extend(
        samples
            .into_iter()
            .filter(|sample| sample.t >= mint && sample.t <= maxt),
    );
    Ok(())
}

impl Querier for TsdbQuerier<'_> {
    fn select(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        let Some((mint, maxt)) = self.clamp(mint, maxt) else {
            return Ok(Vec::new());
        };
        Ok(self.select_series(mint, maxt, matchers, false)?)
    }

    fn select_latest(
        &self,
        mint: Timestamp,
        maxt: Timestamp,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        let Some((mint, maxt)) = self.clamp(mint, maxt) else {
            return Ok(Vec::new());
        };
        Ok(self.select_series(mint, maxt, matchers, true)?)
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
        labels.sort();
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
