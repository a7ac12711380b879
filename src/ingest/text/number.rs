//! Numbers in the text exposition formats: sample values in the syntax of
//! Go's `strconv.ParseFloat` as Prometheus restricts it, integer millisecond
//! timestamps (Prometheus text) and float-second timestamps (OpenMetrics),
//! and the printing side of each so that printed text parses back exactly.
//!
//! Accepted values, as Prometheus accepts them: decimal floats with optional
//! sign, fraction and exponent (`1`, `-1.5`, `.5`, `5.`, `1e3`, `1.2E-3`),
//! `Inf`/`Infinity` with optional sign and `NaN` without sign, both
//! case-insensitive. Rejected like Prometheus does: hexadecimal floats (Go
//! needs a `p` exponent for them and Prometheus refuses `p`, `P` and `_`),
//! digit separators, and finite literals too large for an f64 (Go reports a
//! range error where Rust would round to infinity).

use std::fmt::Write as _;

/// Powers of ten that an f64 holds exactly; the fast path below is only
/// correct for these (Clinger's condition).
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Largest integer an f64 mantissa holds exactly.
const MAX_EXACT_MANTISSA: u64 = 1 << 53;

/// Parses a sample value; `None` when Prometheus would reject the text.
pub(super) fn parse_sample_value(text: &str) -> Option<f64> {
    match parse_short_decimal(text.as_bytes()) {
        Some(value) => Some(value),
        None => parse_go_float(text),
    }
}

/// Fast path for the common case: at most 19 significant digits whose
/// mantissa fits in 53 bits and a decimal exponent within ±22. Then one
/// correctly rounded multiplication or division by an exact power of ten
/// gives the correctly rounded result. Anything else returns `None` and
/// goes to the general parser, which also produces the error verdicts.
fn parse_short_decimal(bytes: &[u8]) -> Option<f64> {
    let (negative, mut index) = match bytes.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let mut mantissa: u64 = 0;
    let mut digit_count: u32 = 0;
    while let Some(&byte) = bytes.get(index) {
        if !byte.is_ascii_digit() {
            break;
        }
        if digit_count == 19 {
            return None;
        }
        mantissa = mantissa * 10 + u64::from(byte - b'0');
        digit_count += 1;
        index += 1;
    }
    let mut exponent: i32 = 0;
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        while let Some(&byte) = bytes.get(index) {
            if !byte.is_ascii_digit() {
                break;
            }
            if digit_count == 19 {
                return None;
            }
            mantissa = mantissa * 10 + u64::from(byte - b'0');
            digit_count += 1;
            exponent -= 1;
            index += 1;
        }
    }
    if digit_count == 0 {
        return None;
    }
    if let Some(&byte) = bytes.get(index)
        && (byte | 0x20) == b'e'
    {
        index += 1;
        let exponent_negative = match bytes.get(index) {
            Some(b'-') => {
                index += 1;
                true
            }
            Some(b'+') => {
                index += 1;
                false
            }
            _ => false,
        };
        let mut written_exponent: i32 = 0;
        let mut exponent_digits = 0;
        while let Some(&byte) = bytes.get(index) {
            if !byte.is_ascii_digit() {
                break;
            }
            if exponent_digits == 4 {
                return None;
            }
            written_exponent = written_exponent * 10 + i32::from(byte - b'0');
            exponent_digits += 1;
            index += 1;
        }
        if exponent_digits == 0 {
            return None;
        }
        exponent += if exponent_negative {
            -written_exponent
        } else {
            written_exponent
        };
    }
    if index != bytes.len() || mantissa > MAX_EXACT_MANTISSA {
        return None;
    }
    let magnitude = mantissa as f64;
    let value = match exponent {
        0 => magnitude,
        1..=22 => magnitude * EXACT_POWERS_OF_TEN[exponent as usize],
        -22..=-1 => magnitude / EXACT_POWERS_OF_TEN[(-exponent) as usize],
        _ => return None,
    };
    Some(if negative { -value } else { value })
}

