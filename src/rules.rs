//! Rules: Prometheus rule files, groups of recording and alerting rules
//! evaluated on their interval, alert state kept across restarts, and the
//! templates of alert labels and annotations. Rules reach the query engine
//! through `promql::Engine` over the storage traits and write back through
//! `storage::Appendable`; time comes from `clock::Clock`, so tests drive
//! evaluation with a manual clock.
//!
//! Code map: `file` (YAML and validation, what `guardia check rules`
//! reports), `template` (Go template subset), `recording` and `alerting`
//! (one rule each, pure given a query result), `group` (a group's
//! evaluation, offsets, staleness, saved state), `series_notation` and
//! `unit_test` (`guardia test rules`), and here the [`RuleManager`] that
//! loads files and runs one timer task per group.

pub mod alerting;
pub mod file;
pub mod group;
pub mod recording;
pub mod series_notation;
pub mod template;
pub mod unit_test;

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::clock::Clock;
use crate::model::Timestamp;
use crate::promql::Engine;
use crate::storage::{Appendable, Queryable, StateStore};
use crate::telemetry::Exposition;

pub use file::{RuleFile, RuleFileError, load_rule_file, parse_rule_file};
pub use group::{EvaluationContext, Group, Rule, RuleHealth};

/// An alert as the rules hand it on after an evaluation, in the terms of
/// Prometheus's `sendAlerts`: firing alerts carry an `ends_at` a few
/// intervals ahead (so a receiver resolves them by itself if guardia
/// stops), resolved ones carry their resolution time.
#[derive(Clone, Debug, PartialEq)]
pub struct OutgoingAlert {
    pub labels: crate::model::Labels,
    pub annotations: crate::model::Labels,
    /// When the alert became active (pending started).
    pub starts_at: Timestamp,
    /// When it fired; `None` never happens for a firing alert.
    pub fired_at: Option<Timestamp>,
    pub ends_at: Timestamp,
    /// True once the alert has resolved (it is sent for a while after,
    /// as Prometheus does, so a lost message is repaired).
    pub resolved: bool,
    /// `/graph?g0.expr=...` under the external URL, as Prometheus builds it.
    pub generator_url: String,
}

/// Receives the alerts of every group evaluation: every firing alert and
/// every alert resolved within the retention window. Pending alerts are
/// not sent, as in Prometheus. Called on the evaluating thread, so an
/// implementation must be quick (hand off, don't send over the network).
pub trait AlertSink: Send + Sync {
    fn receive_alerts(
        &self,
        group_file: &str,
        group_name: &str,
        evaluated_at: Timestamp,
        alerts: &[OutgoingAlert],
    );
}

/// How far ahead a firing alert's `ends_at` is set: Prometheus uses four
/// times the larger of the resend delay (1 m) and the group interval.
fn firing_alert_validity_ms(interval_ms: i64) -> i64 {
    4 * interval_ms.max(60_000)
}

/// Why one rule's evaluation failed; the group carries on with the next rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleEvaluationError {
    #[error("{0}")]
    Query(String),
    #[error("{0}")]
    Result(String),
    #[error("{0}")]
    Limit(String),
    #[error("writing rule results: {0}")]
    Storage(String),
}

/// What rules read and write: the store, as queries and appends.
pub trait RuleStorage: Appendable + Queryable {}

impl<T: Appendable + Queryable + ?Sized> RuleStorage for T {}

/// Process-wide rule metrics for `/metrics`.
pub mod metrics {
    use crate::telemetry::{Counter, Histogram};

    pub static EVALUATION_DURATION: Histogram = Histogram::new();
    pub static EVALUATION_FAILURES: Counter = Counter::new();
    pub static ITERATIONS_MISSED: Counter = Counter::new();
}

/// Settings of the rule manager from the configuration file.
#[derive(Clone, Debug)]
pub struct RuleSettings {
    pub rule_files: Vec<PathBuf>,
    pub default_interval_ms: i64,
    pub external_labels: Vec<(String, String)>,
    pub external_url: String,
}

