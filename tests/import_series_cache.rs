//! The push endpoint's series text cache (`api::import::SeriesTextCache`)
//! through a real store: pushes that hit the cache store exactly what the
//! full parse would, scopes (`extra_label` sets, formats) stay apart,
//! retention's removal of a series drops the cached references, a bad
//! reference is refused at commit, and metadata is kept and updated.

use std::sync::Arc;
use std::time::Duration;

use guardia::api::import::{SeriesTextCache, append_text};
use guardia::config::{IngestLimits, Retention};
use guardia::ingest::text::Format;
use guardia::model::{Matcher, MetricMetadata};
use guardia::storage::{Appendable, CommitOutcome, Queryable, StorageError};
use guardia::tsdb::encoding::PARTITION_MS;
use guardia::tsdb::{Options, Tsdb};

fn open(dir: &std::path::Path, options: Options) -> Arc<Tsdb> {
    Tsdb::open(dir, options).unwrap()
}

fn push(tsdb: &Tsdb, cache: &SeriesTextCache, body: &str, extra: &[(&str, &str)]) -> CommitOutcome {
    let mut appender = tsdb.appender();
    append_text(
        body.as_bytes(),
        Format::Prometheus,
        extra,
        0,
        &IngestLimits::default(),
        Some(cache),
        appender.as_mut(),
    )
    .unwrap();
    appender.commit().unwrap()
}

/// Every stored series as `labels: (t, value) ...`, sorted.
fn dump(tsdb: &Tsdb) -> Vec<String> {
    let mut lines: Vec<String> = tsdb
        .querier()
        .unwrap()
        .select(i64::MIN, i64::MAX, &[])
        .unwrap()
        .iter()
        .map(|series| {
            let samples: Vec<String> = series
                .samples
                .iter()
                .map(|sample| format!("({}, {})", sample.t, sample.v))
                .collect();
            format!("{}: {}", series.labels, samples.join(" "))
        })
        .collect();
    lines.sort();
    lines
}

fn body_at(t: i64) -> String {
    format!(
        "# HELP up Whether the target is up.\n\
         # TYPE up gauge\n\
         up{{job=\"a\"}} {t} {t}\n\
         up {t} {t}\n\
         m{{b=\"}}\",c=\"x y\"}} 1.5 {t}\n\
         {{\"my.metric\", \"a.b\"=\"c\"}} -2 {t}\n\
         up{{job=\"b\", instance=\"\"}} 7 {t}\n"
    )
}

#[test]
fn cached_pushes_store_what_uncached_pushes_store() {
    let cached_dir = tempfile::tempdir().unwrap();
    let uncached_dir = tempfile::tempdir().unwrap();
    let cached = open(cached_dir.path(), Options::default());
    let uncached = open(uncached_dir.path(), Options::default());
    let cache = SeriesTextCache::default();
    let no_cache = SeriesTextCache::default();
    for step in 1..=4 {
        let body = body_at(step * 15_000);
        for extra in [&[][..], &[("instance", "site-1")][..]] {
            let outcome = push(&cached, &cache, &body, extra);
            assert_eq!(outcome.samples_appended, 5, "{outcome:?}");
            // A fresh cache every time: the full parse only.
            let mut appender = uncached.appender();
            append_text(
                body.as_bytes(),
                Format::Prometheus,
                extra,
                0,
                &IngestLimits::default(),
                None,
                appender.as_mut(),
            )
            .unwrap();
            appender.commit().unwrap();
            assert!(no_cache.is_empty());
        }
        if step == 1 {
            // The first push created the series: nothing to cache yet.
            assert_eq!(cache.len(), 0);
        } else {
            // One entry per series text and scope.
            assert_eq!(cache.len(), 10);
        }
    }
    let stored = dump(&cached);
    assert_eq!(stored.len(), 10, "{stored:#?}");
    assert_eq!(stored, dump(&uncached));
    assert!(
        stored.contains(
            &"m{b=\"}\", c=\"x y\", instance=\"site-1\"}: (15000, 1.5) (30000, 1.5) (45000, 1.5) (60000, 1.5)"
                .to_string()
        ),
        "{stored:#?}"
    );
}

