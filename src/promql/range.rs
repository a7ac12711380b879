//! The per-series range evaluator: for a range query, selected subtrees are
//! evaluated once for all steps instead of once per step. A selector walks
//! each series with one moving pointer (lookback) or two (a left-open window
//! sliding over the decoded samples), so no window is copied and no label set
//! is cloned or hashed per step; an aggregation computes its group of every
//! series once and then folds member values step by step.
//!
//! What it covers: plain instant selectors, `rate`/`increase`/`delta`/
//! `irate`/`idelta` over a plain range selector, and `sum`/`avg`/`count`/
//! `group`/`min`/`max`/`stddev`/`stdvar` by/without over any covered node.
//! "Plain" means no `@` and no `anchored`/`smoothed` modifier. Anything else
//! is evaluated step by step as before; a covered subtree under an uncovered
//! node is precomputed and handed out one step at a time through the
//! evaluator's cache, so results are the same as the step evaluator's to the
//! bit (same operand order in every fold). Subqueries are never entered:
//! their inner steps are not the query's steps.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Call, Expr, LabelModifier, VectorSelector};

use super::QueryError;
use super::aggregate::{kahan_sum, mean, variance};
use super::durations::selector_modifier;
use super::eval::{Evaluator, is_name_like, offset_ms};
use super::functions::rate::{extrapolated_rate, instant_value};
use super::value::Element;
use crate::model::{Label, Labels, METRIC_NAME, Sample, is_stale_nan};

/// One output series of a covered node: its value at every step.
pub(crate) struct ColumnSeries {
    pub labels: Labels,
    pub drop_name: bool,
    /// Per step: the element's timestamp and value, `None` where absent.
    pub points: Vec<Option<(i64, f64)>>,
    /// Per step: the position of the element in the step's vector (only
    /// aggregations, whose group order is that of first appearance).
    pub rank: Option<Vec<u32>>,
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
                t: if one.rank.is_some() { ts } else { *t },
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

/// Evaluates a covered node for every step.
pub(crate) fn columns(evaluator: &mut Evaluator<'_>, expr: &Expr) -> Result<Columns, QueryError> {
    match expr {
        Expr::Paren(paren) => columns(evaluator, &paren.expr),
        Expr::VectorSelector(selector) => selector_columns(evaluator, selector),
        Expr::Call(call) => match rate_argument(call) {
            Some((selector, range)) => rate_columns(evaluator, call.func.name, selector, range),
            None => Err(QueryError::Execution("internal: uncovered call".into())),
        },
        Expr::Aggregate(aggregate) => aggregate_columns(evaluator, aggregate),
        _ => Err(QueryError::Execution("internal: uncovered node".into())),
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
    let series = evaluator.select(selector)?;
    let times = step_times(evaluator);
    let offset = offset_ms(&selector.offset);
    let checks_counter = matches!(name, "rate" | "increase");
    // (first step with a non-empty window, series index, metric name)
    let mut not_counter: Vec<(usize, usize, String)> = Vec::new();
    let mut out = Vec::with_capacity(series.len());
    let mut live_buffer: Vec<Sample> = Vec::new();
    for (series_index, one) in series.iter().enumerate() {
        evaluator.check_deadline()?;
        let live: &[Sample] = if one.samples.iter().any(|sample| is_stale_nan(sample.v)) {
            live_buffer.clear();
            live_buffer.extend(one.samples.iter().filter(|sample| !is_stale_nan(sample.v)));
            &live_buffer
        } else {
            &one.samples
        };
        let mut points = Vec::with_capacity(times.len());
        let (mut first, mut last) = (0usize, 0usize);
        let mut first_non_empty: Option<usize> = None;
        let mut any = false;
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
                points.push(None);
                continue;
            }
            if first_non_empty.is_none() {
                first_non_empty = Some(step_index);
            }
            let window = &live[first..last];
            let value = match name {
                "rate" => extrapolated_rate(window, window_end, range, true, true),
                "increase" => extrapolated_rate(window, window_end, range, true, false),
                "delta" => extrapolated_rate(window, window_end, range, false, false),
                "irate" => instant_value(window, true),
                _ => instant_value(window, false),
            };
            let point = value.map(|v| (*ts, v));
            any |= point.is_some();
            points.push(point);
        }
        if checks_counter
            && let Some(step_index) = first_non_empty
            && let Some(metric) = one.labels.get(METRIC_NAME)
            && !["_total", "_sum", "_count", "_bucket"]
                .iter()
                .any(|suffix| metric.ends_with(suffix))
        {
            not_counter.push((step_index, series_index, metric.to_string()));
        }
        if any {
            out.push(ColumnSeries {
                labels: one.labels.clone(),
                drop_name: true,
                points,
                rank: None,
            });
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
    Ok(Columns { series: out, infos })
}

fn group_labels(labels: &Labels, without: bool, names: &[String]) -> Labels {
    let kept: Vec<Label> = labels
        .iter()
        .filter(|label| {
            if without {
                !is_name_like(&label.name) && !names.contains(&label.name)
            } else {
                names.contains(&label.name)
            }
        })
        .cloned()
        .collect();
    Labels::new(kept)
}

fn aggregate_columns(
    evaluator: &mut Evaluator<'_>,
    aggregate: &AggregateExpr,
) -> Result<Columns, QueryError> {
    let operator = aggregate.op.to_string();
    let (without, names): (bool, &[String]) = match &aggregate.modifier {
        Some(LabelModifier::Include(labels)) => (false, &labels.labels),
        Some(LabelModifier::Exclude(labels)) => (true, &labels.labels),
        None => (false, &[]),
    };
    let input = columns(evaluator, &aggregate.expr)?;
    let steps = step_times(evaluator).len();
    let mut index_by_group: HashMap<Labels, usize> = HashMap::new();
    let mut group_keys: Vec<Labels> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (series_index, one) in input.series.iter().enumerate() {
        let key = group_labels(&one.labels, without, names);
        let group = match index_by_group.get(&key) {
            Some(group) => *group,
            None => {
                index_by_group.insert(key.clone(), group_keys.len());
                group_keys.push(key);
                members.push(Vec::new());
                group_keys.len() - 1
            }
        };
        members[group].push(series_index);
    }
    // The input's step order: a series' position in the step vector.
    let input_rank = |series_index: usize, step_index: usize| -> u32 {
        match &input.series[series_index].rank {
            Some(ranks) => ranks[step_index],
            None => series_index as u32,
        }
    };
    let input_ranked = input.series.iter().any(|one| one.rank.is_some());
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
                    .filter(|member| matches!(input.series[*member].points[step_index], Some(_))),
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
            });
        }
    }
    Ok(Columns {
        series: out,
        infos: input.infos,
    })
}
