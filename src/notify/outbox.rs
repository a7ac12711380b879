//! The durable outbox of notifications, in `StateTable::Outbox`: what the
//! notifier needs after a crash to keep its promise — a notification due
//! before the crash is sent after the restart, never lost, and never sent
//! twice for the same group and state once it was delivered.
//!
//! Four kinds of records, each a postcard value behind a one-byte format
//! version, keyed by a one-byte kind prefix:
//!
//! ```text
//! key                                          value
//! 'g' route id 0x00 group key                  StoredGroup: the aggregation group's alerts,
//!                                              next flush time, whether it flushed before
//! 'd' integration key 0x00 group key           DeliveryRecord: fingerprints of the firing and
//!                                              resolved alerts last delivered, and when
//! 'm' integration key 0x00 group key           PendingMessage: a notification not yet
//!                                              delivered (at most one per integration and
//!                                              group: a newer state replaces an older one)
//! 'k' dedup key                                DirectMarker: `send_direct` was called with
//!                                              this key (kept DIRECT_DEDUP_RETENTION_MS)
//! integration key = receiver 0x1f kind 0x1f index   (kind: "webhook" | "alertmanager")
//! ```
//!
//! Order of writes and what a crash between them does:
//! 1. a group's state is written whenever its alerts change meaningfully
//!    and at each flush (with the next flush time), so a restart inside
//!    `group_wait` flushes at the original time;
//! 2. a pending message is written before the first attempt to send it;
//! 3. after a 2xx answer the delivery record is written, then the message
//!    deleted. **The one window that can still resend**: send → 2xx →
//!    crash before step 3's writes. The message is still pending at the
//!    restart and is sent again. Alertmanager is at-least-once in the same
//!    way (its notification log is written after the send); receivers that
//!    care deduplicate by `groupKey` and the alerts' fingerprints.
//!    A crash after the delivery record but before the delete also resends
//!    nothing: at start, a pending message whose digest equals its delivery
//!    record is dropped.
//!
//! Every value decoder returns an error on bad bytes and never panics.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Labels, Timestamp};
use crate::notify::webhook::NotificationAlert;
use crate::storage::{StateStore, StateTable, StorageError};

/// Format version written as the first byte of every outbox value.
pub const OUTBOX_FORMAT_VERSION: u8 = 1;

/// How long `send_direct` remembers a dedup key: a second call within this
/// time is a no-op (the SLA escalations retry with the same key).
pub const DIRECT_DEDUP_RETENTION_MS: i64 = 7 * 24 * 3_600_000;

/// The first retry waits this long; each further one twice as long.
pub const RETRY_BASE_DELAY_MS: i64 = 500;

/// Retries never wait longer than this (plus jitter): a receiver back from
/// an outage gets its notifications within five minutes.
pub const RETRY_MAX_DELAY_MS: i64 = 300_000;

const GROUP_PREFIX: u8 = b'g';
const DELIVERY_PREFIX: u8 = b'd';
const MESSAGE_PREFIX: u8 = b'm';
const DIRECT_PREFIX: u8 = b'k';

#[derive(Debug, Clone, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox storage: {0}")]
    Storage(#[from] StorageError),
    #[error("corrupt outbox record: {0}")]
    Corrupt(String),
    #[error("cannot encode outbox record: {0}")]
    Encode(String),
}

/// An alert as an aggregation group keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredAlert {
    pub labels: Labels,
    pub annotations: Labels,
    /// When it started firing (what receivers see as `startsAt`).
    pub starts_at: Timestamp,
    /// A firing alert's validity, a resolved alert's resolution time.
    pub ends_at: Timestamp,
    pub resolved: bool,
    pub generator_url: String,
    /// Last time the rules handed this alert on.
    pub updated_at: Timestamp,
}

impl StoredAlert {
    /// Resolved, or firing but not refreshed before its validity ran out
    /// (Alertmanager's `resolve_timeout` semantics for a silent source).
    pub fn is_resolved_at(&self, now: Timestamp) -> bool {
        self.resolved || self.ends_at <= now
    }
}

/// One aggregation group: the alerts of one route with the same group labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredGroup {
    pub route_id: String,
    /// The route's key as Alertmanager prints it, the first half of the group key.
    pub route_key: String,
    pub receiver: String,
    pub group_key: String,
    pub group_labels: Labels,
    pub alerts: Vec<StoredAlert>,
    pub next_flush_at: Timestamp,
    pub has_flushed: bool,
}

/// What an integration last got for a group (fingerprints sorted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub firing: Vec<u64>,
    pub resolved: Vec<u64>,
    pub delivered_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum IntegrationKind {
    Webhook,
    Alertmanager,
}

impl IntegrationKind {
    pub fn name(self) -> &'static str {
        match self {
            IntegrationKind::Webhook => "webhook",
            IntegrationKind::Alertmanager => "alertmanager",
        }
    }
}

/// One integration of a receiver: its `webhook_configs[index]` or
/// `alertmanager_configs[index]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntegrationId {
    pub receiver: String,
    pub kind: IntegrationKind,
    pub index: u32,
}

