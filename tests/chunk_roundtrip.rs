//! Chunk encodings through the public API only: the fuzz corpus (seeds and
//! any crashers saved there) replayed as ordinary tests, and a multi-host
//! node_exporter-shaped dataset sealed through `HeadChunk` and read back.

use std::path::Path;

use guardia::chunk::{self, ChunkIter, Encoding, HeadChunk, decode, encode, encoding_of, testdata};

#[test]
fn fuzz_corpus_decodes_without_panic_and_round_trips() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/chunk_decode");
    let mut decoded_files = 0;
    for entry in std::fs::read_dir(&corpus).expect("corpus directory exists") {
        let path = entry.expect("corpus entry").path();
        let bytes = std::fs::read(&path).expect("corpus file");
        let Ok(samples) = decode(&bytes) else {
            continue;
        };
        decoded_files += 1;
        let again = decode(&encode(&samples)).expect("re-encoded chunk decodes");
        assert_eq!(again.len(), samples.len(), "{}", path.display());
        assert!(
            again.iter().zip(&samples).all(|(a, b)| a.bit_eq(b)),
            "{}",
            path.display()
        );
        for cut in 0..bytes.len() {
            assert!(
                decode(&bytes[..cut]).is_err(),
                "{}: prefix {cut}",
                path.display()
            );
        }
    }
    assert!(decoded_files >= 5, "only {decoded_files} seeds decode");
}

#[test]
fn sealed_head_chunks_read_back_and_use_every_packed_encoding() {
    let chunks = testdata::node_exporter_chunks(42, 4, 2, testdata::SAMPLES_PER_CHUNK);
    let mut seen = std::collections::HashSet::new();
    for samples in &chunks {
        let mut head = HeadChunk::new();
        for sample in samples {
            head.append(sample.t, sample.v);
        }
        let sealed = head.seal();
        seen.insert(encoding_of(&sealed).expect("known encoding"));
        let streamed: Vec<_> = ChunkIter::new(&sealed)
            .expect("header")
            .collect::<Result<_, chunk::ChunkError>>()
            .expect("valid chunk");
        assert_eq!(streamed.len(), samples.len());
        assert!(streamed.iter().zip(samples).all(|(a, b)| a.bit_eq(b)));
    }
    for encoding in [
        Encoding::PackedDecimal,
        Encoding::PackedXor,
        Encoding::PackedBits,
    ] {
        assert!(seen.contains(&encoding), "{} never chosen", encoding.name());
    }
}
