//! Byte layouts of everything the tsdb stores in redb: log records, series
//! label sets, chunk keys and values, series tails, partition summaries and
//! meta rows. Encoders are infallible; every decoder returns an
//! [`EncodingError`] instead of panicking, whatever the bytes (fuzz target
//! `log_record`). `docs/format.md` carries the same layouts as diagrams.

use crate::model::{Label, Labels, Sample, Timestamp};

/// Width of a partition: chunks never span two 2-hour-aligned windows, so
/// retention can drop a whole window with one key-range deletion.
pub const PARTITION_MS: i64 = 2 * 60 * 60 * 1000;

/// Kind byte that opens a log record holding samples. Other values are
/// reserved so a later format can add record kinds without a new version.
pub const LOG_RECORD_SAMPLES: u8 = 1;

/// Smallest encoded size of one log sample: 1-byte id delta, 1-byte time
/// delta, 8 value bytes. Lets the decoder bound its allocation by the input.
const MIN_LOG_SAMPLE_BYTES: usize = 10;

/// Byte length of a chunk key.
pub const CHUNK_KEY_BYTES: usize = 24;

/// Byte length of the fixed header in front of an encoded chunk.
pub const CHUNK_VALUE_HEADER_BYTES: usize = 12;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodingError {
    #[error("value is truncated")]
    Truncated,
    #[error("varint is longer than 10 bytes or overflows 64 bits")]
    VarintOverflow,
    #[error("unknown log record kind {0}")]
    UnknownRecordKind(u8),
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    #[error("label text is not UTF-8")]
    InvalidUtf8,
    #[error("labels are not sorted by unique name or have an empty value")]
    NonCanonicalLabels,
    #[error("unknown symbol id {0}")]
    UnknownSymbol(u64),
    #[error("value has {actual} bytes, expected {expected}")]
    WrongLength { expected: usize, actual: usize },
}

/// One sample of a log record, with the persistent series id.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LogSample {
    pub series_id: u64,
    pub t: Timestamp,
    pub value_bits: u64,
}

// ---------------------------------------------------------------- varints

#[inline]
pub fn put_uvarint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[inline]
pub fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
pub fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// A cursor over input bytes; every read checks bounds.
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, position: 0 }
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    #[inline]
    pub fn byte(&mut self) -> Result<u8, EncodingError> {
        let byte = *self
            .bytes
            .get(self.position)
            .ok_or(EncodingError::Truncated)?;
        self.position += 1;
        Ok(byte)
    }

    #[inline]
    pub fn uvarint(&mut self) -> Result<u64, EncodingError> {
        let mut value: u64 = 0;
        for index in 0..10 {
            let byte = self.byte()?;
            let payload = u64::from(byte & 0x7f);
            if index == 9 && payload > 1 {
                return Err(EncodingError::VarintOverflow);
            }
            value |= payload << (7 * index);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(EncodingError::VarintOverflow)
    }

    #[inline]
    pub fn slice(&mut self, length: usize) -> Result<&'a [u8], EncodingError> {
        let end = self
            .position
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len())
            .ok_or(EncodingError::Truncated)?;
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    #[inline]
    pub fn u64_le(&mut self) -> Result<u64, EncodingError> {
        let slice = self.slice(8)?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(slice);
        Ok(u64::from_le_bytes(raw))
    }

    pub fn finish(&self) -> Result<(), EncodingError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(EncodingError::TrailingBytes(extra)),
        }
    }
}

// ------------------------------------------------------------ log records

/// Builds one log record incrementally, so the commit thread encodes each
/// accepted sample as it validates it and never holds a second copy.
///
/// Layout is:
/// ```text
/// u8       kind = 1 (samples)
/// uvarint  sample count N
/// N times:
///   zigzag-varint  series id - previous series id   (previous starts at 0)
///   zigzag-varint  t - previous t                   (previous starts at 0)
///   8 bytes        value bits, little endian
/// ```
/// The count is written last into a reserved prefix, see [`LogRecordBuilder::finish`].
pub struct LogRecordBuilder {
    body: Vec<u8>,
    count: u64,
    previous_series_id: u64,
    previous_t: i64,
}

impl Default for LogRecordBuilder {
    fn default() -> Self {
        LogRecordBuilder::new()
    }
}

impl LogRecordBuilder {
    pub fn new() -> LogRecordBuilder {
        LogRecordBuilder {
            body: Vec::new(),
            count: 0,
            previous_series_id: 0,
            previous_t: 0,
        }
    }

