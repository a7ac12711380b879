//! Partition compaction through a real store (redb file in a tempdir):
//! compacted partitions answer every query bit-exactly as the loose chunks
//! did, survive a restart, take late samples and compact again, are removed
//! whole by retention, and only closed partitions are compacted unless
//! forced.

use std::time::Duration;

use guardia::config::Retention;
use guardia::model::{Matcher, STALE_NAN_BITS, stale_nan};
use guardia::storage::{Appendable, Queryable, Series};
use guardia::tsdb::encoding::PARTITION_MS;
use guardia::tsdb::{Options, Tsdb};

const STEP: i64 = 15_000;
const TARGETS: usize = 3;
const SERIES_PER_TARGET: usize = 40;

fn jitter(target: usize, step: i64) -> i64 {
    ((target as i64 * 7 + step * 13) % 7).abs()
}

/// Scrapes of `TARGETS` targets from step `first` to `last` (exclusive):
/// every series of a target shares the scrape's jittered timestamp, as real
/// scrapes do. Values mix counters, constants, decimals, NaN payloads and
/// staleness markers; series `k` of target 1 exists only on even hours.
fn write_steps(tsdb: &Tsdb, first: i64, last: i64) {
    let mut appender = tsdb.appender();
    for step in first..last {
        for target in 0..TARGETS {
            let t = step * STEP + jitter(target, step);
            let instance = format!("host-{target}");
            for series in 0..SERIES_PER_TARGET {
                if target == 1 && series == 5 && (t / 3_600_000) % 2 == 1 {
                    continue;
                }
                let value = match series % 8 {
                    0 => step as f64 * 1.25 + target as f64,
                    1 => 7.0,
                    2 => (step % 11) as f64 / 100.0,
                    3 if step % 37 == 36 => stale_nan(),
                    3 => step as f64,
                    4 => f64::from_bits(0x7ff8_0000_0000_0000 | (step as u64 % 3 + 1)),
                    5 => ((step * 7919) % 1000) as f64 * 1e-7,
                    6 => -0.0,
                    _ => (step as f64).sqrt(),
                };
                let name = format!("metric_{series}");
                appender
                    .append(&[("__name__", &name), ("instance", &instance)], t, value)
                    .unwrap();
            }
        }
    }
    appender.commit().unwrap();
}

fn select(tsdb: &Tsdb, mint: i64, maxt: i64, matchers: &[Matcher]) -> Vec<Series> {
    tsdb.querier()
        .unwrap()
        .select(mint, maxt, matchers)
        .unwrap()
}

fn assert_same(got: &[Series], want: &[Series]) {
    assert_eq!(got.len(), want.len(), "series count");
    for (got, want) in got.iter().zip(want) {
        assert_eq!(got.labels, want.labels);
        assert_eq!(got.samples.len(), want.samples.len(), "{:?}", want.labels);
        for (a, b) in got.samples.iter().zip(&want.samples) {
            assert!(a.bit_eq(b), "{:?}: {a:?} vs {b:?}", want.labels);
        }
    }
}

/// Queries that cover whole partitions, partition edges, narrow windows,
/// single series, a series missing from some partitions, and none.
fn query_set(tsdb: &Tsdb) -> Vec<Vec<Series>> {
    let hour = 3_600_000;
    let one = |name: &str, instance: &str| {
        vec![
            Matcher::equal("__name__", name),
            Matcher::equal("instance", instance),
        ]
    };
    vec![
        select(tsdb, i64::MIN, i64::MAX, &[]),
        select(tsdb, PARTITION_MS - 60_000, PARTITION_MS + 60_000, &[]),
        select(tsdb, hour + 7, hour + 3 * STEP, &[]),
        select(tsdb, i64::MIN, i64::MAX, &one("metric_0", "host-2")),
        select(tsdb, 0, 5 * hour, &one("metric_5", "host-1")),
        select(tsdb, 0, 5 * hour, &one("metric_39", "host-0")),
        select(tsdb, 0, 5 * hour, &one("metric_3", "host-9")),
        select(
            tsdb,
            2 * hour,
            3 * hour,
            &[Matcher::equal("instance", "host-1")],
        ),
    ]
}

