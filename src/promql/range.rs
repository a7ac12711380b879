//! The per-series range evaluator: for a range query, selected subtrees are
//! evaluated once for all steps instead of once per step. A selector walks
//! each series with one moving pointer (lookback) or two (a left-open window
//! sliding over the decoded samples), so no window is copied and no label set
//! is cloned or hashed per step; an aggregation computes the group of every
//! series once and folds each input series into its group's per-step
//! accumulators in one pass over that series (an aggregation straight over
//! a rate-family call does so as each series' rates are computed, without
//! keeping a column per input series).
//!
//! What it covers: plain instant selectors, `rate`/`increase`/`delta`/
//! `irate`/`idelta` over a plain range selector, and `sum`/`avg`/`count`/
//! `group`/`min`/`max`/`stddev`/`stdvar` by/without over any covered node,
//! arithmetic and comparison operators between a covered node and a number,
//! and one-to-one matching between two covered nodes (`on`/`ignoring`, no
//! `group_*`); matching that could be ambiguous at some step is left to the
//! step evaluator, which owns that error. "Plain" means no `@` and no `anchored`/`smoothed` modifier. Anything else
//! is evaluated step by step as before; a covered subtree under an uncovered
//! node is precomputed and handed out one step at a time through the
//! evaluator's cache, so results are the same as the step evaluator's to the
//! bit (same operand order in every fold). Subqueries are never entered:
//! their inner steps are not the query's steps.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, BinaryExpr, Call, Expr, LabelModifier, VectorSelector};

use super::QueryError;
use super::aggregate::{FoldKind, LabelGroups, RunningAggregate, kahan_sum, mean, variance};
use super::binary::{Cardinality, Matching, Operator, apply, result_labels};
use super::durations::selector_modifier;
use super::eval::{Evaluator, is_name_like, offset_ms};
use super::functions::rate::{WindowShape, instant_value, window_increase};
use super::value::Element;
use crate::model::{Label, Labels, METRIC_NAME, Sample, is_stale_nan};
use crate::storage::Series;

/// One output series of a covered node: its value at every step.
pub(crate) struct ColumnSeries {
    pub labels: Labels,
    pub drop_name: bool,
    /// Per step: the element's timestamp and value, `None` where absent.
    pub points: Vec<Option<(i64, f64)>>,
    /// Per step: the position of the element in the step's vector (only
    /// aggregations, whose group order is that of first appearance).
    pub rank: Option<Vec<u32>>,
    /// Values computed at the step (timestamp = step time); false for
    /// selected samples, which keep their own timestamp.
    pub computed: bool,
}

/// A covered node's value at every step of the range query.
pub(crate) struct Columns {
    pub series: Vec<ColumnSeries>,
    /// Info annotations with the step at which the step evaluator would
    /// first raise them, in its order, so they can be raised at that step.
    pub infos: Vec<(usize, String)>,
}

impl Columns {
    /// The instant vector at step `step_index`, in the step evaluator's order.
    pub fn vector_at(&self, step_index: usize, ts: i64) -> Vec<Element> {
        let mut ranked: Vec<(u32, Element)> = Vec::new();
        let mut out = Vec::new();
        for one in &self.series {
            let Some(Some((t, v))) = one.points.get(step_index) else {
                continue;
            };
            let element = Element {
                labels: one.labels.clone(),
                t: if one.computed { ts } else { *t },
                v: *v,
                drop_name: one.drop_name,
            };
            match &one.rank {
                Some(ranks) => ranked.push((ranks[step_index], element)),
                None => out.push(element),
            }
        }
        if !ranked.is_empty() {
            ranked.sort_by_key(|(rank, _)| *rank);
            out.extend(ranked.into_iter().map(|(_, element)| element));
        }
        out
    }
}

/// Strips parentheses.
fn unwrap_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(paren) => unwrap_parens(&paren.expr),
        other => other,
    }
}

fn is_plain(selector: &VectorSelector) -> bool {
    selector.at.is_none() && selector_modifier(selector).is_none()
}

