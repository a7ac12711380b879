//! Notifications: what happens to an alert after the rules fire it. The
//! routing tree picks receivers and grouping ([`route`]), inhibition rules
//! and silences mute alerts ([`inhibit`], [`silence`]); the [`dispatch`]er
//! keeps Alertmanager's aggregation groups and timers, the [`outbox`] makes
//! every due notification durable before it is sent, and the
//! [`Notifier`] ([`notifier`]) runs it all on one worker thread and sends
//! Alertmanager's [`webhook`] JSON (version 4) or posts to a real
//! [`alertmanager`]. The configuration is `config::notifications`
//! (alertmanager.yml's shape). This is the only module that sends alert
//! traffic out of the process.

pub mod alertmanager;
pub mod dispatch;
pub mod inhibit;
pub mod notifier;
pub mod outbox;
pub mod route;
pub mod silence;
pub mod webhook;

pub use notifier::Notifier;

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
    #[error("notification outbox: {0}")]
    Outbox(#[from] outbox::OutboxError),
    /// `send_direct` named a receiver the configuration does not have.
    #[error("no receiver named {0:?} is configured")]
    UnknownReceiver(String),
    #[error("cannot start the notifier: {0}")]
    Worker(String),
    #[error("the notifier has stopped")]
    Stopped,
}
