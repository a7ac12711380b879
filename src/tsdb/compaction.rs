//! Partition compaction: once a 2-hour partition is closed (no open chunk
//! can still add to it), its loose chunks, and any blocks an earlier pass
//! wrote, are rewritten into blocks (`block.rs`): one redb value per run of
//! consecutive series, timestamps shared per column. The commit thread runs
//! it; [`plan_compaction`] (pure) says which partitions are due and
//! [`compact_partition`] rewrites one step of a partition (a run of series)
//! inside the caller's write transaction, so readers see each series either
//! in its old chunks or in the new blocks, never both or neither (MVCC
//! snapshot), and ingest waits behind one step rather than a partition.
//!
//! Memory stays bounded by one old block's samples and one new block:
//! series are merged as two sorted streams (old blocks, loose chunks), both
//! in series-id order, and old blocks are read one at a time.

use std::collections::VecDeque;

use redb::{ReadableTable, Table, WriteTransaction};

use crate::chunk;
use crate::model::{Sample, Timestamp};
use crate::tsdb::block::{
    BLOCK_KEY_BYTES, BLOCK_MAX_BYTES, BlockBuilder, PreparedSeries, block_key, decode_block,
    decode_block_key,
};
use crate::tsdb::encoding::{
    self, PARTITION_MS, PartitionSummary, chunk_key, decode_chunk_key, decode_chunk_value,
};
use crate::tsdb::{RedbContext, TsdbError, tables};

/// What one compaction pass did (summed over partitions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub partitions_compacted: u64,
    pub chunks_merged: u64,
    pub blocks_rewritten: u64,
    pub blocks_written: u64,
    pub series: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl CompactionReport {
    pub fn add(&mut self, other: &CompactionReport) {
        self.partitions_compacted += other.partitions_compacted;
        self.chunks_merged += other.chunks_merged;
        self.blocks_rewritten += other.blocks_rewritten;
        self.blocks_written += other.blocks_written;
        self.series += other.series;
        self.bytes_before += other.bytes_before;
        self.bytes_after += other.bytes_after;
    }
}

/// Partitions to compact, oldest first: those with loose chunks that are
/// closed, i.e. whose end lies `settle_ms` or more before the newest sample
/// (by then the periodic flush has sealed every open chunk reaching into
/// them). `force` takes every partition with loose chunks (maintenance, and
/// the end-to-end benchmark's "everything sealed" figure).
pub fn plan_compaction(
    partitions: &[(Timestamp, PartitionSummary)],
    newest_t: Option<Timestamp>,
    settle_ms: i64,
    force: bool,
) -> Vec<Timestamp> {
    let mut due: Vec<Timestamp> = partitions
        .iter()
        .filter(|(start, summary)| {
            summary.chunks > 0
                && (force
                    || newest_t.is_some_and(|newest| {
                        newest >= start.saturating_add(PARTITION_MS).saturating_add(settle_ms)
                    }))
        })
        .map(|(start, _)| *start)
        .collect();
    due.sort_unstable();
    due
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> TsdbError {
    TsdbError::Corrupt(format!("{what}: {error}"))
}

/// Series of the partition's old blocks, read and decoded one block at a
/// time from the table the new blocks go to.
struct OldBlocks {
    partition_start: Timestamp,
    /// No untaken old block starts below this series id.
    next_from: u64,
    pending: VecDeque<(u64, Vec<Sample>)>,
    /// First series id and stored bytes of each block decoded so far.
    taken: Vec<(u64, u64)>,
}

impl OldBlocks {
    fn peek_id(&mut self, writer: &BlockWriter<'_>) -> Result<Option<u64>, TsdbError> {
        while self.pending.is_empty() {
            // Every new block starts below the next untaken old one (its
            // series were all merged before that block was reached), so
            // the next old block is the first key past both.
            let from = match writer.written_ids.last() {
                Some(written) => self.next_from.max(written + 1),
                None => self.next_from,
            };
            let lower = block_key(self.partition_start, from);
            let upper = block_key(self.partition_start, u64::MAX);
            let mut range = writer
                .table
                .range(lower.as_slice()..=upper.as_slice())
                .context("reading blocks")?;
            let Some(entry) = range.next() else {
                return Ok(None);
            };
            let (key, value) = entry.context("reading a block")?;
            let (_, first_series_id) =
                decode_block_key(key.value()).map_err(|error| corrupt("block key", error))?;
            self.taken.push((
                first_series_id,
                (BLOCK_KEY_BYTES + value.value().len()) as u64,
            ));
            self.next_from = first_series_id.saturating_add(1);
            self.pending = decode_block(first_series_id, value.value())
                .map_err(|error| corrupt("block", error))?
                .into();
        }
        Ok(self.pending.front().map(|(series_id, _)| *series_id))
    }

    fn pop(&mut self) -> Option<(u64, Vec<Sample>)> {
        self.pending.pop_front()
    }
}

/// Writes merged series into new blocks.
struct BlockWriter<'txn> {
    table: Table<'txn, &'static [u8], &'static [u8]>,
    partition_start: Timestamp,
    floor: Timestamp,
    builder: BlockBuilder,
    summary: PartitionSummary,
    /// First series ids of the blocks written, ascending.
    written_ids: Vec<u64>,
    series: u64,
}