/// Whether `expr` is a node this module evaluates for all steps at once.
pub(crate) fn is_covered(expr: &Expr) -> bool {
    match expr {
        Expr::Paren(paren) => is_covered(&paren.expr),
        Expr::VectorSelector(selector) => is_plain(selector),
        Expr::Call(call) => rate_argument(call).is_some(),
        Expr::Binary(binary) => {
            let Ok(operator) = Operator::parse(&binary.op.to_string()) else {
                return false;
            };
            if operator.is_set() {
                return false;
            }
            match (number_literal(&binary.lhs), number_literal(&binary.rhs)) {
                (Some(_), None) => is_covered(&binary.rhs),
                (None, Some(_)) => is_covered(&binary.lhs),
                (None, None) => {
                    let matching = Matching::from_expr(binary);
                    matching.cardinality == Cardinality::OneToOne
                        && matching.fill_left.is_none()
                        && matching.fill_right.is_none()
                        && matching.include.is_empty()
                        && is_covered(&binary.lhs)
                        && is_covered(&binary.rhs)
                }
                (Some(_), Some(_)) => false,
            }
        }
        Expr::Aggregate(aggregate) => {
            aggregate.param.is_none()
                && matches!(
                    aggregate.op.to_string().as_str(),
                    "sum" | "avg" | "count" | "group" | "min" | "max" | "stddev" | "stdvar"
                )
                && is_covered(&aggregate.expr)
        }
        _ => false,
    }
}

/// The plain range selector of a covered rate-family call.
fn rate_argument(call: &Call) -> Option<(&VectorSelector, i64)> {
    if !matches!(
        call.func.name,
        "rate" | "increase" | "delta" | "irate" | "idelta"
    ) || call.args.args.len() != 1
    {
        return None;
    }
    match unwrap_parens(&call.args.args[0]) {
        Expr::MatrixSelector(matrix) if is_plain(&matrix.vs) => {
            Some((&matrix.vs, matrix.range.as_millis() as i64))
        }
        _ => None,
    }
}

/// Step timestamps of the query.
fn step_times(evaluator: &Evaluator<'_>) -> Vec<i64> {
    let settings = &evaluator.settings;
    let mut times = Vec::new();
    let mut ts = settings.start;
    while ts <= settings.end {
        times.push(ts);
        ts = match ts.checked_add(settings.step) {
            Some(next) => next,
            None => break,
        };
    }
    times
}

/// A number literal, possibly in parentheses.
fn number_literal(expr: &Expr) -> Option<f64> {
    match unwrap_parens(expr) {
        Expr::NumberLiteral(number) => Some(number.val),
        _ => None,
    }
}

/// Evaluates a covered node for every step. `None` when the data makes the
/// node one this module leaves to the step evaluator (vector matching that
/// could be ambiguous at some step, where the step evaluator owns the error).
pub(crate) fn columns(
    evaluator: &mut Evaluator<'_>,
    expr: &Expr,
) -> Result<Option<Columns>, QueryError> {
    match expr {
        Expr::Paren(paren) => columns(evaluator, &paren.expr),
        Expr::VectorSelector(selector) => selector_columns(evaluator, selector).map(Some),
        Expr::Call(call) => match rate_argument(call) {
            Some((selector, range)) => {
                rate_columns(evaluator, call.func.name, selector, range).map(Some)
            }
            None => Err(QueryError::Execution("internal: uncovered call".into())),
        },
        Expr::Aggregate(aggregate) => aggregate_columns(evaluator, aggregate),
        Expr::Binary(binary) => binary_columns(evaluator, binary),
        _ => Err(QueryError::Execution("internal: uncovered node".into())),
    }
}

/// Infos of two operands in the order the step evaluator raises them: by
/// step, the left operand's first.
fn merge_infos(left: Vec<(usize, String)>, right: Vec<(usize, String)>) -> Vec<(usize, String)> {
    let mut infos = left;
    infos.extend(right);
    infos.sort_by_key(|(step_index, _)| *step_index);
    infos
}

