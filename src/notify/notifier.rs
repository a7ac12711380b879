//! The running notifier: one worker thread owns the [`Dispatcher`] and the
//! delivery queue; everything else talks to it over a channel, so the rule
//! evaluator never waits on the network or on an fsync (its
//! `receive_alerts` only sends a message). The worker flushes due groups,
//! starts due sends as tasks on the tokio runtime (at most one in flight
//! per integration and group), and applies their outcomes: a 2xx writes
//! the delivery record and deletes the pending message; 429/5xx/network
//! errors retry with exponential backoff and jitter (`outbox::retry_delay_ms`);
//! other 4xx are dropped, logged and counted as failed. Redb writes happen
//! on the worker thread, never on the async runtime.
//!
//! At start the worker loads the pending messages from the outbox and sends
//! them; one whose delivery record already equals its content was
//! delivered just before a crash and is dropped instead.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::clock::Clock;
use crate::config::file::HttpClientConfig;
use crate::config::notifications::{NotificationsConfig, RouteConfig};
use crate::model::{Labels, Timestamp};
use crate::notify::NotifyError;
use crate::notify::alertmanager::{alerts_url, build_postable_alerts};
use crate::notify::dispatch::{AlertView, Dispatcher, MuteCounts};
use crate::notify::outbox::{
    DirectMarker, IntegrationId, IntegrationKind, Outbox, PendingMessage, retry_delay_ms,
};
use crate::notify::silence::Silences;
use crate::notify::webhook::{NotificationAlert, SendError, build_webhook_message, post_json};
use crate::rules::{AlertSink, OutgoingAlert};
use crate::storage::StateStore;
use crate::telemetry::{Exposition, Histogram};

/// Used when a receiver sets no `timeout`.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// The worker wakes at least this often, so a clock that jumps (or a
/// manual clock in tests) is noticed without a message.
const MAX_IDLE_WAIT: Duration = Duration::from_millis(250);

/// Old delivery records and dedup keys are swept this often.
const MAINTENANCE_INTERVAL_MS: i64 = 3_600_000;

/// Delivery records of groups not notified for this long are dropped
/// (far beyond any sane repeat_interval).
const DELIVERY_RECORD_RETENTION_MS: i64 = 14 * 24 * 3_600_000;

enum Command {
    Alerts(Vec<OutgoingAlert>),
    Enqueue(Vec<PendingMessage>),
    Reload(Box<NotificationsConfig>),
    Delivered(Box<DeliveryOutcome>),
    Shutdown,
}

struct DeliveryOutcome {
    key: Vec<u8>,
    generation: u64,
    message: PendingMessage,
    outcome: Result<(), SendError>,
    seconds: f64,
}

/// (receiver, integration kind) → (attempts, failed attempts).
type AttemptCounts = BTreeMap<(String, &'static str), (u64, u64)>;

/// Counters per (receiver, integration kind) and the other figures of
/// `/metrics`, shared between the worker and the HTTP handlers.
#[derive(Default)]
struct NotifierMetrics {
    sent: Mutex<AttemptCounts>,
    latency: Histogram,
    queue_length: std::sync::atomic::AtomicU64,
    mute_counts: Mutex<MuteCounts>,
    views: RwLock<Vec<AlertView>>,
}

/// Where one integration sends, built from its configuration.
#[derive(Clone)]
struct Target {
    client: reqwest::Client,
    url: String,
    http: HttpClientConfig,
    timeout: Duration,
    max_alerts: usize,
}

/// Delivers notifications; see the module documentation.
pub struct Notifier {
    commands: Mutex<Sender<Command>>,
    external_inhibitor: super::dispatch::ExternalInhibitorSlot,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    config: RwLock<NotificationsConfig>,
    metrics: Arc<NotifierMetrics>,
    worker: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Makes a `send_direct`'s marker check and writes one step.
    direct_order: Mutex<()>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Notifier").finish_non_exhaustive()
    }
}

