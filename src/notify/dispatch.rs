//! The dispatcher: Alertmanager's aggregation groups and notification
//! pipeline, as functions of `now`. Each alert goes to its matching routes;
//! per (route, group labels) one aggregation group collects alerts. A new
//! group flushes after `group_wait` (at once when its first alert started
//! longer than `group_wait` ago), then every `group_interval`. At a flush,
//! muted alerts (silenced, inhibited by the current firing set) are left
//! out, a route outside its active time intervals sends nothing, and each
//! integration of the receiver is notified when its last delivery differs
//! (a new firing alert, all resolved, a newly resolved one with
//! `send_resolved`) or `repeat_interval` has passed — the dedup rules of
//! Alertmanager's notification log, kept durably in the outbox. An
//! Alertmanager receiver is refreshed at every `group_interval` instead of
//! `repeat_interval`, because its copy of a firing alert times out unless
//! re-sent (Prometheus re-sends every evaluation for the same reason).
//!
//! A flush writes its notifications to the outbox before returning them
//! (see `outbox` for the crash windows); resolved alerts then leave their
//! group, and an empty group is dropped. Groups are written to the outbox
//! when their alerts change meaningfully (not on every validity refresh)
//! and at every flush, so a restart keeps `group_wait` timers. A restored
//! firing alert's validity is extended by `resolve_timeout`, so that the
//! time guardia was down does not resolve it before the rules speak again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::config::notifications::NotificationsConfig;
use crate::model::{Labels, Timestamp};
use crate::notify::inhibit::Inhibitor;
use crate::notify::outbox::{
    DeliveryRecord, IntegrationId, IntegrationKind, Outbox, OutboxError, PendingMessage,
    StoredAlert, StoredGroup,
};
use crate::notify::route::{RouteNode, RouteTree, TimeIntervals};
use crate::notify::silence::Silences;
use crate::notify::webhook::{NotificationAlert, fingerprint, group_key};
use crate::rules::OutgoingAlert;

/// Groups are looked up by (route id, group key).
type GroupId = (String, String);

fn duration_ms(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Alertmanager's route key from a route id: the id without its trailing
/// position among siblings (`{}/{a="b"}/0` → `{}/{a="b"}`).
pub fn route_key_of(route_id: &str) -> &str {
    match route_id.rsplit_once('/') {
        Some((key, position))
            if !position.is_empty() && position.bytes().all(|byte| byte.is_ascii_digit()) =>
        {
            key
        }
        _ => route_id,
    }
}

/// Where an alert stands for the API: which receivers, muted by what.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertView {
    pub alert: StoredAlert,
    pub receivers: Vec<String>,
    pub silenced_by: Vec<String>,
    /// Fingerprints of the firing alerts that inhibit this one.
    pub inhibited_by: Vec<String>,
}

/// Counts of the last flush round, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MuteCounts {
    pub silenced: usize,
    pub inhibited: usize,
}

/// Inhibition decided outside the notification config: the SLA side's
/// unreachable-site incidents mute the target-down alerts of that site, so
/// a cut link pages once.
pub trait ExternalInhibitor: Send + Sync {
    fn is_inhibited(&self, labels: &Labels) -> bool;
}

impl ExternalInhibitor for crate::sla::manager::SlaManager {
    fn is_inhibited(&self, labels: &Labels) -> bool {
        crate::sla::manager::SlaManager::is_inhibited(self, labels)
    }
}

/// Set once the SLA manager exists, read at every flush.
pub type ExternalInhibitorSlot = Arc<std::sync::OnceLock<Arc<dyn ExternalInhibitor>>>;

pub struct Dispatcher {
    config: NotificationsConfig,
    external_inhibitor: ExternalInhibitorSlot,
    routes: RouteTree,
    inhibitor: Inhibitor,
    time_intervals: TimeIntervals,
    silences: Option<Arc<Silences>>,
    outbox: Outbox,
    groups: BTreeMap<GroupId, StoredGroup>,
    /// Resolved alerts that left a group after a flush, by group and
    /// fingerprint, with their resolution time: the rules keep handing a
    /// resolved alert on for a while, and it must not re-create its group
    /// each time. In memory only; a restart re-creates a group once.
    recently_resolved: BTreeMap<GroupId, BTreeMap<u64, Timestamp>>,
    last_mute_counts: MuteCounts,
}

