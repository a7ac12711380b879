//! `guardia test rules`: runs `promtool test rules` files unchanged. Each
//! test group loads its `input_series` (series notation, one sample per
//! `interval` from time 0) into a fresh store in a temporary directory,
//! then evaluates every rule group (in `group_eval_order` when given) at
//! 0, `evaluation_interval`, 2×… up to the latest `eval_time`, as promtool
//! does. At each `alert_rule_test` time the firing alerts of the named rule
//! are compared with `exp_alerts`; `promql_expr_test` queries run after
//! the evaluations. Output and exit status follow promtool.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::{Labels, Timestamp};
use crate::promql::{Engine, EngineOptions};
use crate::storage::Appendable;

use super::alerting::AlertState;
use super::file::load_rule_file;
use super::group::{EvaluationContext, Group, Rule, query_vector};
use super::series_notation::{Point, parse_metric, parse_values};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
    #[serde(default)]
    fuzzy_compare: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertRuleTest>,
    #[serde(default)]
    promql_expr_test: Vec<PromqlExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertRuleTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpectedAlert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PromqlExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpectedSample>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectedSample {
    #[serde(default)]
    labels: String,
    value: f64,
}

/// Runs every file, writing promtool's report to `out`; true when all passed.
pub fn run_test_files(files: &[PathBuf], out: &mut dyn std::io::Write) -> bool {
    let mut all_passed = true;
    for file in files {
        let _ = writeln!(out, "Unit Testing:  {}", file.display());
        match run_test_file(file) {
            Ok(()) => {
                let _ = writeln!(out, "  SUCCESS");
            }
            Err(errors) => {
                all_passed = false;
                let _ = writeln!(out, "  FAILED:");
                for error in errors {
                    let _ = writeln!(out, "{error}\n");
                }
            }
        }
        let _ = writeln!(out);
    }
    all_passed
}

fn duration_ms(text: &str) -> Result<i64, String> {
    let duration = crate::config::parse_duration(text.trim()).map_err(|error| error.to_string())?;
    Ok(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX))
}

/// A Prometheus duration as promtool prints it (`10m`, `1h30m`, `0s`).
fn format_duration_ms(millis: i64) -> String {
    if millis == 0 {
        return "0s".to_string();
    }
    let mut rest = millis;
    let mut text = String::new();
    for (unit, size) in [
        ("y", 365 * 86_400_000i64),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= size {
            let _ = write!(text, "{}{unit}", rest / size);
            rest %= size;
        }
    }
    text
}

