//! Function calls: dispatch by name, plus helpers shared by the function
//! families (one file each under `functions/`).

mod histogram;
mod info;
mod labels;
mod math;
mod over_time;
pub(crate) mod rate;
mod time;

use promql_parser::parser::{Call, Expr};

use super::QueryError;
use super::durations::selector_modifier;
use super::eval::Evaluator;
use super::value::{Element, StepValue, Window};

pub(crate) use math::format_go_float;

/// One step of Kahan summation: returns the new sum and compensation.
pub(crate) fn kahan_add(value: f64, sum: f64, compensation: f64) -> (f64, f64) {
    let new_sum = sum + value;
    let new_compensation = if value.is_infinite() || sum.is_infinite() {
        compensation
    } else if sum.abs() >= value.abs() {
        compensation + ((sum - new_sum) + value)
    } else {
        compensation + ((value - new_sum) + sum)
    };
    (new_sum, new_compensation)
}

/// The φ-quantile of `values` with linear interpolation between ranks.
pub(crate) fn quantile_of(q: f64, mut values: Vec<f64>) -> f64 {
    if values.is_empty() || q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    // NaN sorts first, as in Prometheus.
    values.sort_by(|a, b| match (a.is_nan(), b.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Less,
        (false, true) => std::cmp::Ordering::Greater,
        (false, false) => a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal),
    });
    let n = values.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - rank.floor();
    values[lower as usize] * (1.0 - weight) + values[upper as usize] * weight
}

fn unwrap_parens(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(paren) => unwrap_parens(&paren.expr),
        other => other,
    }
}

fn argument(call: &Call, index: usize) -> Result<&Expr, QueryError> {
    call.args
        .args
        .get(index)
        .map(|boxed| boxed.as_ref())
        .ok_or_else(|| {
            QueryError::Execution(format!(
                "missing argument {} of {}()",
                index + 1,
                call.func.name
            ))
        })
}

/// Evaluates the range-vector argument of a function.
fn matrix_argument(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    index: usize,
    ts: i64,
) -> Result<Window, QueryError> {
    match evaluator.eval(argument(call, index)?, ts)? {
        StepValue::Matrix(window) => Ok(window),
        other => Err(QueryError::Execution(format!(
            "expected type range vector in call to function \"{}\", got {}",
            call.func.name,
            other.type_name()
        ))),
    }
}

/// The `anchored`/`smoothed` modifier on a range-selector argument, after
/// checking that the function accepts it.
pub(crate) fn range_modifier(call: &Call) -> Result<Option<&'static str>, QueryError> {
    let name = call.func.name;
    for argument in &call.args.args {
        let Expr::MatrixSelector(matrix) = unwrap_parens(argument) else {
            continue;
        };
        let Some(modifier) = selector_modifier(&matrix.vs) else {
            continue;
        };
        let allowed: &[&str] = if modifier == "anchored" {
            &["changes", "delta", "increase", "rate", "resets"]
        } else {
            &["delta", "increase", "rate"]
        };
        if !allowed.contains(&name) {
            return Err(QueryError::Execution(format!(
                "{modifier} modifier can only be used with: {} - not with {name}",
                allowed.join(", ")
            )));
        }
        return Ok(Some(modifier));
    }
    Ok(None)
}

pub(crate) fn call(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let name = call.func.name;
    range_modifier(call)?;
    match name {
        "time" => Ok(StepValue::Scalar(ts as f64 / 1000.0)),
        "pi" => Ok(StepValue::Scalar(std::f64::consts::PI)),
        "step" => Ok(StepValue::Scalar(evaluator.settings.step as f64 / 1000.0)),
        "start" => Ok(StepValue::Scalar(evaluator.settings.start as f64 / 1000.0)),
        "end" => Ok(StepValue::Scalar(evaluator.settings.end as f64 / 1000.0)),
        "range" => Ok(StepValue::Scalar(
            (evaluator.settings.end - evaluator.settings.start) as f64 / 1000.0,
        )),
        "min_of" | "max_of" => {
            let mut result: Option<f64> = None;
            for argument in &call.args.args {
                let value = evaluator.eval_scalar(argument, ts)?;
                result = Some(match result {
                    None => value,
                    // Go's math.Min/Max propagate NaN.
                    Some(current) if current.is_nan() || value.is_nan() => f64::NAN,
                    Some(current) if name == "min_of" => current.min(value),
                    Some(current) => current.max(value),
                });
            }
            Ok(StepValue::Scalar(result.unwrap_or(f64::NAN)))
        }
        "vector" => {
            let value = evaluator.eval_scalar(argument(call, 0)?, ts)?;
            Ok(StepValue::Vector(vec![Element {
                labels: crate::model::Labels::empty(),
                t: ts,
                v: value,
                drop_name: false,
            }]))
        }
        "scalar" => {
            let elements = evaluator.eval_vector(argument(call, 0)?, ts)?;
            Ok(StepValue::Scalar(if elements.len() == 1 {
                elements[0].v
            } else {
                f64::NAN
            }))
        }
        "abs" | "ceil" | "floor" | "exp" | "sqrt" | "ln" | "log2" | "log10" | "sin" | "cos"
        | "tan" | "asin" | "acos" | "atan" | "sinh" | "cosh" | "tanh" | "asinh" | "acosh"
        | "atanh" | "deg" | "rad" | "sgn" | "round" | "clamp" | "clamp_min" | "clamp_max" => {
            math::call(evaluator, call, ts)
        }
        "timestamp" | "minute" | "hour" | "day_of_week" | "day_of_month" | "day_of_year"
        | "days_in_month" | "month" | "year" => time::call(evaluator, call, ts),
        "label_replace" | "label_join" | "sort" | "sort_desc" | "sort_by_label"
        | "sort_by_label_desc" | "absent" => labels::call(evaluator, call, ts),
        "info" => info::call(evaluator, call, ts),
        "histogram_quantile"
        | "histogram_fraction"
        | "histogram_quantiles"
        | "histogram_count"
        | "histogram_sum"
        | "histogram_avg"
        | "histogram_stddev"
        | "histogram_stdvar" => histogram::call(evaluator, call, ts),
        "rate" | "increase" | "delta" | "irate" | "idelta" => rate::call(evaluator, call, ts),
        _ => over_time::call(evaluator, call, ts),
    }
}
