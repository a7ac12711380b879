//! A rule group: its rules in file order, evaluated together at one
//! timestamp every `interval`, at a stable offset within the interval (a
//! hash of file and group name, as Prometheus does, so groups spread out
//! and keep their phase across restarts). Each rule's output is appended
//! and committed before the next rule runs, so a recording rule's series is
//! visible to the rules after it in the same evaluation. Series a rule wrote
//! last time and not this time get a staleness marker. The alert state of
//! the group is written to the state store after every evaluation and read
//! back when the group is built, so `for` timers and `keep_firing_for`
//! survive a restart.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::model::{Labels, Timestamp, stale_nan};
use crate::promql::{Engine, QueryOptions, Value};
use crate::storage::{StateStore, StateTable};

use super::alerting::{Alert, AlertTemplateContext, AlertingRule};
use super::file::{RuleGroupDefinition, RuleKind};
use super::recording::RecordingRule;
use super::template::QueryRows;
use super::{RuleEvaluationError, RuleStorage, metrics};

#[derive(Clone, Debug)]
pub enum Rule {
    Recording(RecordingRule),
    Alerting(AlertingRule),
}

impl Rule {
    pub fn name(&self) -> &str {
        match self {
            Rule::Recording(rule) => &rule.name,
            Rule::Alerting(rule) => &rule.name,
        }
    }

    pub fn expr(&self) -> &str {
        match self {
            Rule::Recording(rule) => &rule.expr,
            Rule::Alerting(rule) => &rule.expr,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleHealth {
    Unknown,
    Ok,
    Err,
}

impl RuleHealth {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleHealth::Unknown => "unknown",
            RuleHealth::Ok => "ok",
            RuleHealth::Err => "err",
        }
    }
}

/// A rule with what its last evaluation did.
#[derive(Clone, Debug)]
pub struct RuleWithStatus {
    pub rule: Rule,
    pub health: RuleHealth,
    pub last_error: Option<String>,
    pub last_evaluation: Option<Timestamp>,
    pub evaluation_seconds: f64,
    /// Series written last time, for staleness markers.
    previous_series: BTreeSet<Labels>,
}

/// Everything an evaluation reads and writes through.
pub struct EvaluationContext<'a> {
    pub storage: &'a dyn RuleStorage,
    pub engine: &'a Engine,
    pub external_labels: &'a [(String, String)],
    pub external_url: &'a str,
    pub state_store: Option<&'a dyn StateStore>,
}

pub struct Group {
    pub name: String,
    pub file: String,
    pub interval_ms: i64,
    pub query_offset_ms: i64,
    pub limit: usize,
    /// The group's own labels (already merged into each rule).
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<RuleWithStatus>,
    pub last_evaluation: Option<Timestamp>,
    pub evaluation_seconds: f64,
    pub iterations_missed: AtomicU64,
    pub evaluation_failures: AtomicU64,
    pub iterations: AtomicU64,
}

/// What is persisted per alerting rule.
#[derive(Serialize, Deserialize)]
struct SavedRule {
    index: u32,
    name: String,
    alerts: Vec<Alert>,
}

