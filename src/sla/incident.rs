//! One incident and its clocks, as pure functions of (timeline, policy, now).
//! An incident is what a firing alert opens under an SLA policy: the alerts
//! grouped into it, and a timeline of [`Event`]s that is the only state.
//! Its state (open, acknowledged, re-opened, resolved), its two clocks (time
//! to acknowledge, time to resolve) and what must happen next
//! ([`due_actions`]: escalate, breach, re-open, resolve) are all computed
//! from the events, so a restart, a crash between two steps or a jump of
//! the system clock cannot make guardia forget or repeat a step: the
//! timeline says what was done.
//!
//! # Semantics
//!
//! - **Time to acknowledge** runs from the opening to the first
//!   acknowledgement (or to the resolution, when nobody acknowledged);
//!   **time to resolve** from the opening to the resolution. Both count
//!   only covered milliseconds of the policy's calendar. A clock is
//!   *paused* while it runs and `now` is outside coverage; it is *breached*
//!   once its elapsed working time exceeds the target; its deadline is
//!   `Calendar::deadline_after(opened, target)`.
//! - **Escalation** runs in *rounds*: round 0 starts at the opening; an
//!   un-acknowledgement or an acknowledgement timeout starts the next round,
//!   which pages from tier 0 again. Tier `n` is due when the round's
//!   escalation time reaches its `after`; repeat `k` of the last tier when
//!   it reaches `after + k × repeat_interval`. Escalation time depends on
//!   the policy's `outside_hours`:
//!   - `page`: wall time — tiers run outside coverage exactly as inside.
//!   - `notify`: covered time, except that tier 0 is paged at once when the
//!     round starts outside coverage (someone hears of it); tiers above 0
//!     wait for coverage.
//!   - `none`: covered time, and nothing is paged until coverage has started
//!     in the round (a tier with `after: 0s` waits for the first covered
//!     instant).
//! - An acknowledged incident stops escalating; with `acknowledge_timeout`
//!   it is re-opened when it is still not resolved after that much
//!   escalation time since the acknowledgement.
//! - **Alerts**: an alert that resolves and fires again while the incident
//!   is not resolved stays in it (flapping). When every alert has resolved,
//!   escalation and breaches stop at that instant and the incident resolves
//!   [`FLAP_GRACE_MS`] later (unless an alert fires again), with the
//!   resolution dated at the last alert's resolution. A manual resolution
//!   ends the incident at once; its alerts that keep firing open no new
//!   incident until they resolve (see [`Incident::absorbs`]).
//! - **Clock jumps**: a forward jump makes every missed step due once (each
//!   step is keyed by round, tier and repeat and recorded in the timeline);
//!   a backward jump finds no step due and never yields negative elapsed
//!   times (all spans are clamped at zero).

use serde::{Deserialize, Serialize};

use crate::config::sla::OutsideHours;
use crate::model::{Labels, Timestamp};
use crate::sla::policy::Policy;

/// How long an incident whose alerts have all resolved waits for one of
/// them to fire again before it resolves: alerts flap, and one problem
/// should page once.
pub const FLAP_GRACE_MS: i64 = 5 * 60_000;

/// The smallest interval between repeats of the last tier; a configured
/// interval of zero would otherwise page on every tick.
pub const MINIMUM_REPEAT_INTERVAL_MS: i64 = 60_000;

