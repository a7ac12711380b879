//! Alerting rules: the state machine inactive → pending → firing →
//! resolved, as Prometheus's `rules/alerting.go` runs it. An evaluation is a
//! pure function of the query result and the evaluation time `ts`: an alert
//! becomes pending when its series first appears (`active_at = ts`), fires
//! once `ts - active_at >= for`, and when its series disappears it either
//! keeps firing until `keep_firing_for` has passed since it first went
//! missing, or resolves. A resolved alert stays listed for 15 minutes.
//! Labels and annotations are templates expanded per alert; a template
//! error becomes the text of that label or annotation, not a failed rule.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::model::{Label, Labels, Timestamp};

use super::RuleEvaluationError;
use super::template::{TemplateQueryFunction, alert_template_data, expand_alert_template};

/// How long a resolved alert stays in the API (Prometheus's `resolvedRetention`).
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

pub const ALERTS_METRIC_NAME: &str = "ALERTS";
pub const ALERTS_FOR_STATE_METRIC_NAME: &str = "ALERTS_FOR_STATE";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule: one label set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: Labels,
    pub state: AlertState,
    pub value: f64,
    pub active_at: Timestamp,
    pub fired_at: Option<Timestamp>,
    pub resolved_at: Option<Timestamp>,
    /// When the series went missing while the alert was firing.
    pub keep_firing_since: Option<Timestamp>,
}

/// What an alerting rule needs at evaluation besides the query result.
pub struct AlertTemplateContext<'a> {
    pub external_labels: &'a [(String, String)],
    pub external_url: &'a str,
    pub query: Option<&'a TemplateQueryFunction<'a>>,
}

#[derive(Clone, Debug)]
pub struct AlertingRule {
    pub name: String,
    pub expr: String,
    pub hold_ms: i64,
    pub keep_firing_for_ms: i64,
    /// Rule labels (group labels merged in), as templates.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Active alerts by label set, pending, firing and recently resolved.
    pub active: BTreeMap<Labels, Alert>,
}

