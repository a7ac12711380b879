//! Fuzz target `remote_write`: the remote_write 1.0 decoder must never panic
//! and must never allocate past the body limit, whatever the body. Each input
//! is tried both as a snappy block (the HTTP path) and as a raw protobuf.

#![no_main]

use guardia::config::IngestLimits;
use guardia::ingest::remote_write::{decode_write_request, decompress_snappy};
use libfuzzer_sys::fuzz_target;
use guardia::ingest::remote_write::Bytes;

fn walk(uncompressed: Vec<u8>, limits: &IngestLimits) {
    if let Ok(request) = decode_write_request(Bytes::from(uncompressed), limits) {
        let _ = request.metadata().count();
        for series in request.series(limits) {
            if let Ok(series) = series {
                let pairs = series.label_pairs();
                assert!(pairs.windows(2).all(|pair| pair[0].0 < pair[1].0));
                assert!(pairs.iter().all(|(_, value)| !value.is_empty()));
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = IngestLimits {
        max_body_bytes: 1 << 20,
        ..IngestLimits::default()
    };
    if let Ok(uncompressed) = decompress_snappy(data, limits.max_body_bytes) {
        assert!(uncompressed.len() <= limits.max_body_bytes);
        walk(uncompressed, &limits);
    }
    walk(data.to_vec(), &limits);
});
