//! Alertmanager's silence API on the real binary with a real redb file:
//! create, read, filter, update, expire, the 400/404 answers, and the
//! silences still there after a restart. Shapes follow Alertmanager's
//! `api/v2/openapi.yaml` (`gettableSilence`, `postableSilence`).

use std::path::Path;

#[path = "common/process.rs"]
mod process;
use process::{Guardia, free_port};

use guardia::model::format_rfc3339_millis;
use serde_json::{Value, json};

const MINUTE: i64 = 60_000;

fn start(storage: &Path, port: u16) -> Guardia {
    Guardia::serve(port, [format!("--storage.path={}", storage.display())])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn post_silence(client: &reqwest::Client, base: &str, body: &Value) -> (u16, Value) {
    let response = client
        .post(format!("{base}/api/v2/silences"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, json_body(response).await)
}

/// The body as JSON; `null` when empty or not JSON (a 404 may have no body).
async fn json_body(response: reqwest::Response) -> Value {
    let bytes = response.bytes().await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

async fn get_json(client: &reqwest::Client, url: String) -> (u16, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, json_body(response).await)
}

fn silence_body(matchers: Value, starts_at: i64, ends_at: i64) -> Value {
    json!({
        "matchers": matchers,
        "startsAt": format_rfc3339_millis(starts_at),
        "endsAt": format_rfc3339_millis(ends_at),
        "createdBy": "ops@example.org",
        "comment": "disk replacement",
    })
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|silence| silence["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn silences_api_matches_alertmanager_and_survives_restart() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut child = start(directory.path(), port);
    child.wait_ready(&client).await;

    let now = now_ms();
    // isEqual omitted: Alertmanager's default is true.
    let (status, created) = post_silence(
        &client,
        &base,
        &silence_body(
            json!([{"name": "alertname", "value": "Disk.*", "isRegex": true}]),
            now - MINUTE,
            now + 60 * MINUTE,
        ),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let active_id = created["silenceID"].as_str().unwrap().to_string();
    assert_eq!(active_id.len(), 36, "a UUID: {active_id}");

    let (status, silence) = get_json(&client, format!("{base}/api/v2/silence/{active_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(silence["id"], active_id.as_str());
    assert_eq!(silence["status"]["state"], "active");
    assert_eq!(
        silence["matchers"],
        json!([{"name": "alertname", "value": "Disk.*", "isRegex": true, "isEqual": true}])
    );
    assert_eq!(silence["createdBy"], "ops@example.org");
    assert_eq!(silence["comment"], "disk replacement");
    assert_eq!(
        silence["endsAt"],
        format_rfc3339_millis(now + 60 * MINUTE).as_str()
    );
    for field in ["startsAt", "endsAt", "updatedAt"] {
        assert!(
            silence[field]
                .as_str()
                .is_some_and(|text| text.ends_with('Z')),
            "{field}: {silence}"
        );
    }

    let (status, created) = post_silence(
        &client,
        &base,
        &silence_body(
            json!([{"name": "team", "value": "db", "isRegex": false, "isEqual": true},
                   {"name": "env", "value": "dev", "isRegex": false, "isEqual": false}]),
            now + 60 * MINUTE,
            now + 120 * MINUTE,
        ),
    )
    .await;
    assert_eq!(status, 200, "{created}");
    let pending_id = created["silenceID"].as_str().unwrap().to_string();

    let (status, list) = get_json(&client, format!("{base}/api/v2/silences")).await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&list),
        [active_id.clone(), pending_id.clone()],
        "active first"
    );
    assert_eq!(list[1]["status"]["state"], "pending");
    assert_eq!(list[1]["matchers"][1]["isEqual"], false);

    let (status, filtered) = get_json(
        &client,
        format!("{base}/api/v2/silences?filter=team%3D%22db%22"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ids(&filtered), std::slice::from_ref(&pending_id));
    let (status, message) = get_json(
        &client,
        format!("{base}/api/v2/silences?filter=team%3D~%22(%22"),
    )
    .await;
    assert_eq!(status, 400, "{message}");
    assert!(
        message
            .as_str()
            .is_some_and(|text| text.contains("bad matcher format")),
        "{message}"
    );
    // The alerts endpoint answers bad input in the same shape.
    let (status, message) = get_json(&client, format!("{base}/api/v2/alerts?silenced=maybe")).await;
    assert_eq!(status, 400, "{message}");
    assert!(
        message
            .as_str()
            .is_some_and(|text| text.contains("invalid boolean")),
        "{message}"
    );

    // Bad requests: 400 with Alertmanager's reasons; unknown ids: 404.
    let bad_bodies = [
        (
            silence_body(
                json!([{"name": "a", "value": "b", "isRegex": false}]),
                now + 2 * MINUTE,
                now + MINUTE,
            ),
            "start time must be before end time",
        ),
        (
            silence_body(
                json!([{"name": "a", "value": "(", "isRegex": true}]),
                now,
                now + MINUTE,
            ),
            "invalid label matcher",
        ),
        (
            silence_body(
                json!([{"name": "a", "value": "", "isRegex": false}]),
                now,
                now + MINUTE,
            ),
            "must not match the empty string",
        ),
        (
            json!({"matchers": [], "startsAt": "yesterday", "endsAt": "2030-01-01T00:00:00Z",
                   "createdBy": "x", "comment": "y"}),
            "startsAt",
        ),
        (json!({"comment": "no matchers"}), "invalid silence body"),
    ];
    for (body, fragment) in bad_bodies {
        let (status, message) = post_silence(&client, &base, &body).await;
        assert_eq!(status, 400, "{body}: {message}");
        assert!(
            message.as_str().is_some_and(|text| text.contains(fragment)),
            "{message} should contain {fragment}"
        );
    }
    let mut unknown = silence_body(
        json!([{"name": "a", "value": "b", "isRegex": false}]),
        now,
        now + MINUTE,
    );
    unknown["id"] = json!("00000000-0000-4000-8000-000000000000");
    assert_eq!(post_silence(&client, &base, &unknown).await.0, 404);
    assert_eq!(
        get_json(&client, format!("{base}/api/v2/silence/nope"))
            .await
            .0,
        404
    );

    // Same matchers, new comment and end: updated in place, same id.
    let mut update = silence_body(
        json!([{"name": "alertname", "value": "Disk.*", "isRegex": true, "isEqual": true}]),
        now - MINUTE,
        now + 90 * MINUTE,
    );
    update["id"] = json!(active_id);
    update["comment"] = json!("extended");
    // The start of an active silence cannot change in place, and the stored
    // start is the creation time (a start in the past becomes now), so an
    // update sends the stored one back, as amtool does.
    update["startsAt"] = silence["startsAt"].clone();
    let (status, updated) = post_silence(&client, &base, &update).await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["silenceID"], active_id.as_str());

    // Expire the pending one.
    let response = client
        .delete(format!("{base}/api/v2/silence/{pending_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let response = client
        .delete(format!("{base}/api/v2/silence/not-there"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);

    assert!(child.terminate().success());
    let mut child = start(directory.path(), port);
    child.wait_ready(&client).await;

    let (status, list) = get_json(&client, format!("{base}/api/v2/silences")).await;
    assert_eq!(status, 200);
    assert_eq!(ids(&list), [active_id.clone(), pending_id.clone()]);
    assert_eq!(list[0]["status"]["state"], "active");
    assert_eq!(list[0]["comment"], "extended");
    assert_eq!(list[1]["status"]["state"], "expired");
    assert!(child.terminate().success());
}
