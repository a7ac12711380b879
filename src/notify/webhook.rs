//! Alertmanager's webhook payload, version "4", byte-compatible in shape so
//! that existing webhook integrations read guardia's notifications
//! unchanged: the field names and order of Alertmanager's `webhook.Message`
//! (its `template.Data` first, then `version`, `groupKey`,
//! `truncatedAlerts`), Go's time format (RFC 3339 with trailing zeros of the
//! fraction dropped; `0001-01-01T00:00:00Z` for an unset `endsAt`), the
//! alert fingerprint of `model.LabelSet.Fingerprint` and the group key of
//! the dispatcher (`<route key>:<group labels>`). Also the HTTP send of one
//! payload; what to retry is decided from the status code here.

use serde::{Deserialize, Serialize};

use crate::model::{Labels, Timestamp};

/// The protocol version Alertmanager writes into every webhook message.
pub const WEBHOOK_VERSION: &str = "4";

/// Go's zero `time.Time` as JSON: what Alertmanager writes for an `endsAt`
/// that is not in the past (a firing alert's end is not exposed).
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert of a notification, as the dispatcher hands it to a sender.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NotificationAlert {
    pub labels: Labels,
    pub annotations: Labels,
    /// When it started firing (Prometheus sends the fired time as `startsAt`).
    pub starts_at: Timestamp,
    /// Set for a resolved alert only (see [`ZERO_TIME`]).
    pub ends_at: Option<Timestamp>,
    /// Until when a firing alert holds without a refresh (the `endsAt` an
    /// Alertmanager receiver gets, so that it resolves the alert by itself
    /// if guardia stops); not part of the webhook payload.
    pub valid_until: Option<Timestamp>,
    pub generator_url: String,
    pub resolved: bool,
}

