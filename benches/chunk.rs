//! Chunk hot paths on node_exporter-shaped data (`chunk::testdata`):
//! head append, seal (choose + encode), `encode` from a slice, and decode,
//! in samples per second; and the same samples packed into blocks of a
//! compacted partition (`tsdb::block`: many series per value, timestamps
//! shared per column) and decoded series by series. Sizes are not something
//! criterion reports, so the setup prints bytes per sample per encoding once
//! to stderr.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guardia::chunk::{
    self, ChunkIter, HeadChunk, decode_into, encode, encode_gorilla, encoding_of, testdata,
};
use guardia::model::Sample;
use guardia::tsdb::block::{BLOCK_MAX_BYTES, BlockBuilder, BlockView, PreparedSeries};

const SEED: u64 = 2024;
const HOSTS: usize = 4;

fn dataset() -> Vec<Vec<Sample>> {
    testdata::node_exporter_chunks(SEED, HOSTS, 1, testdata::SAMPLES_PER_CHUNK)
}

fn print_sizes(chunks: &[Vec<Sample>]) {
    let sample_count: usize = chunks.iter().map(Vec::len).sum();
    let gorilla_bytes: usize = chunks
        .iter()
        .map(|samples| encode_gorilla(samples).len())
        .sum();
    let mut by_encoding: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut sealed_bytes = 0usize;
    let mut head_heap_bytes = 0usize;
    for samples in chunks {
        let mut head = HeadChunk::new();
        for sample in samples {
            head.append(sample.t, sample.v);
        }
        head_heap_bytes += head.memory_bytes() + std::mem::size_of::<HeadChunk>();
        let bytes = head.seal();
        sealed_bytes += bytes.len();
        let name = encoding_of(&bytes).map_or("invalid", chunk::Encoding::name);
        let entry = by_encoding.entry(name).or_default();
        entry.0 += 1;
        entry.1 += samples.len();
        entry.2 += bytes.len();
    }
    eprintln!(
        "dataset: {} chunks, {sample_count} samples ({HOSTS} hosts, seed {SEED})",
        chunks.len()
    );
    eprintln!(
        "  gorilla only : {:.3} bytes/sample",
        gorilla_bytes as f64 / sample_count as f64
    );
    eprintln!(
        "  sealed (best): {:.3} bytes/sample",
        sealed_bytes as f64 / sample_count as f64
    );
    eprintln!(
        "  open head chunk: {:.0} bytes per series (heap + struct)",
        head_heap_bytes as f64 / chunks.len() as f64
    );
    for (name, (chunk_count, samples, bytes)) in by_encoding {
        eprintln!(
            "  {name:15}: {chunk_count:5} chunks, {:.3} bytes/sample",
            bytes as f64 / samples as f64
        );
    }
}

/// The dataset as blocks: series ids in dataset order (a host's series are
/// consecutive, as a target's are in the store), each block closed before
/// it would outgrow `BLOCK_MAX_BYTES`, as compaction does.
fn build_blocks(chunks: &[Vec<Sample>]) -> Vec<(u64, Vec<u8>, Vec<u64>)> {
    let mut blocks = Vec::new();
    let mut builder = BlockBuilder::new();
    let mut ids = Vec::new();
    for (series_id, samples) in chunks.iter().enumerate() {
        let prepared = PreparedSeries::new(series_id as u64, samples);
        if !builder.is_empty()
            && builder.encoded_bytes() + builder.added_bytes(&prepared) > BLOCK_MAX_BYTES
            && let Some((first, bytes)) = builder.finish()
        {
            blocks.push((first, bytes, std::mem::take(&mut ids)));
        }
        builder.add(prepared);
        ids.push(series_id as u64);
    }
    if let Some((first, bytes)) = builder.finish() {
        blocks.push((first, bytes, ids));
    }
    blocks
}

fn benches(criterion: &mut Criterion) {
    let chunks = dataset();
    print_sizes(&chunks);
    let blocks = build_blocks(&chunks);
    let block_bytes: usize = blocks.iter().map(|(_, bytes, _)| 16 + bytes.len()).sum();
    eprintln!(
        "  in blocks (keys included): {:.3} bytes/sample, {} blocks",
        block_bytes as f64 / chunks.iter().map(Vec::len).sum::<usize>() as f64,
        blocks.len()
    );
    let sample_count: usize = chunks.iter().map(Vec::len).sum();
    let sealed: Vec<Vec<u8>> = chunks.iter().map(|samples| encode(samples)).collect();
    let gorilla: Vec<Vec<u8>> = chunks
        .iter()
        .map(|samples| encode_gorilla(samples))
        .collect();

    let mut group = criterion.benchmark_group("chunk");
    group.throughput(Throughput::Elements(sample_count as u64));
    group.bench_function("head_append", |bencher| {
        bencher.iter(|| {
            let mut total = 0usize;
            for samples in &chunks {
                let mut head = HeadChunk::new();
                for sample in samples {
                    head.append(sample.t, sample.v);
                }
                total += head.len();
            }
            black_box(total)
        })
    });
    group.bench_function("head_append_and_seal", |bencher| {
        bencher.iter(|| {
            let mut total = 0usize;
            for samples in &chunks {
                let mut head = HeadChunk::new();
                for sample in samples {
                    head.append(sample.t, sample.v);
                }
                total += head.seal().len();
            }
            black_box(total)
        })
    });
    group.bench_function("encode", |bencher| {
        bencher.iter(|| {
            let total: usize = chunks.iter().map(|samples| encode(samples).len()).sum();
            black_box(total)
        })
    });
    group.bench_function("decode_sealed", |bencher| {
        let mut buffer = Vec::with_capacity(testdata::SAMPLES_PER_CHUNK);
        bencher.iter(|| {
            let mut total = 0usize;
            for bytes in &sealed {
                buffer.clear();
                decode_into(bytes, &mut buffer).expect("valid chunk");
                total += buffer.len();
            }
            black_box(total)
        })
    });
    group.bench_function("iterate_sealed", |bencher| {
        bencher.iter(|| {
            let mut sum = 0.0f64;
            for bytes in &sealed {
                for sample in ChunkIter::new(bytes).expect("valid chunk") {
                    sum += sample.expect("valid chunk").v;
                }
            }
            black_box(sum)
        })
    });
    group.bench_function("decode_block_series", |bencher| {
        let mut buffer = Vec::with_capacity(testdata::SAMPLES_PER_CHUNK);
        bencher.iter(|| {
            let mut total = 0usize;
            for (first, bytes, ids) in &blocks {
                let mut view = BlockView::parse(*first, bytes).expect("valid block");
                for series_id in ids {
                    buffer.clear();
                    view.samples_of(*series_id, &mut buffer)
                        .expect("valid block");
                    total += buffer.len();
                }
            }
            black_box(total)
        })
    });
    group.bench_function("decode_gorilla", |bencher| {
        let mut buffer = Vec::with_capacity(testdata::SAMPLES_PER_CHUNK);
        bencher.iter(|| {
            let mut total = 0usize;
            for bytes in &gorilla {
                buffer.clear();
                decode_into(bytes, &mut buffer).expect("valid chunk");
                total += buffer.len();
            }
            black_box(total)
        })
    });
    group.finish();
}

criterion_group!(chunk_benches, benches);
criterion_main!(chunk_benches);
