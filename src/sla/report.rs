//! SLA figures computed from incidents, pure: the report a provider shows
//! its client at the end of a period ([`sla_report`]), and the cumulative
//! totals behind the `guardia_sla_*` series ([`SlaTotals`]).
//!
//! An incident belongs to a report period when it was opened inside
//! `[from, to)`. Its time to acknowledge is counted once the acknowledge
//! clock has stopped (first acknowledgement, or resolution without one);
//! its time to resolve once it is resolved. An incident whose clock still
//! runs counts as *not within target* as soon as that clock breached, and
//! is left out of the percentage until then (it is neither in nor out yet).
//! Breaches and escalations count their events inside the period.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Labels, Timestamp};
use crate::sla::incident::{EventKind, Incident, clocks, working_ms};
use crate::sla::policy::{Policy, PolicySet};

/// Upper bounds (seconds) of the `guardia_sla_*_seconds` histogram buckets:
/// one minute to one day of working time, where response targets live.
pub const HISTOGRAM_BUCKETS_SECONDS: [f64; 10] = [
    60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0, 259200.0,
];

/// One policy's figures over a period.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PolicyReport {
    pub policy: String,
    pub incidents: u64,
    /// Incidents whose acknowledge clock is decided (stopped or breached).
    pub acknowledge_decided: u64,
    pub acknowledged_within_target: u64,
    /// `None` when no incident is decided.
    pub acknowledged_within_target_percent: Option<f64>,
    pub resolve_decided: u64,
    pub resolved_within_target: u64,
    pub resolved_within_target_percent: Option<f64>,
    pub mean_time_to_acknowledge_seconds: Option<f64>,
    pub p90_time_to_acknowledge_seconds: Option<f64>,
    pub mean_time_to_resolve_seconds: Option<f64>,
    pub p90_time_to_resolve_seconds: Option<f64>,
    pub acknowledge_breaches: u64,
    pub resolve_breaches: u64,
    pub escalations: u64,
    /// Covered hours of the policy's calendar in the period.
    pub coverage_hours: f64,
}

/// The report of every policy (or only `only_policy`) over `[from, to)`,
/// evaluated at `now` for clocks that still run.
pub fn sla_report(
    incidents: &[Incident],
    policies: &PolicySet,
    from: Timestamp,
    to: Timestamp,
    only_policy: Option<&str>,
    now: Timestamp,
) -> Vec<PolicyReport> {
    let mut reports = Vec::new();
    for policy in policies.policies() {
        if only_policy.is_some_and(|name| name != policy.name) {
            continue;
        }
        let of_policy: Vec<&Incident> = incidents
            .iter()
            .filter(|incident| incident.policy == policy.name)
            .collect();
        reports.push(policy_report(&of_policy, policy, from, to, now));
    }
    reports
}

fn policy_report(
    incidents: &[&Incident],
    policy: &Policy,
    from: Timestamp,
    to: Timestamp,
    now: Timestamp,
) -> PolicyReport {
    let mut report = PolicyReport {
        policy: policy.name.clone(),
        coverage_hours: working_ms(policy, from, to) as f64 / 3_600_000.0,
        ..PolicyReport::default()
    };
    let mut acknowledge_seconds = Vec::new();
    let mut resolve_seconds = Vec::new();
    for incident in incidents {
        for event in &incident.events {
            if event.at < from || event.at >= to {
                continue;
            }
            match &event.kind {
                EventKind::Escalated { .. } => report.escalations += 1,
                EventKind::Breached { kind, .. } => match kind {
                    crate::sla::incident::BreachKind::Acknowledge => {
                        report.acknowledge_breaches += 1
                    }
                    crate::sla::incident::BreachKind::Resolve => report.resolve_breaches += 1,
                },
                _ => {}
            }
        }
        let opened = incident.opened_at();
        if opened < from || opened >= to {
            continue;
        }
        report.incidents += 1;
        let figures = clocks(incident, policy, now.max(opened));
        let acknowledge_stopped = decided_acknowledge_at(incident).is_some();
        if acknowledge_stopped || figures.acknowledge.breached {
            report.acknowledge_decided += 1;
            if !figures.acknowledge.breached {
                report.acknowledged_within_target += 1;
            }
        }
        if acknowledge_stopped {
            acknowledge_seconds.push(figures.acknowledge.elapsed_ms as f64 / 1000.0);
        }
        let resolved = incident.resolved_at().is_some();
        if resolved || figures.resolve.breached {
            report.resolve_decided += 1;
            if !figures.resolve.breached {
                report.resolved_within_target += 1;
            }
        }
        if resolved {
            resolve_seconds.push(figures.resolve.elapsed_ms as f64 / 1000.0);
        }
    }
    report.acknowledged_within_target_percent = percent(
        report.acknowledged_within_target,
        report.acknowledge_decided,
    );
    report.resolved_within_target_percent =
        percent(report.resolved_within_target, report.resolve_decided);
    report.mean_time_to_acknowledge_seconds = mean(&acknowledge_seconds);
    report.p90_time_to_acknowledge_seconds = percentile(&mut acknowledge_seconds, 0.9);
    report.mean_time_to_resolve_seconds = mean(&resolve_seconds);
    report.p90_time_to_resolve_seconds = percentile(&mut resolve_seconds, 0.9);
    report
}

