//! Aggregation operators: `sum`, `avg`, `min`, `max`, `group`, `count`,
//! `count_values`, `stddev`, `stdvar`, `quantile`, `topk`, `bottomk`,
//! `limitk`, `limit_ratio`, with `by`/`without` grouping.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, LabelModifier};

use super::QueryError;
use super::eval::{Evaluator, is_name_like};
use super::functions::{format_go_float, kahan_add, quantile_of};
use super::value::{Element, StepValue};
use crate::model::{Label, Labels, is_legacy_label_name};

/// Which labels form a group.
struct Grouping<'a> {
    without: bool,
    names: &'a [String],
}

impl Grouping<'_> {
    fn group_labels(&self, labels: &Labels) -> Labels {
        if self.without {
            Labels::new(
                labels
                    .iter()
                    .filter(|label| !is_name_like(&label.name) && !self.names.contains(&label.name))
                    .cloned()
                    .collect(),
            )
        } else {
            Labels::new(
                labels
                    .iter()
                    .filter(|label| self.names.contains(&label.name))
                    .cloned()
                    .collect(),
            )
        }
    }
}

/// Splits elements into groups, keeping the order in which groups first appear.
fn group_elements(elements: Vec<Element>, grouping: &Grouping<'_>) -> Vec<(Labels, Vec<Element>)> {
    let mut index_by_group: HashMap<Labels, usize> = HashMap::new();
    let mut groups: Vec<(Labels, Vec<Element>)> = Vec::new();
    for element in elements {
        let key = grouping.group_labels(&element.labels);
        match index_by_group.get(&key) {
            Some(index) => groups[*index].1.push(element),
            None => {
                index_by_group.insert(key.clone(), groups.len());
                groups.push((key, vec![element]));
            }
        }
    }
    groups
}

pub(crate) fn eval(
    evaluator: &mut Evaluator<'_>,
    expr: &AggregateExpr,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let operator = expr.op.to_string();
    let (without, names): (bool, &[String]) = match &expr.modifier {
        Some(LabelModifier::Include(labels)) => (false, &labels.labels),
        Some(LabelModifier::Exclude(labels)) => (true, &labels.labels),
        None => (false, &[]),
    };
    let grouping = Grouping { without, names };

    let mut parameter_scalar = None;
    let mut parameter_string = None;
    if let Some(param) = &expr.param {
        match evaluator.eval(param, ts)? {
            StepValue::Scalar(v) => parameter_scalar = Some(v),
            StepValue::Str(s) => parameter_string = Some(s),
            other => {
                return Err(QueryError::Execution(format!(
                    "expected scalar parameter, got {}",
                    other.type_name()
                )));
            }
        }
    }
    let input = evaluator.eval_vector(&expr.expr, ts)?;

    match operator.as_str() {
        "topk" | "bottomk" | "limitk" => {
            let k_float = parameter_scalar.unwrap_or(f64::NAN);
            if k_float.is_nan() {
                return Err(QueryError::Execution("Parameter value is NaN".into()));
            }
            if k_float >= 9.223372036854776e18 || k_float <= -9.223372036854776e18 {
                return Err(QueryError::Execution(format!(
                    "Scalar value {} overflows int64",
                    format_go_float(k_float)
                )));
            }
            let k = k_float as i64;
            if k < 1 {
                return Ok(StepValue::Vector(Vec::new()));
            }
            let k = k as usize;
            let mut out = Vec::new();
            for (_, members) in group_elements(input, &grouping) {
                match operator.as_str() {
                    "limitk" => out.extend(members.into_iter().take(k)),
                    _ => {
                        let descending = operator == "topk";
                        let mut members = members;
                        // Stable sort: equal values keep input order. NaN goes last.
                        members.sort_by(|a, b| match (a.v.is_nan(), b.v.is_nan()) {
                            (true, true) => std::cmp::Ordering::Equal,
                            (true, false) => std::cmp::Ordering::Greater,
                            (false, true) => std::cmp::Ordering::Less,
                            (false, false) => {
                                if descending {
                                    b.v.partial_cmp(&a.v).unwrap_or(std::cmp::Ordering::Equal)
                                } else {
                                    a.v.partial_cmp(&b.v).unwrap_or(std::cmp::Ordering::Equal)
                                }
                            }
                        });
                        out.extend(members.into_iter().take(k));
                    }
                }
            }
            for element in &mut out {
                element.t = ts;
            }
            Ok(StepValue::Vector(out))
        }
        "limit_ratio" => {
            let mut ratio = parameter_scalar.unwrap_or(f64::NAN);
            if ratio.is_nan() {
                return Err(QueryError::Execution("Ratio value is NaN".into()));
            }
            if !(-1.0..=1.0).contains(&ratio) {
                let capped = ratio.clamp(-1.0, 1.0);
                let position = evaluator.argument_position("limit_ratio", 0);
                evaluator.warn(format!(
                    "ratio value should be between -1 and 1, got {}, capping to {} {position}",
                    format_go_float(ratio),
                    format_go_float(capped)
                ));
                ratio = capped;
            }
            let out: Vec<Element> = input
                .into_iter()
                .filter(|element| {
                    let offset = element.labels.hash64() as f64 / u64::MAX as f64;
                    if ratio >= 0.0 {
                        offset < ratio
                    } else {
                        offset >= 1.0 + ratio
                    }
                })
                .collect();
            Ok(StepValue::Vector(out))
        }
        "count_values" => {
            let label_name = parameter_string.unwrap_or_default();
            if !is_legacy_label_name(&label_name)
                && (label_name.is_empty() || std::str::from_utf8(label_name.as_bytes()).is_err())
            {
                return Err(QueryError::Execution(format!(
                    "invalid label name {label_name:?}"
                )));
            }
            if label_name.chars().any(|c| c == char::REPLACEMENT_CHARACTER) {
                return Err(QueryError::Execution(format!(
                    "invalid label name \"{}\"",
                    go_escape(&label_name)
                )));
            }
            let mut index_by_labels: HashMap<Labels, usize> = HashMap::new();
            let mut out: Vec<Element> = Vec::new();
            for element in input {
                let mut labels: Vec<Label> = grouping
                    .group_labels(&element.labels)
                    .into_vec()
                    .into_iter()
                    .filter(|label| label.name != label_name)
                    .collect();
                labels.push(Label::new(label_name.clone(), format_go_float(element.v)));
                let labels = Labels::new(labels);
                match index_by_labels.get(&labels) {
                    Some(index) => out[*index].v += 1.0,
                    None => {
                        index_by_labels.insert(labels.clone(), out.len());
                        out.push(Element {
                            labels,
                            t: ts,
                            v: 1.0,
                            drop_name: false,
                        });
                    }
                }
            }
            Ok(StepValue::Vector(out))
        }
        _ => {
            let quantile_parameter = parameter_scalar;
            if operator == "quantile" {
                let q = quantile_parameter.unwrap_or(f64::NAN);
                if q.is_nan() || !(0.0..=1.0).contains(&q) {
                    let position = evaluator.argument_position("quantile", 0);
                    evaluator.warn(format!(
                        "quantile value should be between 0 and 1, got {} {position}",
                        format_go_float(q)
                    ));
                }
            }
            let mut out = Vec::new();
            for (key, members) in group_elements(input, &grouping) {
                let drop_name = members.iter().any(|member| member.drop_name);
                let values: Vec<f64> = members.iter().map(|member| member.v).collect();
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
                    "stdvar" => variance(&values),
                    "quantile" => quantile_of(quantile_parameter.unwrap_or(f64::NAN), values),
                    other => {
                        return Err(QueryError::Execution(format!(
                            "unknown aggregation operator {other:?}"
                        )));
                    }
                };
                out.push(Element {
                    labels: key,
                    t: ts,
                    v: value,
                    drop_name,
                });
            }
            Ok(StepValue::Vector(out))
        }
    }
}

