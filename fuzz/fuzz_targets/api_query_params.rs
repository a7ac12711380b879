//! Fuzzes what the query API reads and renders from request text: durations
//! (`step`, `timeout`, `lookback_delta`) and times must parse or fail without
//! a panic; any expression that parses must pretty-print (`format_query`)
//! and serialize to the `parse_query` tree without a panic; and any float
//! rendered as a sample value must read back to the same bits (NaNs aside).

#![no_main]

use libfuzzer_sys::fuzz_target;

use guardia::api::params::parse_time;
use guardia::api::query::{format_query, parse_api_duration, parse_query_tree};
use guardia::api::query_json::{format_sample_value, timestamp_json};

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() >= 8 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[..8]);
        let value = f64::from_bits(u64::from_le_bytes(raw));
        let text = format_sample_value(value);
        if value.is_nan() {
            assert_eq!(text, "NaN");
        } else if value.is_finite() {
            let back: f64 = text.parse().expect("rendered value parses");
            assert_eq!(back.to_bits(), value.to_bits(), "{text}");
        }
        let _ = timestamp_json(i64::from_le_bytes(raw));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    let _ = parse_api_duration(text);
    let _ = parse_time(text);
    let _ = format_query(text);
    let _ = parse_query_tree(text);
});
