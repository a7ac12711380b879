//! Gorilla encoding (encoding byte `0x01`): delta-of-delta timestamps and
//! XOR-compressed floats interleaved per sample in one bit stream. It is the
//! format of the open head chunk because it appends in O(1) without knowing
//! the future, and the fallback for sealed chunks no packed layout beats.
//! `docs/chunk-format.md` has the same layout with examples.

use super::ChunkError;
use super::bits::{BitReader, BitWriter, zigzag_decode, zigzag_encode};
use crate::model::Sample;

// Layout is:
//
//   byte 0        0x01 (encoding)
//   bytes 1..     sample count, LEB128
//   then a bit stream, most significant bit first, zero-padded to a byte:
//     sample 0:   t as 64 bits (two's complement), v as 64 bits (IEEE bits)
//     sample i≥1: timestamp code, then value code
//
//   timestamp code, on dod = delta_i − delta_{i−1} (wrapping, delta_0 = 0,
//   delta_i = t_i − t_{i−1} wrapping), zz = zigzag(dod):
//     '0'                      dod = 0
//     '10'    + zz in 7 bits   zz < 2^7
//     '110'   + zz in 12 bits  zz < 2^12
//     '1110'  + zz in 20 bits  zz < 2^20
//     '11110' + zz in 32 bits  zz < 2^32
//     '11111' + zz in 64 bits  otherwise
//
//   value code, on x = bits(v_i) XOR bits(v_{i−1}):
//     '0'                                       x = 0
//     '10' + `length` bits                      x fits the current window:
//                                               x >> (64 − leading − length)
//     '11' + leading (6 bits) + length−1 (6 bits) + `length` bits
//                                               opens a new window
//   The window starts as leading = 0, length = 64.
//
//   Wrapping arithmetic makes every i64 timestamp sequence exact, even spans
//   from i64::MIN to i64::MAX.

pub(crate) const ENCODING_GORILLA: u8 = 0x01;

/// Buckets of the timestamp code: (prefix value, prefix bits, payload bits).
const TIMESTAMP_BUCKETS: [(u64, u32, u32); 5] = [
    (0b10, 2, 7),
    (0b110, 3, 12),
    (0b1110, 4, 20),
    (0b11110, 5, 32),
    (0b11111, 5, 64),
];

/// Incremental Gorilla writer: the state the next sample is coded against.
#[derive(Clone, Debug)]
pub(crate) struct GorillaAppender {
    writer: BitWriter,
    count: u32,
    last_timestamp: i64,
    last_delta: u64,
    last_value_bits: u64,
    window: XorWindow,
    /// Bit position where the last sample's code starts, or
    /// `UNKNOWN_SAMPLE_START` past `u16` range: lets `second_last` read the
    /// sample before it back without decoding the stream. A `u16` fills
    /// padding the struct has anyway, so head chunks grow by nothing.
    last_sample_start_bit: u16,
}

/// `GorillaAppender::last_sample_start_bit` of a stream too long to say.
const UNKNOWN_SAMPLE_START: u16 = u16::MAX;