impl Group {
    /// Builds a group from its definition; `default_interval_ms` applies when
    /// the group has no `interval`.
    pub fn new(definition: &RuleGroupDefinition, default_interval_ms: i64) -> Group {
        let millis =
            |duration: std::time::Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let rules = definition
            .rules
            .iter()
            .map(|rule_definition| {
                let mut labels = definition.labels.clone();
                labels.extend(rule_definition.labels.clone());
                let rule = match &rule_definition.kind {
                    RuleKind::Recording => Rule::Recording(RecordingRule {
                        name: rule_definition.name.clone(),
                        expr: rule_definition.expr.clone(),
                        labels,
                    }),
                    RuleKind::Alerting {
                        hold,
                        keep_firing_for,
                        annotations,
                    } => Rule::Alerting(AlertingRule {
                        name: rule_definition.name.clone(),
                        expr: rule_definition.expr.clone(),
                        hold_ms: millis(*hold),
                        keep_firing_for_ms: millis(*keep_firing_for),
                        labels,
                        annotations: annotations.clone(),
                        active: BTreeMap::new(),
                    }),
                };
                RuleWithStatus {
                    rule,
                    health: RuleHealth::Unknown,
                    last_error: None,
                    last_evaluation: None,
                    evaluation_seconds: 0.0,
                    previous_series: BTreeSet::new(),
                }
            })
            .collect();
        Group {
            name: definition.name.clone(),
            file: definition.file.clone(),
            interval_ms: definition
                .interval
                .map_or(default_interval_ms, millis)
                .max(1),
            query_offset_ms: definition.query_offset.map_or(0, millis),
            limit: definition.limit,
            labels: definition.labels.clone(),
            rules,
            last_evaluation: None,
            evaluation_seconds: 0.0,
            iterations_missed: AtomicU64::new(0),
            evaluation_failures: AtomicU64::new(0),
            iterations: AtomicU64::new(0),
        }
    }

    /// The key of the group's state: file, NUL, group name.
    pub fn state_key(&self) -> Vec<u8> {
        let mut key = self.file.as_bytes().to_vec();
        key.push(0);
        key.extend_from_slice(self.name.as_bytes());
        key
    }

    /// Stable position of the group's evaluations within its interval.
    pub fn offset_ms(&self) -> i64 {
        evaluation_offset_ms(&self.file, &self.name, self.interval_ms)
    }

    /// The latest evaluation slot at or before `now`.
    pub fn evaluation_timestamp(&self, now: Timestamp) -> Timestamp {
        aligned_slot(now, self.interval_ms, self.offset_ms())
    }

    /// Reads the alert state saved by an earlier run of this group.
    pub fn restore_state(&mut self, store: &dyn StateStore) {
        let saved = match store.get_state(StateTable::Rules, &self.state_key()) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(group = %self.name, %error, "cannot read saved alert state");
                return;
            }
        };
        let saved: Vec<SavedRule> = match postcard::from_bytes(&saved) {
            Ok(saved) => saved,
            Err(error) => {
                tracing::warn!(group = %self.name, %error, "saved alert state does not decode; starting fresh");
                return;
            }
        };
        let mut restored = 0usize;
        for saved_rule in saved {
            let by_position = self
                .rules
                .get(saved_rule.index as usize)
                .is_some_and(|entry| entry.rule.name() == saved_rule.name);
            let position = if by_position {
                Some(saved_rule.index as usize)
            } else {
                self.rules
                    .iter()
                    .position(|entry| entry.rule.name() == saved_rule.name)
            };
            if let Some(position) = position
                && let Rule::Alerting(rule) = &mut self.rules[position].rule
            {
                for alert in saved_rule.alerts {
                    rule.active.insert(alert.labels.clone(), alert);
                    restored += 1;
                }
            }
        }
        tracing::info!(group = %self.name, alerts = restored, "alert state restored");
    }

    fn save_state(&self, store: &dyn StateStore) {
        let saved: Vec<SavedRule> = self
            .rules
            .iter()
            .enumerate()
            .filter_map(|(index, entry)| match &entry.rule {
                Rule::Alerting(rule) if !rule.active.is_empty() => Some(SavedRule {
                    index: index as u32,
                    name: rule.name.clone(),
                    alerts: rule.active.values().cloned().collect(),
                }),
                _ => None,
            })
            .collect();
        let key = self.state_key();
        let outcome = if saved.is_empty() {
            store.delete_state(StateTable::Rules, &key).map(|_| ())
        } else {
            match postcard::to_allocvec(&saved) {
                Ok(bytes) => store.put_state(StateTable::Rules, &key, &bytes),
                Err(error) => {
                    tracing::error!(group = %self.name, %error, "cannot encode alert state");
                    return;
                }
            }
        };
        if let Err(error) = outcome {
            tracing::warn!(group = %self.name, %error, "cannot save alert state");
        }
    }

    /// Evaluates every rule at `ts` (an evaluation slot) and writes the results.
    pub fn evaluate(&mut self, ts: Timestamp, context: &EvaluationContext<'_>) {
        let started = Instant::now();
        let sample_ts = ts - self.query_offset_ms;
        let limit = self.limit;
        let group_name = self.name.clone();
        let had_alert_state = self.has_alert_state();
        for entry in &mut self.rules {
            let rule_started = Instant::now();
            let outcome = evaluate_rule(&mut entry.rule, ts, sample_ts, limit, context);
            let outcome = outcome.and_then(|samples| {
                write_samples(context.storage, &samples, &entry.previous_series, sample_ts)?;
                Ok(samples)
            });
            match outcome {
                Ok(samples) => {
                    entry.health = RuleHealth::Ok;
                    entry.last_error = None;
                    entry.previous_series = samples.into_iter().map(|(labels, _)| labels).collect();
                }
                Err(error) => {
                    tracing::warn!(group = %group_name, rule = %entry.rule.name(), %error, "rule evaluation failed");
                    entry.health = RuleHealth::Err;
                    entry.last_error = Some(error.to_string());
                    self.evaluation_failures.fetch_add(1, Ordering::Relaxed);
                    metrics::EVALUATION_FAILURES.inc();
                }
            }
            entry.last_evaluation = Some(ts);
            entry.evaluation_seconds = rule_started.elapsed().as_secs_f64();
        }
        if let Some(store) = context.state_store
            && (had_alert_state || self.has_alert_state())
        {
            self.save_state(store);
        }
        self.last_evaluation = Some(ts);
        self.evaluation_seconds = started.elapsed().as_secs_f64();
        self.iterations.fetch_add(1, Ordering::Relaxed);
        metrics::EVALUATION_DURATION.observe(self.evaluation_seconds);
    }

    fn has_alert_state(&self) -> bool {
        self.rules.iter().any(|entry| match &entry.rule {
            Rule::Alerting(rule) => !rule.active.is_empty(),
            Rule::Recording(_) => false,
        })
    }
}

