//! `/api/v1/incidents`: SLA incidents and their actions, in the Prometheus
//! envelope. `GET /api/v1/incidents` (filters `state`, `policy`, `layer`,
//! `from`, `to`), `GET .../{id}` (timeline and clocks), `POST .../{id}/ack`
//! `{"by","comment"}`, `POST .../unack` `{"by"}`, `POST .../resolve`
//! `{"by","comment"}`, `POST .../notes` `{"by","text"}`: 400 names the bad
//! field, 404 an unknown id, 409 a transition the state refuses.
//!
//! `GET|POST .../{id}/ack-link?by=&expires=&sig=` is the signed link of a
//! page: GET only shows a confirmation page whose button POSTs to the same
//! URL, so a chat client's link preview cannot acknowledge; POST
//! acknowledges. An expired or tampered link is 403 with the reason.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::api::params::{Params, parse_time};
use crate::api::series::{labels_to_json, success_response};
use crate::api::{ApiState, run_blocking};
use crate::model::{Timestamp, format_rfc3339_millis};
use crate::sla::incident::{
    ClockFigures, EventKind, Incident, IncidentId, IncidentState, ResolveReason, clocks,
};
use crate::sla::manager::{IncidentFilter, SlaManager};

fn manager(state: &ApiState) -> Result<Arc<SlaManager>, ApiError> {
    state
        .sla_manager()
        .cloned()
        .ok_or_else(|| ApiError::Unavailable("SLA incidents need a store with state tables".into()))
}

fn parse_id(text: &str) -> Result<IncidentId, ApiError> {
    text.parse()
        .map_err(|_| ApiError::BadData(format!("invalid incident id {text:?}: not a number")))
}

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn time_json(ms: Option<Timestamp>) -> Value {
    ms.map_or(Value::Null, |ms| Value::from(format_rfc3339_millis(ms)))
}

fn clock_json(clock: &ClockFigures) -> Value {
    json!({
        "targetSeconds": seconds(clock.target_ms),
        "startedAt": time_json(Some(clock.started_at)),
        "stoppedAt": time_json(clock.stopped_at),
        "elapsedSeconds": seconds(clock.elapsed_ms),
        "remainingSeconds": seconds(clock.remaining_ms),
        "paused": clock.paused,
        "breached": clock.breached,
        "deadline": time_json(clock.deadline),
    })
}

fn event_json(event: &crate::sla::incident::Event) -> Value {
    let mut object = Map::new();
    object.insert("at".into(), time_json(Some(event.at)));
    let (kind, fields): (&str, Value) = match &event.kind {
        EventKind::Opened => ("opened", json!({})),
        EventKind::AlertFiring { labels } => {
            ("alert_firing", json!({"labels": labels_to_json(labels)}))
        }
        EventKind::AlertResolved { labels } => {
            ("alert_resolved", json!({"labels": labels_to_json(labels)}))
        }
        EventKind::Escalated {
            round,
            tier,
            repeat,
            receiver,
        } => (
            "escalated",
            json!({"round": round, "tier": tier, "repeat": repeat, "receiver": receiver}),
        ),
        EventKind::Acknowledged { by, comment } => {
            ("acknowledged", json!({"by": by, "comment": comment}))
        }
        EventKind::Unacknowledged { by } => ("unacknowledged", json!({"by": by})),
        EventKind::Note { by, text } => ("note", json!({"by": by, "text": text})),
        EventKind::AcknowledgeTimedOut => ("acknowledge_timed_out", json!({})),
        EventKind::Resolved { reason } => match reason {
            ResolveReason::AlertsResolved => ("resolved", json!({"reason": "alerts_resolved"})),
            ResolveReason::Manual { by, comment } => (
                "resolved",
                json!({"reason": "manual", "by": by, "comment": comment}),
            ),
        },
        EventKind::Breached { kind, receiver } => (
            "breached",
            json!({"kind": kind.as_str(), "receiver": receiver}),
        ),
    };
    object.insert("type".into(), Value::from(kind));
    if let Value::Object(fields) = fields {
        object.extend(fields);
    }
    Value::Object(object)
}

