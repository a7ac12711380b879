//! What both push endpoints share: reading a body under
//! `--ingest.max-body-size` (Content-Length checked before reading, the
//! stream cut off as soon as it passes the limit, gzip inflated through a
//! capped reader so a compression bomb cannot allocate past the limit),
//! label-set checks against the ingest limits, and turning a
//! `CommitOutcome` into the response and the ingest counters.

use std::io::Read;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::api::ApiState;
use crate::api::error::ApiError;
use crate::config::IngestLimits;
use crate::storage::CommitOutcome;

/// Reads the whole body, refusing with 413 once it exceeds `limit_bytes`.
pub async fn read_body_limited(
    headers: &HeaderMap,
    body: Body,
    limit_bytes: usize,
) -> Result<Bytes, ApiError> {
    let too_large = |size: &str| {
        ApiError::PayloadTooLarge(format!(
            "request body of {size} bytes exceeds the limit of {limit_bytes} bytes (--ingest.max-body-size)"
        ))
    };
    let declared_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if let Some(declared) = declared_length
        && declared > limit_bytes as u64
    {
        return Err(too_large(&declared.to_string()));
    }
    let capacity = declared_length.map_or(0, |declared| declared as usize);
    let mut collected: Vec<u8> = Vec::with_capacity(capacity);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|error| ApiError::BadData(format!("error reading request body: {error}")))?;
        if collected.len() + chunk.len() > limit_bytes {
            return Err(too_large("more than that"));
        }
        collected.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(collected))
}

/// How a push body is encoded, from `Content-Encoding` and the gzip magic bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyEncoding {
    Identity,
    Gzip,
}

pub fn text_body_encoding(headers: &HeaderMap, body: &[u8]) -> Result<BodyEncoding, ApiError> {
    let declared = headers
        .get(CONTENT_ENCODING)
        .map(|value| value.to_str().unwrap_or("").trim().to_ascii_lowercase());
    match declared.as_deref() {
        Some("gzip" | "x-gzip") => Ok(BodyEncoding::Gzip),
        None | Some("" | "identity") if body.starts_with(&[0x1f, 0x8b]) => Ok(BodyEncoding::Gzip),
        None | Some("" | "identity") => Ok(BodyEncoding::Identity),
        Some(other) => Err(ApiError::UnsupportedMediaType(format!(
            "unsupported Content-Encoding {other:?}; send plain text or gzip"
        ))),
    }
}

/// Inflates a gzip body, refusing with 413 as soon as the output passes
/// `limit_bytes`; never holds more than `limit_bytes + 1` bytes of output.
pub fn gunzip_limited(compressed: &[u8], limit_bytes: usize) -> Result<Vec<u8>, ApiError> {
    let decoder = flate2::read::MultiGzDecoder::new(compressed);
    let mut inflated = Vec::new();
    decoder
        .take(limit_bytes as u64 + 1)
        .read_to_end(&mut inflated)
        .map_err(|error| ApiError::BadData(format!("invalid gzip body: {error}")))?;
    if inflated.len() > limit_bytes {
        return Err(ApiError::PayloadTooLarge(format!(
            "decompressed request body exceeds the limit of {limit_bytes} bytes (--ingest.max-body-size)"
        )));
    }
    Ok(inflated)
}

/// Checks one sorted label set against the per-series limits; the error
/// text names the limit and the flag that sets it.
pub fn check_label_limits(labels: &[(&str, &str)], limits: &IngestLimits) -> Result<(), String> {
    if labels.len() > limits.max_labels_per_series {
        return Err(format!(
            "{} labels, more than the limit of {} (--ingest.max-labels-per-series)",
            labels.len(),
            limits.max_labels_per_series
        ));
    }
    for (name, value) in labels {
        if name.len() > limits.max_label_name_length {
            return Err(format!(
                "label name of {} bytes, longer than the limit of {} (--ingest.max-label-name-length)",
                name.len(),
                limits.max_label_name_length
            ));
        }
        if value.len() > limits.max_label_value_length {
            return Err(format!(
                "value of label {name:?} is {} bytes, longer than the limit of {} (--ingest.max-label-value-length)",
                value.len(),
                limits.max_label_value_length
            ));
        }
    }
    Ok(())
}

pub fn too_many_series_message(limit: usize) -> String {
    format!("request has more than {limit} series (limit --ingest.max-series-per-request)")
}

/// 204 when every sample was stored; otherwise 200 with counts, examples and
/// warnings, so a client sees exactly what was not stored.
pub fn commit_response(
    state: &ApiState,
    protocol: &'static str,
    outcome: &CommitOutcome,
) -> Response {
    let metrics = state.metrics();
    metrics.count_samples(protocol, "appended", outcome.samples_appended);
    metrics.count_samples(protocol, "out_of_order", outcome.out_of_order);
    metrics.count_samples(protocol, "duplicate_timestamp", outcome.duplicate_timestamp);
    if outcome.rejected() == 0 {
        return StatusCode::NO_CONTENT.into_response();
    }
    let mut warnings = Vec::new();
    if outcome.out_of_order > 0 {
        warnings.push(format!(
            "{} samples rejected as out of order (older than the newest stored sample of their series)",
            outcome.out_of_order
        ));
    }
    if outcome.duplicate_timestamp > 0 {
        warnings.push(format!(
            "{} samples rejected as duplicate timestamps (same series and time as a stored sample, different value)",
            outcome.duplicate_timestamp
        ));
    }
    let body = serde_json::json!({
        "status": "success",
        "data": {
            "samplesAppended": outcome.samples_appended,
            "outOfOrder": outcome.out_of_order,
            "duplicateTimestamp": outcome.duplicate_timestamp,
            "examples": outcome.rejected_examples,
        },
        "warnings": warnings,
    });
    (StatusCode::OK, Json(body)).into_response()
}

/// Protocol label values of the push counters.
pub const PROTOCOL_TEXT: &str = "prometheus_text";
pub const PROTOCOL_REMOTE_WRITE: &str = "remote_write";

/// Counts a refused request by reason and passes the error on.
pub fn count_rejection(state: &ApiState, protocol: &'static str, error: ApiError) -> ApiError {
    state
        .metrics()
        .reject_request(protocol, error.ingest_reject_reason());
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(&vec![b'a'; 4 << 20]).unwrap();
        let compressed = encoder.finish().unwrap();
        assert!(compressed.len() < 64 << 10);
        let error = gunzip_limited(&compressed, 1 << 20).unwrap_err();
        assert!(matches!(error, ApiError::PayloadTooLarge(_)), "{error}");
        assert_eq!(gunzip_limited(&compressed, 4 << 20).unwrap().len(), 4 << 20);
    }

    #[test]
    fn encoding_is_detected_by_header_or_magic() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            text_body_encoding(&headers, b"\x1f\x8b\x08").unwrap(),
            BodyEncoding::Gzip
        );
        assert_eq!(
            text_body_encoding(&headers, b"up 1").unwrap(),
            BodyEncoding::Identity
        );
        headers.insert(CONTENT_ENCODING, "zstd".parse().unwrap());
        assert!(matches!(
            text_body_encoding(&headers, b"up 1"),
            Err(ApiError::UnsupportedMediaType(_))
        ));
    }
}
