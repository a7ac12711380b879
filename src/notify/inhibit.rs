//! Inhibition: while a *source* alert is firing, *target* alerts that agree
//! with it on the `equal` labels are not notified. The semantics are
//! Alertmanager's `inhibit/inhibit.go`, written fresh:
//!
//! - a label in `equal` that both alerts lack counts as equal (missing ==
//!   missing, the empty value);
//! - when the target itself matches the source matchers too, source alerts
//!   that also match the target matchers are not considered, so an alert
//!   never inhibits itself and two alerts matching both sides do not
//!   silence each other;
//! - only firing alerts inhibit; the caller passes exactly those.
//!
//! Stateless: the dispatcher passes the firing alerts of the moment, so a
//! restart cannot leave a stale inhibition behind.

use crate::config::notifications::InhibitRuleConfig;
use crate::model::{Labels, Matcher, matches_all};

#[derive(Debug, Clone, Default)]
pub struct Inhibitor {
    rules: Vec<InhibitRule>,
}

#[derive(Debug, Clone)]
struct InhibitRule {
    source_matchers: Vec<Matcher>,
    target_matchers: Vec<Matcher>,
    equal: Vec<String>,
}

impl Inhibitor {
    pub fn new(rules: &[InhibitRuleConfig]) -> Inhibitor {
        Inhibitor {
            rules: rules
                .iter()
                .map(|rule| InhibitRule {
                    source_matchers: rule.source_matchers.clone(),
                    target_matchers: rule.target_matchers.clone(),
                    equal: rule.equal.clone(),
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// `firing`: labels of every firing alert now. Alertmanager semantics (a
    /// source alert does not inhibit itself; `equal` labels must be equal,
    /// missing == missing).
    pub fn is_inhibited(&self, target: &Labels, firing: &[Labels]) -> bool {
        self.inhibiting_alert(target, firing).is_some()
    }

    /// The first firing alert that inhibits `target`, for logs and the
    /// `inhibitedBy` status field.
    pub fn inhibiting_alert<'a>(
        &self,
        target: &Labels,
        firing: &'a [Labels],
    ) -> Option<&'a Labels> {
        for rule in &self.rules {
            if !matches_all(&rule.target_matchers, target) {
                continue;
            }
            let target_is_also_source = matches_all(&rule.source_matchers, target);
            let source = firing.iter().find(|source| {
                matches_all(&rule.source_matchers, source)
                    && rule.equal.iter().all(|name| {
                        source.get(name).unwrap_or("") == target.get(name).unwrap_or("")
                    })
                    && !(target_is_also_source && matches_all(&rule.target_matchers, source))
            });
            if source.is_some() {
                return source;
            }
        }
        None
    }
}
