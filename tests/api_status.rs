//! `/-/healthy`, `/-/ready` and `/metrics`: the self-metrics parse with
//! guardia's own text parser and count what was pushed and refused.

#[path = "common/harness.rs"]
mod harness;

use axum::http::StatusCode;
use guardia::ingest::text::{Entry, Format, SampleBuf, TextParser};
use harness::TestApi;

/// Every sample of an exposition as (`name{labels}` canonical text, value).
fn parse_exposition(text: &str) -> Vec<(String, f64)> {
    let mut parser = TextParser::new(text, Format::Prometheus);
    let mut sample = SampleBuf::new();
    let mut samples = Vec::new();
    while let Some(entry) = parser.next_entry(&mut sample).unwrap() {
        if entry == Entry::Sample {
            samples.push((sample.to_labels().to_string(), sample.value()));
        }
    }
    samples
}

fn value_of(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples
        .iter()
        .find(|(name, _)| name == series)
        .map(|(_, value)| *value)
}

#[tokio::test]
async fn healthy_and_ready() {
    let api = TestApi::new();
    let (status, body) = api.get("/-/healthy").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "guardia is Healthy.\n");
    let (status, body) = api.get("/-/ready").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "guardia is Ready.\n");
}

#[tokio::test]
async fn poisoned_store_is_not_ready_and_refuses_writes_with_503() {
    let api = TestApi::new();
    let (status, _) = api.post("/api/v1/import/prometheus", "m 1 1000\n").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    api.poison_on_next_commit();
    let (status, body) = api.post("/api/v1/import/prometheus", "m 2 2000\n").await;
    assert!(status.is_server_error(), "{status} {body:?}");
    let (status, _) = api.get("/-/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, body) = api.post("/api/v1/import/prometheus", "m 3 3000\n").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["errorType"], "unavailable");
    // Reads still work and show only what was acknowledged.
    let (status, export) = api.get("/api/v1/export?match[]=m").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        std::str::from_utf8(&export)
            .unwrap()
            .contains("\"values\":[1],")
    );
}

#[tokio::test]
async fn metrics_parse_and_count_ingest() {
    let api = TestApi::new();
    let (status, _) = api
        .post(
            "/api/v1/import/prometheus",
            "a 1 1000\nb 2 1000\nc 3 1000\n",
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.post("/api/v1/import/prometheus", "a 0 500\n").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api.post("/api/v1/import/prometheus", "broken{\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, body) = api.get("/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = std::str::from_utf8(&body).unwrap();
    let samples = parse_exposition(text);
    let value = |series: &str| {
        value_of(&samples, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"))
    };
    assert_eq!(
        value("guardia_push_samples_total{outcome=\"appended\", protocol=\"prometheus_text\"}"),
        3.0
    );
    assert_eq!(
        value("guardia_push_samples_total{outcome=\"out_of_order\", protocol=\"prometheus_text\"}"),
        1.0
    );
    assert_eq!(
        value(
            "guardia_push_requests_rejected_total{protocol=\"prometheus_text\", reason=\"bad_data\"}"
        ),
        1.0
    );
    // The store's own counters agree.
    assert_eq!(value("guardia_ingest_samples_total"), 3.0);
    assert_eq!(
        value("guardia_ingest_rejected_samples_total{reason=\"out_of_order\"}"),
        1.0
    );
    assert_eq!(value("guardia_tsdb_head_series"), 3.0);
    assert_eq!(
        value("guardia_http_requests_total{code=\"204\", handler=\"/api/v1/import/prometheus\"}"),
        1.0
    );
    assert_eq!(
        value("guardia_http_requests_total{code=\"400\", handler=\"/api/v1/import/prometheus\"}"),
        1.0
    );
    assert_eq!(
        value("guardia_http_request_duration_seconds_count{handler=\"/api/v1/import/prometheus\"}"),
        3.0
    );
    assert!(value("process_resident_memory_bytes") > 0.0);
    assert!(value("process_cpu_seconds_total") >= 0.0);
}