    /// Empties the builder but keeps its buffer.
    pub fn clear(&mut self) {
        self.body.clear();
        self.count = 0;
        self.previous_series_id = 0;
        self.previous_t = 0;
    }

    pub fn len(&self) -> u64 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    #[inline]
    pub fn push(&mut self, series_id: u64, t: Timestamp, value_bits: u64) {
        put_uvarint(
            &mut self.body,
            zigzag(series_id.wrapping_sub(self.previous_series_id) as i64),
        );
        put_uvarint(&mut self.body, zigzag(t.wrapping_sub(self.previous_t)));
        self.body.extend_from_slice(&value_bits.to_le_bytes());
        self.previous_series_id = series_id;
        self.previous_t = t;
        self.count += 1;
    }

    /// The complete record: kind byte, count, then the sample body.
    pub fn finish(&self) -> Vec<u8> {
        let mut record = Vec::with_capacity(self.body.len() + 11);
        record.push(LOG_RECORD_SAMPLES);
        put_uvarint(&mut record, self.count);
        record.extend_from_slice(&self.body);
        record
    }
}

/// Encodes a whole record at once (tests, tools).
pub fn encode_log_record(samples: &[LogSample]) -> Vec<u8> {
    let mut builder = LogRecordBuilder::new();
    for sample in samples {
        builder.push(sample.series_id, sample.t, sample.value_bits);
    }
    builder.finish()
}

/// Decodes a log record. This routine never panics for any input, and it
/// allocates at most in proportion to the input length.
pub fn decode_log_record(bytes: &[u8]) -> Result<Vec<LogSample>, EncodingError> {
    let mut reader = Reader::new(bytes);
    let kind = reader.byte()?;
    if kind != LOG_RECORD_SAMPLES {
        return Err(EncodingError::UnknownRecordKind(kind));
    }
    let count = reader.uvarint()?;
    if count > (reader.remaining() / MIN_LOG_SAMPLE_BYTES) as u64 {
        return Err(EncodingError::Truncated);
    }
    let mut samples = Vec::with_capacity(count as usize);
    let mut series_id: u64 = 0;
    let mut t: i64 = 0;
    for _ in 0..count {
        series_id = series_id.wrapping_add(unzigzag(reader.uvarint()?) as u64);
        t = t.wrapping_add(unzigzag(reader.uvarint()?));
        let value_bits = reader.u64_le()?;
        samples.push(LogSample {
            series_id,
            t,
            value_bits,
        });
    }
    reader.finish()?;
    Ok(samples)
}

// ------------------------------------------------------------- label sets

/// Layout is:
/// ```text
/// uvarint  label count L
/// L times: uvarint name length, name bytes (UTF-8),
///          uvarint value length, value bytes (UTF-8)
/// ```
/// Names strictly ascending, values non-empty (the canonical `Labels` form).
pub fn encode_labels<'a>(pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    put_uvarint(&mut out, pairs.len() as u64);
    for (name, value) in pairs {
        put_uvarint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_uvarint(&mut out, value.len() as u64);
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Decodes a label set and checks it is canonical. Never panics.
pub fn decode_labels(bytes: &[u8]) -> Result<Labels, EncodingError> {
    let mut reader = Reader::new(bytes);
    let count = reader.uvarint()?;
    // Each label takes at least 3 bytes (two lengths and one value byte).
    if count > (reader.remaining() / 3) as u64 {
        return Err(EncodingError::Truncated);
    }
    let mut labels: Vec<Label> = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let name_length = reader.uvarint()?;
        let name =
            reader.slice(usize::try_from(name_length).map_err(|_| EncodingError::Truncated)?)?;
        let value_length = reader.uvarint()?;
        let value =
            reader.slice(usize::try_from(value_length).map_err(|_| EncodingError::Truncated)?)?;
        let name = std::str::from_utf8(name).map_err(|_| EncodingError::InvalidUtf8)?;
        let value = std::str::from_utf8(value).map_err(|_| EncodingError::InvalidUtf8)?;
        if value.is_empty() || labels.last().is_some_and(|last| last.name.as_str() >= name) {
            return Err(EncodingError::NonCanonicalLabels);
        }
        labels.push(Label::new(name, value));
    }
    reader.finish()?;
    // Checked canonical above, name by name.
    Ok(Labels::from_canonical(labels))
}

// ------------------------------------------------------------------ chunks

