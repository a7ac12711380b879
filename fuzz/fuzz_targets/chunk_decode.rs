//! Fuzzes the chunk decoders: any bytes must decode or fail without a panic,
//! and whatever decodes must survive encode → decode unchanged (bit-exact),
//! through both the chosen encoding and Gorilla.
#![no_main]

use guardia::chunk::{ChunkIter, decode, decode_range, encode, encode_gorilla};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let decoded = decode(bytes);
    if let Ok(iter) = ChunkIter::new(bytes) {
        // The bulk decoder and the sample-by-sample iterator must agree.
        let streamed: Result<Vec<_>, _> = iter.collect();
        assert_eq!(streamed.is_ok(), decoded.is_ok());
        if let (Ok(streamed), Ok(decoded)) = (&streamed, &decoded) {
            assert_eq!(streamed.len(), decoded.len());
            for (one, other) in streamed.iter().zip(decoded) {
                assert!(one.bit_eq(other), "{one:?} streamed, {other:?} decoded");
            }
        }
    }
    let Ok(samples) = decoded else {
        return;
    };
    let _ = decode_range(bytes, i64::MIN / 2, i64::MAX / 2);
    // Corrupt bytes may decode to timestamps that do not increase; the
    // encoders' wrapping arithmetic must still give them back exactly.
    for reencoded in [encode(&samples), encode_gorilla(&samples)] {
        let again = decode(&reencoded).expect("re-encoded chunk decodes");
        assert_eq!(again.len(), samples.len());
        for (got, want) in again.iter().zip(&samples) {
            assert!(got.bit_eq(want), "round trip changed {want:?} into {got:?}");
        }
    }
});