fn evaluate_rule(
    rule: &mut Rule,
    ts: Timestamp,
    sample_ts: Timestamp,
    limit: usize,
    context: &EvaluationContext<'_>,
) -> Result<Vec<(Labels, f64)>, RuleEvaluationError> {
    let result = query_vector(context.engine, context.storage, rule.expr(), sample_ts)?;
    match rule {
        Rule::Recording(rule) => rule.evaluate(result, limit),
        Rule::Alerting(rule) => {
            let query = |expression: &str| -> Result<QueryRows, String> {
                query_vector(context.engine, context.storage, expression, sample_ts)
                    .map(|rows| {
                        rows.into_iter()
                            .map(|(labels, value)| {
                                (
                                    labels
                                        .iter()
                                        .map(|label| (label.name.clone(), label.value.clone()))
                                        .collect(),
                                    value,
                                )
                            })
                            .collect()
                    })
                    .map_err(|error| error.to_string())
            };
            let template_context = AlertTemplateContext {
                external_labels: context.external_labels,
                external_url: context.external_url,
                query: Some(&query),
            };
            rule.evaluate(ts, result, limit, &template_context)
        }
    }
}

/// Runs `expr` at `ts`; a scalar becomes one sample without labels, as
/// Prometheus's rule query function does.
pub fn query_vector(
    engine: &Engine,
    storage: &dyn RuleStorage,
    expr: &str,
    ts: Timestamp,
) -> Result<Vec<(Labels, f64)>, RuleEvaluationError> {
    let result = engine
        .instant_query(storage, expr, ts, QueryOptions::default())
        .map_err(|error| RuleEvaluationError::Query(error.to_string()))?;
    match result.value {
        Value::Vector(samples) => Ok(samples
            .into_iter()
            .map(|sample| (sample.labels, sample.v))
            .collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::empty(), v)]),
        other => Err(RuleEvaluationError::Query(format!(
            "rule result is not a vector or scalar: {}",
            other.result_type()
        ))),
    }
}

