//! `GET /api/v1/sla/report?from=&to=&policy=`: per policy, the figures of
//! `sla::report` over `[from, to)` (default: the last 30 days up to now),
//! in the Prometheus envelope.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use crate::api::error::ApiError;
use crate::api::params::{Params, parse_time};
use crate::api::series::success_response;
use crate::api::{ApiState, run_blocking};
use crate::model::format_rfc3339_millis;
use crate::sla::report::sla_report;

/// The period a report covers when `from` is not given.
pub const DEFAULT_REPORT_PERIOD_MS: i64 = 30 * 24 * 3_600_000;

pub async fn report_handler(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Response, ApiError> {
    let manager = state.sla_manager().cloned().ok_or_else(|| {
        ApiError::Unavailable("SLA reports need a store with state tables".into())
    })?;
    let now = state.clock().now_ms();
    let time = |name: &str| -> Result<Option<i64>, ApiError> {
        params
            .first(name)
            .filter(|text| !text.is_empty())
            .map(|text| {
                parse_time(text).map_err(|reason| {
                    ApiError::BadData(format!("invalid parameter {name:?}: {reason}"))
                })
            })
            .transpose()
    };
    let to = time("to")?.unwrap_or(now);
    let from = time("from")?.unwrap_or(to - DEFAULT_REPORT_PERIOD_MS);
    if to < from {
        return Err(ApiError::BadData(
            "invalid parameter \"to\": before \"from\"".into(),
        ));
    }
    let policy = params
        .first("policy")
        .filter(|text| !text.is_empty())
        .map(str::to_string);
    run_blocking(move || {
        let policies = manager.policies();
        if let Some(name) = &policy
            && policies.policy(name).is_none()
        {
            return Err(ApiError::BadData(format!(
                "invalid parameter \"policy\": no SLA policy named {name:?}"
            )));
        }
        let incidents = manager.all_incidents()?;
        let reports = sla_report(&incidents, &policies, from, to, policy.as_deref(), now);
        let reports = serde_json::to_value(&reports)
            .map_err(|error| ApiError::Internal(format!("cannot render the report: {error}")))?;
        let data: Value = json!({
            "from": format_rfc3339_millis(from),
            "to": format_rfc3339_millis(to),
            "policies": reports,
        });
        Ok(success_response(data, Vec::new()))
    })
    .await
}
