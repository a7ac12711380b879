//! `GET /api/v2/alerts` in Alertmanager's shape (`gettableAlerts`): the
//! alerts the notifier's dispatcher holds, with their receivers and
//! whether a silence or an inhibition rule suppresses them. Filters as
//! Alertmanager: `active`, `silenced`, `inhibited` (booleans, default
//! true), `filter` (matchers, all must match), `receiver` (a regex over
//! receiver names). Also a minimal `GET /api/v2/status`.

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::ApiState;
use crate::api::error::{AlertmanagerError, ApiError};
use crate::notify::dispatch::AlertView;
use crate::notify::webhook::{fingerprint_text, go_time_text, label_map};

fn parse_flag(value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(format!("invalid boolean {other:?}")),
    }
}

pub async fn alerts_handler(
    State(state): State<ApiState>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<axum::Json<Value>, AlertmanagerError> {
    let mut show_active = true;
    let mut show_silenced = true;
    let mut show_inhibited = true;
    let mut matchers = Vec::new();
    let mut receiver_pattern: Option<regex::Regex> = None;
    for (name, value) in &pairs {
        let outcome = match name.as_str() {
            "active" => parse_flag(value).map(|flag| show_active = flag),
            "silenced" => parse_flag(value).map(|flag| show_silenced = flag),
            "inhibited" => parse_flag(value).map(|flag| show_inhibited = flag),
            "unprocessed" => parse_flag(value).map(|_| ()),
            "filter" => crate::config::matcher::parse_matchers(value)
                .map(|parsed| matchers.extend(parsed))
                .map_err(|error| format!("bad matcher format: {error}")),
            "receiver" => regex::Regex::new(&format!("^(?:{value})$"))
                .map(|pattern| receiver_pattern = Some(pattern))
                .map_err(|error| format!("failed to parse receiver param: {error}")),
            _ => Ok(()),
        };
        outcome.map_err(ApiError::BadData)?;
    }
    // Bad parameters are refused even when no notifier is configured.
    let Some(notifier) = state.notifier() else {
        return Ok(axum::Json(Value::Array(Vec::new())));
    };
    let now = state.clock().now_ms();
    let alerts: Vec<Value> = notifier
        .alert_views()
        .into_iter()
        .filter(|view| crate::model::matches_all(&matchers, &view.alert.labels))
        .filter(|view| {
            receiver_pattern.as_ref().is_none_or(|pattern| {
                view.receivers
                    .iter()
                    .any(|receiver| pattern.is_match(receiver))
            })
        })
        .filter(|view| {
            let silenced = !view.silenced_by.is_empty();
            let inhibited = !view.inhibited_by.is_empty();
            (show_active || silenced || inhibited)
                && (show_silenced || !silenced)
                && (show_inhibited || !inhibited)
        })
        .filter(|view| !view.alert.is_resolved_at(now))
        .map(|view| gettable_alert(&view))
        .collect();
    Ok(axum::Json(Value::Array(alerts)))
}

fn gettable_alert(view: &AlertView) -> Value {
    let suppressed = !view.silenced_by.is_empty() || !view.inhibited_by.is_empty();
    json!({
        "annotations": label_map(&view.alert.annotations),
        "endsAt": go_time_text(view.alert.ends_at),
        "fingerprint": fingerprint_text(&view.alert.labels),
        "receivers": view.receivers.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
        "startsAt": go_time_text(view.alert.starts_at),
        "status": {
            "inhibitedBy": view.inhibited_by,
            "silencedBy": view.silenced_by,
            "state": if suppressed { "suppressed" } else { "active" },
        },
        "updatedAt": go_time_text(view.alert.updated_at),
        "generatorURL": view.alert.generator_url,
        "labels": label_map(&view.alert.labels),
    })
}

/// A minimal `/api/v2/status`: Alertmanager's fields with guardia's values.
pub async fn status_handler(State(state): State<ApiState>) -> Response {
    let uptime = go_time_text(state.start_time_ms());
    axum::Json(json!({
        "cluster": {"status": "disabled", "peers": []},
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "branch": "",
            "buildDate": "",
            "buildUser": "",
            "goVersion": "",
            "revision": "",
        },
        "config": {"original": state.query_settings().config_yaml},
        "uptime": uptime,
    }))
    .into_response()
}
