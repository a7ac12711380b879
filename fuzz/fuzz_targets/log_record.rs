//! Fuzzes the decoders of every value the tsdb stores in redb (log records,
//! label sets, chunk keys and values, series tails, partition summaries).
//! None may panic; whatever decodes must survive an encode/decode round trip.
#![no_main]

use guardia::tsdb::encoding;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(samples) = encoding::decode_log_record(data) {
        let again = encoding::encode_log_record(&samples);
        assert_eq!(encoding::decode_log_record(&again), Ok(samples));
    }
    if let Ok(labels) = encoding::decode_labels(data) {
        let again = encoding::encode_labels(
            labels.iter().map(|label| (label.name.as_str(), label.value.as_str())),
        );
        assert_eq!(encoding::decode_labels(&again), Ok(labels));
    }
    let _ = encoding::decode_chunk_key(data);
    let _ = encoding::decode_chunk_value(data);
    let _ = encoding::decode_series_tail(data);
    let _ = encoding::decode_partition_summary(data);
    let _ = encoding::decode_meta_u64(data);
});