/// Start of the 2-hour window that holds `t`.
#[inline]
pub fn partition_of(t: Timestamp) -> Timestamp {
    // Saturating, so the extremes used as query bounds stay ordered.
    t.div_euclid(PARTITION_MS).saturating_mul(PARTITION_MS)
}

/// Order-preserving map of i64 onto u64: big-endian bytes of the result
/// sort like the signed numbers.
#[inline]
fn flip_sign(value: i64) -> u64 {
    (value as u64) ^ (1 << 63)
}

#[inline]
fn unflip_sign(value: u64) -> i64 {
    (value ^ (1 << 63)) as i64
}

/// Layout is: `partition start (i64, sign-flipped, big endian) | series id
/// (u64, big endian) | chunk mint (i64, sign-flipped, big endian)`, 24
/// bytes. Byte order equals (partition, series, mint) order, so one
/// partition or one series inside a partition is a contiguous key range.
pub fn chunk_key(
    partition_start: Timestamp,
    series_id: u64,
    mint: Timestamp,
) -> [u8; CHUNK_KEY_BYTES] {
    let mut key = [0u8; CHUNK_KEY_BYTES];
    key[0..8].copy_from_slice(&flip_sign(partition_start).to_be_bytes());
    key[8..16].copy_from_slice(&series_id.to_be_bytes());
    key[16..24].copy_from_slice(&flip_sign(mint).to_be_bytes());
    key
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkKey {
    pub partition_start: Timestamp,
    pub series_id: u64,
    pub mint: Timestamp,
}

pub fn decode_chunk_key(bytes: &[u8]) -> Result<ChunkKey, EncodingError> {
    if bytes.len() != CHUNK_KEY_BYTES {
        return Err(EncodingError::WrongLength {
            expected: CHUNK_KEY_BYTES,
            actual: bytes.len(),
        });
    }
    let word = |index: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[index * 8..index * 8 + 8]);
        u64::from_be_bytes(raw)
    };
    Ok(ChunkKey {
        partition_start: unflip_sign(word(0)),
        series_id: word(1),
        mint: unflip_sign(word(2)),
    })
}

/// Layout is: `maxt (i64 LE, 8 bytes) | sample count (u32 LE, 4 bytes) |
/// encoded chunk (chunk::encode output, first byte = encoding)`. maxt and
/// count sit outside the chunk so a reader skips chunks outside its range
/// without decoding them.
pub fn encode_chunk_value(maxt: Timestamp, count: u32, chunk_bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(CHUNK_VALUE_HEADER_BYTES + chunk_bytes.len());
    out.extend_from_slice(&maxt.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(chunk_bytes);
    out
}

/// Splits a chunk value into (maxt, count, encoded chunk).
pub fn decode_chunk_value(bytes: &[u8]) -> Result<(Timestamp, u32, &[u8]), EncodingError> {
    if bytes.len() < CHUNK_VALUE_HEADER_BYTES {
        return Err(EncodingError::Truncated);
    }
    let mut maxt = [0u8; 8];
    maxt.copy_from_slice(&bytes[0..8]);
    let mut count = [0u8; 4];
    count.copy_from_slice(&bytes[8..12]);
    Ok((
        i64::from_le_bytes(maxt),
        u32::from_le_bytes(count),
        &bytes[CHUNK_VALUE_HEADER_BYTES..],
    ))
}

// ----------------------------------------------------- fixed-width records

fn fixed_words<const N: usize>(bytes: &[u8]) -> Result<[u64; N], EncodingError> {
    if bytes.len() != N * 8 {
        return Err(EncodingError::WrongLength {
            expected: N * 8,
            actual: bytes.len(),
        });
    }
    let mut words = [0u64; N];
    for (index, word) in words.iter_mut().enumerate() {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[index * 8..index * 8 + 8]);
        *word = u64::from_le_bytes(raw);
    }
    Ok(words)
}

fn encode_words<const N: usize>(words: [u64; N]) -> Vec<u8> {
    words.iter().flat_map(|word| word.to_le_bytes()).collect()
}

/// What the store remembers of a series' sealed data: enough to reject
/// out-of-order and duplicate samples after a restart without reading chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeriesTail {
    /// Oldest sample time the series ever had (before retention).
    pub first_t: Timestamp,
    /// Time of the newest sealed sample.
    pub last_t: Timestamp,
    /// Value bits of the newest sealed sample.
    pub last_value_bits: u64,
}

