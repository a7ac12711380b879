//! The incident manager: receives the alerts of every rule evaluation
//! (as a `rules::AlertSink`, buffered), opens and updates incidents under
//! the policies, and on each [`SlaManager::tick`] applies what
//! `incident::due_actions` says is due, **persists the incident first and
//! pages second**, writes the `guardia_sla_*` series and checks the
//! heartbeats. Pages leave through a [`PageSink`] (the notifier implements
//! it; `sla` is below `notify` and cannot name it).
//!
//! # Why a page is never lost nor doubled
//!
//! A page is an `Escalated` or `Breached` event in a stored timeline plus
//! a call to the sink with the event's dedup key. The event is durable
//! before the call. Which keys were handed to the sink is kept in memory
//! only: after a restart (or a sink error) every page event of an active
//! incident is handed over again under its own key, and the sink, being
//! idempotent by key, drops the ones it already holds. A crash between the
//! store and the sink therefore re-sends, never loses. The events also say
//! which steps were done, so no tick (and no clock jump) repeats one.
//!
//! # Stored layout (`StateTable::Incidents`)
//!
//! ```text
//! key "incident/" ++ id (u64 big-endian)  → value: version (u8 = 1) ++ postcard(Incident)
//! key "secret/ack-link"                   → 32 random bytes, the ack-link HMAC key
//! ```
//!
//! Big-endian ids keep the scan in id order; a new id is one above the
//! largest stored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use hmac::{KeyInit, Mac};
use parking_lot::{Mutex, RwLock};

use crate::config::sla::HeartbeatConfig;
use crate::model::{Label, Labels, Timestamp};
use crate::rules::{AlertSink, OutgoingAlert};
use crate::sla::heartbeat::HeartbeatTracker;
use crate::sla::incident::{
    DueAction, EventKind, Incident, IncidentId, IncidentState, TransitionError, breach_dedup_key,
    clocks, due_actions, escalation_dedup_key,
};
use crate::sla::policy::{Policy, PolicySet};
use crate::sla::report::SlaTotals;
use crate::storage::{Appendable, Queryable, StateStore, StateTable, StorageError};

/// Where escalations and breach notices leave `sla`. Durable when it
/// returns, and idempotent by `dedup_key`: a second call with a key it has
/// seen is a no-op (see the module doc for why that matters).
pub trait PageSink: Send + Sync {
    fn page(&self, receiver: &str, dedup_key: &str, alert: &OutgoingAlert) -> Result<(), String>;
}

/// How often the `guardia_sla_*` series are written and heartbeats checked.
pub const SERIES_INTERVAL_MS: i64 = 15_000;

/// How long a signed acknowledgement link stays valid after its page.
pub const ACK_LINK_VALIDITY_MS: i64 = 24 * 3_600_000;

/// How far ahead of its page an SLA alert's `ends_at` is set, so a
/// receiver that hears nothing more resolves it by itself.
const PAGE_VALIDITY_MS: i64 = 3_600_000;

/// Bound on due-action rounds per incident and tick: a re-open makes a
/// new round due at once, nothing else chains.
const MAX_ACTION_ROUNDS_PER_TICK: usize = 8;

const INCIDENT_KEY_PREFIX: &[u8] = b"incident/";
const ACK_LINK_SECRET_KEY: &[u8] = b"secret/ack-link";
const INCIDENT_RECORD_VERSION: u8 = 1;

