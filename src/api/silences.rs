//! Alertmanager's silence API (`api/v2/openapi.yaml`), so `amtool` and
//! Grafana's Alertmanager data source can manage guardia's silences:
//!
//! - `GET /api/v2/silences` (`filter=` matchers, repeatable) → list of
//!   gettable silences;
//! - `POST /api/v2/silences` → `{"silenceID": ...}`: creates, or updates
//!   when the body has an `id` (a new id when the change cannot be made in
//!   place, as Alertmanager does);
//! - `GET /api/v2/silence/{id}`, `DELETE /api/v2/silence/{id}` (expire).
//!
//! Errors keep Alertmanager's shape rather than Prometheus's: the body is a
//! JSON string; 400 for bad input, 404 for an unknown id, 500 otherwise
//! (expiring an already expired silence is a 500 there too).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::error::{AlertmanagerError, ApiError};
use crate::api::params::{Params, parse_rfc3339};
use crate::api::{ApiState, run_blocking};
use crate::config::matcher::parse_matchers;
use crate::model::format_rfc3339_millis;
use crate::notify::NotifyError;
use crate::notify::silence::{Silence, SilenceMatcher, SilenceRequest};

/// The body of `POST /api/v2/silences` (openapi `postableSilence`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<PostableMatcher>,
    starts_at: String,
    ends_at: String,
    created_by: String,
    comment: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostableMatcher {
    name: String,
    value: String,
    is_regex: bool,
    #[serde(default = "default_true")]
    is_equal: bool,
}

fn default_true() -> bool {
    true
}

fn silences_unavailable() -> AlertmanagerError {
    AlertmanagerError(ApiError::Unavailable(
        "silences are not available: the store has no state storage".to_string(),
    ))
}

/// The openapi `gettableSilence` of one silence at `now`.
pub fn gettable_silence(silence: &Silence, now: i64) -> Value {
    json!({
        "id": silence.id,
        "status": { "state": silence.state_at(now).as_str() },
        "updatedAt": format_rfc3339_millis(silence.updated_at),
        "comment": silence.comment,
        "createdBy": silence.created_by,
        "endsAt": format_rfc3339_millis(silence.ends_at),
        "matchers": silence.matchers.iter().map(|matcher| json!({
            "isEqual": matcher.is_equal,
            "isRegex": matcher.is_regex,
            "name": matcher.name,
            "value": matcher.value,
        })).collect::<Vec<Value>>(),
        "startsAt": format_rfc3339_millis(silence.starts_at),
    })
}

/// `GET /api/v2/silences`.
pub async fn list_silences(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<Value>, AlertmanagerError> {
    let silences = state.silences().cloned().ok_or_else(silences_unavailable)?;
    let mut filter = Vec::new();
    for text in params.all("filter") {
        let matchers = parse_matchers(text)
            .map_err(|error| ApiError::BadData(format!("bad matcher format: {error}")))?;
        filter.extend(matchers);
    }
    let now = state.clock().now_ms();
    let listed = silences.list(&filter);
    Ok(Json(Value::Array(
        listed
            .iter()
            .map(|silence| gettable_silence(silence, now))
            .collect(),
    )))
}

/// `GET /api/v2/silence/{id}`.
pub async fn get_silence(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AlertmanagerError> {
    let silences = state.silences().cloned().ok_or_else(silences_unavailable)?;
    let silence = silences.get(&id).ok_or(NotifyError::SilenceNotFound(id))?;
    Ok(Json(gettable_silence(&silence, state.clock().now_ms())))
}

/// `POST /api/v2/silences`.
pub async fn post_silence(
    State(state): State<ApiState>,
    body: Bytes,
) -> Result<Json<Value>, AlertmanagerError> {
    let silences = state.silences().cloned().ok_or_else(silences_unavailable)?;
    let request = parse_postable(&body).map_err(ApiError::BadData)?;
    let id = run_blocking(move || Ok(silences.create_or_update(request)?)).await?;
    Ok(Json(json!({ "silenceID": id })))
}

/// `DELETE /api/v2/silence/{id}`.
pub async fn delete_silence(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<StatusCode, AlertmanagerError> {
    let silences = state.silences().cloned().ok_or_else(silences_unavailable)?;
    run_blocking(move || Ok(silences.expire(&id)?)).await?;
    Ok(StatusCode::OK)
}

/// Decodes a `postableSilence` body; the message says what is wrong.
pub fn parse_postable(body: &[u8]) -> Result<SilenceRequest, String> {
    let postable: PostableSilence =
        serde_json::from_slice(body).map_err(|error| format!("invalid silence body: {error}"))?;
    let time = |text: &str, field: &str| {
        parse_rfc3339(text)
            .ok_or_else(|| format!("invalid {field} {text:?}: expected an RFC 3339 time"))
    };
    let starts_at = time(&postable.starts_at, "startsAt")?;
    let ends_at = time(&postable.ends_at, "endsAt")?;
    Ok(SilenceRequest {
        id: postable.id.filter(|id| !id.is_empty()),
        matchers: postable
            .matchers
            .into_iter()
            .map(|matcher| SilenceMatcher {
                name: matcher.name,
                value: matcher.value,
                is_regex: matcher.is_regex,
                is_equal: matcher.is_equal,
            })
            .collect(),
        starts_at,
        ends_at,
        created_by: postable.created_by,
        comment: postable.comment,
    })
}