pub type IncidentId = u64;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: IncidentId,
    /// Name of the policy that opened it.
    pub policy: String,
    /// The labels the policy groups by, with their values.
    pub group_labels: Labels,
    /// Every alert that joined the incident, in order of arrival.
    pub alerts: Vec<IncidentAlert>,
    pub events: Vec<Event>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IncidentAlert {
    pub labels: Labels,
    pub annotations: Labels,
    pub firing: bool,
    /// When it last fired or resolved.
    pub changed_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub at: Timestamp,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Opened,
    AlertFiring {
        labels: Labels,
    },
    AlertResolved {
        labels: Labels,
    },
    Escalated {
        round: u32,
        tier: u32,
        repeat: u32,
        receiver: String,
    },
    Acknowledged {
        by: String,
        comment: String,
    },
    Unacknowledged {
        by: String,
    },
    Note {
        by: String,
        text: String,
    },
    /// The acknowledgement timed out: the incident is re-opened and a new
    /// escalation round starts.
    AcknowledgeTimedOut,
    Resolved {
        reason: ResolveReason,
    },
    Breached {
        kind: BreachKind,
        /// The receiver told about it (the round's current tier), if any.
        receiver: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResolveReason {
    /// Every alert of the incident resolved (and stayed resolved for the grace period).
    AlertsResolved,
    Manual {
        by: String,
        comment: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum BreachKind {
    Acknowledge,
    Resolve,
}

impl BreachKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BreachKind::Acknowledge => "acknowledge",
            BreachKind::Resolve => "resolve",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IncidentState {
    Open,
    Acknowledged,
    /// Open again after an acknowledgement timed out.
    Reopened,
    Resolved,
}

impl IncidentState {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentState::Open => "open",
            IncidentState::Acknowledged => "acknowledged",
            IncidentState::Reopened => "reopened",
            IncidentState::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<IncidentState> {
        match text {
            "open" => Some(IncidentState::Open),
            "acknowledged" => Some(IncidentState::Acknowledged),
            "reopened" => Some(IncidentState::Reopened),
            "resolved" => Some(IncidentState::Resolved),
            _ => None,
        }
    }

    /// Open or re-opened: nobody is on it.
    pub fn is_unacknowledged(self) -> bool {
        matches!(self, IncidentState::Open | IncidentState::Reopened)
    }
}

/// Why an action on an incident is refused (the API answers 409).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("incident {id} is already resolved")]
    AlreadyResolved { id: IncidentId },
    #[error("incident {id} is already acknowledged")]
    AlreadyAcknowledged { id: IncidentId },
    #[error("incident {id} is not acknowledged")]
    NotAcknowledged { id: IncidentId },
}

/// One SLA clock at `now`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClockFigures {
    pub target_ms: i64,
    pub started_at: Timestamp,
    /// When the clock stopped (acknowledgement or resolution), if it did.
    pub stopped_at: Option<Timestamp>,
    /// Covered milliseconds from the start to the stop (or to `now`).
    pub elapsed_ms: i64,
    /// Target minus elapsed, never below zero.
    pub remaining_ms: i64,
    /// Running, and `now` is outside coverage.
    pub paused: bool,
    pub breached: bool,
    /// When the target is (or was) reached; `None` when the calendar has no
    /// coverage in reach.
    pub deadline: Option<Timestamp>,
}

/// Both clocks of an incident.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IncidentClocks {
    pub acknowledge: ClockFigures,
    pub resolve: ClockFigures,
}

/// What must happen now for an incident; [`due_actions`] lists them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DueAction {
    Escalate {
        round: u32,
        tier: u32,
        repeat: u32,
        receiver: String,
    },
    Breach {
        kind: BreachKind,
        receiver: Option<String>,
    },
    ReopenAfterAcknowledgeTimeout,
    /// All alerts resolved and stayed so for the grace period; the
    /// resolution is dated `at` (the last alert's resolution).
    ResolveAlertsGone {
        at: Timestamp,
    },
}

impl Incident {
    /// A new incident opened at `at` by `alert`.
    pub fn open(
        id: IncidentId,
        policy: &str,
        group_labels: Labels,
        labels: Labels,
        annotations: Labels,
        at: Timestamp,
    ) -> Incident {
        Incident {
            id,
            policy: policy.to_string(),
            group_labels,
            alerts: vec![IncidentAlert {
                labels: labels.clone(),
                annotations,
                firing: true,
                changed_at: at,
            }],
            events: vec![
                Event {
                    at,
                    kind: EventKind::Opened,
                },
                Event {
                    at,
                    kind: EventKind::AlertFiring { labels },
                },
            ],
        }
    }

