//! `info(v, [selector])`: enriches series with the data labels of matching
//! info series (by default `target_info`), joined on the identifying labels
//! `instance` and `job`, as of the time the base series was read.

use promql_parser::label::MatchOp as ParserMatchOp;
use promql_parser::parser::{AtModifier, Call, Expr};

use super::{Evaluator, QueryError, StepValue, argument, unwrap_parens};
use crate::model::{Label, Labels, METRIC_NAME, MatchOp, Matcher, is_stale_nan};
use crate::promql::durations::MODIFIER_LABEL;
use crate::promql::eval::offset_ms;
use crate::promql::value::Element;

const IDENTIFYING_LABELS: [&str; 2] = ["instance", "job"];

fn convert(matcher: &promql_parser::label::Matcher) -> Result<Matcher, QueryError> {
    let op = match matcher.op {
        ParserMatchOp::Equal => MatchOp::Equal,
        ParserMatchOp::NotEqual => MatchOp::NotEqual,
        ParserMatchOp::Re(_) => MatchOp::Regex,
        ParserMatchOp::NotRe(_) => MatchOp::NotRegex,
    };
    Matcher::new(op, matcher.name.clone(), matcher.value.clone())
        .map_err(|error| QueryError::Execution(error.to_string()))
}

/// The time the first selector under `expr` reads its data at, following
/// `@` and `offset` of enclosing subqueries and of the selector itself.
fn reference_time(evaluator: &Evaluator<'_>, expr: &Expr, time: i64) -> i64 {
    let at_ms = |at: &Option<AtModifier>| -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(evaluator.settings.start),
            Some(AtModifier::End) => Some(evaluator.settings.end),
            Some(AtModifier::At(system_time)) => {
                Some(match system_time.duration_since(std::time::UNIX_EPOCH) {
                    Ok(after) => after.as_millis() as i64,
                    Err(before) => -(before.duration().as_millis() as i64),
                })
            }
        }
    };
    match expr {
        Expr::VectorSelector(selector) => {
            at_ms(&selector.at).unwrap_or(time) - offset_ms(&selector.offset)
        }
        Expr::MatrixSelector(matrix) => {
            at_ms(&matrix.vs.at).unwrap_or(time) - offset_ms(&matrix.vs.offset)
        }
        Expr::Subquery(subquery) => {
            let inner_time = at_ms(&subquery.at).unwrap_or(time) - offset_ms(&subquery.offset);
            reference_time(evaluator, &subquery.expr, inner_time)
        }
        Expr::Paren(paren) => reference_time(evaluator, &paren.expr, time),
        Expr::Unary(unary) => reference_time(evaluator, &unary.expr, time),
        Expr::Aggregate(aggregate) => reference_time(evaluator, &aggregate.expr, time),
        Expr::Binary(binary) => reference_time(evaluator, &binary.lhs, time),
        Expr::Call(call) => call
            .args
            .args
            .iter()
            .find(|argument| {
                !matches!(
                    unwrap_parens(argument),
                    Expr::NumberLiteral(_) | Expr::StringLiteral(_)
                )
            })
            .map_or(time, |argument| reference_time(evaluator, argument, time)),
        _ => time,
    }
}

pub(super) fn call(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let base_expr = argument(call, 0)?;
    let base = evaluator.eval_vector(base_expr, ts)?;

    let mut name_matchers: Vec<Matcher> = Vec::new();
    let mut data_matchers: Vec<Matcher> = Vec::new();
    if let Some(selector_expr) = call.args.args.get(1) {
        let Expr::VectorSelector(selector) = unwrap_parens(selector_expr) else {
            return Err(QueryError::Execution(
                "expected label selectors as the second argument to info function".into(),
            ));
        };
        if let Some(name) = &selector.name {
            name_matchers.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        for matcher in selector.matchers.matchers.iter() {
            if matcher.name == MODIFIER_LABEL {
                continue;
            }
            let converted = convert(matcher)?;
            if matcher.name == METRIC_NAME {
                name_matchers.push(converted);
            } else {
                data_matchers.push(converted);
            }
        }
    }
    if name_matchers.is_empty() {
        name_matchers.push(Matcher::equal(METRIC_NAME, "target_info"));
    }
    let has_positive_name = name_matchers
        .iter()
        .any(|matcher| matches!(matcher.op, MatchOp::Equal | MatchOp::Regex));

    let reference = reference_time(evaluator, base_expr, ts);
    let lookback = evaluator.settings.lookback;
    let mut all_matchers = name_matchers.clone();
    all_matchers.extend(data_matchers.iter().cloned());
    let candidates = evaluator.select_raw(reference - lookback, reference, &all_matchers)?;
    // Each candidate's latest live sample at the reference time.
    let live: Vec<(Labels, i64)> = candidates
        .into_iter()
        .filter(|series| {
            has_positive_name
                || series
                    .labels
                    .metric_name()
                    .is_some_and(|name| name.ends_with("_info"))
        })
        .filter_map(|series| {
            let last = series
                .samples
                .iter()
                .rev()
                .find(|sample| sample.t > reference - lookback && sample.t <= reference)?;
            if is_stale_nan(last.v) {
                return None;
            }
            Some((series.labels, last.t))
        })
        .collect();

    let data_names: Vec<&str> = data_matchers.iter().map(|m| m.name.as_str()).collect();
    let requires_match = data_matchers.iter().any(|matcher| !matcher.matches_empty());
    let mut out = Vec::with_capacity(base.len());
    for element in base {
        let base_name = element.labels.metric_name().unwrap_or("");
        if has_positive_name
            && name_matchers
                .iter()
                .all(|matcher| matcher.matches(base_name))
        {
            out.push(element);
            continue;
        }
        // Per info metric name, the series with the newest sample wins.
        let mut chosen: Vec<(&Labels, i64)> = Vec::new();
        for (labels, t) in &live {
            let joins = IDENTIFYING_LABELS.iter().all(|name| {
                labels.get(name).unwrap_or("") == element.labels.get(name).unwrap_or("")
            });
            if !joins {
                continue;
            }
            match chosen
                .iter_mut()
                .find(|(existing, _)| existing.metric_name() == labels.metric_name())
            {
                Some(existing) if existing.1 < *t => *existing = (labels, *t),
                Some(_) => {}
                None => chosen.push((labels, *t)),
            }
        }
        if chosen.is_empty() {
            if !requires_match {
                out.push(element);
            }
            continue;
        }
        let mut added: Vec<Label> = Vec::new();
        for (labels, _) in &chosen {
            for label in labels.iter() {
                if label.name == METRIC_NAME || IDENTIFYING_LABELS.contains(&label.name.as_str()) {
                    continue;
                }
                if !data_names.is_empty() && !data_names.contains(&label.name.as_str()) {
                    continue;
                }
                if element.labels.get(&label.name).is_some() {
                    continue;
                }
                match added.iter().find(|existing| existing.name == label.name) {
                    Some(existing) if existing.value != label.value => {
                        return Err(QueryError::Execution(format!(
                            "found conflicting label {:?} with values {:?} and {:?} among info series",
                            label.name, existing.value, label.value
                        )));
                    }
                    Some(_) => {}
                    None => added.push(label.clone()),
                }
            }
        }
        let mut labels = element.labels.into_vec();
        labels.extend(added);
        out.push(Element {
            labels: Labels::new(labels),
            t: ts,
            v: element.v,
            drop_name: element.drop_name,
        });
    }
    Ok(StepValue::Vector(out))
}
