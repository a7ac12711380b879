//! Retention through a real store: by time (measured from the newest
//! sample), by size, exactness from the reader's view, removal of series
//! with nothing left, and persistence of the floor across a restart.

use std::time::Duration;

use guardia::config::Retention;
use guardia::model::Matcher;
use guardia::storage::{Appendable, Queryable};
use guardia::tsdb::encoding::PARTITION_MS;
use guardia::tsdb::{Options, Tsdb};

const MINUTE: i64 = 60_000;

fn options(retention: Retention) -> Options {
    Options {
        retention,
        ..Options::default()
    }
}

/// Writes one sample a minute for series `a` and `b` over `[first, last)`.
fn write_minutes(tsdb: &Tsdb, names: &[&str], first: i64, last: i64) {
    let mut appender = tsdb.appender();
    let mut t = first;
    while t < last {
        for name in names {
            appender
                .append(&[("__name__", "metric"), ("series", name)], t, t as f64)
                .unwrap();
        }
        t += MINUTE;
    }
    appender.commit().unwrap();
}

fn oldest_visible(tsdb: &Tsdb) -> Option<i64> {
    tsdb.querier()
        .unwrap()
        .select(i64::MIN, i64::MAX, &[])
        .unwrap()
        .iter()
        .filter_map(|series| series.samples.first().map(|sample| sample.t))
        .min()
}

#[test]
fn time_retention_is_exact_for_readers_and_deletes_whole_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        time: Some(Duration::from_millis((3 * PARTITION_MS) as u64)),
        size_bytes: None,
    };
    let newest = 5 * PARTITION_MS - MINUTE;
    let cutoff = newest - 3 * PARTITION_MS;
    {
        let tsdb = Tsdb::open(dir.path(), options(retention.clone())).unwrap();
        // Five partitions of data.
        write_minutes(&tsdb, &["a", "b"], 0, 5 * PARTITION_MS);
        assert_eq!(
            tsdb.stats().partitions,
            4,
            "the fifth is still open in the head"
        );
        // Readers never see anything older than newest - retention, even
        // before retention ran.
        assert_eq!(oldest_visible(&tsdb), Some(cutoff));
        let report = tsdb.apply_retention().unwrap();
        // Partition 0's newest sample is older than the cutoff; partition 1's
        // newest sample sits exactly at the cutoff, so it stays.
        assert_eq!(report.partitions_deleted, 1, "{report:?}");
        assert_eq!(report.floor, Some(cutoff));
        assert_eq!(report.series_deleted, 0);
        assert_eq!(tsdb.stats().partitions, 3);
        assert_eq!(oldest_visible(&tsdb), Some(cutoff));
        // Retention again changes nothing.
        assert_eq!(tsdb.apply_retention().unwrap().partitions_deleted, 0);
        tsdb.close().unwrap();
    }
    let tsdb = Tsdb::open(dir.path(), options(retention)).unwrap();
    assert_eq!(oldest_visible(&tsdb), Some(cutoff));
    let series = tsdb.querier().unwrap().select(0, i64::MAX, &[]).unwrap();
    for found in series {
        let expected = ((newest - cutoff) / MINUTE + 1) as usize;
        assert_eq!(found.samples.len(), expected);
        assert_eq!(found.samples.last().unwrap().t, newest);
    }
}

#[test]
fn size_retention_deletes_oldest_partitions_and_hides_their_range() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    write_minutes(&tsdb, &["a", "b"], 0, 4 * PARTITION_MS);
    tsdb.flush_open_chunks(Duration::ZERO).unwrap();
    let stats = tsdb.stats();
    assert_eq!(stats.partitions, 4);
    let per_partition = stats.stored_chunk_bytes / 4;
    drop(tsdb);

    // Keep room for a bit more than two partitions.
    let retention = Retention {
        time: None,
        size_bytes: Some(per_partition * 2 + per_partition / 2),
    };
    let tsdb = Tsdb::open(dir.path(), options(retention)).unwrap();
    let report = tsdb.apply_retention().unwrap();
    assert_eq!(report.partitions_deleted, 2, "{report:?}");
    assert_eq!(report.floor, Some(2 * PARTITION_MS - MINUTE + 1));
    let stats = tsdb.stats();
    assert_eq!(stats.partitions, 2);
    assert!(stats.stored_chunk_bytes <= per_partition * 2 + per_partition / 2);
    assert_eq!(oldest_visible(&tsdb), Some(2 * PARTITION_MS));
    // Samples older than the floor are refused from now on.
    let mut appender = tsdb.appender();
    appender
        .append(&[("__name__", "metric"), ("series", "c")], MINUTE, 1.0)
        .unwrap();
    let outcome = appender.commit().unwrap();
    assert_eq!(outcome.out_of_order, 1);
}

#[test]
fn series_without_visible_data_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        time: Some(Duration::from_millis(PARTITION_MS as u64)),
        size_bytes: None,
    };
    let tsdb = Tsdb::open(dir.path(), options(retention.clone())).unwrap();
    // "gone" stops after the first hour; "alive" continues for 6 hours.
    write_minutes(&tsdb, &["gone"], 0, 60 * MINUTE);
    write_minutes(&tsdb, &["alive"], 0, 6 * PARTITION_MS / 2);
    let querier = tsdb.querier().unwrap();
    // Already invisible through the label APIs before retention ran.
    assert_eq!(
        querier
            .label_values("series", i64::MIN, i64::MAX, &[])
            .unwrap(),
        vec!["alive"]
    );
    drop(querier);
    let report = tsdb.apply_retention().unwrap();
    assert_eq!(report.series_deleted, 1, "{report:?}");
    assert_eq!(tsdb.stats().series, 1);
    // A new sample for the removed label set creates a fresh series.
    let mut appender = tsdb.appender();
    appender
        .append(
            &[("__name__", "metric"), ("series", "gone")],
            3 * PARTITION_MS,
            1.0,
        )
        .unwrap();
    assert_eq!(appender.commit().unwrap().series_created, 1);
    tsdb.close().unwrap();
    let tsdb = Tsdb::open(dir.path(), options(retention)).unwrap();
    assert_eq!(tsdb.stats().series, 2);
    let gone = tsdb
        .querier()
        .unwrap()
        .select(i64::MIN, i64::MAX, &[Matcher::equal("series", "gone")])
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].samples.len(), 1);
}