fn go_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c == char::REPLACEMENT_CHARACTER {
                "\\ufffd".to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Kahan-compensated sum, as Prometheus sums.
pub(crate) fn kahan_sum(values: &[f64]) -> f64 {
    let mut sum = 0.0;
    let mut compensation = 0.0;
    for value in values {
        (sum, compensation) = kahan_add(*value, sum, compensation);
    }
    if sum.is_infinite() {
        sum
    } else {
        sum + compensation
    }
}

/// Mean by direct Kahan summation, switching to an incremental mean once the
/// running sum would overflow.
pub(crate) fn mean(values: &[f64]) -> f64 {
    let Some(first) = values.first() else {
        return f64::NAN;
    };
    let mut sum = *first;
    let mut compensation = 0.0;
    let mut incremental = false;
    let mut running_mean = 0.0;
    for (index, value) in values.iter().enumerate().skip(1) {
        let count = (index + 1) as f64;
        if !incremental {
            let (new_sum, new_compensation) = kahan_add(*value, sum, compensation);
            if !new_sum.is_infinite() {
                sum = new_sum;
                compensation = new_compensation;
                continue;
            }
            incremental = true;
            running_mean = sum / (count - 1.0);
            compensation /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (running_mean, compensation) = kahan_add(value / count, q * running_mean, q * compensation);
    }
    if incremental {
        running_mean + compensation
    } else {
        let count = values.len() as f64;
        sum / count + compensation / count
    }
}

/// Population variance (Welford with Kahan-compensated accumulators).
pub(crate) fn variance(values: &[f64]) -> f64 {
    let mut count = 0.0;
    let (mut running_mean, mut mean_compensation) = (0.0, 0.0);
    let (mut aux, mut aux_compensation) = (0.0, 0.0);
    for value in values {
        count += 1.0;
        let delta = value - (running_mean + mean_compensation);
        (running_mean, mean_compensation) =
            kahan_add(delta / count, running_mean, mean_compensation);
        (aux, aux_compensation) = kahan_add(
            delta * (value - (running_mean + mean_compensation)),
            aux,
            aux_compensation,
        );
    }
    (aux + aux_compensation) / count
}