/// The JSON body Alertmanager posts to a webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookMessage {
    pub receiver: String,
    pub status: String,
    pub alerts: Vec<WebhookAlert>,
    #[serde(rename = "groupLabels")]
    pub group_labels: LabelMap,
    #[serde(rename = "commonLabels")]
    pub common_labels: LabelMap,
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: LabelMap,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub version: String,
    #[serde(rename = "groupKey")]
    pub group_key: String,
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookAlert {
    pub status: String,
    pub labels: LabelMap,
    pub annotations: LabelMap,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// Label name → value, serialised in name order as Go's `map` marshalling does.
pub type LabelMap = std::collections::BTreeMap<String, String>;

pub fn label_map(labels: &Labels) -> LabelMap {
    labels
        .iter()
        .map(|label| (label.name.clone(), label.value.clone()))
        .collect()
}

/// Alertmanager's alert fingerprint: FNV-1a 64 over the labels in name
/// order, each name and value followed by the 0xff separator byte, written
/// as 16 lower-case hex digits.
pub fn fingerprint(labels: &Labels) -> u64 {
    const OFFSET_BASIS: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    const SEPARATOR: u8 = 0xff;
    let mut hash = OFFSET_BASIS;
    let mut add = |bytes: &[u8]| {
        for byte in bytes {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for label in labels.iter() {
        add(label.name.as_bytes());
        add(&[SEPARATOR]);
        add(label.value.as_bytes());
        add(&[SEPARATOR]);
    }
    hash
}

pub fn fingerprint_text(labels: &Labels) -> String {
    format!("{:016x}", fingerprint(labels))
}

/// A label set as Prometheus's `model.LabelSet.String()` prints it:
/// `{a="1", b="2"}`, values quoted as Go's `%q` does.
pub fn label_set_text(labels: &Labels) -> String {
    let pairs: Vec<String> = labels
        .iter()
        .map(|label| format!("{}={}", label.name, go_quote(&label.value)))
        .collect();
    format!("{{{}}}", pairs.join(", "))
}

/// The dispatcher's group key: the route's key, a colon, the group labels.
pub fn group_key(route_key: &str, group_labels: &Labels) -> String {
    format!("{route_key}:{}", label_set_text(group_labels))
}

/// Go's `strconv.Quote` for the characters label values carry: printable
/// characters as they are, the usual escapes, `\u`/`\U` for the rest.
fn go_quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        match character {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '\u{7}' => quoted.push_str("\\a"),
            '\u{8}' => quoted.push_str("\\b"),
            '\u{c}' => quoted.push_str("\\f"),
            '\u{b}' => quoted.push_str("\\v"),
            other if other.is_control() => {
                let code = u32::from(other);
                if code < 0x80 {
                    quoted.push_str(&format!("\\x{code:02x}"));
                } else if code <= 0xffff {
                    quoted.push_str(&format!("\\u{code:04x}"));
                } else {
                    quoted.push_str(&format!("\\U{code:08x}"));
                }
            }
            other => quoted.push(other),
        }
    }
    quoted.push('"');
    quoted
}

/// Go's `time.Time` JSON form (RFC 3339 with nanoseconds, trailing zeros
/// dropped) of a millisecond timestamp, in UTC.
pub fn go_time_text(millis: Timestamp) -> String {
    let with_millis = crate::model::format_rfc3339_millis(millis);
    // "....SS.mmmZ": drop trailing zeros of the fraction, and the dot if none remain.
    let Some(without_zone) = with_millis.strip_suffix('Z') else {
        return with_millis;
    };
    let trimmed = without_zone.trim_end_matches('0').trim_end_matches('.');
    format!("{trimmed}Z")
}

/// Builds the webhook body of one notification. `max_alerts` 0 sends all;
/// otherwise the first `max_alerts` are sent and the rest counted in
/// `truncatedAlerts` (common labels are those of the alerts sent, as in
/// Alertmanager, which builds its template data after truncating).
pub fn build_webhook_message(
    receiver: &str,
    group_key: &str,
    group_labels: &Labels,
    external_url: &str,
    alerts: &[NotificationAlert],
    max_alerts: usize,
) -> WebhookMessage {
    let (sent, truncated) = if max_alerts != 0 && alerts.len() > max_alerts {
        (&alerts[..max_alerts], (alerts.len() - max_alerts) as u64)
    } else {
        (alerts, 0)
    };
    let firing = sent.iter().any(|alert| !alert.resolved);
    WebhookMessage {
        receiver: receiver.to_string(),
        status: status_text(firing).to_string(),
        alerts: sent.iter().map(webhook_alert).collect(),
        group_labels: label_map(group_labels),
        common_labels: common_pairs(sent.iter().map(|alert| &alert.labels)),
        common_annotations: common_pairs(sent.iter().map(|alert| &alert.annotations)),
        external_url: external_url.to_string(),
        version: WEBHOOK_VERSION.to_string(),
        group_key: group_key.to_string(),
        truncated_alerts: truncated,
    }
}

fn status_text(firing: bool) -> &'static str {
    if firing { "firing" } else { "resolved" }
}

fn webhook_alert(alert: &NotificationAlert) -> WebhookAlert {
    WebhookAlert {
        status: status_text(!alert.resolved).to_string(),
        labels: label_map(&alert.labels),
        annotations: label_map(&alert.annotations),
        starts_at: go_time_text(alert.starts_at),
        ends_at: match (alert.resolved, alert.ends_at) {
            (true, Some(ends_at)) => go_time_text(ends_at),
            _ => ZERO_TIME.to_string(),
        },
        generator_url: alert.generator_url.clone(),
        fingerprint: fingerprint_text(&alert.labels),
    }
}

/// The pairs every set has with the same value (empty for no sets).
fn common_pairs<'a>(mut sets: impl Iterator<Item = &'a Labels>) -> LabelMap {
    let Some(first) = sets.next() else {
        return LabelMap::new();
    };
    let mut common = label_map(first);
    for set in sets {
        common.retain(|name, value| set.get(name) == Some(value.as_str()));
    }
    common
}

/// Why a send failed, and whether trying again can help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Network errors, timeouts, 5xx and 429: retried with backoff.
    #[error("{0}")]
    Retryable(String),
    /// Any other 4xx, or a request that cannot be built: not retried.
    #[error("{0}")]
    Permanent(String),
}