/// Appends the rule's samples plus staleness markers for series that went
/// away, and commits (durable and visible to the next rule).
fn write_samples(
    storage: &dyn RuleStorage,
    samples: &[(Labels, f64)],
    previous_series: &BTreeSet<Labels>,
    sample_ts: Timestamp,
) -> Result<(), RuleEvaluationError> {
    let current: BTreeSet<&Labels> = samples.iter().map(|(labels, _)| labels).collect();
    let gone: Vec<&Labels> = previous_series
        .iter()
        .filter(|labels| !current.contains(labels))
        .collect();
    if samples.is_empty() && gone.is_empty() {
        return Ok(());
    }
    let mut appender = storage.appender();
    let storage_error =
        |error: crate::storage::StorageError| RuleEvaluationError::Storage(error.to_string());
    let stale = stale_nan();
    for (labels, value) in samples
        .iter()
        .map(|(labels, value)| (labels, *value))
        .chain(gone.into_iter().map(|labels| (labels, stale)))
    {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|label| (label.name.as_str(), label.value.as_str()))
            .collect();
        appender
            .append(&pairs, sample_ts, value)
            .map_err(storage_error)?;
    }
    let outcome = appender.commit().map_err(storage_error)?;
    if outcome.rejected() > 0 {
        tracing::debug!(
            out_of_order = outcome.out_of_order,
            duplicate_timestamp = outcome.duplicate_timestamp,
            "rule samples rejected"
        );
    }
    Ok(())
}

/// FNV-1a over file and group name: stable across builds and platforms,
/// which a seeded hasher is not.
pub fn evaluation_offset_ms(file: &str, group: &str, interval_ms: i64) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in file.bytes().chain([0xff]).chain(group.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % interval_ms.max(1) as u64) as i64
}

/// When the slot `next_slot` is due at `now`: the slot to evaluate and how
/// many whole intervals were skipped (the evaluator fell behind, or the
/// process was stopped); `None` while it is not due yet. As in Prometheus,
/// skipped slots are counted, not caught up.
pub fn plan_evaluation(
    now: Timestamp,
    next_slot: Timestamp,
    interval_ms: i64,
) -> Option<(Timestamp, u64)> {
    if now < next_slot {
        return None;
    }
    let interval = interval_ms.max(1);
    let missed = (now - next_slot) / interval;
    Some((next_slot + missed * interval, missed as u64))
}

/// The latest `offset + k * interval` at or before `now`.
pub fn aligned_slot(now: Timestamp, interval_ms: i64, offset_ms: i64) -> Timestamp {
    let interval = interval_ms.max(1);
    let adjusted = now - offset_ms;
    adjusted - adjusted.rem_euclid(interval) + offset_ms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_evaluations_skip_and_count_missed_slots() {
        assert_eq!(plan_evaluation(999, 1000, 100), None);
        assert_eq!(plan_evaluation(1000, 1000, 100), Some((1000, 0)));
        assert_eq!(plan_evaluation(1099, 1000, 100), Some((1000, 0)));
        assert_eq!(plan_evaluation(1100, 1000, 100), Some((1100, 1)));
        assert_eq!(plan_evaluation(1350, 1000, 100), Some((1300, 3)));
    }

    #[test]
    fn slots_are_aligned_and_stable() {
        let offset = evaluation_offset_ms("rules/a.yml", "node", 60_000);
        assert_eq!(offset, evaluation_offset_ms("rules/a.yml", "node", 60_000));
        assert!((0..60_000).contains(&offset));
        assert_ne!(offset, evaluation_offset_ms("rules/a.yml", "db", 60_000));
        let slot = aligned_slot(1_000_000_123, 60_000, offset);
        assert!(slot <= 1_000_000_123 && 1_000_000_123 - slot < 60_000);
        assert_eq!((slot - offset).rem_euclid(60_000), 0);
        assert_eq!(aligned_slot(slot, 60_000, offset), slot);
    }
}