impl IntegrationId {
    pub fn key_text(&self) -> String {
        format!(
            "{}\u{1f}{}\u{1f}{}",
            self.receiver,
            self.kind.name(),
            self.index
        )
    }
}

/// A notification waiting for delivery to one integration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingMessage {
    pub integration: IntegrationId,
    pub group_key: String,
    pub group_labels: Labels,
    pub alerts: Vec<NotificationAlert>,
    /// Written to the delivery record after a 2xx; `None` for `send_direct`
    /// messages, which are deduplicated by their marker instead.
    pub digest: Option<DeliveryRecord>,
    pub created_at: Timestamp,
    pub attempts: u32,
    pub next_attempt_at: Timestamp,
}

impl PendingMessage {
    pub fn key(&self) -> Vec<u8> {
        integration_group_key(MESSAGE_PREFIX, &self.integration, &self.group_key)
    }
}

/// `send_direct` was called with a key at `created_at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectMarker {
    pub created_at: Timestamp,
}

fn integration_group_key(prefix: u8, integration: &IntegrationId, group_key: &str) -> Vec<u8> {
    let mut key = vec![prefix];
    key.extend_from_slice(integration.key_text().as_bytes());
    key.push(0);
    key.extend_from_slice(group_key.as_bytes());
    key
}

fn group_record_key(route_id: &str, group_key: &str) -> Vec<u8> {
    let mut key = vec![GROUP_PREFIX];
    key.extend_from_slice(route_id.as_bytes());
    key.push(0);
    key.extend_from_slice(group_key.as_bytes());
    key
}

fn direct_key(dedup_key: &str) -> Vec<u8> {
    let mut key = vec![DIRECT_PREFIX];
    key.extend_from_slice(dedup_key.as_bytes());
    key
}

