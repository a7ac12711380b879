//! Blocks: the compacted form of a closed partition. Compaction
//! (`compaction.rs`) rewrites the loose 120-sample chunks of a partition into
//! blocks; each block holds every sample of a run of consecutive series ids
//! in that partition, in one redb value. Two things make this smaller than
//! loose chunks:
//!
//! - one redb entry (16-byte key) per few dozen series instead of a 24-byte
//!   key and a 12-byte header per 120 samples, and far fewer B-tree entries;
//! - timestamps are stored once per distinct timestamp *column* in a block:
//!   all series of one scrape target share their timestamps (the scrape's
//!   ms jitter included), and series ids of one target are consecutive
//!   because a target's series are created together, so a block usually
//!   holds one or two columns and each series only its values.
//!
//! Values and columns reuse the chunk encodings (`chunk::encode`): a column
//! is a chunk of `(t_i, 0.0)`, and a series' values are a chunk of
//! `(i, v_i)`, whose timestamp sequence costs a few header bits.
//!
//! Every decoder here returns an error for malformed input and never panics
//! (fuzz target `block_decode`).

use std::collections::HashMap;

use redb::ReadableTable;

use crate::chunk::{self, ChunkError};
use crate::model::{Sample, Timestamp};
use crate::tsdb::{RedbContext, TsdbError};

// Layout is (key, 16 bytes, big endian so keys sort as a tuple):
//
//   0                         8                  16
//   | partition start ^ 2^63  | first series id  |
//        i64 BE (sign flipped)      u64 BE
//
// Layout is (value):
//
//   u8       kind = BLOCK_KIND_SHARED_TIMESTAMPS
//   varint   column count C (≥ 1)
//   varint   entry count N (≥ 1)
//   C times: varint byte length L, then L bytes: chunk of (t_i, 0.0)
//   N times: varint series id − previous id (the previous id of entry 0 is
//            the key's first series id, so its delta is 0; later deltas may
//            be 0: a series with more than MAX_ENTRY_SAMPLES samples takes
//            several consecutive entries, in time order)
//            varint column index (< C)
//            varint payload byte length
//   the N payloads back to back, each a chunk of (i, v_i) for i = 0..n−1
//   where n is the sample count of the entry's column; nothing follows.

/// Byte length of a block key.
pub const BLOCK_KEY_BYTES: usize = 16;

/// First byte of a block value. Other values are reserved.
pub const BLOCK_KIND_SHARED_TIMESTAMPS: u8 = 1;

/// A block is closed before a series would take it past this size. A
/// block fills one 4 KiB redb leaf page by itself (page header, two
/// offsets and the 16-byte key take the rest): a larger value would get a
/// run of pages rounded up to a power of two, and blocks well below a page
/// leave the unused part of their leaf empty, since neighbours rarely fit.
pub const BLOCK_MAX_BYTES: usize = 4_000;

/// Most samples one block entry holds. A series with more samples in one
/// partition (sub-second scrapes) takes several entries, so one entry's
/// decode stays bounded and within the packed encodings' limit.
pub const MAX_ENTRY_SAMPLES: usize = 16_384;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    #[error("block key has {0} bytes, expected 16")]
    KeyLength(usize),
    #[error("block is truncated")]
    Truncated,
    #[error("unknown block kind {0}")]
    UnknownKind(u8),
    #[error("block is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("chunk inside a block: {0}")]
    Chunk(#[from] ChunkError),
}

/// The key of a block: sorts by partition, then by first series id.
pub fn block_key(partition_start: Timestamp, first_series_id: u64) -> [u8; BLOCK_KEY_BYTES] {
    let mut key = [0u8; BLOCK_KEY_BYTES];
    key[..8].copy_from_slice(&((partition_start as u64) ^ (1 << 63)).to_be_bytes());
    key[8..].copy_from_slice(&first_series_id.to_be_bytes());
    key
}

