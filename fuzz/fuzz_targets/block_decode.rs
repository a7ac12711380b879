//! Fuzzes the block decoder of compacted partitions: the first 8 bytes are
//! the key's first series id, the rest the block value. Any input must
//! decode or fail without a panic, and whatever decodes must survive
//! rebuild → decode unchanged (bit-exact).
#![no_main]

use guardia::tsdb::block::{BlockBuilder, decode_block};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Some((id_bytes, value)) = bytes.split_first_chunk::<8>() else {
        return;
    };
    let first_series_id = u64::from_le_bytes(*id_bytes);
    let Ok(series) = decode_block(first_series_id, value) else {
        return;
    };
    let series: Vec<_> = series
        .into_iter()
        .filter(|(_, samples)| !samples.is_empty())
        .collect();
    let mut builder = BlockBuilder::new();
    for (series_id, samples) in &series {
        builder.push_series(*series_id, samples);
    }
    let Some((rebuilt_first, rebuilt)) = builder.finish() else {
        assert!(series.is_empty());
        return;
    };
    let again = decode_block(rebuilt_first, &rebuilt).expect("rebuilt block decodes");
    assert_eq!(again.len(), series.len());
    for ((got_id, got), (want_id, want)) in again.iter().zip(&series) {
        assert_eq!(got_id, want_id);
        assert_eq!(got.len(), want.len());
        for (a, b) in got.iter().zip(want) {
            assert!(a.bit_eq(b), "round trip changed {b:?} into {a:?}");
        }
    }
});