#[derive(Debug, Clone, thiserror::Error)]
pub enum SlaError {
    #[error("incident storage: {0}")]
    Storage(#[from] StorageError),
    #[error("corrupt incident record {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("unknown incident {0}")]
    UnknownIncident(IncidentId),
    #[error(transparent)]
    Transition(#[from] TransitionError),
    #[error("SLA is not configured on this server")]
    NotConfigured,
}

/// Decodes one stored incident value. Never panics, whatever the bytes.
pub fn decode_incident_record(bytes: &[u8]) -> Result<Incident, String> {
    match bytes.split_first() {
        Some((&INCIDENT_RECORD_VERSION, body)) => {
            postcard::from_bytes(body).map_err(|error| error.to_string())
        }
        Some((version, _)) => Err(format!("unknown incident record version {version}")),
        None => Err("empty incident record".to_string()),
    }
}

pub fn encode_incident_record(incident: &Incident) -> Result<Vec<u8>, String> {
    let mut bytes = vec![INCIDENT_RECORD_VERSION];
    let body = postcard::to_stdvec(incident).map_err(|error| error.to_string())?;
    bytes.extend_from_slice(&body);
    Ok(bytes)
}

fn incident_key(id: IncidentId) -> Vec<u8> {
    let mut key = INCIDENT_KEY_PREFIX.to_vec();
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// Reads every stored incident, in id order.
pub fn load_all_incidents(state_store: &dyn StateStore) -> Result<Vec<Incident>, SlaError> {
    let entries = state_store.scan_state(StateTable::Incidents, INCIDENT_KEY_PREFIX)?;
    let mut incidents = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match decode_incident_record(&value) {
            Ok(incident) => incidents.push(incident),
            Err(reason) => {
                return Err(SlaError::Corrupt {
                    key: String::from_utf8_lossy(&key).into_owned(),
                    reason,
                });
            }
        }
    }
    Ok(incidents)
}

/// Signs and checks acknowledgement links: HMAC-SHA256 over
/// `id|by|expires` with a random key kept in the incidents table.
#[derive(Clone)]
pub struct AckLinkSigner {
    secret: Vec<u8>,
}

/// Why a signed link is refused (the API answers 403 with the reason).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckLinkError {
    #[error("the acknowledgement link expired")]
    Expired,
    #[error("the acknowledgement link's signature is not valid")]
    BadSignature,
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

impl AckLinkSigner {
    pub fn from_secret(secret: Vec<u8>) -> AckLinkSigner {
        AckLinkSigner { secret }
    }

    /// The stored key, or a new random one stored for next time.
    pub fn load_or_create(state_store: &dyn StateStore) -> Result<AckLinkSigner, SlaError> {
        if let Some(secret) = state_store.get_state(StateTable::Incidents, ACK_LINK_SECRET_KEY)?
            && secret.len() >= 16
        {
            return Ok(AckLinkSigner { secret });
        }
        let mut secret = vec![0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|error| StorageError::Backend(format!("no randomness: {error}")))?;
        state_store.put_state(StateTable::Incidents, ACK_LINK_SECRET_KEY, &secret)?;
        Ok(AckLinkSigner { secret })
    }

    /// `None` never happens (HMAC takes keys of any length), but the
    /// library's signature says it could, and a link is no reason to panic.
    fn mac(&self, id: IncidentId, by: &str, expires: Timestamp) -> Option<HmacSha256> {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret).ok()?;
        mac.update(format!("{id}|{by}|{expires}").as_bytes());
        Some(mac)
    }

    pub fn sign(&self, id: IncidentId, by: &str, expires: Timestamp) -> String {
        let Some(mac) = self.mac(id, by, expires) else {
            return String::new();
        };
        let code = mac.finalize().into_bytes();
        code.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    pub fn verify(
        &self,
        id: IncidentId,
        by: &str,
        expires: Timestamp,
        signature_hex: &str,
        now: Timestamp,
    ) -> Result<(), AckLinkError> {
        let signature = decode_hex(signature_hex).ok_or(AckLinkError::BadSignature)?;
        self.mac(id, by, expires)
            .ok_or(AckLinkError::BadSignature)?
            .verify_slice(&signature)
            .map_err(|_| AckLinkError::BadSignature)?;
        if now > expires {
            return Err(AckLinkError::Expired);
        }
        Ok(())
    }

    /// The link path and query, to put under the external URL.
    pub fn link(&self, external_url: &str, id: IncidentId, by: &str, expires: Timestamp) -> String {
        format!(
            "{}/api/v1/incidents/{id}/ack-link?by={}&expires={expires}&sig={}",
            external_url.trim_end_matches('/'),
            percent_encode(by),
            self.sign(id, by, expires)
        )
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&text[index..index + 2], 16).ok())
        .collect()
}

/// Query-component encoding of everything but unreserved characters.
pub fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Which incidents a listing wants; `None` fields match everything.
#[derive(Clone, Debug, Default)]
pub struct IncidentFilter {
    pub state: Option<IncidentState>,
    pub policy: Option<String>,
    pub layer: Option<String>,
    /// Incidents open at some instant of `[from, to]`.
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
}

impl IncidentFilter {
    pub fn matches(&self, incident: &Incident) -> bool {
        if let Some(state) = self.state
            && incident.state() != state
        {
            return false;
        }
        if let Some(policy) = &self.policy
            && &incident.policy != policy
        {
            return false;
        }
        if let Some(layer) = &self.layer
            && incident.label("layer") != Some(layer.as_str())
        {
            return false;
        }
        if let Some(to) = self.to
            && incident.opened_at() > to
        {
            return false;
        }
        if let Some(from) = self.from
            && incident
                .resolved_at()
                .is_some_and(|resolved| resolved < from)
        {
            return false;
        }
        true
    }
}

/// The SLA part of the configuration as the manager uses it.
#[derive(Clone, Default)]
pub struct SlaSettings {
    pub policies: Arc<PolicySet>,
    pub heartbeats: Vec<HeartbeatConfig>,
    /// `--web.external-url`, for acknowledgement links.
    pub external_url: String,
}

impl SlaSettings {
    /// The settings of a configuration's `sla:` section (none: no policies).
    pub fn from_config(
        config: Option<&crate::config::sla::SlaConfig>,
        external_url: &str,
    ) -> Result<SlaSettings, crate::sla::policy::PolicyError> {
        let Some(config) = config else {
            return Ok(SlaSettings {
                external_url: external_url.to_string(),
                ..SlaSettings::default()
            });
        };
        Ok(SlaSettings {
            policies: Arc::new(PolicySet::from_config(config)?),
            heartbeats: config.heartbeats.clone(),
            external_url: external_url.to_string(),
        })
    }
}

struct ManagerState {
    settings: SlaSettings,
    /// Incidents that are not finished (see `Incident::is_finished`), by id.
    active: BTreeMap<IncidentId, Incident>,
    next_id: IncidentId,
    /// Dedup keys handed to the sink since start.
    sent_keys: HashSet<String>,
    /// Figures of the finished incidents, for the series.
    finished_totals: SlaTotals,
    last_series_write: Option<Timestamp>,
    heartbeats: HeartbeatTracker,
}

/// See the module doc.
pub struct SlaManager {
    state_store: Arc<dyn StateStore>,
    series_store: Option<Arc<dyn Appendable>>,
    query_store: Option<Arc<dyn Queryable>>,
    page_sink: RwLock<Option<Arc<dyn PageSink>>>,
    signer: AckLinkSigner,
    /// Alerts received since the last tick, with their evaluation time.
    inbox: Mutex<Vec<(Timestamp, Vec<OutgoingAlert>)>>,
    state: Mutex<ManagerState>,
}

impl SlaManager {
    /// Loads stored incidents (active ones continue where they were) and the
    /// ack-link key. `series_store` receives the `guardia_sla_*` series,
    /// `query_store` is read for heartbeats.
    pub fn open(
        state_store: Arc<dyn StateStore>,
        series_store: Option<Arc<dyn Appendable>>,
        query_store: Option<Arc<dyn Queryable>>,
        settings: SlaSettings,
    ) -> Result<Arc<SlaManager>, SlaError> {
        let signer = AckLinkSigner::load_or_create(state_store.as_ref())?;
        let mut active = BTreeMap::new();
        let mut next_id = 1;
        let mut finished_totals = SlaTotals::default();
        for incident in load_all_incidents(state_store.as_ref())? {
            next_id = next_id.max(incident.id + 1);
            if incident.is_finished() {
                finished_totals.add_incident(&incident, &settings.policies);
            } else {
                active.insert(incident.id, incident);
            }
        }
        tracing::info!(active = active.len(), next_id, "SLA incidents loaded");
        let heartbeats = HeartbeatTracker::new(&settings.heartbeats);
        Ok(Arc::new(SlaManager {
            state_store,
            series_store,
            query_store,
            page_sink: RwLock::new(None),
            signer,
            inbox: Mutex::new(Vec::new()),
            state: Mutex::new(ManagerState {
                settings,
                active,
                next_id,
                sent_keys: HashSet::new(),
                finished_totals,
                last_series_write: None,
                heartbeats,
            }),
        }))
    }

