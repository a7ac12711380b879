//! Element-wise float functions: `abs`, `ceil`, `floor`, `exp`, `sqrt`,
//! logarithms, trigonometry, `deg`/`rad`, `sgn`, `round`, `clamp*`. All of
//! them drop the metric name (delayed).

use promql_parser::parser::Call;

use super::{Evaluator, QueryError, StepValue, argument};
use crate::promql::value::Element;

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`, with Prometheus's spelling of
/// infinities.
pub(crate) fn format_go_float(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

fn map_elements(elements: Vec<Element>, ts: i64, function: impl Fn(f64) -> f64) -> Vec<Element> {
    elements
        .into_iter()
        .map(|element| Element {
            v: function(element.v),
            labels: element.labels,
            t: ts,
            drop_name: true,
        })
        .collect()
}

pub(super) fn call(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let name = call.func.name;
    let elements = evaluator.eval_vector(argument(call, 0)?, ts)?;
    let out = match name {
        "round" => {
            let to_nearest = match call.args.args.get(1) {
                Some(expr) => evaluator.eval_scalar(expr, ts)?,
                None => 1.0,
            };
            let inverse = 1.0 / to_nearest;
            map_elements(elements, ts, |v| (v * inverse + 0.5).floor() / inverse)
        }
        "clamp" | "clamp_min" | "clamp_max" => {
            let (minimum, maximum) = match name {
                "clamp" => (
                    evaluator.eval_scalar(argument(call, 1)?, ts)?,
                    evaluator.eval_scalar(argument(call, 2)?, ts)?,
                ),
                "clamp_min" => (
                    evaluator.eval_scalar(argument(call, 1)?, ts)?,
                    f64::INFINITY,
                ),
                _ => (
                    f64::NEG_INFINITY,
                    evaluator.eval_scalar(argument(call, 1)?, ts)?,
                ),
            };
            if maximum < minimum {
                Vec::new()
            } else {
                // Go's math.Max/Min propagate NaN.
                map_elements(elements, ts, |v| {
                    if v.is_nan() || minimum.is_nan() || maximum.is_nan() {
                        f64::NAN
                    } else {
                        minimum.max(maximum.min(v))
                    }
                })
            }
        }
        _ => {
            let function: fn(f64) -> f64 = match name {
                "abs" => f64::abs,
                "ceil" => f64::ceil,
                "floor" => f64::floor,
                "exp" => f64::exp,
                "sqrt" => f64::sqrt,
                "ln" => f64::ln,
                "log2" => f64::log2,
                "log10" => f64::log10,
                "sin" => f64::sin,
                "cos" => f64::cos,
                "tan" => f64::tan,
                "asin" => f64::asin,
                "acos" => f64::acos,
                "atan" => f64::atan,
                "sinh" => f64::sinh,
                "cosh" => f64::cosh,
                "tanh" => f64::tanh,
                "asinh" => f64::asinh,
                "acosh" => f64::acosh,
                "atanh" => f64::atanh,
                "deg" => |v| v * 180.0 / std::f64::consts::PI,
                "rad" => |v| v * std::f64::consts::PI / 180.0,
                "sgn" => |v| {
                    if v < 0.0 {
                        -1.0
                    } else if v > 0.0 {
                        1.0
                    } else {
                        v
                    }
                },
                other => {
                    return Err(QueryError::Execution(format!("unknown function {other}")));
                }
            };
            map_elements(elements, ts, function)
        }
    };
    Ok(StepValue::Vector(out))
}