fn binary_columns(
    evaluator: &mut Evaluator<'_>,
    binary: &BinaryExpr,
) -> Result<Option<Columns>, QueryError> {
    let operator = Operator::parse(&binary.op.to_string())?;
    let return_bool = binary.return_bool();
    let steps = step_times(evaluator);
    if let Some(scalar) = number_literal(&binary.lhs) {
        return Ok(columns(evaluator, &binary.rhs)?.map(|input| {
            vector_scalar_columns(operator, input, scalar, true, return_bool, &steps)
        }));
    }
    if let Some(scalar) = number_literal(&binary.rhs) {
        return Ok(columns(evaluator, &binary.lhs)?.map(|input| {
            vector_scalar_columns(operator, input, scalar, false, return_bool, &steps)
        }));
    }
    let Some(left) = columns(evaluator, &binary.lhs)? else {
        return Ok(None);
    };
    let Some(right) = columns(evaluator, &binary.rhs)? else {
        return Ok(None);
    };
    let matching = Matching::from_expr(binary);
    let mut right_by_group: HashMap<Labels, usize> = HashMap::with_capacity(right.series.len());
    for (index, one) in right.series.iter().enumerate() {
        if right_by_group
            .insert(matching.group_labels(&one.labels), index)
            .is_some()
        {
            return Ok(None);
        }
    }
    let mut matched_left: Vec<Option<usize>> = Vec::with_capacity(left.series.len());
    let mut left_groups: std::collections::HashSet<Labels> = std::collections::HashSet::new();
    for one in &left.series {
        let group = matching.group_labels(&one.labels);
        let found = right_by_group.get(&group).copied();
        if found.is_some() && !left_groups.insert(group) {
            return Ok(None);
        }
        matched_left.push(found);
    }
    let drops_name = !operator.is_comparison() || return_bool;
    let mut out = Vec::new();
    for (left_series, right_index) in left.series.iter().zip(&matched_left) {
        let Some(right_index) = right_index else {
            continue;
        };
        let right_series = &right.series[*right_index];
        let mut any = false;
        let points: Vec<Option<(i64, f64)>> = steps
            .iter()
            .enumerate()
            .map(|(step_index, ts)| {
                let (Some((_, left_value)), Some((_, right_value))) = (
                    left_series.points[step_index],
                    right_series.points[step_index],
                ) else {
                    return None;
                };
                let (mut value, keep) = apply(operator, left_value, right_value);
                if operator.is_comparison() && return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                } else if !keep {
                    return None;
                }
                any = true;
                Some((*ts, value))
            })
            .collect();
        if any {
            out.push(ColumnSeries {
                labels: result_labels(&left_series.labels, Some(&right_series.labels), &matching),
                drop_name: left_series.drop_name || drops_name,
                points,
                rank: left_series.rank.clone(),
                computed: true,
            });
        }
    }
    Ok(Some(Columns {
        series: out,
        infos: merge_infos(left.infos, right.infos),
    }))
}

fn vector_scalar_columns(
    operator: Operator,
    input: Columns,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
    steps: &[i64],
) -> Columns {
    let mut out = Vec::with_capacity(input.series.len());
    for one in input.series {
        let mut any = false;
        let mut drop_name = true;
        let points: Vec<Option<(i64, f64)>> = one
            .points
            .iter()
            .zip(steps)
            .map(|(point, ts)| {
                let (_, element_value) = (*point)?;
                let (left, right) = if scalar_on_left {
                    (scalar, element_value)
                } else {
                    (element_value, scalar)
                };
                let (value, keep) = apply(operator, left, right);
                let value = if operator.is_comparison() {
                    if return_bool {
                        if keep { 1.0 } else { 0.0 }
                    } else if keep {
                        element_value
                    } else {
                        return None;
                    }
                } else {
                    value
                };
                any = true;
                Some((*ts, value))
            })
            .collect();
        if operator.is_comparison() && !return_bool {
            drop_name = one.drop_name;
        }
        if any {
            out.push(ColumnSeries {
                labels: one.labels,
                drop_name,
                points,
                rank: one.rank,
                computed: true,
            });
        }
    }
    Columns {
        series: out,
        infos: input.infos,
    }
}