impl Dispatcher {
    /// Builds the dispatcher and restores its groups from the outbox.
    pub fn new(
        config: NotificationsConfig,
        silences: Option<Arc<Silences>>,
        outbox: Outbox,
        now: Timestamp,
    ) -> Result<Dispatcher, OutboxError> {
        let resolve_timeout_ms = duration_ms(config.resolve_timeout);
        let mut groups = BTreeMap::new();
        for mut group in outbox.groups()? {
            for alert in &mut group.alerts {
                if !alert.resolved {
                    alert.ends_at = alert.ends_at.max(now + resolve_timeout_ms);
                }
            }
            groups.insert((group.route_id.clone(), group.group_key.clone()), group);
        }
        if !groups.is_empty() {
            tracing::info!(groups = groups.len(), "notification groups restored");
        }
        Ok(Dispatcher {
            external_inhibitor: ExternalInhibitorSlot::default(),
            routes: RouteTree::new(&config.route),
            inhibitor: Inhibitor::new(&config.inhibit_rules),
            time_intervals: config.time_interval_table(),
            config,
            silences,
            outbox,
            groups,
            recently_resolved: BTreeMap::new(),
            last_mute_counts: MuteCounts::default(),
        })
    }

    /// A new configuration; groups and the outbox stay. Groups whose route
    /// is gone are dropped at their next flush (their alerts come back
    /// with the next evaluation and are routed anew).
    pub fn reload(&mut self, config: NotificationsConfig) {
        self.routes = RouteTree::new(&config.route);
        self.inhibitor = Inhibitor::new(&config.inhibit_rules);
        self.time_intervals = config.time_interval_table();
        self.config = config;
    }

    pub fn config(&self) -> &NotificationsConfig {
        &self.config
    }

    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    pub fn last_mute_counts(&self) -> MuteCounts {
        self.last_mute_counts
    }

    /// When the next group is due, if any.
    pub fn next_flush_at(&self) -> Option<Timestamp> {
        self.groups.values().map(|group| group.next_flush_at).min()
    }

    /// Takes the alerts of one rule group evaluation into their groups.
    pub fn receive(&mut self, alerts: &[OutgoingAlert], now: Timestamp) -> Result<(), OutboxError> {
        let mut changed: BTreeSet<GroupId> = BTreeSet::new();
        for alert in alerts {
            let stored = StoredAlert {
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                starts_at: alert.fired_at.unwrap_or(alert.starts_at),
                ends_at: alert.ends_at,
                resolved: alert.resolved,
                generator_url: alert.generator_url.clone(),
                updated_at: now,
            };
            let alert_fingerprint = fingerprint(&stored.labels);
            for node in self.routes.matching(&stored.labels) {
                if self.config.receiver(&node.receiver).is_none() {
                    // Only the empty section has a route without a receiver.
                    continue;
                }
                let group_labels = node.group_labels(&stored.labels);
                let key = group_key(route_key_of(&node.id), &group_labels);
                let id = (node.id.clone(), key.clone());
                if stored.resolved
                    && self
                        .recently_resolved
                        .get(&id)
                        .and_then(|resolved| resolved.get(&alert_fingerprint))
                        == Some(&stored.ends_at)
                {
                    continue;
                }
                let group_wait_ms = duration_ms(node.group_wait);
                let group = self.groups.entry(id.clone()).or_insert_with(|| {
                    changed.insert(id.clone());
                    StoredGroup {
                        route_id: node.id.clone(),
                        route_key: route_key_of(&node.id).to_string(),
                        receiver: node.receiver.clone(),
                        group_key: key.clone(),
                        group_labels,
                        alerts: Vec::new(),
                        next_flush_at: now.saturating_add(group_wait_ms),
                        has_flushed: false,
                    }
                });
                match group
                    .alerts
                    .iter_mut()
                    .find(|existing| existing.labels == stored.labels)
                {
                    Some(existing) => {
                        // Only a change of state is written (with an fsync)
                        // at once. New annotation text (a `{{ $value }}` in
                        // it changes at every evaluation) and a later
                        // `ends_at` ride along with the next write. A crash
                        // in between can send the text of the last written
                        // state until the rules' next evaluation refreshes it.
                        if existing.resolved != stored.resolved
                            || existing.starts_at != stored.starts_at
                        {
                            changed.insert(id.clone());
                        }
                        *existing = stored.clone();
                    }
                    None => {
                        group.alerts.push(stored.clone());
                        changed.insert(id.clone());
                    }
                }
                // Alertmanager flushes at once when the alert has been
                // active longer than group_wait already.
                if !group.has_flushed
                    && stored.starts_at.saturating_add(group_wait_ms) <= now
                    && group.next_flush_at > now
                {
                    group.next_flush_at = now;
                    changed.insert(id.clone());
                }
            }
        }
        for id in changed {
            if let Some(group) = self.groups.get(&id) {
                self.outbox.put_group(group)?;
            }
        }
        Ok(())
    }