/// Encodes a record behind the format version byte.
pub fn encode_record<T: Serialize>(record: &T) -> Result<Vec<u8>, OutboxError> {
    let mut bytes = vec![OUTBOX_FORMAT_VERSION];
    let body =
        postcard::to_stdvec(record).map_err(|error| OutboxError::Encode(error.to_string()))?;
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

/// Decodes a record written by [`encode_record`]. Never panics on any input.
pub fn decode_record<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, OutboxError> {
    match bytes.split_first() {
        Some((&OUTBOX_FORMAT_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|error| OutboxError::Corrupt(error.to_string()))
        }
        Some((version, _)) => Err(OutboxError::Corrupt(format!(
            "unknown outbox format version {version}"
        ))),
        None => Err(OutboxError::Corrupt("empty record".to_string())),
    }
}

/// Typed access to the outbox table. Every write is durable when it returns.
#[derive(Clone)]
pub struct Outbox {
    store: Arc<dyn StateStore>,
}

impl Outbox {
    pub fn new(store: Arc<dyn StateStore>) -> Outbox {
        Outbox { store }
    }

    fn scan<T: for<'de> Deserialize<'de>>(&self, prefix: u8) -> Result<Vec<T>, OutboxError> {
        let mut records = Vec::new();
        for (key, value) in self.store.scan_state(StateTable::Outbox, &[prefix])? {
            match decode_record(&value) {
                Ok(record) => records.push(record),
                Err(error) => {
                    // One bad record must not stop every other notification.
                    tracing::error!(key = %String::from_utf8_lossy(&key), %error, "skipping a corrupt outbox record");
                }
            }
        }
        Ok(records)
    }

    pub fn groups(&self) -> Result<Vec<StoredGroup>, OutboxError> {
        self.scan(GROUP_PREFIX)
    }

    pub fn put_group(&self, group: &StoredGroup) -> Result<(), OutboxError> {
        let key = group_record_key(&group.route_id, &group.group_key);
        self.store
            .put_state(StateTable::Outbox, &key, &encode_record(group)?)?;
        Ok(())
    }

    pub fn delete_group(&self, route_id: &str, group_key: &str) -> Result<(), OutboxError> {
        self.store
            .delete_state(StateTable::Outbox, &group_record_key(route_id, group_key))?;
        Ok(())
    }

    pub fn delivery(
        &self,
        integration: &IntegrationId,
        group_key: &str,
    ) -> Result<Option<DeliveryRecord>, OutboxError> {
        let key = integration_group_key(DELIVERY_PREFIX, integration, group_key);
        match self.store.get_state(StateTable::Outbox, &key)? {
            Some(bytes) => decode_record(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_delivery(
        &self,
        integration: &IntegrationId,
        group_key: &str,
        record: &DeliveryRecord,
    ) -> Result<(), OutboxError> {
        let key = integration_group_key(DELIVERY_PREFIX, integration, group_key);
        self.store
            .put_state(StateTable::Outbox, &key, &encode_record(record)?)?;
        Ok(())
    }

    /// Drops delivery records older than `older_than` (groups long gone).
    pub fn expire_deliveries(&self, older_than: Timestamp) -> Result<usize, OutboxError> {
        let mut removed = 0;
        for (key, value) in self
            .store
            .scan_state(StateTable::Outbox, &[DELIVERY_PREFIX])?
        {
            let expired = match decode_record::<DeliveryRecord>(&value) {
                Ok(record) => record.delivered_at < older_than,
                Err(_) => true,
            };
            if expired && self.store.delete_state(StateTable::Outbox, &key)? {
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub fn messages(&self) -> Result<Vec<PendingMessage>, OutboxError> {
        self.scan(MESSAGE_PREFIX)
    }

    pub fn message(
        &self,
        integration: &IntegrationId,
        group_key: &str,
    ) -> Result<Option<PendingMessage>, OutboxError> {
        let key = integration_group_key(MESSAGE_PREFIX, integration, group_key);
        match self.store.get_state(StateTable::Outbox, &key)? {
            Some(bytes) => decode_record(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_message(&self, message: &PendingMessage) -> Result<(), OutboxError> {
        self.store
            .put_state(StateTable::Outbox, &message.key(), &encode_record(message)?)?;
        Ok(())
    }

    pub fn delete_message(
        &self,
        integration: &IntegrationId,
        group_key: &str,
    ) -> Result<(), OutboxError> {
        let key = integration_group_key(MESSAGE_PREFIX, integration, group_key);
        self.store.delete_state(StateTable::Outbox, &key)?;
        Ok(())
    }

    pub fn direct_marker(&self, dedup_key: &str) -> Result<Option<DirectMarker>, OutboxError> {
        match self
            .store
            .get_state(StateTable::Outbox, &direct_key(dedup_key))?
        {
            Some(bytes) => decode_record(&bytes).map(Some),
            None => Ok(None),
        }
    }

    pub fn put_direct_marker(
        &self,
        dedup_key: &str,
        marker: &DirectMarker,
    ) -> Result<(), OutboxError> {
        self.store.put_state(
            StateTable::Outbox,
            &direct_key(dedup_key),
            &encode_record(marker)?,
        )?;
        Ok(())
    }

    /// Forgets dedup keys older than [`DIRECT_DEDUP_RETENTION_MS`].
    pub fn expire_direct_markers(&self, now: Timestamp) -> Result<usize, OutboxError> {
        let mut removed = 0;
        for (key, value) in self
            .store
            .scan_state(StateTable::Outbox, &[DIRECT_PREFIX])?
        {
            let expired = match decode_record::<DirectMarker>(&value) {
                Ok(marker) => marker.created_at + DIRECT_DEDUP_RETENTION_MS < now,
                Err(_) => true,
            };
            if expired && self.store.delete_state(StateTable::Outbox, &key)? {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// How long to wait before attempt `attempts + 1` after `attempts` failed
/// ones: exponential from [`RETRY_BASE_DELAY_MS`], capped at
/// [`RETRY_MAX_DELAY_MS`], plus up to a fifth more of jitter chosen by
/// `jitter_seed`, so that many messages failing together do not retry in
/// lockstep.
pub fn retry_delay_ms(attempts: u32, jitter_seed: u64) -> i64 {
    let doublings = attempts.saturating_sub(1).min(20);
    let delay = RETRY_BASE_DELAY_MS
        .saturating_mul(1_i64 << doublings)
        .min(RETRY_MAX_DELAY_MS);
    let jitter_range = (delay / 5).max(1) as u64;
    delay + (mix64(jitter_seed) % jitter_range) as i64
}

/// A 64-bit finaliser (splitmix64) to spread seeds over the jitter range.
fn mix64(seed: u64) -> u64 {
    let mut value = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap_with_bounded_jitter() {
        let mut previous_base = 0;
        for attempts in 1..=30 {
            let base = (RETRY_BASE_DELAY_MS << (attempts - 1).min(20)).min(RETRY_MAX_DELAY_MS);
            for seed in 0..50 {
                let delay = retry_delay_ms(attempts, seed);
                assert!(delay >= base, "attempt {attempts}: {delay} < {base}");
                assert!(
                    delay <= base + base / 5,
                    "attempt {attempts}: {delay} too long"
                );
            }
            assert!(base >= previous_base);
            previous_base = base;
        }
        assert_eq!(
            retry_delay_ms(1, 7) - retry_delay_ms(1, 7),
            0,
            "same seed, same delay"
        );
        assert!(retry_delay_ms(30, 1) <= RETRY_MAX_DELAY_MS + RETRY_MAX_DELAY_MS / 5);
        // Jitter actually varies with the seed.
        let distinct: std::collections::BTreeSet<i64> =
            (0..20).map(|seed| retry_delay_ms(12, seed)).collect();
        assert!(distinct.len() > 5);
    }

    #[test]
    fn decoder_rejects_bad_bytes_without_panicking() {
        assert!(decode_record::<StoredGroup>(&[]).is_err());
        assert!(decode_record::<StoredGroup>(&[9, 1, 2]).is_err());
        assert!(decode_record::<PendingMessage>(&[OUTBOX_FORMAT_VERSION, 0xff, 0xff]).is_err());
        let marker = DirectMarker { created_at: 42 };
        let bytes = encode_record(&marker).unwrap();
        assert_eq!(decode_record::<DirectMarker>(&bytes).unwrap(), marker);
        for cut in 0..bytes.len() {
            let _ = decode_record::<PendingMessage>(&bytes[..cut]);
        }
    }
}
