//! SLA policies: which support contract an alert falls under (first policy
//! whose matchers all match wins; none means no incident), with its targets
//! and escalation tiers as milliseconds of covered time on the policy's
//! calendar. Built once per configuration load from `config::sla`; the
//! calendars are shared between policies through `Arc`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::calendar::{Calendar, CalendarError};
use crate::config::sla::{ALWAYS_CALENDAR_NAME, OutsideHours, PolicyConfig, SlaConfig};
use crate::model::{Labels, Matcher};

/// The repeat interval of a last tier when neither `repeat_interval`, the
/// gap between the last two tiers, nor `acknowledge_within` gives one.
pub const FALLBACK_REPEAT_INTERVAL_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error("policy {policy:?}: unknown calendar {calendar:?}")]
    UnknownCalendar { policy: String, calendar: String },
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    pub matchers: Vec<Matcher>,
    pub calendar: Arc<Calendar>,
    pub acknowledge_within_ms: i64,
    pub resolve_within_ms: i64,
    pub acknowledge_timeout_ms: Option<i64>,
    pub outside_hours: OutsideHours,
    pub group_by: Option<Vec<String>>,
    pub escalation: Vec<EscalationTier>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationTier {
    /// Covered time without acknowledgement before this tier is notified.
    pub after_ms: i64,
    pub receiver: String,
    /// Extra notifications of this tier (only the last tier has any).
    pub repeat: u32,
    /// Covered time between repeats.
    pub repeat_interval_ms: i64,
}

impl Policy {
    /// Whether an alert's labels fall under this policy.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers
            .iter()
            .all(|matcher| matcher.matches(labels.get(&matcher.name).unwrap_or("")))
    }
}

/// The policies of one configuration, in order, with their calendars.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    policies: Vec<Arc<Policy>>,
    calendars: BTreeMap<String, Arc<Calendar>>,
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl PolicySet {
    /// Builds calendars (reading holiday files) and policies.
    pub fn from_config(config: &SlaConfig) -> Result<PolicySet, PolicyError> {
        let mut calendars: BTreeMap<String, Arc<Calendar>> = BTreeMap::new();
        calendars.insert(
            ALWAYS_CALENDAR_NAME.to_string(),
            Arc::new(Calendar::always()),
        );
        for calendar_config in &config.calendars {
            let calendar = Calendar::from_config(calendar_config)?;
            calendars.insert(calendar_config.name.clone(), Arc::new(calendar));
        }
        let mut policies = Vec::with_capacity(config.policies.len());
        for policy_config in &config.policies {
            let calendar = calendars
                .get(&policy_config.calendar)
                .cloned()
                .ok_or_else(|| PolicyError::UnknownCalendar {
                    policy: policy_config.name.clone(),
                    calendar: policy_config.calendar.clone(),
                })?;
            policies.push(Arc::new(build_policy(policy_config, calendar)));
        }
        Ok(PolicySet {
            policies,
            calendars,
        })
    }

    /// The first policy whose matchers all match; `None` opens no incident.
    pub fn policy_for(&self, labels: &Labels) -> Option<&Arc<Policy>> {
        self.policies.iter().find(|policy| policy.matches(labels))
    }

    pub fn policy(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.iter().find(|policy| policy.name == name)
    }

    pub fn policies(&self) -> &[Arc<Policy>] {
        &self.policies
    }

    /// A calendar by name, `24x7` included.
    pub fn calendar(&self, name: &str) -> Option<&Arc<Calendar>> {
        self.calendars.get(name)
    }
}

fn build_policy(config: &PolicyConfig, calendar: Arc<Calendar>) -> Policy {
    let acknowledge_within_ms = duration_ms(config.acknowledge_within);
    let tier_count = config.escalation.len();
    let escalation = config
        .escalation
        .iter()
        .enumerate()
        .map(|(index, tier)| {
            let after_ms = duration_ms(tier.after);
            let gap_to_previous_tier = index
                .checked_sub(1)
                .and_then(|previous| config.escalation.get(previous))
                .map(|previous| after_ms - duration_ms(previous.after))
                .filter(|gap| *gap > 0);
            // A repeating last tier keeps the cadence of the tiers before it
            // unless told otherwise.
            let repeat_interval_ms = tier
                .repeat_interval
                .map(duration_ms)
                .or(gap_to_previous_tier)
                .or(Some(acknowledge_within_ms).filter(|ms| *ms > 0))
                .unwrap_or(FALLBACK_REPEAT_INTERVAL_MS);
            EscalationTier {
                after_ms,
                receiver: tier.receiver.clone(),
                repeat: if index + 1 == tier_count {
                    tier.repeat
                } else {
                    0
                },
                repeat_interval_ms,
            }
        })
        .collect();
    Policy {
        name: config.name.clone(),
        matchers: config.matchers.clone(),
        calendar,
        acknowledge_within_ms,
        resolve_within_ms: duration_ms(config.resolve_within),
        acknowledge_timeout_ms: config.acknowledge_timeout.map(duration_ms),
        outside_hours: config.outside_hours,
        group_by: config.group_by.clone(),
        escalation,
    }
}