impl AlertingRule {
    /// Advances the state machine with the query result at `ts` and returns
    /// the `ALERTS` and `ALERTS_FOR_STATE` samples to write.
    /// `limit` > 0 caps active alerts; over it, every alert is dropped and
    /// the evaluation fails, as in Prometheus.
    pub fn evaluate(
        &mut self,
        ts: Timestamp,
        result: Vec<(Labels, f64)>,
        limit: usize,
        context: &AlertTemplateContext<'_>,
    ) -> Result<Vec<(Labels, f64)>, RuleEvaluationError> {
        let external: Vec<(&str, &str)> = context
            .external_labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        let mut current: BTreeMap<Labels, Alert> = BTreeMap::new();
        for (series_labels, value) in result {
            let pairs: Vec<(&str, &str)> = series_labels
                .iter()
                .map(|label| (label.name.as_str(), label.value.as_str()))
                .collect();
            let data = alert_template_data(&pairs, &external, context.external_url, value);
            let expand = |text: &str| match expand_alert_template(
                &self.name,
                text,
                &data,
                context.query,
            ) {
                Ok(expanded) => expanded,
                Err(error) => {
                    tracing::warn!(alert = %self.name, %error, "expanding an alert template failed");
                    format!("<error expanding template: {error}>")
                }
            };
            let mut built: BTreeMap<String, String> = series_labels
                .iter()
                .filter(|label| label.name != "__name__")
                .map(|label| (label.name.clone(), label.value.clone()))
                .collect();
            for (name, template) in &self.labels {
                let expanded = expand(template);
                if expanded.is_empty() {
                    built.remove(name);
                } else {
                    built.insert(name.clone(), expanded);
                }
            }
            built.insert("alertname".to_string(), self.name.clone());
            let labels = Labels::new(
                built
                    .into_iter()
                    .map(|(name, value)| Label::new(name, value))
                    .collect(),
            );
            let annotations = Labels::new(
                self.annotations
                    .iter()
                    .map(|(name, template)| Label::new(name.clone(), expand(template)))
                    .collect(),
            );
            if current.contains_key(&labels) {
                return Err(RuleEvaluationError::Result(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .to_string(),
                ));
            }
            current.insert(
                labels.clone(),
                Alert {
                    labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at: ts,
                    fired_at: None,
                    resolved_at: None,
                    keep_firing_since: None,
                },
            );
        }
        let present: BTreeSet<Labels> = current.keys().cloned().collect();
        for (labels, fresh) in current {
            match self.active.get_mut(&labels) {
                Some(existing) if existing.state != AlertState::Inactive => {
                    existing.value = fresh.value;
                    existing.annotations = fresh.annotations;
                }
                _ => {
                    self.active.insert(labels, fresh);
                }
            }
        }
        let mut samples = Vec::new();
        let mut active_count = 0usize;
        let mut to_remove = Vec::new();
        for (labels, alert) in self.active.iter_mut() {
            if !present.contains(labels) {
                let mut keep_firing = false;
                if alert.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    let since = *alert.keep_firing_since.get_or_insert(ts);
                    keep_firing = ts - since < self.keep_firing_for_ms;
                }
                let resolved_long_ago = alert
                    .resolved_at
                    .is_some_and(|resolved| ts - resolved > RESOLVED_RETENTION_MS);
                if alert.state == AlertState::Pending || resolved_long_ago {
                    to_remove.push(labels.clone());
                }
                if alert.state != AlertState::Inactive && !keep_firing {
                    alert.state = AlertState::Inactive;
                    alert.resolved_at = Some(ts);
                }
                if !keep_firing {
                    continue;
                }
            } else {
                alert.keep_firing_since = None;
            }
            active_count += 1;
            if alert.state == AlertState::Pending && ts - alert.active_at >= self.hold_ms {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(ts);
            }
            samples.push((
                alert_series(&alert.labels, ALERTS_METRIC_NAME, Some(alert.state)),
                1.0,
            ));
            samples.push((
                alert_series(&alert.labels, ALERTS_FOR_STATE_METRIC_NAME, None),
                // Whole seconds, as Prometheus writes `ActiveAt.Unix()`.
                alert.active_at.div_euclid(1000) as f64,
            ));
        }
        for labels in to_remove {
            self.active.remove(&labels);
        }
        if limit > 0 && active_count > limit {
            self.active.clear();
            return Err(RuleEvaluationError::Limit(format!(
                "exceeded limit of {limit} with {active_count} alerts"
            )));
        }
        Ok(samples)
    }

    /// Alerts that are pending or firing (resolved ones excluded), in label order.
    pub fn active_alerts(&self) -> impl Iterator<Item = &Alert> {
        self.active
            .values()
            .filter(|alert| alert.state != AlertState::Inactive)
    }

    /// The rule's state: the highest state of its alerts.
    pub fn state(&self) -> AlertState {
        let mut state = AlertState::Inactive;
        for alert in self.active.values() {
            match alert.state {
                AlertState::Firing => return AlertState::Firing,
                AlertState::Pending => state = AlertState::Pending,
                AlertState::Inactive => {}
            }
        }
        state
    }
}

