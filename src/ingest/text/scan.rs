//! Word-at-a-time scanning (SWAR) for the two byte runs that dominate the
//! parse of real exposition text: names (`[a-zA-Z0-9_:]`) and the plain part
//! of quoted strings (up to `"`, `\` or a line feed). Eight bytes are
//! classified per step with integer arithmetic on a `u64`; the tail shorter
//! than eight bytes goes byte by byte. Safe code only, no target features.

/// One in each byte.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The high bit of each byte.
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// Which name grammar a scan follows.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum NameKind {
    /// `[a-zA-Z0-9_:]` after the first character.
    Metric,
    /// `[a-zA-Z0-9_]` after the first character.
    Label,
}

/// High bit set in each byte of `seven_bit` (every byte below 0x80) whose
/// value lies in `low..=high`. No byte's sum can carry into the next one:
/// each addend is at most 0x80 and each byte at most 0x7f.
#[inline(always)]
fn bytes_in_range(seven_bit: u64, low: u8, high: u8) -> u64 {
    let at_least_low = seven_bit + ONES * u64::from(0x80 - low);
    let above_high = seven_bit + ONES * u64::from(0x7f - high);
    at_least_low & !above_high & HIGHS
}

/// High bit set in each byte of `word` equal to `byte`, exact for the
/// lowest such byte (bytes above it may be flagged spuriously, which is
/// harmless when only the lowest flag is used).
#[inline(always)]
fn bytes_equal_to(word: u64, byte: u8) -> u64 {
    let zero_where_equal = word ^ (ONES * u64::from(byte));
    zero_where_equal.wrapping_sub(ONES) & !zero_where_equal & HIGHS
}

#[inline(always)]
fn load_word(bytes: &[u8], offset: usize) -> Option<u64> {
    let chunk: [u8; 8] = bytes.get(offset..offset + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(chunk))
}

fn is_name_byte(byte: u8, kind: NameKind) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || (byte == b':' && kind == NameKind::Metric)
}

/// Length of the run of name bytes at the start of `bytes`.
#[inline(always)]
pub(super) fn name_length(bytes: &[u8], kind: NameKind) -> usize {
    let mut offset = 0;
    while let Some(word) = load_word(bytes, offset) {
        let seven_bit = word & !HIGHS;
        // `| 0x20` folds A-Z onto a-z and maps no other byte into a-z.
        let letters = bytes_in_range(seven_bit | (ONES * 0x20), b'a', b'z');
        let digits = match kind {
            // ':' follows '9' in ASCII, so one range covers both.
            NameKind::Metric => bytes_in_range(seven_bit, b'0', b':'),
            NameKind::Label => bytes_in_range(seven_bit, b'0', b'9'),
        };
        let underscores = bytes_in_range(seven_bit, b'_', b'_');
        let name_bytes = (letters | digits | underscores) & !(word & HIGHS);
        let stops = !name_bytes & HIGHS;
        if stops != 0 {
            return offset + (stops.trailing_zeros() / 8) as usize;
        }
        offset += 8;
    }
    let tail = bytes.get(offset..).unwrap_or(&[]);
    offset
        + tail
            .iter()
            .position(|&byte| !is_name_byte(byte, kind))
            .unwrap_or(tail.len())
}

/// Offset of the first `"`, `\` or line feed in `bytes`, if any.
#[inline(always)]
pub(super) fn quoted_run_end(bytes: &[u8]) -> Option<usize> {
    let mut offset = 0;
    while let Some(word) = load_word(bytes, offset) {
        let stops =
            bytes_equal_to(word, b'"') | bytes_equal_to(word, b'\\') | bytes_equal_to(word, b'\n');
        if stops != 0 {
            return Some(offset + (stops.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = bytes.get(offset..).unwrap_or(&[]);
    tail.iter()
        .position(|&byte| matches!(byte, b'"' | b'\\' | b'\n'))
        .map(|position| offset + position)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name_length_bytewise(bytes: &[u8], kind: NameKind) -> usize {
        bytes
            .iter()
            .position(|&byte| !is_name_byte(byte, kind))
            .unwrap_or(bytes.len())
    }

    /// Every byte value at every position of words and tails agrees with
    /// the byte-by-byte definition.
    #[test]
    fn scans_agree_with_the_bytewise_definition_for_every_byte() {
        for length in [1usize, 5, 8, 9, 16, 19] {
            for position in 0..length {
                for byte in 0..=255u8 {
                    for filler in [b'a', b'Z', b'7', b'_', b':', b'x'] {
                        let mut bytes = vec![filler; length];
                        bytes[position] = byte;
                        for kind in [NameKind::Metric, NameKind::Label] {
                            assert_eq!(
                                name_length(&bytes, kind),
                                name_length_bytewise(&bytes, kind),
                                "{bytes:?}"
                            );
                        }
                        assert_eq!(
                            quoted_run_end(&bytes),
                            bytes
                                .iter()
                                .position(|&b| matches!(b, b'"' | b'\\' | b'\n')),
                            "{bytes:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn the_lowest_of_several_stops_wins() {
        assert_eq!(quoted_run_end(b"ab\"c\\d\nefghijk"), Some(2));
        assert_eq!(quoted_run_end(b"abcdefghij\n\"\\"), Some(10));
        assert_eq!(
            name_length(b"node_cpu_seconds_total{cpu", NameKind::Metric),
            22
        );
        assert_eq!(name_length(b"a:b", NameKind::Label), 1);
        assert_eq!(name_length("abcdefgé".as_bytes(), NameKind::Label), 7);
    }
}
