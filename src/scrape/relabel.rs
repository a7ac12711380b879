//! Relabeling with Prometheus's semantics: every action of
//! `relabel_config`, applied in order to a label set, with anchored regexes,
//! `$1`/`${1}`/`$name` expansion in `replacement` and `target_label`, and an
//! empty result removing the target label. Used for targets
//! (`relabel_configs`) and for scraped series (`metric_relabel_configs`).

use std::collections::BTreeMap;

use crate::config::file::{RelabelAction, RelabelConfig};
use crate::model::is_legacy_label_name;
use crate::scrape::md5::md5;

/// A label set under relabeling: name → value, no empty values.
pub type LabelMap = BTreeMap<String, String>;

/// Applies `rules` in order. Returns false when a rule dropped the set
/// (the set is then left as it was at that point).
pub fn relabel(rules: &[RelabelConfig], labels: &mut LabelMap) -> bool {
    rules.iter().all(|rule| apply_rule(rule, labels))
}

fn joined_source_values(rule: &RelabelConfig, labels: &LabelMap) -> String {
    let mut joined = String::new();
    for (index, name) in rule.source_labels.iter().enumerate() {
        if index > 0 {
            joined.push_str(&rule.separator);
        }
        if let Some(value) = labels.get(name) {
            joined.push_str(value);
        }
    }
    joined
}

fn set_or_remove(labels: &mut LabelMap, name: String, value: String) {
    if value.is_empty() {
        labels.remove(&name);
    } else {
        labels.insert(name, value);
    }
}