    /// Where pages go. Until one is set, pages wait (their events are stored).
    pub fn set_page_sink(&self, sink: Arc<dyn PageSink>) {
        *self.page_sink.write() = Some(sink);
    }

    /// New policies and heartbeats (configuration reload); incidents stay.
    pub fn update_settings(&self, settings: SlaSettings) {
        let mut state = self.state.lock();
        state.heartbeats.configure(&settings.heartbeats);
        state.settings = settings;
    }

    pub fn policies(&self) -> Arc<PolicySet> {
        self.state.lock().settings.policies.clone()
    }

    pub fn signer(&self) -> &AckLinkSigner {
        &self.signer
    }

    /// True while an unreachable-site incident inhibits alerts with these
    /// labels (the notifier asks before sending).
    pub fn is_inhibited(&self, labels: &Labels) -> bool {
        self.state.lock().heartbeats.is_inhibited(labels)
    }

    /// One step of the manager at `now`: alerts received since the last
    /// tick, heartbeats, due actions (persisted, then paged), series.
    pub fn tick(&self, now: Timestamp) {
        let received = std::mem::take(&mut *self.inbox.lock());
        let mut state = self.state.lock();
        let state = &mut *state;
        let mut changed: HashSet<IncidentId> = HashSet::new();
        for (evaluated_at, alerts) in received {
            for alert in alerts {
                self.take_alert(state, &alert, evaluated_at, &mut changed);
            }
        }
        let series_due = state
            .last_series_write
            .is_none_or(|last| now - last >= SERIES_INTERVAL_MS || now < last);
        if series_due && let Some(query_store) = &self.query_store {
            self.check_heartbeats(state, query_store.as_ref(), now, &mut changed);
        }
        let ids: Vec<IncidentId> = state.active.keys().copied().collect();
        for id in ids {
            let Some(incident) = state.active.get_mut(&id) else {
                continue;
            };
            let Some(policy) = state.settings.policies.policy(&incident.policy).cloned() else {
                continue;
            };
            for _ in 0..MAX_ACTION_ROUNDS_PER_TICK {
                let actions = due_actions(incident, &policy, now);
                if actions.is_empty() {
                    break;
                }
                for action in &actions {
                    if let DueAction::Escalate { tier, repeat, .. } = action {
                        tracing::info!(incident = id, tier, repeat, "SLA escalation due");
                    }
                    incident.apply(action, now);
                }
                changed.insert(id);
            }
        }
        let mut unstored: HashSet<IncidentId> = HashSet::new();
        for id in &changed {
            if let Some(incident) = state.active.get(id)
                && let Err(error) = self.store_incident(incident)
            {
                tracing::error!(incident = id, %error, "cannot store incident; its pages wait");
                unstored.insert(*id);
            }
        }
        self.send_pages(state, now, &unstored);
        let finished: Vec<IncidentId> = state
            .active
            .values()
            .filter(|incident| incident.is_finished() && !unstored.contains(&incident.id))
            .map(|incident| incident.id)
            .collect();
        for id in finished {
            if let Some(incident) = state.active.remove(&id) {
                state
                    .finished_totals
                    .add_incident(&incident, &state.settings.policies);
            }
        }
        if series_due {
            state.last_series_write = Some(now);
            self.write_series(state, now);
        }
    }