/// The general case, with Rust's correctly rounded parser. Rust accepts a
/// little more than Go (a signed NaN) and rounds overflow to infinity where
/// Go reports an error; both are refused here so the accepted set is Go's.
fn parse_go_float(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let has_sign = matches!(bytes.first(), Some(b'+' | b'-'));
    let first_unsigned = *bytes.get(usize::from(has_sign))?;
    let is_named_value = first_unsigned.is_ascii_alphabetic();
    if is_named_value && has_sign && (first_unsigned | 0x20) == b'n' {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    if value.is_infinite() && !is_named_value {
        return None;
    }
    Some(value)
}

/// Prometheus text timestamps: a base-10 int64 of milliseconds, optionally signed.
pub(super) fn parse_prometheus_timestamp(text: &str) -> Option<i64> {
    text.parse().ok()
}

/// OpenMetrics timestamps: float seconds, converted to milliseconds by
/// truncation toward zero as Prometheus does. Plain decimals are converted
/// exactly in integer arithmetic (so `1.001` is 1001 ms, not 1000 ms after
/// a binary rounding); exponent forms go through an f64.
pub(super) fn parse_openmetrics_timestamp(text: &str) -> Option<i64> {
    if let Some(milliseconds) = parse_decimal_seconds_exactly(text.as_bytes()) {
        return Some(milliseconds);
    }
    let seconds = parse_go_float(text)?;
    if !seconds.is_finite() {
        return None;
    }
    let milliseconds = seconds * 1000.0;
    // 2^63 is exactly representable; anything at or beyond it does not fit.
    if !(-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&milliseconds) {
        return None;
    }
    Some(milliseconds as i64)
}

fn parse_decimal_seconds_exactly(bytes: &[u8]) -> Option<i64> {
    let (negative, mut index) = match bytes.first()? {
        b'-' => (true, 1),
        b'+' => (false, 1),
        _ => (false, 0),
    };
    let mut whole_seconds: i128 = 0;
    let mut digit_count = 0;
    while let Some(&byte) = bytes.get(index) {
        if !byte.is_ascii_digit() {
            break;
        }
        whole_seconds = whole_seconds
            .checked_mul(10)?
            .checked_add(i128::from(byte - b'0'))?;
        digit_count += 1;
        index += 1;
    }
    let mut fraction_milliseconds: i128 = 0;
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        let mut fraction_digits = 0;
        while let Some(&byte) = bytes.get(index) {
            if !byte.is_ascii_digit() {
                break;
            }
            if fraction_digits < 3 {
                fraction_milliseconds = fraction_milliseconds * 10 + i128::from(byte - b'0');
            }
            fraction_digits += 1;
            index += 1;
        }
        digit_count += fraction_digits;
        for _ in fraction_digits..3 {
            fraction_milliseconds *= 10;
        }
    }
    if digit_count == 0 || index != bytes.len() {
        return None;
    }
    let magnitude = whole_seconds
        .checked_mul(1000)?
        .checked_add(fraction_milliseconds)?;
    i64::try_from(if negative { -magnitude } else { magnitude }).ok()
}

/// Writes a value so that [`parse_sample_value`] gives back the same f64
/// (NaN as NaN: the text formats cannot carry NaN payloads).
pub(super) fn write_sample_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value == 0.0 && value.is_sign_negative() {
        out.push_str("-0");
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        // Integral values are the common case; print them as Go clients do.
        let _ = write!(out, "{}", value as i64);
    } else {
        // Rust's `Debug` for f64 is the shortest text that parses back to
        // the same bits, with an exponent for very large or small values.
        let _ = write!(out, "{value:?}");
    }
}

