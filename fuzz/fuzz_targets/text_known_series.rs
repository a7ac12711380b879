//! Fuzz target `text_known_series`: the text parser's known-series shortcut
//! (`TextParser::next_entry_with_known_series`, used by the push endpoint's
//! series cache) against the full parse. Arbitrary bytes are parsed fully
//! once, collecting every series text with its label set; then again with
//! those texts offered as known. Both parses must give the same entries
//! (a skipped line's labels are those its text had), values, timestamps,
//! line numbers and error, and one series text never names two label sets.
#![no_main]

use std::collections::HashMap;

use guardia::ingest::text::{Format, entries_with_known_series as entries};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let mut known = HashMap::new();
        let full = entries(input, format, None, &mut known);
        let mut unused = HashMap::new();
        let shortcut = entries(input, format, Some(&known), &mut unused);
        assert_eq!(full, shortcut, "{input:?} as {format:?}");
    }
});