impl GorillaAppender {
    pub(crate) fn new(writer: BitWriter) -> GorillaAppender {
        GorillaAppender {
            writer,
            count: 0,
            last_timestamp: 0,
            last_delta: 0,
            last_value_bits: 0,
            window: XorWindow::new(),
            last_sample_start_bit: 0,
        }
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    pub(crate) fn last(&self) -> Option<Sample> {
        (self.count > 0).then(|| Sample {
            t: self.last_timestamp,
            v: f64::from_bits(self.last_value_bits),
        })
    }

    /// The sample before the last one, in O(1): its time is the last time
    /// minus the last delta, and its value the last value XOR the last
    /// sample's value code, which is read where that code starts. The XOR
    /// window in force for that code is the current one (a code either
    /// reuses the window or opens the one that is current now). `None` with
    /// fewer than two samples or when the start is not known.
    pub(crate) fn second_last(&self) -> Option<Sample> {
        if self.count < 2 || self.last_sample_start_bit == UNKNOWN_SAMPLE_START {
            return None;
        }
        let start_bit = usize::from(self.last_sample_start_bit);
        // The last code takes at most 69 timestamp + 78 value bits; with
        // the bits before its start in its first byte that is 20 bytes.
        let mut tail = [0u8; 32];
        let tail_len = self.writer.copy_tail_to(start_bit / 8, &mut tail);
        let mut reader = BitReader::new(tail.get(..tail_len)?);
        reader.read_short((start_bit % 8) as u32);
        read_timestamp_code(&mut reader);
        let mut window = self.window;
        let xor = window.read(&mut reader).ok()?;
        if reader.overrun() {
            return None;
        }
        Some(Sample {
            t: self.last_timestamp.wrapping_sub(self.last_delta as i64),
            v: f64::from_bits(self.last_value_bits ^ xor),
        })
    }

    pub(crate) fn writer(&self) -> &BitWriter {
        &self.writer
    }

    pub(crate) fn writer_mut(&mut self) -> &mut BitWriter {
        &mut self.writer
    }

    #[inline]
    pub(crate) fn append(&mut self, timestamp: i64, value: f64) {
        let value_bits = value.to_bits();
        self.last_sample_start_bit =
            u16::try_from(self.writer.bit_len()).unwrap_or(UNKNOWN_SAMPLE_START);
        if self.count == 0 {
            self.writer.write(timestamp as u64, 64);
            self.writer.write(value_bits, 64);
        } else {
            let delta = timestamp.wrapping_sub(self.last_timestamp) as u64;
            let delta_of_delta = delta.wrapping_sub(self.last_delta) as i64;
            self.write_timestamp_code(delta_of_delta);
            self.last_delta = delta;
            self.window
                .write(&mut self.writer, value_bits ^ self.last_value_bits);
        }
        self.last_timestamp = timestamp;
        self.last_value_bits = value_bits;
        self.count += 1;
    }

    #[inline]
    fn write_timestamp_code(&mut self, delta_of_delta: i64) {
        if delta_of_delta == 0 {
            self.writer.write(0, 1);
            return;
        }
        let zigzag = zigzag_encode(delta_of_delta);
        for (prefix, prefix_bits, payload_bits) in TIMESTAMP_BUCKETS {
            if payload_bits == 64 || zigzag < (1u64 << payload_bits) {
                self.writer.write(prefix, prefix_bits);
                self.writer.write(zigzag, payload_bits);
                return;
            }
        }
    }
}

/// Reads one timestamp code and returns the delta of delta it carries.
#[inline]
fn read_timestamp_code(reader: &mut BitReader<'_>) -> i64 {
    if !reader.read_bit() {
        return 0;
    }
    let payload_bits = if !reader.read_bit() {
        7
    } else if !reader.read_bit() {
        12
    } else if !reader.read_bit() {
        20
    } else if !reader.read_bit() {
        32
    } else {
        64
    };
    zigzag_decode(reader.read(payload_bits))
}

/// The XOR value code's state: the bit window of the last new-window code.
/// Shared with the packed encoding's XOR value column.
#[derive(Clone, Copy, Debug)]
pub(crate) struct XorWindow {
    leading: u8,
    length: u8,
}

impl XorWindow {
    pub(crate) fn new() -> XorWindow {
        XorWindow {
            leading: 0,
            length: 64,
        }
    }

    /// Reuse the window when the XOR fits and reuse is no dearer than a new
    /// window header (12 bits) plus the tighter payload.
    #[inline]
    fn fits(&self, leading: u32, trailing: u32, length: u32) -> bool {
        let window_leading = u32::from(self.leading);
        let window_length = u32::from(self.length);
        leading >= window_leading
            && trailing >= 64 - window_leading - window_length
            && window_length <= length + 12
    }

    #[inline]
    pub(crate) fn write(&mut self, writer: &mut BitWriter, xor: u64) {
        if xor == 0 {
            writer.write(0, 1);
            return;
        }
        let leading = xor.leading_zeros();
        let trailing = xor.trailing_zeros();
        let length = 64 - leading - trailing;
        if self.fits(leading, trailing, length) {
            let window_length = u32::from(self.length);
            writer.write(0b10, 2);
            writer.write(
                xor >> (64 - u32::from(self.leading) - window_length),
                window_length,
            );
        } else {
            writer.write(0b11, 2);
            writer.write(u64::from(leading), 6);
            writer.write(u64::from(length - 1), 6);
            writer.write(xor >> trailing, length);
            self.leading = leading as u8;
            self.length = length as u8;
        }
    }