    fn take_alert(
        &self,
        state: &mut ManagerState,
        alert: &OutgoingAlert,
        evaluated_at: Timestamp,
        changed: &mut HashSet<IncidentId>,
    ) {
        if alert.resolved {
            let at = alert.ends_at.min(evaluated_at);
            for incident in state.active.values_mut() {
                if incident.record_alert_resolved(&alert.labels, at) {
                    changed.insert(incident.id);
                }
            }
            return;
        }
        let Some(policy) = state.settings.policies.policy_for(&alert.labels).cloned() else {
            return;
        };
        let group_labels = group_labels(&policy, &alert.labels);
        let existing = state.active.values_mut().find(|incident| {
            incident.policy == policy.name
                && incident.group_labels == group_labels
                && incident.absorbs(&alert.labels)
        });
        if let Some(incident) = existing {
            if incident.record_alert_firing(&alert.labels, &alert.annotations, evaluated_at) {
                changed.insert(incident.id);
            }
            return;
        }
        if state.heartbeats.is_inhibited(&alert.labels) {
            return;
        }
        let id = state.next_id;
        state.next_id += 1;
        tracing::info!(incident = id, policy = %policy.name, alert = %alert.labels, "SLA incident opened");
        let incident = Incident::open(
            id,
            &policy.name,
            group_labels,
            alert.labels.clone(),
            alert.annotations.clone(),
            evaluated_at,
        );
        state.active.insert(id, incident);
        changed.insert(id);
    }

