//! Functions that work on labels or order: `label_replace`, `label_join`,
//! `sort`, `sort_desc`, `sort_by_label`, `sort_by_label_desc`, `absent`.

use std::cmp::Ordering;

use promql_parser::label::MatchOp as ParserMatchOp;
use promql_parser::parser::{Call, Expr};

use super::{Evaluator, QueryError, StepValue, argument, unwrap_parens};
use crate::model::{Label, Labels, METRIC_NAME};
use crate::promql::eval::check_no_duplicate_labelsets;
use crate::promql::value::Element;

/// Any non-empty UTF-8 name is valid in Prometheus 3; text that held
/// invalid UTF-8 arrives here with replacement characters.
fn is_valid_label_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(char::REPLACEMENT_CHARACTER)
}

pub(super) fn call(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let name = call.func.name;
    match name {
        "label_replace" => {
            let destination = evaluator.eval_string(argument(call, 1)?, ts)?;
            let replacement = evaluator.eval_string(argument(call, 2)?, ts)?;
            let source = evaluator.eval_string(argument(call, 3)?, ts)?;
            let pattern = evaluator.eval_string(argument(call, 4)?, ts)?;
            let regex = regex::Regex::new(&format!("^(?s:{pattern})$")).map_err(|_| {
                QueryError::Execution(format!(
                    "invalid regular expression in label_replace(): {pattern}"
                ))
            })?;
            if !is_valid_label_name(&destination) {
                return Err(QueryError::Execution(format!(
                    "invalid destination label name in label_replace(): {destination}"
                )));
            }
            let elements = evaluator.eval_vector(argument(call, 0)?, ts)?;
            let mut out = Vec::with_capacity(elements.len());
            for mut element in elements {
                let source_value = element.labels.get(&source).unwrap_or("").to_string();
                if let Some(captures) = regex.captures(&source_value) {
                    let mut expanded = String::new();
                    captures.expand(&replacement, &mut expanded);
                    element.labels = element.labels.with(&destination, &expanded);
                    if destination == METRIC_NAME {
                        element.drop_name = false;
                    }
                }
                element.t = ts;
                out.push(element);
            }
            check_no_duplicate_labelsets(&out)?;
            Ok(StepValue::Vector(out))
        }
        "label_join" => {
            let destination = evaluator.eval_string(argument(call, 1)?, ts)?;
            let separator = evaluator.eval_string(argument(call, 2)?, ts)?;
            let mut sources = Vec::new();
            for index in 3..call.args.args.len() {
                let source = evaluator.eval_string(argument(call, index)?, ts)?;
                if !is_valid_label_name(&source) {
                    return Err(QueryError::Execution(format!(
                        "invalid source label name in label_join(): {source}"
                    )));
                }
                sources.push(source);
            }
            if !is_valid_label_name(&destination) {
                return Err(QueryError::Execution(format!(
                    "invalid destination label name in label_join(): {destination}"
                )));
            }
            let elements = evaluator.eval_vector(argument(call, 0)?, ts)?;
            let mut out = Vec::with_capacity(elements.len());
            for mut element in elements {
                let joined = sources
                    .iter()
                    .map(|source| element.labels.get(source).unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(&separator);
                element.labels = element.labels.with(&destination, &joined);
                if destination == METRIC_NAME {
                    element.drop_name = false;
                }
                element.t = ts;
                out.push(element);
            }
            check_no_duplicate_labelsets(&out)?;
            Ok(StepValue::Vector(out))
        }
        "sort" | "sort_desc" | "sort_by_label" | "sort_by_label_desc" => {
            if evaluator.settings.step > 0 {
                let position = evaluator.call_position(name);
                evaluator.warn(format!(
                    "sort is ineffective for range queries since results are always ordered by labels {position}"
                ));
            }
            let mut elements = evaluator.eval_vector(argument(call, 0)?, ts)?;
            match name {
                "sort" => elements.sort_by(|a, b| compare_values(a.v, b.v, false)),
                "sort_desc" => elements.sort_by(|a, b| compare_values(a.v, b.v, true)),
                _ => {
                    let mut label_names = Vec::new();
                    for index in 1..call.args.args.len() {
                        label_names.push(evaluator.eval_string(argument(call, index)?, ts)?);
                    }
                    let descending = name == "sort_by_label_desc";
                    elements.sort_by(|a, b| {
                        let mut order = Ordering::Equal;
                        for label in &label_names {
                            let left = a.labels.get(label).unwrap_or("");
                            let right = b.labels.get(label).unwrap_or("");
                            if left != right {
                                order = natural_compare(left, right);
                                break;
                            }
                        }
                        if order == Ordering::Equal {
                            order = a.labels.cmp(&b.labels);
                        }
                        if descending { order.reverse() } else { order }
                    });
                }
            }
            Ok(StepValue::Vector(elements))
        }
        "absent" => {
            let argument_expr = argument(call, 0)?;
            let elements = evaluator.eval_vector(argument_expr, ts)?;
            if !elements.is_empty() {
                return Ok(StepValue::Vector(Vec::new()));
            }
            Ok(StepValue::Vector(vec![Element {
                labels: absent_labels(argument_expr),
                t: ts,
                v: 1.0,
                drop_name: false,
            }]))
        }
        other => Err(QueryError::Execution(format!(
            "function {other}() is not supported"
        ))),
    }
}

/// Ascending (or descending) by value, NaN always last; stable for ties.
fn compare_values(a: f64, b: f64, descending: bool) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            let order = a.partial_cmp(&b).unwrap_or(Ordering::Equal);
            if descending { order.reverse() } else { order }
        }
    }
}

/// Natural order: runs of digits compare by numeric value.
pub(crate) fn natural_compare(a: &str, b: &str) -> Ordering {
    let (mut left, mut right) = (a.as_bytes(), b.as_bytes());
    loop {
        match (left.first(), right.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let left_digits = left.iter().take_while(|c| c.is_ascii_digit()).count();
                let right_digits = right.iter().take_while(|c| c.is_ascii_digit()).count();
                let left_number = trim_zeros(&left[..left_digits]);
                let right_number = trim_zeros(&right[..right_digits]);
                let order = left_number
                    .len()
                    .cmp(&right_number.len())
                    .then_with(|| left_number.cmp(right_number));
                if order != Ordering::Equal {
                    return order;
                }
                left = &left[left_digits..];
                right = &right[right_digits..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                left = &left[1..];
                right = &right[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|c| **c == b'0').count();
    &digits[zeros..]
}

/// Labels `absent()` reports: the equality matchers of a plain selector,
/// except names matched more than once.
pub(super) fn absent_labels(expr: &Expr) -> Labels {
    let selector = match unwrap_parens(expr) {
        Expr::VectorSelector(selector) => selector,
        Expr::MatrixSelector(matrix) => &matrix.vs,
        _ => return Labels::empty(),
    };
    let mut labels: Vec<Label> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for matcher in &selector.matchers.matchers {
        if matcher.name == METRIC_NAME || matcher.name == crate::promql::durations::MODIFIER_LABEL {
            continue;
        }
        let first_time = !seen.contains(&matcher.name);
        if matches!(matcher.op, ParserMatchOp::Equal) && first_time {
            labels.push(Label::new(matcher.name.clone(), matcher.value.clone()));
        } else {
            labels.retain(|label| label.name != matcher.name);
        }
        seen.push(matcher.name.clone());
    }
    Labels::new(labels)
}
