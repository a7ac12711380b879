//! PromQL over HTTP, answered as Prometheus answers: `/api/v1/query`
//! (instant), `/api/v1/query_range`, `/api/v1/format_query` (the parser's
//! pretty-printer) and `/api/v1/parse_query` (the AST as JSON, in the shape
//! of Prometheus 3's tree view). Parameters come from the query string or a
//! form-encoded POST body; times are RFC 3339 or Unix seconds, durations
//! float seconds or Prometheus durations (`15s`, `1m30s`).
//!
//! Evaluation runs in `spawn_blocking`. The engine checks its deadline
//! (`--query.timeout`, lowered by a `timeout` parameter) while it works; the
//! handler also stops waiting a moment after the deadline, so a query stuck
//! in one long storage read still gets its 503 on time.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::Response;
use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::params::{Params, parse_time};
use crate::api::query_json::query_response;
use crate::api::series::{TRUNCATED_WARNING, success_response};
use crate::api::{ApiState, Store};
use crate::config::parse_duration;
use crate::promql::{
    Engine, MAX_POINTS_PER_SERIES, QueryError, QueryOptions, QueryResult, Value as QueryValue,
};
use crate::storage::Queryable;

/// How long past the engine's own deadline the handler still waits for it.
const TIMEOUT_GRACE: Duration = Duration::from_millis(250);

pub fn invalid_parameter(name: &str, reason: &str) -> ApiError {
    ApiError::BadData(format!("invalid parameter {name:?}: {reason}"))
}

/// A Prometheus API duration: float seconds or a Prometheus duration string,
/// to milliseconds (sub-millisecond parts are truncated).
pub fn parse_api_duration(text: &str) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() {
            return Err(format!("cannot parse {text:?} to a valid duration"));
        }
        let millis = seconds * 1000.0;
        // Prometheus holds durations as int64 nanoseconds.
        if millis.abs() >= i64::MAX as f64 / 1_000_000.0 {
            return Err(format!(
                "cannot parse {text:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok(millis.trunc() as i64);
    }
    match parse_duration(text) {
        Ok(duration) => i64::try_from(duration.as_millis())
            .map_err(|_| format!("cannot parse {text:?} to a valid duration. It overflows int64")),
        Err(_) => Err(format!("cannot parse {text:?} to a valid duration")),
    }
}

fn optional_duration(params: &Params, name: &str) -> Result<Option<i64>, ApiError> {
    match params.first(name) {
        None | Some("") => Ok(None),
        Some(text) => parse_api_duration(text)
            .map(Some)
            .map_err(|reason| invalid_parameter(name, &reason)),
    }
}

/// The engine for one request: the server's settings with the timeout
/// lowered to the `timeout` parameter when that is shorter.
fn request_engine(state: &ApiState, params: &Params) -> Result<Engine, ApiError> {
    let mut options = state.query_settings().engine.clone();
    if let Some(timeout_ms) = optional_duration(params, "timeout")? {
        let requested = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
        if requested < options.timeout {
            options.timeout = requested;
        }
    }
    Ok(Engine::new(options))
}

fn query_options(params: &Params) -> Result<QueryOptions, ApiError> {
    Ok(QueryOptions {
        lookback_delta_ms: optional_duration(params, "lookback_delta")?
            .filter(|lookback| *lookback > 0),
    })
}

/// Runs `evaluate` off the runtime and waits at most the engine's timeout
/// (plus a grace) for it.
async fn evaluate<F>(state: &ApiState, engine: Engine, evaluate: F) -> Result<QueryResult, ApiError>
where
    F: FnOnce(&Engine, &dyn Queryable) -> Result<QueryResult, QueryError> + Send + 'static,
{
    let store: Arc<dyn Store> = state.store().clone();
    let wait = engine.options().timeout + TIMEOUT_GRACE;
    let task = tokio::task::spawn_blocking(move || evaluate(&engine, store.as_ref()));
    match tokio::time::timeout(wait, task).await {
        Err(_) => Err(ApiError::from(QueryError::Timeout)),
        Ok(Err(error)) => Err(ApiError::Internal(format!("query task failed: {error}"))),
        Ok(Ok(result)) => result.map_err(ApiError::from),
    }
}

/// Applies `limit` to vector and matrix results, adding Prometheus's warning.
fn apply_limit(result: &mut QueryResult, limit: Option<usize>) {
    let Some(limit) = limit else {
        return;
    };
    let truncated = match &mut result.value {
        QueryValue::Vector(samples) if samples.len() > limit => {
            samples.truncate(limit);
            true
        }
        QueryValue::Matrix(series) if series.len() > limit => {
            series.truncate(limit);
            true
        }
        _ => false,
    };
    if truncated {
        result.warnings.push(TRUNCATED_WARNING.to_string());
    }
}

pub async fn instant_query_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let time_ms = match params.first("time") {
        Some(text) if !text.is_empty() => {
            parse_time(text).map_err(|reason| invalid_parameter("time", &reason))?
        }
        _ => state.clock().now_ms(),
    };
    let engine = request_engine(&state, &params)?;
    let options = query_options(&params)?;
    let limit = params.limit()?;
    let expr = params.first("query").unwrap_or_default().to_string();
    let mut result = evaluate(&state, engine, move |engine, queryable| {
        engine.instant_query(queryable, &expr, time_ms, options)
    })
    .await?;
    apply_limit(&mut result, limit);
    Ok(query_response(&result))
}

