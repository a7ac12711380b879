//! The incident API over a real HTTP server (axum on a socket, a real redb
//! file, a manual clock): list and filters, timeline and clocks, ack,
//! unack, resolve, notes with their 400/404/409 answers, the signed ack
//! link (valid, expired, tampered; GET never acknowledges), and the report.

use std::sync::Arc;

use guardia::api::{ApiState, router};
use guardia::clock::ManualClock;
use guardia::config::IngestLimits;
use guardia::model::{Labels, Timestamp};
use guardia::rules::{AlertSink, OutgoingAlert};
use guardia::sla::manager::{SlaManager, SlaSettings};
use guardia::storage::StateStore;
use guardia::tsdb::{Options, Tsdb};
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;
const START: Timestamp = 1_800_000_000_000;

const CONFIG: &str = r#"
notifications:
  route: {receiver: primary}
  receivers:
    - name: primary
      webhook_configs: [{url: 'http://127.0.0.1:9/primary'}]
    - name: secondary
      webhook_configs: [{url: 'http://127.0.0.1:9/secondary'}]
sla:
  policies:
    - name: database
      matchers: ['layer="database"']
      calendar: 24x7
      acknowledge_within: 15m
      resolve_within: 4h
      outside_hours: page
      escalation:
        - {after: 0s, receiver: primary}
        - {after: 10m, receiver: secondary}
"#;

fn firing(instance: &str) -> OutgoingAlert {
    OutgoingAlert {
        labels: Labels::from_pairs([
            ("alertname", "PostgresDown"),
            ("layer", "database"),
            ("instance", instance),
        ]),
        annotations: Labels::empty(),
        starts_at: START,
        fired_at: Some(START),
        ends_at: START + 4 * MINUTE,
        resolved: false,
        generator_url: String::new(),
    }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incident_actions_signed_link_and_report() {
    let directory = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
    let clock = ManualClock::new(START);
    let config = guardia::config::file::parse_config(CONFIG).unwrap();
    let settings = SlaSettings::from_config(config.sla.as_ref(), "http://127.0.0.1").unwrap();
    let state_store: Arc<dyn StateStore> = tsdb.clone();
    let manager = SlaManager::open(state_store, None, None, settings).unwrap();
    let state = ApiState::new(
        tsdb.clone(),
        Arc::new(clock.clone()),
        IngestLimits::default(),
    );
    state.set_sla_manager(manager.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, router(state)).await.unwrap();
    });
    let client = reqwest::Client::new();
    use reqwest::Method;

    manager.receive_alerts("f", "g", START, &[firing("db1"), firing("db2")]);
    manager.tick(START);
    let (status, body) = call(
        &client,
        Method::GET,
        &format!("{base}/api/v1/incidents"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "success");
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = call(
        &client,
        Method::GET,
        &format!("{base}/api/v1/incidents?state=open&policy=database&layer=database"),
        None,
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (_, body) = call(
        &client,
        Method::GET,
        &format!("{base}/api/v1/incidents?layer=web"),
        None,
    )
    .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 0);
    let (status, body) = call(
        &client,
        Method::GET,
        &format!("{base}/api/v1/incidents?state=bogus"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["errorType"], "bad_data");

    // Acknowledge incident 1 after 5 minutes.
    clock.set(START + 5 * MINUTE);
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/1/ack"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].as_str().unwrap().contains("\"by\""));
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/1/ack"),
        Some(json!({"by": "ana", "comment": "on it"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["state"], "acknowledged");
    assert_eq!(
        body["data"]["clocks"]["acknowledge"]["elapsedSeconds"],
        300.0
    );
    assert_eq!(body["data"]["clocks"]["acknowledge"]["breached"], false);
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/1/ack"),
        Some(json!({"by": "bob"})),
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(body["errorType"], "conflict");
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/99/ack"),
        Some(json!({"by": "x"})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/1/unack"),
        Some(json!({"by": "ana"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["state"], "open");
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/1/unack"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/1/notes"),
        Some(json!({"by": "ana", "text": "restarting the primary"})),
    )
    .await;
    assert_eq!(status, 200);
    let timeline = body["data"]["timeline"].as_array().unwrap();
    assert_eq!(timeline.last().unwrap()["type"], "note");
    assert_eq!(timeline.last().unwrap()["text"], "restarting the primary");
    let (status, body) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/1/resolve"),
        Some(json!({"by": "ana", "comment": "done"})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["state"], "resolved");
    assert_eq!(body["data"]["clocks"]["resolve"]["elapsedSeconds"], 300.0);
    let (status, _) = call(
        &client,
        Method::POST,
        &format!("{base}/api/v1/incidents/1/resolve"),
        None,
    )
    .await;
    assert_eq!(status, 409);

    // Signed link for incident 2, as a page carries it.
    let expires = START + 60 * MINUTE;
    let link = manager.signer().link(&base, 2, "oncall secondary", expires);
    let response = client.get(&link).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("<form method=\"post\""), "{page}");
    // The GET (a link preview) acknowledged nothing.
    let (_, body) = call(
        &client,
        Method::GET,
        &format!("{base}/api/v1/incidents/2"),
        None,
    )
    .await;
    assert_eq!(body["data"]["state"], "open");
    let tampered = link.replace("oncall%20secondary", "mallory");
    let response = client.post(&tampered).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(response.text().await.unwrap().contains("signature"));
    let forged_expiry = link.replace(
        &format!("expires={expires}"),
        &format!("expires={}", expires + 1),
    );
    assert_eq!(
        client
            .post(&forged_expiry)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    clock.set(expires + 1);
    let response = client.post(&link).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(response.text().await.unwrap().contains("expired"));
    clock.set(START + 8 * MINUTE);
    let response = client.post(&link).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (_, body) = call(
        &client,
        Method::GET,
        &format!("{base}/api/v1/incidents/2"),
        None,
    )
    .await;
    assert_eq!(body["data"]["state"], "acknowledged");
    let timeline = body["data"]["timeline"].as_array().unwrap();
    assert!(
        timeline
            .iter()
            .any(|event| event["type"] == "acknowledged" && event["by"] == "oncall secondary")
    );
    assert_eq!(
        body["data"]["clocks"]["acknowledge"]["elapsedSeconds"],
        480.0
    );

    // Report: two incidents, both acknowledged within 15 minutes (5 and 8),
    // one resolved (5 minutes), one escalation each to tier 0.
    clock.set(START + 30 * MINUTE);
    let (status, body) = call(
        &client,
        Method::GET,
        &format!(
            "{base}/api/v1/sla/report?from={}&to={}&policy=database",
            (START - MINUTE) / 1000,
            (START + 60 * MINUTE) / 1000
        ),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let report = &body["data"]["policies"][0];
    assert_eq!(report["policy"], "database");
    assert_eq!(report["incidents"], 2);
    assert_eq!(report["acknowledged_within_target_percent"], 100.0);
    assert_eq!(report["mean_time_to_acknowledge_seconds"], 390.0);
    assert_eq!(report["p90_time_to_acknowledge_seconds"], 480.0);
    assert_eq!(report["mean_time_to_resolve_seconds"], 300.0);
    assert_eq!(report["escalations"], 2);
    assert_eq!(report["coverage_hours"], 61.0 / 60.0);
    let (status, _) = call(
        &client,
        Method::GET,
        &format!("{base}/api/v1/sla/report?policy=nope"),
        None,
    )
    .await;
    assert_eq!(status, 400);
    server.abort();
}
