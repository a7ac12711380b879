//! Seals every open head chunk of a stopped guardia data directory and
//! prints what the data costs on disk: the "bytes per sample once sealed"
//! figures of the end-to-end benchmark in README.
//!
//! Steps: open the store, seal every open chunk (as the periodic flush does
//! after `open_chunk_max_age`), report; compact every partition into blocks
//! (as the commit thread does once a partition is closed), report; close and
//! open again (start-up compacts a mostly free redb file), report the file.
//!
//! Run: `cargo run --release --example seal_stats -- DIR [SAMPLES_PUSHED]`

use std::time::Duration;

use anyhow::Context;
use guardia::tsdb::{Options, Tsdb, TsdbStats};

fn print_stats(stage: &str, stats: &TsdbStats, samples: Option<f64>) {
    let per_sample = |bytes: u64| match samples {
        Some(samples) => format!(" ({:.3} B/sample)", bytes as f64 / samples),
        None => String::new(),
    };
    println!("-- {stage}");
    println!("   loose chunks           {}", stats.stored_chunks);
    println!(
        "   stored bytes           {}{}",
        stats.stored_chunk_bytes,
        per_sample(stats.stored_chunk_bytes)
    );
    println!("   log bytes              {}", stats.log_bytes);
    println!(
        "   database file bytes    {}{}",
        stats.database_bytes,
        per_sample(stats.database_bytes)
    );
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .context("usage: seal_stats DIR [SAMPLES_PUSHED]")?;
    let samples: Option<f64> = std::env::args()
        .nth(2)
        .map(|text| text.parse())
        .transpose()
        .context("SAMPLES_PUSHED must be a number")?;
    let path = std::path::Path::new(&dir);

    let tsdb = Tsdb::open(path, Options::default())?;
    let before = tsdb.stats();
    let sealed = tsdb.flush_open_chunks(Duration::ZERO)?;
    let after_seal = tsdb.stats();
    println!("series                   {}", after_seal.series);
    println!("open chunks sealed now   {sealed}");
    println!("head samples before      {}", before.head_samples);
    print_stats("after sealing", &after_seal, samples);

    let started = std::time::Instant::now();
    let report = tsdb.compact_partitions(true)?;
    let compaction_seconds = started.elapsed().as_secs_f64();
    let after_compaction = tsdb.stats();
    tsdb.close()?;
    println!(
        "-- partition compaction: {} partitions, {} chunks into {} blocks, {} series, {:.2} s",
        report.partitions_compacted,
        report.chunks_merged,
        report.blocks_written,
        report.series,
        compaction_seconds
    );
    print_stats("after partition compaction", &after_compaction, samples);

    let started = std::time::Instant::now();
    let tsdb = Tsdb::open(path, Options::default())?;
    let reopen_seconds = started.elapsed().as_secs_f64();
    let reopened = tsdb.stats();
    tsdb.close()?;
    print_stats(
        &format!("after reopening ({reopen_seconds:.2} s, file compaction included)"),
        &reopened,
        samples,
    );
    Ok(())
}
