//! What survives what: close and reopen, drop without close, a simulated
//! power cut (writes discarded by a fault-injecting backend), and a failed
//! commit (injected I/O error) that must poison the store while everything
//! acknowledged before stays intact. Also sealing at 120 samples and at the
//! 2-hour boundary, log truncation and the forced flush of open chunks.

use std::sync::Arc;
use std::time::Duration;

use guardia::model::{Matcher, Sample};
use guardia::storage::{Appendable, Queryable, Series, StorageError};
use guardia::tsdb::encoding::PARTITION_MS;
use guardia::tsdb::{FaultInjection, Options, Tsdb, TsdbError};

const SERIES: usize = 20;

fn labels_of(series: usize) -> Vec<(&'static str, String)> {
    vec![
        ("__name__", "durable".to_string()),
        ("series", format!("{series:03}")),
    ]
}

fn value_of(series: usize, t: i64) -> f64 {
    (series as f64) * 1e6 + t as f64 / 7.0
}

/// Commits `count` samples per series at times `first, first+step, ...`.
fn write(tsdb: &Tsdb, first: i64, step: i64, count: usize) {
    let mut appender = tsdb.appender();
    for index in 0..count {
        let t = first + index as i64 * step;
        for series in 0..SERIES {
            let labels = labels_of(series);
            let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (*n, v.as_str())).collect();
            appender.append(&pairs, t, value_of(series, t)).unwrap();
        }
    }
    let outcome = appender.commit().unwrap();
    assert_eq!(outcome.samples_appended, (count * SERIES) as u64);
}

fn read_all(tsdb: &Tsdb) -> Vec<Series> {
    tsdb.querier()
        .unwrap()
        .select(i64::MIN, i64::MAX, &[Matcher::equal("__name__", "durable")])
        .unwrap()
}

/// Asserts every series holds exactly the samples at `times`, bit-exact.
fn assert_exact(tsdb: &Tsdb, times: &[i64]) {
    let result = read_all(tsdb);
    assert_eq!(result.len(), if times.is_empty() { 0 } else { SERIES });
    for (series, found) in result.iter().enumerate() {
        let expected: Vec<(i64, u64)> = times
            .iter()
            .map(|t| (*t, value_of(series, *t).to_bits()))
            .collect();
        let actual: Vec<(i64, u64)> = found
            .samples
            .iter()
            .map(|s: &Sample| (s.t, s.v.to_bits()))
            .collect();
        assert_eq!(actual.len(), expected.len(), "series {series}");
        assert_eq!(actual, expected, "series {series}");
    }
}

fn times(first: i64, step: i64, count: usize) -> Vec<i64> {
    (0..count)
        .map(|index| first + index as i64 * step)
        .collect()
}

#[test]
fn head_and_sealed_chunks_come_back_after_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    // 300 samples per series: two sealed chunks of 120 and 60 in the head.
    let expected = times(0, 15_000, 300);
    {
        let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
        for batch in 0..3 {
            write(&tsdb, batch * 100 * 15_000, 15_000, 100);
        }
        let stats = tsdb.stats();
        assert_eq!(stats.stored_chunks, (2 * SERIES) as u64, "{stats:?}");
        assert_eq!(stats.head_samples, (60 * SERIES) as u64, "{stats:?}");
        assert_exact(&tsdb, &expected);
        tsdb.close().unwrap();
        assert!(!tsdb.is_ready());
        assert!(tsdb.appender().commit().is_ok());
        let mut appender = tsdb.appender();
        appender.append(&[("__name__", "x")], 1, 1.0).unwrap();
        assert!(matches!(appender.commit(), Err(StorageError::Closed)));
    }
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_exact(&tsdb, &expected);
    let stats = tsdb.stats();
    assert_eq!(stats.series, SERIES as u64);
    assert_eq!(stats.head_samples, (60 * SERIES) as u64);
    // Out-of-order and duplicate checks know the newest sample after restart.
    let mut appender = tsdb.appender();
    let labels = labels_of(0);
    let pairs: Vec<(&str, &str)> = labels.iter().map(|(n, v)| (*n, v.as_str())).collect();
    appender.append(&pairs, 0, 1.0).unwrap();
    appender
        .append(&pairs, 299 * 15_000, value_of(0, 299 * 15_000))
        .unwrap();
    let outcome = appender.commit().unwrap();
    assert_eq!(
        (
            outcome.out_of_order,
            outcome.duplicates,
            outcome.samples_appended
        ),
        (1, 1, 0)
    );
}

#[test]
fn reopen_after_drop_without_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
        write(&tsdb, 0, 1000, 130);
        drop(tsdb);
    }
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_exact(&tsdb, &times(0, 1000, 130));
}

#[test]
fn everything_acknowledged_survives_a_simulated_power_cut_repeatedly() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<i64> = Vec::new();
    for round in 0..3i64 {
        let faults = Arc::new(FaultInjection::new());
        let options = Options {
            fault_injection: Some(faults.clone()),
            ..Options::default()
        };
        let tsdb = Tsdb::open(dir.path(), options).unwrap();
        assert_exact(&tsdb, &acknowledged);
        for batch in 0..7 {
            let first = (round * 7 + batch) * 50 * 1000;
            write(&tsdb, first, 1000, 50);
            acknowledged.extend(times(first, 1000, 50));
        }
        // Power cut: nothing written from now on reaches the file, including
        // redb's clean-shutdown bookkeeping when the store is dropped.
        faults.crash();
        drop(tsdb);
    }
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_exact(&tsdb, &acknowledged);
}