    fn check_heartbeats(
        &self,
        state: &mut ManagerState,
        query_store: &dyn Queryable,
        now: Timestamp,
        changed: &mut HashSet<IncidentId>,
    ) {
        let transitions = state.heartbeats.check(query_store, now);
        for transition in transitions {
            let labels = transition.alert_labels.clone();
            let policy = state.settings.policies.policy(&transition.policy).cloned();
            if transition.unreachable {
                let Some(policy) = policy else {
                    tracing::warn!(policy = %transition.policy, "heartbeat names an unknown SLA policy");
                    continue;
                };
                let existing = state.active.values_mut().find(|incident| {
                    incident.policy == policy.name
                        && incident.absorbs(&labels)
                        && incident.alerts.iter().any(|alert| alert.labels == labels)
                });
                if let Some(incident) = existing {
                    if incident.record_alert_firing(&labels, &transition.annotations, now) {
                        changed.insert(incident.id);
                    }
                    continue;
                }
                let id = state.next_id;
                state.next_id += 1;
                tracing::warn!(incident = id, site = %transition.site, "site unreachable: SLA incident opened");
                let group = group_labels(&policy, &labels);
                state.active.insert(
                    id,
                    Incident::open(id, &policy.name, group, labels, transition.annotations, now),
                );
                changed.insert(id);
            } else {
                for incident in state.active.values_mut() {
                    if incident.record_alert_resolved(&labels, now) {
                        changed.insert(incident.id);
                    }
                }
            }
        }
    }

    fn store_incident(&self, incident: &Incident) -> Result<(), SlaError> {
        let value = encode_incident_record(incident).map_err(|reason| SlaError::Corrupt {
            key: format!("incident/{}", incident.id),
            reason,
        })?;
        self.state_store
            .put_state(StateTable::Incidents, &incident_key(incident.id), &value)?;
        Ok(())
    }

