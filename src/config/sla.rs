//! The `sla:` section of the configuration file: coverage calendars (weekly
//! hours in an IANA zone, holidays as dates and as an ICS file), policies
//! (matchers, targets, escalation tiers) and heartbeats (a site's link
//! series). This module parses and checks the section; `crate::sla` turns it
//! into calendars and policies that answer time questions. Every problem a
//! user can make is caught here, so `guardia check config` reports it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::civil::Date;
use serde::Deserialize;

use super::matcher::parse_matcher_list;
use super::parse_duration;
use super::time_interval::{TimeInterval, load_time_zone};
use crate::model::Matcher;

/// The built-in calendar that covers every instant; no user calendar may take its name.
pub const ALWAYS_CALENDAR_NAME: &str = "24x7";

/// The label that names a site in heartbeat series unless configured.
pub const DEFAULT_HEARTBEAT_SITE_LABEL: &str = "site";

/// Alerts inhibited while a site is unreachable unless `inhibit` says otherwise.
pub const DEFAULT_HEARTBEAT_INHIBIT: &str = r#"alertname=~".*Down|.*Unreachable|.*Failing""#;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlaConfigError {
    #[error("sla: {0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> SlaConfigError {
    SlaConfigError::Invalid(message.into())
}

/// The resolved `sla:` section.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SlaConfig {
    pub calendars: Vec<CalendarConfig>,
    pub policies: Vec<PolicyConfig>,
    pub heartbeats: Vec<HeartbeatConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CalendarConfig {
    pub name: String,
    /// IANA zone, checked to exist.
    pub time_zone: String,
    /// Covered hours; each entry's `location` is `time_zone`. Empty means
    /// every hour of every day (holidays still excluded).
    pub hours: Vec<TimeInterval>,
    pub holidays: Vec<Date>,
    /// An ICS file of holidays, relative paths resolved against the
    /// configuration file's directory by `load_file`.
    pub holidays_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutsideHours {
    /// Escalation tiers run on wall time outside coverage too.
    Page,
    /// Notify the first tier, escalate only on covered time.
    #[default]
    Notify,
    /// No notification outside coverage (the incident still opens).
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    pub name: String,
    pub matchers: Vec<Matcher>,
    /// A calendar name or `24x7`.
    pub calendar: String,
    pub acknowledge_within: Duration,
    pub resolve_within: Duration,
    pub acknowledge_timeout: Option<Duration>,
    pub outside_hours: OutsideHours,
    /// Labels that group alerts into one incident; `None` means the alert
    /// name plus all labels.
    pub group_by: Option<Vec<String>>,
    pub escalation: Vec<EscalationTierConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationTierConfig {
    /// Covered time without acknowledgement before this tier is notified.
    pub after: Duration,
    pub receiver: String,
    /// Extra notifications of the last tier; only the last tier may repeat.
    pub repeat: u32,
    /// Covered time between repeats; `None` when not given (the engine then
    /// uses the gap between the last two tiers' `after`).
    pub repeat_interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatConfig {
    pub name: String,
    /// A PromQL series selector such as `up{job="site-gateway"}`.
    pub selector: String,
    pub site_label: String,
    pub missing_for: Duration,
    /// The policy that the "site unreachable" incident opens under.
    pub policy: String,
    /// Alerts of the same site matching all of these are inhibited while
    /// the site is unreachable.
    pub inhibit: Vec<Matcher>,
}

impl SlaConfig {
    /// Every receiver named by an escalation tier, sorted, once each.
    // receivers are checked against notifications.receivers at merge
    pub fn receiver_names(&self) -> Vec<String> {
        let names: BTreeSet<&str> = self
            .policies
            .iter()
            .flat_map(|policy| policy.escalation.iter())
            .map(|tier| tier.receiver.as_str())
            .collect();
        names.into_iter().map(str::to_string).collect()
    }

    /// Makes relative `holidays_file` paths relative to `config_directory`.
    pub fn resolve_relative_paths(&mut self, config_directory: &Path) {
        for calendar in &mut self.calendars {
            if let Some(path) = &calendar.holidays_file
                && path.is_relative()
            {
                calendar.holidays_file = Some(config_directory.join(path));
            }
        }
    }

    pub fn calendar(&self, name: &str) -> Option<&CalendarConfig> {
        self.calendars.iter().find(|calendar| calendar.name == name)
    }

    pub fn policy(&self, name: &str) -> Option<&PolicyConfig> {
        self.policies.iter().find(|policy| policy.name == name)
    }
}

// ---------------------------------------------------------------- raw YAML

/// The section as written; `ConfigFile` resolves it with [`SlaConfig::from_raw`].
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSlaConfig {
    #[serde(default)]
    calendars: Vec<RawCalendar>,
    #[serde(default)]
    policies: Vec<RawPolicy>,
    #[serde(default)]
    heartbeats: Vec<RawHeartbeat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCalendar {
    name: String,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    hours: Vec<TimeInterval>,
    #[serde(default)]
    holidays: Vec<String>,
    #[serde(default)]
    holidays_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    #[serde(default)]
    matchers: Vec<String>,
    calendar: String,
    acknowledge_within: String,
    resolve_within: String,
    #[serde(default)]
    acknowledge_timeout: Option<String>,
    #[serde(default)]
    outside_hours: Option<String>,
    #[serde(default)]
    group_by: Option<Vec<String>>,
    #[serde(default)]
    escalation: Vec<RawEscalationTier>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEscalationTier {
    after: String,
    receiver: String,
    #[serde(default)]
    repeat: Option<u32>,
    #[serde(default)]
    repeat_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    name: String,
    selector: String,
    #[serde(default)]
    site_label: Option<String>,
    missing_for: String,
    policy: String,
    #[serde(default)]
    inhibit: Option<Vec<String>>,
}

fn duration(text: &str, what: &str) -> Result<Duration, SlaConfigError> {
    parse_duration(text).map_err(|error| invalid(format!("{what}: {error}")))
}

impl SlaConfig {
    /// Checks and resolves the section as written.
    pub fn from_raw(raw: RawSlaConfig) -> Result<SlaConfig, SlaConfigError> {
        let mut calendars: Vec<CalendarConfig> = Vec::new();
        for raw_calendar in raw.calendars {
            let calendar = resolve_calendar(raw_calendar)?;
            if calendars.iter().any(|other| other.name == calendar.name) {
                return Err(invalid(format!(
                    "calendar {:?} is defined twice",
                    calendar.name
                )));
            }
            calendars.push(calendar);
        }
        let mut policies: Vec<PolicyConfig> = Vec::new();
        for raw_policy in raw.policies {
            let policy = resolve_policy(raw_policy, &calendars)?;
            if policies.iter().any(|other| other.name == policy.name) {
                return Err(invalid(format!(
                    "policy {:?} is defined twice",
                    policy.name
                )));
            }
            policies.push(policy);
        }
        let mut heartbeats: Vec<HeartbeatConfig> = Vec::new();
        for raw_heartbeat in raw.heartbeats {
            let heartbeat = resolve_heartbeat(raw_heartbeat, &policies)?;
            if heartbeats.iter().any(|other| other.name == heartbeat.name) {
                return Err(invalid(format!(
                    "heartbeat {:?} is defined twice",
                    heartbeat.name
                )));
            }
            heartbeats.push(heartbeat);
        }
        Ok(SlaConfig {
            calendars,
            policies,
            heartbeats,
        })
    }
}

fn resolve_calendar(raw: RawCalendar) -> Result<CalendarConfig, SlaConfigError> {
    let name = raw.name;
    let context = |message: String| invalid(format!("calendar {name:?}: {message}"));
    if name.is_empty() {
        return Err(invalid("a calendar has an empty name"));
    }
    if name == ALWAYS_CALENDAR_NAME {
        return Err(context(format!(
            "{ALWAYS_CALENDAR_NAME:?} is built in and cannot be redefined"
        )));
    }
    let time_zone = raw.time_zone.unwrap_or_else(|| "UTC".to_string());
    load_time_zone(&time_zone).map_err(|error| context(error.to_string()))?;
    let mut hours = Vec::with_capacity(raw.hours.len());
    for interval in raw.hours {
        // An entry's own `location` would silently disagree with the
        // calendar's zone; only the calendar's `time_zone` is allowed.
        if interval.location_name != "UTC" && interval.location_name != time_zone {
            return Err(context(format!(
                "hours entries take the calendar's time_zone; remove location {:?}",
                interval.location_name
            )));
        }
        hours.push(
            interval
                .with_location(&time_zone)
                .map_err(|error| context(error.to_string()))?,
        );
    }
    let mut holidays = Vec::with_capacity(raw.holidays.len());
    for text in &raw.holidays {
        let date: Date = text.parse().map_err(|error| {
            context(format!(
                "holiday {text:?} is not a date (YYYY-MM-DD): {error}"
            ))
        })?;
        holidays.push(date);
    }
    Ok(CalendarConfig {
        name,
        time_zone,
        hours,
        holidays,
        holidays_file: raw.holidays_file,
    })
}

fn resolve_policy(
    raw: RawPolicy,
    calendars: &[CalendarConfig],
) -> Result<PolicyConfig, SlaConfigError> {
    let name = raw.name;
    let context = |message: String| invalid(format!("policy {name:?}: {message}"));
    if name.is_empty() {
        return Err(invalid("a policy has an empty name"));
    }
    let matchers = parse_matcher_list(&raw.matchers).map_err(|error| context(error.to_string()))?;
    if raw.calendar != ALWAYS_CALENDAR_NAME
        && !calendars
            .iter()
            .any(|calendar| calendar.name == raw.calendar)
    {
        return Err(context(format!(
            "unknown calendar {:?} (define it under sla.calendars or use {ALWAYS_CALENDAR_NAME:?})",
            raw.calendar
        )));
    }
    let acknowledge_within = duration(
        &raw.acknowledge_within,
        &format!("policy {name:?}: acknowledge_within"),
    )?;
    let resolve_within = duration(
        &raw.resolve_within,
        &format!("policy {name:?}: resolve_within"),
    )?;
    let acknowledge_timeout = raw
        .acknowledge_timeout
        .as_deref()
        .map(|text| duration(text, &format!("policy {name:?}: acknowledge_timeout")))
        .transpose()?;
    let outside_hours = match raw.outside_hours.as_deref() {
        None | Some("notify") => OutsideHours::Notify,
        Some("page") => OutsideHours::Page,
        Some("none") => OutsideHours::None,
        Some(other) => {
            return Err(context(format!(
                "outside_hours {other:?} must be page, notify or none"
            )));
        }
    };
    if let Some(labels) = &raw.group_by {
        for label in labels {
            if label != "..." && !crate::model::is_legacy_label_name(label) {
                return Err(context(format!(
                    "group_by {label:?} is not a valid label name"
                )));
            }
        }
    }
    let tier_count = raw.escalation.len();
    let mut escalation: Vec<EscalationTierConfig> = Vec::with_capacity(tier_count);
    for (index, tier) in raw.escalation.into_iter().enumerate() {
        let tier_context =
            |message: String| context(format!("escalation tier {}: {message}", index + 1));
        let after = parse_duration(&tier.after).map_err(|error| tier_context(error.to_string()))?;
        if tier.receiver.is_empty() {
            return Err(tier_context("receiver is empty".to_string()));
        }
        let is_last = index + 1 == tier_count;
        if !is_last && (tier.repeat.is_some() || tier.repeat_interval.is_some()) {
            return Err(tier_context("only the last tier may repeat".to_string()));
        }
        let repeat_interval = tier
            .repeat_interval
            .as_deref()
            .map(parse_duration)
            .transpose()
            .map_err(|error| tier_context(error.to_string()))?;
        if repeat_interval == Some(Duration::ZERO) {
            return Err(tier_context("repeat_interval must be above 0".to_string()));
        }
        if let Some(previous) = escalation.last()
            && after < previous.after
        {
            return Err(tier_context(format!(
                "after {:?} is earlier than the previous tier's",
                tier.after
            )));
        }
        escalation.push(EscalationTierConfig {
            after,
            receiver: tier.receiver,
            repeat: tier.repeat.unwrap_or(0),
            repeat_interval,
        });
    }
    Ok(PolicyConfig {
        name,
        matchers,
        calendar: raw.calendar,
        acknowledge_within,
        resolve_within,
        acknowledge_timeout,
        outside_hours,
        group_by: raw.group_by,
        escalation,
    })
}

fn resolve_heartbeat(
    raw: RawHeartbeat,
    policies: &[PolicyConfig],
) -> Result<HeartbeatConfig, SlaConfigError> {
    let name = raw.name;
    let context = |message: String| invalid(format!("heartbeat {name:?}: {message}"));
    if name.is_empty() {
        return Err(invalid("a heartbeat has an empty name"));
    }
    match promql_parser::parser::parse(&raw.selector) {
        Ok(promql_parser::parser::Expr::VectorSelector(_)) => {}
        Ok(_) => {
            return Err(context(format!(
                "selector {:?} must be a series selector such as up{{job=\"site-gateway\"}}",
                raw.selector
            )));
        }
        Err(error) => {
            return Err(context(format!("selector {:?}: {error}", raw.selector)));
        }
    }
    let site_label = raw
        .site_label
        .unwrap_or_else(|| DEFAULT_HEARTBEAT_SITE_LABEL.to_string());
    if !crate::model::is_legacy_label_name(&site_label) {
        return Err(context(format!(
            "site_label {site_label:?} is not a valid label name"
        )));
    }
    let missing_for = duration(
        &raw.missing_for,
        &format!("heartbeat {name:?}: missing_for"),
    )?;
    if !policies.iter().any(|policy| policy.name == raw.policy) {
        return Err(context(format!("unknown policy {:?}", raw.policy)));
    }
    let inhibit_texts = raw
        .inhibit
        .unwrap_or_else(|| vec![DEFAULT_HEARTBEAT_INHIBIT.to_string()]);
    let inhibit = parse_matcher_list(&inhibit_texts).map_err(|error| context(error.to_string()))?;
    Ok(HeartbeatConfig {
        name,
        selector: raw.selector,
        site_label,
        missing_for,
        policy: raw.policy,
        inhibit,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::file::parse_config;

    const CALENDAR: &str = "
  calendars:
    - name: office
      time_zone: America/Santiago
      hours:
        - weekdays: ['monday:friday']
          times: [{start_time: '08:00', end_time: '18:00'}]
";

    fn policy_yaml(body: &str) -> String {
        format!(
            "sla:{CALENDAR}  policies:
    - name: p
      matchers: ['severity=\"critical\"']
      calendar: office
      acknowledge_within: 15m
      resolve_within: 4h
{body}"
        )
    }

    fn error_of(text: &str) -> String {
        parse_config(text).expect_err(text).to_string()
    }

    #[test]
    fn unknown_keys_are_errors_with_line_and_column() {
        let text = "sla:\n  calendars:\n    - name: office\n      timezone: UTC\n";
        let error = error_of(text);
        assert!(
            error.contains("timezone") && error.contains("line 4"),
            "{error}"
        );
        let error = error_of(&policy_yaml(
            "      escalation:\n        - {after: 0s, reciever: a}\n",
        ));
        assert!(
            error.contains("reciever") && error.contains("line 15"),
            "{error}"
        );
        let error = error_of(&format!("sla:{CALENDAR}        - weekday: ['monday']\n"));
        assert!(
            error.contains("weekday") && error.contains("line 8"),
            "{error}"
        );
    }

    #[test]
    fn invalid_sections_are_refused_with_the_reason() {
        for (text, expected) in [
            (
                policy_yaml("").replace("calendar: office", "calendar: ofice"),
                "unknown calendar \"ofice\"",
            ),
            (
                "sla:\n  calendars:\n    - name: office\n      time_zone: America/Santiagoo\n"
                    .to_string(),
                "America/Santiagoo",
            ),
            (
                policy_yaml("")
                    .replace("acknowledge_within: 15m", "acknowledge_within: 15 minutes"),
                "acknowledge_within",
            ),
            (
                policy_yaml("      acknowledge_timeout: 1x\n"),
                "acknowledge_timeout",
            ),
            (
                policy_yaml(
                    "      escalation:\n        - {after: 0s, receiver: a, repeat: 2}\n        - {after: 10m, receiver: b}\n",
                ),
                "only the last tier may repeat",
            ),
            (
                policy_yaml(
                    "      escalation:\n        - {after: 10m, receiver: a}\n        - {after: 5m, receiver: b}\n",
                ),
                "earlier than the previous tier",
            ),
            (
                policy_yaml("      escalation:\n        - {after: soon, receiver: a}\n"),
                "tier 1",
            ),
            (
                policy_yaml("      outside_hours: sometimes\n"),
                "page, notify or none",
            ),
            (
                format!(
                    "{}    - name: p\n      calendar: 24x7\n      acknowledge_within: 1m\n      resolve_within: 1h\n",
                    policy_yaml("")
                ),
                "policy \"p\" is defined twice",
            ),
            (
                "sla:\n  calendars:\n    - name: a\n    - name: a\n".to_string(),
                "calendar \"a\" is defined twice",
            ),
            (
                "sla:\n  calendars:\n    - name: 24x7\n".to_string(),
                "built in",
            ),
            (
                "sla:\n  calendars:\n    - name: a\n      holidays: ['2026-13-01']\n".to_string(),
                "2026-13-01",
            ),
            (
                format!("sla:{CALENDAR}        - location: Europe/Berlin\n"),
                "time_zone",
            ),
            (
                policy_yaml("").replace("severity=\"critical\"", "severity=~\"(\""),
                "policy \"p\"",
            ),
            (
                format!(
                    "{}  heartbeats:\n    - name: h\n      selector: 'rate(up[5m])'\n      missing_for: 5m\n      policy: p\n",
                    policy_yaml("")
                ),
                "series selector",
            ),
            (
                format!(
                    "{}  heartbeats:\n    - name: h\n      selector: 'up'\n      missing_for: 5m\n      policy: q\n",
                    policy_yaml("")
                ),
                "unknown policy \"q\"",
            ),
        ] {
            let error = error_of(&text);
            assert!(error.contains(expected), "{text}\n-> {error}");
        }
    }

    #[test]
    fn defaults_are_filled_in() {
        let config = parse_config(&format!(
            "{}      escalation: []\n  heartbeats:\n    - name: h\n      selector: 'up{{job=\"gw\"}}'\n      missing_for: 5m\n      policy: p\n",
            policy_yaml("")
        ))
        .unwrap();
        let sla = config.sla.unwrap();
        let policy = &sla.policies[0];
        assert_eq!(policy.outside_hours, super::OutsideHours::Notify);
        assert!(policy.escalation.is_empty());
        assert_eq!(policy.group_by, None);
        assert_eq!(policy.acknowledge_timeout, None);
        let heartbeat = &sla.heartbeats[0];
        assert_eq!(heartbeat.site_label, "site");
        assert_eq!(heartbeat.inhibit.len(), 1);
        assert!(heartbeat.inhibit[0].matches("NodeDown"));
        assert!(heartbeat.inhibit[0].matches("ScrapeFailing"));
        assert!(!heartbeat.inhibit[0].matches("DiskFull"));
        assert_eq!(sla.calendars[0].hours[0].location_name, "America/Santiago");
        assert!(sla.receiver_names().is_empty());
    }
}