/// `ALERTS{alertstate=...}` or `ALERTS_FOR_STATE` labels of an alert.
fn alert_series(labels: &Labels, metric: &str, state: Option<AlertState>) -> Labels {
    let mut series = labels.with("__name__", metric);
    if let Some(state) = state {
        series = series.with("alertstate", state.as_str());
    }
    series
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    fn rule(hold_ms: i64, keep_firing_for_ms: i64) -> AlertingRule {
        AlertingRule {
            name: "HighLoad".to_string(),
            expr: "load > 1".to_string(),
            hold_ms,
            keep_firing_for_ms,
            labels: [("severity".to_string(), "page".to_string())].into(),
            annotations: [(
                "summary".to_string(),
                "{{ $labels.instance }} at {{ $value }}".to_string(),
            )]
            .into(),
            active: BTreeMap::new(),
        }
    }

    fn result(value: f64) -> Vec<(Labels, f64)> {
        vec![(
            Labels::from_pairs([("__name__", "load"), ("instance", "a")]),
            value,
        )]
    }

    fn step(rule: &mut AlertingRule, ts: i64, present: bool) -> Vec<(Labels, f64)> {
        let context = AlertTemplateContext {
            external_labels: &[],
            external_url: "",
            query: None,
        };
        let input = if present { result(2.0) } else { Vec::new() };
        rule.evaluate(ts, input, 0, &context).unwrap()
    }

    fn states(samples: &[(Labels, f64)]) -> Vec<String> {
        samples
            .iter()
            .filter_map(|(labels, _)| labels.get("alertstate").map(str::to_string))
            .collect()
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved() {
        let mut rule = rule(5 * MINUTE, 0);
        let samples = step(&mut rule, 0, true);
        assert_eq!(states(&samples), ["pending"]);
        let alert = rule.active_alerts().next().unwrap();
        assert_eq!(alert.labels.get("severity"), Some("page"));
        assert_eq!(alert.labels.get("alertname"), Some("HighLoad"));
        assert_eq!(alert.labels.get("__name__"), None);
        assert_eq!(alert.annotations.get("summary"), Some("a at 2"));
        let for_state = samples
            .iter()
            .find(|(labels, _)| labels.get("__name__") == Some("ALERTS_FOR_STATE"))
            .unwrap();
        assert_eq!(for_state.1, 0.0);
        assert_eq!(states(&step(&mut rule, 4 * MINUTE, true)), ["pending"]);
        assert_eq!(states(&step(&mut rule, 5 * MINUTE, true)), ["firing"]);
        assert_eq!(
            rule.active_alerts().next().unwrap().fired_at,
            Some(5 * MINUTE)
        );
        assert!(step(&mut rule, 6 * MINUTE, false).is_empty());
        let resolved = rule.active.values().next().unwrap();
        assert_eq!(resolved.state, AlertState::Inactive);
        assert_eq!(resolved.resolved_at, Some(6 * MINUTE));
        // Kept 15 minutes, then forgotten.
        step(&mut rule, 21 * MINUTE, false);
        assert_eq!(rule.active.len(), 1);
        step(&mut rule, 21 * MINUTE + 1, false);
        assert!(rule.active.is_empty());
    }

    #[test]
    fn pending_alert_vanishes_when_series_goes() {
        let mut rule = rule(5 * MINUTE, 0);
        step(&mut rule, 0, true);
        assert!(step(&mut rule, MINUTE, false).is_empty());
        assert!(rule.active.is_empty());
        // Coming back starts the `for` timer over.
        step(&mut rule, 2 * MINUTE, true);
        assert_eq!(rule.active_alerts().next().unwrap().active_at, 2 * MINUTE);
    }

    #[test]
    fn zero_for_fires_at_once() {
        let mut rule = rule(0, 0);
        assert_eq!(states(&step(&mut rule, 0, true)), ["firing"]);
    }

    #[test]
    fn keep_firing_for_holds_then_resolves() {
        let mut rule = rule(0, 10 * MINUTE);
        step(&mut rule, 0, true);
        assert_eq!(states(&step(&mut rule, MINUTE, false)), ["firing"]);
        assert_eq!(
            rule.active_alerts().next().unwrap().keep_firing_since,
            Some(MINUTE)
        );
        assert_eq!(states(&step(&mut rule, 10 * MINUTE, false)), ["firing"]);
        assert!(step(&mut rule, 11 * MINUTE, false).is_empty());
        assert_eq!(rule.state(), AlertState::Inactive);
    }

    #[test]
    fn keep_firing_for_resets_when_series_returns() {
        let mut rule = rule(0, 10 * MINUTE);
        step(&mut rule, 0, true);
        step(&mut rule, MINUTE, false);
        step(&mut rule, 2 * MINUTE, true);
        assert_eq!(rule.active_alerts().next().unwrap().keep_firing_since, None);
        assert_eq!(states(&step(&mut rule, 11 * MINUTE, false)), ["firing"]);
    }

    #[test]
    fn limit_drops_all_alerts_and_fails() {
        let mut rule = rule(0, 0);
        let context = AlertTemplateContext {
            external_labels: &[],
            external_url: "",
            query: None,
        };
        let two = vec![
            (Labels::from_pairs([("instance", "a")]), 1.0),
            (Labels::from_pairs([("instance", "b")]), 1.0),
        ];
        let outcome = rule.evaluate(0, two, 1, &context);
        assert!(matches!(outcome, Err(RuleEvaluationError::Limit(_))));
        assert!(rule.active.is_empty());
    }

    #[test]
    fn template_errors_land_in_the_annotation() {
        let mut rule = rule(0, 0);
        rule.annotations
            .insert("bad".to_string(), "{{ gt $value 1 }}".to_string());
        step(&mut rule, 0, true);
        let alert = rule.active_alerts().next().unwrap();
        let text = alert.annotations.get("bad").unwrap();
        assert!(
            text.starts_with("<error expanding template: template: __alert_HighLoad"),
            "{text}"
        );
        assert_eq!(alert.annotations.get("summary"), Some("a at 2"));
    }
}