fn selector_columns(
    evaluator: &mut Evaluator<'_>,
    selector: &VectorSelector,
) -> Result<Columns, QueryError> {
    let series = evaluator.select(selector)?;
    let times = step_times(evaluator);
    let offset = offset_ms(&selector.offset);
    let lookback = evaluator.settings.lookback;
    let mut out = Vec::with_capacity(series.len());
    for one in series.iter() {
        evaluator.check_deadline()?;
        let samples = &one.samples;
        let mut points = Vec::with_capacity(times.len());
        let mut after = 0usize;
        let mut any = false;
        for ts in &times {
            let reference = ts - offset;
            while after < samples.len() && samples[after].t <= reference {
                after += 1;
            }
            let point = if after == 0 {
                None
            } else {
                let sample = samples[after - 1];
                if sample.t <= reference - lookback || is_stale_nan(sample.v) {
                    None
                } else {
                    Some((sample.t, sample.v))
                }
            };
            any |= point.is_some();
            points.push(point);
        }
        if any {
            out.push(ColumnSeries {
                labels: one.labels.clone(),
                drop_name: false,
                points,
                rank: None,
                computed: false,
            });
        }
    }
    Ok(Columns {
        series: out,
        infos: Vec::new(),
    })
}

fn rate_columns(
    evaluator: &mut Evaluator<'_>,
    name: &str,
    selector: &VectorSelector,
    range: i64,
) -> Result<Columns, QueryError> {
    let mut out = Vec::new();
    let times = step_times(evaluator);
    let infos = for_each_rate_series(
        evaluator,
        name,
        selector,
        range,
        |labels, values, present| {
            out.push(ColumnSeries {
                labels: labels.clone(),
                drop_name: true,
                points: values
                    .iter()
                    .zip(present)
                    .zip(&times)
                    .map(|((value, present), ts)| present.then_some((*ts, *value)))
                    .collect(),
                rank: None,
                computed: true,
            });
        },
    )?;
    Ok(Columns { series: out, infos })
}

#[derive(Clone, Copy)]
enum RateFunction {
    Rate,
    Increase,
    Delta,
    Irate,
    Idelta,
}

/// Below this many selected series a rate-family call is computed on the
/// calling thread only: handing half to a pool worker costs a wake-up.
const PARALLEL_RATE_MIN_SERIES: usize = 256;

/// Series computed per block when two threads share the work: bounds the
/// memory held for the computed columns before they are handed out in order.
const PARALLEL_RATE_BLOCK_SERIES: usize = 2048;

/// Receives a series' labels and its rate-family values and presence per step.
type RateSink<'a> = dyn FnMut(&Labels, &[f64], &[bool]) + 'a;

/// Per-thread scratch buffers of the per-series rate computation. One
/// scratch serves one rate-family call (one range, one function).
#[derive(Default)]
struct RateScratch {
    resets_before: Vec<u32>,
    live_buffer: Vec<Sample>,
    shapes: ShapeCache,
}

/// Window shapes by layout: the offsets of a window's first and last sample
/// from its edges and its sample count. A shape costs a chain of divisions,
/// and the layout changes from step to step (scrapes land a few ms off the
/// interval), but targets scraped alike repeat the same few layouts across
/// series and steps. A shape depends on nothing else within one call, so a
/// cached one is bit-identical to a computed one. Direct-mapped: a
/// collision only costs a recomputation.
struct ShapeCache {
    slots: Vec<Option<(WindowLayout, WindowShape)>>,
}

/// (first sample − window start, window end − last sample, sample count).
type WindowLayout = (i64, i64, usize);

const SHAPE_CACHE_SLOTS: usize = 512;

impl Default for ShapeCache {
    fn default() -> ShapeCache {
        ShapeCache {
            slots: vec![None; SHAPE_CACHE_SLOTS],
        }
    }
}

