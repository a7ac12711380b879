//! The `alertmanager_configs` receiver: posts alerts to a real
//! Alertmanager's `POST <url>/api/v2/alerts`, in the body Prometheus's
//! notifier sends (`[{labels, annotations, startsAt, endsAt,
//! generatorURL}]`). A firing alert carries an `endsAt` in the future (its
//! validity), so the Alertmanager resolves it by itself if guardia stops
//! refreshing it; the dispatcher re-sends firing groups to this receiver at
//! every `group_interval` for that reason (see `dispatch`).

use serde::{Deserialize, Serialize};

use crate::notify::webhook::{LabelMap, NotificationAlert, go_time_text, label_map};

/// One alert as Alertmanager's v2 API takes it (`postableAlert`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PostableAlert {
    pub labels: LabelMap,
    pub annotations: LabelMap,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt", skip_serializing_if = "Option::is_none", default)]
    pub ends_at: Option<String>,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// The URL alerts are posted to, from the configured base URL.
pub fn alerts_url(base_url: &str) -> String {
    format!("{}/api/v2/alerts", base_url.trim_end_matches('/'))
}

/// The body of one post: every alert of the notification, resolved ones
/// with their resolution time, firing ones with their validity.
pub fn build_postable_alerts(alerts: &[NotificationAlert]) -> Vec<PostableAlert> {
    alerts
        .iter()
        .map(|alert| PostableAlert {
            labels: label_map(&alert.labels),
            annotations: label_map(&alert.annotations),
            starts_at: go_time_text(alert.starts_at),
            ends_at: if alert.resolved {
                alert.ends_at.map(go_time_text)
            } else {
                alert.valid_until.map(go_time_text)
            },
            generator_url: alert.generator_url.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    #[test]
    fn body_is_what_prometheus_posts() {
        let alerts = vec![
            NotificationAlert {
                labels: Labels::from_pairs([("alertname", "Down"), ("job", "node")]),
                annotations: Labels::from_pairs([("summary", "node down")]),
                starts_at: 1_700_000_000_000,
                ends_at: None,
                valid_until: Some(1_700_000_240_000),
                generator_url: "http://g/graph".to_string(),
                resolved: false,
            },
            NotificationAlert {
                labels: Labels::from_pairs([("alertname", "Down"), ("job", "db")]),
                annotations: Labels::empty(),
                starts_at: 1_700_000_000_000,
                ends_at: Some(1_700_000_030_000),
                valid_until: None,
                generator_url: String::new(),
                resolved: true,
            },
        ];
        let json = serde_json::to_string(&build_postable_alerts(&alerts)).unwrap();
        assert_eq!(
            json,
            concat!(
                r#"[{"labels":{"alertname":"Down","job":"node"},"annotations":{"summary":"node down"},"#,
                r#""startsAt":"2023-11-14T22:13:20Z","endsAt":"2023-11-14T22:17:20Z","generatorURL":"http://g/graph"},"#,
                r#"{"labels":{"alertname":"Down","job":"db"},"annotations":{},"#,
                r#""startsAt":"2023-11-14T22:13:20Z","endsAt":"2023-11-14T22:13:50Z","generatorURL":""}]"#
            )
        );
        assert_eq!(
            alerts_url("http://127.0.0.1:9093/"),
            "http://127.0.0.1:9093/api/v2/alerts"
        );
    }
}
