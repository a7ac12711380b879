//! Notifications: what happens to an alert after the rules fire it. The
//! routing tree picks receivers and grouping ([`route`]), inhibition rules
//! and silences mute alerts ([`inhibit`], [`silence`]); delivery through a
//! durable outbox to webhooks and Alertmanagers lives beside them. The
//! configuration is `config::notifications` (alertmanager.yml's shape).
//! This is the only module that sends alert traffic out of the process.

pub mod inhibit;
pub mod route;
pub mod silence;

use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notification state storage: {0}")]
    Storage(#[from] StorageError),
    #[error("corrupt stored notification state under key {key:?}: {reason}")]
    CorruptState { key: String, reason: String },
    #[error("silence {0} not found")]
    SilenceNotFound(String),
    /// Bad silence from the API: matchers, times, missing fields.
    #[error("{0}")]
    InvalidSilence(String),
    #[error("silence {0} is already expired")]
    SilenceAlreadyExpired(String),
}