    pub fn opened_at(&self) -> Timestamp {
        self.events.first().map_or(0, |event| event.at)
    }

    pub fn state(&self) -> IncidentState {
        let mut state = IncidentState::Open;
        for event in &self.events {
            state = match &event.kind {
                EventKind::Acknowledged { .. } => IncidentState::Acknowledged,
                EventKind::Unacknowledged { .. } => IncidentState::Open,
                EventKind::AcknowledgeTimedOut => IncidentState::Reopened,
                EventKind::Resolved { .. } => return IncidentState::Resolved,
                _ => state,
            };
        }
        state
    }

    pub fn resolved_at(&self) -> Option<Timestamp> {
        self.events.iter().find_map(|event| match event.kind {
            EventKind::Resolved { .. } => Some(event.at),
            _ => None,
        })
    }

    pub fn first_acknowledged_at(&self) -> Option<Timestamp> {
        self.events.iter().find_map(|event| match event.kind {
            EventKind::Acknowledged { .. } => Some(event.at),
            _ => None,
        })
    }

    /// The value of `name` on the group labels, else on the first alert.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.group_labels
            .get(name)
            .or_else(|| self.alerts.first().and_then(|alert| alert.labels.get(name)))
    }

    /// True while some alert of the incident is firing.
    pub fn any_alert_firing(&self) -> bool {
        self.alerts.iter().any(|alert| alert.firing)
    }

    /// The newest alert resolution, when no alert is firing.
    fn all_alerts_resolved_at(&self) -> Option<Timestamp> {
        if self.alerts.is_empty() || self.any_alert_firing() {
            return None;
        }
        self.alerts.iter().map(|alert| alert.changed_at).max()
    }

    /// Whether an alert with these labels belongs to this incident when it
    /// fires or resolves: any alert while the incident is not resolved; after
    /// a manual resolution only its own alerts that are still firing (so an
    /// alert that keeps firing opens no second incident, and one that fires
    /// again after resolving opens a fresh one).
    pub fn absorbs(&self, labels: &Labels) -> bool {
        match self.state() {
            IncidentState::Resolved => self
                .alerts
                .iter()
                .any(|alert| alert.firing && &alert.labels == labels),
            _ => true,
        }
    }

    /// True once the incident needs no more attention from the manager:
    /// resolved, and none of its alerts still firing.
    pub fn is_finished(&self) -> bool {
        self.state() == IncidentState::Resolved && !self.any_alert_firing()
    }

    /// Records that an alert fired (at `at`); returns whether anything changed.
    pub fn record_alert_firing(
        &mut self,
        labels: &Labels,
        annotations: &Labels,
        at: Timestamp,
    ) -> bool {
        let resolved = self.state() == IncidentState::Resolved;
        match self.alerts.iter_mut().find(|alert| &alert.labels == labels) {
            Some(alert) if alert.firing => {
                alert.annotations = annotations.clone();
                false
            }
            Some(alert) => {
                alert.firing = true;
                alert.changed_at = at;
                alert.annotations = annotations.clone();
                if !resolved {
                    self.events.push(Event {
                        at,
                        kind: EventKind::AlertFiring {
                            labels: labels.clone(),
                        },
                    });
                }
                true
            }
            None => {
                self.alerts.push(IncidentAlert {
                    labels: labels.clone(),
                    annotations: annotations.clone(),
                    firing: true,
                    changed_at: at,
                });
                self.events.push(Event {
                    at,
                    kind: EventKind::AlertFiring {
                        labels: labels.clone(),
                    },
                });
                true
            }
        }
    }

    /// Records that an alert resolved at `at`; returns whether anything changed.
    pub fn record_alert_resolved(&mut self, labels: &Labels, at: Timestamp) -> bool {
        let Some(alert) = self
            .alerts
            .iter_mut()
            .find(|alert| &alert.labels == labels && alert.firing)
        else {
            return false;
        };
        alert.firing = false;
        alert.changed_at = at;
        self.events.push(Event {
            at,
            kind: EventKind::AlertResolved {
                labels: labels.clone(),
            },
        });
        true
    }

    pub fn acknowledge(
        &mut self,
        by: &str,
        comment: &str,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        match self.state() {
            IncidentState::Resolved => Err(TransitionError::AlreadyResolved { id: self.id }),
            IncidentState::Acknowledged => {
                Err(TransitionError::AlreadyAcknowledged { id: self.id })
            }
            IncidentState::Open | IncidentState::Reopened => {
                self.events.push(Event {
                    at,
                    kind: EventKind::Acknowledged {
                        by: by.to_string(),
                        comment: comment.to_string(),
                    },
                });
                Ok(())
            }
        }
    }

    pub fn unacknowledge(&mut self, by: &str, at: Timestamp) -> Result<(), TransitionError> {
        match self.state() {
            IncidentState::Resolved => Err(TransitionError::AlreadyResolved { id: self.id }),
            IncidentState::Open | IncidentState::Reopened => {
                Err(TransitionError::NotAcknowledged { id: self.id })
            }
            IncidentState::Acknowledged => {
                self.events.push(Event {
                    at,
                    kind: EventKind::Unacknowledged { by: by.to_string() },
                });
                Ok(())
            }
        }
    }

    pub fn resolve_manually(
        &mut self,
        by: &str,
        comment: &str,
        at: Timestamp,
    ) -> Result<(), TransitionError> {
        if self.state() == IncidentState::Resolved {
            return Err(TransitionError::AlreadyResolved { id: self.id });
        }
        self.events.push(Event {
            at,
            kind: EventKind::Resolved {
                reason: ResolveReason::Manual {
                    by: by.to_string(),
                    comment: comment.to_string(),
                },
            },
        });
        Ok(())
    }

    /// Notes are welcome in every state, a post-mortem remark included.
    pub fn add_note(&mut self, by: &str, text: &str, at: Timestamp) {
        self.events.push(Event {
            at,
            kind: EventKind::Note {
                by: by.to_string(),
                text: text.to_string(),
            },
        });
    }

    /// The current escalation round and when it started.
    pub fn current_round(&self) -> (u32, Timestamp) {
        let mut round = 0;
        let mut started = self.opened_at();
        for event in &self.events {
            if matches!(
                event.kind,
                EventKind::Unacknowledged { .. } | EventKind::AcknowledgeTimedOut
            ) {
                round += 1;
                started = event.at;
            }
        }
        (round, started)
    }

    /// The highest tier paged in the current round, if any.
    pub fn current_tier(&self) -> Option<u32> {
        let (round, _) = self.current_round();
        self.events
            .iter()
            .filter_map(|event| match event.kind {
                EventKind::Escalated {
                    round: event_round,
                    tier,
                    ..
                } if event_round == round => Some(tier),
                _ => None,
            })
            .max()
    }

    fn was_escalated(&self, round: u32, tier: u32, repeat: u32) -> bool {
        self.events.iter().any(|event| {
            matches!(
                event.kind,
                EventKind::Escalated { round: r, tier: t, repeat: k, .. }
                    if r == round && t == tier && k == repeat
            )
        })
    }

    pub fn was_breached(&self, kind: BreachKind) -> bool {
        self.events
            .iter()
            .any(|event| matches!(event.kind, EventKind::Breached { kind: k, .. } if k == kind))
    }

    fn last_acknowledged_at(&self) -> Option<Timestamp> {
        self.events.iter().rev().find_map(|event| match event.kind {
            EventKind::Acknowledged { .. } => Some(event.at),
            _ => None,
        })
    }

    /// Appends the event an action stands for.
    pub fn apply(&mut self, action: &DueAction, now: Timestamp) {
        let (at, kind) = match action {
            DueAction::Escalate {
                round,
                tier,
                repeat,
                receiver,
            } => (
                now,
                EventKind::Escalated {
                    round: *round,
                    tier: *tier,
                    repeat: *repeat,
                    receiver: receiver.clone(),
                },
            ),
            DueAction::Breach { kind, receiver } => (
                now,
                EventKind::Breached {
                    kind: *kind,
                    receiver: receiver.clone(),
                },
            ),
            DueAction::ReopenAfterAcknowledgeTimeout => (now, EventKind::AcknowledgeTimedOut),
            DueAction::ResolveAlertsGone { at } => (
                *at,
                EventKind::Resolved {
                    reason: ResolveReason::AlertsResolved,
                },
            ),
        };
        self.events.push(Event { at, kind });
    }
}

