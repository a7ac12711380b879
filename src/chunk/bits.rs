//! Bit-level writer and reader shared by the chunk encodings. Bits are packed
//! most-significant first into bytes, so a stream reads left to right in a
//! hex dump. The reader never panics: reading past the end yields zero bits
//! and raises a sticky `overrun` flag that decoders check once per sample.

/// Appends bits to a byte vector, keeping up to 63 not-yet-flushed bits in a
/// register so that the vector grows in whole 8-byte words.
#[derive(Clone, Debug, Default)]
pub(crate) struct BitWriter {
    bytes: Vec<u8>,
    /// Pending bits, right-aligned: the low `pending_bits` bits are valid.
    pending: u64,
    pending_bits: u32,
    /// When set, the byte vector grows by small exact steps instead of
    /// doubling, because head chunks live in memory for hours and doubling
    /// would leave up to half of every buffer unused.
    grow_in_small_steps: bool,
}

/// Smallest growth step of a compact writer's buffer.
const SMALL_GROWTH_STEP_BYTES: usize = 16;

impl BitWriter {
    pub(crate) fn with_capacity(capacity_bytes: usize) -> BitWriter {
        BitWriter {
            bytes: Vec::with_capacity(capacity_bytes),
            ..BitWriter::default()
        }
    }

    /// A writer for long-lived in-memory streams: grows by about 1/8 of its
    /// size (at least 16 bytes) at a time.
    pub(crate) fn compact() -> BitWriter {
        BitWriter {
            grow_in_small_steps: true,
            ..BitWriter::default()
        }
    }

    /// Writes the low `count` bits of `value` (`count` ≤ 64).
    #[inline]
    pub(crate) fn write(&mut self, value: u64, count: u32) {
        debug_assert!(count <= 64);
        if count == 0 {
            return;
        }
        let value = low_bits(value, count);
        let room = 64 - self.pending_bits;
        if count < room {
            self.pending = (self.pending << count) | value;
            self.pending_bits += count;
        } else {
            // Fill the register to exactly 64 bits, flush it, keep the rest.
            let rest_bits = count - room;
            let top = value >> rest_bits;
            let word = if room == 64 {
                top
            } else {
                (self.pending << room) | top
            };
            self.push_word(word);
            self.pending = low_bits(value, rest_bits);
            self.pending_bits = rest_bits;
        }
    }

    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        self.write(u64::from(bit), 1);
    }

    #[inline]
    fn push_word(&mut self, word: u64) {
        if self.grow_in_small_steps && self.bytes.capacity() - self.bytes.len() < 8 {
            let step = (self.bytes.capacity() / 8).max(SMALL_GROWTH_STEP_BYTES);
            self.bytes.reserve_exact(step);
        }
        self.bytes.extend_from_slice(&word.to_be_bytes());
    }

    /// Number of bits written so far.
    pub(crate) fn bit_len(&self) -> u64 {
        self.bytes.len() as u64 * 8 + u64::from(self.pending_bits)
    }

    /// Heap bytes held by the buffer.
    pub(crate) fn capacity_bytes(&self) -> usize {
        self.bytes.capacity()
    }

    /// Appends the stream, padded with zero bits to a whole byte, to `out`.
    pub(crate) fn copy_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.bytes);
        push_pending_bytes(out, self.pending, self.pending_bits);
    }

    /// Copies the stream from byte `first_byte` on (the last byte padded
    /// with zero bits) into `out`, as much as fits; returns the bytes copied.
    /// Reads a stream's end without copying all of it.
    pub(crate) fn copy_tail_to(&self, first_byte: usize, out: &mut [u8]) -> usize {
        let left_aligned = if self.pending_bits == 0 {
            0
        } else {
            self.pending << (64 - self.pending_bits)
        };
        let pending_bytes = left_aligned.to_be_bytes();
        let pending_len = self.pending_bits.div_ceil(8) as usize;
        let tail = self
            .bytes
            .iter()
            .chain(&pending_bytes[..pending_len])
            .skip(first_byte);
        let mut copied = 0;
        for (slot, byte) in out.iter_mut().zip(tail) {
            *slot = *byte;
            copied += 1;
        }
        copied
    }

    /// Ends the stream: pads the last byte with zero bits and appends it to
    /// `out`-style output owned by the writer.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        push_pending_bytes(&mut self.bytes, self.pending, self.pending_bits);
        self.bytes
    }

    /// Releases unused buffer capacity.
    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }
}

