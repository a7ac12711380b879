//! `guardia sla report` on the data directory a real server run left: the
//! server opens an incident from pushed data and pages tier 1, the test
//! acknowledges it over the API and stops the server with SIGTERM, then
//! runs the command in table and CSV formats and checks the row, the
//! header and the errors for a bad policy and a held lock.

#[path = "common/notify_support.rs"]
mod notify_support;

use std::process::{Command, Output};

use notify_support::{BINARY, Guardia, WebhookReceiver, free_port, now_ms, write_config};
use serde_json::json;

const HOUR_SECONDS: u128 = 3600;

fn configuration(tier_one_url: &str) -> String {
    format!(
        r#"notifications:
  route:
    receiver: tier1
    group_wait: 1h
  receivers:
    - name: tier1
      webhook_configs:
        - url: {tier_one_url}
sla:
  policies:
    - name: temperature
      matchers: ['alertname="TemperatureHigh"']
      calendar: 24x7
      acknowledge_within: 1h
      resolve_within: 4h
      outside_hours: page
      escalation:
        - {{after: 0s, receiver: tier1}}
        - {{after: 1h, receiver: tier1}}
    - name: unused
      matchers: ['alertname="Never"']
      calendar: 24x7
      acknowledge_within: 15m
      resolve_within: 1h
      escalation:
        - {{after: 0s, receiver: tier1}}
"#
    )
}

fn run(arguments: &[String]) -> Output {
    Command::new(BINARY).args(arguments).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sla_report_reads_the_incidents_a_server_left() {
    let receiver = WebhookReceiver::start(0).await;
    let directory = tempfile::tempdir().unwrap();
    write_config(directory.path(), &configuration(&receiver.url()));
    let port = free_port();
    let client = reqwest::Client::new();
    let mut guardia = Guardia::start(directory.path(), port);
    guardia.wait_ready(&client).await;
    // A whole-hour period around the run, so covered hours are exact.
    let from_seconds = now_ms() / 1000 / HOUR_SECONDS * HOUR_SECONDS - HOUR_SECONDS;
    let to_seconds = from_seconds + 3 * HOUR_SECONDS;
    guardia
        .push(
            &client,
            format!("temperature_celsius{{site=\"north\"}} 72 {}\n", now_ms()),
        )
        .await;
    guardia
        .wait_json(&client, "/api/v1/incidents", |body| {
            body["data"].as_array().is_some_and(|list| list.len() == 1)
        })
        .await;
    receiver.wait_for_deliveries(&mut guardia, 1).await;
    let response = client
        .post(format!("{}/api/v1/incidents/1/ack", guardia.base()))
        .header("content-type", "application/json")
        .body(json!({"by": "ana"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let storage = format!("--storage.path={}", directory.path().join("data").display());
    let config = format!(
        "--config.file={}",
        directory.path().join("guardia.yml").display()
    );
    let period = [
        format!("--from={from_seconds}"),
        format!("--to={to_seconds}"),
    ];
    let arguments = |extra: &[&str]| -> Vec<String> {
        let mut all = vec!["sla".to_string(), "report".to_string()];
        all.extend(period.iter().cloned());
        all.push(storage.clone());
        all.push(config.clone());
        all.extend(extra.iter().map(|argument| argument.to_string()));
        all
    };

    // While the server holds the store, the command says so.
    let output = run(&arguments(&[]));
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("in use"),
        "{}",
        text(&output.stderr)
    );

    // A clean stop (SIGTERM), as an operator would before reading the store.
    let exit = guardia.terminate();
    assert!(exit.success(), "{exit}");

    let output = run(&arguments(&["--format=csv"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let csv = text(&output.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "policy,incidents,acknowledged_within_target_percent,resolved_within_target_percent,\
mean_time_to_acknowledge_seconds,p90_time_to_acknowledge_seconds,mean_time_to_resolve_seconds,\
p90_time_to_resolve_seconds,acknowledge_breaches,resolve_breaches,escalations,coverage_hours"
    );
    assert_eq!(lines.len(), 3, "{csv}");
    let row: Vec<&str> = lines[1].split(',').collect();
    assert_eq!(row[0], "temperature");
    assert_eq!(row[1], "1", "one incident");
    assert_eq!(row[2], "100.0", "acknowledged within target");
    assert_eq!(row[3], "", "not resolved: no figure");
    let mean_acknowledge: f64 = row[4].parse().unwrap();
    assert!((0.0..3600.0).contains(&mean_acknowledge));
    assert_eq!(row[4], row[5], "one incident: the mean is the p90");
    assert_eq!(row[6], "");
    assert_eq!(&row[8..], ["0", "0", "1", "3.0"], "{csv}");
    assert_eq!(lines[2], "unused,0,,,,,,,0,0,0,3.0");

    let output = run(&arguments(&["--policy=temperature"]));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table = text(&output.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("policy"));
    let cells: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(cells[0], "temperature");
    assert_eq!(cells[1], "1");
    assert_eq!(cells[2], "100.0");
    assert_eq!(cells[3], "-");
    assert_eq!(&cells[cells.len() - 4..], ["0", "0", "1", "3.0"], "{table}");

    let output = run(&arguments(&["--policy=nope"]));
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("no SLA policy named \"nope\""));
}
