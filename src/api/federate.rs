//! `/federate?match[]=…`: the newest sample of every matching series within
//! the lookback window before now, in the text exposition format, so another
//! Prometheus (or guardia) can scrape this one. Series are grouped by metric
//! name, each group under `# TYPE <name> untyped` as Prometheus writes it,
//! names and series sorted, timestamps in milliseconds. A series whose newest
//! sample is a staleness marker is left out, as it has ended.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::{ApiState, run_blocking};
use crate::model::{Labels, METRIC_NAME, Sample, is_stale_nan};
use crate::telemetry::format_value;

pub async fn federate_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    if params.first("match[]").is_none() {
        return Err(ApiError::BadData(
            "no match[] parameter provided".to_string(),
        ));
    }
    let matcher_sets = params.matcher_sets()?;
    let maxt = state.clock().now_ms();
    let mint = maxt.saturating_sub(state.query_settings().engine.lookback_delta_ms);
    let store = state.store().clone();
    let latest = run_blocking(move || {
        let querier = store.querier()?;
        let mut latest: BTreeMap<Labels, Sample> = BTreeMap::new();
        for matchers in &matcher_sets {
            for series in querier.select(mint, maxt, matchers)? {
                if let Some(newest) = series.samples.last() {
                    latest.insert(series.labels, *newest);
                }
            }
        }
        Ok(latest)
    })
    .await?;
    let body = render_federation(&latest);
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        body,
    )
        .into_response())
}

/// The exposition text of `latest`, grouped by metric name.
pub fn render_federation(latest: &BTreeMap<Labels, Sample>) -> String {
    let mut by_metric: BTreeMap<&str, Vec<(&Labels, &Sample)>> = BTreeMap::new();
    for (labels, sample) in latest {
        if is_stale_nan(sample.v) {
            continue;
        }
        by_metric
            .entry(labels.metric_name().unwrap_or_default())
            .or_default()
            .push((labels, sample));
    }
    let mut out = String::new();
    for (metric_name, series) in by_metric {
        let _ = writeln!(out, "# TYPE {metric_name} untyped");
        for (labels, sample) in series {
            out.push_str(metric_name);
            let mut first = true;
            for label in labels.iter().filter(|label| label.name != METRIC_NAME) {
                out.push(if first { '{' } else { ',' });
                first = false;
                let _ = write!(out, "{}=\"", label.name);
                for character in label.value.chars() {
                    match character {
                        '\\' => out.push_str("\\\\"),
                        '"' => out.push_str("\\\""),
                        '\n' => out.push_str("\\n"),
                        other => out.push(other),
                    }
                }
                out.push('"');
            }
            if !first {
                out.push('}');
            }
            let _ = writeln!(out, " {} {}", format_value(sample.v), sample.t);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    #[test]
    fn ended_series_are_left_out_and_values_escaped() {
        let mut latest = BTreeMap::new();
        latest.insert(
            Labels::from_pairs([("__name__", "up"), ("job", "a\"b\\c\nd")]),
            Sample {
                t: 5,
                v: f64::INFINITY,
            },
        );
        latest.insert(
            Labels::from_pairs([("__name__", "up"), ("job", "gone")]),
            Sample {
                t: 6,
                v: stale_nan(),
            },
        );
        latest.insert(
            Labels::from_pairs([("__name__", "gone_metric")]),
            Sample {
                t: 7,
                v: stale_nan(),
            },
        );
        latest.insert(
            Labels::from_pairs([("__name__", "bare")]),
            Sample { t: -8, v: 0.5 },
        );
        assert_eq!(
            render_federation(&latest),
            "# TYPE bare untyped\n\
             bare 0.5 -8\n\
             # TYPE up untyped\n\
             up{job=\"a\\\"b\\\\c\\nd\"} +Inf 5\n"
        );
    }
}
