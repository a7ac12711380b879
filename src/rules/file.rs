//! Prometheus rule files: the YAML shape (`groups:` with `name`, `interval`,
//! `query_offset`, `limit`, `labels`, `rules:`), parsed with serde-saphyr so
//! syntax and shape errors carry a line and column, then validated the way
//! `promtool check rules` does: every problem of a file is collected, each
//! naming the group, the rule's position and name, and the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::parse_duration;
use crate::model::{is_legacy_label_name, is_legacy_metric_name};

use super::template::{ALERT_TEMPLATE_DEFINITIONS, Template};

/// One problem found in a rule file, rendered as promtool renders it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuleFileError {
    #[error("{path}: {reason}")]
    Read { path: String, reason: String },
    /// YAML syntax or shape (unknown keys included).
    #[error("{path}: {location}{message}")]
    Syntax {
        path: String,
        location: String,
        message: String,
    },
    /// A group-level problem, at the group's position.
    #[error("{path}: {line}:{column}: {reason}")]
    Group {
        path: String,
        line: u64,
        column: u64,
        reason: String,
    },
    /// A rule-level problem; `rule` counts from 1 within the group;
    /// `position` is `line:column: ` of the offending field when known.
    #[error("{path}: {position}group {group:?}, rule {rule}, {name:?}: {reason}")]
    Rule {
        path: String,
        position: String,
        group: String,
        rule: usize,
        name: String,
        reason: String,
    },
}

/// A loaded, validated rule file.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleFile {
    pub path: String,
    pub groups: Vec<RuleGroupDefinition>,
}