/// Splits a block key into (partition start, first series id).
pub fn decode_block_key(key: &[u8]) -> Result<(Timestamp, u64), BlockError> {
    let key: &[u8; BLOCK_KEY_BYTES] = key
        .try_into()
        .map_err(|_| BlockError::KeyLength(key.len()))?;
    let mut partition = [0u8; 8];
    partition.copy_from_slice(&key[..8]);
    let mut series = [0u8; 8];
    series.copy_from_slice(&key[8..]);
    Ok((
        (u64::from_be_bytes(partition) ^ (1 << 63)) as i64,
        u64::from_be_bytes(series),
    ))
}

fn push_uvarint(out: &mut Vec<u8>, value: u64) {
    crate::tsdb::encoding::put_uvarint(out, value);
}

/// One series encoded for a block, before it is added: lets the caller see
/// what it would cost first (to close a block before it outgrows a page).
pub struct PreparedSeries {
    series_id: u64,
    pieces: Vec<PreparedPiece>,
}

struct PreparedPiece {
    timestamps: Vec<Timestamp>,
    /// The timestamps as a column chunk (used if the block lacks them).
    column: Vec<u8>,
    payload: Vec<u8>,
}

impl PreparedSeries {
    /// Encodes `samples` (time order) of `series_id`, split into entries of
    /// at most `MAX_ENTRY_SAMPLES`.
    pub fn new(series_id: u64, samples: &[Sample]) -> PreparedSeries {
        let pieces = samples
            .chunks(MAX_ENTRY_SAMPLES)
            .map(|piece| {
                let column_samples: Vec<Sample> = piece
                    .iter()
                    .map(|sample| Sample {
                        t: sample.t,
                        v: 0.0,
                    })
                    .collect();
                let values: Vec<Sample> = piece
                    .iter()
                    .enumerate()
                    .map(|(index, sample)| Sample {
                        t: index as Timestamp,
                        v: sample.v,
                    })
                    .collect();
                PreparedPiece {
                    timestamps: piece.iter().map(|sample| sample.t).collect(),
                    column: chunk::encode(&column_samples),
                    payload: chunk::encode(&values),
                }
            })
            .collect();
        PreparedSeries { series_id, pieces }
    }
}

/// Collects series for one block. Push series in ascending id order.
#[derive(Default)]
pub struct BlockBuilder {
    first_series_id: Option<u64>,
    last_series_id: u64,
    column_index: HashMap<Vec<Timestamp>, u32>,
    columns: Vec<Vec<u8>>,
    /// (series id, column, payload)
    entries: Vec<(u64, u32, Vec<u8>)>,
    encoded_bytes: usize,
}