    /// Bits [`XorWindow::write`] would take, advancing the state alike.
    #[inline]
    pub(crate) fn cost(&mut self, xor: u64) -> u64 {
        if xor == 0 {
            return 1;
        }
        let leading = xor.leading_zeros();
        let trailing = xor.trailing_zeros();
        let length = 64 - leading - trailing;
        if self.fits(leading, trailing, length) {
            2 + u64::from(self.length)
        } else {
            self.leading = leading as u8;
            self.length = length as u8;
            14 + u64::from(length)
        }
    }

    /// Reads one value code and returns the XOR it carries.
    #[inline]
    pub(crate) fn read(&mut self, reader: &mut BitReader<'_>) -> Result<u64, ChunkError> {
        if !reader.read_bit() {
            return Ok(0);
        }
        if reader.read_bit() {
            let leading = reader.read_short(6) as u8;
            let length = reader.read_short(6) as u8 + 1;
            if u32::from(leading) + u32::from(length) > 64 {
                return Err(ChunkError::Corrupt("XOR window exceeds 64 bits"));
            }
            self.leading = leading;
            self.length = length;
        }
        let length = u32::from(self.length);
        let meaningful = reader.read(length);
        Ok(meaningful << (64 - u32::from(self.leading) - length))
    }
}

/// Bits the Gorilla stream of `samples` takes, without writing it.
pub(crate) fn cost_bits(samples: &[Sample]) -> u64 {
    let Some(first) = samples.first() else {
        return 0;
    };
    let mut bits = 128u64;
    let mut last_timestamp = first.t;
    let mut last_delta = 0u64;
    let mut last_value_bits = first.v.to_bits();
    let mut window = XorWindow::new();
    for sample in &samples[1..] {
        let delta = sample.t.wrapping_sub(last_timestamp) as u64;
        let delta_of_delta = delta.wrapping_sub(last_delta) as i64;
        last_delta = delta;
        last_timestamp = sample.t;
        bits += if delta_of_delta == 0 {
            1
        } else {
            let zigzag = zigzag_encode(delta_of_delta);
            TIMESTAMP_BUCKETS
                .iter()
                .find(|(_, _, payload_bits)| *payload_bits == 64 || zigzag < (1u64 << payload_bits))
                .map_or(69, |(_, prefix_bits, payload_bits)| {
                    u64::from(prefix_bits + payload_bits)
                })
        };
        let value_bits = sample.v.to_bits();
        bits += window.cost(value_bits ^ last_value_bits);
        last_value_bits = value_bits;
    }
    bits
}

/// Streaming decoder of a Gorilla bit stream holding `count` samples.
#[derive(Clone, Debug)]
pub(crate) struct GorillaIter<'a> {
    reader: BitReader<'a>,
    remaining: u32,
    started: bool,
    last_timestamp: i64,
    last_delta: u64,
    last_value_bits: u64,
    window: XorWindow,
}

impl<'a> GorillaIter<'a> {
    pub(crate) fn new(stream: &'a [u8], count: u32) -> GorillaIter<'a> {
        GorillaIter {
            reader: BitReader::new(stream),
            remaining: count,
            started: false,
            last_timestamp: 0,
            last_delta: 0,
            last_value_bits: 0,
            window: XorWindow::new(),
        }
    }

    pub(crate) fn remaining(&self) -> u32 {
        self.remaining
    }

    /// After the last sample: only zero padding may be left.
    pub(crate) fn check_end(&self) -> Result<(), ChunkError> {
        if self.reader.bits_remaining() >= 8 {
            return Err(ChunkError::Corrupt("trailing bytes after the last sample"));
        }
        Ok(())
    }

    /// Decodes the next sample; `None` when all are read.
    #[inline]
    pub(crate) fn next_sample(&mut self) -> Option<Result<Sample, ChunkError>> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        if !self.started {
            self.started = true;
            self.last_timestamp = self.reader.read(64) as i64;
            self.last_value_bits = self.reader.read(64);
        } else {
            let delta_of_delta = self.read_timestamp_code();
            self.last_delta = self.last_delta.wrapping_add(delta_of_delta as u64);
            self.last_timestamp = self.last_timestamp.wrapping_add(self.last_delta as i64);
            match self.window.read(&mut self.reader) {
                Ok(xor) => self.last_value_bits ^= xor,
                Err(error) => {
                    self.remaining = 0;
                    return Some(Err(error));
                }
            }
        }
        if self.reader.overrun() {
            self.remaining = 0;
            return Some(Err(ChunkError::Corrupt("gorilla stream ends early")));
        }
        Some(Ok(Sample {
            t: self.last_timestamp,
            v: f64::from_bits(self.last_value_bits),
        }))
    }

