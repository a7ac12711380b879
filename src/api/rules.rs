//! `/api/v1/rules` and `/api/v1/alerts` in Prometheus's JSON shapes: groups
//! with their rules (state, health, last error, evaluation time), alerts
//! with `activeAt` and the value as Go's `%e`. Rule filters as in
//! Prometheus: `type=alert|record`, `rule_name[]`, `rule_group[]`,
//! `file[]`, `exclude_alerts`; a filtered request leaves out groups with no
//! matching rule.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::series::{labels_to_json, success_response};
use crate::api::targets::format_rfc3339;
use crate::rules::alerting::Alert;
use crate::rules::group::Rule;
use crate::rules::template::format_go_float;

fn alert_json(alert: &Alert) -> Value {
    let mut object = Map::new();
    object.insert("labels".into(), labels_to_json(&alert.labels));
    object.insert("annotations".into(), labels_to_json(&alert.annotations));
    object.insert("state".into(), Value::from(alert.state.as_str()));
    object.insert(
        "activeAt".into(),
        Value::from(format_rfc3339(Some(alert.active_at))),
    );
    if let Some(since) = alert.keep_firing_since {
        object.insert(
            "keepFiringSince".into(),
            Value::from(format_rfc3339(Some(since))),
        );
    }
    object.insert(
        "value".into(),
        Value::from(format_go_float(alert.value, 'e', None)),
    );
    Value::Object(object)
}

fn string_map_json<'a>(pairs: impl Iterator<Item = (&'a String, &'a String)>) -> Value {
    Value::Object(
        pairs
            .map(|(name, value)| (name.clone(), Value::from(value.clone())))
            .collect(),
    )
}

pub async fn rules_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let wanted_type = match params.first("type").unwrap_or("") {
        "" => None,
        "alert" => Some("alerting"),
        "record" => Some("recording"),
        other => {
            return Err(ApiError::BadData(format!(
                "unsupported type {other:?}, must be one of alert, record"
            )));
        }
    };
    let rule_names: Vec<&str> = params.all("rule_name[]").collect();
    let group_names: Vec<&str> = params.all("rule_group[]").collect();
    let files: Vec<&str> = params.all("file[]").collect();
    let exclude_alerts = matches!(params.first("exclude_alerts"), Some("true" | "1"));
    let filtering = wanted_type.is_some()
        || !rule_names.is_empty()
        || !group_names.is_empty()
        || !files.is_empty();
    let mut groups_json = Vec::new();
    let groups = state
        .rule_manager()
        .map(|manager| manager.groups())
        .unwrap_or_default();
    for group in groups {
        let group = group.lock();
        if !group_names.is_empty() && !group_names.contains(&group.name.as_str()) {
            continue;
        }
        if !files.is_empty() && !files.contains(&group.file.as_str()) {
            continue;
        }
        let mut rules_json = Vec::new();
        for entry in &group.rules {
            if !rule_names.is_empty() && !rule_names.contains(&entry.rule.name()) {
                continue;
            }
            let mut object = Map::new();
            match &entry.rule {
                Rule::Alerting(rule) => {
                    if wanted_type == Some("recording") {
                        continue;
                    }
                    object.insert("state".into(), Value::from(rule.state().as_str()));
                    object.insert("name".into(), Value::from(rule.name.clone()));
                    object.insert("query".into(), Value::from(rule.expr.clone()));
                    object.insert("duration".into(), json!(rule.hold_ms as f64 / 1000.0));
                    object.insert(
                        "keepFiringFor".into(),
                        json!(rule.keep_firing_for_ms as f64 / 1000.0),
                    );
                    object.insert("labels".into(), string_map_json(rule.labels.iter()));
                    object.insert(
                        "annotations".into(),
                        string_map_json(rule.annotations.iter()),
                    );
                    if !exclude_alerts {
                        object.insert(
                            "alerts".into(),
                            Value::Array(rule.active_alerts().map(alert_json).collect()),
                        );
                    }
                    object.insert("type".into(), Value::from("alerting"));
                }
                Rule::Recording(rule) => {
                    if wanted_type == Some("alerting") {
                        continue;
                    }
                    object.insert("name".into(), Value::from(rule.name.clone()));
                    object.insert("query".into(), Value::from(rule.expr.clone()));
                    object.insert("labels".into(), string_map_json(rule.labels.iter()));
                    object.insert("type".into(), Value::from("recording"));
                }
            }
            object.insert("health".into(), Value::from(entry.health.as_str()));
            if let Some(error) = &entry.last_error {
                object.insert("lastError".into(), Value::from(error.clone()));
            }
            object.insert("evaluationTime".into(), json!(entry.evaluation_seconds));
            object.insert(
                "lastEvaluation".into(),
                Value::from(format_rfc3339(entry.last_evaluation)),
            );
            rules_json.push(Value::Object(object));
        }
        if filtering && rules_json.is_empty() {
            continue;
        }
        groups_json.push(json!({
            "name": group.name,
            "file": group.file,
            "rules": rules_json,
            "interval": group.interval_ms as f64 / 1000.0,
            "limit": group.limit,
            "evaluationTime": group.evaluation_seconds,
            "lastEvaluation": format_rfc3339(group.last_evaluation),
        }));
    }
    Ok(success_response(
        json!({ "groups": groups_json }),
        Vec::new(),
    ))
}

pub async fn alerts_handler(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let mut alerts = Vec::new();
    if let Some(manager) = state.rule_manager() {
        for group in manager.groups() {
            let group = group.lock();
            for entry in &group.rules {
                if let Rule::Alerting(rule) = &entry.rule {
                    alerts.extend(rule.active_alerts().map(alert_json));
                }
            }
        }
    }
    Ok(success_response(json!({ "alerts": alerts }), Vec::new()))
}