impl RuleSettings {
    /// The settings of a loaded configuration file: `rule_files` globs
    /// resolved against the file's directory, as Prometheus does. SIGHUP and
    /// `POST /-/reload` both go through here, so they load the same rules.
    pub fn from_config(
        config: &crate::config::file::ConfigFile,
        config_path: &std::path::Path,
    ) -> RuleSettings {
        let base = config_path
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let mut rule_files = Vec::new();
        for pattern in &config.rule_files {
            let joined = if std::path::Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                base.join(pattern)
            };
            rule_files.extend(crate::scrape::discovery::expand_file_pattern(
                &joined.to_string_lossy(),
            ));
        }
        RuleSettings {
            rule_files,
            default_interval_ms: i64::try_from(config.global.evaluation_interval.as_millis())
                .unwrap_or(60_000),
            external_labels: config
                .global
                .external_labels
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect(),
            external_url: String::new(),
        }
    }
}

impl Default for RuleSettings {
    fn default() -> RuleSettings {
        RuleSettings {
            rule_files: Vec::new(),
            default_interval_ms: 60_000,
            external_labels: Vec::new(),
            external_url: String::new(),
        }
    }
}

/// Loads rule files and runs their groups.
pub struct RuleManager {
    storage: Arc<dyn RuleStorage>,
    state_store: Option<Arc<dyn StateStore>>,
    clock: Arc<dyn Clock>,
    engine: Engine,
    settings: RwLock<RuleSettings>,
    groups: RwLock<Vec<Arc<Mutex<Group>>>>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    alert_sinks: RwLock<Vec<Arc<dyn AlertSink>>>,
}

impl RuleManager {
    pub fn new(
        storage: Arc<dyn RuleStorage>,
        state_store: Option<Arc<dyn StateStore>>,
        clock: Arc<dyn Clock>,
        engine: Engine,
    ) -> Arc<RuleManager> {
        Arc::new(RuleManager {
            storage,
            state_store,
            clock,
            engine,
            settings: RwLock::new(RuleSettings::default()),
            groups: RwLock::new(Vec::new()),
            tasks: Mutex::new(Vec::new()),
            alert_sinks: RwLock::new(Vec::new()),
        })
    }

    /// Adds a receiver of the alerts of every evaluation (the SLA clocks,
    /// the notifier).
    pub fn add_alert_sink(&self, sink: Arc<dyn AlertSink>) {
        self.alert_sinks.write().push(sink);
    }