/// Covered milliseconds of `policy`'s calendar in `[from, to)`, zero when
/// `to <= from` (a clock that jumped back).
pub fn working_ms(policy: &Policy, from: Timestamp, to: Timestamp) -> i64 {
    if to <= from {
        return 0;
    }
    policy.calendar.working_ms_between(from, to).max(0)
}

/// Escalation time in `[from, to)` under the policy's `outside_hours`.
pub fn escalation_ms(policy: &Policy, from: Timestamp, to: Timestamp) -> i64 {
    match policy.outside_hours {
        OutsideHours::Page => (to - from).max(0),
        OutsideHours::Notify | OutsideHours::None => working_ms(policy, from, to),
    }
}

fn clock_figures(
    policy: &Policy,
    started_at: Timestamp,
    stopped_at: Option<Timestamp>,
    target_ms: i64,
    now: Timestamp,
) -> ClockFigures {
    let end = stopped_at.unwrap_or(now);
    let elapsed_ms = working_ms(policy, started_at, end);
    ClockFigures {
        target_ms,
        started_at,
        stopped_at,
        elapsed_ms,
        remaining_ms: (target_ms - elapsed_ms).max(0),
        paused: stopped_at.is_none() && !policy.calendar.is_covered(now),
        breached: elapsed_ms > target_ms,
        deadline: policy.calendar.deadline_after(started_at, target_ms),
    }
}