/// One incident as JSON; the timeline only when asked (the single-incident view).
pub fn incident_json(
    incident: &Incident,
    manager: &SlaManager,
    now: Timestamp,
    with_timeline: bool,
) -> Value {
    let mut object = Map::new();
    object.insert("id".into(), Value::from(incident.id));
    object.insert("policy".into(), Value::from(incident.policy.clone()));
    object.insert("state".into(), Value::from(incident.state().as_str()));
    object.insert(
        "layer".into(),
        incident.label("layer").map_or(Value::Null, Value::from),
    );
    object.insert("groupLabels".into(), labels_to_json(&incident.group_labels));
    object.insert("openedAt".into(), time_json(Some(incident.opened_at())));
    object.insert(
        "acknowledgedAt".into(),
        time_json(incident.first_acknowledged_at()),
    );
    object.insert("resolvedAt".into(), time_json(incident.resolved_at()));
    object.insert(
        "currentTier".into(),
        incident.current_tier().map_or(Value::Null, Value::from),
    );
    object.insert(
        "alerts".into(),
        Value::from(
            incident
                .alerts
                .iter()
                .map(|alert| {
                    json!({
                        "labels": labels_to_json(&alert.labels),
                        "annotations": labels_to_json(&alert.annotations),
                        "state": if alert.firing { "firing" } else { "resolved" },
                    })
                })
                .collect::<Vec<_>>(),
        ),
    );
    let policies = manager.policies();
    let clocks_value = match policies.policy(&incident.policy) {
        Some(policy) => {
            let figures = clocks(incident, policy, now);
            json!({
                "acknowledge": clock_json(&figures.acknowledge),
                "resolve": clock_json(&figures.resolve),
            })
        }
        // The policy left the configuration; its calendar is unknown.
        None => Value::Null,
    };
    object.insert("clocks".into(), clocks_value);
    if with_timeline {
        object.insert(
            "timeline".into(),
            Value::from(incident.events.iter().map(event_json).collect::<Vec<_>>()),
        );
    }
    Value::Object(object)
}

pub async fn list_incidents_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let mut filter = IncidentFilter::default();
    if let Some(text) = params.first("state").filter(|text| !text.is_empty()) {
        filter.state = Some(IncidentState::parse(text).ok_or_else(|| {
            ApiError::BadData(format!(
                "invalid parameter \"state\": {text:?} is not one of open, acknowledged, reopened, resolved"
            ))
        })?);
    }
    filter.policy = params
        .first("policy")
        .filter(|text| !text.is_empty())
        .map(str::to_string);
    filter.layer = params
        .first("layer")
        .filter(|text| !text.is_empty())
        .map(str::to_string);
    for (name, slot) in [("from", &mut filter.from), ("to", &mut filter.to)] {
        if let Some(text) = params.first(name).filter(|text| !text.is_empty()) {
            *slot = Some(parse_time(text).map_err(|reason| {
                ApiError::BadData(format!("invalid parameter {name:?}: {reason}"))
            })?);
        }
    }
    let now = state.clock().now_ms();
    run_blocking(move || {
        let incidents = manager.incidents(&filter)?;
        let data: Vec<Value> = incidents
            .iter()
            .map(|incident| incident_json(incident, &manager, now, false))
            .collect();
        Ok(success_response(Value::from(data), Vec::new()))
    })
    .await
}

pub async fn get_incident_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let id = parse_id(&id)?;
    let now = state.clock().now_ms();
    run_blocking(move || {
        let incident = manager.incident(id)?;
        Ok(success_response(
            incident_json(&incident, &manager, now, true),
            Vec::new(),
        ))
    })
    .await
}

/// The JSON body of an action; an empty body is an empty object.
fn body_object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::BadData("the body must be a JSON object".into())),
        Err(error) => Err(ApiError::BadData(format!(
            "the body is not valid JSON: {error}"
        ))),
    }
}

