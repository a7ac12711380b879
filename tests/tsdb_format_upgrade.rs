//! A version-1 store (series rows as label text, no `blocks` or `symbols`
//! table), written here byte by byte as guardia 1 wrote it, opens with every
//! series and sample intact, is upgraded to version 2, takes new series, and
//! compacts.

use guardia::chunk;
use guardia::model::{Matcher, Sample};
use guardia::storage::{Appendable, Queryable};
use guardia::tsdb::encoding::{
    PartitionSummary, SeriesTail, chunk_key, encode_chunk_value, encode_labels,
    encode_partition_summary, encode_series_tail, partition_of,
};
use guardia::tsdb::{Options, Tsdb};
use redb::TableDefinition;

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("series");
const SERIES_TAIL: TableDefinition<u64, &[u8]> = TableDefinition::new("series_tail");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
const PARTITIONS: TableDefinition<i64, &[u8]> = TableDefinition::new("partitions");
const METADATA: TableDefinition<&str, &[u8]> = TableDefinition::new("metadata");

fn samples(offset: f64) -> Vec<Sample> {
    (0..50)
        .map(|index| Sample {
            t: 1_000_000 + index * 15_000,
            v: offset + index as f64 * 0.5,
        })
        .collect()
}

fn write_version_1_store(dir: &std::path::Path) {
    let database = redb::Database::create(dir.join("guardia.redb")).unwrap();
    let transaction = database.begin_write().unwrap();
    {
        let mut meta = transaction.open_table(META).unwrap();
        meta.insert("format_version", 1u64.to_le_bytes().as_slice())
            .unwrap();
        meta.insert("next_series_id", 2u64.to_le_bytes().as_slice())
            .unwrap();
        meta.insert("next_log_seq", 0u64.to_le_bytes().as_slice())
            .unwrap();
        let mut series = transaction.open_table(SERIES).unwrap();
        let mut tails = transaction.open_table(SERIES_TAIL).unwrap();
        let mut chunks = transaction.open_table(CHUNKS).unwrap();
        let mut summary = PartitionSummary {
            bytes: 0,
            chunks: 0,
            mint: i64::MAX,
            maxt: i64::MIN,
        };
        for (id, instance) in [(0u64, "a:9100"), (1, "b:9100")] {
            let row = encode_labels([("__name__", "up"), ("instance", instance)].into_iter());
            series.insert(id, row.as_slice()).unwrap();
            let data = samples(id as f64);
            let first = data[0];
            let last = *data.last().unwrap();
            let key = chunk_key(partition_of(first.t), id, first.t);
            let value = encode_chunk_value(last.t, data.len() as u32, &chunk::encode(&data));
            chunks.insert(key.as_slice(), value.as_slice()).unwrap();
            summary.bytes += (key.len() + value.len()) as u64;
            summary.chunks += 1;
            summary.mint = summary.mint.min(first.t);
            summary.maxt = summary.maxt.max(last.t);
            let tail = SeriesTail {
                first_t: first.t,
                last_t: last.t,
                last_value_bits: last.v.to_bits(),
            };
            tails
                .insert(id, encode_series_tail(&tail).as_slice())
                .unwrap();
        }
        transaction.open_table(LOG).unwrap();
        transaction.open_table(METADATA).unwrap();
        transaction
            .open_table(PARTITIONS)
            .unwrap()
            .insert(
                partition_of(1_000_000),
                encode_partition_summary(&summary).as_slice(),
            )
            .unwrap();
    }
    transaction.commit().unwrap();
}

fn all_series(tsdb: &Tsdb) -> Vec<guardia::storage::Series> {
    tsdb.querier()
        .unwrap()
        .select(i64::MIN, i64::MAX, &[Matcher::equal("__name__", "up")])
        .unwrap()
}

#[test]
fn version_1_store_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    write_version_1_store(dir.path());
    {
        let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
        let series = all_series(&tsdb);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels.get("instance"), Some("a:9100"));
        assert_eq!(series[1].labels.get("instance"), Some("b:9100"));
        assert_eq!(series[1].samples, samples(1.0));
        let mut appender = tsdb.appender();
        appender
            .append(
                &[("__name__", "up"), ("instance", "c:9100")],
                2_000_000,
                1.0,
            )
            .unwrap();
        // Older than the stored tail of series a: refused after the upgrade too.
        appender
            .append(
                &[("__name__", "up"), ("instance", "a:9100")],
                1_000_000,
                5.0,
            )
            .unwrap();
        let outcome = appender.commit().unwrap();
        assert_eq!(outcome.series_created, 1);
        assert_eq!(outcome.out_of_order + outcome.duplicate_timestamp, 1);
        tsdb.close().unwrap();
    }
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    let series = all_series(&tsdb);
    assert_eq!(series.len(), 3);
    assert_eq!(series[2].labels.get("instance"), Some("c:9100"));
    assert_eq!(series[0].samples, samples(0.0));
    tsdb.flush_open_chunks(std::time::Duration::ZERO).unwrap();
    tsdb.compact_partitions(true).unwrap();
    assert_eq!(all_series(&tsdb), series);
    tsdb.close().unwrap();
}