/// When the acknowledge clock stopped for good: the first acknowledgement,
/// or the resolution when nobody acknowledged.
fn decided_acknowledge_at(incident: &Incident) -> Option<Timestamp> {
    match (incident.first_acknowledged_at(), incident.resolved_at()) {
        (Some(ack), Some(resolved)) => Some(ack.min(resolved)),
        (ack, resolved) => ack.or(resolved),
    }
}

fn percent(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 * 100.0 / whole as f64)
}

fn mean(values: &[f64]) -> Option<f64> {
    (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Nearest-rank percentile: the smallest value with at least `quantile` of
/// the values at or below it.
pub fn percentile(values: &mut [f64], quantile: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let rank = (quantile * values.len() as f64).ceil() as usize;
    values.get(rank.clamp(1, values.len()) - 1).copied()
}

/// Cumulative histogram of working seconds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkingSecondsHistogram {
    /// Count per bucket of [`HISTOGRAM_BUCKETS_SECONDS`] (not cumulative).
    pub bucket_counts: [u64; HISTOGRAM_BUCKETS_SECONDS.len()],
    pub count: u64,
    pub sum: f64,
}

impl WorkingSecondsHistogram {
    pub fn observe(&mut self, seconds: f64) {
        if let Some(index) = HISTOGRAM_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
        {
            self.bucket_counts[index] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }
}

/// One policy's cumulative figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyTotals {
    pub acknowledge: WorkingSecondsHistogram,
    pub resolve: WorkingSecondsHistogram,
    /// kind ("acknowledge" | "resolve") → breaches.
    pub breaches: BTreeMap<&'static str, u64>,
    /// tier → escalations.
    pub escalations: BTreeMap<u32, u64>,
}

/// Cumulative figures per policy over a set of incidents. Each incident
/// adds only what cannot change any more (stopped clocks, recorded events),
/// so totals built from the store at start and grown by later incidents
/// never go backwards across restarts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlaTotals {
    pub by_policy: BTreeMap<String, PolicyTotals>,
}

impl SlaTotals {
    pub fn add_incident(&mut self, incident: &Incident, policies: &PolicySet) {
        let totals = self.by_policy.entry(incident.policy.clone()).or_default();
        for event in &incident.events {
            match &event.kind {
                EventKind::Escalated { tier, .. } => {
                    *totals.escalations.entry(*tier).or_insert(0) += 1
                }
                EventKind::Breached { kind, .. } => {
                    *totals.breaches.entry(kind.as_str()).or_insert(0) += 1
                }
                _ => {}
            }
        }
        // Without its policy there is no calendar to count working time.
        let Some(policy) = policies.policy(&incident.policy) else {
            return;
        };
        let opened = incident.opened_at();
        if let Some(stopped) = decided_acknowledge_at(incident) {
            totals
                .acknowledge
                .observe(working_ms(policy, opened, stopped) as f64 / 1000.0);
        }
        if let Some(resolved) = incident.resolved_at() {
            totals
                .resolve
                .observe(working_ms(policy, opened, resolved) as f64 / 1000.0);
        }
    }