/// Classifies an HTTP answer as Alertmanager's notifiers do: 2xx is
/// delivered, 429 and 5xx are worth retrying, other 4xx are not (the
/// receiver rejected the message and will reject it again).
pub fn classify_status(status: u16, body_excerpt: &str) -> Result<(), SendError> {
    match status {
        200..=299 => Ok(()),
        429 | 500..=599 => Err(SendError::Retryable(format!(
            "unexpected status code {status}: {body_excerpt}"
        ))),
        _ => Err(SendError::Permanent(format!(
            "unexpected status code {status}: {body_excerpt}"
        ))),
    }
}

/// Posts one JSON body and classifies the answer. The client carries TLS
/// settings; `authorize` adds basic auth or the `Authorization` header.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    http: &crate::config::file::HttpClientConfig,
    timeout: std::time::Duration,
    body: Vec<u8>,
) -> Result<(), SendError> {
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .timeout(timeout)
        .body(body);
    let request = crate::scrape::scrape_loop::authorize(request, http)
        .await
        .map_err(|error| SendError::Permanent(error.to_string()))?;
    let response = request
        .send()
        .await
        .map_err(|error| SendError::Retryable(format!("sending to {url}: {error}")))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(());
    }
    // Only a short excerpt of the answer goes into logs.
    let text = response.text().await.unwrap_or_default();
    let excerpt: String = text.chars().take(200).collect();
    classify_status(status, &excerpt)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(pairs: &[(&str, &str)], resolved: bool) -> NotificationAlert {
        NotificationAlert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: Labels::from_pairs([("summary", "disk full")]),
            starts_at: 1_700_000_000_000,
            ends_at: resolved.then_some(1_700_000_060_500),
            valid_until: None,
            generator_url: "http://guardia:9099/graph?g0.expr=up&g0.tab=1".to_string(),
            resolved,
        }
    }

    #[test]
    fn fingerprint_matches_alertmanager_for_known_label_sets() {
        // Values computed with prometheus/common model.LabelSet.Fingerprint:
        // the empty set is the FNV-1a offset basis.
        assert_eq!(fingerprint_text(&Labels::empty()), "cbf29ce484222325");
        // prometheus/common's model test vector (5799056148416392346).
        assert_eq!(
            fingerprint_text(&Labels::from_pairs([
                ("name", "garland, briggs"),
                ("fear", "love is not enough"),
            ])),
            "507a62d79ee76c9a"
        );
        // FNV-1a 64 of "a\xffb\xff", written out by hand below.
        let mut expected: u64 = 14_695_981_039_346_656_037;
        for byte in [b'a', 0xff, b'b', 0xff] {
            expected ^= u64::from(byte);
            expected = expected.wrapping_mul(1_099_511_628_211);
        }
        assert_eq!(fingerprint(&Labels::from_pairs([("a", "b")])), expected);
        // Order of construction does not matter, label order does.
        let one = Labels::from_pairs([("job", "node"), ("alertname", "Down")]);
        let two = Labels::from_pairs([("alertname", "Down"), ("job", "node")]);
        assert_eq!(fingerprint(&one), fingerprint(&two));
        assert_ne!(
            fingerprint(&one),
            fingerprint(&Labels::from_pairs([
                ("alertname", "node"),
                ("job", "Down")
            ]))
        );
        assert_eq!(fingerprint_text(&one).len(), 16);
    }

    #[test]
    fn group_key_prints_labels_as_go_label_sets() {
        let labels = Labels::from_pairs([("job", "node"), ("alertname", "Disk \"full\"\n")]);
        assert_eq!(
            group_key("{}/{severity=\"critical\"}", &labels),
            "{}/{severity=\"critical\"}:{alertname=\"Disk \\\"full\\\"\\n\", job=\"node\"}"
        );
        assert_eq!(group_key("{}", &Labels::empty()), "{}:{}");
    }

    #[test]
    fn go_time_text_drops_trailing_zeros_of_the_fraction() {
        assert_eq!(go_time_text(1_700_000_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(go_time_text(1_700_000_000_500), "2023-11-14T22:13:20.5Z");
        assert_eq!(go_time_text(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(go_time_text(1_700_000_000_010), "2023-11-14T22:13:20.01Z");
    }

    #[test]
    fn payload_json_is_alertmanager_version_4_golden() {
        let alerts = vec![
            alert(&[("alertname", "DiskFull"), ("instance", "a:9100")], false),
            alert(&[("alertname", "DiskFull"), ("instance", "b:9100")], true),
        ];
        let message = build_webhook_message(
            "ops",
            "{}:{alertname=\"DiskFull\"}",
            &Labels::from_pairs([("alertname", "DiskFull")]),
            "http://guardia:9099",
            &alerts,
            0,
        );
        let json = serde_json::to_string(&message).unwrap();
        let fingerprint_a = fingerprint_text(&Labels::from_pairs([
            ("alertname", "DiskFull"),
            ("instance", "a:9100"),
        ]));
        let fingerprint_b = fingerprint_text(&Labels::from_pairs([
            ("alertname", "DiskFull"),
            ("instance", "b:9100"),
        ]));
        let expected = format!(
            concat!(
                r#"{{"receiver":"ops","status":"firing","alerts":["#,
                r#"{{"status":"firing","labels":{{"alertname":"DiskFull","instance":"a:9100"}},"#,
                r#""annotations":{{"summary":"disk full"}},"startsAt":"2023-11-14T22:13:20Z","#,
                r#""endsAt":"0001-01-01T00:00:00Z","#,
                r#""generatorURL":"http://guardia:9099/graph?g0.expr=up&g0.tab=1","fingerprint":"{}"}},"#,
                r#"{{"status":"resolved","labels":{{"alertname":"DiskFull","instance":"b:9100"}},"#,
                r#""annotations":{{"summary":"disk full"}},"startsAt":"2023-11-14T22:13:20Z","#,
                r#""endsAt":"2023-11-14T22:14:20.5Z","#,
                r#""generatorURL":"http://guardia:9099/graph?g0.expr=up&g0.tab=1","fingerprint":"{}"}}],"#,
                r#""groupLabels":{{"alertname":"DiskFull"}},"commonLabels":{{"alertname":"DiskFull"}},"#,
                r#""commonAnnotations":{{"summary":"disk full"}},"externalURL":"http://guardia:9099","#,
                r#""version":"4","groupKey":"{{}}:{{alertname=\"DiskFull\"}}","truncatedAlerts":0}}"#
            ),
            fingerprint_a, fingerprint_b
        );
        assert_eq!(json, expected);
    }

    #[test]
    fn all_resolved_alerts_make_a_resolved_message() {
        let alerts = vec![alert(&[("alertname", "A")], true)];
        let message = build_webhook_message("r", "k", &Labels::empty(), "", &alerts, 0);
        assert_eq!(message.status, "resolved");
    }

    #[test]
    fn max_alerts_truncates_and_counts_the_rest() {
        let alerts: Vec<NotificationAlert> = (0..5)
            .map(|index| {
                let instance = format!("host-{index}");
                alert(&[("alertname", "Down"), ("instance", &instance)], false)
            })
            .collect();
        let message = build_webhook_message("r", "k", &Labels::empty(), "", &alerts, 2);
        assert_eq!(message.alerts.len(), 2);
        assert_eq!(message.truncated_alerts, 3);
        assert_eq!(message.alerts[1].labels["instance"], "host-1");
        let untruncated = build_webhook_message("r", "k", &Labels::empty(), "", &alerts, 5);
        assert_eq!(untruncated.alerts.len(), 5);
        assert_eq!(untruncated.truncated_alerts, 0);
        // Common labels drop the ones that differ.
        assert_eq!(
            message.common_labels.keys().collect::<Vec<_>>(),
            vec!["alertname"]
        );
    }

    #[test]
    fn status_classification_retries_only_what_can_succeed_later() {
        assert_eq!(classify_status(204, ""), Ok(()));
        assert!(matches!(
            classify_status(500, ""),
            Err(SendError::Retryable(_))
        ));
        assert!(matches!(
            classify_status(503, ""),
            Err(SendError::Retryable(_))
        ));
        assert!(matches!(
            classify_status(429, ""),
            Err(SendError::Retryable(_))
        ));
        assert!(matches!(
            classify_status(400, ""),
            Err(SendError::Permanent(_))
        ));
        assert!(matches!(
            classify_status(404, ""),
            Err(SendError::Permanent(_))
        ));
    }
}