#[test]
fn retention_removing_a_series_drops_its_cached_reference() {
    const MINUTE: i64 = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        retention: Retention {
            time: Some(Duration::from_millis(PARTITION_MS as u64)),
            size_bytes: None,
        },
        ..Options::default()
    };
    let tsdb = open(dir.path(), options);
    let cache = SeriesTextCache::default();
    for minute in 0..60 {
        let t = minute * MINUTE;
        push(&tsdb, &cache, &format!("gone 1 {t}\nalive 1 {t}\n"), &[]);
    }
    assert_eq!(cache.len(), 2);
    let mut t = 60 * MINUTE;
    while t < 3 * PARTITION_MS {
        push(&tsdb, &cache, &format!("alive 1 {t}\n"), &[]);
        t += MINUTE;
    }
    assert_eq!(tsdb.apply_retention().unwrap().series_deleted, 1);
    // The cached reference of `gone` names nothing now; the push must
    // create the series again rather than be refused.
    let outcome = push(&tsdb, &cache, &format!("gone 5 {t}\nalive 1 {t}\n"), &[]);
    assert_eq!(outcome.series_created, 1, "{outcome:?}");
    assert_eq!(outcome.samples_appended, 2, "{outcome:?}");
    assert_eq!(outcome.rejected(), 0, "{outcome:?}");
    let gone = tsdb
        .querier()
        .unwrap()
        .select(i64::MIN, i64::MAX, &[Matcher::equal("__name__", "gone")])
        .unwrap();
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].samples.len(), 1);
    assert_eq!(gone[0].samples[0].v, 5.0);
}

#[test]
fn a_reference_the_store_never_handed_out_is_refused_at_commit() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path(), Options::default());
    let mut appender = tsdb.appender();
    let created = appender
        .append_and_get_ref(&[("__name__", "up")], 1, 1.0)
        .unwrap();
    assert_eq!(
        created, None,
        "a series the batch creates has no reference yet"
    );
    appender.commit().unwrap();
    let mut appender = tsdb.appender();
    let known = appender
        .append_and_get_ref(&[("__name__", "up")], 2, 1.0)
        .unwrap()
        .expect("an existing series has a reference");
    appender.append_ref(known, 3, 1.0).unwrap();
    appender.append_ref(known + 1000, 4, 1.0).unwrap();
    assert!(matches!(
        appender.commit(),
        Err(StorageError::InvalidSeries(_))
    ));
    let mut appender = tsdb.appender();
    appender.append_ref(known, 3, 2.0).unwrap();
    assert_eq!(appender.commit().unwrap().samples_appended, 1);
}

#[test]
fn metadata_is_stored_once_and_updated_when_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let tsdb = open(dir.path(), Options::default());
    let cache = SeriesTextCache::default();
    let body = |help: &str, t: i64| {
        format!(
            "# HELP b_total Second.\n# TYPE a gauge\n# HELP a {help}\na 1 {t}\n# TYPE b_total counter\nb_total 2 {t}\n"
        )
    };
    push(&tsdb, &cache, &body("First.", 1), &[]);
    let expected = |help: &str| {
        vec![
            (
                "a".to_string(),
                MetricMetadata {
                    metric_type: "gauge".to_string(),
                    help: help.to_string(),
                    unit: String::new(),
                },
            ),
            (
                "b_total".to_string(),
                MetricMetadata {
                    metric_type: "counter".to_string(),
                    help: "Second.".to_string(),
                    unit: String::new(),
                },
            ),
        ]
    };
    assert_eq!(tsdb.metadata(), expected("First."));
    // Unchanged metadata (skipped by the appender) stays as it was.
    push(&tsdb, &cache, &body("First.", 2), &[]);
    assert_eq!(tsdb.metadata(), expected("First."));
    push(&tsdb, &cache, &body("Changed.", 3), &[]);
    assert_eq!(tsdb.metadata(), expected("Changed."));
}