impl Notifier {
    /// Restores groups and pending messages from `store` and starts the
    /// worker thread; sends run on `runtime`.
    pub fn start(
        config: NotificationsConfig,
        external_url: String,
        store: Arc<dyn StateStore>,
        silences: Option<Arc<Silences>>,
        clock: Arc<dyn Clock>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Arc<Notifier>, NotifyError> {
        let outbox = Outbox::new(store);
        let now = clock.now_ms();
        let dispatcher = Dispatcher::new(config.clone(), silences, outbox.clone(), now)?;
        let external_inhibitor = dispatcher.external_inhibitor_slot();
        let (sender, receiver) = std::sync::mpsc::channel();
        let metrics = Arc::new(NotifierMetrics::default());
        let mut worker = Worker {
            dispatcher,
            outbox: outbox.clone(),
            clock: clock.clone(),
            runtime,
            external_url,
            targets: build_targets(&config),
            queue: BTreeMap::new(),
            next_generation: 0,
            commands: sender.clone(),
            metrics: metrics.clone(),
            last_maintenance: i64::MIN,
        };
        worker.load_pending(now)?;
        let thread = std::thread::Builder::new()
            .name("guardia-notifier".to_string())
            .spawn(move || worker.run(receiver))
            .map_err(|error| NotifyError::Worker(error.to_string()))?;
        Ok(Arc::new(Notifier {
            commands: Mutex::new(sender),
            external_inhibitor,
            outbox,
            clock,
            config: RwLock::new(config),
            metrics,
            worker: Mutex::new(Some(thread)),
            direct_order: Mutex::new(()),
        }))
    }

    fn send_command(&self, command: Command) -> Result<(), NotifyError> {
        self.commands
            .lock()
            .send(command)
            .map_err(|_| NotifyError::Stopped)
    }

    /// Lets `inhibitor` mute alerts too (the SLA manager's unreachable
    /// sites); set once, later calls are ignored.
    pub fn set_external_inhibitor(&self, inhibitor: Arc<dyn super::dispatch::ExternalInhibitor>) {
        let _ = self.external_inhibitor.set(inhibitor);
    }

    /// A new configuration; groups, pending messages and delivery records stay.
    pub fn reload(&self, config: NotificationsConfig) -> Result<(), NotifyError> {
        *self.config.write() = config.clone();
        self.send_command(Command::Reload(Box::new(config)))
    }

    /// Sends `alerts` to `receiver` as one notification whose group key is
    /// `dedup_key`, bypassing routing, grouping, silences and inhibition
    /// (SLA escalations name their receiver). Durable when it returns; a
    /// second call with the same key within seven days does nothing. Blocks
    /// on redb writes: call it off the async runtime.
    pub fn send_direct(
        &self,
        receiver: &str,
        dedup_key: &str,
        alerts: Vec<OutgoingAlert>,
    ) -> Result<(), NotifyError> {
        let _ordered = self.direct_order.lock();
        if self.outbox.direct_marker(dedup_key)?.is_some() {
            tracing::debug!(dedup_key, "send_direct: already sent with this key");
            return Ok(());
        }
        let now = self.clock.now_ms();
        let messages = {
            let config = self.config.read();
            let receiver_config = config
                .receiver(receiver)
                .ok_or_else(|| NotifyError::UnknownReceiver(receiver.to_string()))?;
            let notification_alerts: Vec<NotificationAlert> =
                alerts.iter().map(notification_alert).collect();
            let mut messages = Vec::new();
            let kinds = receiver_config
                .webhook_configs
                .iter()
                .map(|webhook| (IntegrationKind::Webhook, webhook.send_resolved))
                .enumerate()
                .chain(
                    receiver_config
                        .alertmanager_configs
                        .iter()
                        .map(|target| (IntegrationKind::Alertmanager, target.send_resolved))
                        .enumerate(),
                );
            for (index, (kind, send_resolved)) in kinds {
                let alerts: Vec<NotificationAlert> = notification_alerts
                    .iter()
                    .filter(|alert| send_resolved || !alert.resolved)
                    .cloned()
                    .collect();
                if alerts.is_empty() {
                    continue;
                }
                messages.push(PendingMessage {
                    integration: IntegrationId {
                        receiver: receiver.to_string(),
                        kind,
                        index: u32::try_from(index).unwrap_or(u32::MAX),
                    },
                    group_key: dedup_key.to_string(),
                    group_labels: Labels::empty(),
                    alerts,
                    digest: None,
                    created_at: now,
                    attempts: 0,
                    next_attempt_at: now,
                });
            }
            messages
        };
        // Messages first, then the marker: a crash between the two leaves
        // messages without a marker, which the next start repairs (it
        // writes the marker before sending), so nothing is lost or doubled.
        for message in &messages {
            self.outbox.put_message(message)?;
        }
        self.outbox
            .put_direct_marker(dedup_key, &DirectMarker { created_at: now })?;
        self.send_command(Command::Enqueue(messages))
    }

    /// Alerts known to the dispatcher, as of its last round.
    pub fn alert_views(&self) -> Vec<AlertView> {
        self.metrics.views.read().clone()
    }

    /// Pending notifications (queued or retrying).
    pub fn queue_length(&self) -> u64 {
        self.metrics
            .queue_length
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the worker; pending messages stay in the outbox for the next
    /// start. Blocks until the worker has finished its current step.
    pub fn shutdown(&self) {
        let _ = self.send_command(Command::Shutdown);
        if let Some(worker) = self.worker.lock().take() {
            let _ = worker.join();
        }
    }

    pub fn render_metrics(&self, exposition: &mut Exposition) {
        let sent = self.metrics.sent.lock().clone();
        exposition.family(
            "guardia_notifications_total",
            "counter",
            "Notification attempts per receiver integration.",
        );
        for ((receiver, integration), (total, _)) in &sent {
            exposition.sample(
                "guardia_notifications_total",
                &[("receiver", receiver), ("integration", integration)],
                *total as f64,
            );
        }
        exposition.family(
            "guardia_notifications_failed_total",
            "counter",
            "Notification attempts that failed, per receiver integration.",
        );
        for ((receiver, integration), (_, failed)) in &sent {
            exposition.sample(
                "guardia_notifications_failed_total",
                &[("receiver", receiver), ("integration", integration)],
                *failed as f64,
            );
        }
        exposition.histogram(
            "guardia_notification_latency_seconds",
            "Time of one notification attempt.",
            &self.metrics.latency,
        );
        exposition.gauge(
            "guardia_notifications_queue_length",
            "Notifications waiting for delivery (queued or retrying).",
            self.queue_length() as f64,
        );
        let mute_counts = *self.metrics.mute_counts.lock();
        exposition.gauge(
            "guardia_alerts_silenced",
            "Alerts left out of the last notification round by a silence.",
            mute_counts.silenced as f64,
        );
        exposition.gauge(
            "guardia_alerts_inhibited",
            "Alerts left out of the last notification round by an inhibition rule.",
            mute_counts.inhibited as f64,
        );
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        let _ = self.commands.lock().send(Command::Shutdown);
    }
}

impl AlertSink for Notifier {
    fn receive_alerts(
        &self,
        _group_file: &str,
        _group_name: &str,
        _evaluated_at: Timestamp,
        alerts: &[OutgoingAlert],
    ) {
        if alerts.is_empty() {
            return;
        }
        if self.send_command(Command::Alerts(alerts.to_vec())).is_err() {
            tracing::debug!("notifier stopped; alerts not taken");
        }
    }
}

/// The section in effect when the configuration has none: no receivers,
/// so nothing is grouped or sent (a reload may add receivers).
pub fn notifications_sending_nothing() -> NotificationsConfig {
    NotificationsConfig {
        resolve_timeout: Duration::from_secs(5 * 60),
        route: RouteConfig {
            receiver: Some(String::new()),
            ..RouteConfig::default()
        },
        inhibit_rules: Vec::new(),
        time_intervals: Vec::new(),
        receivers: Vec::new(),
    }
}

/// An alert handed on by the rules as a notification carries it.
pub fn notification_alert(alert: &OutgoingAlert) -> NotificationAlert {
    NotificationAlert {
        labels: alert.labels.clone(),
        annotations: alert.annotations.clone(),
        starts_at: alert.fired_at.unwrap_or(alert.starts_at),
        ends_at: alert.resolved.then_some(alert.ends_at),
        valid_until: (!alert.resolved).then_some(alert.ends_at),
        generator_url: alert.generator_url.clone(),
        resolved: alert.resolved,
    }
}

fn build_targets(config: &NotificationsConfig) -> BTreeMap<IntegrationId, Target> {
    let mut targets = BTreeMap::new();
    for receiver in &config.receivers {
        let integrations = receiver
            .webhook_configs
            .iter()
            .map(|webhook| {
                (
                    IntegrationKind::Webhook,
                    webhook.url.clone(),
                    &webhook.http_config,
                    webhook.timeout,
                    webhook.max_alerts,
                )
            })
            .enumerate()
            .chain(
                receiver
                    .alertmanager_configs
                    .iter()
                    .map(|target| {
                        (
                            IntegrationKind::Alertmanager,
                            alerts_url(&target.url),
                            &target.http_config,
                            target.timeout,
                            0,
                        )
                    })
                    .enumerate(),
            );
        for (index, (kind, url, http, timeout, max_alerts)) in integrations {
            let id = IntegrationId {
                receiver: receiver.name.clone(),
                kind,
                index: u32::try_from(index).unwrap_or(u32::MAX),
            };
            match crate::scrape::scrape_loop::build_client(http, true) {
                Ok(client) => {
                    targets.insert(
                        id,
                        Target {
                            client,
                            url,
                            http: http.clone(),
                            timeout: timeout
                                .filter(|timeout| !timeout.is_zero())
                                .unwrap_or(DEFAULT_SEND_TIMEOUT),
                            max_alerts,
                        },
                    );
                }
                Err(error) => {
                    tracing::error!(receiver = %receiver.name, integration = kind.name(), %error, "cannot build the HTTP client of a receiver");
                }
            }
        }
    }
    targets
}

struct Queued {
    message: PendingMessage,
    generation: u64,
    in_flight: bool,
}

struct Worker {
    dispatcher: Dispatcher,
    outbox: Outbox,
    clock: Arc<dyn Clock>,
    runtime: tokio::runtime::Handle,
    external_url: String,
    targets: BTreeMap<IntegrationId, Target>,
    queue: BTreeMap<Vec<u8>, Queued>,
    next_generation: u64,
    commands: Sender<Command>,
    metrics: Arc<NotifierMetrics>,
    last_maintenance: Timestamp,
}

impl Worker {
    fn load_pending(&mut self, now: Timestamp) -> Result<(), NotifyError> {
        for message in self.outbox.messages()? {
            match &message.digest {
                Some(digest) => {
                    let delivered = self
                        .outbox
                        .delivery(&message.integration, &message.group_key)?;
                    if delivered.is_some_and(|record| {
                        record.firing == digest.firing
                            && record.resolved == digest.resolved
                            && record.delivered_at >= message.created_at
                    }) {
                        // Delivered, then the process stopped before the delete.
                        self.outbox
                            .delete_message(&message.integration, &message.group_key)?;
                        continue;
                    }
                }
                None => {
                    if self.outbox.direct_marker(&message.group_key)?.is_none() {
                        self.outbox.put_direct_marker(
                            &message.group_key,
                            &DirectMarker {
                                created_at: message.created_at.min(now),
                            },
                        )?;
                    }
                }
            }
            self.enqueue(message);
        }
        if !self.queue.is_empty() {
            tracing::info!(
                pending = self.queue.len(),
                "pending notifications restored from the outbox"
            );
        }
        Ok(())
    }

    fn enqueue(&mut self, message: PendingMessage) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let key = message.key();
        match self.queue.get_mut(&key) {
            Some(queued) => {
                queued.message = message;
                queued.generation = generation;
            }
            None => {
                self.queue.insert(
                    key,
                    Queued {
                        message,
                        generation,
                        in_flight: false,
                    },
                );
            }
        }
    }

    fn run(mut self, commands: Receiver<Command>) {
        loop {
            let now = self.clock.now_ms();
            let next_due = self
                .queue
                .values()
                .filter(|queued| !queued.in_flight)
                .map(|queued| queued.message.next_attempt_at)
                .chain(self.dispatcher.next_flush_at())
                .min();
            let wait = match next_due {
                Some(due) if due <= now => Duration::ZERO,
                Some(due) => {
                    Duration::from_millis(u64::try_from(due - now).unwrap_or(0)).min(MAX_IDLE_WAIT)
                }
                None => MAX_IDLE_WAIT,
            };
            let mut received = match commands.recv_timeout(wait) {
                Ok(command) => vec![command],
                Err(RecvTimeoutError::Timeout) => Vec::new(),
                Err(RecvTimeoutError::Disconnected) => return,
            };
            received.extend(commands.try_iter());
            let mut changed = !received.is_empty();
            for command in received {
                if !self.handle(command) {
                    tracing::info!(
                        pending = self.queue.len(),
                        "notifier stopped; pending notifications stay in the outbox"
                    );
                    return;
                }
            }
            let now = self.clock.now_ms();
            match self.dispatcher.flush_due(now) {
                Ok(messages) => {
                    changed |= !messages.is_empty();
                    for message in messages {
                        self.enqueue(message);
                    }
                }
                Err(error) => tracing::error!(%error, "notification flush failed"),
            }
            self.start_due_sends(now);
            if now.saturating_sub(self.last_maintenance) >= MAINTENANCE_INTERVAL_MS {
                self.last_maintenance = now;
                self.maintenance(now);
            }
            if changed {
                *self.metrics.views.write() = self.dispatcher.alert_views(now);
                *self.metrics.mute_counts.lock() = self.dispatcher.last_mute_counts();
            }
            self.metrics.queue_length.store(
                self.queue.len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    fn maintenance(&mut self, now: Timestamp) {
        if let Err(error) = self.outbox.expire_direct_markers(now) {
            tracing::warn!(%error, "cannot expire send_direct keys");
        }
        if let Err(error) = self
            .outbox
            .expire_deliveries(now.saturating_sub(DELIVERY_RECORD_RETENTION_MS))
        {
            tracing::warn!(%error, "cannot expire old delivery records");
        }
    }

    /// False when the worker must stop.
    fn handle(&mut self, command: Command) -> bool {
        match command {
            Command::Alerts(alerts) => {
                let now = self.clock.now_ms();
                if let Err(error) = self.dispatcher.receive(&alerts, now) {
                    tracing::error!(%error, "cannot record alerts for notification");
                }
            }
            Command::Enqueue(messages) => {
                for message in messages {
                    self.enqueue(message);
                }
            }
            Command::Reload(config) => {
                self.targets = build_targets(&config);
                self.dispatcher.reload(*config);
                tracing::info!("notification configuration reloaded");
            }
            Command::Delivered(outcome) => self.apply_outcome(*outcome),
            Command::Shutdown => return false,
        }
        true
    }

    fn start_due_sends(&mut self, now: Timestamp) {
        let due: Vec<Vec<u8>> = self
            .queue
            .iter()
            .filter(|(_, queued)| !queued.in_flight && queued.message.next_attempt_at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in due {
            let Some(queued) = self.queue.get_mut(&key) else {
                continue;
            };
            let message = queued.message.clone();
            let Some(target) = self.targets.get(&message.integration).cloned() else {
                tracing::warn!(
                    receiver = %message.integration.receiver,
                    integration = message.integration.kind.name(),
                    "dropping a notification for an integration no longer configured"
                );
                self.queue.remove(&key);
                if let Err(error) = self
                    .outbox
                    .delete_message(&message.integration, &message.group_key)
                {
                    tracing::error!(%error, "cannot delete a dropped notification");
                }
                continue;
            };
            queued.in_flight = true;
            let generation = queued.generation;
            let body = match self.body_of(&message, &target) {
                Ok(body) => body,
                Err(error) => {
                    // Cannot happen for these plain types; treat as permanent.
                    let _ = self
                        .commands
                        .send(Command::Delivered(Box::new(DeliveryOutcome {
                            key,
                            generation,
                            message,
                            outcome: Err(SendError::Permanent(error)),
                            seconds: 0.0,
                        })));
                    continue;
                }
            };
            let commands = self.commands.clone();
            self.runtime.spawn(async move {
                let started = Instant::now();
                let outcome = post_json(
                    &target.client,
                    &target.url,
                    &target.http,
                    target.timeout,
                    body,
                )
                .await;
                let _ = commands.send(Command::Delivered(Box::new(DeliveryOutcome {
                    key,
                    generation,
                    message,
                    outcome,
                    seconds: started.elapsed().as_secs_f64(),
                })));
            });
        }
    }

    fn body_of(&self, message: &PendingMessage, target: &Target) -> Result<Vec<u8>, String> {
        let encoded = match message.integration.kind {
            IntegrationKind::Webhook => serde_json::to_vec(&build_webhook_message(
                &message.integration.receiver,
                &message.group_key,
                &message.group_labels,
                &self.external_url,
                &message.alerts,
                target.max_alerts,
            )),
            IntegrationKind::Alertmanager => {
                serde_json::to_vec(&build_postable_alerts(&message.alerts))
            }
        };
        encoded.map_err(|error| error.to_string())
    }

    fn apply_outcome(&mut self, delivered: DeliveryOutcome) {
        let DeliveryOutcome {
            key,
            generation,
            message,
            outcome,
            seconds,
        } = delivered;
        let integration = &message.integration;
        {
            let mut sent = self.metrics.sent.lock();
            let counts = sent
                .entry((integration.receiver.clone(), integration.kind.name()))
                .or_default();
            counts.0 += 1;
            if outcome.is_err() {
                counts.1 += 1;
            }
        }
        self.metrics.latency.observe(seconds);
        let current = self
            .queue
            .get(&key)
            .is_some_and(|queued| queued.generation == generation);
        if let Some(queued) = self.queue.get_mut(&key) {
            queued.in_flight = false;
        }
        let now = self.clock.now_ms();
        let result = match outcome {
            Ok(()) => {
                tracing::debug!(receiver = %integration.receiver, integration = integration.kind.name(), group = %message.group_key, "notification delivered");
                let mut written = Ok(());
                if let Some(digest) = &message.digest {
                    let mut record = digest.clone();
                    record.delivered_at = now;
                    written = self
                        .outbox
                        .put_delivery(integration, &message.group_key, &record);
                }
                if current {
                    self.queue.remove(&key);
                    written
                        .and_then(|()| self.outbox.delete_message(integration, &message.group_key))
                } else {
                    written
                }
            }
            Err(SendError::Retryable(reason)) => {
                let attempts = message.attempts.saturating_add(1);
                let delay = retry_delay_ms(attempts, jitter_seed(&key, now));
                tracing::warn!(receiver = %integration.receiver, integration = integration.kind.name(), attempts, retry_in_ms = delay, %reason, "notification failed; will retry");
                match self.queue.get_mut(&key) {
                    Some(queued) if current => {
                        queued.message.attempts = attempts;
                        queued.message.next_attempt_at = now.saturating_add(delay);
                        self.outbox.put_message(&queued.message)
                    }
                    _ => Ok(()),
                }
            }
            Err(SendError::Permanent(reason)) => {
                tracing::error!(receiver = %integration.receiver, integration = integration.kind.name(), group = %message.group_key, %reason, "notification rejected; not retried");
                if current {
                    self.queue.remove(&key);
                    self.outbox.delete_message(integration, &message.group_key)
                } else {
                    Ok(())
                }
            }
        };
        if let Err(error) = result {
            tracing::error!(%error, "cannot record a notification outcome in the outbox");
        }
    }
}

fn jitter_seed(key: &[u8], now: Timestamp) -> u64 {
    let mut seed = now as u64;
    for byte in key {
        seed = seed.rotate_left(5) ^ u64::from(*byte);
    }
    seed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    /// A webhook receiver on a loopback port recording every body.
    async fn receiver() -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
        let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let recorded = bodies.clone();
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let recorded = recorded.clone();
                async move {
                    let value = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
                    recorded.lock().push(value);
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (url, bodies)
    }

    fn config(url: &str) -> NotificationsConfig {
        let yaml = format!(
            "notifications:\n  route:\n    receiver: ops\n  receivers:\n    - name: ops\n    - name: escalation\n      webhook_configs:\n        - url: {url}\n"
        );
        crate::config::file::parse_config(&yaml)
            .unwrap()
            .notifications
            .unwrap()
    }

    fn escalation_alert() -> OutgoingAlert {
        OutgoingAlert {
            labels: Labels::from_pairs([("alertname", "DatabaseDown"), ("tier", "1")]),
            annotations: Labels::from_pairs([("summary", "not acknowledged in 15m")]),
            starts_at: 1_700_000_000_000,
            fired_at: Some(1_700_000_000_000),
            ends_at: 1_700_000_240_000,
            resolved: false,
            generator_url: String::new(),
        }
    }

    async fn wait_until(condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !condition() {
            assert!(Instant::now() < deadline, "condition not reached");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn send_direct_is_durable_and_idempotent_by_dedup_key() {
        let (url, bodies) = receiver().await;
        let directory = tempfile::tempdir().unwrap();
        let store =
            crate::tsdb::Tsdb::open(directory.path(), crate::tsdb::Options::default()).unwrap();
        let state_store: Arc<dyn StateStore> = store.clone();
        let start = || {
            Notifier::start(
                config(&url),
                "http://guardia.test".to_string(),
                state_store.clone(),
                None,
                Arc::new(SystemClock),
                tokio::runtime::Handle::current(),
            )
            .unwrap()
        };
        let notifier = start();
        let calls = notifier.clone();
        tokio::task::spawn_blocking(move || {
            calls
                .send_direct("escalation", "incident-7/tier-1", vec![escalation_alert()])
                .unwrap();
            calls
                .send_direct("escalation", "incident-7/tier-1", vec![escalation_alert()])
                .unwrap();
            assert!(matches!(
                calls.send_direct("nobody", "incident-7/tier-2", vec![escalation_alert()]),
                Err(NotifyError::UnknownReceiver(_))
            ));
        })
        .await
        .unwrap();
        wait_until(|| !bodies.lock().is_empty()).await;
        wait_until(|| notifier.queue_length() == 0).await;
        {
            let delivered = bodies.lock();
            assert_eq!(delivered.len(), 1);
            assert_eq!(delivered[0]["groupKey"], "incident-7/tier-1");
            assert_eq!(delivered[0]["receiver"], "escalation");
            assert_eq!(delivered[0]["alerts"][0]["labels"]["tier"], "1");
        }
        let stopping = notifier.clone();
        tokio::task::spawn_blocking(move || stopping.shutdown())
            .await
            .unwrap();

        // After a restart the key is still known; a new key is sent.
        let restarted = start();
        let calls = restarted.clone();
        tokio::task::spawn_blocking(move || {
            calls
                .send_direct("escalation", "incident-7/tier-1", vec![escalation_alert()])
                .unwrap();
            calls
                .send_direct("escalation", "incident-8/tier-1", vec![escalation_alert()])
                .unwrap();
        })
        .await
        .unwrap();
        wait_until(|| bodies.lock().len() >= 2).await;
        wait_until(|| restarted.queue_length() == 0).await;
        let keys: Vec<String> = bodies
            .lock()
            .iter()
            .map(|body| body["groupKey"].as_str().unwrap_or("").to_string())
            .collect();
        assert_eq!(keys, vec!["incident-7/tier-1", "incident-8/tier-1"]);
        let stopping = restarted.clone();
        tokio::task::spawn_blocking(move || stopping.shutdown())
            .await
            .unwrap();
        let _ = store.close();
    }
}