/// Writes an OpenMetrics timestamp (seconds with up to three decimals) that
/// [`parse_openmetrics_timestamp`] turns back into the same milliseconds.
pub(super) fn write_openmetrics_timestamp(out: &mut String, milliseconds: i64) {
    let magnitude = milliseconds.unsigned_abs();
    let sign = if milliseconds < 0 { "-" } else { "" };
    let (whole_seconds, fraction_milliseconds) = (magnitude / 1000, magnitude % 1000);
    if fraction_milliseconds == 0 {
        let _ = write!(out, "{sign}{whole_seconds}");
    } else {
        let _ = write!(out, "{sign}{whole_seconds}.{fraction_milliseconds:03}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_follow_go_parse_float_as_prometheus_restricts_it() {
        let accepted: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-1.5", -1.5),
            ("+2", 2.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e3", 1000.0),
            ("1.2E-3", 0.0012),
            ("1.795470476e+09", 1_795_470_476.0),
            ("+Inf", f64::INFINITY),
            ("-Inf", f64::NEG_INFINITY),
            ("Inf", f64::INFINITY),
            ("infinity", f64::INFINITY),
            ("-INFINITY", f64::NEG_INFINITY),
            ("1e-400", 0.0),
            ("123456789012345678901234567890", 1.2345678901234568e29),
            ("0.1", 0.1),
            ("9007199254740993", 9007199254740992.0),
        ];
        for (text, expected) in accepted {
            let parsed = parse_sample_value(text);
            assert_eq!(parsed, Some(*expected), "{text}");
        }
        for nan in ["NaN", "nan", "NAN"] {
            assert!(parse_sample_value(nan).is_some_and(f64::is_nan), "{nan}");
        }
        for rejected in [
            "", "-", ".", "e5", "1e", "1e+", "0x1p-2", "0x10", "1_000", "+NaN", "-nan", "1e400",
            "-1e400", "1.2.3", "12a", "Infx", "in", "1 ", " 1", "--1",
        ] {
            assert_eq!(parse_sample_value(rejected), None, "{rejected:?}");
        }
    }

    #[test]
    fn fast_path_agrees_with_the_general_parser() {
        for text in [
            "0.000123",
            "3.14159",
            "-2.5e-7",
            "4503599627370497.5",
            "1e22",
            "1e23",
            "0.3",
            "123456.789e-3",
        ] {
            let general: f64 = text.parse().unwrap();
            assert_eq!(
                parse_sample_value(text).map(f64::to_bits),
                Some(general.to_bits()),
                "{text}"
            );
        }
    }

    #[test]
    fn openmetrics_timestamps_convert_exactly_and_truncate_toward_zero() {
        let cases: &[(&str, i64)] = &[
            ("1", 1000),
            ("1.001", 1001),
            ("1.5", 1500),
            ("1.0009", 1000),
            ("-1.0009", -1000),
            ("-1.5", -1500),
            (".25", 250),
            ("1520879607.789", 1_520_879_607_789),
            ("1.5e3", 1_500_000),
            ("-9223372036854775.808", i64::MIN),
            ("9223372036854775.807", i64::MAX),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_openmetrics_timestamp(text), Some(*expected), "{text}");
        }
        for rejected in [
            "NaN",
            "+Inf",
            "9223372036854775.808",
            "1e300",
            "",
            "-",
            "1.2.3",
        ] {
            assert_eq!(parse_openmetrics_timestamp(rejected), None, "{rejected:?}");
        }
    }

    #[test]
    fn printed_timestamps_and_values_parse_back() {
        for milliseconds in [
            0,
            1,
            -1,
            999,
            -999,
            1000,
            1_700_000_000_123,
            i64::MIN,
            i64::MAX,
        ] {
            let mut out = String::new();
            write_openmetrics_timestamp(&mut out, milliseconds);
            assert_eq!(
                parse_openmetrics_timestamp(&out),
                Some(milliseconds),
                "{out}"
            );
        }
        for value in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.1,
            1e300,
            -1e-300,
            f64::MIN_POSITIVE,
            5e-324,
            f64::MAX,
            1e15,
            123456.789,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ] {
            let mut out = String::new();
            write_sample_value(&mut out, value);
            assert_eq!(
                parse_sample_value(&out).map(f64::to_bits),
                Some(value.to_bits()),
                "{out}"
            );
        }
    }
}