    #[inline]
    fn read_timestamp_code(&mut self) -> i64 {
        read_timestamp_code(&mut self.reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(samples: &[Sample]) -> Vec<u8> {
        let mut appender = GorillaAppender::new(BitWriter::default());
        for sample in samples {
            appender.append(sample.t, sample.v);
        }
        assert_eq!(appender.writer().bit_len(), cost_bits(samples));
        appender.writer().clone().finish()
    }

    fn decode_stream(stream: &[u8], count: u32) -> Result<Vec<Sample>, ChunkError> {
        let mut iter = GorillaIter::new(stream, count);
        let mut out = Vec::new();
        while let Some(sample) = iter.next_sample() {
            out.push(sample?);
        }
        iter.check_end()?;
        Ok(out)
    }

    #[test]
    fn regular_constant_series_costs_two_bits_per_sample() {
        let samples: Vec<Sample> = (0..120)
            .map(|index| Sample {
                t: 1_700_000_000_000 + index * 15_000,
                v: 42.0,
            })
            .collect();
        // Sample 1 pays for the first delta (20-bit bucket); the rest 2 bits.
        assert_eq!(cost_bits(&samples), 128 + (4 + 20 + 1) + 118 * 2);
        let stream = stream_of(&samples);
        let decoded = decode_stream(&stream, 120).unwrap();
        assert!(decoded.iter().zip(&samples).all(|(a, b)| a.bit_eq(b)));
    }

    #[test]
    fn second_last_matches_the_decoded_stream_at_every_length() {
        // Values that open new windows, reuse them and repeat; timestamps
        // that hit every delta-of-delta bucket, including wrapping ones.
        let values = [
            1.0,
            1.0,
            2.5,
            f64::NAN,
            -0.0,
            1e300,
            3.0,
            3.25,
            f64::from_bits(1),
        ];
        let times = [
            i64::MIN,
            0,
            15_000,
            30_000,
            30_001,
            1_000_000_000,
            i64::MAX,
            i64::MIN + 5,
            -7,
        ];
        let samples: Vec<Sample> = (0..200)
            .map(|index| Sample {
                t: times[index % times.len()].wrapping_add(index as i64 * 977),
                v: values[(index * 7) % values.len()],
            })
            .collect();
        let mut appender = GorillaAppender::new(BitWriter::compact());
        assert!(appender.second_last().is_none());
        for (index, sample) in samples.iter().enumerate() {
            appender.append(sample.t, sample.v);
            match index {
                0 => assert!(appender.second_last().is_none()),
                _ => {
                    let previous = appender.second_last().unwrap();
                    assert!(previous.bit_eq(&samples[index - 1]), "at sample {index}");
                }
            }
        }
    }

    #[test]
    fn second_last_costs_the_appender_no_memory() {
        // The start position sits in padding after `count` and the window.
        assert_eq!(std::mem::size_of::<GorillaAppender>(), 72);
    }

    #[test]
    fn corrupt_window_is_an_error_not_a_panic() {
        // Sample 0 (128 bits of zeros), then dod '0', then value '11' with
        // leading 63 and length 64.
        let mut writer = BitWriter::default();
        writer.write(0, 64);
        writer.write(0, 64);
        writer.write(0, 1);
        writer.write(0b11, 2);
        writer.write(63, 6);
        writer.write(63, 6);
        writer.write(0, 64);
        let stream = writer.finish();
        assert!(matches!(
            decode_stream(&stream, 2),
            Err(ChunkError::Corrupt(_))
        ));
    }
}