fn push_pending_bytes(out: &mut Vec<u8>, pending: u64, pending_bits: u32) {
    if pending_bits == 0 {
        return;
    }
    let left_aligned = pending << (64 - pending_bits);
    let byte_count = pending_bits.div_ceil(8) as usize;
    out.extend_from_slice(&left_aligned.to_be_bytes()[..byte_count]);
}

#[inline]
fn low_bits(value: u64, count: u32) -> u64 {
    if count >= 64 {
        value
    } else {
        value & ((1u64 << count) - 1)
    }
}

/// Reads bits written by [`BitWriter`]. Past the end of the slice it returns
/// zero bits and sets `overrun`; it never panics.
#[derive(Clone, Debug)]
pub(crate) struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next byte of `bytes` not yet loaded into `register`.
    next_byte: usize,
    /// Loaded bits, left-aligned: the top `available` bits are the next ones.
    /// Bits below them are either zero or copies of the following bytes.
    register: u64,
    available: u32,
    overrun: bool,
}

impl<'a> BitReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> BitReader<'a> {
        BitReader {
            bytes,
            next_byte: 0,
            register: 0,
            available: 0,
            overrun: false,
        }
    }

    /// True once any read went past the end of the input.
    #[inline]
    pub(crate) fn overrun(&self) -> bool {
        self.overrun
    }

    /// Bits consumed so far (capped at the input length after an overrun).
    pub(crate) fn bits_consumed(&self) -> u64 {
        (self.next_byte as u64 * 8).saturating_sub(u64::from(self.available))
    }

    /// Bits of input not yet consumed.
    pub(crate) fn bits_remaining(&self) -> u64 {
        (self.bytes.len() as u64 * 8).saturating_sub(self.bits_consumed())
    }

    #[inline]
    fn refill(&mut self) {
        if let Some(chunk) = self.bytes.get(self.next_byte..self.next_byte + 8) {
            let mut word_bytes = [0u8; 8];
            word_bytes.copy_from_slice(chunk);
            let word = u64::from_be_bytes(word_bytes);
            // `available` < 64 here (callers only refill when short), so the
            // shift is defined; whole bytes that fit are counted as loaded.
            self.register |= word >> self.available;
            let loaded_bytes = (63 - self.available) / 8;
            self.next_byte += loaded_bytes as usize;
            self.available += loaded_bytes * 8;
        } else {
            while self.available <= 56 {
                let Some(&byte) = self.bytes.get(self.next_byte) else {
                    break;
                };
                self.register |= u64::from(byte) << (56 - self.available);
                self.next_byte += 1;
                self.available += 8;
            }
        }
    }

    /// Reads `count` ≤ 56 bits as the low bits of the result.
    #[inline]
    pub(crate) fn read_short(&mut self, count: u32) -> u64 {
        debug_assert!(count <= 56);
        if count == 0 {
            return 0;
        }
        if count > self.available {
            self.refill();
            if count > self.available {
                self.overrun = true;
                self.register = 0;
                self.available = 0;
                return 0;
            }
        }
        let value = self.register >> (64 - count);
        self.register <<= count;
        self.available -= count;
        value
    }

    /// Reads `count` ≤ 64 bits as the low bits of the result.
    #[inline]
    pub(crate) fn read(&mut self, count: u32) -> u64 {
        if count <= 56 {
            self.read_short(count)
        } else {
            let high = self.read_short(count - 32);
            let low = self.read_short(32);
            (high << 32) | low
        }
    }

    #[inline]
    pub(crate) fn read_bit(&mut self) -> bool {
        self.read_short(1) == 1
    }
}

