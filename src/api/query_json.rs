//! Prometheus's JSON rendering of query results: `resultType` and `result`,
//! sample values as strings in Go's `strconv.FormatFloat(v, 'f', -1, 64)`
//! form (`+Inf`, `-Inf`, `NaN`, otherwise the shortest decimal that reads
//! back to the same float, never an exponent), timestamps as Unix seconds
//! with at most three decimals (`1700000000`, `1700000000.5`), and the
//! success envelope with `warnings`/`infos` only when non-empty.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Number, Value};

use crate::model::{Labels, Sample, Timestamp};
use crate::promql::{QueryResult, Value as QueryValue};

/// A sample value as Prometheus writes it.
pub fn format_sample_value(value: f64) -> String {
    let mut out = Vec::with_capacity(24);
    write_sample_value(&mut out, value);
    // Only ASCII digits, signs, '.', "Inf" and "NaN" are written.
    String::from_utf8(out).unwrap_or_default()
}

/// Appends `value` in Go's `strconv.FormatFloat(v, 'f', -1, 64)` form.
pub fn write_sample_value(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value == f64::INFINITY {
        out.extend_from_slice(b"+Inf");
    } else if value == f64::NEG_INFINITY {
        out.extend_from_slice(b"-Inf");
    } else if value == value.trunc() && value.abs() < 1e15 {
        // Whole numbers (counters, gauges of bytes) skip the shortest-digit
        // search; below 1e15 the integer is exact and has no exponent.
        if value == 0.0 && value.is_sign_negative() {
            out.extend_from_slice(b"-0");
        } else {
            let mut buffer = itoa_buffer();
            out.extend_from_slice(format_i64(&mut buffer, value as i64));
        }
    } else {
        let mut buffer = ryu::Buffer::new();
        write_plain_decimal(out, buffer.format_finite(value).as_bytes());
    }
}

/// Rewrites ryu's shortest round-trip text (`1.5e-7`, `1e21`, `0.1`,
/// `12.0`) as a plain decimal without exponent or trailing `.0`, which has
/// the same digits: what Go's 'f' format with precision -1 prints.
fn write_plain_decimal(out: &mut Vec<u8>, text: &[u8]) {
    let (negative, text) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let (mantissa, exponent) = match text.iter().position(|byte| *byte == b'e') {
        Some(at) => {
            let exponent_text = std::str::from_utf8(&text[at + 1..]).unwrap_or("0");
            (&text[..at], exponent_text.parse::<i32>().unwrap_or(0))
        }
        None => (text, 0),
    };
    let mut digits: [u8; 32] = [0; 32];
    let mut digit_count = 0usize;
    let mut point = None;
    for byte in mantissa {
        if *byte == b'.' {
            point = Some(digit_count);
        } else if digit_count < digits.len() {
            digits[digit_count] = *byte;
            digit_count += 1;
        }
    }
    // Digits before the decimal point.
    let mut point = point.unwrap_or(digit_count) as i32 + exponent;
    let mut digits = &digits[..digit_count];
    while let Some((b'0', rest)) = digits.split_first() {
        digits = rest;
        point -= 1;
    }
    while let Some((b'0', rest)) = digits.split_last() {
        digits = rest;
    }
    if negative {
        out.push(b'-');
    }
    if digits.is_empty() {
        out.push(b'0');
        return;
    }
    if point <= 0 {
        out.extend_from_slice(b"0.");
        out.extend(std::iter::repeat_n(b'0', (-point) as usize));
        out.extend_from_slice(digits);
    } else if point as usize >= digits.len() {
        out.extend_from_slice(digits);
        out.extend(std::iter::repeat_n(b'0', point as usize - digits.len()));
    } else {
        let (whole, fraction) = digits.split_at(point as usize);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(fraction);
    }
}

fn itoa_buffer() -> [u8; 20] {
    [0; 20]
}

/// Decimal text of `value` in the tail of `buffer`.
fn format_i64(buffer: &mut [u8; 20], value: i64) -> &[u8] {
    let mut remaining = value.unsigned_abs();
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (remaining % 10) as u8;
        remaining /= 10;
        if remaining == 0 {
            break;
        }
    }
    if value < 0 {
        at -= 1;
        buffer[at] = b'-';
    }
    &buffer[at..]
}

