//! Conformance harness: runs Prometheus's PromQL test scripts
//! (`/work/shared/promql-testdata/*.test`, format in FORMAT.md there) through
//! the same `promql::Engine` the HTTP API uses, over an in-memory
//! implementation of the storage traits.
//!
//! Data is loaded through the real `tsdb::Tsdb` (a redb file in a temporary
//! directory, written with `Appendable::appender()` → `append` → `commit`).
//! A test script may add samples to a series "in the past" with a later
//! `load`, which a store rejects as out of order, so the harness keeps the
//! loaded data in memory and builds a fresh `Tsdb` from it whenever the data
//! changed before an eval. `GUARDIA_PROMQL_STORE=memory` evaluates over the
//! in-memory model directly instead (faster, for debugging).
//!
//! Every eval is a case: passed, failed, or skipped (native histograms and
//! start timestamps are not supported). Failures must be listed in
//! `tests/promql_expected_failures.txt` (`file:line reason`); the test fails
//! on an unlisted failure, and on a listed case that now passes, so the
//! list stays honest. `GUARDIA_PROMQL_TESTDATA` overrides the data folder;
//! `GUARDIA_PROMQL_VERBOSE=1` prints every failure.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use guardia::model::{Labels, Matcher, MetricMetadata, Sample, matches_all};
use guardia::promql::{Engine, EngineOptions, QueryError, QueryOptions, QueryResult, Value};
use guardia::rules::series_notation::{
    Point, parse_metric, parse_number, parse_values, read_quoted,
};
use guardia::storage::{Querier, Queryable, Series, StorageError};

// ---------------------------------------------------------------------------
// In-memory storage

#[derive(Default)]
struct MemoryStore {
    series: BTreeMap<Labels, Vec<Sample>>,
}

impl MemoryStore {
    fn add_series(&mut self, labels: Labels, samples: Vec<Sample>) {
        let entry = self.series.entry(labels).or_default();
        // A later load may add samples to an existing series.
        entry.extend(samples);
        entry.sort_by_key(|sample| sample.t);
        entry.dedup_by(|later, earlier| {
            if later.t == earlier.t {
                *earlier = *later;
                true
            } else {
                false
            }
        });
    }
}

struct MemoryQuerier<'a> {
    store: &'a MemoryStore,
}

impl Queryable for MemoryStore {
    fn querier(&self) -> Result<Box<dyn Querier + '_>, StorageError> {
        Ok(Box::new(MemoryQuerier { store: self }))
    }

    fn metadata(&self) -> Vec<(String, MetricMetadata)> {
        Vec::new()
    }
}

impl Querier for MemoryQuerier<'_> {
    fn select(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, StorageError> {
        let mut out = Vec::new();
        for (labels, samples) in &self.store.series {
            if !matches_all(matchers, labels) {
                continue;
            }
            let first = samples.partition_point(|sample| sample.t < mint);
            let last = samples.partition_point(|sample| sample.t <= maxt);
            if first >= last {
                continue;
            }
            out.push(Series {
                labels: labels.clone(),
                samples: samples[first..last].to_vec(),
            });
        }
        Ok(out)
    }

    fn series(
        &self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<Labels>, StorageError> {
        Ok(self
            .select(mint, maxt, matchers)?
            .into_iter()
            .map(|series| series.labels)
            .collect())
    }

    fn label_names(&self, _: i64, _: i64, _: &[Matcher]) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }

    fn label_values(
        &self,
        _: &str,
        _: i64,
        _: i64,
        _: &[Matcher],
    ) -> Result<Vec<String>, StorageError> {
        Ok(Vec::new())
    }
}

// ---------------------------------------------------------------------------
// Parsing helpers

/// A Prometheus duration in ms, by the same parser the flags and config use.
fn parse_duration_ms(text: &str) -> Option<i64> {
    let duration = guardia::config::parse_duration(text.trim()).ok()?;
    i64::try_from(duration.as_millis()).ok()
}

// ---------------------------------------------------------------------------
// Commands

#[derive(Clone, Debug)]
struct ExpectedSeries {
    labels: Labels,
    points: Vec<Point>,
}