    /// The series samples (labels with `__name__`, value) of these totals.
    pub fn push_samples(&self, samples: &mut Vec<(Labels, f64)>) {
        for (policy, totals) in &self.by_policy {
            for (name, histogram) in [
                ("guardia_sla_acknowledge_seconds", &totals.acknowledge),
                ("guardia_sla_resolve_seconds", &totals.resolve),
            ] {
                let mut cumulative = 0;
                for (bound, count) in HISTOGRAM_BUCKETS_SECONDS
                    .iter()
                    .zip(histogram.bucket_counts.iter())
                {
                    cumulative += count;
                    samples.push((
                        Labels::from_pairs([
                            ("__name__", format!("{name}_bucket")),
                            ("policy", policy.clone()),
                            ("le", crate::telemetry::format_value(*bound)),
                        ]),
                        cumulative as f64,
                    ));
                }
                samples.push((
                    Labels::from_pairs([
                        ("__name__", format!("{name}_bucket")),
                        ("policy", policy.clone()),
                        ("le", "+Inf".to_string()),
                    ]),
                    histogram.count as f64,
                ));
                samples.push((
                    Labels::from_pairs([
                        ("__name__", format!("{name}_sum")),
                        ("policy", policy.clone()),
                    ]),
                    histogram.sum,
                ));
                samples.push((
                    Labels::from_pairs([
                        ("__name__", format!("{name}_count")),
                        ("policy", policy.clone()),
                    ]),
                    histogram.count as f64,
                ));
            }
            for kind in ["acknowledge", "resolve"] {
                samples.push((
                    Labels::from_pairs([
                        ("__name__", "guardia_sla_breaches_total"),
                        ("policy", policy.as_str()),
                        ("kind", kind),
                    ]),
                    totals.breaches.get(kind).copied().unwrap_or(0) as f64,
                ));
            }
            for (tier, count) in &totals.escalations {
                samples.push((
                    Labels::from_pairs([
                        ("__name__", "guardia_sla_escalations_total".to_string()),
                        ("policy", policy.clone()),
                        ("tier", tier.to_string()),
                    ]),
                    *count as f64,
                ));
            }
        }
    }
}

/// The report as a text table (`guardia sla report`).
pub fn format_report_table(reports: &[PolicyReport]) -> String {
    let header = [
        "policy",
        "incidents",
        "ack_within_%",
        "resolved_within_%",
        "mean_ack",
        "p90_ack",
        "mean_resolve",
        "p90_resolve",
        "ack_breaches",
        "resolve_breaches",
        "escalations",
        "coverage_h",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|cell| cell.to_string()).collect()];
    for report in reports {
        rows.push(report_cells(report, true));
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// The report as CSV, durations in seconds.
pub fn format_report_csv(reports: &[PolicyReport]) -> String {
    let mut text = String::from(
        "policy,incidents,acknowledged_within_target_percent,resolved_within_target_percent,\
mean_time_to_acknowledge_seconds,p90_time_to_acknowledge_seconds,mean_time_to_resolve_seconds,\
p90_time_to_resolve_seconds,acknowledge_breaches,resolve_breaches,escalations,coverage_hours\n",
    );
    for report in reports {
        let mut cells = report_cells(report, false);
        cells[0] = csv_field(&cells[0]);
        text.push_str(&cells.join(","));
        text.push('\n');
    }
    text
}

fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

fn report_cells(report: &PolicyReport, human: bool) -> Vec<String> {
    let optional = |value: Option<f64>, duration: bool| match value {
        None => {
            if human {
                "-".to_string()
            } else {
                String::new()
            }
        }
        Some(value) if duration && human => {
            crate::sla::manager::format_duration_ms((value * 1000.0).round() as i64)
        }
        Some(value) => format!("{value:.1}"),
    };
    vec![
        report.policy.clone(),
        report.incidents.to_string(),
        optional(report.acknowledged_within_target_percent, false),
        optional(report.resolved_within_target_percent, false),
        optional(report.mean_time_to_acknowledge_seconds, true),
        optional(report.p90_time_to_acknowledge_seconds, true),
        optional(report.mean_time_to_resolve_seconds, true),
        optional(report.p90_time_to_resolve_seconds, true),
        report.acknowledge_breaches.to_string(),
        report.resolve_breaches.to_string(),
        report.escalations.to_string(),
        format!("{:.1}", report.coverage_hours),
    ]
}
