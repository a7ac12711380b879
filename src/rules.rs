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
        })
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
        group.lock().evaluate(ts, &context);
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