    /// Labels of every alert firing at `now`, over all groups, once each.
    fn firing_set(&self, now: Timestamp) -> Vec<Labels> {
        let mut seen = BTreeSet::new();
        let mut firing = Vec::new();
        for group in self.groups.values() {
            for alert in &group.alerts {
                if !alert.is_resolved_at(now) && seen.insert(fingerprint(&alert.labels)) {
                    firing.push(alert.labels.clone());
                }
            }
        }
        firing
    }

    /// The slot an [`ExternalInhibitor`] is put in after start.
    pub fn external_inhibitor_slot(&self) -> ExternalInhibitorSlot {
        self.external_inhibitor.clone()
    }

    fn is_externally_inhibited(&self, labels: &Labels) -> bool {
        self.external_inhibitor
            .get()
            .is_some_and(|inhibitor| inhibitor.is_inhibited(labels))
    }

    fn is_silenced(&self, labels: &Labels, now: Timestamp) -> bool {
        self.silences
            .as_ref()
            .is_some_and(|silences| silences.is_silenced(labels, now))
    }

    fn route(&self, route_id: &str) -> Option<&RouteNode> {
        self.routes.nodes().iter().find(|node| node.id == route_id)
    }

    /// Flushes every group that is due: writes the notifications to send
    /// to the outbox and returns them.
    pub fn flush_due(&mut self, now: Timestamp) -> Result<Vec<PendingMessage>, OutboxError> {
        let due: Vec<GroupId> = self
            .groups
            .iter()
            .filter(|(_, group)| group.next_flush_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let firing = self.firing_set(now);
        let mut messages = Vec::new();
        let mut mute_counts = MuteCounts::default();
        for id in due {
            let Some(node) = self.route(&id.0).cloned() else {
                tracing::info!(group = %id.1, "dropping a notification group whose route is gone");
                self.groups.remove(&id);
                self.outbox.delete_group(&id.0, &id.1)?;
                continue;
            };
            let Some(group) = self.groups.get(&id).cloned() else {
                continue;
            };
            let mut visible = Vec::new();
            for alert in &group.alerts {
                if self.is_silenced(&alert.labels, now) {
                    mute_counts.silenced += 1;
                } else if self.inhibitor.is_inhibited(&alert.labels, &firing)
                    || self.is_externally_inhibited(&alert.labels)
                {
                    mute_counts.inhibited += 1;
                } else {
                    visible.push(alert.clone());
                }
            }
            if node.is_active_at(now, &self.time_intervals) {
                messages.extend(self.notify_group(&group, &node, &visible, now)?);
            }
            let group_interval_ms = duration_ms(node.group_interval);
            let resolved_now: BTreeMap<u64, Timestamp> = group
                .alerts
                .iter()
                .filter(|alert| alert.is_resolved_at(now))
                .map(|alert| (fingerprint(&alert.labels), alert.ends_at))
                .collect();
            let mut updated = group;
            updated.alerts.retain(|alert| !alert.is_resolved_at(now));
            updated.has_flushed = true;
            updated.next_flush_at = now.saturating_add(group_interval_ms.max(1));
            if !resolved_now.is_empty() {
                self.recently_resolved
                    .entry(id.clone())
                    .or_default()
                    .extend(resolved_now);
            }
            if updated.alerts.is_empty() {
                self.groups.remove(&id);
                self.outbox.delete_group(&id.0, &id.1)?;
            } else {
                self.outbox.put_group(&updated)?;
                self.groups.insert(id, updated);
            }
        }
        self.forget_old_resolved(now);
        self.last_mute_counts = mute_counts;
        Ok(messages)
    }

    /// The resolved alerts the rules still hand on are kept around for 15
    /// minutes (Prometheus's resolved retention); past that, forget them.
    fn forget_old_resolved(&mut self, now: Timestamp) {
        const RESOLVED_MEMORY_MS: i64 = 30 * 60_000;
        self.recently_resolved.retain(|_, resolved| {
            resolved.retain(|_, resolved_at| *resolved_at + RESOLVED_MEMORY_MS > now);
            !resolved.is_empty()
        });
    }

    /// The notifications of one group flush, per integration of its receiver.
    fn notify_group(
        &self,
        group: &StoredGroup,
        node: &RouteNode,
        visible: &[StoredAlert],
        now: Timestamp,
    ) -> Result<Vec<PendingMessage>, OutboxError> {
        let Some(receiver) = self.config.receiver(&group.receiver) else {
            return Ok(Vec::new());
        };
        let mut sorted: Vec<&StoredAlert> = visible.iter().collect();
        sorted.sort_by(|a, b| alert_order(&a.labels, &b.labels));
        let mut firing: Vec<u64> = Vec::new();
        let mut resolved: Vec<u64> = Vec::new();
        for alert in &sorted {
            if alert.is_resolved_at(now) {
                resolved.push(fingerprint(&alert.labels));
            } else {
                firing.push(fingerprint(&alert.labels));
            }
        }
        firing.sort_unstable();
        resolved.sort_unstable();
        let group_interval_ms = duration_ms(node.group_interval);
        let validity_ms = group_interval_ms
            .saturating_mul(2)
            .max(duration_ms(self.config.resolve_timeout));
        let mut integrations = Vec::new();
        for (index, webhook) in receiver.webhook_configs.iter().enumerate() {
            integrations.push((
                IntegrationKind::Webhook,
                index,
                webhook.send_resolved,
                duration_ms(node.repeat_interval),
            ));
        }
        for (index, target) in receiver.alertmanager_configs.iter().enumerate() {
            integrations.push((
                IntegrationKind::Alertmanager,
                index,
                target.send_resolved,
                group_interval_ms,
            ));
        }
        let mut messages = Vec::new();
        for (kind, index, send_resolved, repeat_ms) in integrations {
            let integration = IntegrationId {
                receiver: receiver.name.clone(),
                kind,
                index: u32::try_from(index).unwrap_or(u32::MAX),
            };
            let last = self.outbox.delivery(&integration, &group.group_key)?;
            if !needs_update(
                last.as_ref(),
                &firing,
                &resolved,
                send_resolved,
                repeat_ms,
                now,
            ) {
                continue;
            }
            let digest = DeliveryRecord {
                firing: firing.clone(),
                resolved: resolved.clone(),
                delivered_at: now,
            };
            let alerts: Vec<NotificationAlert> = sorted
                .iter()
                .filter(|alert| send_resolved || !alert.is_resolved_at(now))
                .map(|alert| {
                    let resolved = alert.is_resolved_at(now);
                    NotificationAlert {
                        labels: alert.labels.clone(),
                        annotations: alert.annotations.clone(),
                        starts_at: alert.starts_at,
                        ends_at: resolved.then_some(alert.ends_at),
                        valid_until: (!resolved)
                            .then(|| alert.ends_at.max(now.saturating_add(validity_ms))),
                        generator_url: alert.generator_url.clone(),
                        resolved,
                    }
                })
                .collect();
            if alerts.is_empty() {
                // Only resolved alerts and no send_resolved: nothing to send,
                // but remember that the receiver's firing set is now empty.
                self.outbox
                    .put_delivery(&integration, &group.group_key, &digest)?;
                continue;
            }
            if let Some(pending) = self.outbox.message(&integration, &group.group_key)?
                && pending.digest.as_ref().is_some_and(|pending_digest| {
                    pending_digest.firing == digest.firing
                        && pending_digest.resolved == digest.resolved
                })
            {
                // The same state is already waiting (retrying); keep its backoff.
                continue;
            }
            let message = PendingMessage {
                integration,
                group_key: group.group_key.clone(),
                group_labels: group.group_labels.clone(),
                alerts,
                digest: Some(digest),
                created_at: now,
                attempts: 0,
                next_attempt_at: now,
            };
            self.outbox.put_message(&message)?;
            messages.push(message);
        }
        Ok(messages)
    }

    /// Every alert the dispatcher knows, with its receivers and mute state.
    pub fn alert_views(&self, now: Timestamp) -> Vec<AlertView> {
        let firing = self.firing_set(now);
        let mut by_fingerprint: BTreeMap<u64, AlertView> = BTreeMap::new();
        for group in self.groups.values() {
            for alert in &group.alerts {
                let view = by_fingerprint
                    .entry(fingerprint(&alert.labels))
                    .or_insert_with(|| AlertView {
                        alert: alert.clone(),
                        receivers: Vec::new(),
                        silenced_by: self
                            .silences
                            .as_ref()
                            .map(|silences| silences.silenced_by(&alert.labels, now))
                            .unwrap_or_default(),
                        inhibited_by: self
                            .inhibitor
                            .inhibiting_alert(&alert.labels, &firing)
                            .map(|source| vec![crate::notify::webhook::fingerprint_text(source)])
                            .unwrap_or_default(),
                    });
                if !view.receivers.contains(&group.receiver) {
                    view.receivers.push(group.receiver.clone());
                }
            }
        }
        let mut views: Vec<AlertView> = by_fingerprint.into_values().collect();
        for view in &mut views {
            view.receivers.sort();
        }
        views
    }
}

/// Alertmanager's notification-log decision for one integration.
pub fn needs_update(
    last: Option<&DeliveryRecord>,
    firing: &[u64],
    resolved: &[u64],
    send_resolved: bool,
    repeat_interval_ms: i64,
    now: Timestamp,
) -> bool {
    let Some(last) = last else {
        // Never notified: only firing alerts are news.
        return !firing.is_empty();
    };
    let is_subset =
        |small: &[u64], large: &[u64]| small.iter().all(|item| large.binary_search(item).is_ok());
    if !is_subset(firing, &last.firing) {
        return true;
    }
    if firing.is_empty() {
        // All resolved: tell a receiver that saw some of them firing.
        return !last.firing.is_empty();
    }
    if send_resolved && !is_subset(resolved, &last.resolved) {
        return true;
    }
    last.delivered_at.saturating_add(repeat_interval_ms) <= now
}

/// Alertmanager's alert order in a notification: by `job`, then
/// `instance` (alerts that have the label first), then the whole label set.
fn alert_order(a: &Labels, b: &Labels) -> std::cmp::Ordering {
    for name in ["job", "instance"] {
        match (a.get(name), b.get(name)) {
            (None, None) => continue,
            (None, Some(_)) => return std::cmp::Ordering::Greater,
            (Some(_), None) => return std::cmp::Ordering::Less,
            (Some(left), Some(right)) if left != right => return left.cmp(right),
            _ => {}
        }
    }
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::outbox::IntegrationKind;
    use crate::storage::StateStore;

    const T0: Timestamp = 1_700_000_000_000;

    const CONFIG: &str = r#"
notifications:
  route:
    receiver: ops
    group_by: [alertname]
    group_wait: 10s
    group_interval: 1m
    repeat_interval: 1h
  inhibit_rules:
    - source_matchers: ['severity="critical"']
      target_matchers: ['severity="warning"']
      equal: [instance]
  receivers:
    - name: ops
      webhook_configs:
        - url: http://127.0.0.1:9/hook
    - name: quiet
      webhook_configs:
        - url: http://127.0.0.1:9/quiet
          send_resolved: false
"#;

    struct Fixture {
        _directory: tempfile::TempDir,
        store: Arc<crate::tsdb::Tsdb>,
    }

    impl Fixture {
        fn new() -> Fixture {
            let directory = tempfile::tempdir().unwrap();
            let store =
                crate::tsdb::Tsdb::open(directory.path(), crate::tsdb::Options::default()).unwrap();
            Fixture {
                _directory: directory,
                store,
            }
        }

        fn dispatcher(&self, yaml: &str, now: Timestamp) -> Dispatcher {
            let config = crate::config::file::parse_config(yaml)
                .unwrap()
                .notifications
                .unwrap();
            let store: Arc<dyn StateStore> = self.store.clone();
            Dispatcher::new(config, None, Outbox::new(store), now).unwrap()
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = self.store.close();
        }
    }

    fn firing(pairs: &[(&str, &str)], fired_at: Timestamp, now: Timestamp) -> OutgoingAlert {
        OutgoingAlert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: Labels::from_pairs([("summary", "something broke")]),
            starts_at: fired_at,
            fired_at: Some(fired_at),
            ends_at: now + 240_000,
            resolved: false,
            generator_url: "http://guardia/graph".to_string(),
        }
    }

