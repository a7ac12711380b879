//! The step evaluator: walks the AST at one timestamp, fetches selector data
//! once per query, slices lookback and range windows out of it, memoises
//! subquery steps, and turns per-step values into the query's result.

use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use promql_parser::label::MatchOp as ParserMatchOp;
use promql_parser::parser::{AtModifier, Expr, Offset, SubqueryExpr, VectorSelector};

use super::durations::{MODIFIER_LABEL, PreparedQuery, selector_modifier};
use super::value::{Element, InstantSample, RangeSeries, StepValue, Value, Window, WindowSeries};
use super::{QueryError, aggregate, binary, functions, range};
use crate::model::{Labels, METRIC_NAME, MatchOp, Matcher, Sample, is_stale_nan};
use crate::storage::{Querier, Series};

/// The series of a selector and the value each yields at one time, as
/// (position in the series, value); series without one are left out.
pub(crate) type SelectorValues = (Rc<Vec<Series>>, Vec<(usize, f64)>);

/// Position of the sample an instant selector yields from `samples` (in
/// time order): the newest at or before `reference`, unless it is not after
/// `window_start` (older than the lookback) or is a staleness marker.
fn instant_sample_index(samples: &[Sample], reference: i64, window_start: i64) -> Option<usize> {
    let index = samples
        .partition_point(|sample| sample.t <= reference)
        .checked_sub(1)?;
    let sample = samples[index];
    (sample.t > window_start && !is_stale_nan(sample.v)).then_some(index)
}

/// Query-wide parameters of one evaluation.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub start: i64,
    pub end: i64,
    /// 0 for instant queries.
    pub step: i64,
    pub lookback: i64,
    pub default_subquery_step: i64,
    pub max_samples: usize,
    pub deadline: Instant,
}

pub(crate) struct Evaluator<'a> {
    querier: &'a dyn Querier,
    pub query_text: &'a str,
    pub settings: Settings,
    /// Inclusive time bounds each selector needs, keyed by node address.
    selector_bounds: HashMap<usize, (i64, i64)>,
    /// Selectors planned as instant vector selectors (not under a range).
    instant_selectors: std::collections::HashSet<usize>,
    selected: HashMap<usize, Rc<Vec<Series>>>,
    subquery_memo: HashMap<(usize, i64), Rc<Vec<Element>>>,
    /// Covered subtrees of a range query, evaluated for all steps up front
    /// (see `range`), keyed by node address.
    range_cache: HashMap<usize, range::Columns>,
    /// Off for the step-by-step reference evaluation the tests compare against.
    pub use_range_columns: bool,
    warnings: Vec<String>,
    infos: Vec<String>,
    loaded_samples: usize,
}

/// Milliseconds of an `offset` modifier (negative offsets look ahead).
pub(crate) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(duration)) => duration.as_millis() as i64,
        Some(Offset::Neg(duration)) => -(duration.as_millis() as i64),
    }
}

fn system_time_ms(time: &SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_millis() as i64,
        Err(before) => -(before.duration().as_millis() as i64),
    }
}

fn node_key<T>(node: &T) -> usize {
    node as *const T as usize
}

/// Above this many selected series, an evaluator's selections are freed on
/// another thread: freeing tens of thousands of label strings and
/// sample buffers takes milliseconds the query's answer need not wait for.
const BACKGROUND_FREE_MIN_SERIES: usize = 2048;

impl Drop for Evaluator<'_> {
    fn drop(&mut self) {
        let selections: Vec<Vec<Series>> = self
            .selected
            .drain()
            .filter_map(|(_, series)| Rc::try_unwrap(series).ok())
            .collect();
        let total: usize = selections.iter().map(Vec::len).sum();
        if total >= BACKGROUND_FREE_MIN_SERIES {
            // On the shared worker pool: no thread is started per query.
            rayon::spawn(move || drop(selections));
        }
    }
}