/// Both clocks of `incident` at `now`.
pub fn clocks(incident: &Incident, policy: &Policy, now: Timestamp) -> IncidentClocks {
    let opened = incident.opened_at();
    let resolved = incident.resolved_at();
    // While every alert is resolved, the clocks stop at the last
    // resolution: the incident will be dated there unless an alert refires.
    let resolved_or_pending = resolved.or_else(|| incident.all_alerts_resolved_at());
    let acknowledged = match (incident.first_acknowledged_at(), resolved_or_pending) {
        (Some(ack), Some(resolution)) => Some(ack.min(resolution)),
        (ack, resolution) => ack.or(resolution),
    };
    IncidentClocks {
        acknowledge: clock_figures(
            policy,
            opened,
            acknowledged,
            policy.acknowledge_within_ms,
            now,
        ),
        resolve: clock_figures(
            policy,
            opened,
            resolved_or_pending,
            policy.resolve_within_ms,
            now,
        ),
    }
}

/// Everything that must happen to `incident` at `now`, in order. Applying
/// them (see [`Incident::apply`]) and asking again may yield more (an
/// acknowledgement timeout starts a round whose tier 0 is due at once).
pub fn due_actions(incident: &Incident, policy: &Policy, now: Timestamp) -> Vec<DueAction> {
    let mut actions = Vec::new();
    let state = incident.state();
    if state == IncidentState::Resolved {
        return actions;
    }
    let pending_resolution = incident.all_alerts_resolved_at();
    if let Some(resolved_at) = pending_resolution
        && now - resolved_at >= FLAP_GRACE_MS
    {
        // Breaches that happened before the resolution are still recorded.
        push_breaches(incident, policy, resolved_at, &mut actions);
        actions.push(DueAction::ResolveAlertsGone { at: resolved_at });
        return actions;
    }
    // While all alerts are resolved, time stands still at the last resolution.
    let effective_now = pending_resolution.map_or(now, |at| at.min(now));
    if state.is_unacknowledged() && pending_resolution.is_none() {
        push_escalations(incident, policy, now, &mut actions);
    }
    push_breaches(incident, policy, effective_now, &mut actions);
    if state == IncidentState::Acknowledged
        && pending_resolution.is_none()
        && let (Some(timeout), Some(acknowledged_at)) = (
            policy.acknowledge_timeout_ms,
            incident.last_acknowledged_at(),
        )
        && escalation_ms(policy, acknowledged_at, now) >= timeout
    {
        actions.push(DueAction::ReopenAfterAcknowledgeTimeout);
    }
    actions
}

