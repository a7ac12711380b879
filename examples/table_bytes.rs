//! Prints per-table redb statistics of a stopped guardia data directory.
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

fn main() -> anyhow::Result<()> {
    let dir = std::env::args().nth(1).unwrap();
    let database = redb::Database::open(std::path::Path::new(&dir).join("guardia.redb"))?;
    let read = database.begin_read()?;
    macro_rules! show {
        ($name:expr, $k:ty) => {{
            let def: TableDefinition<$k, &[u8]> = TableDefinition::new($name);
            if let Ok(table) = read.open_table(def) {
                let stats = table.stats()?;
                println!(
                    "{:12} entries {:>9} stored {:>11} leaf_pages {:>7} branch_pages {:>5} fragmented {:>10} metadata {:>9}",
                    $name,
                    table.len()?,
                    stats.stored_bytes(),
                    stats.leaf_pages(),
                    stats.branch_pages(),
                    stats.fragmented_bytes(),
                    stats.metadata_bytes()
                );
            }
        }};
    }
    show!("meta", &str);
    show!("series", u64);
    show!("series_tail", u64);
    show!("log", u64);
    show!("chunks", &[u8]);
    show!("blocks", &[u8]);
    show!("partitions", i64);
    show!("metadata", &str);
    {
        let def: TableDefinition<u64, &str> = TableDefinition::new("symbols");
        if let Ok(t) = read.open_table(def) {
            let s = t.stats()?;
            println!(
                "symbols entries {} stored {} leaf_pages {}",
                t.len()?,
                s.stored_bytes(),
                s.leaf_pages()
            );
        }
    }
    Ok(())
}