    fn resolved(alert: &OutgoingAlert, at: Timestamp) -> OutgoingAlert {
        OutgoingAlert {
            ends_at: at,
            resolved: true,
            ..alert.clone()
        }
    }

    /// What a successful send does to the outbox.
    fn deliver(dispatcher: &Dispatcher, message: &PendingMessage, now: Timestamp) {
        let mut record = message.digest.clone().unwrap();
        record.delivered_at = now;
        dispatcher
            .outbox()
            .put_delivery(&message.integration, &message.group_key, &record)
            .unwrap();
        dispatcher
            .outbox()
            .delete_message(&message.integration, &message.group_key)
            .unwrap();
    }

    fn instances(message: &PendingMessage) -> Vec<String> {
        message
            .alerts
            .iter()
            .map(|alert| {
                format!(
                    "{}{}",
                    alert.labels.get("instance").unwrap_or("-"),
                    if alert.resolved { ":resolved" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn route_key_drops_the_sibling_position() {
        assert_eq!(route_key_of("{}"), "{}");
        assert_eq!(route_key_of("{}/{a=\"b\"}/0"), "{}/{a=\"b\"}");
        assert_eq!(
            route_key_of("{}/{a=\"b\"}/1/{c=\"d\"}/12"),
            "{}/{a=\"b\"}/1/{c=\"d\"}"
        );
        assert_eq!(route_key_of("{}/{a=\"0/1\"}"), "{}/{a=\"0/1\"}");
    }

    #[test]
    fn alerts_group_by_the_route_group_labels() {
        let fixture = Fixture::new();
        let mut dispatcher = fixture.dispatcher(CONFIG, T0);
        dispatcher
            .receive(
                &[
                    firing(&[("alertname", "Down"), ("instance", "a")], T0, T0),
                    firing(&[("alertname", "Down"), ("instance", "b")], T0, T0),
                    firing(&[("alertname", "DiskFull"), ("instance", "a")], T0, T0),
                ],
                T0,
            )
            .unwrap();
        assert_eq!(dispatcher.group_count(), 2);
        let mut messages = dispatcher.flush_due(T0 + 10_000).unwrap();
        messages.sort_by(|a, b| a.group_key.cmp(&b.group_key));
        assert_eq!(messages.len(), 2);
        assert_eq!(messages[0].group_key, "{}:{alertname=\"DiskFull\"}");
        assert_eq!(instances(&messages[0]), vec!["a"]);
        assert_eq!(messages[1].group_key, "{}:{alertname=\"Down\"}");
        assert_eq!(instances(&messages[1]), vec!["a", "b"]);
        assert_eq!(messages[1].integration.kind, IntegrationKind::Webhook);
        assert_eq!(messages[1].integration.receiver, "ops");
        // Written to the outbox before being handed out.
        assert_eq!(dispatcher.outbox().messages().unwrap().len(), 2);
    }

    #[test]
    fn group_wait_then_group_interval_then_repeat_interval() {
        let fixture = Fixture::new();
        let mut dispatcher = fixture.dispatcher(CONFIG, T0);
        let a = firing(&[("alertname", "Down"), ("instance", "a")], T0, T0);
        dispatcher.receive(std::slice::from_ref(&a), T0).unwrap();
        assert!(dispatcher.flush_due(T0 + 9_999).unwrap().is_empty());
        let first = dispatcher.flush_due(T0 + 10_000).unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(instances(&first[0]), vec!["a"]);
        deliver(&dispatcher, &first[0], T0 + 10_000);

        // A second alert joins; it waits for the next group_interval tick.
        let b = firing(
            &[("alertname", "Down"), ("instance", "b")],
            T0 + 30_000,
            T0 + 30_000,
        );
        dispatcher
            .receive(&[a.clone(), b.clone()], T0 + 30_000)
            .unwrap();
        assert!(dispatcher.flush_due(T0 + 69_999).unwrap().is_empty());
        let second = dispatcher.flush_due(T0 + 70_000).unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(instances(&second[0]), vec!["a", "b"]);
        deliver(&dispatcher, &second[0], T0 + 70_000);

        // Nothing changes: silence until repeat_interval (1 h) has passed.
        let mut repeats = Vec::new();
        let mut now = T0 + 70_000;
        while now < T0 + 70_000 + 2 * 3_600_000 {
            now += 60_000;
            let refreshed = [
                firing(&[("alertname", "Down"), ("instance", "a")], T0, now),
                firing(
                    &[("alertname", "Down"), ("instance", "b")],
                    T0 + 30_000,
                    now,
                ),
            ];
            dispatcher.receive(&refreshed, now).unwrap();
            for message in dispatcher.flush_due(now).unwrap() {
                deliver(&dispatcher, &message, now);
                repeats.push(now - (T0 + 70_000));
            }
        }
        assert_eq!(repeats, vec![3_600_000, 7_200_000]);
    }

    #[test]
    fn resolved_alerts_are_sent_once_then_leave_the_group() {
        let fixture = Fixture::new();
        let mut dispatcher = fixture.dispatcher(CONFIG, T0);
        let a = firing(&[("alertname", "Down"), ("instance", "a")], T0, T0);
        let b = firing(&[("alertname", "Down"), ("instance", "b")], T0, T0);
        dispatcher.receive(&[a.clone(), b.clone()], T0).unwrap();
        let first = dispatcher.flush_due(T0 + 10_000).unwrap();
        deliver(&dispatcher, &first[0], T0 + 10_000);

        let now = T0 + 40_000;
        dispatcher
            .receive(
                &[
                    resolved(&a, now),
                    firing(&[("alertname", "Down"), ("instance", "b")], T0, now),
                ],
                now,
            )
            .unwrap();
        let second = dispatcher.flush_due(T0 + 70_000).unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(instances(&second[0]), vec!["a:resolved", "b"]);
        deliver(&dispatcher, &second[0], T0 + 70_000);

        // The rules keep handing the resolved alert on: no new message, and
        // the alert stays out of the group.
        for minute in 2..6 {
            let now = T0 + 10_000 + minute * 60_000;
            dispatcher
                .receive(
                    &[
                        resolved(&a, T0 + 40_000),
                        firing(&[("alertname", "Down"), ("instance", "b")], T0, now),
                    ],
                    now,
                )
                .unwrap();
            assert!(
                dispatcher.flush_due(now).unwrap().is_empty(),
                "minute {minute}"
            );
        }
        // The last one resolves: the group empties and goes away.
        let now = T0 + 400_000;
        dispatcher.receive(&[resolved(&b, now)], now).unwrap();
        let last = dispatcher.flush_due(T0 + 430_000).unwrap();
        assert_eq!(last.len(), 1);
        assert_eq!(instances(&last[0]), vec!["b:resolved"]);
        assert_eq!(dispatcher.group_count(), 0);
        assert!(dispatcher.outbox().groups().unwrap().is_empty());
    }

    #[test]
    fn without_send_resolved_the_resolution_is_recorded_not_sent() {
        let fixture = Fixture::new();
        let yaml = CONFIG.replace(
            "receiver: ops\n    group_by",
            "receiver: quiet\n    group_by",
        );
        let mut dispatcher = fixture.dispatcher(&yaml, T0);
        let a = firing(&[("alertname", "Down"), ("instance", "a")], T0, T0);
        dispatcher.receive(std::slice::from_ref(&a), T0).unwrap();
        let first = dispatcher.flush_due(T0 + 10_000).unwrap();
        assert_eq!(first[0].integration.receiver, "quiet");
        deliver(&dispatcher, &first[0], T0 + 10_000);
        dispatcher
            .receive(&[resolved(&a, T0 + 20_000)], T0 + 20_000)
            .unwrap();
        assert!(dispatcher.flush_due(T0 + 70_000).unwrap().is_empty());
        let record = dispatcher
            .outbox()
            .delivery(&first[0].integration, &first[0].group_key)
            .unwrap()
            .unwrap();
        assert!(record.firing.is_empty(), "{record:?}");
        // Firing again is news again.
        let again = firing(
            &[("alertname", "Down"), ("instance", "a")],
            T0 + 100_000,
            T0 + 100_000,
        );
        dispatcher.receive(&[again], T0 + 100_000).unwrap();
        assert_eq!(dispatcher.flush_due(T0 + 110_000).unwrap().len(), 1);
    }

    #[test]
    fn an_alert_not_refreshed_past_its_end_counts_as_resolved() {
        let fixture = Fixture::new();
        let mut dispatcher = fixture.dispatcher(CONFIG, T0);
        let a = firing(&[("alertname", "Down"), ("instance", "a")], T0, T0);
        dispatcher.receive(std::slice::from_ref(&a), T0).unwrap();
        let first = dispatcher.flush_due(T0 + 10_000).unwrap();
        deliver(&dispatcher, &first[0], T0 + 10_000);
        // ends_at is T0 + 4 min; no refresh arrives.
        let mut now = T0 + 10_000;
        let mut sent = Vec::new();
        while now < T0 + 600_000 {
            now += 60_000;
            sent.extend(
                dispatcher
                    .flush_due(now)
                    .unwrap()
                    .into_iter()
                    .map(|m| (now, instances(&m))),
            );
        }
        assert_eq!(sent, vec![(T0 + 250_000, vec!["a:resolved".to_string()])]);
    }

    #[test]
    fn an_alert_older_than_group_wait_flushes_at_once() {
        let fixture = Fixture::new();
        let mut dispatcher = fixture.dispatcher(CONFIG, T0);
        let old = firing(&[("alertname", "Down"), ("instance", "a")], T0 - 60_000, T0);
        dispatcher.receive(&[old], T0).unwrap();
        assert_eq!(dispatcher.flush_due(T0).unwrap().len(), 1);
    }

    #[test]
    fn inhibited_alerts_are_left_out() {
        let fixture = Fixture::new();
        let mut dispatcher = fixture.dispatcher(CONFIG, T0);
        dispatcher
            .receive(
                &[
                    firing(
                        &[
                            ("alertname", "Down"),
                            ("instance", "a"),
                            ("severity", "critical"),
                        ],
                        T0,
                        T0,
                    ),
                    firing(
                        &[
                            ("alertname", "Slow"),
                            ("instance", "a"),
                            ("severity", "warning"),
                        ],
                        T0,
                        T0,
                    ),
                    firing(
                        &[
                            ("alertname", "Slow"),
                            ("instance", "b"),
                            ("severity", "warning"),
                        ],
                        T0,
                        T0,
                    ),
                ],
                T0,
            )
            .unwrap();
        let mut messages = dispatcher.flush_due(T0 + 10_000).unwrap();
        messages.sort_by(|a, b| a.group_key.cmp(&b.group_key));
        assert_eq!(messages.len(), 2);
        assert_eq!(instances(&messages[0]), vec!["a"]);
        assert_eq!(
            instances(&messages[1]),
            vec!["b"],
            "warning on a is inhibited"
        );
        assert_eq!(dispatcher.last_mute_counts().inhibited, 1);
        let views = dispatcher.alert_views(T0 + 10_000);
        let inhibited: Vec<&AlertView> = views
            .iter()
            .filter(|view| !view.inhibited_by.is_empty())
            .collect();
        assert_eq!(inhibited.len(), 1);
        assert_eq!(inhibited[0].alert.labels.get("alertname"), Some("Slow"));
    }

    #[test]
    fn a_restart_inside_group_wait_keeps_the_flush_time() {
        let fixture = Fixture::new();
        {
            let mut dispatcher = fixture.dispatcher(CONFIG, T0);
            let a = firing(&[("alertname", "Down"), ("instance", "a")], T0, T0);
            dispatcher.receive(&[a], T0).unwrap();
            assert!(dispatcher.flush_due(T0 + 5_000).unwrap().is_empty());
        }
        // Back 3 s later; the rules have not spoken yet.
        let mut restarted = fixture.dispatcher(CONFIG, T0 + 8_000);
        assert_eq!(restarted.next_flush_at(), Some(T0 + 10_000));
        assert!(restarted.flush_due(T0 + 9_000).unwrap().is_empty());
        let messages = restarted.flush_due(T0 + 10_000).unwrap();
        assert_eq!(messages.len(), 1);
        deliver(&restarted, &messages[0], T0 + 10_000);
        // And a second restart after delivery sends nothing again.
        let mut again = fixture.dispatcher(CONFIG, T0 + 20_000);
        let refreshed = firing(&[("alertname", "Down"), ("instance", "a")], T0, T0 + 20_000);
        again.receive(&[refreshed], T0 + 20_000).unwrap();
        assert!(again.flush_due(T0 + 80_000).unwrap().is_empty());
    }

    #[test]
    fn needs_update_follows_the_notification_log_rules() {
        let record = DeliveryRecord {
            firing: vec![1, 2],
            resolved: vec![],
            delivered_at: T0,
        };
        assert!(!needs_update(None, &[], &[1], true, 1000, T0));
        assert!(needs_update(None, &[1], &[], true, 1000, T0));
        assert!(!needs_update(
            Some(&record),
            &[1, 2],
            &[],
            true,
            1000,
            T0 + 999
        ));
        assert!(needs_update(
            Some(&record),
            &[1, 2],
            &[],
            true,
            1000,
            T0 + 1000
        ));
        assert!(
            !needs_update(Some(&record), &[1], &[], false, 1000, T0 + 1),
            "a subset is no news"
        );
        assert!(needs_update(Some(&record), &[1], &[2], true, 1000, T0 + 1));
        assert!(needs_update(
            Some(&record),
            &[1, 3],
            &[],
            true,
            1000,
            T0 + 1
        ));
        assert!(needs_update(
            Some(&record),
            &[],
            &[1, 2],
            false,
            1000,
            T0 + 1
        ));
        let empty = DeliveryRecord::default();
        assert!(!needs_update(Some(&empty), &[], &[1], true, 1000, T0));
    }
}
