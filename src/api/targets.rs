//! Scrape state over HTTP, shaped as Prometheus answers it:
//! `/api/v1/targets` (`activeTargets`/`droppedTargets`, `state=` and
//! `scrapePool=` filters), `/api/v1/targets/metadata` (TYPE/HELP/UNIT as
//! scraped, `match_target`, `metric`, `limit`), and `POST|PUT /-/reload`,
//! which answers 403 unless `--web.enable-lifecycle` is set, as Prometheus
//! does, and 500 with the reason when the new configuration is refused.

use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::api::params::{Params, parse_selector};
use crate::api::series::{labels_to_json, success_response};
use crate::api::{ApiState, run_blocking};
use crate::model::{Timestamp, matches_all};
use crate::scrape::ScrapeManager;
use crate::scrape::relabel::LabelMap;

/// Reads the configuration file again and applies it to every part of
/// the server (scrape, rules, and whatever else the server wires in); the
/// error says what was rejected. Blocking.
pub type ConfigReloader = Arc<dyn Fn(&std::path::Path) -> Result<(), String> + Send + Sync>;

/// What the API needs to show and reload scraping.
pub struct ScrapeHooks {
    pub manager: Arc<ScrapeManager>,
    /// The file `POST /-/reload` reads again.
    pub config_file: Option<PathBuf>,
    pub enable_lifecycle: bool,
    pub reload: ConfigReloader,
}

fn label_map_json(labels: &LabelMap) -> Value {
    let mut object = Map::new();
    for (name, value) in labels {
        object.insert(name.clone(), Value::from(value.clone()));
    }
    Value::Object(object)
}

/// Go's duration style as Prometheus prints intervals: `1m`, `15s`, `1m30s`, `500ms`.
fn format_interval(millis: u64) -> String {
    if millis == 0 {
        return "0s".into();
    }
    let mut text = String::new();
    let mut rest = millis;
    for (unit, size) in [("h", 3_600_000u64), ("m", 60_000), ("s", 1000), ("ms", 1)] {
        if rest >= size {
            text.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    text
}

/// RFC 3339 in UTC with milliseconds; Go's zero time when never scraped.
pub fn format_rfc3339(timestamp: Option<Timestamp>) -> String {
    match timestamp {
        Some(millis) => crate::model::format_rfc3339_millis(millis),
        None => "0001-01-01T00:00:00Z".into(),
    }
}

fn hooks(state: &ApiState) -> Option<&ScrapeHooks> {
    state.scrape_hooks()
}

pub async fn targets_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let wanted_state = params.first("state").unwrap_or("any").to_ascii_lowercase();
    let show_active = matches!(wanted_state.as_str(), "any" | "active" | "");
    let show_dropped = matches!(wanted_state.as_str(), "any" | "dropped" | "");
    let pool_filter = params.first("scrapePool").map(str::to_string);
    let in_pool = |pool: &str| pool_filter.as_deref().is_none_or(|wanted| wanted == pool);
    let mut active = Vec::new();
    let mut dropped = Vec::new();
    let mut dropped_counts = Map::new();
    if let Some(hooks) = hooks(&state) {
        if show_active {
            for target in hooks.manager.active_targets() {
                if !in_pool(&target.scrape_pool) {
                    continue;
                }
                active.push(json!({
                    "discoveredLabels": label_map_json(&target.discovered_labels),
                    "labels": labels_to_json(&target.labels),
                    "scrapePool": target.scrape_pool,
                    "scrapeUrl": target.scrape_url,
                    "globalUrl": target.scrape_url,
                    "lastError": target.status.last_error,
                    "lastScrape": format_rfc3339(target.status.last_scrape_ms),
                    "lastScrapeDuration": target.status.last_scrape_duration_seconds,
                    "health": target.status.health.as_str(),
                    "scrapeInterval": format_interval(target.interval_ms),
                    "scrapeTimeout": format_interval(target.timeout_ms),
                }));
            }
        }
        for target in hooks.manager.dropped_targets() {
            if !in_pool(&target.scrape_pool) {
                continue;
            }
            let count = dropped_counts
                .entry(target.scrape_pool.clone())
                .or_insert(Value::from(0u64));
            *count = Value::from(count.as_u64().unwrap_or(0) + 1);
            if show_dropped {
                dropped.push(json!({
                    "discoveredLabels": label_map_json(&target.discovered_labels),
                    "scrapePool": target.scrape_pool,
                }));
            }
        }
    }
    Ok(success_response(
        json!({
            "activeTargets": active,
            "droppedTargets": dropped,
            "droppedTargetCounts": Value::Object(dropped_counts),
        }),
        Vec::new(),
    ))
}

pub async fn targets_metadata_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let matcher_sets = match params.first("match_target") {
        Some(selector) if !selector.is_empty() => parse_selector(selector)?,
        _ => vec![Vec::new()],
    };
    let metric_filter = params.first("metric").map(str::to_string);
    let limit = params.limit()?;
    let mut rows = Vec::new();
    if let Some(hooks) = hooks(&state) {
        for (labels, metric, metadata) in hooks.manager.target_metadata() {
            if !matcher_sets
                .iter()
                .any(|matchers| matches_all(matchers, &labels))
            {
                continue;
            }
            if metric_filter
                .as_deref()
                .is_some_and(|wanted| wanted != metric)
            {
                continue;
            }
            rows.push(json!({
                "target": labels_to_json(&labels),
                "metric": metric,
                "type": metadata.metric_type,
                "help": metadata.help,
                "unit": metadata.unit,
            }));
            if limit.is_some_and(|limit| rows.len() >= limit) {
                break;
            }
        }
    }
    Ok(success_response(Value::from(rows), Vec::new()))
}

pub async fn reload_handler(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let Some(hooks) = hooks(&state) else {
        return Ok((StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n").into_response());
    };
    if !hooks.enable_lifecycle {
        return Ok((StatusCode::FORBIDDEN, "Lifecycle API is not enabled.\n").into_response());
    }
    let Some(path) = hooks.config_file.clone() else {
        return Err(ApiError::Internal(
            "no --config.file was given; nothing to reload".into(),
        ));
    };
    let reload = hooks.reload.clone();
    // The managers spawn tasks: keep a runtime handle for the blocking worker.
    let runtime = tokio::runtime::Handle::current();
    run_blocking(move || {
        let _entered = runtime.enter();
        reload(&path).map_err(ApiError::Internal)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_and_times_print_like_prometheus() {
        assert_eq!(format_interval(60_000), "1m");
        assert_eq!(format_interval(90_000), "1m30s");
        assert_eq!(format_interval(15_000), "15s");
        assert_eq!(format_interval(500), "500ms");
        assert_eq!(
            format_rfc3339(Some(1_700_000_000_123)),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(format_rfc3339(None), "0001-01-01T00:00:00Z");
    }
}