impl BlockWriter<'_> {
    fn push(&mut self, series_id: u64, mut samples: Vec<Sample>) -> Result<(), TsdbError> {
        // Sources arrive in time order; the stable sort and dedup only
        // guard against a stored overlap, keeping the older copy.
        samples.sort_by_key(|sample| sample.t);
        samples.dedup_by_key(|sample| sample.t);
        samples.retain(|sample| sample.t >= self.floor);
        let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
            return Ok(());
        };
        self.summary.mint = self.summary.mint.min(first.t);
        self.summary.maxt = self.summary.maxt.max(last.t);
        self.series += 1;
        let prepared = PreparedSeries::new(series_id, &samples);
        if !self.builder.is_empty()
            && self.builder.encoded_bytes() + self.builder.added_bytes(&prepared) > BLOCK_MAX_BYTES
        {
            self.finish_block()?;
        }
        self.builder.add(prepared);
        if self.builder.encoded_bytes() >= BLOCK_MAX_BYTES {
            self.finish_block()?;
        }
        Ok(())
    }

    fn finish_block(&mut self) -> Result<(), TsdbError> {
        let Some((first_series_id, value)) = self.builder.finish() else {
            return Ok(());
        };
        let key = block_key(self.partition_start, first_series_id);
        self.table
            .insert(key.as_slice(), value.as_slice())
            .context("writing a block")?;
        self.summary.bytes += (BLOCK_KEY_BYTES + value.len()) as u64;
        self.written_ids.push(first_series_id);
        Ok(())
    }
}

/// Where one [`compact_partition`] call left its partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionStep {
    /// The partition's summary after the step; `None` when nothing is left
    /// in it (its row is deleted).
    pub summary: Option<PartitionSummary>,
    /// The series id the next step starts from; `None` when the partition
    /// is done.
    pub resume_from: Option<u64>,
}

