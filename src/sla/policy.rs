//! TEMPORARY stand-in for sla-clock's policies (replaced by the merge of `sla-clock`).

use std::sync::Arc;

use crate::config::sla::{OutsideHours, SlaConfig};
use crate::model::{Labels, Matcher};
use crate::sla::calendar::Calendar;

#[derive(Debug)]
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

#[derive(Clone, Debug)]
pub struct EscalationTier {
    pub after_ms: i64,
    pub receiver: String,
    pub repeat: u32,
    pub repeat_interval_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Default)]
pub struct PolicySet {
    policies: Vec<Arc<Policy>>,
}

impl PolicySet {
    pub fn from_config(_config: &SlaConfig) -> Result<PolicySet, PolicyError> {
        Ok(PolicySet::default())
    }
    pub fn policy_for(&self, labels: &Labels) -> Option<&Arc<Policy>> {
        self.policies
            .iter()
            .find(|policy| crate::model::matches_all(&policy.matchers, labels))
    }
    pub fn policy(&self, name: &str) -> Option<&Arc<Policy>> {
        self.policies.iter().find(|policy| policy.name == name)
    }
    pub fn policies(&self) -> &[Arc<Policy>] {
        &self.policies
    }
}