impl RuleFile {
    pub fn rule_count(&self) -> usize {
        self.groups.iter().map(|group| group.rules.len()).sum()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleGroupDefinition {
    pub name: String,
    /// The file the group came from, as given (used for the stable offset and the API).
    pub file: String,
    /// `None`: the global evaluation interval.
    pub interval: Option<Duration>,
    pub query_offset: Option<Duration>,
    /// Most series a recording rule, or alerts an alerting rule, may produce (0: no limit).
    pub limit: usize,
    /// Added to every rule of the group; a rule's own labels win.
    pub labels: BTreeMap<String, String>,
    pub rules: Vec<RuleDefinition>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    Recording,
    Alerting {
        hold: Duration,
        keep_firing_for: Duration,
        annotations: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RuleDefinition {
    /// The `record` metric name or the `alert` name.
    pub name: String,
    pub expr: String,
    pub labels: BTreeMap<String, String>,
    pub kind: RuleKind,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleFile {
    #[serde(default)]
    groups: Vec<Spanned<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    name: Spanned<String>,
    interval: Option<String>,
    query_offset: Option<String>,
    #[serde(default)]
    limit: usize,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    rules: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    record: Option<Spanned<String>>,
    alert: Option<Spanned<String>>,
    expr: Option<Spanned<String>>,
    #[serde(rename = "for")]
    hold: Option<String>,
    keep_firing_for: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// Reads and validates one rule file.
pub fn load_rule_file(path: &Path) -> Result<RuleFile, Vec<RuleFileError>> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|error| {
        vec![RuleFileError::Read {
            path: display.clone(),
            reason: error.to_string(),
        }]
    })?;
    parse_rule_file(&display, &text)
}

/// Parses and validates rule-file text; `path` names the file in errors and
/// in the groups. Never panics, whatever the input.
pub fn parse_rule_file(path: &str, text: &str) -> Result<RuleFile, Vec<RuleFileError>> {
    if text.trim().is_empty() {
        return Ok(RuleFile {
            path: path.to_string(),
            groups: Vec::new(),
        });
    }
    let raw: RawRuleFile = serde_saphyr::from_str(text).map_err(|error| {
        let message = error.without_snippet().to_string();
        let mut message = message.lines().next().unwrap_or("").trim().to_string();
        let mut suffix_location = None;
        if let Some(at) = message.rfind(" at line ")
            && let Some((line, column)) = message[at + 9..].split_once(", column ")
        {
            suffix_location = Some(format!("{}:{}: ", line.trim(), column.trim()));
            message.truncate(at);
        }
        let location = match error.location() {
            _ if suffix_location.is_some() => suffix_location.unwrap_or_default(),
            Some(location) if location.line() > 0 => {
                format!("{}:{}: ", location.line(), location.column())
            }
            _ => String::new(),
        };
        vec![RuleFileError::Syntax {
            path: path.to_string(),
            location,
            message,
        }]
    })?;
    let mut errors = Vec::new();
    let mut groups = Vec::new();
    let mut seen_groups = BTreeSet::new();
    for raw_group in raw.groups {
        if let Some(group) = validate_group(path, raw_group, &mut seen_groups, &mut errors) {
            groups.push(group);
        }
    }
    if errors.is_empty() {
        Ok(RuleFile {
            path: path.to_string(),
            groups,
        })
    } else {
        Err(errors)
    }
}

fn optional_duration(text: Option<&str>) -> Result<Option<Duration>, String> {
    text.map(|text| parse_duration(text).map_err(|error| error.to_string()))
        .transpose()
}

fn validate_group(
    path: &str,
    spanned: Spanned<RawGroup>,
    seen_groups: &mut BTreeSet<String>,
    errors: &mut Vec<RuleFileError>,
) -> Option<RuleGroupDefinition> {
    let line = spanned.referenced.line();
    let column = spanned.referenced.column();
    let raw = spanned.value;
    let group_name = raw.name.value.clone();
    let errors_before = errors.len();
    let group_error = |reason: String| RuleFileError::Group {
        path: path.to_string(),
        line,
        column,
        reason,
    };
    if group_name.is_empty() {
        errors.push(group_error("Groupname must not be empty".to_string()));
    } else if !seen_groups.insert(group_name.clone()) {
        errors.push(group_error(format!(
            "groupname: {group_name:?} is repeated in the same file"
        )));
    }
    let interval = optional_duration(raw.interval.as_deref()).unwrap_or_else(|reason| {
        errors.push(group_error(format!("interval: {reason}")));
        None
    });
    if interval == Some(Duration::ZERO) {
        errors.push(group_error("interval must be greater than 0".to_string()));
    }
    let query_offset = optional_duration(raw.query_offset.as_deref()).unwrap_or_else(|reason| {
        errors.push(group_error(format!("query_offset: {reason}")));
        None
    });
    for (name, value) in &raw.labels {
        if let Some(reason) = label_problem(name, value) {
            errors.push(group_error(reason));
        }
    }
    let mut rules = Vec::new();
    for (index, raw_rule) in raw.rules.into_iter().enumerate() {
        if let Some(rule) = validate_rule(path, &group_name, index + 1, raw_rule, errors) {
            rules.push(rule);
        }
    }
    (errors.len() == errors_before).then(|| RuleGroupDefinition {
        name: group_name.clone(),
        file: path.to_string(),
        interval,
        query_offset,
        limit: raw.limit,
        labels: raw.labels,
        rules,
    })
}

fn label_problem(name: &str, value: &str) -> Option<String> {
    if name == "__name__" || !is_legacy_label_name(name) {
        return Some(format!("invalid label name: {name}"));
    }
    if value.contains('\u{fffd}') {
        return Some(format!("invalid label value: {value}"));
    }
    None
}

fn validate_rule(
    path: &str,
    group: &str,
    position_in_group: usize,
    raw: RawRule,
    errors: &mut Vec<RuleFileError>,
) -> Option<RuleDefinition> {
    let errors_before = errors.len();
    let (name, line, column) = match (&raw.record, &raw.alert) {
        (Some(record), _) => (
            record.value.clone(),
            record.referenced.line(),
            record.referenced.column(),
        ),
        (None, Some(alert)) => (
            alert.value.clone(),
            alert.referenced.line(),
            alert.referenced.column(),
        ),
        (None, None) => match &raw.expr {
            Some(expr) => (
                String::new(),
                expr.referenced.line(),
                expr.referenced.column(),
            ),
            None => (String::new(), 0, 0),
        },
    };
    let name_position = if line > 0 {
        format!("{line}:{column}: ")
    } else {
        String::new()
    };
    let expr_position = raw
        .expr
        .as_ref()
        .map(|expr| format!("{}:{}: ", expr.referenced.line(), expr.referenced.column()))
        .unwrap_or_else(|| name_position.clone());
    let rule_error = |position: &str, reason: String| RuleFileError::Rule {
        path: path.to_string(),
        position: position.to_string(),
        group: group.to_string(),
        rule: position_in_group,
        name: name.clone(),
        reason,
    };
    let mut push = |reason: String| errors.push(rule_error(&name_position, reason));
    let is_recording = raw.record.is_some();
    match (&raw.record, &raw.alert) {
        (Some(_), Some(_)) => push("only one of 'record' and 'alert' must be set".to_string()),
        (None, None) => push("one of 'record' or 'alert' must be set".to_string()),
        _ => {}
    }
    let expr = raw
        .expr
        .as_ref()
        .map(|expr| expr.value.clone())
        .unwrap_or_default();
    let mut expr_problem = None;
    if expr.trim().is_empty() {
        push("field 'expr' must be set in rule".to_string());
    } else if let Err(message) = promql_parser::parser::parse(&expr) {
        expr_problem = Some(format!("could not parse expression: {message}"));
    }
    let hold = optional_duration(raw.hold.as_deref()).unwrap_or_else(|reason| {
        push(format!("for: {reason}"));
        None
    });
    let keep_firing_for =
        optional_duration(raw.keep_firing_for.as_deref()).unwrap_or_else(|reason| {
            push(format!("keep_firing_for: {reason}"));
            None
        });
    if is_recording {
        if !raw.annotations.is_empty() {
            push("invalid field 'annotations' in recording rule".to_string());
        }
        if hold.is_some_and(|hold| !hold.is_zero()) {
            push("invalid field 'for' in recording rule".to_string());
        }
        if keep_firing_for.is_some_and(|keep| !keep.is_zero()) {
            push("invalid field 'keep_firing_for' in recording rule".to_string());
        }
        if !is_legacy_metric_name(&name) {
            push(format!("invalid recording rule name: {name}"));
        }
    } else if raw.alert.is_some() && name.is_empty() {
        push("field 'alert' must be set in rule".to_string());
    }
    for (label_name, value) in &raw.labels {
        if let Some(reason) = label_problem(label_name, value) {
            push(reason);
        }
    }
    for annotation_name in raw.annotations.keys() {
        if !is_legacy_label_name(annotation_name) {
            push(format!("invalid annotation name: {annotation_name}"));
        }
    }
    if let Some(reason) = expr_problem {
        errors.push(rule_error(&expr_position, reason));
    }
    if !is_recording {
        // Prometheus checks the syntax of every label and annotation
        // template and reports these without a position.
        let template_name = format!("__alert_{name}");
        let templates = raw
            .labels
            .iter()
            .map(|(key, text)| ("label", key, text))
            .chain(
                raw.annotations
                    .iter()
                    .map(|(key, text)| ("annotation", key, text)),
            );
        for (kind, key, text) in templates {
            if text.contains("{{")
                && let Err(error) = Template::parse(
                    &template_name,
                    &format!("{ALERT_TEMPLATE_DEFINITIONS}{text}"),
                )
            {
                errors.push(rule_error("", format!("{kind} {key:?}: {error}")));
            }
        }
    }
    if errors.len() != errors_before {
        return None;
    }
    let kind = if is_recording {
        RuleKind::Recording
    } else {
        RuleKind::Alerting {
            hold: hold.unwrap_or_default(),
            keep_firing_for: keep_firing_for.unwrap_or_default(),
            annotations: raw.annotations,
        }
    };
    Some(RuleDefinition {
        name,
        expr,
        labels: raw.labels,
        kind,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<String> {
        match parse_rule_file("r.yml", text) {
            Ok(file) => panic!("expected errors, parsed {file:?}"),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn parses_groups_and_both_rule_kinds() {
        let text = "groups:
  - name: node
    interval: 30s
    query_offset: 1m
    limit: 10
    labels:
      team: infra
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
        labels:
          source: rule
      - alert: InstanceDown
        expr: up == 0
        for: 5m
        keep_firing_for: 10m
        labels:
          severity: critical
        annotations:
          summary: '{{ $labels.instance }} down'
";
        let file = parse_rule_file("r.yml", text).unwrap();
        assert_eq!(file.rule_count(), 2);
        let group = &file.groups[0];
        assert_eq!(group.interval, Some(Duration::from_secs(30)));
        assert_eq!(group.query_offset, Some(Duration::from_secs(60)));
        assert_eq!(group.limit, 10);
        assert_eq!(group.labels.get("team").map(String::as_str), Some("infra"));
        assert_eq!(group.rules[0].kind, RuleKind::Recording);
        assert!(matches!(
            &group.rules[1].kind,
            RuleKind::Alerting { hold, keep_firing_for, annotations }
                if *hold == Duration::from_secs(300)
                    && *keep_firing_for == Duration::from_secs(600)
                    && annotations.contains_key("summary")
        ));
    }

    #[test]
    fn reports_promtool_style_errors() {
        let errors = errors_of(
            "groups:
  - name: g
    rules:
      - alert: Broken
        expr: up ==
      - record: 'bad name'
        expr: up
      - record: ok
        alert: both
        expr: up
      - alert: BadLabel
        expr: up
        labels:
          0bad: x
      - alert: BadTemplate
        expr: up
        annotations:
          summary: '{{ $labels.x '
      - record: rec
        expr: up
        for: 5m
  - name: g
    rules: []
",
        );
        let joined = errors.join("\n");
        assert!(
            joined.contains(
                "r.yml: 5:15: group \"g\", rule 1, \"Broken\": could not parse expression"
            ),
            "{joined}"
        );
        assert!(
            joined.contains("rule 2, \"bad name\": invalid recording rule name: bad name"),
            "{joined}"
        );
        assert!(
            joined.contains("rule 3, \"ok\": only one of 'record' and 'alert' must be set"),
            "{joined}"
        );
        assert!(
            joined.contains("rule 4, \"BadLabel\": invalid label name: 0bad"),
            "{joined}"
        );
        assert!(joined.contains("r.yml: group \"g\", rule 5, \"BadTemplate\": annotation \"summary\": template: __alert_BadTemplate:1: unclosed action"), "{joined}");
        assert!(
            joined.contains("rule 6, \"rec\": invalid field 'for' in recording rule"),
            "{joined}"
        );
        assert!(
            joined.contains("r.yml: 22:5: groupname: \"g\" is repeated in the same file"),
            "{joined}"
        );
    }

    #[test]
    fn unknown_keys_are_named_with_position() {
        let errors = errors_of(
            "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: up\n        severity: x\n",
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].contains("severity"), "{errors:?}");
        assert!(
            errors[0].starts_with("r.yml: 6:9: unknown field `severity`"),
            "{errors:?}"
        );
    }

    /// Deterministic stand-in for the `rule_file` fuzz target: every
    /// prefix and every single-byte deletion of the seeds parses or fails
    /// without panicking.
    #[test]
    fn truncated_and_damaged_seeds_never_panic() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/rule_file");
        // Only the checked-in seeds: a local fuzz run adds arbitrary bytes beside them.
        for entry in std::fs::read_dir(seeds).unwrap() {
            let entry = entry.unwrap();
            if !entry.file_name().to_string_lossy().starts_with("seed-") {
                continue;
            }
            let text = std::fs::read_to_string(entry.path()).unwrap();
            for cut in (0..text.len()).step_by(23) {
                if let Some(prefix) = text.get(..cut) {
                    let _ = parse_rule_file("p.yml", prefix);
                }
                if let (Some(head), Some(tail)) = (text.get(..cut), text.get(cut + 1..)) {
                    let _ = parse_rule_file("d.yml", &format!("{head}{tail}"));
                }
            }
        }
    }

    #[test]
    fn empty_file_has_no_groups() {
        assert_eq!(parse_rule_file("e.yml", "").unwrap().groups.len(), 0);
        assert_eq!(
            parse_rule_file("e.yml", "groups: []\n")
                .unwrap()
                .groups
                .len(),
            0
        );
    }
}