/// Rewrites part of partition `partition_start` into blocks inside
/// `transaction`: from series `resume_from` on, merges each series' old
/// block entries and loose chunks, drops samples below `floor`, deletes
/// what it merged and updates the partition summary. It stops once it has
/// merged `step_chunks` loose chunks and reached a series boundary that is
/// also a boundary of the old blocks, so every series moves whole within
/// one transaction: a reader's snapshot sees each series either before or
/// after compaction. Small steps keep the commit thread's write lock short
/// (ingest waits behind each step, not behind the whole partition); a crash
/// between steps leaves loose chunks behind, so the partition stays due and
/// a later pass finishes it. The caller commits.
pub fn compact_partition(
    transaction: &WriteTransaction,
    partition_start: Timestamp,
    floor: Timestamp,
    resume_from: u64,
    step_chunks: u64,
    report: &mut CompactionReport,
) -> Result<CompactionStep, TsdbError> {
    let mut partitions = transaction
        .open_table(tables::PARTITIONS)
        .context("opening the partitions table")?;
    let stored_summary = match partitions
        .get(partition_start)
        .context("reading a partition summary")?
    {
        Some(value) => encoding::decode_partition_summary(value.value())
            .map_err(|error| corrupt("partition summary", error))?,
        None => PartitionSummary {
            bytes: 0,
            chunks: 0,
            mint: Timestamp::MAX,
            maxt: Timestamp::MIN,
        },
    };
    let blocks = transaction
        .open_table(tables::BLOCKS)
        .context("opening the blocks table")?;
    let block_upper = block_key(partition_start, u64::MAX);
    let mut old = OldBlocks {
        partition_start,
        next_from: resume_from,
        pending: VecDeque::new(),
        taken: Vec::new(),
    };
    let mut writer = BlockWriter {
        table: blocks,
        partition_start,
        floor,
        builder: BlockBuilder::new(),
        summary: PartitionSummary {
            bytes: 0,
            chunks: 0,
            mint: Timestamp::MAX,
            maxt: Timestamp::MIN,
        },
        written_ids: Vec::new(),
        series: 0,
    };

    let mut chunks = transaction
        .open_table(tables::CHUNKS)
        .context("opening the chunks table")?;
    let chunk_lower = chunk_key(partition_start, resume_from, Timestamp::MIN);
    let chunk_upper = chunk_key(partition_start, u64::MAX, Timestamp::MAX);
    let mut chunks_merged = 0u64;
    let mut chunk_bytes = 0u64;
    // The last series this step merged, when it stopped before the end.
    let mut stopped_after: Option<u64> = None;
    {
        let mut current: Option<(u64, Vec<Sample>)> = None;
        for entry in chunks
            .range(chunk_lower.as_slice()..=chunk_upper.as_slice())
            .context("reading chunks")?
        {
            let (key, value) = entry.context("reading a chunk")?;
            let key = decode_chunk_key(key.value()).map_err(|error| corrupt("chunk key", error))?;
            if current
                .as_ref()
                .is_some_and(|(series_id, _)| *series_id != key.series_id)
                && let Some((series_id, samples)) = current.take()
            {
                merge_series(&mut old, &mut writer, series_id, samples)?;
                if chunks_merged >= step_chunks && old.pending.is_empty() {
                    stopped_after = Some(series_id);
                    break;
                }
            }
            let value = value.value();
            chunk_bytes += (encoding::CHUNK_KEY_BYTES + value.len()) as u64;
            chunks_merged += 1;
            let (_, _, encoded) =
                decode_chunk_value(value).map_err(|error| corrupt("chunk value", error))?;
            let target = current.get_or_insert_with(|| (key.series_id, Vec::new()));
            chunk::decode_into(encoded, &mut target.1).map_err(|error| corrupt("chunk", error))?;
        }
        if let Some((series_id, samples)) = current.take() {
            merge_series(&mut old, &mut writer, series_id, samples)?;
        }
        if stopped_after.is_none() {
            while old.peek_id(&writer)?.is_some() {
                if let Some((series_id, samples)) = old.pop() {
                    writer.push(series_id, samples)?;
                }
            }
        }
        writer.finish_block()?;
    }
    let merged_upper = match stopped_after {
        Some(series_id) => chunk_key(partition_start, series_id, Timestamp::MAX),
        None => chunk_upper,
    };
    chunks
        .retain_in(chunk_lower.as_slice()..=merged_upper.as_slice(), |_, _| {
            false
        })
        .context("deleting compacted chunks")?;
    // Old blocks this step consumed are gone, unless a new block took the
    // same key (it overwrote the old value in place).
    for (first_series_id, _) in &old.taken {
        if writer.written_ids.binary_search(first_series_id).is_err() {
            let key = block_key(partition_start, *first_series_id);
            writer
                .table
                .remove(key.as_slice())
                .context("deleting an old block")?;
        }
    }
    let old_bytes: u64 = old.taken.iter().map(|(_, bytes)| bytes).sum();
    let consumed = old.taken.len();

    report.chunks_merged += chunks_merged;
    report.blocks_rewritten += consumed as u64;
    report.blocks_written += writer.written_ids.len() as u64;
    report.series += writer.series;
    report.bytes_before += chunk_bytes + old_bytes;
    report.bytes_after += writer.summary.bytes;
    let summary = PartitionSummary {
        bytes: (stored_summary.bytes.saturating_sub(chunk_bytes + old_bytes))
            .saturating_add(writer.summary.bytes),
        chunks: stored_summary.chunks.saturating_sub(chunks_merged),
        mint: stored_summary.mint.min(writer.summary.mint),
        maxt: stored_summary.maxt.max(writer.summary.maxt),
    };
    let resume_from = stopped_after.map(|series_id| series_id + 1);
    if resume_from.is_none() {
        report.partitions_compacted += 1;
        let any_block_left = writer
            .table
            .range(block_key(partition_start, 0).as_slice()..=block_upper.as_slice())
            .context("reading blocks")?
            .next()
            .is_some();
        if !any_block_left {
            partitions
                .remove(partition_start)
                .context("deleting a partition summary")?;
            return Ok(CompactionStep {
                summary: None,
                resume_from: None,
            });
        }
    }
    partitions
        .insert(
            partition_start,
            encoding::encode_partition_summary(&summary).as_slice(),
        )
        .context("writing a partition summary")?;
    Ok(CompactionStep {
        summary: Some(summary),
        resume_from,
    })
}

