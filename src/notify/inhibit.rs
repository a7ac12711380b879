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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::matcher::parse_matchers;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn rule(source: &str, target: &str, equal: &[&str]) -> InhibitRuleConfig {
        InhibitRuleConfig {
            source_matchers: parse_matchers(source).unwrap(),
            target_matchers: parse_matchers(target).unwrap(),
            equal: equal.iter().map(|name| name.to_string()).collect(),
        }
    }

    #[test]
    fn critical_inhibits_warning_with_equal_labels() {
        let inhibitor = Inhibitor::new(&[rule(
            "severity=critical",
            "severity=warning",
            &["alertname", "cluster"],
        )]);
        let warning = labels(&[
            ("alertname", "Disk"),
            ("severity", "warning"),
            ("cluster", "a"),
        ]);
        let critical_a = labels(&[
            ("alertname", "Disk"),
            ("severity", "critical"),
            ("cluster", "a"),
        ]);
        let critical_b = labels(&[
            ("alertname", "Disk"),
            ("severity", "critical"),
            ("cluster", "b"),
        ]);
        let cases: [(&str, Labels, Vec<Labels>, bool); 7] = [
            (
                "source firing, equal labels equal",
                warning.clone(),
                vec![critical_a.clone()],
                true,
            ),
            (
                "equal label differs",
                warning.clone(),
                vec![critical_b.clone()],
                false,
            ),
            ("no source firing", warning.clone(), vec![], false),
            (
                "missing in both counts as equal",
                labels(&[("alertname", "Disk"), ("severity", "warning")]),
                vec![labels(&[("alertname", "Disk"), ("severity", "critical")])],
                true,
            ),
            (
                "missing on one side only is not equal",
                warning.clone(),
                vec![labels(&[("alertname", "Disk"), ("severity", "critical")])],
                false,
            ),
            (
                "a source is never a target",
                critical_a.clone(),
                vec![critical_a.clone()],
                false,
            ),
            (
                "target matchers must match",
                labels(&[
                    ("alertname", "Disk"),
                    ("severity", "info"),
                    ("cluster", "a"),
                ]),
                vec![critical_a.clone()],
                false,
            ),
        ];
        for (name, target, firing, expected) in cases {
            assert_eq!(inhibitor.is_inhibited(&target, &firing), expected, "{name}");
        }
    }

    /// An alert matching both sides of a rule does not inhibit itself, nor
    /// another alert that also matches both sides; a source-only alert does.
    #[test]
    fn two_sided_matches_do_not_inhibit_each_other() {
        let inhibitor = Inhibitor::new(&[rule("s=1", "t=1", &["e"])]);
        let both = labels(&[("s", "1"), ("t", "1"), ("e", "x")]);
        let both_other = labels(&[("s", "1"), ("t", "1"), ("e", "x"), ("n", "2")]);
        let source_only = labels(&[("s", "1"), ("e", "x")]);
        let target_only = labels(&[("t", "1"), ("e", "x")]);
        assert!(!inhibitor.is_inhibited(&both, std::slice::from_ref(&both)));
        assert!(!inhibitor.is_inhibited(&both, &[both.clone(), both_other.clone()]));
        assert!(inhibitor.is_inhibited(&both, &[both.clone(), source_only.clone()]));
        // The target does not match the source side: any source counts.
        assert!(inhibitor.is_inhibited(&target_only, std::slice::from_ref(&both)));
        assert_eq!(
            inhibitor.inhibiting_alert(&both, &[both.clone(), source_only.clone()]),
            Some(&source_only)
        );
    }

    #[test]
    fn no_rules_inhibit_nothing() {
        let inhibitor = Inhibitor::new(&[]);
        let alert = labels(&[("a", "b")]);
        assert!(inhibitor.is_empty());
        assert!(!inhibitor.is_inhibited(&alert, std::slice::from_ref(&alert)));
    }
}