impl<'a> Evaluator<'a> {
    pub fn new(
        querier: &'a dyn Querier,
        query_text: &'a str,
        _prepared: &'a PreparedQuery,
        settings: Settings,
    ) -> Evaluator<'a> {
        Evaluator {
            querier,
            query_text,
            settings,
            selector_bounds: HashMap::new(),
            instant_selectors: std::collections::HashSet::new(),
            selected: HashMap::new(),
            subquery_memo: HashMap::new(),
            range_cache: HashMap::new(),
            use_range_columns: true,
            warnings: Vec::new(),
            infos: Vec::new(),
            loaded_samples: 0,
        }
    }

    pub fn take_annotations(&mut self) -> (Vec<String>, Vec<String>) {
        (
            std::mem::take(&mut self.warnings),
            std::mem::take(&mut self.infos),
        )
    }

    /// Adds a warning (text without the `PromQL warning: ` prefix).
    pub fn warn(&mut self, text: String) {
        let full = format!("PromQL warning: {text}");
        if !self.warnings.contains(&full) {
            self.warnings.push(full);
        }
    }

    /// Adds an info annotation (text without the `PromQL info: ` prefix).
    pub fn info(&mut self, text: String) {
        let full = format!("PromQL info: {text}");
        if !self.infos.contains(&full) {
            self.infos.push(full);
        }
    }

    /// Position of the first argument of the first call of `function`.
    pub fn argument_position(&self, function: &str, argument_index: usize) -> String {
        let text = self.query_text;
        let pattern = format!("{function}(");
        let Some(call_start) = find_call(text, &pattern) else {
            return position_string(text, 0);
        };
        let mut offset = call_start + pattern.len();
        // Skip to the wanted argument at depth 0.
        let bytes = text.as_bytes();
        let mut depth = 0i32;
        let mut index = 0usize;
        while index < argument_index && offset < bytes.len() {
            match bytes[offset] {
                b'(' | b'[' | b'{' => depth += 1,
                b')' | b']' | b'}' => depth -= 1,
                b',' if depth == 0 => index += 1,
                _ => {}
            }
            offset += 1;
        }
        while offset < bytes.len() && bytes[offset].is_ascii_whitespace() {
            offset += 1;
        }
        position_string(text, offset)
    }

    pub fn call_position(&self, function: &str) -> String {
        let text = self.query_text;
        let start = find_call(text, &format!("{function}(")).unwrap_or(0);
        position_string(text, start)
    }

    pub fn check_deadline(&self) -> Result<(), QueryError> {
        if Instant::now() > self.settings.deadline {
            return Err(QueryError::Timeout);
        }
        Ok(())
    }

    pub fn count_samples(&mut self, count: usize) -> Result<(), QueryError> {
        self.loaded_samples = self.loaded_samples.saturating_add(count);
        if self.loaded_samples > self.settings.max_samples {
            return Err(QueryError::TooManySamples);
        }
        Ok(())
    }

    fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.settings.start),
            Some(AtModifier::End) => Some(self.settings.end),
            Some(AtModifier::At(time)) => Some(system_time_ms(time)),
        }
    }

    /// Works out, before evaluation, which time span every selector needs.
    fn plan(&mut self, expr: &Expr, min_t: i64, max_t: i64) {
        match expr {
            Expr::VectorSelector(selector) => {
                let (low, high) = self.base_times(&selector.at, min_t, max_t);
                let offset = offset_ms(&selector.offset);
                let extra = self.prepared_extension_margin(selector);
                let bounds = (low - offset - self.settings.lookback, high - offset + extra);
                self.merge_bounds(node_key(selector), bounds);
                self.instant_selectors.insert(node_key(selector));
            }
            Expr::MatrixSelector(matrix) => {
                let selector = &matrix.vs;
                let (low, high) = self.base_times(&selector.at, min_t, max_t);
                let offset = offset_ms(&selector.offset);
                let range = matrix.range.as_millis() as i64;
                let extra = self.prepared_extension_margin(selector);
                let bounds = (low - offset - range - extra, high - offset + extra);
                self.merge_bounds(node_key(selector), bounds);
            }
            Expr::Subquery(subquery) => {
                let (low, high) = self.base_times(&subquery.at, min_t, max_t);
                let offset = offset_ms(&subquery.offset);
                let range = subquery.range.as_millis() as i64;
                let step = self.subquery_step(subquery);
                self.plan(&subquery.expr, low - offset - range - step, high - offset);
            }
            Expr::Aggregate(aggregate) => {
                if let Some(param) = &aggregate.param {
                    self.plan(param, min_t, max_t);
                }
                self.plan(&aggregate.expr, min_t, max_t);
            }
            Expr::Unary(unary) => self.plan(&unary.expr, min_t, max_t),
            Expr::Binary(binary) => {
                self.plan(&binary.lhs, min_t, max_t);
                self.plan(&binary.rhs, min_t, max_t);
            }
            Expr::Paren(paren) => self.plan(&paren.expr, min_t, max_t),
            Expr::Call(call) => {
                for argument in &call.args.args {
                    self.plan(argument, min_t, max_t);
                }
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
        }
    }

    fn prepared_extension_margin(&self, selector: &VectorSelector) -> i64 {
        if selector_modifier(selector).is_some() {
            self.settings.lookback
        } else {
            0
        }
    }

    fn base_times(&self, at: &Option<AtModifier>, min_t: i64, max_t: i64) -> (i64, i64) {
        match self.at_ms(at) {
            Some(at) => (at, at),
            None => (min_t, max_t),
        }
    }

    fn merge_bounds(&mut self, key: usize, bounds: (i64, i64)) {
        self.selector_bounds
            .entry(key)
            .and_modify(|existing| {
                existing.0 = existing.0.min(bounds.0);
                existing.1 = existing.1.max(bounds.1);
            })
            .or_insert(bounds);
    }

    pub fn subquery_step(&self, subquery: &SubqueryExpr) -> i64 {
        match subquery.step {
            Some(step) if !step.is_zero() => step.as_millis() as i64,
            _ => self.settings.default_subquery_step,
        }
    }

    /// Series of a selector over the whole span the query needs.
    pub fn select(&mut self, selector: &VectorSelector) -> Result<Rc<Vec<Series>>, QueryError> {
        self.select_in_order(selector, true)
    }

    /// Like `select`, but the series may come in any order when storage can
    /// skip sorting them (an instant query's selector). Only for the one
    /// consumer of `selector` (the cache is keyed by the node), and only
    /// when that consumer's result cannot show the order.
    pub fn select_any_order(
        &mut self,
        selector: &VectorSelector,
    ) -> Result<Rc<Vec<Series>>, QueryError> {
        self.select_in_order(selector, false)
    }

    fn select_in_order(
        &mut self,
        selector: &VectorSelector,
        sorted: bool,
    ) -> Result<Rc<Vec<Series>>, QueryError> {
        let key = node_key(selector);
        if let Some(found) = self.selected.get(&key) {
            return Ok(found.clone());
        }
        let (mint, maxt) = match self.selector_bounds.get(&key) {
            Some(bounds) => *bounds,
            None => (i64::MIN / 4, i64::MAX / 4),
        };
        let groups: Vec<&Vec<promql_parser::label::Matcher>> =
            if selector.matchers.or_matchers.is_empty() {
                vec![&selector.matchers.matchers]
            } else {
                selector.matchers.or_matchers.iter().collect()
            };
        let several_groups = groups.len() > 1;
        // An instant selector evaluated at one time only (an instant query
        // outside subqueries) reads one sample per series: the newest at or
        // before that time. Its bounds then span exactly the lookback delta.
        let latest_only = self.instant_selectors.contains(&key)
            && selector_modifier(selector).is_none()
            && maxt - mint == self.settings.lookback;
        let mut result: Vec<Series> = Vec::new();
        for group in groups {
            let mut matchers = Vec::with_capacity(group.len() + 1);
            if let Some(name) = &selector.name {
                matchers.push(Matcher::equal(METRIC_NAME, name.clone()));
            }
            for matcher in group {
                if matcher.name == MODIFIER_LABEL {
                    continue;
                }
                let op = match matcher.op {
                    ParserMatchOp::Equal => MatchOp::Equal,
                    ParserMatchOp::NotEqual => MatchOp::NotEqual,
                    ParserMatchOp::Re(_) => MatchOp::Regex,
                    ParserMatchOp::NotRe(_) => MatchOp::NotRegex,
                };
                let converted = Matcher::new(op, matcher.name.clone(), matcher.value.clone())
                    .map_err(|error| QueryError::Execution(error.to_string()))?;
                matchers.push(converted);
            }
            let series = if latest_only && !sorted && !several_groups {
                self.querier
                    .select_latest_any_order(mint, maxt, &matchers)?
            } else if latest_only {
                self.querier.select_latest(mint, maxt, &matchers)?
            } else {
                self.querier.select(mint, maxt, &matchers)?
            };
            if result.is_empty() {
                result = series;
            } else {
                result.extend(series);
            }
        }
        // Storage answers sorted by labels (the `Querier` contract); only
        // `or` groups need merging.
        debug_assert!(
            several_groups || !sorted || result.is_sorted_by(|a, b| a.labels <= b.labels)
        );
        if several_groups {
            result.sort_by(|a, b| a.labels.cmp(&b.labels));
            result.dedup_by(|later, earlier| later.labels == earlier.labels);
        }
        let total: usize = result.iter().map(|series| series.samples.len()).sum();
        self.count_samples(total)?;
        let shared = Rc::new(result);
        self.selected.insert(key, shared.clone());
        Ok(shared)
    }

    /// Series matching `matchers` in `[mint, maxt]`, straight from storage
    /// (for lookups whose time depends on the step, like `info()`).
    pub fn select_raw(
        &mut self,
        mint: i64,
        maxt: i64,
        matchers: &[Matcher],
    ) -> Result<Vec<Series>, QueryError> {
        let series = self.querier.select(mint, maxt, matchers)?;
        let total: usize = series.iter().map(|one| one.samples.len()).sum();
        self.count_samples(total)?;
        Ok(series)
    }

    /// For each series of a plain instant selector (no `smoothed`/`anchored`
    /// modifier) in any order, the value it yields at `ts`, by position in
    /// the returned series: what `eval_vector_selector` gives without
    /// cloning a label set. `None` for a selector with a modifier.
    pub fn vector_selector_values_any_order(
        &mut self,
        selector: &VectorSelector,
        ts: i64,
    ) -> Result<Option<SelectorValues>, QueryError> {
        if selector_modifier(selector).is_some() {
            return Ok(None);
        }
        let series = self.select_any_order(selector)?;
        let reference = self.at_ms(&selector.at).unwrap_or(ts) - offset_ms(&selector.offset);
        let window_start = reference - self.settings.lookback;
        let mut values = Vec::with_capacity(series.len());
        for (position, one) in series.iter().enumerate() {
            if let Some(index) = instant_sample_index(&one.samples, reference, window_start) {
                values.push((position, one.samples[index].v));
            }
        }
        Ok(Some((series, values)))
    }

    /// The instant vector a selector yields at `ts`.
    fn eval_vector_selector(
        &mut self,
        selector: &VectorSelector,
        ts: i64,
    ) -> Result<Vec<Element>, QueryError> {
        let series = self.select(selector)?;
        let reference = self.at_ms(&selector.at).unwrap_or(ts) - offset_ms(&selector.offset);
        let window_start = reference - self.settings.lookback;
        let smoothed = selector_modifier(selector) == Some("smoothed");
        let mut out = Vec::new();
        for one in series.iter() {
            let Some(index) = instant_sample_index(&one.samples, reference, window_start) else {
                continue;
            };
            let sample = one.samples[index];
            if smoothed && sample.t < reference {
                // Interpolate towards the next sample within the lookback.
                if let Some(next) = one.samples.get(index + 1)
                    && next.t <= reference + self.settings.lookback
                    && !is_stale_nan(next.v)
                {
                    let fraction = (reference - sample.t) as f64 / (next.t - sample.t) as f64;
                    out.push(Element {
                        labels: one.labels.clone(),
                        t: sample.t,
                        v: sample.v + (next.v - sample.v) * fraction,
                        drop_name: false,
                    });
                    continue;
                }
            }
            out.push(Element {
                labels: one.labels.clone(),
                t: sample.t,
                v: sample.v,
                drop_name: false,
            });
        }
        Ok(out)
    }

    /// The range vector a matrix selector yields at `ts`.
    pub fn eval_matrix_selector(
        &mut self,
        selector: &VectorSelector,
        range: i64,
        ts: i64,
    ) -> Result<Window, QueryError> {
        let series = self.select(selector)?;
        let window_end = self.at_ms(&selector.at).unwrap_or(ts) - offset_ms(&selector.offset);
        let window_start = window_end - range;
        let mut out = Vec::new();
        for one in series.iter() {
            let first = one
                .samples
                .partition_point(|sample| sample.t <= window_start);
            let last = one.samples.partition_point(|sample| sample.t <= window_end);
            if first >= last {
                continue;
            }
            let samples: Vec<Sample> = one.samples[first..last]
                .iter()
                .filter(|sample| !is_stale_nan(sample.v))
                .copied()
                .collect();
            if samples.is_empty() {
                continue;
            }
            out.push(WindowSeries {
                labels: one.labels.clone(),
                samples,
                drop_name: false,
            });
        }
        Ok(Window {
            series: out,
            window_end,
            range,
        })
    }

    /// Samples of a window for the `anchored`/`smoothed` modifiers: the
    /// window's own samples, plus the last sample at or before its start
    /// (within the lookback delta), plus for `smoothed` the first sample
    /// after its end (within the lookback delta).
    pub fn extended_window(
        &mut self,
        selector: &VectorSelector,
        range: i64,
        ts: i64,
        smoothed: bool,
    ) -> Result<Window, QueryError> {
        let series = self.select(selector)?;
        let window_end = self.at_ms(&selector.at).unwrap_or(ts) - offset_ms(&selector.offset);
        let window_start = window_end - range;
        let lookback = self.settings.lookback;
        let mut out = Vec::new();
        for one in series.iter() {
            let live: Vec<Sample> = one
                .samples
                .iter()
                .filter(|sample| !is_stale_nan(sample.v))
                .copied()
                .collect();
            let first_inside = live.partition_point(|sample| sample.t <= window_start);
            let after_end = live.partition_point(|sample| sample.t <= window_end);
            let mut samples: Vec<Sample> = Vec::new();
            if first_inside > 0 && live[first_inside - 1].t > window_start - lookback {
                samples.push(live[first_inside - 1]);
            }
            samples.extend_from_slice(&live[first_inside..after_end.max(first_inside)]);
            if smoothed
                && let Some(next) = live.get(after_end)
                && next.t <= window_end + lookback
            {
                samples.push(*next);
            }
            if samples.is_empty() {
                continue;
            }
            out.push(WindowSeries {
                labels: one.labels.clone(),
                samples,
                drop_name: false,
            });
        }
        Ok(Window {
            series: out,
            window_end,
            range,
        })
    }

    fn eval_subquery(&mut self, subquery: &SubqueryExpr, ts: i64) -> Result<Window, QueryError> {
        let step = self.subquery_step(subquery);
        let range = subquery.range.as_millis() as i64;
        let window_end = self.at_ms(&subquery.at).unwrap_or(ts) - offset_ms(&subquery.offset);
        let window_start = window_end - range;
        let mut first = window_start.div_euclid(step) * step;
        if first <= window_start {
            first += step;
        }
        let key = node_key(subquery);
        let mut index_by_labels: HashMap<Labels, usize> = HashMap::new();
        let mut series: Vec<WindowSeries> = Vec::new();
        let mut inner_t = first;
        while inner_t <= window_end {
            self.check_deadline()?;
            let elements = match self.subquery_memo.get(&(key, inner_t)) {
                Some(found) => found.clone(),
                None => {
                    let value = self.eval(&subquery.expr, inner_t)?;
                    let elements = match value {
                        StepValue::Vector(elements) => elements,
                        StepValue::Scalar(v) => vec![Element {
                            labels: Labels::empty(),
                            t: inner_t,
                            v,
                            drop_name: false,
                        }],
                        other => {
                            return Err(QueryError::Execution(format!(
                                "subquery is only allowed on instant vector, got {} instead",
                                other.type_name()
                            )));
                        }
                    };
                    self.count_samples(elements.len())?;
                    let shared = Rc::new(elements);
                    self.subquery_memo.insert((key, inner_t), shared.clone());
                    shared
                }
            };
            for element in elements.iter() {
                let index = *index_by_labels
                    .entry(element.labels.clone())
                    .or_insert_with(|| {
                        series.push(WindowSeries {
                            labels: element.labels.clone(),
                            samples: Vec::new(),
                            drop_name: false,
                        });
                        series.len() - 1
                    });
                series[index].drop_name |= element.drop_name;
                series[index].samples.push(Sample {
                    t: inner_t,
                    v: element.v,
                });
            }
            inner_t = match inner_t.checked_add(step) {
                Some(next) => next,
                None => break,
            };
        }
        Ok(Window {
            series,
            window_end,
            range,
        })
    }

    /// The value of `expr` at `ts`.
    pub fn eval(&mut self, expr: &Expr, ts: i64) -> Result<StepValue, QueryError> {
        if !self.range_cache.is_empty()
            && let Some(step_index) = self.step_index(ts)
            && let Some(columns) = self.range_cache.get(&node_key(expr))
        {
            let vector = columns.vector_at(step_index, ts);
            let due: Vec<String> = columns
                .infos
                .iter()
                .filter(|(info_step, _)| *info_step == step_index)
                .map(|(_, text)| text.clone())
                .collect();
            for text in due {
                self.info(text);
            }
            return Ok(StepValue::Vector(vector));
        }
        match expr {
            Expr::NumberLiteral(number) => Ok(StepValue::Scalar(number.val)),
            Expr::StringLiteral(string) => Ok(StepValue::Str(string.val.clone())),
            Expr::Paren(paren) => self.eval(&paren.expr, ts),
            Expr::Unary(unary) => match self.eval(&unary.expr, ts)? {
                StepValue::Scalar(v) => Ok(StepValue::Scalar(-v)),
                StepValue::Vector(elements) => Ok(StepValue::Vector(
                    elements
                        .into_iter()
                        .map(|element| Element {
                            v: -element.v,
                            t: ts,
                            drop_name: true,
                            labels: element.labels,
                        })
                        .collect(),
                )),
                other => Err(QueryError::Execution(format!(
                    "unary expression only allowed on expressions of type scalar or instant vector, got {}",
                    other.type_name()
                ))),
            },
            Expr::VectorSelector(selector) => {
                Ok(StepValue::Vector(self.eval_vector_selector(selector, ts)?))
            }
            Expr::MatrixSelector(matrix) => {
                let range = matrix.range.as_millis() as i64;
                if let Some(modifier) = selector_modifier(&matrix.vs) {
                    return Ok(StepValue::Matrix(self.extended_window(
                        &matrix.vs,
                        range,
                        ts,
                        modifier == "smoothed",
                    )?));
                }
                Ok(StepValue::Matrix(
                    self.eval_matrix_selector(&matrix.vs, range, ts)?,
                ))
            }
            Expr::Subquery(subquery) => Ok(StepValue::Matrix(self.eval_subquery(subquery, ts)?)),
            Expr::Call(call) => functions::call(self, call, ts),
            Expr::Aggregate(aggregate) => aggregate::eval(self, aggregate, ts),
            Expr::Binary(binary) => binary::eval(self, binary, ts),
            Expr::Extension(_) => Err(QueryError::Execution(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// Evaluates an expression that must yield a scalar (function and
    /// aggregation parameters).
    pub fn eval_scalar(&mut self, expr: &Expr, ts: i64) -> Result<f64, QueryError> {
        match self.eval(expr, ts)? {
            StepValue::Scalar(v) => Ok(v),
            other => Err(QueryError::Execution(format!(
                "expected scalar, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn eval_vector(&mut self, expr: &Expr, ts: i64) -> Result<Vec<Element>, QueryError> {
        match self.eval(expr, ts)? {
            StepValue::Vector(elements) => Ok(elements),
            other => Err(QueryError::Execution(format!(
                "expected instant vector, got {}",
                other.type_name()
            ))),
        }
    }

    pub fn eval_string(&mut self, expr: &Expr, ts: i64) -> Result<String, QueryError> {
        match self.eval(expr, ts)? {
            StepValue::Str(value) => Ok(value),
            other => Err(QueryError::Execution(format!(
                "expected string, got {}",
                other.type_name()
            ))),
        }
    }

    /// Index of `ts` among the range query's steps, if it is one.
    fn step_index(&self, ts: i64) -> Option<usize> {
        let settings = &self.settings;
        if settings.step <= 0 || ts < settings.start || ts > settings.end {
            return None;
        }
        let since_start = ts - settings.start;
        if since_start % settings.step != 0 {
            return None;
        }
        Some((since_start / settings.step) as usize)
    }

    /// Precomputes every maximal covered subtree of `expr` outside subqueries.
    fn fill_range_cache(&mut self, expr: &Expr) -> Result<(), QueryError> {
        if range::is_covered(expr)
            && let Some(columns) = range::columns(self, expr)?
        {
            self.range_cache.insert(node_key(expr), columns);
            return Ok(());
        }
        match expr {
            Expr::Paren(paren) => self.fill_range_cache(&paren.expr),
            Expr::Unary(unary) => self.fill_range_cache(&unary.expr),
            Expr::Binary(binary) => {
                self.fill_range_cache(&binary.lhs)?;
                self.fill_range_cache(&binary.rhs)
            }
            Expr::Aggregate(aggregate) => {
                if let Some(param) = &aggregate.param {
                    self.fill_range_cache(param)?;
                }
                self.fill_range_cache(&aggregate.expr)
            }
            Expr::Call(call) => {
                for argument in &call.args.args {
                    self.fill_range_cache(argument)?;
                }
                Ok(())
            }
            Expr::VectorSelector(_)
            | Expr::MatrixSelector(_)
            | Expr::Subquery(_)
            | Expr::NumberLiteral(_)
            | Expr::StringLiteral(_)
            | Expr::Extension(_) => Ok(()),
        }
    }

    /// A covered expression at the top of a range query: its columns are
    /// the result's series.
    fn range_result_from_columns(&mut self, columns: range::Columns) -> Result<Value, QueryError> {
        for (_, text) in &columns.infos {
            self.info(text.clone());
        }
        let times_start = self.settings.start;
        let step = self.settings.step;
        let mut series: Vec<RangeSeries> = Vec::with_capacity(columns.series.len());
        let mut produced = 0usize;
        for one in columns.series {
            let labels = if one.drop_name {
                without_name(&one.labels)
            } else {
                one.labels
            };
            let samples: Vec<Sample> = one
                .points
                .iter()
                .enumerate()
                .filter_map(|(step_index, point)| {
                    point.map(|(_, v)| Sample {
                        t: times_start + step_index as i64 * step,
                        v,
                    })
                })
                .collect();
            produced += samples.len();
            series.push(RangeSeries { labels, samples });
        }
        self.count_samples(produced)?;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        // Two series that end up with one label set are an error only if
        // they have a value at the same step.
        for pair in series.windows(2) {
            if pair[0].labels == pair[1].labels {
                let mut left = pair[0].samples.iter().peekable();
                let mut right = pair[1].samples.iter().peekable();
                while let (Some(a), Some(b)) = (left.peek(), right.peek()) {
                    if a.t == b.t {
                        return Err(same_labelset_error());
                    }
                    if a.t < b.t {
                        left.next();
                    } else {
                        right.next();
                    }
                }
            }
        }
        let mut merged: Vec<RangeSeries> = Vec::with_capacity(series.len());
        for one in series {
            match merged.last_mut() {
                Some(previous) if previous.labels == one.labels => {
                    previous.samples.extend(one.samples);
                    previous.samples.sort_by_key(|sample| sample.t);
                }
                _ => merged.push(one),
            }
        }
        Ok(Value::Matrix(merged))
    }

    fn prepare_plan(&mut self, expr: &Expr) {
        let (start, end) = (self.settings.start, self.settings.end);
        self.plan(expr, start, end);
    }

    pub fn run_instant(&mut self, expr: &Expr) -> Result<Value, QueryError> {
        self.prepare_plan(expr);
        let ts = self.settings.start;
        let value = self.eval(expr, ts)?;
        match value {
            StepValue::Scalar(v) => Ok(Value::Scalar { t: ts, v }),
            StepValue::Str(value) => Ok(Value::String { t: ts, value }),
            StepValue::Vector(elements) => {
                let finished = finish_vector(elements)?;
                Ok(Value::Vector(
                    finished
                        .into_iter()
                        .map(|(labels, v)| InstantSample { labels, t: ts, v })
                        .collect(),
                ))
            }
            StepValue::Matrix(window) => {
                let mut series: Vec<RangeSeries> = window
                    .series
                    .into_iter()
                    .map(|one| RangeSeries {
                        labels: if one.drop_name {
                            without_name(&one.labels)
                        } else {
                            one.labels
                        },
                        samples: one.samples,
                    })
                    .collect();
                series.sort_by(|a, b| a.labels.cmp(&b.labels));
                for pair in series.windows(2) {
                    if pair[0].labels == pair[1].labels {
                        return Err(same_labelset_error());
                    }
                }
                Ok(Value::Matrix(series))
            }
        }
    }

    pub fn run_range(&mut self, expr: &Expr) -> Result<Value, QueryError> {
        use promql_parser::parser::value::ValueType;
        match expr.value_type() {
            ValueType::Matrix => {
                return Err(QueryError::Execution(
                    "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
            ValueType::String => {
                return Err(QueryError::Execution(
                    "invalid expression type \"string\" for range query, must be Scalar or instant Vector".into(),
                ));
            }
            _ => {}
        }
        self.prepare_plan(expr);
        if self.use_range_columns {
            if range::is_covered(expr)
                && let Some(columns) = range::columns(self, expr)?
            {
                return self.range_result_from_columns(columns);
            }
            self.fill_range_cache(expr)?;
        }
        let mut index_by_labels: HashMap<Labels, usize> = HashMap::new();
        let mut series: Vec<RangeSeries> = Vec::new();
        let mut ts = self.settings.start;
        let mut produced = 0usize;
        while ts <= self.settings.end {
            self.check_deadline()?;
            let value = self.eval(expr, ts)?;
            let points: Vec<(Labels, f64)> = match value {
                StepValue::Scalar(v) => vec![(Labels::empty(), v)],
                StepValue::Vector(elements) => finish_vector(elements)?,
                other => {
                    return Err(QueryError::Execution(format!(
                        "invalid expression type \"{}\" for range query, must be Scalar or instant Vector",
                        other.type_name()
                    )));
                }
            };
            produced += points.len();
            self.count_samples(points.len())?;
            for (labels, v) in points {
                let index = match index_by_labels.get(&labels) {
                    Some(index) => *index,
                    None => {
                        series.push(RangeSeries {
                            labels: labels.clone(),
                            samples: Vec::new(),
                        });
                        index_by_labels.insert(labels, series.len() - 1);
                        series.len() - 1
                    }
                };
                series[index].samples.push(Sample { t: ts, v });
            }
            ts = match ts.checked_add(self.settings.step) {
                Some(next) => next,
                None => break,
            };
        }
        let _ = produced;
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        Ok(Value::Matrix(series))
    }
}

/// Labels removed together with the metric name: the name and the
/// type-and-unit metadata labels.
pub(crate) fn is_name_like(label_name: &str) -> bool {
    matches!(label_name, "__name__" | "__type__" | "__unit__")
}

/// `labels` without the metric name and its metadata labels.
pub(crate) fn without_name(labels: &Labels) -> Labels {
    if !labels.iter().any(|label| is_name_like(&label.name)) {
        return labels.clone();
    }
    Labels::new(
        labels
            .iter()
            .filter(|label| !is_name_like(&label.name))
            .cloned()
            .collect(),
    )
}

pub(crate) fn same_labelset_error() -> QueryError {
    QueryError::Execution("vector cannot contain metrics with the same labelset".into())
}

/// Applies delayed name removal and rejects duplicate label sets.
fn finish_vector(elements: Vec<Element>) -> Result<Vec<(Labels, f64)>, QueryError> {
    let mut out: Vec<(Labels, f64)> = Vec::with_capacity(elements.len());
    let mut seen: std::collections::HashSet<Labels> = std::collections::HashSet::new();
    for element in elements {
        let labels = if element.drop_name {
            without_name(&element.labels)
        } else {
            element.labels
        };
        if !seen.insert(labels.clone()) {
            return Err(same_labelset_error());
        }
        out.push((labels, element.v));
    }
    Ok(out)
}

/// Labels as they will be after delayed name removal.
pub(crate) fn effective_labels(element: &Element) -> Labels {
    if element.drop_name {
        without_name(&element.labels)
    } else {
        element.labels.clone()
    }
}

/// Fails when two elements would carry the same label set once names are dropped.
pub(crate) fn check_no_duplicate_labelsets(elements: &[Element]) -> Result<(), QueryError> {
    if elements.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::with_capacity(elements.len());
    for element in elements {
        if !seen.insert(effective_labels(element)) {
            return Err(same_labelset_error());
        }
    }
    Ok(())
}

fn find_call(text: &str, pattern: &str) -> Option<usize> {
    let mut search_from = 0;
    while let Some(found) = text.get(search_from..).and_then(|rest| rest.find(pattern)) {
        let absolute = search_from + found;
        let preceded_by_identifier = text[..absolute]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
        if !preceded_by_identifier {
            return Some(absolute);
        }
        search_from = absolute + pattern.len();
    }
    None
}

fn position_string(text: &str, byte_offset: usize) -> String {
    let before = text.get(..byte_offset).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = match before.rfind('\n') {
        Some(newline) => before[newline + 1..].chars().count() + 1,
        None => before.chars().count() + 1,
    };
    format!("({line}:{column})")
}