impl BlockBuilder {
    pub fn new() -> BlockBuilder {
        BlockBuilder::default()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// About the size `finish` will return.
    pub fn encoded_bytes(&self) -> usize {
        self.encoded_bytes + 4
    }

    /// Adds the samples of one series (time order, ids ascending across
    /// calls). Empty sample lists add nothing.
    pub fn push_series(&mut self, series_id: u64, samples: &[Sample]) {
        self.add(PreparedSeries::new(series_id, samples));
    }

    /// Bytes that adding `series` would add to `encoded_bytes` (an upper
    /// bound: varints are counted at their widest likely size).
    pub fn added_bytes(&self, series: &PreparedSeries) -> usize {
        series
            .pieces
            .iter()
            .map(|piece| {
                let column = if self.column_index.contains_key(&piece.timestamps) {
                    0
                } else {
                    piece.column.len() + 3
                };
                column + piece.payload.len() + 4
            })
            .sum()
    }

    /// Adds a prepared series (ids ascending across calls).
    pub fn add(&mut self, series: PreparedSeries) {
        debug_assert!(self.first_series_id.is_none() || series.series_id >= self.last_series_id);
        for piece in series.pieces {
            let column = match self.column_index.get(&piece.timestamps) {
                Some(&column) => column,
                None => {
                    self.encoded_bytes += piece.column.len() + 3;
                    self.columns.push(piece.column);
                    let column = (self.columns.len() - 1) as u32;
                    self.column_index.insert(piece.timestamps, column);
                    column
                }
            };
            self.encoded_bytes += piece.payload.len() + 4;
            self.first_series_id.get_or_insert(series.series_id);
            self.last_series_id = series.series_id;
            self.entries.push((series.series_id, column, piece.payload));
        }
    }

    /// The first series id (the key's) and the encoded value; `None` when
    /// nothing was pushed. The builder is left empty.
    pub fn finish(&mut self) -> Option<(u64, Vec<u8>)> {
        let first_series_id = self.first_series_id.take()?;
        let mut out = Vec::with_capacity(self.encoded_bytes());
        out.push(BLOCK_KIND_SHARED_TIMESTAMPS);
        push_uvarint(&mut out, self.columns.len() as u64);
        push_uvarint(&mut out, self.entries.len() as u64);
        for column in &self.columns {
            push_uvarint(&mut out, column.len() as u64);
            out.extend_from_slice(column);
        }
        let mut previous = first_series_id;
        for (series_id, column, payload) in &self.entries {
            push_uvarint(&mut out, series_id - previous);
            previous = *series_id;
            push_uvarint(&mut out, u64::from(*column));
            push_uvarint(&mut out, payload.len() as u64);
        }
        for (_, _, payload) in &self.entries {
            out.extend_from_slice(payload);
        }
        *self = BlockBuilder::default();
        Some((first_series_id, out))
    }
}

/// One series' entry inside a parsed block.
#[derive(Clone, Copy, Debug)]
struct EntryRef<'a> {
    series_id: u64,
    column: usize,
    payload: &'a [u8],
}

/// A block value parsed far enough to find and decode series in it.
pub struct BlockView<'a> {
    columns: Vec<&'a [u8]>,
    entries: Vec<EntryRef<'a>>,
    /// Decoded columns, filled on first use.
    decoded_columns: Vec<Option<Vec<Timestamp>>>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn uvarint(&mut self) -> Result<u64, BlockError> {
        let mut value = 0u64;
        for (index, &byte) in self.bytes.iter().enumerate().take(10) {
            let bits = u64::from(byte & 0x7f);
            if index == 9 && byte > 1 {
                return Err(BlockError::Corrupt("varint overflows 64 bits"));
            }
            value |= bits << (7 * index);
            if byte & 0x80 == 0 {
                self.bytes = &self.bytes[index + 1..];
                return Ok(value);
            }
        }
        if self.bytes.len() >= 10 {
            Err(BlockError::Corrupt("varint longer than 10 bytes"))
        } else {
            Err(BlockError::Truncated)
        }
    }

    fn slice(&mut self, length: u64) -> Result<&'a [u8], BlockError> {
        let length = usize::try_from(length).map_err(|_| BlockError::Truncated)?;
        if length > self.bytes.len() {
            return Err(BlockError::Truncated);
        }
        let (head, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(head)
    }
}