    /// Loads every file and replaces the groups (their alert state comes
    /// back from the state store). On any error nothing changes.
    pub fn load(&self, settings: RuleSettings) -> Result<(), Vec<RuleFileError>> {
        let mut errors = Vec::new();
        let mut files = Vec::new();
        for path in &settings.rule_files {
            match load_rule_file(path) {
                Ok(file) => files.push(file),
                Err(file_errors) => errors.extend(file_errors),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Evaluations in flight finish with the old groups before state is read.
        let old_groups = std::mem::take(&mut *self.groups.write());
        for group in &old_groups {
            drop(group.lock());
        }
        let mut groups = Vec::new();
        for file in &files {
            for definition in &file.groups {
                let mut group = Group::new(definition, settings.default_interval_ms);
                if let Some(store) = &self.state_store {
                    group.restore_state(store.as_ref());
                }
                groups.push(Arc::new(Mutex::new(group)));
            }
        }
        tracing::info!(groups = groups.len(), files = files.len(), "rules loaded");
        *self.groups.write() = groups;
        *self.settings.write() = settings;
        Ok(())
    }

    /// Stops the group tasks, loads, and starts them again; on a load
    /// error the previous groups keep running.
    pub fn reload(self: &Arc<Self>, settings: RuleSettings) -> Result<(), Vec<RuleFileError>> {
        self.stop_tasks();
        let outcome = self.load(settings);
        self.start();
        outcome
    }

    /// Spawns one timer task per group on the current tokio runtime.
    pub fn start(self: &Arc<Self>) {
        let groups = self.groups.read().clone();
        let mut tasks = self.tasks.lock();
        for group in groups {
            let manager = self.clone();
            tasks.push(tokio::spawn(async move { manager.run_group(group).await }));
        }
    }

    fn stop_tasks(&self) {
        for task in self.tasks.lock().drain(..) {
            task.abort();
        }
    }

    /// Stops evaluating and waits for an evaluation in flight.
    pub async fn shutdown(&self) {
        self.stop_tasks();
        let groups = self.groups.read().clone();
        let _ = tokio::task::spawn_blocking(move || {
            for group in groups {
                drop(group.lock());
            }
        })
        .await;
    }

    async fn run_group(self: Arc<Self>, group: Arc<Mutex<Group>>) {
        let (interval, offset) = {
            let group = group.lock();
            (group.interval_ms, group.offset_ms())
        };
        let mut next_slot = group::aligned_slot(self.clock.now_ms(), interval, offset) + interval;
        loop {
            let now = self.clock.now_ms();
            let Some((slot, missed)) = group::plan_evaluation(now, next_slot, interval) else {
                let wait = u64::try_from(next_slot - now).unwrap_or(0);
                tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                continue;
            };
            if missed > 0 {
                metrics::ITERATIONS_MISSED.add(missed);
                group
                    .lock()
                    .iterations_missed
                    .fetch_add(missed, std::sync::atomic::Ordering::Relaxed);
            }
            let manager = self.clone();
            let evaluated_group = group.clone();
            let joined = tokio::task::spawn_blocking(move || {
                manager.evaluate_group_at(&evaluated_group, slot);
            })
            .await;
            if let Err(error) = joined {
                tracing::error!(%error, "rule group evaluation panicked");
            }
            next_slot = slot + interval;
        }
    }

    fn evaluate_group_at(&self, group: &Mutex<Group>, ts: Timestamp) {
        let settings = self.settings.read().clone();
        let context = EvaluationContext {
            storage: self.storage.as_ref(),
            engine: &self.engine,
            external_labels: &settings.external_labels,
            external_url: &settings.external_url,
            state_store: self.state_store.as_deref(),
        };
        let mut group = group.lock();
        group.evaluate(ts, &context);
        let sinks = self.alert_sinks.read().clone();
        if sinks.is_empty() {
            return;
        }
        let mut alerts = outgoing_alerts(&group, ts, &settings.external_url);
        // As Prometheus's notifier does: external labels go out with every
        // alert, the alert's own labels win.
        if !settings.external_labels.is_empty() {
            for alert in &mut alerts {
                for (name, value) in &settings.external_labels {
                    if alert.labels.get(name).is_none() {
                        alert.labels = alert.labels.with(name, value);
                    }
                }
            }
        }
        for sink in &sinks {
            sink.receive_alerts(&group.file, &group.name, ts, &alerts);
        }
    }

    /// Evaluates every group once at `ts`, in file order; for tests and
    /// `guardia test rules`. Blocks.
    pub fn evaluate_all_at(&self, ts: Timestamp) {
        let groups = self.groups.read().clone();
        for group in groups {
            self.evaluate_group_at(&group, ts);
        }
    }

    /// The groups, in file order, for the API.
    pub fn groups(&self) -> Vec<Arc<Mutex<Group>>> {
        self.groups.read().clone()
    }

    pub fn render_metrics(&self, exposition: &mut Exposition) {
        exposition.histogram(
            "guardia_rule_evaluation_duration_seconds",
            "Time to evaluate one rule group.",
            &metrics::EVALUATION_DURATION,
        );
        exposition.counter(
            "guardia_rule_evaluation_failures_total",
            "Rule evaluations that failed.",
            metrics::EVALUATION_FAILURES.get(),
        );
        exposition.counter(
            "guardia_rule_group_iterations_missed_total",
            "Rule group evaluations skipped because the previous one ran late.",
            metrics::ITERATIONS_MISSED.get(),
        );
        exposition.family(
            "guardia_rule_group_last_evaluation_timestamp_seconds",
            "gauge",
            "Time of the last evaluation of each rule group.",
        );
        for group in self.groups() {
            let group = group.lock();
            let key = format!("{};{}", group.file, group.name);
            exposition.sample(
                "guardia_rule_group_last_evaluation_timestamp_seconds",
                &[("rule_group", &key)],
                group.last_evaluation.map_or(0.0, |ts| ts as f64 / 1000.0),
            );
        }
    }
}

/// The alerts of a group to hand on after its evaluation at `ts`.
pub fn outgoing_alerts(group: &Group, ts: Timestamp, external_url: &str) -> Vec<OutgoingAlert> {
    let validity = firing_alert_validity_ms(group.interval_ms);
    let mut alerts = Vec::new();
    for rule in &group.rules {
        let Rule::Alerting(alerting) = &rule.rule else {
            continue;
        };
        let generator_url = generator_url(external_url, &alerting.expr);
        for alert in alerting.active.values() {
            let (ends_at, resolved) = match (alert.state, alert.resolved_at) {
                (alerting::AlertState::Firing, _) => (ts + validity, false),
                (alerting::AlertState::Inactive, Some(resolved_at)) if alert.fired_at.is_some() => {
                    (resolved_at, true)
                }
                _ => continue,
            };
            alerts.push(OutgoingAlert {
                labels: alert.labels.clone(),
                annotations: alert.annotations.clone(),
                starts_at: alert.active_at,
                fired_at: alert.fired_at,
                ends_at,
                resolved,
                generator_url: generator_url.clone(),
            });
        }
    }
    alerts
}

/// Prometheus's generator URL: the expression on the graph page, tab 1.
fn generator_url(external_url: &str, expr: &str) -> String {
    let mut encoded = String::new();
    for byte in expr.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!(
        "{}/graph?g0.expr={encoded}&g0.tab=1",
        external_url.trim_end_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use alerting::AlertTemplateContext;

    const GROUP: &str = "groups:\n  - name: g\n    interval: 30s\n    rules:\n      - alert: HighLoad\n        expr: load > 1\n        for: 1m\n        labels: {severity: page}\n        annotations: {summary: 'load is {{ $value }}'}\n";

    fn evaluate(group: &mut Group, ts: Timestamp, value: Option<f64>) {
        let Rule::Alerting(rule) = &mut group.rules[0].rule else {
            panic!("the group holds one alerting rule");
        };
        let context = AlertTemplateContext {
            external_labels: &[],
            external_url: "",
            query: None,
        };
        let result = value
            .map(|value| {
                vec![(
                    Labels::from_pairs([("__name__", "load"), ("instance", "a")]),
                    value,
                )]
            })
            .unwrap_or_default();
        rule.evaluate(ts, result, 0, &context).unwrap();
    }

    #[test]
    fn outgoing_alerts_hold_back_pending_then_send_firing_and_resolved() {
        let file = parse_rule_file("load.yml", GROUP).unwrap();
        let mut group = Group::new(&file.groups[0], 60_000);
        let url = "http://guardia.example:9099";

        evaluate(&mut group, 0, Some(2.0));
        assert!(
            outgoing_alerts(&group, 0, url).is_empty(),
            "pending alerts are not sent"
        );

        evaluate(&mut group, 60_000, Some(3.0));
        let firing = outgoing_alerts(&group, 60_000, url);
        assert_eq!(firing.len(), 1);
        let alert = &firing[0];
        assert!(!alert.resolved);
        assert_eq!(alert.labels.get("alertname"), Some("HighLoad"));
        assert_eq!(alert.labels.get("severity"), Some("page"));
        assert_eq!(alert.annotations.get("summary"), Some("load is 3"));
        assert_eq!((alert.starts_at, alert.fired_at), (0, Some(60_000)));
        // Four times the larger of the 1 m resend delay and the 30 s interval.
        assert_eq!(alert.ends_at, 60_000 + 4 * 60_000);
        assert_eq!(
            alert.generator_url,
            "http://guardia.example:9099/graph?g0.expr=load%20%3E%201&g0.tab=1"
        );

        evaluate(&mut group, 90_000, None);
        let resolved = outgoing_alerts(&group, 90_000, url);
        assert_eq!(resolved.len(), 1);
        assert!(resolved[0].resolved);
        assert_eq!(resolved[0].ends_at, 90_000);

        // Kept (and re-sent) for the resolved retention, then gone.
        evaluate(
            &mut group,
            90_000 + alerting::RESOLVED_RETENTION_MS + 1,
            None,
        );
        assert!(
            outgoing_alerts(&group, 90_000 + alerting::RESOLVED_RETENTION_MS + 1, url).is_empty()
        );
    }
}