fn string_field(
    object: &Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<String, ApiError> {
    match object.get(name) {
        Some(Value::String(text)) if !(required && text.trim().is_empty()) => Ok(text.clone()),
        Some(Value::String(_)) | None if required => Err(ApiError::BadData(format!(
            "field {name:?} is required and must be a non-empty string"
        ))),
        None | Some(Value::Null) => Ok(String::new()),
        Some(_) => Err(ApiError::BadData(format!(
            "field {name:?} must be a string"
        ))),
    }
}

#[derive(Clone, Copy)]
enum Action {
    Acknowledge,
    Unacknowledge,
    Resolve,
    Note,
}

async fn incident_action(
    state: ApiState,
    id: String,
    body: Bytes,
    action: Action,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let id = parse_id(&id)?;
    let object = body_object(&body)?;
    let now = state.clock().now_ms();
    let by = string_field(
        &object,
        "by",
        matches!(action, Action::Acknowledge | Action::Note),
    )?;
    let comment = string_field(&object, "comment", false)?;
    let text = string_field(&object, "text", matches!(action, Action::Note))?;
    run_blocking(move || {
        let incident = match action {
            Action::Acknowledge => manager.acknowledge(id, &by, &comment, now)?,
            Action::Unacknowledge => manager.unacknowledge(id, &by, now)?,
            Action::Resolve => manager.resolve(id, &by, &comment, now)?,
            Action::Note => manager.add_note(id, &by, &text, now)?,
        };
        Ok(success_response(
            incident_json(&incident, &manager, now, true),
            Vec::new(),
        ))
    })
    .await
}

pub async fn acknowledge_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    incident_action(state, id, body, Action::Acknowledge).await
}

pub async fn unacknowledge_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    incident_action(state, id, body, Action::Unacknowledge).await
}

pub async fn resolve_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    incident_action(state, id, body, Action::Resolve).await
}

pub async fn note_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    incident_action(state, id, body, Action::Note).await
}

struct SignedLink {
    id: IncidentId,
    by: String,
    expires: Timestamp,
    signature: String,
}

fn signed_link(id: &str, params: &Params) -> Result<SignedLink, ApiError> {
    let id = parse_id(id)?;
    let required = |name: &str| {
        params
            .first(name)
            .filter(|text| !text.is_empty())
            .map(str::to_string)
            .ok_or_else(|| ApiError::Forbidden(format!("the link has no {name:?} parameter")))
    };
    let by = required("by")?;
    let expires = required("expires")?
        .parse()
        .map_err(|_| ApiError::Forbidden("the link's \"expires\" is not a number".into()))?;
    let signature = required("sig")?;
    Ok(SignedLink {
        id,
        by,
        expires,
        signature,
    })
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html_page(title: &str, body: &str) -> Response {
    (
        [(CONTENT_TYPE, "text/html; charset=utf-8")],
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title></head>\
<body style=\"font-family:sans-serif;max-width:32em;margin:2em auto;padding:0 1em\">{body}</body></html>"
        ),
    )
        .into_response()
}

/// GET: checks the link and asks for confirmation; acknowledges nothing.
pub async fn ack_link_page_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let link = signed_link(&id, &params)?;
    let now = state.clock().now_ms();
    manager
        .signer()
        .verify(link.id, &link.by, link.expires, &link.signature, now)?;
    let incident = run_blocking({
        let manager = manager.clone();
        move || Ok(manager.incident(link.id)?)
    })
    .await?;
    let alert_name = incident
        .label("alertname")
        .map(str::to_string)
        .unwrap_or_default();
    let action = format!(
        "ack-link?by={}&amp;expires={}&amp;sig={}",
        html_escape(&crate::sla::manager::percent_encode(&link.by)),
        link.expires,
        html_escape(&link.signature)
    );
    let body = format!(
        "<h1>Incident {id}</h1><p>{alert} under policy <b>{policy}</b> is <b>{state}</b>.</p>\
<form method=\"post\" action=\"{action}\"><button type=\"submit\" \
style=\"font-size:1.5em;padding:.5em 1em\">Acknowledge as {by}</button></form>",
        id = incident.id,
        alert = html_escape(&alert_name),
        policy = html_escape(&incident.policy),
        state = incident.state().as_str(),
        by = html_escape(&link.by),
    );
    Ok(html_page("Acknowledge incident", &body))
}

/// POST: acknowledges in the name the link was signed for.
pub async fn ack_link_confirm_handler(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    let manager = manager(&state)?;
    let link = signed_link(&id, &params)?;
    let now = state.clock().now_ms();
    manager
        .signer()
        .verify(link.id, &link.by, link.expires, &link.signature, now)?;
    let by = link.by.clone();
    let incident = run_blocking(move || {
        Ok(manager.acknowledge(link.id, &link.by, "acknowledged by signed link", now)?)
    })
    .await?;
    Ok(html_page(
        "Incident acknowledged",
        &format!(
            "<h1>Incident {} acknowledged</h1><p>Escalation stopped. Thank you, {}.</p>",
            incident.id,
            html_escape(&by)
        ),
    ))
}