fn apply_rule(rule: &RelabelConfig, labels: &mut LabelMap) -> bool {
    let value = joined_source_values(rule, labels);
    match rule.action {
        RelabelAction::Drop => !rule.regex.is_match(&value),
        RelabelAction::Keep => rule.regex.is_match(&value),
        RelabelAction::DropEqual => {
            labels.get(&rule.target_label).map_or("", String::as_str) != value
        }
        RelabelAction::KeepEqual => {
            labels.get(&rule.target_label).map_or("", String::as_str) == value
        }
        RelabelAction::Replace => {
            // No match leaves the set as it is.
            if let Some(captures) = rule.regex.captures(&value) {
                let mut target = String::new();
                captures.expand(&rule.target_label, &mut target);
                if is_legacy_label_name(&target) {
                    let mut replaced = String::new();
                    captures.expand(&rule.replacement, &mut replaced);
                    set_or_remove(labels, target, replaced);
                }
            }
            true
        }
        RelabelAction::Lowercase => {
            set_or_remove(labels, rule.target_label.clone(), value.to_lowercase());
            true
        }
        RelabelAction::Uppercase => {
            set_or_remove(labels, rule.target_label.clone(), value.to_uppercase());
            true
        }
        RelabelAction::HashMod => {
            let digest = md5(value.as_bytes());
            let mut low_bytes = [0u8; 8];
            low_bytes.copy_from_slice(&digest[8..]);
            let shard = u64::from_be_bytes(low_bytes) % rule.modulus.max(1);
            labels.insert(rule.target_label.clone(), shard.to_string());
            true
        }
        RelabelAction::LabelMap => {
            let mut added: Vec<(String, String)> = Vec::new();
            for (name, label_value) in labels.iter() {
                if let Some(captures) = rule.regex.captures(name) {
                    let mut new_name = String::new();
                    captures.expand(&rule.replacement, &mut new_name);
                    added.push((new_name, label_value.clone()));
                }
            }
            for (name, label_value) in added {
                set_or_remove(labels, name, label_value);
            }
            true
        }
        RelabelAction::LabelDrop => {
            labels.retain(|name, _| !rule.regex.is_match(name));
            true
        }
        RelabelAction::LabelKeep => {
            labels.retain(|name, _| rule.regex.is_match(name));
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rule<'a> {
        source_labels: &'a [&'a str],
        separator: Option<&'a str>,
        regex: Option<&'a str>,
        modulus: Option<u64>,
        target_label: Option<&'a str>,
        replacement: Option<&'a str>,
        action: &'a str,
    }

    const RULE: Rule<'static> = Rule {
        source_labels: &[],
        separator: None,
        regex: None,
        modulus: None,
        target_label: None,
        replacement: None,
        action: "replace",
    };

    fn compile(rule: &Rule) -> RelabelConfig {
        RelabelConfig::new(
            rule.source_labels.iter().map(|s| s.to_string()).collect(),
            rule.separator.map(str::to_string),
            rule.regex.map(str::to_string),
            rule.modulus,
            rule.target_label.map(str::to_string),
            rule.replacement.map(str::to_string),
            rule.action,
        )
        .unwrap()
    }

    fn set(pairs: &[(&str, &str)]) -> LabelMap {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    /// (input, rules, expected output or None when dropped)
    fn check(input: &[(&str, &str)], rules: &[Rule], expected: Option<&[(&str, &str)]>) {
        let compiled: Vec<RelabelConfig> = rules.iter().map(compile).collect();
        let mut labels = set(input);
        let kept = relabel(&compiled, &mut labels);
        match expected {
            None => assert!(!kept, "expected drop, got {labels:?}"),
            Some(expected) => {
                assert!(kept, "unexpected drop of {input:?}");
                assert_eq!(labels, set(expected));
            }
        }
    }

    #[test]
    fn replace_with_defaults_copies_the_joined_value() {
        check(
            &[("a", "foo"), ("b", "bar")],
            &[Rule {
                source_labels: &["a", "b"],
                target_label: Some("d"),
                ..RULE
            }],
            Some(&[("a", "foo"), ("b", "bar"), ("d", "foo;bar")]),
        );
    }

    #[test]
    fn replace_expands_groups_and_names() {
        check(
            &[("a", "foo"), ("b", "bar")],
            &[Rule {
                source_labels: &["a", "b"],
                regex: Some("f(?P<rest>.*);(.*)"),
                target_label: Some("${2}_$rest"),
                replacement: Some("${1}x$2"),
                ..RULE
            }],
            Some(&[("a", "foo"), ("b", "bar"), ("bar_oo", "ooxbar")]),
        );
    }

    #[test]
    fn replace_regex_is_anchored_and_no_match_changes_nothing() {
        check(
            &[("a", "xfoo")],
            &[Rule {
                source_labels: &["a"],
                regex: Some("foo"),
                target_label: Some("b"),
                replacement: Some("hit"),
                ..RULE
            }],
            Some(&[("a", "xfoo")]),
        );
    }

    #[test]
    fn replace_with_empty_result_removes_the_target() {
        check(
            &[("a", "foo"), ("b", "x")],
            &[Rule {
                source_labels: &["c"],
                target_label: Some("b"),
                ..RULE
            }],
            Some(&[("a", "foo")]),
        );
    }

    #[test]
    fn replace_into_an_invalid_name_is_skipped() {
        check(
            &[("a", "1bad")],
            &[Rule {
                source_labels: &["a"],
                target_label: Some("$1"),
                replacement: Some("v"),
                ..RULE
            }],
            Some(&[("a", "1bad")]),
        );
    }

    #[test]
    fn docs_example_address_and_port() {
        // From the relabel_config docs: set the port of __address__.
        check(
            &[("__address__", "host:9100"), ("__meta_port", "9200")],
            &[Rule {
                source_labels: &["__address__", "__meta_port"],
                regex: Some("([^:]+)(?::\\d+)?;(\\d+)"),
                replacement: Some("$1:$2"),
                target_label: Some("__address__"),
                ..RULE
            }],
            Some(&[("__address__", "host:9200"), ("__meta_port", "9200")]),
        );
    }

    #[test]
    fn keep_and_drop() {
        let keep = Rule {
            source_labels: &["a"],
            regex: Some("f.*"),
            action: "keep",
            ..RULE
        };
        check(
            &[("a", "foo")],
            std::slice::from_ref(&keep),
            Some(&[("a", "foo")]),
        );
        check(&[("a", "bar")], std::slice::from_ref(&keep), None);
        // A missing label reads as "", which `f.*` does not match.
        check(&[("b", "foo")], &[keep], None);
        let drop = Rule {
            source_labels: &["a"],
            regex: Some("f.*"),
            action: "drop",
            ..RULE
        };
        check(&[("a", "foo")], std::slice::from_ref(&drop), None);
        check(&[("a", "bar")], &[drop], Some(&[("a", "bar")]));
    }

    #[test]
    fn keepequal_and_dropequal() {
        let keepequal = Rule {
            source_labels: &["a"],
            target_label: Some("b"),
            action: "keepequal",
            ..RULE
        };
        check(
            &[("a", "x"), ("b", "x")],
            std::slice::from_ref(&keepequal),
            Some(&[("a", "x"), ("b", "x")]),
        );
        check(&[("a", "x"), ("b", "y")], &[keepequal], None);
        let dropequal = Rule {
            source_labels: &["a"],
            target_label: Some("b"),
            action: "dropequal",
            ..RULE
        };
        check(
            &[("a", "x"), ("b", "x")],
            std::slice::from_ref(&dropequal),
            None,
        );
        check(
            &[("a", "x"), ("b", "y")],
            &[dropequal],
            Some(&[("a", "x"), ("b", "y")]),
        );
    }

    #[test]
    fn lowercase_and_uppercase() {
        check(
            &[("a", "FoO")],
            &[
                Rule {
                    source_labels: &["a"],
                    target_label: Some("lower"),
                    action: "lowercase",
                    ..RULE
                },
                Rule {
                    source_labels: &["a"],
                    target_label: Some("upper"),
                    action: "uppercase",
                    ..RULE
                },
            ],
            Some(&[("a", "FoO"), ("lower", "foo"), ("upper", "FOO")]),
        );
    }

    #[test]
    fn hashmod_matches_prometheus_sharding() {
        // md5("foo") = acbd18db4cc2f85cedef654fccc4a4d8; low 8 bytes big-endian
        // = 0xedef654fccc4a4d8 = 17140150406573655256.
        let expected = (0xedef_654f_ccc4_a4d8u64 % 1000).to_string();
        check(
            &[("a", "foo")],
            &[Rule {
                source_labels: &["a"],
                modulus: Some(1000),
                target_label: Some("shard"),
                action: "hashmod",
                ..RULE
            }],
            Some(&[("a", "foo"), ("shard", expected.as_str())]),
        );
    }

    #[test]
    fn labelmap_copies_matching_names() {
        check(
            &[
                ("__meta_kubernetes_pod_label_app", "web"),
                ("__meta_other", "x"),
                ("b", "y"),
            ],
            &[Rule {
                regex: Some("__meta_kubernetes_pod_label_(.+)"),
                action: "labelmap",
                ..RULE
            }],
            Some(&[
                ("__meta_kubernetes_pod_label_app", "web"),
                ("__meta_other", "x"),
                ("app", "web"),
                ("b", "y"),
            ]),
        );
    }

    #[test]
    fn labeldrop_and_labelkeep() {
        check(
            &[("a", "1"), ("b1", "2"), ("b2", "3")],
            &[Rule {
                regex: Some("b.*"),
                action: "labeldrop",
                ..RULE
            }],
            Some(&[("a", "1")]),
        );
        check(
            &[("a", "1"), ("b1", "2"), ("b2", "3")],
            &[Rule {
                regex: Some("b.*"),
                action: "labelkeep",
                ..RULE
            }],
            Some(&[("b1", "2"), ("b2", "3")]),
        );
    }

    #[test]
    fn rules_run_in_order_and_stop_at_drop() {
        check(
            &[("a", "foo")],
            &[
                Rule {
                    source_labels: &["a"],
                    target_label: Some("b"),
                    replacement: Some("bar"),
                    ..RULE
                },
                Rule {
                    source_labels: &["b"],
                    regex: Some("bar"),
                    action: "drop",
                    ..RULE
                },
            ],
            None,
        );
    }

    #[test]
    fn dollar_dollar_is_a_literal_dollar() {
        check(
            &[("a", "foo")],
            &[Rule {
                source_labels: &["a"],
                target_label: Some("b"),
                replacement: Some("$$1"),
                ..RULE
            }],
            Some(&[("a", "foo"), ("b", "$1")]),
        );
    }
}
