//! Partition compaction: once a 2-hour partition is closed (no open chunk
//! can still add to it), its loose chunks, and any blocks an earlier pass
//! wrote, are rewritten into blocks (`block.rs`): one redb value per run of
//! consecutive series, timestamps shared per column. The commit thread runs
//! it; [`plan_compaction`] (pure) says which partitions are due and
//! [`compact_partition`] rewrites one partition inside the caller's write
//! transaction, so readers see either the old chunks or the new blocks,
//! never both or neither (MVCC snapshot).
//!
//! Memory stays bounded by one block's samples plus the compressed old
//! blocks of the partition: series are merged as two sorted streams (old
//! blocks, loose chunks), both in series-id order.

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

/// Series of the partition's old blocks, decoded one block at a time.
struct OldBlocks {
    blocks: std::vec::IntoIter<(u64, Vec<u8>)>,
    pending: VecDeque<(u64, Vec<Sample>)>,
}

impl OldBlocks {
    fn peek_id(&mut self) -> Result<Option<u64>, TsdbError> {
        while self.pending.is_empty() {
            let Some((first_series_id, bytes)) = self.blocks.next() else {
                return Ok(None);
            };
            self.pending = decode_block(first_series_id, &bytes)
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
    blocks_written: u64,
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
        self.blocks_written += 1;
        Ok(())
    }
}

/// Rewrites partition `partition_start` into blocks inside `transaction`:
/// merges each series' old block entries and loose chunks, drops samples
/// below `floor`, deletes the old blocks and chunks and writes the new
/// partition summary (or deletes it when nothing is left). Returns the new
/// summary and what was done. The caller commits.
pub fn compact_partition(
    transaction: &WriteTransaction,
    partition_start: Timestamp,
    floor: Timestamp,
    report: &mut CompactionReport,
) -> Result<Option<PartitionSummary>, TsdbError> {
    let mut blocks = transaction
        .open_table(tables::BLOCKS)
        .context("opening the blocks table")?;
    let block_lower = block_key(partition_start, 0);
    let block_upper = block_key(partition_start, u64::MAX);
    let mut old_blocks: Vec<(u64, Vec<u8>)> = Vec::new();
    for entry in blocks
        .range(block_lower.as_slice()..=block_upper.as_slice())
        .context("reading blocks")?
    {
        let (key, value) = entry.context("reading a block")?;
        let (_, first_series_id) =
            decode_block_key(key.value()).map_err(|error| corrupt("block key", error))?;
        report.bytes_before += (BLOCK_KEY_BYTES + value.value().len()) as u64;
        old_blocks.push((first_series_id, value.value().to_vec()));
    }
    report.blocks_rewritten += old_blocks.len() as u64;
    // New blocks may reuse old keys, so the old ones go first (their bytes
    // are in `old_blocks`).
    blocks
        .retain_in(block_lower.as_slice()..=block_upper.as_slice(), |_, _| {
            false
        })
        .context("deleting old blocks")?;
    let mut old = OldBlocks {
        blocks: old_blocks.into_iter(),
        pending: VecDeque::new(),
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
        blocks_written: 0,
        series: 0,
    };

    let mut chunks = transaction
        .open_table(tables::CHUNKS)
        .context("opening the chunks table")?;
    let chunk_lower = chunk_key(partition_start, 0, Timestamp::MIN);
    let chunk_upper = chunk_key(partition_start, u64::MAX, Timestamp::MAX);
    {
        let mut current: Option<(u64, Vec<Sample>)> = None;
        for entry in chunks
            .range(chunk_lower.as_slice()..=chunk_upper.as_slice())
            .context("reading chunks")?
        {
            let (key, value) = entry.context("reading a chunk")?;
            let key = decode_chunk_key(key.value()).map_err(|error| corrupt("chunk key", error))?;
            let value = value.value();
            report.bytes_before += (encoding::CHUNK_KEY_BYTES + value.len()) as u64;
            report.chunks_merged += 1;
            let (_, _, encoded) =
                decode_chunk_value(value).map_err(|error| corrupt("chunk value", error))?;
            if current
                .as_ref()
                .is_some_and(|(series_id, _)| *series_id != key.series_id)
                && let Some((series_id, samples)) = current.take()
            {
                merge_series(&mut old, &mut writer, series_id, samples)?;
            }
            let target = current.get_or_insert_with(|| (key.series_id, Vec::new()));
            chunk::decode_into(encoded, &mut target.1).map_err(|error| corrupt("chunk", error))?;
        }
        if let Some((series_id, samples)) = current.take() {
            merge_series(&mut old, &mut writer, series_id, samples)?;
        }
        while old.peek_id()?.is_some() {
            if let Some((series_id, samples)) = old.pop() {
                writer.push(series_id, samples)?;
            }
        }
        writer.finish_block()?;
    }
    chunks
        .retain_in(chunk_lower.as_slice()..=chunk_upper.as_slice(), |_, _| {
            false
        })
        .context("deleting compacted chunks")?;

    report.partitions_compacted += 1;
    report.blocks_written += writer.blocks_written;
    report.series += writer.series;
    report.bytes_after += writer.summary.bytes;
    let mut partitions = transaction
        .open_table(tables::PARTITIONS)
        .context("opening the partitions table")?;
    if writer.blocks_written == 0 {
        partitions
            .remove(partition_start)
            .context("deleting a partition summary")?;
        return Ok(None);
    }
    partitions
        .insert(
            partition_start,
            encoding::encode_partition_summary(&writer.summary).as_slice(),
        )
        .context("writing a partition summary")?;
    Ok(Some(writer.summary))
}

/// Emits old-block series below `series_id`, then `series_id` with its old
/// samples (if any) in front of `samples`.
fn merge_series(
    old: &mut OldBlocks,
    writer: &mut BlockWriter<'_>,
    series_id: u64,
    samples: Vec<Sample>,
) -> Result<(), TsdbError> {
    while let Some(old_id) = old.peek_id()?
        && old_id < series_id
    {
        if let Some((old_id, old_samples)) = old.pop() {
            writer.push(old_id, old_samples)?;
        }
    }
    let merged = if old.peek_id()? == Some(series_id) {
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
