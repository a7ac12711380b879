//! The one place errors become HTTP responses. Every handler returns
//! `Result<_, ApiError>`; this module maps each kind to its status code and
//! Prometheus's error JSON (`{"status":"error","errorType":..,"error":..}`),
//! and decides how loudly to log: bad input is the client's business and is
//! logged at debug level only.

use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use crate::ingest::remote_write::RemoteWriteError;
use crate::promql::QueryError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed or refused input: 400 `bad_data`.
    #[error("{0}")]
    BadData(String),
    /// Body (or its decompressed form) over `--ingest.max-body-size`: 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// A body encoding or protocol version guardia does not speak: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The store refuses writes (poisoned after a failed commit, or closing): 503.
    #[error("{0}")]
    Unavailable(String),
    /// A query that parsed but cannot be evaluated, or needs too many
    /// samples: 422 `execution`.
    #[error("{0}")]
    Execution(String),
    /// A query that ran past its timeout: 503 `timeout`.
    #[error("{0}")]
    Timeout(String),
    /// Anything that is guardia's fault: 500.
    #[error("{0}")]
    Internal(String),
    /// No such object (an unknown incident id): 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// An action the object's state refuses (acknowledging a resolved
    /// incident): 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// A refused credential (a bad or expired signed link): 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadData(_) => StatusCode::BAD_REQUEST,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) | ApiError::Timeout(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Execution(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        }
    }

    /// Prometheus's `errorType` vocabulary.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::BadData(_) | ApiError::PayloadTooLarge(_) => "bad_data",
            ApiError::UnsupportedMediaType(_) => "not_acceptable",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Execution(_) => "execution",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Forbidden(_) => "forbidden",
        }
    }

    /// The reason label used by the `guardia_push_requests_rejected_total` counter.
    pub fn ingest_reject_reason(&self) -> &'static str {
        match self {
            ApiError::BadData(_) => "bad_data",
            ApiError::PayloadTooLarge(_) => "too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Execution(_) => "execution",
            ApiError::Timeout(_) => "timeout",
            ApiError::Internal(_) => "internal",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Forbidden(_) => "forbidden",
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(error: StorageError) -> ApiError {
        match error {
            StorageError::Poisoned(_) | StorageError::Closed => {
                ApiError::Unavailable(error.to_string())
            }
            StorageError::InvalidSeries(_) => ApiError::BadData(error.to_string()),
            StorageError::Backend(_) | StorageError::Corrupt(_) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

/// Prometheus's classes: a parse error is the `query` parameter's fault
/// (400), evaluation failures and the sample limit are 422, timeouts 503.
impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> ApiError {
        match error {
            QueryError::Parse { message } => {
                ApiError::BadData(format!("invalid parameter \"query\": {message}"))
            }
            QueryError::Execution(_) | QueryError::TooManySamples => {
                ApiError::Execution(error.to_string())
            }
            QueryError::Timeout => ApiError::Timeout(error.to_string()),
            QueryError::Storage(storage) => ApiError::from(storage),
        }
    }
}

impl From<RemoteWriteError> for ApiError {
    fn from(error: RemoteWriteError) -> ApiError {
        if error.is_too_large() {
            ApiError::PayloadTooLarge(error.to_string())
        } else {
            ApiError::BadData(error.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(message) => tracing::error!(%message, "request failed"),
            ApiError::Unavailable(message) => tracing::warn!(%message, "request refused"),
            other => tracing::debug!(message = %other, "bad request"),
        }
        let body = serde_json::json!({
            "status": "error",
            "errorType": self.error_type(),
            "error": self.to_string(),
        });
        (
            status,
            [(CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// Unknown ids are 404, refused transitions 409, storage trouble as storage.
impl From<crate::sla::manager::SlaError> for ApiError {
    fn from(error: crate::sla::manager::SlaError) -> ApiError {
        use crate::sla::manager::SlaError;
        match error {
            SlaError::UnknownIncident(_) => ApiError::NotFound(error.to_string()),
            SlaError::Transition(_) => ApiError::Conflict(error.to_string()),
            SlaError::NotConfigured => ApiError::Unavailable(error.to_string()),
            SlaError::Storage(storage) => ApiError::from(storage),
            SlaError::Corrupt { .. } => ApiError::Internal(error.to_string()),
        }
    }
}

impl From<crate::sla::manager::AckLinkError> for ApiError {
    fn from(error: crate::sla::manager::AckLinkError) -> ApiError {
        ApiError::Forbidden(error.to_string())
    }
}

/// The notifier's errors as the silence API classes them: an unknown id
/// is 404, a bad silence 400, everything else (an already expired silence
/// included, as in Alertmanager) 500.
impl From<crate::notify::NotifyError> for ApiError {
    fn from(error: crate::notify::NotifyError) -> ApiError {
        use crate::notify::NotifyError;
        match error {
            NotifyError::SilenceNotFound(_) => ApiError::NotFound(error.to_string()),
            NotifyError::InvalidSilence(_) => ApiError::BadData(error.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// An [`ApiError`] answered in Alertmanager's v2 shape rather than
/// Prometheus's: the same status code, and a body that is just the message
/// as a JSON string. The `/api/v2/...` endpoints return it, so `amtool`
/// and Grafana's Alertmanager data source read the errors they expect.
#[derive(Debug)]
pub struct AlertmanagerError(pub ApiError);

impl<E: Into<ApiError>> From<E> for AlertmanagerError {
    fn from(error: E) -> AlertmanagerError {
        AlertmanagerError(error.into())
    }
}

impl IntoResponse for AlertmanagerError {
    fn into_response(self) -> Response {
        let AlertmanagerError(error) = self;
        let status = error.status();
        if let ApiError::Internal(message) = &error {
            tracing::error!(%message, "request failed");
        }
        let body = serde_json::Value::String(error.to_string()).to_string();
        (status, [(CONTENT_TYPE, "application/json")], body).into_response()
    }
}