/// Layout is: `first_t (i64 LE) | last_t (i64 LE) | last value bits (u64 LE)`, 24 bytes.
pub fn encode_series_tail(tail: &SeriesTail) -> Vec<u8> {
    encode_words([
        tail.first_t as u64,
        tail.last_t as u64,
        tail.last_value_bits,
    ])
}

pub fn decode_series_tail(bytes: &[u8]) -> Result<SeriesTail, EncodingError> {
    let [first_t, last_t, last_value_bits] = fixed_words::<3>(bytes)?;
    Ok(SeriesTail {
        first_t: first_t as i64,
        last_t: last_t as i64,
        last_value_bits,
    })
}

/// Running totals of one partition, kept so retention and queries need not
/// scan chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionSummary {
    /// Bytes of chunk keys and values stored in the partition.
    pub bytes: u64,
    pub chunks: u64,
    pub mint: Timestamp,
    pub maxt: Timestamp,
}

/// Layout is: `bytes (u64 LE) | chunks (u64 LE) | mint (i64 LE) | maxt (i64 LE)`, 32 bytes.
pub fn encode_partition_summary(summary: &PartitionSummary) -> Vec<u8> {
    encode_words([
        summary.bytes,
        summary.chunks,
        summary.mint as u64,
        summary.maxt as u64,
    ])
}

pub fn decode_partition_summary(bytes: &[u8]) -> Result<PartitionSummary, EncodingError> {
    let [bytes_stored, chunks, mint, maxt] = fixed_words::<4>(bytes)?;
    Ok(PartitionSummary {
        bytes: bytes_stored,
        chunks,
        mint: mint as i64,
        maxt: maxt as i64,
    })
}

/// Meta rows hold one u64 (little endian, 8 bytes).
pub fn decode_meta_u64(bytes: &[u8]) -> Result<u64, EncodingError> {
    let [value] = fixed_words::<1>(bytes)?;
    Ok(value)
}