pub async fn range_query_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let start_ms = parse_time(params.first("start").unwrap_or_default())
        .map_err(|reason| invalid_parameter("start", &reason))?;
    let end_ms = parse_time(params.first("end").unwrap_or_default())
        .map_err(|reason| invalid_parameter("end", &reason))?;
    if end_ms < start_ms {
        return Err(invalid_parameter(
            "end",
            "end timestamp must not be before start time",
        ));
    }
    let step_ms = parse_api_duration(params.first("step").unwrap_or_default())
        .map_err(|reason| invalid_parameter("step", &reason))?;
    if step_ms <= 0 {
        return Err(invalid_parameter(
            "step",
            "zero or negative query resolution step widths are not accepted. Try a positive integer",
        ));
    }
    // Prometheus's cap on points per series, which also bounds a query's memory.
    if (end_ms - start_ms) / step_ms > MAX_POINTS_PER_SERIES {
        return Err(ApiError::BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)"
                .to_string(),
        ));
    }
    let engine = request_engine(&state, &params)?;
    let options = query_options(&params)?;
    let limit = params.limit()?;
    let expr = params.first("query").unwrap_or_default().to_string();
    let mut result = evaluate(&state, engine, move |engine, queryable| {
        engine.range_query(queryable, &expr, start_ms, end_ms, step_ms, options)
    })
    .await?;
    apply_limit(&mut result, limit);
    Ok(query_response(&result))
}

fn parse_expression(text: &str) -> Result<promql_parser::parser::Expr, ApiError> {
    promql_parser::parser::parse(text)
        .map_err(|message| invalid_parameter("query", &format!("parse error: {message}")))
}

/// The `format_query` answer: `text` parsed and pretty-printed.
pub fn format_query(text: &str) -> Result<String, ApiError> {
    Ok(parse_expression(text)?.prettify())
}

/// The `parse_query` answer: the syntax tree of `text` as JSON.
pub fn parse_query_tree(text: &str) -> Result<Value, ApiError> {
    let expr = parse_expression(text)?;
    serde_json::to_value(&expr)
        .map_err(|error| ApiError::Internal(format!("cannot render the syntax tree: {error}")))
}

pub async fn format_query_handler(params: Params) -> Result<Response, ApiError> {
    let pretty = format_query(params.first("query").unwrap_or_default())?;
    Ok(success_response(Value::from(pretty), Vec::new()))
}

pub async fn parse_query_handler(params: Params) -> Result<Response, ApiError> {
    let tree = parse_query_tree(params.first("query").unwrap_or_default())?;
    Ok(success_response(tree, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_prometheus_reads_them() {
        assert_eq!(parse_api_duration("15"), Ok(15_000));
        assert_eq!(parse_api_duration("0.5"), Ok(500));
        assert_eq!(parse_api_duration("-1"), Ok(-1000));
        assert_eq!(parse_api_duration("15s"), Ok(15_000));
        assert_eq!(parse_api_duration("1m30s"), Ok(90_000));
        assert_eq!(parse_api_duration("100ms"), Ok(100));
        assert_eq!(
            parse_api_duration("fast"),
            Err("cannot parse \"fast\" to a valid duration".to_string())
        );
        assert!(parse_api_duration("1e300").is_err());
        assert!(parse_api_duration("NaN").is_err());
    }
}