#[derive(Clone, Debug, Default)]
struct AnnotationExpectation {
    kind: String,
    matcher: Option<(bool, String)>, // (is_regex, text)
}

#[derive(Clone, Debug)]
struct EvalCase {
    line: usize,
    expr: String,
    range: Option<(i64, i64, i64)>,
    at: i64,
    expect_fail: bool,
    fail_matcher: Option<(bool, String)>,
    ordered: bool,
    range_vector: Option<(i64, i64, i64)>,
    expect_string: Option<String>,
    scalar: Option<f64>,
    series: Vec<ExpectedSeries>,
    annotations: Vec<AnnotationExpectation>,
    needs_histograms: bool,
    file_error: Option<String>,
}

enum Command {
    Load {
        step: i64,
        lines: Vec<String>,
        with_nhcb: bool,
    },
    Clear,
    Eval(Box<EvalCase>),
}

fn parse_file(text: &str) -> Result<Vec<Command>, String> {
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            let trimmed = line.trim();
            if trimmed.starts_with('#') {
                String::new()
            } else {
                trimmed.to_string()
            }
        })
        .collect();
    let instant_regex = regex::Regex::new(
        r"^eval(?:_(fail|warn|ordered|info))?\s+instant\s+(?:at\s+(.+?))?\s+(.+)$",
    )
    .map_err(|e| e.to_string())?;
    let range_regex = regex::Regex::new(
        r"^eval(?:_(fail|warn|info))?\s+range\s+from\s+(.+)\s+to\s+(.+)\s+step\s+(.+?)\s+(.+)$",
    )
    .map_err(|e| e.to_string())?;
    let expect_regex = regex::Regex::new(
        r"^expect\s+(ordered|fail|warn|no_warn|info|no_info)(?:\s+(regex|msg):(.+))?$",
    )
    .map_err(|e| e.to_string())?;
    let range_vector_regex =
        regex::Regex::new(r"^expect range vector from\s+(.+)\s+to\s+(.+)\s+step\s+(.+)$")
            .map_err(|e| e.to_string())?;

    let mut commands = Vec::new();
    let mut index = 0;
    while index < lines.len() {
        let line = &lines[index];
        if line.is_empty() {
            index += 1;
            continue;
        }
        let first_word = line.split_whitespace().next().unwrap_or("").to_lowercase();
        let mut body = Vec::new();
        let mut body_index = index + 1;
        while body_index < lines.len() && !lines[body_index].is_empty() {
            body.push((body_index, lines[body_index].clone()));
            body_index += 1;
        }
        if first_word == "clear" {
            commands.push(Command::Clear);
            index += 1;
            continue;
        }
        if first_word.starts_with("load") {
            let with_nhcb = first_word == "load_with_nhcb";
            let step_text = line.split_whitespace().nth(1).ok_or("load without step")?;
            let step = parse_duration_ms(step_text).ok_or(format!("bad load step {step_text}"))?;
            commands.push(Command::Load {
                step,
                lines: body.into_iter().map(|(_, text)| text).collect(),
                with_nhcb,
            });
            index = body_index;
            continue;
        }
        if !first_word.starts_with("eval") {
            return Err(format!("line {}: unknown command {line:?}", index + 1));
        }
        let mut case = EvalCase {
            line: index + 1,
            expr: String::new(),
            range: None,
            at: 0,
            expect_fail: false,
            fail_matcher: None,
            ordered: false,
            range_vector: None,
            expect_string: None,
            scalar: None,
            series: Vec::new(),
            annotations: Vec::new(),
            needs_histograms: false,
            file_error: None,
        };
        let suffix;
        if let Some(captures) = range_regex.captures(line) {
            suffix = captures.get(1).map(|m| m.as_str().to_string());
            let start = parse_duration_ms(&captures[2]);
            let end = parse_duration_ms(&captures[3]);
            let step = parse_duration_ms(&captures[4]);
            match (start, end, step) {
                (Some(start), Some(end), Some(step)) => case.range = Some((start, end, step)),
                _ => case.file_error = Some("bad range times".into()),
            }
            case.expr = captures[5].to_string();
        } else if let Some(captures) = instant_regex.captures(line) {
            suffix = captures.get(1).map(|m| m.as_str().to_string());
            match captures.get(2).and_then(|m| parse_duration_ms(m.as_str())) {
                Some(at) => case.at = at,
                None => case.file_error = Some("bad eval time".into()),
            }
            case.expr = captures[3].to_string();
        } else {
            return Err(format!("line {}: bad eval {line:?}", index + 1));
        }
        match suffix.as_deref() {
            Some("fail") => case.expect_fail = true,
            Some("ordered") => case.ordered = true,
            Some("warn") => case.annotations.push(AnnotationExpectation {
                kind: "warn".into(),
                matcher: None,
            }),
            Some("info") => case.annotations.push(AnnotationExpectation {
                kind: "info".into(),
                matcher: None,
            }),
            _ => {}
        }
        for (_, body_line) in body {
            if case.expect_fail
                && let Some(message) = body_line.strip_prefix("expected_fail_message")
            {
                case.fail_matcher = Some((false, message.trim().to_string()));
                break;
            }
            if case.expect_fail
                && let Some(pattern) = body_line.strip_prefix("expected_fail_regexp")
            {
                case.fail_matcher = Some((true, pattern.trim().to_string()));
                break;
            }
            if let Some(captures) = range_vector_regex.captures(&body_line) {
                let from = parse_duration_ms(&captures[1]);
                let to = parse_duration_ms(&captures[2]);
                let step = parse_duration_ms(&captures[3]);
                if let (Some(from), Some(to), Some(step)) = (from, to, step) {
                    case.range_vector = Some((from, to, step));
                } else {
                    case.file_error = Some("bad expect range vector".into());
                }
                continue;
            }
            if let Some(literal) = body_line.strip_prefix("expect string ") {
                let chars: Vec<char> = literal.trim().chars().collect();
                let mut position = 0;
                case.expect_string = read_quoted(&chars, &mut position);
                if body_line.contains("{{") {
                    case.needs_histograms = true;
                }
                continue;
            }
            if body_line.split_whitespace().next() == Some("expect") {
                let Some(captures) = expect_regex.captures(&body_line) else {
                    case.file_error = Some(format!("bad expect line {body_line:?}"));
                    continue;
                };
                let kind = captures[1].to_string();
                let matcher = captures
                    .get(2)
                    .map(|m| (m.as_str() == "regex", captures[3].trim().to_string()));
                match kind.as_str() {
                    "ordered" => case.ordered = true,
                    "fail" => {
                        case.expect_fail = true;
                        case.fail_matcher = matcher;
                    }
                    _ => case
                        .annotations
                        .push(AnnotationExpectation { kind, matcher }),
                }
                continue;
            }
            if let Some(value) = parse_number(&body_line, true) {
                case.scalar = Some(value);
                break;
            }
            if body_line.contains("{{") {
                case.needs_histograms = true;
            }
            match parse_metric(&body_line) {
                Some((labels, values)) => match parse_values(&values) {
                    Some(points) => {
                        if points.iter().any(|point| matches!(point, Point::Histogram)) {
                            case.needs_histograms = true;
                        }
                        case.series.push(ExpectedSeries { labels, points });
                    }
                    None => case.file_error = Some(format!("bad values {values:?}")),
                },
                None => case.file_error = Some(format!("bad series line {body_line:?}")),
            }
        }
        commands.push(Command::Eval(Box::new(case)));
        index = body_index;
    }
    Ok(commands)
}

