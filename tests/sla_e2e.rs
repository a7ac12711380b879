//! SLA clocks end to end with the real binary (issue 6): pushed data breaks
//! a threshold, the rule fires, an incident opens under a `24x7` policy and
//! its first tier is paged through a webhook; nobody acknowledges, guardia
//! is killed with SIGKILL between tier 1 and tier 2 and restarted, and tier
//! 2 still arrives exactly once. Two more incidents are acknowledged before
//! their tier 2 falls due, one through `POST /api/v1/incidents/{id}/ack`
//! and one through the signed link in the page's annotations, and neither
//! escalates. The report endpoint then shows the three incidents with their
//! acknowledgement figures. Each tier is a separate webhook receiver, so
//! which tier was paged is never guessed from the payload alone.

#[path = "common/notify_support.rs"]
mod notify_support;

use std::time::{Duration, Instant};

use notify_support::{DEADLINE, Guardia, WebhookReceiver, free_port, now_ms, write_config};
use serde_json::{Value, json};

/// Covered time without acknowledgement before tier 2 is paged. Long
/// enough for the test to kill and restart guardia, or to acknowledge,
/// after tier 1 arrived; short enough to keep the test quick.
const TIER_TWO_AFTER_SECONDS: u64 = 10;

fn configuration(alerts_url: &str, tier_one_url: &str, tier_two_url: &str) -> String {
    format!(
        r#"notifications:
  route:
    receiver: alerts
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
    repeat_interval: 1h
  receivers:
    - name: alerts
      webhook_configs:
        - url: {alerts_url}
    - name: tier1
      webhook_configs:
        - url: {tier_one_url}
    - name: tier2
      webhook_configs:
        - url: {tier_two_url}
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
        - {{after: {TIER_TWO_AFTER_SECONDS}s, receiver: tier2}}
"#
    )
}

/// The pages a receiver got for one incident (by the `incident_id` label).
fn pages_for(receiver: &WebhookReceiver, incident_id: &str) -> Vec<Value> {
    receiver
        .delivered()
        .into_iter()
        .filter(|message| {
            message["alerts"].as_array().is_some_and(|alerts| {
                alerts
                    .iter()
                    .any(|alert| alert["labels"]["incident_id"] == incident_id)
            })
        })
        .collect()
}

