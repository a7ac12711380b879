//! `POST /api/v1/write`: Prometheus remote_write 1.0 (protobuf in a snappy
//! block). All or nothing: the request is decoded and every sample queued on
//! one appender; any invalid series drops the appender, so nothing of the
//! request is stored. 204 only after the commit is durable. Remote write 2.0
//! (`proto=io.prometheus.write.v2.Request`) is refused with 415, which tells
//! a Prometheus sender to fall back to 1.0. No `X-Prometheus-Remote-Write-*`
//! response headers are sent: they belong to 2.0.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use axum::response::Response;

use crate::api::error::ApiError;
use crate::api::ingest::{
    PROTOCOL_REMOTE_WRITE, commit_response, count_rejection, read_body_limited,
};
use crate::api::{ApiState, run_blocking};
use crate::ingest::remote_write::{Bytes, decode_write_request, decompress_snappy};
use crate::storage::CommitOutcome;

pub async fn remote_write(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    match write_request(&state, &headers, body).await {
        Ok(outcome) => Ok(commit_response(&state, PROTOCOL_REMOTE_WRITE, &outcome)),
        Err(error) => Err(count_rejection(&state, PROTOCOL_REMOTE_WRITE, error)),
    }
}

async fn write_request(
    state: &ApiState,
    headers: &HeaderMap,
    body: Body,
) -> Result<CommitOutcome, ApiError> {
    let header_text = |name| {
        headers.get(name).map(|value: &axum::http::HeaderValue| {
            value.to_str().unwrap_or("").to_ascii_lowercase()
        })
    };
    if let Some(encoding) = header_text(CONTENT_ENCODING)
        && !encoding.is_empty()
        && encoding != "snappy"
    {
        return Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding {encoding:?}; remote_write bodies are snappy block-compressed"
        )));
    }
    if let Some(content_type) = header_text(CONTENT_TYPE)
        && content_type.contains("io.prometheus.write.v2.request")
    {
        return Err(ApiError::UnsupportedMediaType(
            "remote write 2.0 (io.prometheus.write.v2.Request) is not supported; send remote write 1.0"
                .to_string(),
        ));
    }
    let limits = state.limits().clone();
    let compressed = read_body_limited(headers, body, limits.max_body_bytes).await?;
    let state = state.clone();
    run_blocking(move || {
        let uncompressed = decompress_snappy(&compressed, limits.max_body_bytes)?;
        let request = decode_write_request(Bytes::from(uncompressed), &limits)?;
        let store = state.store().clone();
        let mut appender = store.appender();
        for series in request.series(&limits) {
            let series = series?;
            let pairs = series.label_pairs();
            for sample in &series.samples {
                appender.append(&pairs, sample.t, sample.v)?;
            }
        }
        for (metric, metadata) in request.metadata() {
            appender.set_metadata(metric, &metadata);
        }
        Ok(appender.commit()?)
    })
    .await
}