// ---------------------------------------------------------------------------
// Loading

struct TsdbCopy {
    // Field order matters: the store closes before its directory goes.
    tsdb: std::sync::Arc<guardia::tsdb::Tsdb>,
    _directory: tempfile::TempDir,
}

#[derive(Default)]
struct Segment {
    store: MemoryStore,
    /// The real store built from `store`, when it is current.
    tsdb: Option<TsdbCopy>,
    /// Series that hold native histograms (not loaded).
    histogram_series: BTreeSet<Labels>,
    /// Series with start timestamps (not supported).
    start_timestamp_series: BTreeSet<Labels>,
}

fn load(segment: &mut Segment, step: i64, lines: &[String], with_nhcb: bool) -> Result<(), String> {
    segment.tsdb = None;
    let mut parsed: BTreeMap<Labels, Vec<Point>> = BTreeMap::new();
    for line in lines {
        let (first_token, _) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        if first_token.ends_with("@st") {
            let metric_text = line.replacen("@st", "", 1);
            if let Some((labels, _)) = parse_metric(&metric_text) {
                segment.start_timestamp_series.insert(labels);
            }
            continue;
        }
        let (labels, values) = parse_metric(line).ok_or(format!("bad series {line:?}"))?;
        let points = parse_values(&values).ok_or(format!("bad values {values:?}"))?;
        parsed.insert(labels, points);
    }
    for (labels, points) in parsed {
        let mut samples = Vec::new();
        for (position, point) in points.iter().enumerate() {
            match point {
                Point::Float(v) => samples.push(Sample {
                    t: position as i64 * step,
                    v: *v,
                }),
                Point::Histogram => {
                    segment.histogram_series.insert(labels.clone());
                }
                Point::Missing => {}
            }
        }
        if with_nhcb && let Some(name) = labels.metric_name() {
            for suffix in ["_bucket", "_count", "_sum"] {
                if let Some(base) = name.strip_suffix(suffix) {
                    let derived = labels.without("le").with("__name__", base);
                    segment.histogram_series.insert(derived);
                }
            }
        }
        segment.store.add_series(labels, samples);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Checking

fn almost_equal(a: f64, b: f64) -> bool {
    use guardia::model::is_stale_nan;
    if is_stale_nan(a) || is_stale_nan(b) {
        return is_stale_nan(a) && is_stale_nan(b);
    }
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let min_normal = 2.2250738585072014e-308;
    let epsilon = 1e-6;
    let absolute_sum = a.abs() + b.abs();
    let difference = (a - b).abs();
    if a == 0.0 || b == 0.0 || absolute_sum < min_normal {
        return difference < epsilon * min_normal;
    }
    difference / absolute_sum.min(f64::MAX) < epsilon
}

fn text_matches(matcher: &Option<(bool, String)>, text: &str) -> bool {
    match matcher {
        None => true,
        Some((false, expected)) => text.trim() == expected.trim(),
        Some((true, pattern)) => regex::Regex::new(pattern)
            .map(|regex| regex.is_match(text))
            .unwrap_or(false),
    }
}

fn check_vector(case: &EvalCase, result: &[(Labels, f64)]) -> Result<(), String> {
    if case.scalar.is_some() {
        return Err("expected scalar, got vector".into());
    }
    let mut matched = vec![false; case.series.len()];
    for (position, (labels, value)) in result.iter().enumerate() {
        let Some(expected_index) = case.series.iter().position(|s| s.labels == *labels) else {
            return Err(format!("unexpected series {labels} {value}"));
        };
        let expected = &case.series[expected_index];
        let expected_value = match expected.points.first() {
            Some(Point::Float(v)) => *v,
            Some(Point::Missing) | None => 0.0,
            Some(Point::Histogram) => return Err("histogram expected".into()),
        };
        if !almost_equal(expected_value, *value) {
            return Err(format!("{labels}: expected {expected_value}, got {value}"));
        }
        if case.ordered && expected_index != position {
            return Err(format!(
                "{labels}: expected at position {}, got {}",
                expected_index + 1,
                position + 1
            ));
        }
        matched[expected_index] = true;
    }
    if let Some(missing) = matched.iter().position(|m| !m) {
        return Err(format!("missing series {}", case.series[missing].labels));
    }
    Ok(())
}

fn check_matrix(
    case: &EvalCase,
    series: &[guardia::promql::RangeSeries],
    start: i64,
    end: i64,
    step: i64,
    valid_timestamps: bool,
) -> Result<(), String> {
    if case.ordered {
        return Err("expect ordered is not allowed for range results".into());
    }
    if case.scalar.is_some() {
        return Err("expected scalar, got matrix".into());
    }
    for pair in series.windows(2) {
        if pair[0].labels >= pair[1].labels {
            return Err("matrix not sorted by labels".into());
        }
    }
    let mut matched = vec![false; case.series.len()];
    for one in series {
        let Some(expected_index) = case.series.iter().position(|s| s.labels == one.labels) else {
            return Err(format!("unexpected series {}", one.labels));
        };
        matched[expected_index] = true;
        let expected = &case.series[expected_index];
        if !valid_timestamps {
            return Err(format!("unexpected series {} (matrix result)", one.labels));
        }
        let mut expected_points = Vec::new();
        for (position, point) in expected.points.iter().enumerate() {
            let t = start + position as i64 * step;
            if t > end {
                return Err(format!("{}: too many expected values", one.labels));
            }
            match point {
                Point::Float(v) => expected_points.push((t, *v)),
                Point::Missing => {}
                Point::Histogram => return Err("histogram expected".into()),
            }
        }
        if expected_points.len() != one.samples.len() {
            return Err(format!(
                "{}: expected {} points {:?}, got {} {:?}",
                one.labels,
                expected_points.len(),
                expected_points,
                one.samples.len(),
                one.samples.iter().map(|s| (s.t, s.v)).collect::<Vec<_>>()
            ));
        }
        for ((t, v), sample) in expected_points.iter().zip(&one.samples) {
            if *t != sample.t || !almost_equal(*v, sample.v) {
                return Err(format!(
                    "{}: expected ({t}, {v}), got ({}, {})",
                    one.labels, sample.t, sample.v
                ));
            }
        }
    }
    for (index, was_matched) in matched.iter().enumerate() {
        let has_points = case.series[index]
            .points
            .iter()
            .any(|point| !matches!(point, Point::Missing));
        if !was_matched && has_points {
            return Err(format!("missing series {}", case.series[index].labels));
        }
    }
    Ok(())
}

fn check_annotations(case: &EvalCase, result: &QueryResult) -> Result<(), String> {
    for (kind, negative, annotations) in [
        ("warn", "no_warn", &result.warnings),
        ("info", "no_info", &result.infos),
    ] {
        let expectations: Vec<&AnnotationExpectation> =
            case.annotations.iter().filter(|a| a.kind == kind).collect();
        if case.annotations.iter().any(|a| a.kind == negative) && !annotations.is_empty() {
            return Err(format!("unexpected {kind} annotations: {annotations:?}"));
        }
        if expectations.is_empty() {
            continue;
        }
        if annotations.is_empty() {
            return Err(format!("expected {kind} annotation, got none"));
        }
        for expectation in &expectations {
            if !annotations
                .iter()
                .any(|a| text_matches(&expectation.matcher, a))
            {
                return Err(format!(
                    "no {kind} annotation matches {:?}; got {annotations:?}",
                    expectation.matcher
                ));
            }
        }
        for annotation in annotations.iter() {
            if !expectations
                .iter()
                .any(|e| text_matches(&e.matcher, annotation))
            {
                return Err(format!("unexpected {kind} annotation {annotation:?}"));
            }
        }
    }
    Ok(())
}

fn error_text(error: &QueryError) -> String {
    error.to_string()
}

fn use_memory_store() -> bool {
    std::env::var("GUARDIA_PROMQL_STORE").is_ok_and(|value| value == "memory")
}

/// Writes the segment's data into a new `Tsdb` unless one is current.
fn ensure_tsdb(segment: &mut Segment) -> Result<(), String> {
    use guardia::storage::Appendable;
    if segment.tsdb.is_some() || use_memory_store() {
        return Ok(());
    }
    let directory = tempfile::tempdir().map_err(|e| e.to_string())?;
    let options = guardia::tsdb::Options {
        retention: guardia::config::Retention {
            time: None,
            size_bytes: None,
        },
        ..guardia::tsdb::Options::default()
    };
    let tsdb = guardia::tsdb::Tsdb::open(directory.path(), options).map_err(|e| e.to_string())?;
    let mut appender = tsdb.appender();
    let mut expected = 0u64;
    for (labels, samples) in &segment.store.series {
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|label| (label.name.as_str(), label.value.as_str()))
            .collect();
        for sample in samples {
            appender
                .append(&pairs, sample.t, sample.v)
                .map_err(|e| format!("append {labels}: {e}"))?;
            expected += 1;
        }
    }
    let outcome = appender.commit().map_err(|e| e.to_string())?;
    if outcome.samples_appended != expected {
        return Err(format!(
            "tsdb stored {} of {expected} samples: {outcome:?}",
            outcome.samples_appended
        ));
    }
    segment.tsdb = Some(TsdbCopy {
        tsdb,
        _directory: directory,
    });
    Ok(())
}

fn queryable(segment: &Segment) -> &dyn Queryable {
    match &segment.tsdb {
        Some(copy) => copy.tsdb.as_ref(),
        None => &segment.store,
    }
}

fn run_case(engine: &Engine, segment: &Segment, case: &EvalCase) -> Result<(), String> {
    let store = queryable(segment);
    if let Some(error) = &case.file_error {
        return Err(format!("file error: {error}"));
    }
    let (result, query_start, query_end, query_step) = match case.range {
        Some((start, end, step)) => (
            engine.range_query(store, &case.expr, start, end, step, QueryOptions::default()),
            start,
            end,
            step,
        ),
        None => {
            let at = case.range_vector.map(|(_, to, _)| to).unwrap_or(case.at);
            (
                engine.instant_query(store, &case.expr, at, QueryOptions::default()),
                at,
                at,
                0,
            )
        }
    };
    let result = match result {
        Err(error) => {
            if case.expect_fail {
                let text = error_text(&error);
                let stripped = text.strip_prefix("parse error: ").unwrap_or(&text);
                if text_matches(&case.fail_matcher, &text)
                    || text_matches(&case.fail_matcher, stripped)
                {
                    return Ok(());
                }
                return Err(format!(
                    "error text {text:?} does not match {:?}",
                    case.fail_matcher
                ));
            }
            return Err(format!("query failed: {error}"));
        }
        Ok(result) => result,
    };
    if case.expect_fail {
        return Err("expected failure, query succeeded".into());
    }
    check_annotations(case, &result)?;
    let _ = (query_start, query_end);
    match &result.value {
        Value::Scalar { v, .. } => match case.scalar {
            Some(expected) if almost_equal(expected, *v) => {}
            Some(expected) => return Err(format!("expected scalar {expected}, got {v}")),
            None => return Err(format!("got scalar {v}, expected none")),
        },
        Value::String { value, .. } => {
            let expected = case.expect_string.clone().unwrap_or_default();
            if *value != expected {
                return Err(format!("expected string {expected:?}, got {value:?}"));
            }
        }
        Value::Vector(samples) => {
            let pairs: Vec<(Labels, f64)> =
                samples.iter().map(|s| (s.labels.clone(), s.v)).collect();
            check_vector(case, &pairs)?;
        }
        Value::Matrix(series) => {
            if let Some((start, end, step)) = case.range {
                check_matrix(case, series, start, end, step, true)?;
            } else if let Some((from, to, step)) = case.range_vector {
                check_matrix(case, series, from, to, step, true)?;
            } else {
                check_matrix(case, series, 0, 0, 1, false)?;
            }
        }
    }
    let _ = query_step;

    // The range-mode check of instant evals.
    let uses_time_functions = ["start()", "end()", "range()", "step()"]
        .iter()
        .any(|f| case.expr.contains(f));
    if case.range.is_none()
        && case.range_vector.is_none()
        && case.expect_string.is_none()
        && !uses_time_functions
        && matches!(result.value, Value::Vector(_) | Value::Scalar { .. })
    {
        let t = case.at;
        let range_result = engine
            .range_query(
                store,
                &case.expr,
                t - 60_000,
                t + 60_000,
                60_000,
                QueryOptions::default(),
            )
            .map_err(|error| format!("range-mode check failed: {error}"))?;
        if case.ordered {
            return Ok(());
        }
        let Value::Matrix(series) = &range_result.value else {
            return Err("range-mode check returned no matrix".into());
        };
        for pair in series.windows(2) {
            if pair[0].labels >= pair[1].labels {
                return Err("range-mode matrix not sorted".into());
            }
        }
        let points: Vec<(Labels, f64)> = series
            .iter()
            .filter_map(|one| {
                one.samples
                    .iter()
                    .find(|sample| sample.t == t)
                    .map(|sample| (one.labels.clone(), sample.v))
            })
            .collect();
        if matches!(result.value, Value::Scalar { .. }) {
            let value = points.first().map(|(_, v)| *v).unwrap_or(f64::NAN);
            match case.scalar {
                Some(expected) if almost_equal(expected, value) => {}
                _ => return Err(format!("range-mode check: scalar {value}")),
            }
        } else {
            check_vector(case, &points).map_err(|error| format!("range-mode check: {error}"))?;
        }
    }
    Ok(())
}

/// Whether a query can reach a series in `set` (by its selectors).
fn query_reaches(expr: &str, set: &BTreeSet<Labels>) -> bool {
    if set.is_empty() {
        return false;
    }
    let Ok(parsed) = promql_parser::parser::parse(expr) else {
        // Unparseable here (e.g. duration expressions): judge by metric names.
        return set
            .iter()
            .any(|labels| labels.metric_name().is_some_and(|name| expr.contains(name)));
    };
    let mut selectors = Vec::new();
    collect_selectors(&parsed, &mut selectors);
    selectors
        .iter()
        .any(|selector| set.iter().any(|labels| selector_matches(selector, labels)))
}

fn collect_selectors(
    expr: &promql_parser::parser::Expr,
    out: &mut Vec<promql_parser::parser::VectorSelector>,
) {
    use promql_parser::parser::Expr;
    match expr {
        Expr::VectorSelector(selector) => out.push(selector.clone()),
        Expr::MatrixSelector(matrix) => out.push(matrix.vs.clone()),
        Expr::Subquery(subquery) => collect_selectors(&subquery.expr, out),
        Expr::Aggregate(aggregate) => {
            collect_selectors(&aggregate.expr, out);
            if let Some(param) = &aggregate.param {
                collect_selectors(param, out);
            }
        }
        Expr::Unary(unary) => collect_selectors(&unary.expr, out),
        Expr::Binary(binary) => {
            collect_selectors(&binary.lhs, out);
            collect_selectors(&binary.rhs, out);
        }
        Expr::Paren(paren) => collect_selectors(&paren.expr, out),
        Expr::Call(call) => {
            for argument in &call.args.args {
                collect_selectors(argument, out);
            }
        }
        _ => {}
    }
}

fn selector_matches(selector: &promql_parser::parser::VectorSelector, labels: &Labels) -> bool {
    if let Some(name) = &selector.name
        && labels.metric_name() != Some(name.as_str())
    {
        return false;
    }
    let groups: Vec<&Vec<promql_parser::label::Matcher>> =
        if selector.matchers.or_matchers.is_empty() {
            vec![&selector.matchers.matchers]
        } else {
            selector.matchers.or_matchers.iter().collect()
        };
    groups.iter().any(|group| {
        group
            .iter()
            .all(|matcher| matcher.is_match(labels.get(&matcher.name).unwrap_or("")))
    })
}

// ---------------------------------------------------------------------------
// Driver

#[derive(Default)]
struct FileReport {
    passed: usize,
    failed: usize,
    skipped: usize,
    failures: Vec<(usize, String)>,
}

fn run_file(engine: &Engine, path: &Path) -> Result<FileReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let commands = parse_file(&text)?;
    let mut report = FileReport::default();
    let mut segment = Segment::default();
    for command in commands {
        match command {
            Command::Clear => segment = Segment::default(),
            Command::Load {
                step,
                lines,
                with_nhcb,
            } => load(&mut segment, step, &lines, with_nhcb)?,
            Command::Eval(case) => {
                if case.needs_histograms || query_reaches(&case.expr, &segment.histogram_series) {
                    report.skipped += 1;
                    continue;
                }
                if query_reaches(&case.expr, &segment.start_timestamp_series) {
                    report.skipped += 1;
                    continue;
                }
                ensure_tsdb(&mut segment)?;
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_case(engine, &segment, &case)
                }))
                .unwrap_or_else(|_| Err("panic".into()));
                match outcome {
                    Ok(()) => report.passed += 1,
                    Err(reason) => {
                        report.failed += 1;
                        report
                            .failures
                            .push((case.line, format!("{} — {reason}", case.expr)));
                    }
                }
            }
        }
    }
    Ok(report)
}