/// `*` and `?` in the last path component, as Prometheus's `filepath.Glob` use.
fn expand_rule_file_pattern(pattern: &Path) -> Vec<PathBuf> {
    let Some(name) = pattern.file_name().and_then(|name| name.to_str()) else {
        return vec![pattern.to_path_buf()];
    };
    if !name.contains(['*', '?']) {
        return vec![pattern.to_path_buf()];
    }
    fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
        match (pattern.first(), name.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                wildcard(&pattern[1..], name) || (!name.is_empty() && wildcard(pattern, &name[1..]))
            }
            (Some(b'?'), Some(_)) => wildcard(&pattern[1..], &name[1..]),
            (Some(expected), Some(found)) if expected == found => {
                wildcard(&pattern[1..], &name[1..])
            }
            _ => false,
        }
    }
    let directory = pattern.parent().unwrap_or(Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.file_name()
                        .and_then(|file| file.to_str())
                        .is_some_and(|file| wildcard(name.as_bytes(), file.as_bytes()))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn run_test_file(path: &Path) -> Result<(), Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|error| vec![format!("  {error}")])?;
    let file: TestFile = serde_saphyr::from_str(&text)
        .map_err(|error| vec![format!("  {}", error.without_snippet())])?;
    let evaluation_interval_ms = match &file.evaluation_interval {
        Some(text) => {
            duration_ms(text).map_err(|error| vec![format!("  evaluation_interval: {error}")])?
        }
        None => 60_000,
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let mut definitions = Vec::new();
    for pattern in &file.rule_files {
        for rule_path in expand_rule_file_pattern(&base.join(pattern)) {
            let rule_file = load_rule_file(&rule_path).map_err(|errors| {
                errors
                    .iter()
                    .map(|error| format!("  {error}"))
                    .collect::<Vec<_>>()
            })?;
            definitions.extend(rule_file.groups);
        }
    }
    if !file.group_eval_order.is_empty() {
        let mut ordered = Vec::new();
        for name in &file.group_eval_order {
            match definitions.iter().position(|group| &group.name == name) {
                Some(position) => ordered.push(definitions.remove(position)),
                None => {
                    return Err(vec![format!(
                        "    group name {name:?} in group_eval_order not found"
                    )]);
                }
            }
        }
        if !definitions.is_empty() {
            let missing: Vec<&str> = definitions
                .iter()
                .map(|group| group.name.as_str())
                .collect();
            return Err(vec![format!(
                "    one or more prometheus rule groups are not defined in group_eval_order: {}",
                missing.join(", ")
            )]);
        }
        definitions = ordered;
    }
    let mut errors = Vec::new();
    for test_group in &file.tests {
        errors.extend(run_test_group(
            test_group,
            &definitions,
            evaluation_interval_ms,
            file.fuzzy_compare,
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn load_input_series(
    store: &crate::tsdb::Tsdb,
    series: &[InputSeries],
    interval_ms: i64,
) -> Result<(), String> {
    let mut appender = store.appender();
    for input in series {
        let (labels, _) = parse_metric(input.series.trim())
            .filter(|(_, rest)| rest.is_empty())
            .ok_or_else(|| format!("    bad input series {:?}", input.series))?;
        let points = parse_values(&input.values).ok_or_else(|| {
            format!(
                "    bad values {:?} of series {:?}",
                input.values, input.series
            )
        })?;
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|label| (label.name.as_str(), label.value.as_str()))
            .collect();
        for (index, point) in points.iter().enumerate() {
            let value = match point {
                Point::Float(value) => *value,
                Point::Missing => continue,
                Point::Histogram => {
                    return Err(format!(
                        "    native histograms are not supported: series {:?}",
                        input.series
                    ));
                }
            };
            let t = index as i64 * interval_ms;
            appender
                .append(&pairs, t, value)
                .map_err(|error| format!("    series {:?}: {error}", input.series))?;
        }
    }
    appender
        .commit()
        .map_err(|error| format!("    loading series: {error}"))?;
    Ok(())
}

type AlertSnapshot = Vec<(Labels, Labels)>;

fn render_alerts(alerts: &AlertSnapshot) -> String {
    let mut text = String::from("[");
    for (index, (labels, annotations)) in alerts.iter().enumerate() {
        let _ = write!(
            text,
            "\n            {index}:\n              Labels:{labels}\n              Annotations:{annotations}"
        );
    }
    if !alerts.is_empty() {
        text.push_str("\n            ");
    }
    text.push(']');
    text
}

fn run_test_group(
    test: &TestGroup,
    definitions: &[super::file::RuleGroupDefinition],
    evaluation_interval_ms: i64,
    fuzzy_compare: bool,
) -> Vec<String> {
    let name_prefix = if test.name.is_empty() {
        String::new()
    } else {
        format!("    name: {},\n", test.name)
    };
    let interval_ms = match test.interval.as_deref().map(duration_ms).transpose() {
        Ok(interval) => interval.unwrap_or(evaluation_interval_ms),
        Err(error) => return vec![format!("{name_prefix}    interval: {error}")],
    };
    let directory = match ScratchDirectory::create() {
        Ok(directory) => directory,
        Err(error) => return vec![format!("    cannot create a temporary store: {error}")],
    };
    let options = crate::tsdb::Options {
        retention: crate::config::Retention {
            time: None,
            size_bytes: None,
        },
        ..crate::tsdb::Options::default()
    };
    let store = match crate::tsdb::Tsdb::open(directory.path(), options) {
        Ok(store) => store,
        Err(error) => return vec![format!("    cannot open a temporary store: {error}")],
    };
    let errors = run_with_store(
        test,
        definitions,
        evaluation_interval_ms,
        interval_ms,
        &store,
        &name_prefix,
        fuzzy_compare,
    );
    let _ = store.close();
    errors
}

/// A directory under the system temp dir, removed when dropped.
struct ScratchDirectory(PathBuf);

impl ScratchDirectory {
    fn create() -> std::io::Result<ScratchDirectory> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "guardia-test-rules-{}-{}-{unique}",
            std::process::id(),
            crate::clock::now_ms()
        ));
        std::fs::create_dir_all(&path)?;
        Ok(ScratchDirectory(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_with_store(
    test: &TestGroup,
    definitions: &[super::file::RuleGroupDefinition],
    evaluation_interval_ms: i64,
    interval_ms: i64,
    store: &crate::tsdb::Tsdb,
    name_prefix: &str,
    fuzzy_compare: bool,
) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(error) = load_input_series(store, &test.input_series, interval_ms) {
        return vec![format!("{name_prefix}{error}")];
    }
    let mut groups: Vec<Group> = definitions
        .iter()
        .map(|definition| Group::new(definition, evaluation_interval_ms))
        .collect();
    let mut alert_times: BTreeMap<i64, Vec<&AlertRuleTest>> = BTreeMap::new();
    for alert_test in &test.alert_rule_test {
        match duration_ms(&alert_test.eval_time) {
            Ok(at) => alert_times.entry(at).or_default().push(alert_test),
            Err(error) => errors.push(format!("{name_prefix}    eval_time: {error}")),
        }
    }
    let mut expr_times = Vec::new();
    for expr_test in &test.promql_expr_test {
        match duration_ms(&expr_test.eval_time) {
            Ok(at) => expr_times.push((at, expr_test)),
            Err(error) => errors.push(format!("{name_prefix}    eval_time: {error}")),
        }
    }
    if !errors.is_empty() {
        return errors;
    }
    let max_time = alert_times
        .keys()
        .copied()
        .chain(expr_times.iter().map(|(at, _)| *at))
        .max()
        .unwrap_or(0);
    let engine = Engine::new(EngineOptions::default());
    let external_labels: Vec<(String, String)> = test
        .external_labels
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let context = EvaluationContext {
        storage: store,
        engine: &engine,
        external_labels: &external_labels,
        external_url: &test.external_url,
        state_store: None,
    };
    let step = evaluation_interval_ms.max(1);
    let mut pending_alert_times: Vec<(i64, Vec<&AlertRuleTest>)> =
        alert_times.into_iter().collect();
    pending_alert_times.reverse();
    let mut ts: Timestamp = 0;
    while ts <= max_time {
        let mut evaluation_errors = Vec::new();
        for group in &mut groups {
            group.evaluate(ts, &context);
            for entry in &group.rules {
                if let Some(error) = &entry.last_error {
                    evaluation_errors.push(format!(
                        "    rule: {}, time: {}, err: {error}",
                        entry.rule.name(),
                        format_duration_ms(ts)
                    ));
                }
            }
        }
        if !evaluation_errors.is_empty() {
            errors.extend(evaluation_errors);
            return errors;
        }
        // Alert tests whose time falls in [ts, ts + interval) compare with this evaluation.
        while let Some((at, _)) = pending_alert_times.last() {
            if !(ts <= *at && *at < ts + step) {
                break;
            }
            let Some((at, tests)) = pending_alert_times.pop() else {
                break;
            };
            for alert_test in tests {
                let mut got: AlertSnapshot = Vec::new();
                for group in &groups {
                    for entry in &group.rules {
                        if let Rule::Alerting(rule) = &entry.rule
                            && rule.name == alert_test.alertname
                        {
                            got.extend(
                                rule.active_alerts()
                                    .filter(|alert| alert.state == AlertState::Firing)
                                    .map(|alert| (alert.labels.clone(), alert.annotations.clone())),
                            );
                        }
                    }
                }
                let mut expected: AlertSnapshot = alert_test
                    .exp_alerts
                    .iter()
                    .map(|alert| {
                        let labels = Labels::from_pairs(
                            alert
                                .exp_labels
                                .iter()
                                .map(|(name, value)| (name.as_str(), value.as_str()))
                                .chain([("alertname", alert_test.alertname.as_str())]),
                        );
                        let annotations = Labels::from_pairs(
                            alert
                                .exp_annotations
                                .iter()
                                .map(|(name, value)| (name.as_str(), value.as_str())),
                        );
                        (labels, annotations)
                    })
                    .collect();
                got.sort();
                expected.sort();
                if got != expected {
                    errors.push(format!(
                        "{name_prefix}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                        alert_test.alertname,
                        format_duration_ms(at),
                        render_alerts(&expected),
                        render_alerts(&got)
                    ));
                }
            }
        }
        ts += step;
    }
    for (at, expr_test) in expr_times {
        let time_text = format_duration_ms(at);
        let mut got = match query_vector(&engine, store, &expr_test.expr, at) {
            Ok(rows) => rows,
            Err(error) => {
                errors.push(format!(
                    "    expr: {:?}, time: {time_text}, err: {error}",
                    expr_test.expr
                ));
                continue;
            }
        };
        let mut expected = Vec::new();
        let mut bad_labels = None;
        for sample in &expr_test.exp_samples {
            let text = sample.labels.trim();
            if text.is_empty() {
                expected.push((Labels::empty(), sample.value));
                continue;
            }
            match parse_metric(text).filter(|(_, rest)| rest.is_empty()) {
                Some((labels, _)) => expected.push((labels, sample.value)),
                None => {
                    bad_labels = Some(sample.labels.clone());
                    break;
                }
            }
        }
        if let Some(labels) = bad_labels {
            errors.push(format!(
                "    expr: {:?}, time: {time_text}, err: labels {labels:?}: cannot parse",
                expr_test.expr
            ));
            continue;
        }
        got.sort_by(|a, b| a.0.cmp(&b.0));
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == expected.len()
            && got.iter().zip(&expected).all(|(left, right)| {
                left.0 == right.0 && values_equal(left.1, right.1, fuzzy_compare)
            });
        if !same {
            errors.push(format!(
                "    expr: {:?}, time: {time_text},\n        exp: {}\n        got: {}",
                expr_test.expr,
                render_samples(&expected),
                render_samples(&got)
            ));
        }
    }
    errors
}

/// Exact, or within promtool's relative epsilon (1e-6) under `fuzzy_compare`.
fn values_equal(left: f64, right: f64, fuzzy_compare: bool) -> bool {
    if left == right || (left.is_nan() && right.is_nan()) {
        return true;
    }
    if !fuzzy_compare || !left.is_finite() || !right.is_finite() {
        return false;
    }
    const EPSILON: f64 = 0.000_001;
    let difference = (left - right).abs();
    let sum = left.abs() + right.abs();
    if left == 0.0 || right == 0.0 || sum < f64::MIN_POSITIVE {
        return difference < EPSILON * f64::MIN_POSITIVE;
    }
    difference / sum.min(f64::MAX) < EPSILON
}

/// promtool's `parsedSamplesString`: `{__name__="x", a="b"} 1E+00, ...`, or `nil`.
fn render_samples(samples: &[(Labels, f64)]) -> String {
    if samples.is_empty() {
        return "nil".to_string();
    }
    let mut text = String::new();
    for (index, (labels, value)) in samples.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push('{');
        for (position, label) in labels.iter().enumerate() {
            if position > 0 {
                text.push_str(", ");
            }
            let _ = write!(text, "{}={:?}", label.name, label.value);
        }
        text.push('}');
        let rendered = super::template::format_go_float(*value, 'e', None);
        let rendered = if value.is_finite() {
            rendered.to_uppercase()
        } else {
            rendered
        };
        let _ = write!(text, " {rendered}");
    }
    text
}
