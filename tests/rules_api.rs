//! The real binary with a configuration that loads rule files (a glob,
//! relative to the configuration's directory): push a sample over the
//! threshold, wait for the alert on `/api/v1/alerts`, then check the shapes
//! and filters of `/api/v1/rules` and the rule metrics on `/metrics`.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

#[path = "common/process.rs"]
mod process;
use process::{Guardia, free_port};

fn start(directory: &Path, port: u16) -> Guardia {
    Guardia::serve(
        port,
        [
            format!("--storage.path={}", directory.join("data").display()),
            "--web.enable-lifecycle".to_string(),
            format!("--config.file={}", directory.join("guardia.yml").display()),
        ],
    )
}

async fn get_json(client: &reqwest::Client, url: &str) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        serde_json::from_str(&response.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn alert_fires_and_rules_api_answers_in_prometheus_shape() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::create_dir(directory.path().join("rules")).unwrap();
    std::fs::write(
        directory.path().join("guardia.yml"),
        "global:\n  evaluation_interval: 1s\n  external_labels:\n    site: north\nrule_files:\n  - rules/*.yml\n",
    )
    .unwrap();
    std::fs::write(
        directory.path().join("rules/probe.yml"),
        r#"groups:
  - name: probe
    rules:
      - record: site:probe_value:max
        expr: max(probe_value)
      - alert: ProbeHigh
        expr: probe_value > 5
        labels:
          severity: critical
        annotations:
          summary: "{{ $labels.instance }} at {{ $value }} on {{ $externalLabels.site }}"
  - name: other
    interval: 2s
    rules:
      - record: probe:count
        expr: count(probe_value)
"#,
    )
    .unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = start(directory.path(), port);
    // Ready means the rule files loaded; `/api/v1/status/buildinfo` answers JSON once it is.
    server
        .wait_json(&client, "/api/v1/status/buildinfo", |_| true)
        .await;

    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let response = client
        .post(format!("{base}/api/v1/import/prometheus"))
        .body(format!("probe_value{{instance=\"x\"}} 9 {now_ms}\n"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    let alerts = server
        .wait_json(&client, "/api/v1/alerts", |body| {
            body["data"]["alerts"]
                .as_array()
                .is_some_and(|alerts| !alerts.is_empty())
        })
        .await;
    let alert = &alerts["data"]["alerts"][0];
    assert_eq!(alerts["status"], "success");
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["labels"]["alertname"], "ProbeHigh");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["labels"]["instance"], "x");
    assert_eq!(alert["annotations"]["summary"], "x at 9 on north");
    assert_eq!(alert["value"], "9e+00");
    assert!(alert["activeAt"].as_str().unwrap().ends_with('Z'));

    let (status, rules) = get_json(&client, &format!("{base}/api/v1/rules")).await;
    assert_eq!(status, 200);
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["name"], "probe");
    assert!(
        groups[0]["file"]
            .as_str()
            .unwrap()
            .ends_with("rules/probe.yml")
    );
    assert_eq!(groups[0]["interval"], 1.0);
    assert_eq!(groups[1]["interval"], 2.0);
    let recording = &groups[0]["rules"][0];
    assert_eq!(recording["type"], "recording");
    assert_eq!(recording["name"], "site:probe_value:max");
    assert_eq!(recording["health"], "ok");
    let alerting = &groups[0]["rules"][1];
    assert_eq!(alerting["type"], "alerting");
    assert_eq!(alerting["state"], "firing");
    assert_eq!(alerting["duration"], 0.0);
    assert_eq!(alerting["labels"]["severity"], "critical");
    assert_eq!(alerting["alerts"].as_array().unwrap().len(), 1);

    let (_, only_records) = get_json(&client, &format!("{base}/api/v1/rules?type=record")).await;
    let names: Vec<&str> = only_records["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_array().unwrap())
        .map(|rule| rule["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["site:probe_value:max", "probe:count"]);

    let (_, by_name) = get_json(
        &client,
        &format!("{base}/api/v1/rules?rule_name[]=ProbeHigh&exclude_alerts=true"),
    )
    .await;
    let groups = by_name["data"]["groups"].as_array().unwrap();
    assert_eq!(
        groups.len(),
        1,
        "groups without a matching rule are left out"
    );
    assert_eq!(groups[0]["rules"].as_array().unwrap().len(), 1);
    assert!(groups[0]["rules"][0].get("alerts").is_none());

    let (_, by_group) = get_json(&client, &format!("{base}/api/v1/rules?rule_group[]=other")).await;
    assert_eq!(by_group["data"]["groups"][0]["name"], "other");
    assert_eq!(by_group["data"]["groups"].as_array().unwrap().len(), 1);

    let (_, by_file) = get_json(&client, &format!("{base}/api/v1/rules?file[]=nope.yml")).await;
    assert!(by_file["data"]["groups"].as_array().unwrap().is_empty());

    let (status, bad) = get_json(&client, &format!("{base}/api/v1/rules?type=bogus")).await;
    assert_eq!(status, 400);
    assert_eq!(bad["errorType"], "bad_data");

    // The recorded series is queryable like any other.
    let (_, recorded) = get_json(
        &client,
        &format!("{base}/api/v1/query?query=site:probe_value:max"),
    )
    .await;
    assert_eq!(recorded["data"]["result"][0]["value"][1], "9");

    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "guardia_rule_evaluation_duration_seconds_count",
        "guardia_rule_evaluation_failures_total",
        "guardia_rule_group_iterations_missed_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }

    // SIGHUP reloads the rule files: a new group appears, the old ones stay.
    std::fs::write(
        directory.path().join("rules/extra.yml"),
        "groups:\n  - name: extra\n    rules:\n      - record: extra:probe:sum\n        expr: sum(probe_value)\n",
    )
    .unwrap();
    server.signal("HUP");
    let reloaded = server
        .wait_json(&client, "/api/v1/rules", |body| {
            body["data"]["groups"]
                .as_array()
                .is_some_and(|groups| groups.len() == 3)
        })
        .await;
    let names: Vec<&str> = reloaded["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["extra", "probe", "other"]);
    // The firing alert survived the reload (its state comes back from redb).
    let (_, alerts) = get_json(&client, &format!("{base}/api/v1/alerts")).await;
    assert_eq!(alerts["data"]["alerts"][0]["state"], "firing");

    // `POST /-/reload` reloads rule files as SIGHUP does: the extra group goes
    // away with its file; a broken rule file is a 500 naming it, and the
    // running rules stay.
    std::fs::remove_file(directory.path().join("rules/extra.yml")).unwrap();
    let reload = client
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(reload.status().as_u16(), 200);
    let (_, after_http_reload) = get_json(&client, &format!("{base}/api/v1/rules")).await;
    let names: Vec<&str> = after_http_reload["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|group| group["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["probe", "other"]);
    std::fs::write(
        directory.path().join("rules/broken.yml"),
        "groups:\n  - name: broken\n    rules:\n      - record: broken:sum\n        expr: sum(\n",
    )
    .unwrap();
    let refused = client
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 500);
    let reason = refused.text().await.unwrap();
    assert!(reason.contains("broken.yml"), "{reason}");
    let (_, after_refused) = get_json(&client, &format!("{base}/api/v1/rules")).await;
    assert_eq!(after_refused["data"]["groups"].as_array().unwrap().len(), 2);

    let status = server.terminate();
    assert_eq!(status.code(), Some(0));
}