fn testdata_folder() -> PathBuf {
    if let Ok(folder) = std::env::var("GUARDIA_PROMQL_TESTDATA") {
        return PathBuf::from(folder);
    }
    // The data sits beside the repository; a git worktree is one level deeper.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let beside = root.join("../shared/promql-testdata");
    if beside.is_dir() {
        return beside;
    }
    root.join("../../shared/promql-testdata")
}

fn expected_failures() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql_expected_failures.txt");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .collect()
}

const STABLE_FILES: [&str; 12] = [
    "aggregators",
    "at_modifier",
    "collision",
    "functions",
    "histograms",
    "literals",
    "operators",
    "range_queries",
    "selectors",
    "staleness",
    "subquery",
    "trig_functions",
];

#[test]
fn promql_conformance() {
    let folder = testdata_folder();
    let Ok(entries) = std::fs::read_dir(&folder) else {
        println!(
            "PromQL test data not found at {}; skipping",
            folder.display()
        );
        return;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "test"))
        .collect();
    files.sort();
    let engine = Engine::new(EngineOptions::default());
    let expected = expected_failures();
    let verbose = std::env::var("GUARDIA_PROMQL_VERBOSE").is_ok();
    let started = Instant::now();
    let mut unexpected: Vec<String> = Vec::new();
    let mut seen_failures: HashSet<String> = HashSet::new();
    let mut current_failures: Vec<String> = Vec::new();
    let (mut stable_passed, mut stable_total) = (0, 0);
    let (mut newer_passed, mut newer_total) = (0, 0);
    println!(
        "{:<28} {:>6} {:>6} {:>7} {:>7}",
        "file", "passed", "failed", "skipped", "rate"
    );
    for path in &files {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("")
            .to_string();
        let file_name = format!("{stem}.test");
        let report = match run_file(&engine, path) {
            Ok(report) => report,
            Err(error) => panic!("{file_name}: {error}"),
        };
        let total = report.passed + report.failed;
        let rate = if total == 0 {
            100.0
        } else {
            report.passed as f64 * 100.0 / total as f64
        };
        println!(
            "{:<28} {:>6} {:>6} {:>7} {:>6.1}%",
            file_name, report.passed, report.failed, report.skipped, rate
        );
        if STABLE_FILES.contains(&stem.as_str()) {
            stable_passed += report.passed;
            stable_total += total;
        } else if !matches!(stem.as_str(), "native_histograms" | "start_timestamps") {
            newer_passed += report.passed;
            newer_total += total;
        }
        for (line, reason) in &report.failures {
            let key = format!("{file_name}:{line}");
            seen_failures.insert(key.clone());
            current_failures.push(format!("{key} {reason}"));
            if verbose {
                println!("  FAIL {key} {reason}");
            }
            if !expected.contains(&key) {
                unexpected.push(format!("{key} {reason}"));
            }
        }
    }
    let stable_rate = stable_passed as f64 * 100.0 / stable_total.max(1) as f64;
    let newer_rate = newer_passed as f64 * 100.0 / newer_total.max(1) as f64;
    println!("stable files: {stable_passed}/{stable_total} ({stable_rate:.1}%)");
    println!("newer files:  {newer_passed}/{newer_total} ({newer_rate:.1}%)");
    println!("elapsed: {:.1}s", started.elapsed().as_secs_f64());
    if let Ok(path) = std::env::var("GUARDIA_PROMQL_WRITE_FAILURES") {
        let _ = std::fs::write(path, current_failures.join("\n") + "\n");
    }
    let now_passing: Vec<&String> = expected
        .iter()
        .filter(|key| !seen_failures.contains(*key))
        .collect();
    assert!(
        unexpected.is_empty(),
        "{} unexpected failures:\n{}",
        unexpected.len(),
        unexpected.join("\n")
    );
    assert!(
        now_passing.is_empty(),
        "cases listed in tests/promql_expected_failures.txt now pass; remove them:\n{}",
        now_passing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}
