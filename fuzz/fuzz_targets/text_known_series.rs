//! Fuzz target `text_known_series`: the text parser's known-series shortcut
//! (`TextParser::next_entry_with_known_series`, used by the push endpoint's
//! series cache) against the full parse. Arbitrary bytes are parsed fully
//! once, collecting every series text with its label set; then again with
//! those texts offered as known. Both parses must give the same entries
//! (a skipped line's labels are those its text had), values, timestamps,
//! line numbers and error, and one series text never names two label sets.
#![no_main]

use std::collections::HashMap;

use guardia::ingest::text::{Entry, Format, SampleBuf, TextParser};
use libfuzzer_sys::fuzz_target;

fn entries(
    input: &str,
    format: Format,
    known: Option<&HashMap<String, String>>,
    series_texts_seen: &mut HashMap<String, String>,
) -> Vec<String> {
    let mut parser = TextParser::new(input, format);
    let mut sample = SampleBuf::new();
    let mut entries = Vec::new();
    loop {
        let entry = match known {
            Some(known) => parser
                .next_entry_with_known_series(&mut sample, &mut |text| known.contains_key(text)),
            None => parser.next_entry(&mut sample),
        };
        match entry {
            Ok(Some(Entry::Sample)) => {
                let labels = if sample.labels_skipped() {
                    known
                        .and_then(|known| known.get(sample.series_text()))
                        .cloned()
                } else {
                    let labels = sample.to_labels().to_string();
                    let earlier = series_texts_seen
                        .entry(sample.series_text().to_string())
                        .or_insert_with(|| labels.clone());
                    assert_eq!(*earlier, labels, "one series text, two label sets");
                    Some(labels)
                };
                entries.push(format!(
                    "{labels:?} {:x} {:?} line {}",
                    sample.value().to_bits(),
                    sample.timestamp_ms(),
                    sample.line_number()
                ));
            }
            Ok(Some(Entry::Metadata(metadata))) => entries.push(format!("{metadata:?}")),
            Ok(None) => return entries,
            Err(error) => {
                entries.push(error.to_string());
                return entries;
            }
        }
    }
}

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