fn assert_all_same(got: &[Vec<Series>], want: &[Vec<Series>]) {
    assert_eq!(got.len(), want.len());
    for (got, want) in got.iter().zip(want) {
        assert_same(got, want);
    }
}

#[test]
fn compaction_keeps_every_sample_bit_exact_across_restart_and_late_data() {
    compact_and_compare(Options::default());
}

/// Steps of one or a few chunks: every series boundary that is also an
/// old-block boundary ends a transaction, so the step logic (resuming,
/// reading old blocks one at a time past the new ones, summaries kept
/// across steps) runs hundreds of times, and must give the same answers.
#[test]
fn compaction_in_small_steps_gives_the_same_answers() {
    for compaction_step_chunks in [1, 7] {
        compact_and_compare(Options {
            compaction_step_chunks,
            ..Options::default()
        });
    }
}

fn compact_and_compare(options: Options) {
    let step_chunks = options.compaction_step_chunks;
    let dir = tempfile::tempdir().unwrap();
    let steps_per_hour = 3_600_000 / STEP;
    let expected;
    {
        let tsdb = Tsdb::open(dir.path(), options.clone()).unwrap();
        // Five hours: partitions 0 and 1 full, partition 2 partly.
        write_steps(&tsdb, 0, 5 * steps_per_hour);
        tsdb.flush_open_chunks(Duration::ZERO).unwrap();
        expected = query_set(&tsdb);
        assert!(expected[0].len() == TARGETS * SERIES_PER_TARGET);
        let before = tsdb.stats();
        assert!(before.stored_chunks > 0);

        let report = tsdb.compact_partitions(true).unwrap();
        assert_eq!(report.partitions_compacted, 3, "{report:?}");
        assert_eq!(report.chunks_merged, before.stored_chunks);
        assert!(report.blocks_written > 0);
        let after = tsdb.stats();
        // One transaction per step: a partition at once by default, about
        // a series per step at one chunk (every series of every partition).
        let transactions = after.commits - before.commits;
        if step_chunks == 1 {
            assert!(
                transactions >= 3 * (TARGETS * SERIES_PER_TARGET) as u64 - 3,
                "{transactions} transactions"
            );
        } else if step_chunks >= before.stored_chunks {
            assert_eq!(transactions, 3);
        }
        assert_eq!(after.stored_chunks, 0);
        assert_eq!(after.partitions, 3);
        // Even on these float-heavy series (about 20 % saved; far more on
        // node_exporter data, see README) the blocks must be smaller.
        assert!(
            after.stored_chunk_bytes * 10 < before.stored_chunk_bytes * 9,
            "blocks {} bytes, chunks {} bytes",
            after.stored_chunk_bytes,
            before.stored_chunk_bytes
        );
        assert_all_same(&query_set(&tsdb), &expected);
        // Nothing left to compact.
        assert_eq!(
            tsdb.compact_partitions(true).unwrap().partitions_compacted,
            0
        );
        tsdb.close().unwrap();
    }
    {
        let tsdb = Tsdb::open(dir.path(), options).unwrap();
        assert_all_same(&query_set(&tsdb), &expected);
        // The tails still reject what is older than the compacted data.
        let mut appender = tsdb.appender();
        appender
            .append(
                &[("__name__", "metric_0"), ("instance", "host-0")],
                STEP,
                1.0,
            )
            .unwrap();
        assert_eq!(appender.commit().unwrap().out_of_order, 1);
        // Late data: more samples into partition 2 (already compacted once)
        // and a new series there; then both kinds merge into new blocks.
        write_steps(&tsdb, 5 * steps_per_hour, 5 * steps_per_hour + 10);
        let mut appender = tsdb.appender();
        appender
            .append(
                &[("__name__", "late_series"), ("instance", "host-0")],
                5 * 3_600_000 + 1,
                f64::from_bits(STALE_NAN_BITS),
            )
            .unwrap();
        appender.commit().unwrap();
        tsdb.flush_open_chunks(Duration::ZERO).unwrap();
        let with_late = query_set(&tsdb);
        assert_eq!(
            with_late[0].len(),
            TARGETS * SERIES_PER_TARGET + 1,
            "late series"
        );
        let report = tsdb.compact_partitions(true).unwrap();
        assert_eq!(report.partitions_compacted, 1, "{report:?}");
        assert!(report.blocks_rewritten > 0);
        assert_all_same(&query_set(&tsdb), &with_late);
        let late = select(
            &tsdb,
            i64::MIN,
            i64::MAX,
            &[Matcher::equal("__name__", "late_series")],
        );
        assert_eq!(late[0].samples[0].v.to_bits(), STALE_NAN_BITS);
        tsdb.close().unwrap();
    }
}