impl<'a> BlockView<'a> {
    /// Parses the header and index of a block whose key names
    /// `first_series_id`. Never panics, whatever the bytes.
    pub fn parse(first_series_id: u64, bytes: &'a [u8]) -> Result<BlockView<'a>, BlockError> {
        let (&kind, rest) = bytes.split_first().ok_or(BlockError::Truncated)?;
        if kind != BLOCK_KIND_SHARED_TIMESTAMPS {
            return Err(BlockError::UnknownKind(kind));
        }
        let mut cursor = Cursor { bytes: rest };
        let column_count = cursor.uvarint()?;
        let entry_count = cursor.uvarint()?;
        // Every column and entry takes at least one byte, so counts the
        // rest cannot hold are refused before anything is allocated.
        if column_count == 0 || entry_count == 0 {
            return Err(BlockError::Corrupt("block without columns or entries"));
        }
        if column_count.saturating_add(entry_count) > cursor.bytes.len() as u64 {
            return Err(BlockError::Truncated);
        }
        let mut columns = Vec::with_capacity(column_count as usize);
        for _ in 0..column_count {
            let length = cursor.uvarint()?;
            columns.push(cursor.slice(length)?);
        }
        let mut lengths = Vec::with_capacity(entry_count as usize);
        let mut series_id = first_series_id;
        for _ in 0..entry_count {
            let delta = cursor.uvarint()?;
            series_id = series_id
                .checked_add(delta)
                .ok_or(BlockError::Corrupt("series id overflows"))?;
            let column = cursor.uvarint()?;
            if column >= column_count {
                return Err(BlockError::Corrupt("column index out of range"));
            }
            lengths.push((series_id, column as usize, cursor.uvarint()?));
        }
        let mut entries = Vec::with_capacity(lengths.len());
        for (series_id, column, length) in lengths {
            entries.push(EntryRef {
                series_id,
                column,
                payload: cursor.slice(length)?,
            });
        }
        if !cursor.bytes.is_empty() {
            return Err(BlockError::Corrupt("trailing bytes after the payloads"));
        }
        Ok(BlockView {
            decoded_columns: vec![None; columns.len()],
            columns,
            entries,
        })
    }

    /// Highest series id in the block.
    pub fn last_series_id(&self) -> u64 {
        self.entries.last().map_or(0, |entry| entry.series_id)
    }

    /// Series ids in the block, ascending, each once.
    pub fn series_ids(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.entries.iter().map(|entry| entry.series_id).collect();
        ids.dedup();
        ids
    }

    fn column(&mut self, index: usize) -> Result<&[Timestamp], BlockError> {
        let column = self
            .columns
            .get(index)
            .copied()
            .ok_or(BlockError::Corrupt("column index out of range"))?;
        let slot = self
            .decoded_columns
            .get_mut(index)
            .ok_or(BlockError::Corrupt("column index out of range"))?;
        if slot.is_none() {
            let timestamps: Vec<Timestamp> = chunk::decode(column)?
                .into_iter()
                .map(|sample| sample.t)
                .collect();
            *slot = Some(timestamps);
        }
        Ok(slot.as_deref().unwrap_or(&[]))
    }

    /// Appends every sample of `series_id` in the block to `out`, in time
    /// order. A series not in the block appends nothing. On error `out` is
    /// left as it was.
    pub fn samples_of(&mut self, series_id: u64, out: &mut Vec<Sample>) -> Result<(), BlockError> {
        let start = self
            .entries
            .partition_point(|entry| entry.series_id < series_id);
        let length_before = out.len();
        let mut values = Vec::new();
        let mut index = start;
        while let Some(entry) = self.entries.get(index).copied() {
            if entry.series_id != series_id {
                break;
            }
            index += 1;
            values.clear();
            let result = chunk::decode_into(entry.payload, &mut values)
                .map_err(BlockError::from)
                .and_then(|()| {
                    let timestamps = self.column(entry.column)?;
                    if timestamps.len() != values.len() {
                        return Err(BlockError::Corrupt("values and column differ in length"));
                    }
                    out.extend(
                        timestamps
                            .iter()
                            .zip(&values)
                            .map(|(&t, value)| Sample { t, v: value.v }),
                    );
                    Ok(())
                });
            if let Err(error) = result {
                out.truncate(length_before);
                return Err(error);
            }
        }
        Ok(())
    }
}

/// Finds the blocks of partition `partition_start` that hold any of
/// `series_ids` (ascending) and hands each found series' samples in the
/// partition to `deliver(index into series_ids, samples)`, in time order.
/// One B-tree descent per block touched, so a few series cost a few reads
/// and all series one pass over the partition's blocks.
pub fn read_series<T>(
    table: &T,
    partition_start: Timestamp,
    series_ids: &[u64],
    mut deliver: impl FnMut(usize, &[Sample]),
) -> Result<(), TsdbError>
where
    T: ReadableTable<&'static [u8], &'static [u8]>,
{
    let partition_lower = block_key(partition_start, 0);
    let partition_upper = block_key(partition_start, u64::MAX);
    let mut samples = Vec::new();
    let mut index = 0;
    while let Some(&series_id) = series_ids.get(index) {
        // The block holding `series_id`, if any, is the last one starting
        // at or before it.
        let probe = block_key(partition_start, series_id);
        let holder = table
            .range(partition_lower.as_slice()..=probe.as_slice())
            .context("finding a block")?
            .next_back()
            .transpose()
            .context("reading a block")?;
        let mut advanced = false;
        if let Some((key, value)) = holder {
            let (_, first_series_id) = decode_block_key(key.value())
                .map_err(|error| TsdbError::Corrupt(format!("block key: {error}")))?;
            let mut view = BlockView::parse(first_series_id, value.value())
                .map_err(|error| TsdbError::Corrupt(format!("block: {error}")))?;
            let last_series_id = view.last_series_id();
            while let Some(&wanted) = series_ids.get(index)
                && wanted <= last_series_id
            {
                samples.clear();
                view.samples_of(wanted, &mut samples)
                    .map_err(|error| TsdbError::Corrupt(format!("block: {error}")))?;
                if !samples.is_empty() {
                    deliver(index, &samples);
                }
                index += 1;
                advanced = true;
            }
        }
        if advanced {
            continue;
        }
        // `series_id` lies in no block: skip to the ids the next block can hold.
        let next = table
            .range(probe.as_slice()..=partition_upper.as_slice())
            .context("finding a block")?
            .find(|entry| {
                entry
                    .as_ref()
                    .map_or(true, |(key, _)| key.value() > probe.as_slice())
            })
            .transpose()
            .context("reading a block")?;
        let Some((key, _)) = next else {
            break;
        };
        let (_, next_first) = decode_block_key(key.value())
            .map_err(|error| TsdbError::Corrupt(format!("block key: {error}")))?;
        index += series_ids[index..].partition_point(|&id| id < next_first);
    }
    Ok(())
}

/// Decodes a whole block into (series id, samples) pairs, ascending by id
/// (tests, fuzzing and compaction). Never panics, whatever the bytes.
pub fn decode_block(
    first_series_id: u64,
    bytes: &[u8],
) -> Result<Vec<(u64, Vec<Sample>)>, BlockError> {
    let mut view = BlockView::parse(first_series_id, bytes)?;
    let mut result = Vec::new();
    for series_id in view.series_ids() {
        let mut samples = Vec::new();
        view.samples_of(series_id, &mut samples)?;
        result.push((series_id, samples));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::testdata;
    use crate::model::stale_nan;
    use proptest::prelude::*;

    type SeriesList = Vec<(u64, Vec<Sample>)>;

    fn assert_same(decoded: &[(u64, Vec<Sample>)], expected: &[(u64, Vec<Sample>)]) {
        assert_eq!(decoded.len(), expected.len(), "series count");
        for ((got_id, got), (want_id, want)) in decoded.iter().zip(expected) {
            assert_eq!(got_id, want_id);
            assert_eq!(got.len(), want.len(), "samples of series {want_id}");
            for (a, b) in got.iter().zip(want) {
                assert!(a.bit_eq(b), "series {want_id}: {a:?} vs {b:?}");
            }
        }
    }

    fn build(series: &[(u64, Vec<Sample>)]) -> (u64, Vec<u8>) {
        let mut builder = BlockBuilder::new();
        for (series_id, samples) in series {
            builder.push_series(*series_id, samples);
        }
        builder.finish().expect("non-empty block")
    }

    #[test]
    fn keys_sort_as_partition_then_series() {
        let keys = [
            block_key(-7_200_000, u64::MAX),
            block_key(0, 0),
            block_key(0, 5),
            block_key(7_200_000, 1),
        ];
        assert!(keys.windows(2).all(|pair| pair[0] < pair[1]));
        assert_eq!(decode_block_key(&keys[0]), Ok((-7_200_000, u64::MAX)));
        assert_eq!(decode_block_key(&[0; 3]), Err(BlockError::KeyLength(3)));
    }

    #[test]
    fn series_sharing_timestamps_store_them_once() {
        let chunks = testdata::node_exporter_chunks(3, 1, 1, 240);
        let series: Vec<(u64, Vec<Sample>)> = chunks
            .iter()
            .take(40)
            .enumerate()
            .map(|(index, samples)| (100 + index as u64 * 2, samples.clone()))
            .collect();
        let (first, bytes) = build(&series);
        assert_eq!(first, 100);
        let view = BlockView::parse(first, &bytes).unwrap();
        let distinct: std::collections::HashSet<Vec<i64>> = series
            .iter()
            .map(|(_, samples)| samples.iter().map(|sample| sample.t).collect())
            .collect();
        assert_eq!(view.columns.len(), distinct.len());
        assert_same(&decode_block(first, &bytes).unwrap(), &series);
        let mut view = BlockView::parse(first, &bytes).unwrap();
        let mut out = Vec::new();
        view.samples_of(101, &mut out).unwrap();
        assert!(out.is_empty(), "an id between two series has no samples");
        view.samples_of(102, &mut out).unwrap();
        assert_eq!(out.len(), series[1].1.len());
    }

    #[test]
    fn long_series_take_several_entries() {
        let samples: Vec<Sample> = (0..(MAX_ENTRY_SAMPLES as i64 * 2 + 7))
            .map(|index| Sample {
                t: index * 1_000,
                v: if index % 999 == 0 {
                    stale_nan()
                } else {
                    index as f64
                },
            })
            .collect();
        let series = vec![(5, samples.clone()), (6, samples[..3].to_vec())];
        let (first, bytes) = build(&series);
        assert_eq!(BlockView::parse(first, &bytes).unwrap().entries.len(), 4);
        assert_same(&decode_block(first, &bytes).unwrap(), &series);
    }

    #[test]
    fn corrupt_blocks_are_errors() {
        let series = vec![(1, testdata::node_exporter_chunks(1, 1, 1, 30)[0].clone())];
        let (first, bytes) = build(&series);
        for cut in 0..bytes.len() {
            assert!(decode_block(first, &bytes[..cut]).is_err(), "prefix {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decode_block(first, &padded).is_err());
        let mut other_kind = bytes.clone();
        other_kind[0] = 9;
        assert_eq!(
            decode_block(first, &other_kind).err(),
            Some(BlockError::UnknownKind(9))
        );
        // Counts far beyond the bytes are refused before allocating.
        let huge = [BLOCK_KIND_SHARED_TIMESTAMPS, 0xff, 0xff, 0xff, 0x7f, 1, 0];
        assert!(decode_block(0, &huge).is_err());
    }

    fn arbitrary_series() -> impl Strategy<Value = Vec<(u64, Vec<Sample>)>> {
        let samples = proptest::collection::vec((1i64..20_000, any::<u64>(), 0u8..4), 0..60)
            .prop_map(|steps| {
                let mut t = 1_700_000_000_000i64;
                steps
                    .into_iter()
                    .map(|(delta, bits, shape)| {
                        t += delta;
                        let v = match shape {
                            0 => f64::from_bits(bits),
                            1 => stale_nan(),
                            2 => (bits % 1000) as f64 / 100.0,
                            _ => 42.0,
                        };
                        Sample { t, v }
                    })
                    .collect::<Vec<Sample>>()
            });
        proptest::collection::vec((0u64..3, samples), 1..12).prop_map(|items| {
            let mut id = 0u64;
            let mut shared: Option<Vec<i64>> = None;
            items
                .into_iter()
                .map(|(gap, mut samples)| {
                    id += gap + 1;
                    // Half of the series reuse the first one's timestamps.
                    if id.is_multiple_of(2) {
                        match &shared {
                            Some(times) => {
                                samples.truncate(times.len());
                                for (sample, t) in samples.iter_mut().zip(times) {
                                    sample.t = *t;
                                }
                            }
                            None => {
                                shared = Some(samples.iter().map(|s| s.t).collect());
                            }
                        }
                    }
                    (id, samples)
                })
                .filter(|(_, samples)| !samples.is_empty())
                .collect()
        })
    }

    /// Fuzz seeds are real builder output (written by `write_fuzz_seeds`);
    /// each must decode, and crashers the fuzzer finds are added there and
    /// replayed here.
    #[test]
    fn fuzz_corpus_replays_without_panicking() {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/block_decode");
        let entries = std::fs::read_dir(&corpus).expect("block_decode corpus");
        let mut seeds = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let Some((id_bytes, value)) = bytes.split_first_chunk::<8>() else {
                continue;
            };
            let decoded = decode_block(u64::from_le_bytes(*id_bytes), value);
            if path
                .file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("seed-"))
            {
                assert!(decoded.is_ok(), "{}: {decoded:?}", path.display());
                seeds += 1;
            }
        }
        assert!(seeds >= 3, "{seeds} seeds");
    }

    /// Regenerates the fuzz seeds: `cargo test --lib write_fuzz_seeds -- --ignored`.
    #[test]
    #[ignore]
    fn write_fuzz_seeds() {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/block_decode");
        std::fs::create_dir_all(&corpus).unwrap();
        let node = testdata::node_exporter_chunks(5, 2, 1, 60);
        let shapes: Vec<(&str, SeriesList)> = vec![
            (
                "node-exporter",
                node.iter()
                    .take(12)
                    .cloned()
                    .enumerate()
                    .map(|(i, s)| (40 + i as u64, s))
                    .collect(),
            ),
            (
                "stale-and-nan",
                vec![
                    (
                        7,
                        (0..20)
                            .map(|i| Sample {
                                t: i * 15_000,
                                v: stale_nan(),
                            })
                            .collect(),
                    ),
                    (
                        9,
                        (0..20)
                            .map(|i| Sample {
                                t: i * 15_000,
                                v: f64::from_bits(0x7ff8_0000_0000_0001 + i as u64),
                            })
                            .collect(),
                    ),
                ],
            ),
            (
                "two-columns",
                vec![
                    (
                        1,
                        (0..9)
                            .map(|i| Sample {
                                t: i * 1_000 + 3,
                                v: i as f64 / 4.0,
                            })
                            .collect(),
                    ),
                    (
                        1 << 40,
                        (0..5).map(|i| Sample { t: -i * 7, v: -0.0 }).collect(),
                    ),
                ],
            ),
        ];
        for (name, series) in shapes {
            let (first, bytes) = build(&series);
            let mut seed = first.to_le_bytes().to_vec();
            seed.extend_from_slice(&bytes);
            std::fs::write(corpus.join(format!("seed-{name}")), seed).unwrap();
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn blocks_round_trip_bit_exactly(series in arbitrary_series()) {
            prop_assume!(!series.is_empty());
            let (first, bytes) = build(&series);
            assert_same(&decode_block(first, &bytes).unwrap(), &series);
        }

        #[test]
        fn arbitrary_bytes_never_panic(first in any::<u64>(), bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode_block(first, &bytes);
            let mut with_kind = bytes.clone();
            with_kind.insert(0, BLOCK_KIND_SHARED_TIMESTAMPS);
            let _ = decode_block(first, &with_kind);
        }

        #[test]
        fn mutated_blocks_never_panic(seed in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let chunks = testdata::node_exporter_chunks(seed % 4, 1, 1, 30);
            let series: Vec<(u64, Vec<Sample>)> = chunks.iter().take(5).cloned().enumerate().map(|(i, s)| (i as u64, s)).collect();
            let (first, mut bytes) = build(&series);
            for (position, flip) in flips {
                let index = position % bytes.len();
                bytes[index] ^= flip;
            }
            let _ = decode_block(first, &bytes);
        }
    }
}
