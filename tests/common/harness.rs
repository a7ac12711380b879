//! Shared helpers of the API tests: a router over a real `Tsdb` in a temp
//! dir (with a fault-injection handle, to poison it), and one-shot requests
//! through `tower::ServiceExt::oneshot`.

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use guardia::api::{ApiState, Store, router};
use guardia::clock::ManualClock;
use guardia::config::IngestLimits;
use tower::ServiceExt;

use guardia::tsdb::{FaultInjection, Options, Tsdb};

/// Receive time the manual clock starts at: 2023-11-14T22:13:20Z.
pub const NOW_MS: i64 = 1_700_000_000_000;

pub struct TestApi {
    pub router: Router,
    pub store: Arc<Tsdb>,
    pub fault: Arc<FaultInjection>,
    pub clock: ManualClock,
    pub directory: tempfile::TempDir,
}

impl TestApi {
    pub fn new() -> TestApi {
        TestApi::with_limits(IngestLimits::default())
    }

    pub fn with_limits(limits: IngestLimits) -> TestApi {
        let directory = tempfile::tempdir().unwrap();
        let fault = Arc::new(FaultInjection::new());
        let store = Tsdb::open(
            directory.path(),
            Options {
                fault_injection: Some(fault.clone()),
                ..Options::default()
            },
        )
        .unwrap();
        let clock = ManualClock::new(NOW_MS);
        let api_store: Arc<dyn Store> = store.clone();
        let state = ApiState::new(api_store, Arc::new(clock.clone()), limits);
        TestApi {
            router: router(state),
            store,
            fault,
            clock,
            directory,
        }
    }

    /// Makes every later redb write fail, so the next commit poisons the store.
    pub fn poison_on_next_commit(&self) {
        self.fault.fail_writes(true);
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, headers, body)
    }

    pub async fn post(&self, uri: &str, body: impl Into<Body>) -> (StatusCode, Bytes) {
        let request = Request::post(uri).body(body.into()).unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub async fn get(&self, uri: &str) -> (StatusCode, Bytes) {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let (status, _, body) = self.send(request).await;
        (status, body)
    }

    pub async fn get_json(&self, uri: &str) -> (StatusCode, serde_json::Value) {
        let (status, body) = self.get(uri).await;
        let json = serde_json::from_slice(&body)
            .unwrap_or_else(|error| panic!("{uri}: {error}: {}", String::from_utf8_lossy(&body)));
        (status, json)
    }

    /// `/api/v1/series` data for one selector, as `name=value,...` strings.
    pub async fn series_of(&self, selector: &str) -> Vec<String> {
        let uri = format!("/api/v1/series?match[]={}", encode(selector));
        let (status, json) = self.get_json(&uri).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        json["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|object| {
                object
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(name, value)| format!("{name}={}", value.as_str().unwrap()))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect()
    }
}

impl Drop for TestApi {
    fn drop(&mut self) {
        let _ = self.store.close();
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

pub fn error_message(body: &[u8]) -> String {
    let json: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(body)));
    assert_eq!(json["status"], "error", "{json}");
    json["error"].as_str().unwrap().to_string()
}
