//! Shared parts of the notification tests: a real `guardia serve` process
//! on a free port with a configuration and a rule file written to a temp
//! dir, a webhook receiver (a small axum server recording every body it
//! gets, answering 500 to the first N requests when told to), pushes over
//! the import API, and polling with a deadline (the deadline only guards
//! against a hung test; nothing asserts on timing).

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::Value;

#[path = "process.rs"]
mod process;
#[allow(unused_imports)] // each test binary uses a different subset
pub use process::{BINARY, DEADLINE, Guardia, KillOnDrop, free_port, now_ms};

/// A rule that fires at once when `temperature_celsius` is above 50.
pub const TEMPERATURE_RULES: &str = r#"groups:
  - name: temperature
    interval: 1s
    rules:
      - alert: TemperatureHigh
        expr: temperature_celsius > 50
        labels:
          severity: critical
        annotations:
          summary: "temperature {{ $value }} at {{ $labels.site }}"
"#;

impl Guardia {
    /// Starts guardia on `directory/guardia.yml` with its data under `directory/data`.
    pub fn start(directory: &Path, port: u16) -> Guardia {
        Guardia::serve(
            port,
            [
                format!("--storage.path={}", directory.join("data").display()),
                format!("--web.external-url=http://guardia.test:{port}"),
                format!("--config.file={}", directory.join("guardia.yml").display()),
            ],
        )
    }

    pub async fn push(&self, client: &reqwest::Client, body: String) {
        let response = client
            .post(format!("{}/api/v1/import/prometheus", self.base()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 204);
    }

    /// The value of one sample of `/metrics` (name with labels, exactly as exposed).
    pub async fn metric(&self, client: &reqwest::Client, series: &str) -> Option<f64> {
        let text = client
            .get(format!("{}/metrics", self.base()))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// What the webhook receiver got.
#[derive(Default)]
pub struct Received {
    /// Bodies of the requests answered 200, in arrival order.
    pub delivered: Mutex<Vec<Value>>,
    /// Every request, failed ones included.
    pub requests: AtomicUsize,
    /// The first this-many requests are answered 500.
    pub fail_first: AtomicUsize,
}

/// A webhook receiver on a free loopback port; stops with the test's runtime.
pub struct WebhookReceiver {
    pub port: u16,
    pub received: Arc<Received>,
}

impl WebhookReceiver {
    pub async fn start(fail_first: usize) -> WebhookReceiver {
        let received = Arc::new(Received::default());
        received.fail_first.store(fail_first, Ordering::SeqCst);
        let state = received.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let state = state.clone();
                async move {
                    let index = state.requests.fetch_add(1, Ordering::SeqCst);
                    if index < state.fail_first.load(Ordering::SeqCst) {
                        return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    state.delivered.lock().push(value);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        WebhookReceiver { port, received }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn delivered(&self) -> Vec<Value> {
        self.received.delivered.lock().clone()
    }

    /// Waits until at least `count` bodies were delivered.
    pub async fn wait_for_deliveries(&self, guardia: &mut Guardia, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            guardia.assert_running();
            let delivered = self.delivered();
            if delivered.len() >= count {
                return delivered;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} notifications arrived",
                delivered.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Writes `guardia.yml` (rules every second, the given notifications
/// section) and `rules.yml` into `directory`.
pub fn write_config(directory: &Path, notifications_yaml: &str) {
    std::fs::write(
        directory.join("guardia.yml"),
        format!(
            "global:\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\n{notifications_yaml}"
        ),
    )
    .unwrap();
    std::fs::write(directory.join("rules.yml"), TEMPERATURE_RULES).unwrap();
}
