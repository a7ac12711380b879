//! Scraping against real parts: a tempdir `Tsdb`, the Debian
//! `prometheus-node-exporter` binary, and small axum servers that misbehave
//! (slow, garbage, huge, too many samples). Time-dependent checks wait for
//! a condition under a generous deadline instead of sleeping fixed times.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use guardia::clock::SystemClock;
use guardia::config::file::parse_config;
use guardia::ingest::text::{Entry, Format, SampleBuf, TextParser};
use guardia::model::{Matcher, is_stale_nan};
use guardia::scrape::ScrapeManager;
use guardia::scrape::scrape_loop::Health;
use guardia::storage::{Appendable, Queryable, Series};
use guardia::tsdb::{Options, Tsdb};

#[path = "common/process.rs"]
mod process;
use process::{KillOnDrop, free_port};

const DEADLINE: Duration = Duration::from_secs(60);

struct Harness {
    _directory: tempfile::TempDir,
    tsdb: Arc<Tsdb>,
    manager: Arc<ScrapeManager>,
}

fn harness() -> Harness {
    let directory = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
    let appendable: Arc<dyn Appendable> = tsdb.clone();
    let manager = ScrapeManager::new(appendable, Arc::new(SystemClock));
    Harness {
        _directory: directory,
        tsdb,
        manager,
    }
}

impl Harness {
    fn select(&self, matchers: &[(&str, &str)]) -> Vec<Series> {
        let matchers: Vec<Matcher> = matchers
            .iter()
            .map(|(name, value)| Matcher::equal(*name, *value))
            .collect();
        let querier = self.tsdb.querier().unwrap();
        querier
            .select(i64::MIN / 2, i64::MAX / 2, &matchers)
            .unwrap()
    }

    fn last_value(&self, matchers: &[(&str, &str)]) -> Option<f64> {
        let series = self.select(matchers);
        series.first()?.samples.last().map(|sample| sample.v)
    }