#[test]
fn failed_commit_poisons_and_acknowledged_data_survives() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(FaultInjection::new());
    {
        let options = Options {
            fault_injection: Some(faults.clone()),
            ..Options::default()
        };
        let tsdb = Tsdb::open(dir.path(), options).unwrap();
        write(&tsdb, 0, 1000, 150);
        assert!(tsdb.is_ready());
        faults.fail_writes(true);
        let mut appender = tsdb.appender();
        appender
            .append(
                &[("__name__", "durable"), ("series", "000")],
                1_000_000,
                1.0,
            )
            .unwrap();
        let failed = appender.commit();
        assert!(
            matches!(failed, Err(StorageError::Backend(_))),
            "{failed:?}"
        );
        assert!(faults.failed_operations() > 0);
        assert!(!tsdb.is_ready());
        // The disk is healthy again, but the store stays poisoned.
        faults.fail_writes(false);
        let mut appender = tsdb.appender();
        appender
            .append(
                &[("__name__", "durable"), ("series", "000")],
                2_000_000,
                1.0,
            )
            .unwrap();
        assert!(matches!(appender.commit(), Err(StorageError::Poisoned(_))));
        assert!(matches!(
            tsdb.apply_retention(),
            Err(TsdbError::Poisoned(_))
        ));
        assert!(matches!(
            tsdb.flush_open_chunks(Duration::ZERO),
            Err(TsdbError::Poisoned(_))
        ));
        let mut exposition = guardia::telemetry::Exposition::new();
        tsdb.render_metrics(&mut exposition);
        assert!(exposition.finish().contains("guardia_tsdb_poisoned 1\n"));
        // Reads still work and show only acknowledged data.
        assert_exact(&tsdb, &times(0, 1000, 150));
        faults.crash();
    }
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert!(tsdb.is_ready());
    assert_exact(&tsdb, &times(0, 1000, 150));
}

#[test]
fn chunks_are_cut_at_120_samples_and_log_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    // One sample per commit, as a scrape loop would do.
    for index in 0..119 {
        write(&tsdb, index * 1000, 1000, 1);
    }
    assert_eq!(tsdb.stats().stored_chunks, 0);
    assert_eq!(tsdb.log_record_count().unwrap(), 119);
    write(&tsdb, 119 * 1000, 1000, 1);
    // 120 samples fit in one open chunk; the 121st cuts it.
    assert_eq!(tsdb.stats().stored_chunks, 0);
    write(&tsdb, 120 * 1000, 1000, 1);
    let stats = tsdb.stats();
    assert_eq!(stats.stored_chunks, SERIES as u64);
    assert_eq!(stats.head_samples, SERIES as u64);
    // Only the record holding the new open chunks' first sample remains.
    assert_eq!(tsdb.log_record_count().unwrap(), 1);
    assert_eq!(stats.log_records_deleted, 120);
    assert_exact(&tsdb, &times(0, 1000, 121));
}

#[test]
fn chunks_never_span_a_partition_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    let first = PARTITION_MS - 5 * 60_000;
    // 10 samples a minute apart: 5 before the boundary, 5 after.
    write(&tsdb, first, 60_000, 10);
    let stats = tsdb.stats();
    assert_eq!(stats.stored_chunks, SERIES as u64);
    assert_eq!(stats.partitions, 1);
    assert_eq!(stats.head_samples, (5 * SERIES) as u64);
    assert_exact(&tsdb, &times(first, 60_000, 10));
    tsdb.close().unwrap();
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_exact(&tsdb, &times(first, 60_000, 10));
}

#[test]
fn flush_seals_idle_open_chunks_and_empties_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    write(&tsdb, 0, 1000, 30);
    write(&tsdb, 30_000, 1000, 30);
    assert_eq!(tsdb.log_record_count().unwrap(), 2);
    // Nothing is an hour old yet.
    assert_eq!(
        tsdb.flush_open_chunks(Duration::from_secs(3600)).unwrap(),
        0
    );
    assert_eq!(
        tsdb.flush_open_chunks(Duration::ZERO).unwrap(),
        SERIES as u64
    );
    assert_eq!(tsdb.log_record_count().unwrap(), 0);
    let stats = tsdb.stats();
    assert_eq!(stats.head_samples, 0);
    assert_eq!(stats.stored_chunks, SERIES as u64);
    assert_exact(&tsdb, &times(0, 1000, 60));
    // Appending after a flush starts a new chunk; restart brings back both.
    write(&tsdb, 60_000, 1000, 10);
    tsdb.close().unwrap();
    let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
    assert_exact(&tsdb, &times(0, 1000, 70));
    let stats = tsdb.stats();
    assert_eq!(stats.head_samples, (10 * SERIES) as u64);
    assert_eq!(stats.stored_chunks, SERIES as u64);
}

#[test]
fn newer_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let tsdb = Tsdb::open(dir.path(), Options::default()).unwrap();
        tsdb.close().unwrap();
    }
    {
        let database = redb::Database::create(dir.path().join("guardia.redb")).unwrap();
        let transaction = database.begin_write().unwrap();
        {
            let mut meta = transaction
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("format_version", 99u64.to_le_bytes().as_slice())
                .unwrap();
        }
        transaction.commit().unwrap();
    }
    let error = Tsdb::open(dir.path(), Options::default()).unwrap_err();
    assert!(
        matches!(
            error,
            TsdbError::NewerFormat {
                found: 99,
                supported: 2
            }
        ),
        "{error}"
    );
}
