//! Seals every open head chunk of a stopped guardia data directory and
//! prints what the sealed chunks cost on disk: the "bytes per sample once
//! sealed" figure of the end-to-end benchmark in README.
//!
//! Run: `cargo run --release --example seal_stats -- DIR`

use std::time::Duration;

use anyhow::Context;
use guardia::tsdb::{Options, Tsdb};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).context("usage: seal_stats DIR")?;
    let tsdb = Tsdb::open(std::path::Path::new(&dir), Options::default())?;
    let before = tsdb.stats();
    let sealed = tsdb.flush_open_chunks(Duration::ZERO)?;
    let after = tsdb.stats();
    tsdb.close()?;
    println!("series                 {}", after.series);
    println!("open chunks sealed now {sealed}");
    println!("head samples before    {}", before.head_samples);
    println!("stored chunks          {}", after.stored_chunks);
    println!("stored chunk bytes     {}", after.stored_chunk_bytes);
    println!("log bytes after        {}", after.log_bytes);
    println!("database file bytes    {}", after.database_bytes);
    Ok(())
}