fn push_breaches(
    incident: &Incident,
    policy: &Policy,
    now: Timestamp,
    actions: &mut Vec<DueAction>,
) {
    let figures = clocks(incident, policy, now);
    let receiver = incident
        .current_tier()
        .or(if policy.escalation.is_empty() {
            None
        } else {
            Some(0)
        })
        .and_then(|tier| policy.escalation.get(tier as usize))
        .map(|tier| tier.receiver.clone());
    for (kind, clock) in [
        (BreachKind::Acknowledge, &figures.acknowledge),
        (BreachKind::Resolve, &figures.resolve),
    ] {
        if clock.breached && !incident.was_breached(kind) {
            actions.push(DueAction::Breach {
                kind,
                receiver: receiver.clone(),
            });
        }
    }
}

fn push_escalations(
    incident: &Incident,
    policy: &Policy,
    now: Timestamp,
    actions: &mut Vec<DueAction>,
) {
    let (round, round_started) = incident.current_round();
    let elapsed = escalation_ms(policy, round_started, now);
    let covered_now = policy.calendar.is_covered(now);
    let coverage_seen = covered_now || working_ms(policy, round_started, now) > 0;
    let last_tier_index = policy.escalation.len().saturating_sub(1);
    for (index, tier) in policy.escalation.iter().enumerate() {
        let tier_number = index as u32;
        let mut steps = vec![(0u32, tier.after_ms)];
        if index == last_tier_index {
            let interval = tier.repeat_interval_ms.max(MINIMUM_REPEAT_INTERVAL_MS);
            for repeat in 1..=tier.repeat {
                steps.push((
                    repeat,
                    tier.after_ms
                        .saturating_add(interval.saturating_mul(i64::from(repeat))),
                ));
            }
        }
        for (repeat, after_ms) in steps {
            let due = match policy.outside_hours {
                OutsideHours::Page => elapsed >= after_ms,
                OutsideHours::Notify => {
                    (elapsed >= after_ms && coverage_seen)
                        || (index == 0 && repeat == 0 && !covered_now)
                }
                OutsideHours::None => elapsed >= after_ms && coverage_seen,
            };
            if due && !incident.was_escalated(round, tier_number, repeat) {
                actions.push(DueAction::Escalate {
                    round,
                    tier: tier_number,
                    repeat,
                    receiver: tier.receiver.clone(),
                });
            }
        }
    }
}

/// The dedup key of a page: `incident/<id>/tier/<n>/<k>` for round 0 (and
/// `incident/<id>/round/<r>/tier/<n>/<k>` for later rounds), or
/// `incident/<id>/breach/<kind>`. A page sent twice under one key is
/// delivered once by the notifier.
pub fn escalation_dedup_key(id: IncidentId, round: u32, tier: u32, repeat: u32) -> String {
    if round == 0 {
        format!("incident/{id}/tier/{tier}/{repeat}")
    } else {
        format!("incident/{id}/round/{round}/tier/{tier}/{repeat}")
    }
}

pub fn breach_dedup_key(id: IncidentId, kind: BreachKind) -> String {
    format!("incident/{id}/breach/{}", kind.as_str())
}