    async fn wait_for(&self, what: &str, mut condition: impl FnMut(&Harness) -> bool) {
        let started = Instant::now();
        while !condition(self) {
            assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn target_error(&self, job: &str) -> Option<String> {
        self.manager
            .active_targets()
            .into_iter()
            .find(|target| target.scrape_pool == job && target.status.health == Health::Down)
            .map(|target| target.status.last_error)
    }
}

const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";

async fn start_node_exporter() -> Option<(KillOnDrop, u16)> {
    if !Path::new(NODE_EXPORTER).exists() {
        eprintln!("skipping: {NODE_EXPORTER} is not installed");
        return None;
    }
    let port = free_port();
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnDrop(child);
    let started = Instant::now();
    while reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .is_err()
    {
        assert!(started.elapsed() < DEADLINE, "node exporter did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some((guard, port))
}

fn count_series_named(body: &str, name: &str) -> usize {
    let mut parser = TextParser::new(body, Format::Prometheus);
    let mut sample = SampleBuf::new();
    let mut count = 0;
    while let Some(entry) = parser.next_entry(&mut sample).unwrap() {
        if entry == Entry::Sample && sample.metric_name() == name {
            count += 1;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_exporter_is_scraped_then_marked_down_and_stale() {
    let Some((exporter, port)) = start_node_exporter().await else {
        return;
    };
    let harness = harness();
    let config = parse_config(&format!(
        "scrape_configs:\n  - job_name: node\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    ))
    .unwrap();
    harness.manager.apply_config(&config).unwrap();
    harness
        .wait_for("three successful scrapes", |h| {
            h.select(&[("__name__", "up"), ("job", "node")])
                .first()
                .is_some_and(|series| series.samples.iter().filter(|s| s.v == 1.0).count() >= 3)
        })
        .await;
    let direct = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let direct_count = count_series_named(&direct, "node_cpu_seconds_total");
    assert!(direct_count > 0);
    let stored = harness.select(&[("__name__", "node_cpu_seconds_total"), ("job", "node")]);
    assert_eq!(stored.len(), direct_count);
    for series in &stored {
        assert_eq!(
            series.labels.get("instance"),
            Some(format!("127.0.0.1:{port}").as_str())
        );
    }
    // The counter rises: the CPU seconds summed over all series grow.
    let sum_at = |index_from_end: usize| -> f64 {
        stored
            .iter()
            .map(|series| series.samples[series.samples.len() - 1 - index_from_end].v)
            .sum()
    };
    let min_samples = stored.iter().map(|s| s.samples.len()).min().unwrap();
    assert!(min_samples >= 2);
    assert!(
        sum_at(0) > sum_at(min_samples - 1),
        "CPU counters did not rise"
    );
    let metadata = harness.manager.target_metadata();
    assert!(metadata.iter().any(
        |(_, metric, meta)| metric == "node_cpu_seconds_total" && meta.metric_type == "counter"
    ));
    for synthetic in [
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ] {
        assert!(
            harness
                .last_value(&[("__name__", synthetic), ("job", "node")])
                .is_some(),
            "{synthetic}"
        );
    }
    assert!(
        harness
            .last_value(&[("__name__", "scrape_samples_scraped"), ("job", "node")])
            .unwrap()
            > 100.0
    );

    drop(exporter);
    harness
        .wait_for("up == 0", |h| {
            h.last_value(&[("__name__", "up"), ("job", "node")]) == Some(0.0)
        })
        .await;
    assert!(
        harness
            .target_error("node")
            .is_some_and(|error| !error.is_empty())
    );
    let after = harness.select(&[("__name__", "node_cpu_seconds_total"), ("job", "node")]);
    assert_eq!(after.len(), direct_count);
    for series in after {
        let last = series.samples.last().unwrap();
        assert!(is_stale_nan(last.v), "{} not marked stale", series.labels);
    }
    harness.manager.shutdown().await;
}

async fn serve(router: Router) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (address, task)
}

fn misbehaving_router() -> Router {
    Router::new()
        .route(
            "/good",
            get(|| async {
                "# TYPE good_metric gauge\ngood_metric{a=\"1\"} 1\ngood_metric{a=\"2\"} 2\n"
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "slow_metric 1\n"
            }),
        )
        .route(
            "/garbage",
            get(|| async {
                "garbage_metric 1\ngarbage_metric{a=\"2\"} 2\nthis is { not a metric\n"
            }),
        )
        .route(
            "/big",
            get(|| async {
                let mut body = String::with_capacity(10 << 20);
                let mut index = 0u64;
                while body.len() < 10 << 20 {
                    body.push_str(&format!("big_metric{{index=\"{index}\"}} 1\n"));
                    index += 1;
                }
                body
            }),
        )
        .route(
            "/many",
            get(|| async {
                (0..2000)
                    .map(|index| format!("many_metric{{index=\"{index}\"}} {index}\n"))
                    .collect::<String>()
            }),
        )
        .route(
            "/labels",
            get(|| async { "labelled_metric{a=\"1\",b=\"2\",c=\"3\",d=\"4\"} 1\n" }),
        )
        .route(
            "/openmetrics",
            get(|headers: axum::http::HeaderMap| async move {
                let accept = headers
                    .get("accept")
                    .and_then(|value| value.to_str().ok())
                    .unwrap_or("")
                    .to_string();
                if !accept.starts_with("application/openmetrics-text;version=1.0.0") {
                    return (
                        axum::http::StatusCode::NOT_ACCEPTABLE,
                        [("content-type", "text/plain")],
                        String::new(),
                    );
                }
                (
                    axum::http::StatusCode::OK,
                    [(
                        "content-type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    "# TYPE om_metric gauge\nom_metric 5\n# EOF\n".to_string(),
                )
            }),
        )
        .route(
            "/gzip",
            get(|headers: axum::http::HeaderMap| async move {
                use std::io::Write as _;
                let wants_gzip = headers
                    .get("accept-encoding")
                    .and_then(|value| value.to_str().ok())
                    .is_some_and(|value| value.contains("gzip"));
                if !wants_gzip {
                    return (
                        axum::http::StatusCode::BAD_REQUEST,
                        [("content-encoding", "identity")],
                        Vec::new(),
                    );
                }
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(b"zipped_metric 7\n").unwrap();
                (
                    axum::http::StatusCode::OK,
                    [("content-encoding", "gzip")],
                    encoder.finish().unwrap(),
                )
            }),
        )
        .route(
            "/conflict",
            get(|| async { "conflict_metric{job=\"inner\",instance=\"x\"} 1\n" }),
        )
}

fn job_yaml(job: &str, address: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "  - job_name: {job}\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    metrics_path: {path}\n{extra}    static_configs:\n      - targets: ['{address}']\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_targets_store_up_0_and_nothing_partial() {
    let (address, server) = serve(misbehaving_router()).await;
    let harness = harness();
    let mut yaml = String::from("scrape_configs:\n");
    yaml.push_str(&job_yaml(
        "good",
        address,
        "/good",
        "    honor_labels: false\n",
    ));
    yaml.push_str(&job_yaml("slow", address, "/slow", ""));
    yaml.push_str(&job_yaml("garbage", address, "/garbage", ""));
    yaml.push_str(&job_yaml(
        "big",
        address,
        "/big",
        "    body_size_limit: 1MB\n",
    ));
    yaml.push_str(&job_yaml(
        "many",
        address,
        "/many",
        "    sample_limit: 100\n",
    ));
    yaml.push_str(&job_yaml(
        "labels",
        address,
        "/labels",
        "    label_limit: 3\n",
    ));
    yaml.push_str(&job_yaml("conflict", address, "/conflict", ""));
    yaml.push_str(&job_yaml(
        "honored",
        address,
        "/conflict",
        "    honor_labels: true\n",
    ));
    yaml.push_str(&job_yaml("openmetrics", address, "/openmetrics", ""));
    yaml.push_str(&job_yaml("gzip", address, "/gzip", ""));
    harness
        .manager
        .apply_config(&parse_config(&yaml).unwrap())
        .unwrap();

    for (job, reason, metric) in [
        ("slow", "timeout", "slow_metric"),
        ("garbage", "parse error", "garbage_metric"),
        ("big", "body_size_limit", "big_metric"),
        ("many", "sample_limit", "many_metric"),
        ("labels", "label_limit", "labelled_metric"),
    ] {
        harness
            .wait_for(job, |h| {
                h.last_value(&[("__name__", "up"), ("job", job)]) == Some(0.0)
            })
            .await;
        let error = harness.target_error(job).unwrap_or_default();
        assert!(
            error.contains(reason),
            "{job}: lastError {error:?} should name {reason}"
        );
        assert!(
            harness.select(&[("__name__", metric)]).is_empty(),
            "{job}: partial scrape stored"
        );
        assert_eq!(
            harness.last_value(&[
                ("__name__", "scrape_samples_post_metric_relabeling"),
                ("job", job)
            ]),
            Some(0.0)
        );
    }
    harness
        .wait_for("good", |h| {
            h.last_value(&[("__name__", "up"), ("job", "good")]) == Some(1.0)
        })
        .await;
    assert_eq!(
        harness
            .select(&[("__name__", "good_metric"), ("job", "good")])
            .len(),
        2
    );
    harness
        .wait_for("conflict", |h| {
            h.last_value(&[("__name__", "up"), ("job", "conflict")]) == Some(1.0)
                && h.last_value(&[("__name__", "up"), ("job", "honored")]) == Some(1.0)
        })
        .await;
    for (job, metric, value) in [
        ("openmetrics", "om_metric", 5.0),
        ("gzip", "zipped_metric", 7.0),
    ] {
        harness
            .wait_for(job, |h| {
                let up = h.last_value(&[("__name__", "up"), ("job", job)]) == Some(1.0);
                if !up && let Some(error) = h.target_error(job) {
                    panic!("{job}: {error}");
                }
                up
            })
            .await;
        assert_eq!(
            harness.last_value(&[("__name__", metric), ("job", job)]),
            Some(value)
        );
    }
    let conflict = harness.select(&[("__name__", "conflict_metric"), ("job", "conflict")]);
    assert_eq!(conflict.len(), 1);
    assert_eq!(conflict[0].labels.get("exported_job"), Some("inner"));
    assert_eq!(conflict[0].labels.get("exported_instance"), Some("x"));
    let honored = harness.select(&[("__name__", "conflict_metric"), ("job", "inner")]);
    assert_eq!(honored.len(), 1);
    assert_eq!(honored[0].labels.get("instance"), Some("x"));
    harness.manager.shutdown().await;
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_sd_adds_and_removes_targets_without_restart() {
    let (address_a, server_a) = serve(misbehaving_router()).await;
    let (address_b, server_b) = serve(misbehaving_router()).await;
    let harness = harness();
    let directory = tempfile::tempdir().unwrap();
    let targets_file = directory.path().join("targets.json");
    std::fs::write(
        &targets_file,
        format!(r#"[{{"targets": ["{address_a}"], "labels": {{"site": "a"}}}}]"#),
    )
    .unwrap();
    let yaml = format!(
        "scrape_configs:\n  - job_name: files\n    scrape_interval: 1s\n    metrics_path: /good\n    file_sd_configs:\n      - files: ['{}/*.json']\n        refresh_interval: 1s\n",
        directory.path().display()
    );
    harness
        .manager
        .apply_config(&parse_config(&yaml).unwrap())
        .unwrap();
    harness
        .wait_for("target a scraped", |h| {
            h.last_value(&[("__name__", "up"), ("site", "a")]) == Some(1.0)
        })
        .await;
    let active = harness.manager.active_targets();
    assert_eq!(active.len(), 1);
    assert!(active[0].discovered_labels.contains_key("__meta_filepath"));

    std::fs::write(
        &targets_file,
        format!(r#"[{{"targets": ["{address_b}"], "labels": {{"site": "b"}}}}]"#),
    )
    .unwrap();
    harness
        .wait_for("target b scraped", |h| {
            h.last_value(&[("__name__", "up"), ("site", "b")]) == Some(1.0)
        })
        .await;
    harness
        .wait_for("target a marked stale", |h| {
            h.select(&[("__name__", "good_metric"), ("site", "a")])
                .iter()
                .all(|series| series.samples.last().is_some_and(|s| is_stale_nan(s.v)))
        })
        .await;
    assert!(
        harness
            .last_value(&[("__name__", "up"), ("site", "a")])
            .is_some_and(is_stale_nan)
    );
    assert_eq!(harness.manager.active_targets().len(), 1);
    harness.manager.shutdown().await;
    server_a.abort();
    server_b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_keeps_unchanged_loops_and_rejects_bad_config() {
    let (address, server) = serve(misbehaving_router()).await;
    let harness = harness();
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("guardia.yml");
    let stay = job_yaml("stay", address, "/good", "");
    let leave = job_yaml("leave", address, "/good", "");
    std::fs::write(&config_path, format!("scrape_configs:\n{stay}{leave}")).unwrap();
    harness.manager.reload_from_file(&config_path).unwrap();
    assert!(harness.manager.last_reload_successful());
    let scrape_count = |h: &Harness, job: &str| {
        h.manager
            .active_targets()
            .into_iter()
            .find(|target| target.scrape_pool == job)
            .map(|target| target.status.scrape_count)
    };
    harness
        .wait_for("two scrapes of stay", |h| {
            scrape_count(h, "stay").unwrap_or(0) >= 2
        })
        .await;
    let before = scrape_count(&harness, "stay").unwrap();

    let added = job_yaml("added", address, "/good", "");
    std::fs::write(&config_path, format!("scrape_configs:\n{stay}{added}")).unwrap();
    harness.manager.reload_from_file(&config_path).unwrap();
    // The same loop goes on counting: it was not restarted.
    assert!(scrape_count(&harness, "stay").unwrap() >= before);
    assert!(scrape_count(&harness, "leave").is_none());
    harness
        .wait_for("added scraped", |h| {
            h.last_value(&[("__name__", "up"), ("job", "added")]) == Some(1.0)
        })
        .await;
    harness
        .wait_for("leave marked stale", |h| {
            h.last_value(&[("__name__", "up"), ("job", "leave")])
                .is_some_and(is_stale_nan)
        })
        .await;

    std::fs::write(
        &config_path,
        "scrape_configs:\n  - job_name: x\n    bogus_key: 1\n",
    )
    .unwrap();
    let error = harness.manager.reload_from_file(&config_path).unwrap_err();
    assert!(error.contains("bogus_key"), "{error}");
    assert!(!harness.manager.last_reload_successful());
    let jobs: Vec<String> = harness
        .manager
        .active_targets()
        .into_iter()
        .map(|target| target.scrape_pool)
        .collect();
    assert_eq!(jobs, vec!["added".to_string(), "stay".to_string()]);
    let mut exposition = guardia::telemetry::Exposition::new();
    harness.manager.render_metrics(&mut exposition);
    assert!(
        exposition
            .finish()
            .contains("guardia_config_last_reload_successful 0")
    );
    harness.manager.shutdown().await;
    server.abort();
}

/// The body a phase of `vanished_series_are_marked_stale_and_return_as_added` serves.
fn phase_body(phase: u64) -> &'static str {
    match phase {
        // `d{k=...}` lines become one series once `k` is dropped by relabeling.
        0 | 3 => "# TYPE a gauge\na 1\nb{x=\"1\"} 2\nc 3\nd{k=\"1\"} 4\nd{k=\"2\"} 5\n",
        1 => "# TYPE a gauge\na 1\nb{x=\"1\"} 2\nd{k=\"2\"} 5\n",
        _ => "a{ this is not an exposition\n",
    }
}

fn newest_is_stale(harness: &Harness, name: &str) -> Option<bool> {
    let series = harness.select(&[("__name__", name), ("job", "phases")]);
    let newest = series.first()?.samples.last()?;
    Some(is_stale_nan(newest.v))
}

/// Staleness through the scrape cache: lines that vanish from a body get a
/// marker (unless another line still writes their series), a failed scrape
/// ends every series, and after it every line counts as added again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_are_marked_stale_and_return_as_added() {
    let phase = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let served_phase = phase.clone();
    let router = Router::new().route(
        "/phases",
        get(move || {
            let phase = served_phase.load(std::sync::atomic::Ordering::SeqCst);
            async move { phase_body(phase) }
        }),
    );
    let (address, server) = serve(router).await;
    let harness = harness();
    let yaml = format!(
        "scrape_configs:\n{}",
        job_yaml(
            "phases",
            address,
            "/phases",
            "    metric_relabel_configs:\n      - {regex: k, action: labeldrop}\n",
        )
    );
    harness
        .manager
        .apply_config(&parse_config(&yaml).unwrap())
        .unwrap();
    let sample_count = |h: &Harness, name: &str| {
        h.select(&[("__name__", name), ("job", "phases")])
            .first()
            .map_or(0, |series| series.samples.len())
    };
    // Several scrapes, so later ones go through the cache by ref.
    harness
        .wait_for("three scrapes of phase 0", |h| sample_count(h, "c") >= 3)
        .await;
    assert_eq!(newest_is_stale(&harness, "c"), Some(false));
    assert_eq!(
        harness
            .select(&[("__name__", "d"), ("job", "phases")])
            .len(),
        1,
        "both d lines write one series"
    );

    phase.store(1, std::sync::atomic::Ordering::SeqCst);
    harness
        .wait_for("c marked stale", |h| newest_is_stale(h, "c") == Some(true))
        .await;
    let a_samples = sample_count(&harness, "a");
    harness
        .wait_for("two more scrapes of phase 1", |h| {
            sample_count(h, "a") >= a_samples + 2
        })
        .await;
    assert_eq!(newest_is_stale(&harness, "c"), Some(true));
    for still_written in ["a", "b", "d"] {
        assert_eq!(
            newest_is_stale(&harness, still_written),
            Some(false),
            "{still_written} is still in the body"
        );
    }
    assert_eq!(
        harness.last_value(&[("__name__", "scrape_series_added"), ("job", "phases")]),
        Some(0.0)
    );

    phase.store(2, std::sync::atomic::Ordering::SeqCst);
    harness
        .wait_for("up 0", |h| {
            h.last_value(&[("__name__", "up"), ("job", "phases")]) == Some(0.0)
        })
        .await;
    for ended in ["a", "b", "d"] {
        assert_eq!(newest_is_stale(&harness, ended), Some(true), "{ended}");
    }
    let failed_at = harness
        .select(&[("__name__", "up"), ("job", "phases")])
        .first()
        .and_then(|series| series.samples.last())
        .map(|sample| sample.t)
        .unwrap();

    phase.store(3, std::sync::atomic::Ordering::SeqCst);
    harness
        .wait_for("up 1 again", |h| {
            h.last_value(&[("__name__", "up"), ("job", "phases")]) == Some(1.0)
        })
        .await;
    for back in ["a", "b", "c", "d"] {
        assert_eq!(newest_is_stale(&harness, back), Some(false), "{back}");
    }
    let added_after_failure: Vec<f64> = harness
        .select(&[("__name__", "scrape_series_added"), ("job", "phases")])
        .first()
        .unwrap()
        .samples
        .iter()
        .filter(|sample| sample.t > failed_at)
        .map(|sample| sample.v)
        .collect();
    // Counted per exposition line, as Prometheus's cache does: the two d lines count twice.
    assert_eq!(added_after_failure.first(), Some(&5.0));
    harness.manager.shutdown().await;
    server.abort();
}