/// Maps signed to unsigned so that small magnitudes get small codes.
#[inline]
pub(crate) fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
pub(crate) fn zigzag_decode(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Significant bits of `value`, at least 1 (so zero still costs one bit).
#[inline]
pub(crate) fn significant_bits(value: u64) -> u32 {
    (64 - value.leading_zeros()).max(1)
}

/// Bits a [`write_var`] of `value` takes.
#[inline]
pub(crate) fn var_cost_bits(value: u64) -> u64 {
    6 + u64::from(significant_bits(value))
}

/// Writes an unsigned integer of any size as a 6-bit length (bits − 1)
/// followed by that many bits.
#[inline]
pub(crate) fn write_var(writer: &mut BitWriter, value: u64) {
    let bits = significant_bits(value);
    writer.write(u64::from(bits - 1), 6);
    writer.write(value, bits);
}

#[inline]
pub(crate) fn read_var(reader: &mut BitReader<'_>) -> u64 {
    let bits = reader.read_short(6) as u32 + 1;
    reader.read(bits)
}

/// Appends `value` as LEB128 (7 bits per byte, low group first).
pub(crate) fn push_leb128(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a LEB128 integer; `None` when truncated or longer than 64 bits.
pub(crate) fn read_leb128(bytes: &[u8]) -> Option<(u64, &[u8])> {
    let mut value: u64 = 0;
    for (index, &byte) in bytes.iter().enumerate().take(10) {
        let group = u64::from(byte & 0x7f);
        let shift = 7 * index as u32;
        if shift == 63 && group > 1 {
            return None;
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            return Some((value, &bytes[index + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_mixed_widths() {
        let items: Vec<(u64, u32)> = (0..500u64)
            .map(|index| {
                let width = (index * 7 % 65) as u32;
                let value = index.wrapping_mul(0x9e37_79b9_7f4a_7c15);
                (low_bits(value, width), width)
            })
            .collect();
        let mut writer = BitWriter::default();
        for &(value, width) in &items {
            writer.write(value, width);
        }
        let total_bits: u64 = items.iter().map(|&(_, width)| u64::from(width)).sum();
        assert_eq!(writer.bit_len(), total_bits);
        let bytes = writer.finish();
        assert_eq!(bytes.len() as u64, total_bits.div_ceil(8));
        let mut reader = BitReader::new(&bytes);
        for &(value, width) in &items {
            assert_eq!(reader.read(width), value, "width {width}");
        }
        assert!(!reader.overrun());
        assert!(reader.bits_remaining() < 8);
    }

    #[test]
    fn reading_past_the_end_sets_overrun_and_returns_zero() {
        let mut reader = BitReader::new(&[0xff]);
        assert_eq!(reader.read(4), 0xf);
        assert!(!reader.overrun());
        assert_eq!(reader.read(5), 0);
        assert!(reader.overrun());
    }

    #[test]
    fn zigzag_round_trips_extremes() {
        for value in [0, 1, -1, i64::MAX, i64::MIN, 12345, -98765] {
            assert_eq!(zigzag_decode(zigzag_encode(value)), value);
        }
        assert_eq!(zigzag_encode(-1), 1);
        assert_eq!(zigzag_encode(1), 2);
    }

    #[test]
    fn leb128_round_trips_and_rejects_overlong() {
        for value in [0, 1, 127, 128, 300, u64::MAX] {
            let mut out = Vec::new();
            push_leb128(&mut out, value);
            assert_eq!(read_leb128(&out), Some((value, &[][..])));
        }
        assert_eq!(read_leb128(&[0x80]), None);
        assert_eq!(read_leb128(&[0xff; 10]), None);
        assert_eq!(
            read_leb128(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]),
            None
        );
    }

    #[test]
    fn var_round_trips_every_width() {
        let mut writer = BitWriter::default();
        let values: Vec<u64> = (0..64)
            .map(|shift| 1u64 << shift)
            .chain([0, u64::MAX])
            .collect();
        for &value in &values {
            write_var(&mut writer, value);
        }
        let bytes = writer.finish();
        let mut reader = BitReader::new(&bytes);
        for &value in &values {
            assert_eq!(read_var(&mut reader), value);
        }
        assert!(!reader.overrun());
    }
}
