//! Metadata reads with Prometheus's exact JSON shapes:
//! `/api/v1/series` (requires at least one `match[]`), `/api/v1/labels` and
//! `/api/v1/label/{name}/values` (all series when no `match[]`). Several
//! `match[]` are a union. `limit` truncates the sorted result and adds the
//! warning Prometheus 3 adds, `results truncated due to limit`.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::{ApiState, run_blocking};
use crate::model::Labels;

pub const TRUNCATED_WARNING: &str = "results truncated due to limit";

/// `{"status":"success","data":..}` plus `warnings` when there are any.
pub fn success_response(data: Value, warnings: Vec<String>) -> Response {
    let mut body = Map::new();
    body.insert("status".into(), Value::from("success"));
    body.insert("data".into(), data);
    if !warnings.is_empty() {
        body.insert("warnings".into(), Value::from(warnings));
    }
    Json(Value::Object(body)).into_response()
}

/// A label set as Prometheus's JSON object (keys sorted).
pub fn labels_to_json(labels: &Labels) -> Value {
    let mut object = Map::new();
    for label in labels.iter() {
        object.insert(label.name.clone(), Value::from(label.value.clone()));
    }
    Value::Object(object)
}

fn truncate<T>(items: Vec<T>, limit: Option<usize>) -> (Vec<T>, Vec<String>) {
    match limit {
        Some(limit) if items.len() > limit => {
            let mut items = items;
            items.truncate(limit);
            (items, vec![TRUNCATED_WARNING.to_string()])
        }
        _ => (items, Vec::new()),
    }
}

pub async fn series_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    if params.first("match[]").is_none() {
        return Err(ApiError::BadData(
            "no match[] parameter provided".to_string(),
        ));
    }
    let matcher_sets = params.matcher_sets()?;
    let (mint, maxt) = params.time_range()?;
    let limit = params.limit()?;
    let store = state.store().clone();
    let series = run_blocking(move || {
        let querier = store.querier()?;
        if let [matchers] = matcher_sets.as_slice() {
            // One selector: the querier's answer is sorted and distinct already.
            return Ok(querier.series(mint, maxt, matchers)?);
        }
        let mut union: BTreeSet<Labels> = BTreeSet::new();
        for matchers in &matcher_sets {
            union.extend(querier.series(mint, maxt, matchers)?);
        }
        Ok(union.into_iter().collect::<Vec<_>>())
    })
    .await?;
    let (series, warnings) = truncate(series, limit);
    Ok(crate::api::query_json::label_sets_response(
        &series, &warnings,
    ))
}

pub async fn label_names_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let matcher_sets = params.matcher_sets()?;
    let (mint, maxt) = params.time_range()?;
    let limit = params.limit()?;
    let store = state.store().clone();
    let names = run_blocking(move || {
        let querier = store.querier()?;
        if matcher_sets.is_empty() {
            return Ok(querier.label_names(mint, maxt, &[])?);
        }
        let mut union: BTreeSet<String> = BTreeSet::new();
        for matchers in &matcher_sets {
            union.extend(querier.label_names(mint, maxt, matchers)?);
        }
        Ok(union.into_iter().collect())
    })
    .await?;
    let (names, warnings) = truncate(names, limit);
    Ok(success_response(Value::from(names), warnings))
}

pub async fn label_values_handler(
    State(state): State<ApiState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Response, ApiError> {
    if name.is_empty() {
        return Err(ApiError::BadData(format!("invalid label name: {name:?}")));
    }
    let matcher_sets = params.matcher_sets()?;
    let (mint, maxt) = params.time_range()?;
    let limit = params.limit()?;
    let store = state.store().clone();
    let values = run_blocking(move || {
        let querier = store.querier()?;
        if matcher_sets.is_empty() {
            return Ok(querier.label_values(&name, mint, maxt, &[])?);
        }
        let mut union: BTreeSet<String> = BTreeSet::new();
        for matchers in &matcher_sets {
            union.extend(querier.label_values(&name, mint, maxt, matchers)?);
        }
        Ok(union.into_iter().collect())
    })
    .await?;
    let (values, warnings) = truncate(values, limit);
    Ok(success_response(Value::from(values), warnings))
}