/// Samples of a log record or chunk as model samples.
pub fn samples_of(log_samples: &[LogSample]) -> Vec<Sample> {
    log_samples
        .iter()
        .map(|sample| Sample {
            t: sample.t,
            v: f64::from_bits(sample.value_bits),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_record_round_trips_extreme_values() {
        let samples = vec![
            LogSample {
                series_id: 7,
                t: 1_700_000_000_000,
                value_bits: 1.5f64.to_bits(),
            },
            LogSample {
                series_id: 3,
                t: 1_700_000_000_000,
                value_bits: crate::model::STALE_NAN_BITS,
            },
            LogSample {
                series_id: u64::MAX,
                t: i64::MIN,
                value_bits: u64::MAX,
            },
            LogSample {
                series_id: 0,
                t: i64::MAX,
                value_bits: 0,
            },
        ];
        let bytes = encode_log_record(&samples);
        assert_eq!(decode_log_record(&bytes), Ok(samples));
    }

    #[test]
    fn log_record_is_compact_for_a_scrape() {
        let samples: Vec<LogSample> = (0..1000)
            .map(|index| LogSample {
                series_id: 100 + index,
                t: 1_700_000_000_000,
                value_bits: index,
            })
            .collect();
        let bytes = encode_log_record(&samples);
        // First sample pays for the absolute time; each later one: 1+1+8.
        assert!(bytes.len() <= 1000 * 10 + 20, "{} bytes", bytes.len());
    }

    #[test]
    fn log_record_decoder_rejects_bad_input_without_panicking() {
        assert_eq!(decode_log_record(&[]), Err(EncodingError::Truncated));
        assert_eq!(
            decode_log_record(&[9]),
            Err(EncodingError::UnknownRecordKind(9))
        );
        assert_eq!(
            decode_log_record(&[
                1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f
            ]),
            Err(EncodingError::VarintOverflow)
        );
        assert_eq!(
            decode_log_record(&[1, 5, 0, 0]),
            Err(EncodingError::Truncated)
        );
        let mut good = encode_log_record(&[LogSample {
            series_id: 1,
            t: 2,
            value_bits: 3,
        }]);
        good.push(0);
        assert_eq!(
            decode_log_record(&good),
            Err(EncodingError::TrailingBytes(1))
        );
    }

    #[test]
    fn labels_round_trip_and_reject_non_canonical_sets() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "a,b=\"c\"}"), ("zone", "ü")]);
        let bytes = encode_labels(labels.iter().map(|l| (l.name.as_str(), l.value.as_str())));
        assert_eq!(decode_labels(&bytes), Ok(labels));
        let unsorted = encode_labels([("b", "1"), ("a", "2")].into_iter());
        assert_eq!(
            decode_labels(&unsorted),
            Err(EncodingError::NonCanonicalLabels)
        );
        let empty_value = encode_labels([("a", "")].into_iter());
        assert_eq!(
            decode_labels(&empty_value),
            Err(EncodingError::NonCanonicalLabels)
        );
    }

    #[test]
    fn chunk_keys_sort_like_partition_series_mint() {
        let keys = [
            chunk_key(-PARTITION_MS, 5, -10),
            chunk_key(0, 1, 0),
            chunk_key(0, 1, 5),
            chunk_key(0, 2, -1),
            chunk_key(PARTITION_MS, 0, PARTITION_MS),
        ];
        for pair in keys.windows(2) {
            assert!(pair[0] < pair[1]);
        }
        assert_eq!(
            decode_chunk_key(&keys[0]),
            Ok(ChunkKey {
                partition_start: -PARTITION_MS,
                series_id: 5,
                mint: -10
            })
        );
    }

    #[test]
    fn partition_of_rounds_down_for_negative_times() {
        assert_eq!(partition_of(0), 0);
        assert_eq!(partition_of(PARTITION_MS - 1), 0);
        assert_eq!(partition_of(-1), -PARTITION_MS);
    }

    #[test]
    fn fixed_width_records_round_trip() {
        let tail = SeriesTail {
            first_t: -5,
            last_t: 10,
            last_value_bits: 42,
        };
        assert_eq!(decode_series_tail(&encode_series_tail(&tail)), Ok(tail));
        let summary = PartitionSummary {
            bytes: 1,
            chunks: 2,
            mint: -3,
            maxt: 4,
        };
        assert_eq!(
            decode_partition_summary(&encode_partition_summary(&summary)),
            Ok(summary)
        );
        assert!(decode_series_tail(&[0; 5]).is_err());
        let value = encode_chunk_value(99, 3, &[0, 1, 2]);
        assert_eq!(decode_chunk_value(&value), Ok((99, 3, &[0u8, 1, 2][..])));
        assert!(decode_chunk_value(&[0; 4]).is_err());
    }

    /// The fuzz seeds are real encoder output; every one must decode, and
    /// any crasher the fuzzer finds is added there and replayed here.
    #[test]
    fn fuzz_corpus_replays_without_panicking() {
        let corpus =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/log_record");
        let Ok(entries) = std::fs::read_dir(&corpus) else {
            return;
        };
        for entry in entries.flatten() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let _ = decode_log_record(&bytes);
            let _ = decode_labels(&bytes);
            let _ = decode_chunk_key(&bytes);
            let _ = decode_chunk_value(&bytes);
            let _ = decode_series_tail(&bytes);
        }
        let scrape = std::fs::read(corpus.join("seed-scrape-50-series")).unwrap();
        let samples = decode_log_record(&scrape).unwrap();
        assert_eq!(samples.len(), 50);
        assert_eq!(
            samples[49],
            LogSample {
                series_id: 149,
                t: 1_700_000_000_000,
                value_bits: (49.0f64 * 1.5).to_bits()
            }
        );
        let labels = decode_labels(&std::fs::read(corpus.join("seed-labels")).unwrap()).unwrap();
        assert_eq!(labels.get("mode"), Some("idle"));
    }

    proptest::proptest! {
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_log_record(&bytes);
            let _ = decode_labels(&bytes);
            let _ = decode_chunk_key(&bytes);
            let _ = decode_chunk_value(&bytes);
            let _ = decode_series_tail(&bytes);
            let _ = decode_partition_summary(&bytes);
            let _ = decode_meta_u64(&bytes);
            let mut with_kind = vec![LOG_RECORD_SAMPLES];
            with_kind.extend_from_slice(&bytes);
            let _ = decode_log_record(&with_kind);
        }

        #[test]
        fn log_records_round_trip(raw in proptest::collection::vec((proptest::num::u64::ANY, proptest::num::i64::ANY, proptest::num::u64::ANY), 0..64)) {
            let samples: Vec<LogSample> = raw
                .into_iter()
                .map(|(series_id, t, value_bits)| LogSample { series_id, t, value_bits })
                .collect();
            proptest::prop_assert_eq!(decode_log_record(&encode_log_record(&samples)), Ok(samples));
        }
    }
}