/// Waits until `receiver` has a page for `incident_id`, and returns it.
async fn wait_for_page(
    receiver: &WebhookReceiver,
    guardia: &mut Guardia,
    incident_id: &str,
) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        guardia.assert_running();
        if let Some(page) = pages_for(receiver, incident_id).into_iter().next() {
            return page;
        }
        assert!(
            Instant::now() < deadline,
            "no page for incident {incident_id} arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The id of the open incident whose alert carries `site`.
async fn wait_for_incident_of_site(
    guardia: &mut Guardia,
    client: &reqwest::Client,
    site: &str,
) -> String {
    let body = guardia
        .wait_json(client, "/api/v1/incidents", |body| {
            incident_of_site(body, site).is_some()
        })
        .await;
    incident_of_site(&body, site).unwrap()
}

fn incident_of_site(body: &Value, site: &str) -> Option<String> {
    body["data"].as_array()?.iter().find_map(|incident| {
        let text = incident.to_string();
        text.contains(&format!("\"site\":\"{site}\""))
            .then(|| incident["id"].to_string().trim_matches('"').to_string())
    })
}

async fn get_json(client: &reqwest::Client, url: &str) -> Value {
    let text = client.get(url).send().await.unwrap().text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON from {url}: {text}"))
}

/// Lets several SLA ticks (1 s each) and notifier flushes pass, guardia
/// staying up, so a page that should not come would have come.
async fn let_seconds_pass(guardia: &mut Guardia, seconds: u64) {
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        guardia.assert_running();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escalation_survives_kill_9_and_acknowledgement_stops_it() {
    let alerts = WebhookReceiver::start(0).await;
    let tier_one = WebhookReceiver::start(0).await;
    let tier_two = WebhookReceiver::start(0).await;
    let directory = tempfile::tempdir().unwrap();
    write_config(
        directory.path(),
        &configuration(&alerts.url(), &tier_one.url(), &tier_two.url()),
    );
    let port = free_port();
    let client = reqwest::Client::new();
    let mut guardia = Guardia::start(directory.path(), port);
    guardia.wait_ready(&client).await;
    let test_started_ms = now_ms();

    // Incident 1: nobody acknowledges; guardia dies between the tiers.
    guardia
        .push(
            &client,
            format!("temperature_celsius{{site=\"north\"}} 72 {}\n", now_ms()),
        )
        .await;
    let north = wait_for_incident_of_site(&mut guardia, &client, "north").await;
    let page = wait_for_page(&tier_one, &mut guardia, &north).await;
    let alert = &page["alerts"][0];
    assert_eq!(page["receiver"], "tier1");
    assert_eq!(alert["labels"]["alertname"], "SLAEscalation");
    assert_eq!(alert["labels"]["incident_alertname"], "TemperatureHigh");
    assert_eq!(alert["labels"]["sla_policy"], "temperature");
    assert_eq!(alert["labels"]["sla_tier"], "0");
    assert_eq!(alert["labels"]["site"], "north");
    assert!(
        alert["annotations"]["ack_link"]
            .as_str()
            .unwrap()
            .contains(&format!("/api/v1/incidents/{north}/ack-link?"))
    );
    guardia.kill_9();
    if !pages_for(&tier_two, &north).is_empty() {
        // Only a machine so slow that the whole tier-2 delay passed between
        // tier 1 arriving and the kill gets here; exactly-once still holds.
        eprintln!("note: tier 2 arrived before the kill");
    }
    let mut guardia = Guardia::start(directory.path(), port);
    guardia.wait_ready(&client).await;
    let tier_two_page = wait_for_page(&tier_two, &mut guardia, &north).await;
    assert_eq!(tier_two_page["receiver"], "tier2");
    assert_eq!(tier_two_page["alerts"][0]["labels"]["sla_tier"], "1");
    assert_eq!(tier_two_page["alerts"][0]["labels"]["site"], "north");

    // Incidents 2 and 3: acknowledged before tier 2, by API and by link.
    guardia
        .push(
            &client,
            format!(
                "temperature_celsius{{site=\"south\"}} 80 {now}\ntemperature_celsius{{site=\"east\"}} 90 {now}\n",
                now = now_ms()
            ),
        )
        .await;
    let south = wait_for_incident_of_site(&mut guardia, &client, "south").await;
    let east = wait_for_incident_of_site(&mut guardia, &client, "east").await;
    wait_for_page(&tier_one, &mut guardia, &south).await;
    let east_page = wait_for_page(&tier_one, &mut guardia, &east).await;
    let response = client
        .post(format!("{}/api/v1/incidents/{south}/ack", guardia.base()))
        .header("content-type", "application/json")
        .body(json!({"by": "ana", "comment": "on it"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    // The link names guardia's external URL; the test reaches it on loopback.
    let link = east_page["alerts"][0]["annotations"]["ack_link"]
        .as_str()
        .unwrap()
        .replace(&format!("http://guardia.test:{port}"), &guardia.base());
    let response = client.get(&link).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("<form method=\"post\"")
    );
    let incident_url = format!("{}/api/v1/incidents/{east}", guardia.base());
    assert_eq!(
        get_json(&client, &incident_url).await["data"]["state"],
        "open",
        "a GET of the link must not acknowledge"
    );
    let response = client.post(&link).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let east_incident = get_json(&client, &incident_url).await;
    assert_eq!(east_incident["data"]["state"], "acknowledged");
    assert!(
        east_incident["data"]["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["type"] == "acknowledged" && event["by"] == "tier1"),
        "{east_incident}"
    );
    let south_incident = get_json(
        &client,
        &format!("{}/api/v1/incidents/{south}", guardia.base()),
    )
    .await;
    assert_eq!(south_incident["data"]["state"], "acknowledged");

    // Past tier 2's delay with room to spare: nothing more for anybody.
    let_seconds_pass(&mut guardia, TIER_TWO_AFTER_SECONDS + 6).await;
    assert!(pages_for(&tier_two, &south).is_empty(), "south escalated");
    assert!(pages_for(&tier_two, &east).is_empty(), "east escalated");
    assert_eq!(pages_for(&tier_two, &north).len(), 1, "tier 2 exactly once");
    assert_eq!(pages_for(&tier_one, &north).len(), 1, "tier 1 exactly once");
    assert_eq!(pages_for(&tier_one, &south).len(), 1);
    assert_eq!(pages_for(&tier_one, &east).len(), 1);
    assert_eq!(tier_two.delivered().len(), 1);
    assert_eq!(tier_one.delivered().len(), 3);

    // Tier 2 came at or after its delay, by the incident's own timeline.
    let north_incident = get_json(
        &client,
        &format!("{}/api/v1/incidents/{north}", guardia.base()),
    )
    .await;
    assert_eq!(north_incident["data"]["state"], "open");
    let timeline = north_incident["data"]["timeline"].as_array().unwrap();
    let escalations: Vec<&Value> = timeline
        .iter()
        .filter(|event| event["type"] == "escalated")
        .collect();
    assert_eq!(escalations.len(), 2, "{north_incident}");
    let event_ms = |event: &Value| -> i64 {
        guardia::api::params::parse_time(event["at"].as_str().unwrap()).unwrap()
    };
    let opened_ms = event_ms(&timeline[0]);
    assert!(
        event_ms(escalations[1]) - opened_ms >= TIER_TWO_AFTER_SECONDS as i64 * 1000,
        "{north_incident}"
    );

    // The report: three incidents, two acknowledged within the hour, one
    // still running (not decided), four escalations, no breaches.
    let report = get_json(
        &client,
        &format!(
            "{}/api/v1/sla/report?from={}&to={}&policy=temperature",
            guardia.base(),
            test_started_ms / 1000 - 60,
            now_ms() / 1000 + 60
        ),
    )
    .await;
    assert_eq!(report["status"], "success", "{report}");
    let figures = &report["data"]["policies"][0];
    assert_eq!(figures["policy"], "temperature");
    assert_eq!(figures["incidents"], 3, "{report}");
    assert_eq!(figures["acknowledge_decided"], 2);
    assert_eq!(figures["acknowledged_within_target"], 2);
    assert_eq!(figures["acknowledged_within_target_percent"], 100.0);
    assert_eq!(figures["escalations"], 4);
    assert_eq!(figures["acknowledge_breaches"], 0);
    assert_eq!(figures["resolve_breaches"], 0);
    assert_eq!(figures["resolve_decided"], 0);
    let mean = figures["mean_time_to_acknowledge_seconds"]
        .as_f64()
        .unwrap();
    let p90 = figures["p90_time_to_acknowledge_seconds"].as_f64().unwrap();
    assert!(mean > 0.0 && mean <= p90 && p90 < 3600.0, "{report}");
}