/// Emits old-block series below `series_id`, then `series_id` with its old
/// samples (if any) in front of `samples`.
fn merge_series(
    old: &mut OldBlocks,
    writer: &mut BlockWriter<'_>,
    series_id: u64,
    samples: Vec<Sample>,
) -> Result<(), TsdbError> {
    while let Some(old_id) = old.peek_id(writer)?
        && old_id < series_id
    {
        if let Some((old_id, old_samples)) = old.pop() {
            writer.push(old_id, old_samples)?;
        }
    }
    let merged = if old.peek_id(writer)? == Some(series_id) {
        match old.pop() {
            Some((_, mut old_samples)) => {
                old_samples.extend(samples);
                old_samples
            }
            None => samples,
        }
    } else {
        samples
    };
    writer.push(series_id, merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(chunks: u64) -> PartitionSummary {
        PartitionSummary {
            bytes: 10,
            chunks,
            mint: 0,
            maxt: 0,
        }
    }

    #[test]
    fn only_closed_partitions_with_loose_chunks_are_due() {
        let hour = 3_600_000;
        let partitions = [
            (2 * PARTITION_MS, summary(5)),
            (0, summary(3)),
            (PARTITION_MS, summary(0)),
            (3 * PARTITION_MS, summary(1)),
        ];
        let newest = Some(3 * PARTITION_MS + hour - 1);
        // Partition 0 ended 5 h before the newest sample, partition 2 just
        // under an hour before it; partition 1 has no loose chunks.
        assert_eq!(plan_compaction(&partitions, newest, hour, false), vec![0]);
        assert_eq!(
            plan_compaction(&partitions, newest, 0, false),
            vec![0, 2 * PARTITION_MS]
        );
        assert_eq!(
            plan_compaction(&partitions, newest, hour, true),
            vec![0, 2 * PARTITION_MS, 3 * PARTITION_MS]
        );
        assert!(plan_compaction(&partitions, None, hour, false).is_empty());
        assert!(plan_compaction(&[], newest, 0, true).is_empty());
    }
}
