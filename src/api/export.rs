//! `GET|POST /api/v1/export`: raw samples as JSON lines in VictoriaMetrics's
//! shape, one series per line:
//!
//! ```text
//! {"metric":{"__name__":"up","job":"node"},"values":[1,0.5],"timestamps":[1700000000000,1700000015000]}
//! ```
//!
//! Values are written as VictoriaMetrics writes them (Go's
//! `strconv.AppendFloat(v, 'f', -1, 64)`): shortest round-trip decimal, no
//! exponent, and bare `NaN`, `+Inf`, `-Inf` tokens (so such a line is not
//! strict JSON; VictoriaMetrics's importer reads it back). Staleness markers
//! are written as `NaN` like any NaN. The selected series are formatted and
//! sent one line at a time through a bounded channel, so the response never
//! exists as one string.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::api::error::ApiError;
use crate::api::params::Params;
use crate::api::series::labels_to_json;
use crate::api::{ApiState, run_blocking};
use crate::model::Labels;
use crate::storage::Series;
use crate::telemetry::format_value;

/// Lines buffered between the formatting thread and the socket.
const EXPORT_CHANNEL_LINES: usize = 64;

pub async fn export_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    if params.first("match[]").is_none() {
        return Err(ApiError::BadData("missing `match[]` parameter".to_string()));
    }
    let matcher_sets = params.matcher_sets()?;
    let (mint, maxt) = params.time_range()?;
    let store = state.store().clone();
    let series = run_blocking(move || {
        let querier = store.querier()?;
        // Union of the match[] sets, in label order, each series once.
        let mut union: BTreeMap<Labels, Series> = BTreeMap::new();
        for matchers in &matcher_sets {
            for series in querier.select(mint, maxt, matchers)? {
                union.entry(series.labels.clone()).or_insert(series);
            }
        }
        Ok(union.into_values().collect::<Vec<_>>())
    })
    .await?;

    let (sender, receiver) =
        tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(EXPORT_CHANNEL_LINES);
    tokio::task::spawn_blocking(move || {
        for series in &series {
            if series.samples.is_empty() {
                continue;
            }
            let line = export_line(series);
            // A closed channel means the client went away; stop formatting.
            if sender.blocking_send(Ok(Bytes::from(line))).is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|line| (line, receiver))
    });
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, "application/stream+json; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// One series as a VictoriaMetrics export line, newline included.
pub fn export_line(series: &Series) -> String {
    let mut line = String::with_capacity(64 + series.samples.len() * 24);
    line.push_str("{\"metric\":");
    line.push_str(&labels_to_json(&series.labels).to_string());
    line.push_str(",\"values\":[");
    for (index, sample) in series.samples.iter().enumerate() {
        if index > 0 {
            line.push(',');
        }
        line.push_str(&format_value(sample.v));
    }
    line.push_str("],\"timestamps\":[");
    for (index, sample) in series.samples.iter().enumerate() {
        if index > 0 {
            line.push(',');
        }
        let _ = write!(line, "{}", sample.t);
    }
    line.push_str("]}\n");
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sample;

    #[test]
    fn line_has_victoriametrics_shape_and_exact_values() {
        let series = Series {
            labels: Labels::from_pairs([("__name__", "m"), ("job", "a\"b")]),
            samples: vec![
                Sample { t: 1, v: 1.0 },
                Sample { t: 2, v: 0.1 },
                Sample { t: 3, v: 1e21 },
                Sample { t: 4, v: f64::NAN },
                Sample {
                    t: 5,
                    v: f64::NEG_INFINITY,
                },
                Sample { t: 6, v: -0.0 },
                Sample { t: 7, v: 1.5e-7 },
            ],
        };
        assert_eq!(
            export_line(&series),
            "{\"metric\":{\"__name__\":\"m\",\"job\":\"a\\\"b\"},\"values\":[1,0.1,1000000000000000000000,NaN,-Inf,-0,0.00000015],\"timestamps\":[1,2,3,4,5,6,7]}\n"
        );
    }
}