/// Milliseconds as a JSON number of seconds: an integer when whole, so
/// `1700000000` and not `1700000000.0`, as Prometheus's encoder writes it.
pub fn timestamp_json(t: Timestamp) -> Value {
    let mut out = Vec::with_capacity(24);
    write_timestamp(&mut out, t);
    std::str::from_utf8(&out)
        .ok()
        .and_then(|text| text.parse::<Number>().ok())
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// Appends `t` as seconds with at most three decimals, trailing zeros cut.
pub fn write_timestamp(out: &mut Vec<u8>, t: Timestamp) {
    let magnitude = t.unsigned_abs();
    if t < 0 {
        out.push(b'-');
    }
    let mut buffer = itoa_buffer();
    // At most i64::MAX / 1000, so it fits an i64.
    out.extend_from_slice(format_i64(&mut buffer, (magnitude / 1000) as i64));
    let mut fraction = magnitude % 1000;
    if fraction != 0 {
        out.push(b'.');
        let mut digits = 3;
        while fraction.is_multiple_of(10) {
            fraction /= 10;
            digits -= 1;
        }
        let text = format_i64(&mut buffer, fraction as i64);
        out.extend(std::iter::repeat_n(b'0', digits - text.len()));
        out.extend_from_slice(text);
    }
}

/// Appends `text` as a JSON string, escaped as serde_json escapes.
fn write_json_string(out: &mut Vec<u8>, text: &str) {
    if text
        .bytes()
        .all(|byte| byte >= 0x20 && byte != b'"' && byte != b'\\')
    {
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, text).is_err() {
        // Writing into a Vec cannot fail; keep the document well-formed anyway.
        out.extend_from_slice(b"\"\"");
    }
}

/// `{"name":"value",...}`; label sets are sorted by name already.
fn write_labels(out: &mut Vec<u8>, labels: &Labels) {
    out.push(b'{');
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_json_string(out, &label.name);
        out.push(b':');
        write_json_string(out, &label.value);
    }
    out.push(b'}');
}

/// `[seconds,"value"]`.
fn write_point(out: &mut Vec<u8>, t: Timestamp, v: f64) {
    out.push(b'[');
    write_timestamp(out, t);
    out.extend_from_slice(b",\"");
    write_sample_value(out, v);
    out.extend_from_slice(b"\"]");
}

fn write_samples(out: &mut Vec<u8>, samples: &[Sample]) {
    out.push(b'[');
    for (index, sample) in samples.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_point(out, sample.t, sample.v);
    }
    out.push(b']');
}

/// Rough size of the rendered result, to allocate the body once.
fn estimated_size(value: &QueryValue) -> usize {
    match value {
        QueryValue::Vector(samples) => samples.len() * 160 + 64,
        QueryValue::Matrix(series) => series
            .iter()
            .map(|one| 128 + one.samples.len() * 32)
            .sum::<usize>()
            .saturating_add(64),
        _ => 128,
    }
}

/// Appends `{"result":..,"resultType":..}` (keys in sorted order, as the
/// earlier map-based encoder wrote them).
fn write_query_data(out: &mut Vec<u8>, value: &QueryValue) {
    out.extend_from_slice(b"{\"result\":");
    match value {
        QueryValue::Scalar { t, v } => write_point(out, *t, *v),
        QueryValue::String { t, value } => {
            out.push(b'[');
            write_timestamp(out, *t);
            out.push(b',');
            write_json_string(out, value);
            out.push(b']');
        }
        QueryValue::Vector(samples) => {
            out.push(b'[');
            for (index, sample) in samples.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                write_labels(out, &sample.labels);
                out.extend_from_slice(b",\"value\":");
                write_point(out, sample.t, sample.v);
                out.push(b'}');
            }
            out.push(b']');
        }
        QueryValue::Matrix(series) => {
            out.push(b'[');
            for (index, one) in series.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(b"{\"metric\":");
                write_labels(out, &one.labels);
                out.extend_from_slice(b",\"values\":");
                write_samples(out, &one.samples);
                out.push(b'}');
            }
            out.push(b']');
        }
    }
    out.extend_from_slice(b",\"resultType\":\"");
    out.extend_from_slice(value.result_type().as_bytes());
    out.extend_from_slice(b"\"}");
}

fn write_string_array(out: &mut Vec<u8>, items: &[String]) {
    out.push(b'[');
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_json_string(out, item);
    }
    out.push(b']');
}

/// The whole success body of a query, written straight into bytes: no
/// intermediate JSON tree, one allocation for the body in the common case.
pub fn query_body_bytes(result: &QueryResult) -> Vec<u8> {
    let mut out = Vec::with_capacity(estimated_size(&result.value));
    out.extend_from_slice(b"{\"data\":");
    write_query_data(&mut out, &result.value);
    if !result.infos.is_empty() {
        out.extend_from_slice(b",\"infos\":");
        write_string_array(&mut out, &result.infos);
    }
    out.extend_from_slice(b",\"status\":\"success\"");
    if !result.warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        write_string_array(&mut out, &result.warnings);
    }
    out.push(b'}');
    out
}

/// `{"resultType":..,"result":..}` as a JSON value.
pub fn query_data_json(value: &QueryValue) -> Value {
    let mut out = Vec::with_capacity(estimated_size(value));
    write_query_data(&mut out, value);
    serde_json::from_slice(&out).unwrap_or(Value::Null)
}

/// The whole success body of a query as a JSON value.
pub fn query_body_json(result: &QueryResult) -> Value {
    serde_json::from_slice(&query_body_bytes(result)).unwrap_or(Value::Null)
}

