//! Fuzz target `text_parser`: arbitrary bytes through the Prometheus and
//! OpenMetrics text parsers (`guardia::ingest::text`). The parser must not
//! panic, and every sample it accepts must survive a round trip through the
//! printer: printed alone, it parses back to the same name, labels,
//! timestamp and value (NaN as NaN; text carries no NaN payloads).
#![no_main]

use guardia::ingest::text::{
    Entry, Format, SampleBuf, TextParser, write_openmetrics_eof, write_sample,
};
use libfuzzer_sys::fuzz_target;

fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

fuzz_target!(|data: &[u8]| {
    for format in [Format::Prometheus, Format::OpenMetrics] {
        let Ok(mut parser) = TextParser::from_bytes(data, format) else {
            continue;
        };
        let mut sample = SampleBuf::new();
        let mut printed = String::new();
        while let Ok(Some(entry)) = parser.next_entry(&mut sample) {
            if entry != Entry::Sample {
                continue;
            }
            sample.with_sorted_label_pairs(&[], |pairs| {
                assert!(pairs.windows(2).all(|pair| pair[0].0 < pair[1].0));
                assert!(pairs.iter().all(|(_, value)| !value.is_empty()));
            });
            let labels: Vec<(&str, &str)> = sample.labels().collect();
            printed.clear();
            write_sample(
                &mut printed,
                sample.metric_name(),
                &labels,
                sample.value(),
                sample.timestamp_ms(),
                format,
            );
            if format == Format::OpenMetrics {
                write_openmetrics_eof(&mut printed);
            }
            let mut reparser = TextParser::new(&printed, format);
            let mut reparsed = SampleBuf::new();
            match reparser.next_entry(&mut reparsed) {
                Ok(Some(Entry::Sample)) => {}
                other => panic!("printed sample {printed:?} did not parse back: {other:?}"),
            }
            assert_eq!(reparsed.metric_name(), sample.metric_name(), "{printed:?}");
            assert!(reparsed.labels().eq(sample.labels()), "{printed:?}");
            assert_eq!(reparsed.timestamp_ms(), sample.timestamp_ms(), "{printed:?}");
            assert!(same_value(reparsed.value(), sample.value()), "{printed:?}");
            assert!(matches!(reparser.next_entry(&mut reparsed), Ok(None)));
        }
    }
});