#[test]
fn only_closed_partitions_are_compacted_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        open_chunk_max_age: Duration::from_secs(3600),
        flush_interval: Duration::from_secs(3600),
        ..Options::default()
    };
    let tsdb = Tsdb::open(dir.path(), options).unwrap();
    let steps_per_hour = 3_600_000 / STEP;
    // Newest sample at 7 h, settle time 1 h + 1 h: partitions 0 and 1
    // (ending at 2 h and 4 h) are closed, 2 (ends at 6 h) and 3 are not.
    write_steps(&tsdb, 0, 7 * steps_per_hour);
    tsdb.flush_open_chunks(Duration::ZERO).unwrap();
    let expected = query_set(&tsdb);
    let report = tsdb.compact_partitions(false).unwrap();
    assert_eq!(report.partitions_compacted, 2, "{report:?}");
    assert!(
        tsdb.stats().stored_chunks > 0,
        "later partitions stay loose"
    );
    // Queries over a mix of blocks and loose chunks.
    assert_all_same(&query_set(&tsdb), &expected);
    assert_eq!(
        tsdb.compact_partitions(false).unwrap().partitions_compacted,
        0
    );
    tsdb.close().unwrap();
}

#[test]
fn retention_deletes_compacted_partitions_whole() {
    let dir = tempfile::tempdir().unwrap();
    let retention = Retention {
        time: Some(Duration::from_millis((PARTITION_MS - 60_000) as u64)),
        size_bytes: None,
    };
    let options = Options {
        retention,
        ..Options::default()
    };
    let steps_per_hour = 3_600_000 / STEP;
    {
        let tsdb = Tsdb::open(dir.path(), options.clone()).unwrap();
        write_steps(&tsdb, 0, 6 * steps_per_hour);
        tsdb.flush_open_chunks(Duration::ZERO).unwrap();
        tsdb.compact_partitions(true).unwrap();
        assert_eq!(tsdb.stats().partitions, 3);
        let report = tsdb.apply_retention().unwrap();
        // Newest ≈ 6 h, floor ≈ 4 h 1 min: partitions 0 and 1 go.
        assert_eq!(report.partitions_deleted, 2, "{report:?}");
        assert_eq!(tsdb.stats().partitions, 1);
        tsdb.close().unwrap();
    }
    let tsdb = Tsdb::open(dir.path(), options).unwrap();
    let all = select(&tsdb, i64::MIN, i64::MAX, &[]);
    let oldest = all
        .iter()
        .filter_map(|series| series.samples.first().map(|sample| sample.t))
        .min()
        .unwrap();
    assert!(oldest >= 4 * 3_600_000 - STEP, "oldest visible {oldest}");
    // Also straight from the blocks, ignoring the floor: nothing older than
    // partition 2 is stored any more.
    assert_eq!(tsdb.stats().partitions, 1);
    assert!(tsdb.stats().stored_chunk_bytes > 0);
    tsdb.close().unwrap();
}