/// The `/api/v1/series` success body, `{"data":[{labels},...],"status":"success"}`,
/// written straight into bytes like query results.
pub fn label_sets_response(label_sets: &[Labels], warnings: &[String]) -> Response {
    let mut out = Vec::with_capacity(label_sets.len() * 128 + 64);
    out.extend_from_slice(b"{\"data\":[");
    for (index, labels) in label_sets.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        write_labels(&mut out, labels);
    }
    out.extend_from_slice(b"],\"status\":\"success\"");
    if !warnings.is_empty() {
        out.extend_from_slice(b",\"warnings\":");
        write_string_array(&mut out, warnings);
    }
    out.push(b'}');
    json_response(out)
}

fn json_response(body: Vec<u8>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

pub fn query_response(result: &QueryResult) -> Response {
    json_response(query_body_bytes(result))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_format_like_go_strconv() {
        assert_eq!(format_sample_value(1.0), "1");
        assert_eq!(format_sample_value(-0.0), "-0");
        assert_eq!(format_sample_value(0.1), "0.1");
        assert_eq!(format_sample_value(1.0 / 3.0), "0.3333333333333333");
        assert_eq!(format_sample_value(1e21), "1000000000000000000000");
        assert_eq!(format_sample_value(1.5e-7), "0.00000015");
        assert_eq!(format_sample_value(f64::INFINITY), "+Inf");
        assert_eq!(format_sample_value(f64::NEG_INFINITY), "-Inf");
        assert_eq!(format_sample_value(f64::NAN), "NaN");
        assert_eq!(
            format_sample_value(f64::from_bits(0x7ff0_0000_0000_0002)),
            "NaN"
        );
    }

    #[test]
    fn values_are_shortest_round_trip_decimals_on_every_exponent() {
        // Rust's Display is also a shortest round-trip decimal without
        // exponent, so it has the same length; the digits may differ only
        // where two shortest candidates are equally close, which Go (and
        // ryu) break to the even digit.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let value = f64::from_bits(state);
            if !value.is_finite() {
                continue;
            }
            let text = format_sample_value(value);
            assert!(!text.contains('e'), "{text}");
            assert_eq!(text.parse::<f64>().map(f64::to_bits), Ok(state), "{text}");
            assert_eq!(text.len(), value.to_string().len(), "{text}");
        }
        for value in [
            0.0,
            1.0,
            -1.0,
            0.5,
            123.456,
            1e15,
            1e15 + 1.0,
            999_999_999_999_999.0,
            1e16,
            1e-5,
            1e-7,
            2.5e-300,
            5e-324,
            f64::MAX,
            f64::MIN,
            1e22,
            1e23,
            0.30000000000000004,
            1_700_000_000.123,
            -3.25e-3,
        ] {
            assert_eq!(format_sample_value(value), value.to_string(), "{value:e}");
        }
        // Exactly 1658206780088562.25: Go's strconv prints the even digit.
        assert_eq!(
            format_sample_value(f64::from_bits(0x4317_9085_685d_83c9)),
            "1658206780088562.2"
        );
    }

    #[test]
    fn body_is_the_prometheus_envelope() {
        use crate::model::Label;
        use crate::promql::RangeSeries;
        let result = QueryResult {
            value: QueryValue::Matrix(vec![RangeSeries {
                labels: Labels::new(vec![
                    Label::new("__name__", "up"),
                    Label::new("path", "a\"b\\c\n"),
                ]),
                samples: vec![
                    Sample { t: 1_500, v: 1.0 },
                    Sample {
                        t: 3_000,
                        v: f64::NAN,
                    },
                ],
            }]),
            warnings: vec!["PromQL warning: w".into()],
            infos: Vec::new(),
        };
        let body = String::from_utf8(query_body_bytes(&result)).expect("utf-8");
        assert_eq!(
            body,
            r#"{"data":{"result":[{"metric":{"__name__":"up","path":"a\"b\\c\n"},"values":[[1.5,"1"],[3,"NaN"]]}],"resultType":"matrix"},"status":"success","warnings":["PromQL warning: w"]}"#
        );
        let parsed: Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(parsed["data"]["result"][0]["metric"]["path"], "a\"b\\c\n");
    }

    #[test]
    fn timestamps_are_seconds_with_millisecond_fractions() {
        assert_eq!(timestamp_json(1_700_000_000_000).to_string(), "1700000000");
        assert_eq!(
            timestamp_json(1_700_000_000_123).to_string(),
            "1700000000.123"
        );
        assert_eq!(timestamp_json(1_500).to_string(), "1.5");
        assert_eq!(timestamp_json(-1_500).to_string(), "-1.5");
        assert_eq!(timestamp_json(10).to_string(), "0.01");
        assert_eq!(
            timestamp_json(-1_700_000_000_050).to_string(),
            "-1700000000.05"
        );
        assert_eq!(timestamp_json(0).to_string(), "0");
    }
}
