//! `/api/v1/targets`, `/api/v1/targets/metadata` and `/-/reload` through the
//! real router, with a real store and a real scraped HTTP server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::routing::get;
use guardia::api::targets::ScrapeHooks;
use guardia::api::{ApiState, Store, router};
use guardia::clock::SystemClock;
use guardia::config::IngestLimits;
use guardia::scrape::ScrapeManager;
use guardia::storage::Appendable;
use guardia::tsdb::{Options, Tsdb};
use serde_json::Value;
use tower::ServiceExt;

async fn call(app: &Router, method: Method, uri: &str) -> (StatusCode, String) {
    let response = app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_metadata_and_reload() {
    let exporter = Router::new().route(
        "/metrics",
        get(|| async {
            "# HELP demo_total Demo things.\n# TYPE demo_total counter\ndemo_total 3\n"
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, exporter).await;
    });

    let directory = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(&directory.path().join("data"), Options::default()).unwrap();
    let appendable: Arc<dyn Appendable> = tsdb.clone();
    let manager = ScrapeManager::new(appendable, Arc::new(SystemClock));
    let config_path = directory.path().join("guardia.yml");
    std::fs::write(
        &config_path,
        format!(
            "scrape_configs:\n  - job_name: demo\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{address}']\n    relabel_configs:\n      - source_labels: [__address__]\n        regex: nomatch\n        action: keep\n  - job_name: kept\n    scrape_interval: 1s\n    static_configs:\n      - targets: ['{address}']\n"
        ),
    )
    .unwrap();
    manager.reload_from_file(&config_path).unwrap();
    let store: Arc<dyn Store> = tsdb.clone();
    let state = ApiState::new(store, Arc::new(SystemClock), IngestLimits::default());
    state.set_scrape_hooks(ScrapeHooks {
        manager: manager.clone(),
        config_file: Some(config_path.clone()),
        enable_lifecycle: false,
        reload: scrape_only_reloader(manager.clone()),
    });
    let app = router(state);

    let started = Instant::now();
    let body = loop {
        let (status, body) = call(&app, Method::GET, "/api/v1/targets").await;
        assert_eq!(status, StatusCode::OK);
        let json: Value = serde_json::from_str(&body).unwrap();
        if json["data"]["activeTargets"][0]["health"] == "up" {
            break json;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never up: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let active = &body["data"]["activeTargets"][0];
    assert_eq!(active["scrapePool"], "kept");
    assert_eq!(active["labels"]["job"], "kept");
    assert_eq!(active["labels"]["instance"], address.to_string());
    assert_eq!(
        active["discoveredLabels"]["__address__"],
        address.to_string()
    );
    assert_eq!(active["scrapeUrl"], format!("http://{address}/metrics"));
    assert_eq!(active["scrapeInterval"], "1s");
    assert_eq!(active["scrapeTimeout"], "1s");
    assert_eq!(active["lastError"], "");
    assert!(active["lastScrape"].as_str().unwrap().ends_with('Z'));
    let dropped = &body["data"]["droppedTargets"];
    assert_eq!(dropped.as_array().unwrap().len(), 1);
    assert_eq!(dropped[0]["scrapePool"], "demo");
    assert_eq!(body["data"]["droppedTargetCounts"]["demo"], 1);

    let (_, only_dropped) = call(&app, Method::GET, "/api/v1/targets?state=dropped").await;
    let only_dropped: Value = serde_json::from_str(&only_dropped).unwrap();
    assert!(
        only_dropped["data"]["activeTargets"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    let (status, metadata) = call(
        &app,
        Method::GET,
        "/api/v1/targets/metadata?match_target=%7Bjob%3D%22kept%22%7D&metric=demo_total",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{metadata}");
    let metadata: Value = serde_json::from_str(&metadata).unwrap();
    assert_eq!(metadata["data"][0]["type"], "counter");
    assert_eq!(metadata["data"][0]["help"], "Demo things.");
    assert_eq!(metadata["data"][0]["target"]["job"], "kept");

    // Without --web.enable-lifecycle, reload is forbidden like in Prometheus.
    let (status, _) = call(&app, Method::POST, "/-/reload").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let state = ApiState::new(tsdb.clone(), Arc::new(SystemClock), IngestLimits::default());
    state.set_scrape_hooks(ScrapeHooks {
        manager: manager.clone(),
        config_file: Some(config_path.clone()),
        enable_lifecycle: true,
        reload: scrape_only_reloader(manager.clone()),
    });
    let app = router(state);
    let (status, body) = call(&app, Method::POST, "/-/reload").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    std::fs::write(&config_path, "scrape_configs: [[[\n").unwrap();
    let (status, body) = call(&app, Method::POST, "/-/reload").await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("failed to reload config"), "{body}");
    let (_, metrics) = call(&app, Method::GET, "/metrics").await;
    assert!(
        metrics.contains("guardia_config_last_reload_successful 0"),
        "{metrics}"
    );
    assert_eq!(manager.active_targets().len(), 1);
    manager.shutdown().await;
    server.abort();
}

/// The server's reload without rules: the scrape configuration only.
fn scrape_only_reloader(manager: Arc<ScrapeManager>) -> guardia::api::targets::ConfigReloader {
    Arc::new(move |path: &std::path::Path| {
        manager
            .reload_from_file(path)
            .map(|_| ())
            .map_err(|error| format!("failed to reload config: {error}"))
    })
}