impl ShapeCache {
    #[inline]
    fn get_or_compute(
        &mut self,
        layout: WindowLayout,
        compute: impl FnOnce() -> WindowShape,
    ) -> WindowShape {
        let (to_start, to_end, count) = layout;
        let mixed = (to_start as u64)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add((to_end as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
            .wrapping_add(count as u64);
        let slot = &mut self.slots[(mixed >> 55) as usize % SHAPE_CACHE_SLOTS];
        match slot {
            Some((cached_layout, shape)) if *cached_layout == layout => *shape,
            _ => {
                let shape = compute();
                *slot = Some((layout, shape));
                shape
            }
        }
    }
}

/// One series' rate-family values at every step (the value's timestamp is
/// the step's). Values and presence are kept apart, 9 bytes a step instead
/// of 24 for an `Option<(i64, f64)>`: a block of computed series then stays
/// in the core's cache until it is folded.
struct SeriesRatePoints {
    values: Vec<f64>,
    /// Per step: whether the function has a value there.
    present: Vec<bool>,
    any: bool,
    /// The first step whose window holds a sample.
    first_non_empty: Option<usize>,
}

/// Computes a rate-family function of one series at every step into
/// `computed` (cleared first). Pure: reads nothing shared but its arguments,
/// so halves of the selected series can be computed on different threads.
fn series_rate_points(
    one: &Series,
    times: &[i64],
    offset: i64,
    range: i64,
    function: RateFunction,
    scratch: &mut RateScratch,
    computed: &mut SeriesRatePoints,
) {
    let RateScratch {
        resets_before,
        live_buffer,
        shapes,
    } = scratch;
    let live: &[Sample] = if one.samples.iter().any(|sample| is_stale_nan(sample.v)) {
        live_buffer.clear();
        live_buffer.extend(one.samples.iter().filter(|sample| !is_stale_nan(sample.v)));
        live_buffer
    } else {
        &one.samples
    };
    // resets_before[k]: counter resets between consecutive samples
    // below index k, so a window's reset scan can be skipped when none.
    resets_before.clear();
    resets_before.push(0);
    let mut resets = 0u32;
    for (index, sample) in live.iter().enumerate() {
        if index > 0 && sample.v < live[index - 1].v {
            resets += 1;
        }
        resets_before.push(resets);
    }
    let (is_counter, is_rate) = match function {
        RateFunction::Rate => (true, true),
        RateFunction::Increase => (true, false),
        _ => (false, false),
    };
    let extrapolates = matches!(
        function,
        RateFunction::Rate | RateFunction::Increase | RateFunction::Delta
    );
    let SeriesRatePoints {
        values,
        present,
        any,
        first_non_empty,
    } = computed;
    values.clear();
    present.clear();
    *any = false;
    *first_non_empty = None;
    let (mut first, mut last) = (0usize, 0usize);
    for (step_index, ts) in times.iter().enumerate() {
        let window_end = ts - offset;
        let window_start = window_end - range;
        while first < live.len() && live[first].t <= window_start {
            first += 1;
        }
        while last < live.len() && live[last].t <= window_end {
            last += 1;
        }
        if first >= last {
            values.push(0.0);
            present.push(false);
            continue;
        }
        if first_non_empty.is_none() {
            *first_non_empty = Some(step_index);
        }
        let window = &live[first..last];
        let value = if extrapolates {
            if window.len() < 2 {
                None
            } else {
                let (first_sample, last_sample) = (window[0], window[window.len() - 1]);
                // Resets at pairs (j - 1, j) with first < j < last.
                let may_have_resets = is_counter && resets_before[last] != resets_before[first + 1];
                let increase = window_increase(window, may_have_resets);
                let layout = (
                    first_sample.t - window_start,
                    window_end - last_sample.t,
                    window.len(),
                );
                let shape = shapes.get_or_compute(layout, || {
                    WindowShape::new(
                        first_sample.t,
                        last_sample.t,
                        window.len(),
                        window_end,
                        range,
                        is_rate,
                    )
                });
                Some(shape.extrapolate(increase, first_sample.v, range, is_counter, is_rate))
            }
        } else {
            instant_value(window, matches!(function, RateFunction::Irate))
        };
        match value {
            Some(value) => {
                values.push(value);
                present.push(true);
                *any = true;
            }
            None => {
                values.push(0.0);
                present.push(false);
            }
        }
    }
}

impl SeriesRatePoints {
    fn with_steps(steps: usize) -> SeriesRatePoints {
        SeriesRatePoints {
            values: Vec::with_capacity(steps),
            present: Vec::with_capacity(steps),
            any: false,
            first_non_empty: None,
        }
    }
}

/// Computes every series of `block` into `out`, reusing `out`'s buffers.
fn block_rate_points(
    block: &[Series],
    times: &[i64],
    offset: i64,
    range: i64,
    function: RateFunction,
    scratch: &mut RateScratch,
    out: &mut Vec<SeriesRatePoints>,
) {
    out.resize_with(block.len(), || SeriesRatePoints::with_steps(times.len()));
    for (one, computed) in block.iter().zip(out.iter_mut()) {
        series_rate_points(one, times, offset, range, function, scratch, computed);
    }
}

/// Computes a rate-family call for every step and hands each series with at
/// least one value to `sink` (its labels and its per-step points), in series
/// order. Above a size threshold the series of each block are computed by
/// two threads, one half each; `sink` still runs on the calling thread in
/// series order, so any fold it does sees the same operands in the same
/// order as the single-thread path and its result is bit-identical.
/// Returns the info annotations in the step evaluator's order.
fn for_each_rate_series(
    evaluator: &mut Evaluator<'_>,
    name: &str,
    selector: &VectorSelector,
    range: i64,
    mut sink: impl FnMut(&Labels, &[f64], &[bool]),
) -> Result<Vec<(usize, String)>, QueryError> {
    let series = evaluator.select(selector)?;
    let times = step_times(evaluator);
    let offset = offset_ms(&selector.offset);
    let checks_counter = matches!(name, "rate" | "increase");
    // Decided once, not by string comparison at every step.
    let function = match name {
        "rate" => RateFunction::Rate,
        "increase" => RateFunction::Increase,
        "delta" => RateFunction::Delta,
        "irate" => RateFunction::Irate,
        _ => RateFunction::Idelta,
    };
    // (first step with a non-empty window, series index, metric name)
    let mut not_counter: Vec<(usize, usize, String)> = Vec::new();
    let mut note = |series_index: usize,
                    one: &Series,
                    computed: &SeriesRatePoints,
                    sink: &mut RateSink<'_>| {
        if checks_counter
            && let Some(step_index) = computed.first_non_empty
            && let Some(metric) = one.labels.get(METRIC_NAME)
            && !["_total", "_sum", "_count", "_bucket"]
                .iter()
                .any(|suffix| metric.ends_with(suffix))
        {
            not_counter.push((step_index, series_index, metric.to_string()));
        }
        if computed.any {
            sink(&one.labels, &computed.values, &computed.present);
        }
    };
    let use_two_threads =
        series.len() >= PARALLEL_RATE_MIN_SERIES && rayon::current_num_threads() > 1;
    if use_two_threads {
        let mut first_scratch = RateScratch::default();
        let mut second_scratch = RateScratch::default();
        let mut first_out: Vec<SeriesRatePoints> = Vec::new();
        let mut second_out: Vec<SeriesRatePoints> = Vec::new();
        let mut block_start = 0usize;
        for block in series.chunks(PARALLEL_RATE_BLOCK_SERIES) {
            evaluator.check_deadline()?;
            let (first_half, second_half) = block.split_at(block.len() / 2);
            let times = &times;
            rayon::join(
                || {
                    block_rate_points(
                        first_half,
                        times,
                        offset,
                        range,
                        function,
                        &mut first_scratch,
                        &mut first_out,
                    )
                },
                || {
                    block_rate_points(
                        second_half,
                        times,
                        offset,
                        range,
                        function,
                        &mut second_scratch,
                        &mut second_out,
                    )
                },
            );
            for (position, (one, computed)) in block
                .iter()
                .zip(first_out.iter().chain(second_out.iter()))
                .enumerate()
            {
                note(block_start + position, one, computed, &mut sink);
            }
            block_start += block.len();
        }
    } else {
        let mut scratch = RateScratch::default();
        let mut computed = SeriesRatePoints::with_steps(times.len());
        for (series_index, one) in series.iter().enumerate() {
            evaluator.check_deadline()?;
            series_rate_points(
                one,
                &times,
                offset,
                range,
                function,
                &mut scratch,
                &mut computed,
            );
            note(series_index, one, &computed, &mut sink);
        }
    }
    // The step evaluator notes metrics in the order it meets them: by step,
    // then by series.
    not_counter.sort();
    let mut infos = Vec::with_capacity(not_counter.len());
    for (step_index, _, metric) in not_counter {
        let position = evaluator.argument_position(name, 0);
        infos.push((
            step_index,
            format!(
                "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?} {position}"
            ),
        ));
    }
    Ok(infos)
}

/// Whether a label is part of the group key of a `by`/`without` aggregation.
fn kept_in_group(label: &Label, without: bool, names: &[String]) -> bool {
    if without {
        !is_name_like(&label.name) && !names.contains(&label.name)
    } else {
        names.contains(&label.name)
    }
}

fn aggregate_columns(
    evaluator: &mut Evaluator<'_>,
    aggregate: &AggregateExpr,
) -> Result<Option<Columns>, QueryError> {
    let operator = aggregate.op.to_string();
    let (without, names): (bool, &[String]) = match &aggregate.modifier {
        Some(LabelModifier::Include(labels)) => (false, &labels.labels),
        Some(LabelModifier::Exclude(labels)) => (true, &labels.labels),
        None => (false, &[]),
    };
    if let Some(kind) = FoldKind::from_operator(&operator)
        && let Expr::Call(call) = unwrap_parens(&aggregate.expr)
        && let Some((selector, range)) = rate_argument(call)
    {
        return fused_rate_aggregate(
            evaluator,
            call.func.name,
            selector,
            range,
            kind,
            without,
            names,
        )
        .map(Some);
    }
    let Some(input) = columns(evaluator, &aggregate.expr)? else {
        return Ok(None);
    };
    let steps = step_times(evaluator).len();
    let mut groups = LabelGroups::default();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (series_index, one) in input.series.iter().enumerate() {
        let (group, created) =
            groups.group_of(&one.labels, |label| kept_in_group(label, without, names));
        if created {
            members.push(Vec::new());
        }
        members[group].push(series_index);
    }
    let group_keys = groups.into_keys();
    // The input's step order: a series' position in the step vector.
    let input_rank = |series_index: usize, step_index: usize| -> u32 {
        match &input.series[series_index].rank {
            Some(ranks) => ranks[step_index],
            None => series_index as u32,
        }
    };
    let input_ranked = input.series.iter().any(|one| one.rank.is_some());
    if !input_ranked && let Some(kind) = FoldKind::from_operator(&operator) {
        return Ok(Some(fold_columns_in_series_order(
            evaluator, input, kind, group_keys, &members, steps,
        )?));
    }
    let mut out = Vec::with_capacity(group_keys.len());
    let mut values: Vec<f64> = Vec::new();
    let mut ordered_members: Vec<usize> = Vec::new();
    for (group, key) in group_keys.into_iter().enumerate() {
        evaluator.check_deadline()?;
        let mut points = Vec::with_capacity(steps);
        let mut ranks = Vec::with_capacity(steps);
        let mut any = false;
        for step_index in 0..steps {
            ordered_members.clear();
            ordered_members.extend(
                members[group]
                    .iter()
                    .copied()
                    .filter(|member| input.series[*member].points[step_index].is_some()),
            );
            if input_ranked {
                ordered_members.sort_by_key(|member| input_rank(*member, step_index));
            }
            let Some(first_member) = ordered_members.first() else {
                points.push(None);
                ranks.push(u32::MAX);
                continue;
            };
            ranks.push(input_rank(*first_member, step_index));
            values.clear();
            values.extend(
                ordered_members
                    .iter()
                    .filter_map(|member| input.series[*member].points[step_index])
                    .map(|(_, v)| v),
            );
            let value = match operator.as_str() {
                "sum" => kahan_sum(&values),
                "avg" => mean(&values),
                "count" => values.len() as f64,
                "group" => 1.0,
                "min" => values.iter().copied().fold(f64::NAN, |acc, v| {
                    if acc.is_nan() || v < acc { v } else { acc }
                }),
                "max" => values.iter().copied().fold(f64::NAN, |acc, v| {
                    if acc.is_nan() || v > acc { v } else { acc }
                }),
                "stddev" => variance(&values).sqrt(),
                _ => variance(&values),
            };
            any = true;
            points.push(Some((0, value)));
        }
        if any {
            let drop_name = members[group]
                .iter()
                .any(|member| input.series[*member].drop_name);
            out.push(ColumnSeries {
                labels: key,
                drop_name,
                points,
                rank: Some(ranks),
                computed: true,
            });
        }
    }
    Ok(Some(Columns {
        series: out,
        infos: input.infos,
    }))
}

/// Aggregates an input whose step order is its series order (no ranks):
/// walks each input series once across all steps and folds its values into
/// its group's per-step accumulators. Members reach an accumulator in series
/// order, the order the step evaluator folds them in, so the bits agree;
/// reading every series' points in one pass is what makes this cheap (the
/// per-step gather touched one cache line per member and step).
fn fold_columns_in_series_order(
    evaluator: &mut Evaluator<'_>,
    input: Columns,
    kind: FoldKind,
    group_keys: Vec<Labels>,
    members: &[Vec<usize>],
    steps: usize,
) -> Result<Columns, QueryError> {
    let mut group_of_series = vec![0usize; input.series.len()];
    for (group, group_members) in members.iter().enumerate() {
        for member in group_members {
            group_of_series[*member] = group;
        }
    }
    let mut accumulators = vec![RunningAggregate::default(); group_keys.len() * steps];
    // Per group and step: the first member present, whose position in the
    // input gives the group's position in the step's output.
    let mut first_member = vec![u32::MAX; group_keys.len() * steps];
    for (series_index, one) in input.series.iter().enumerate() {
        if series_index % 1024 == 0 {
            evaluator.check_deadline()?;
        }
        let base = group_of_series[series_index] * steps;
        let group_accumulators = &mut accumulators[base..base + steps];
        let group_first = &mut first_member[base..base + steps];
        for ((point, accumulator), first) in one
            .points
            .iter()
            .zip(group_accumulators.iter_mut())
            .zip(group_first.iter_mut())
        {
            if let Some((_, value)) = point {
                accumulator.add(kind, *value);
                if *first == u32::MAX {
                    *first = series_index as u32;
                }
            }
        }
    }
    let mut out = Vec::with_capacity(group_keys.len());
    for (group, key) in group_keys.into_iter().enumerate() {
        let base = group * steps;
        let group_accumulators = &accumulators[base..base + steps];
        if group_accumulators
            .iter()
            .all(|accumulator| accumulator.count() == 0)
        {
            continue;
        }
        let points = group_accumulators
            .iter()
            .map(|accumulator| (accumulator.count() > 0).then(|| (0, accumulator.finish(kind))))
            .collect();
        let drop_name = members[group]
            .iter()
            .any(|member| input.series[*member].drop_name);
        out.push(ColumnSeries {
            labels: key,
            drop_name,
            points,
            rank: Some(first_member[base..base + steps].to_vec()),
            computed: true,
        });
    }
    Ok(Columns {
        series: out,
        infos: input.infos,
    })
}

/// An aggregation straight over a rate-family call: each series' rates are
/// folded into its group's per-step accumulators as soon as they are
/// computed, so no per-series column is kept. Same fold order (series order)
/// and same group order (first appearance) as the unfused path.
fn fused_rate_aggregate(
    evaluator: &mut Evaluator<'_>,
    function: &str,
    selector: &VectorSelector,
    range: i64,
    kind: FoldKind,
    without: bool,
    names: &[String],
) -> Result<Columns, QueryError> {
    let steps = step_times(evaluator).len();
    let mut groups = LabelGroups::default();
    let mut accumulators: Vec<RunningAggregate> = Vec::new();
    let mut first_member: Vec<u32> = Vec::new();
    let mut series_index = 0u32;
    let infos = for_each_rate_series(
        evaluator,
        function,
        selector,
        range,
        |labels, values, present| {
            let (group, created) =
                groups.group_of(labels, |label| kept_in_group(label, without, names));
            if created {
                accumulators.resize(accumulators.len() + steps, RunningAggregate::default());
                first_member.resize(first_member.len() + steps, u32::MAX);
            }
            let base = group * steps;
            for (((value, present), accumulator), first) in values
                .iter()
                .zip(present)
                .zip(accumulators[base..base + steps].iter_mut())
                .zip(first_member[base..base + steps].iter_mut())
            {
                if *present {
                    accumulator.add(kind, *value);
                    if *first == u32::MAX {
                        *first = series_index;
                    }
                }
            }
            series_index += 1;
        },
    )?;
    let group_keys = groups.into_keys();
    let mut out = Vec::with_capacity(group_keys.len());
    for (group, key) in group_keys.into_iter().enumerate() {
        let base = group * steps;
        let points = accumulators[base..base + steps]
            .iter()
            .map(|accumulator| (accumulator.count() > 0).then(|| (0, accumulator.finish(kind))))
            .collect();
        out.push(ColumnSeries {
            labels: key,
            drop_name: true,
            points,
            rank: Some(first_member[base..base + steps].to_vec()),
            computed: true,
        });
    }
    Ok(Columns { series: out, infos })
}
