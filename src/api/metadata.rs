//! Metric metadata and exemplars: `/api/v1/metadata` answers
//! `{"<metric>":[{"type":..,"help":..,"unit":..}]}` from
//! `Queryable::metadata()` (the `# TYPE`/`# HELP`/`# UNIT` lines pushed with
//! the samples), filtered by `metric` and cut by `limit` (metrics) and
//! `limit_per_metric` (0 there means no limit); `/api/v1/query_exemplars` validates its parameters as
//! Prometheus does and answers an empty list, as guardia stores no exemplars.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::query::parse_query_tree;
use crate::api::series::success_response;
use crate::api::{ApiState, run_blocking};

/// A Prometheus metadata limit: absent or negative means none.
fn metadata_limit(params: &Params, name: &str) -> Result<Option<usize>, ApiError> {
    match params.first(name) {
        None | Some("") => Ok(None),
        Some(text) => {
            let limit: i64 = text
                .parse()
                .map_err(|_| ApiError::BadData(format!("{name} must be a number")))?;
            Ok(usize::try_from(limit).ok())
        }
    }
}

pub async fn metadata_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let limit = metadata_limit(&params, "limit")?;
    let limit_per_metric = metadata_limit(&params, "limit_per_metric")?;
    let metric_filter = params
        .first("metric")
        .filter(|metric| !metric.is_empty())
        .map(str::to_string);
    let store = state.store().clone();
    let mut families = run_blocking(move || Ok(store.metadata())).await?;
    families.sort_by(|left, right| left.0.cmp(&right.0));
    let mut data = Map::new();
    for (metric, metadata) in families {
        if limit.is_some_and(|limit| data.len() >= limit) {
            break;
        }
        if metric_filter
            .as_ref()
            .is_some_and(|wanted| *wanted != metric)
        {
            continue;
        }
        let mut entries = vec![serde_json::json!({
            "type": metadata.metric_type,
            "help": metadata.help,
            "unit": metadata.unit,
        })];
        // As in Prometheus, 0 means no per-metric limit (unlike `limit`).
        if let Some(per_metric) = limit_per_metric.filter(|per_metric| *per_metric > 0) {
            entries.truncate(per_metric);
        }
        data.insert(metric, Value::from(entries));
    }
    Ok(success_response(Value::Object(data), Vec::new()))
}

pub async fn query_exemplars_handler(params: Params) -> Result<Response, ApiError> {
    let (_mint, _maxt) = params.time_range()?;
    parse_query_tree(params.first("query").unwrap_or_default())?;
    Ok(success_response(Value::Array(Vec::new()), Vec::new()))
}
