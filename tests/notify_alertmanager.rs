//! guardia's `alertmanager_configs` receiver against a real Alertmanager
//! (Debian's `prometheus-alertmanager`, started here on a free loopback
//! port, no clustering, storage in a temp dir): the alert guardia fires
//! shows up in the Alertmanager's `/api/v2/alerts` with its labels and
//! annotations. Skips with a message when the binary is not installed.

#[path = "common/notify_support.rs"]
mod notify_support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use notify_support::{DEADLINE, Guardia, KillOnDrop, free_port, now_ms, write_config};

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardia_alert_appears_in_a_real_alertmanager() {
    if !std::path::Path::new(ALERTMANAGER).exists() {
        eprintln!(
            "skipping: {ALERTMANAGER} is not installed (apt-get install prometheus-alertmanager)"
        );
        return;
    }
    let directory = tempfile::tempdir().unwrap();
    let alertmanager_port = free_port();
    std::fs::write(
        directory.path().join("alertmanager.yml"),
        "route:\n  receiver: blackhole\nreceivers:\n  - name: blackhole\n",
    )
    .unwrap();
    std::fs::create_dir(directory.path().join("am-data")).unwrap();
    let mut alertmanager = KillOnDrop(
        Command::new(ALERTMANAGER)
            .arg(format!(
                "--config.file={}",
                directory.path().join("alertmanager.yml").display()
            ))
            .arg(format!(
                "--storage.path={}",
                directory.path().join("am-data").display()
            ))
            .arg(format!(
                "--web.listen-address=127.0.0.1:{alertmanager_port}"
            ))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let alertmanager_base = format!("http://127.0.0.1:{alertmanager_port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = alertmanager.0.try_wait().unwrap() {
            panic!("alertmanager exited: {status}");
        }
        if let Ok(response) = client
            .get(format!("{alertmanager_base}/-/ready"))
            .send()
            .await
            && response.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "alertmanager never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    write_config(
        directory.path(),
        &format!(
            r#"notifications:
  route:
    receiver: upstream
    group_wait: 1s
    group_interval: 1s
  receivers:
    - name: upstream
      alertmanager_configs:
        - url: {alertmanager_base}
"#
        ),
    );
    let mut guardia = Guardia::start(directory.path(), free_port());
    guardia.wait_ready(&client).await;
    guardia
        .push(
            &client,
            format!("temperature_celsius{{site=\"east\"}} 64 {}\n", now_ms()),
        )
        .await;

    let deadline = Instant::now() + DEADLINE;
    let alert = loop {
        guardia.assert_running();
        if let Ok(response) = client
            .get(format!("{alertmanager_base}/api/v2/alerts"))
            .send()
            .await
            && let Ok(text) = response.text().await
            && let Ok(body) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(found) = body.as_array().and_then(|alerts| {
                alerts
                    .iter()
                    .find(|alert| alert["labels"]["alertname"] == "TemperatureHigh")
                    .cloned()
            })
        {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "the alert never reached the Alertmanager"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(alert["labels"]["site"], "east");
    assert_eq!(alert["labels"]["severity"], "critical");
    assert_eq!(alert["annotations"]["summary"], "temperature 64 at east");
    assert_eq!(alert["status"]["state"], "active");
    assert!(
        alert["generatorURL"]
            .as_str()
            .unwrap()
            .contains("/graph?g0.expr=")
    );
    assert!(alert["receivers"].as_array().unwrap()[0]["name"] == "blackhole");
}
