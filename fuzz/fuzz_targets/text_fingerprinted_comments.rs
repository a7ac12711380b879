//! Fuzz target `text_fingerprinted_comments`: the text parser as the scrape
//! loop runs it — a first pass that hashes comment lines instead of
//! parsing them (`TextParser::fingerprint_comment_lines`), then a pass that
//! reads only metadata lines (`TextParser::next_metadata`) — against the
//! full parse. Arbitrary bytes; the two passes merged by line number must
//! give the full parse's entries and its first error.
#![no_main]

use std::collections::HashMap;

use guardia::ingest::text::{Format, entries_in_two_passes, entries_with_known_series};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let full = entries_with_known_series(input, format, None, &mut HashMap::new());
        let (two_passes, _) = entries_in_two_passes(input, format);
        assert_eq!(full, two_passes, "{input:?} as {format:?}");
    }
});
