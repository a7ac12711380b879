//! TEMPORARY stand-in for sla-clock's `sla:` section types (replaced by the merge of `sla-clock`).

use std::time::Duration;

use crate::model::Matcher;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutsideHours {
    Page,
    #[default]
    Notify,
    None,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct SlaConfig {
    pub calendars: Vec<CalendarConfig>,
    pub policies: Vec<PolicyConfig>,
    pub heartbeats: Vec<HeartbeatConfig>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct CalendarConfig {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EscalationTierConfig {
    pub after: Duration,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatConfig {
    pub name: String,
    pub selector: String,
    pub site_label: String,
    pub missing_for: Duration,
    pub policy: String,
    pub inhibit: Vec<Matcher>,
}