    /// Hands every page event of the active incidents that this process has
    /// not handed over yet to the sink (see the module doc).
    fn send_pages(&self, state: &mut ManagerState, now: Timestamp, unstored: &HashSet<IncidentId>) {
        let Some(sink) = self.page_sink.read().clone() else {
            return;
        };
        for incident in state.active.values() {
            if unstored.contains(&incident.id) {
                continue;
            }
            let Some(policy) = state.settings.policies.policy(&incident.policy) else {
                continue;
            };
            for event in &incident.events {
                let (key, receiver, tier, name) = match &event.kind {
                    EventKind::Escalated {
                        round,
                        tier,
                        repeat,
                        receiver,
                    } => (
                        escalation_dedup_key(incident.id, *round, *tier, *repeat),
                        receiver.clone(),
                        *tier,
                        "SLAEscalation",
                    ),
                    EventKind::Breached {
                        kind,
                        receiver: Some(receiver),
                    } => (
                        breach_dedup_key(incident.id, *kind),
                        receiver.clone(),
                        incident.current_tier().unwrap_or(0),
                        "SLABreach",
                    ),
                    _ => continue,
                };
                if state.sent_keys.contains(&key) {
                    continue;
                }
                let page = self.page_alert(
                    incident,
                    policy,
                    &state.settings.external_url,
                    name,
                    tier,
                    &receiver,
                    event,
                    now,
                );
                match sink.page(&receiver, &key, &page) {
                    Ok(()) => {
                        tracing::info!(incident = incident.id, %key, %receiver, "SLA page handed to the notifier");
                        state.sent_keys.insert(key);
                    }
                    Err(error) => {
                        tracing::warn!(incident = incident.id, %key, %error, "SLA page not accepted; retried next tick");
                    }
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn page_alert(
        &self,
        incident: &Incident,
        policy: &Policy,
        external_url: &str,
        alert_name: &str,
        tier: u32,
        receiver: &str,
        event: &crate::sla::incident::Event,
        now: Timestamp,
    ) -> OutgoingAlert {
        let first_alert = incident.alerts.first();
        let mut labels: Vec<Label> = first_alert
            .map(|alert| alert.labels.iter().cloned().collect())
            .unwrap_or_default();
        if let Some(original) = first_alert.and_then(|alert| alert.labels.get("alertname")) {
            labels.push(Label::new("incident_alertname", original));
        }
        labels.push(Label::new("alertname", alert_name));
        labels.push(Label::new("incident_id", incident.id.to_string()));
        labels.push(Label::new("sla_policy", &policy.name));
        labels.push(Label::new("sla_tier", tier.to_string()));
        if let EventKind::Breached { kind, .. } = &event.kind {
            labels.push(Label::new("sla_breach", kind.as_str()));
        }
        // Clock figures as of the event, so a re-sent page says the same.
        let figures = clocks(incident, policy, event.at.max(now.min(event.at)));
        let expires = event.at + ACK_LINK_VALIDITY_MS;
        let ack_link = self
            .signer
            .link(external_url, incident.id, receiver, expires);
        let mut annotations: Vec<Label> = first_alert
            .map(|alert| alert.annotations.iter().cloned().collect())
            .unwrap_or_default();
        annotations.push(Label::new(
            "sla_summary",
            format!(
                "incident {} ({}) {}: {} to acknowledge of {}, {} to resolve of {}",
                incident.id,
                policy.name,
                match &event.kind {
                    EventKind::Breached { kind, .. } =>
                        format!("breached its {} target", kind.as_str()),
                    _ => format!("escalated to tier {tier} ({receiver})"),
                },
                format_duration_ms(figures.acknowledge.elapsed_ms),
                format_duration_ms(figures.acknowledge.target_ms),
                format_duration_ms(figures.resolve.elapsed_ms),
                format_duration_ms(figures.resolve.target_ms),
            ),
        ));
        annotations.push(Label::new(
            "acknowledge_elapsed_seconds",
            (figures.acknowledge.elapsed_ms / 1000).to_string(),
        ));
        annotations.push(Label::new(
            "acknowledge_remaining_seconds",
            (figures.acknowledge.remaining_ms / 1000).to_string(),
        ));
        annotations.push(Label::new(
            "resolve_remaining_seconds",
            (figures.resolve.remaining_ms / 1000).to_string(),
        ));
        if let Some(deadline) = figures.acknowledge.deadline {
            annotations.push(Label::new(
                "acknowledge_deadline",
                crate::model::format_rfc3339_millis(deadline),
            ));
        }
        annotations.push(Label::new("ack_link", ack_link));
        annotations.push(Label::new(
            "incident_url",
            format!(
                "{}/api/v1/incidents/{}",
                external_url.trim_end_matches('/'),
                incident.id
            ),
        ));
        OutgoingAlert {
            labels: Labels::new(labels),
            annotations: Labels::new(annotations),
            starts_at: incident.opened_at(),
            fired_at: Some(event.at),
            ends_at: event.at + PAGE_VALIDITY_MS,
            resolved: false,
            generator_url: format!(
                "{}/api/v1/incidents/{}",
                external_url.trim_end_matches('/'),
                incident.id
            ),
        }
    }

    fn write_series(&self, state: &ManagerState, now: Timestamp) {
        let Some(series_store) = &self.series_store else {
            return;
        };
        let mut totals = state.finished_totals.clone();
        let mut open_by_policy_layer: BTreeMap<(String, String), u64> = BTreeMap::new();
        for policy in state.settings.policies.policies() {
            open_by_policy_layer.insert((policy.name.clone(), String::new()), 0);
        }
        for incident in state.active.values() {
            totals.add_incident(incident, &state.settings.policies);
            if incident.state() != IncidentState::Resolved {
                let layer = incident.label("layer").unwrap_or("").to_string();
                *open_by_policy_layer
                    .entry((incident.policy.clone(), layer))
                    .or_insert(0) += 1;
            }
        }
        let mut samples: Vec<(Labels, f64)> = Vec::new();
        for ((policy, layer), count) in &open_by_policy_layer {
            samples.push((
                Labels::from_pairs([
                    ("__name__", "guardia_sla_incidents_open"),
                    ("policy", policy.as_str()),
                    ("layer", layer.as_str()),
                ]),
                *count as f64,
            ));
        }
        totals.push_samples(&mut samples);
        let mut appender = series_store.appender();
        for (labels, value) in &samples {
            let pairs: Vec<(&str, &str)> = labels
                .iter()
                .map(|label| (label.name.as_str(), label.value.as_str()))
                .collect();
            if let Err(error) = appender.append(&pairs, now, *value) {
                tracing::warn!(%error, series = %labels, "cannot append an SLA series");
            }
        }
        match appender.commit() {
            Ok(outcome) if outcome.rejected() > 0 => {
                tracing::debug!(
                    rejected = outcome.rejected(),
                    "SLA series samples rejected (clock went back?)"
                );
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot write the SLA series"),
        }
    }

    /// The incident, stored or active.
    pub fn incident(&self, id: IncidentId) -> Result<Incident, SlaError> {
        if let Some(incident) = self.state.lock().active.get(&id) {
            return Ok(incident.clone());
        }
        match self
            .state_store
            .get_state(StateTable::Incidents, &incident_key(id))?
        {
            Some(bytes) => decode_incident_record(&bytes).map_err(|reason| SlaError::Corrupt {
                key: format!("incident/{id}"),
                reason,
            }),
            None => Err(SlaError::UnknownIncident(id)),
        }
    }

    /// Stored incidents matching `filter`, newest first.
    pub fn incidents(&self, filter: &IncidentFilter) -> Result<Vec<Incident>, SlaError> {
        let mut incidents = load_all_incidents(self.state_store.as_ref())?;
        {
            // The active copies may be ahead of the stored ones by a tick.
            let state = self.state.lock();
            for incident in &mut incidents {
                if let Some(active) = state.active.get(&incident.id) {
                    *incident = active.clone();
                }
            }
        }
        incidents.retain(|incident| filter.matches(incident));
        incidents.reverse();
        Ok(incidents)
    }

    /// Applies a change to an incident and stores it before answering; the
    /// change is refused (and nothing stored) when `change` fails.
    fn change_incident(
        &self,
        id: IncidentId,
        change: impl FnOnce(&mut Incident) -> Result<(), TransitionError>,
    ) -> Result<Incident, SlaError> {
        let mut state = self.state.lock();
        let mut incident = match state.active.get(&id) {
            Some(incident) => incident.clone(),
            None => {
                drop(state);
                let incident = self.incident(id)?;
                state = self.state.lock();
                incident
            }
        };
        change(&mut incident)?;
        self.store_incident(&incident)?;
        if incident.is_finished() {
            if state.active.remove(&id).is_some() {
                let policies = state.settings.policies.clone();
                state.finished_totals.add_incident(&incident, &policies);
            }
        } else {
            state.active.insert(id, incident.clone());
        }
        Ok(incident)
    }

    pub fn acknowledge(
        &self,
        id: IncidentId,
        by: &str,
        comment: &str,
        now: Timestamp,
    ) -> Result<Incident, SlaError> {
        tracing::info!(incident = id, %by, "SLA incident acknowledged");
        self.change_incident(id, |incident| incident.acknowledge(by, comment, now))
    }

    pub fn unacknowledge(
        &self,
        id: IncidentId,
        by: &str,
        now: Timestamp,
    ) -> Result<Incident, SlaError> {
        self.change_incident(id, |incident| incident.unacknowledge(by, now))
    }

    pub fn resolve(
        &self,
        id: IncidentId,
        by: &str,
        comment: &str,
        now: Timestamp,
    ) -> Result<Incident, SlaError> {
        self.change_incident(id, |incident| incident.resolve_manually(by, comment, now))
    }

    pub fn add_note(
        &self,
        id: IncidentId,
        by: &str,
        text: &str,
        now: Timestamp,
    ) -> Result<Incident, SlaError> {
        self.change_incident(id, |incident| {
            incident.add_note(by, text, now);
            Ok(())
        })
    }

    /// Every stored incident (for reports).
    pub fn all_incidents(&self) -> Result<Vec<Incident>, SlaError> {
        let mut incidents = self.incidents(&IncidentFilter::default())?;
        incidents.reverse();
        Ok(incidents)
    }
}

impl AlertSink for SlaManager {
    fn receive_alerts(
        &self,
        _group_file: &str,
        _group_name: &str,
        evaluated_at: Timestamp,
        alerts: &[OutgoingAlert],
    ) {
        if alerts.is_empty() {
            return;
        }
        self.inbox.lock().push((evaluated_at, alerts.to_vec()));
    }
}

/// The labels a policy groups by: its `group_by` names, or every label of
/// the alert when it has none.
pub fn group_labels(policy: &Policy, labels: &Labels) -> Labels {
    match &policy.group_by {
        None => labels.clone(),
        Some(names) => Labels::new(
            labels
                .iter()
                .filter(|label| names.iter().any(|name| name == &label.name))
                .cloned()
                .collect(),
        ),
    }
}

/// `1h2m3s` style, for humans reading a page.
pub fn format_duration_ms(ms: i64) -> String {
    let total_seconds = ms.max(0) / 1000;
    let (hours, minutes, seconds) = (
        total_seconds / 3600,
        (total_seconds % 3600) / 60,
        total_seconds % 60,
    );
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if seconds > 0 || text.is_empty() {
        text.push_str(&format!("{seconds}s"));
    }
    text
}
