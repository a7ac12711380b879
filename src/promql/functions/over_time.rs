//! Functions over a range vector's window: the `*_over_time` family,
//! `ts_of_*_over_time`, `changes`, `resets`, `deriv`, `predict_linear`,
//! `double_exponential_smoothing`, `absent_over_time`.

use promql_parser::parser::Call;

use super::labels::absent_labels;
use super::{Evaluator, QueryError, StepValue, argument, kahan_add, matrix_argument, quantile_of};
use crate::model::{Labels, Sample};
use crate::promql::aggregate::{mean, variance};
use crate::promql::functions::format_go_float;
use crate::promql::value::Element;

/// Least-squares slope and intercept at `intercept_time` (Kahan sums).
pub(crate) fn linear_regression(samples: &[Sample], intercept_time: i64) -> (f64, f64) {
    let mut n = 0.0;
    let (mut sum_x, mut c_x) = (0.0, 0.0);
    let (mut sum_y, mut c_y) = (0.0, 0.0);
    let (mut sum_xy, mut c_xy) = (0.0, 0.0);
    let (mut sum_x2, mut c_x2) = (0.0, 0.0);
    let initial_y = samples[0].v;
    let mut constant_y = true;
    for (index, sample) in samples.iter().enumerate() {
        if constant_y && index > 0 && sample.v != initial_y {
            constant_y = false;
        }
        n += 1.0;
        let x = (sample.t - intercept_time) as f64 / 1000.0;
        (sum_x, c_x) = kahan_add(x, sum_x, c_x);
        (sum_y, c_y) = kahan_add(sample.v, sum_y, c_y);
        (sum_xy, c_xy) = kahan_add(x * sample.v, sum_xy, c_xy);
        (sum_x2, c_x2) = kahan_add(x * x, sum_x2, c_x2);
    }
    if constant_y {
        if initial_y.is_infinite() {
            return (f64::NAN, f64::NAN);
        }
        return (0.0, initial_y);
    }
    sum_x += c_x;
    sum_y += c_y;
    sum_xy += c_xy;
    sum_x2 += c_x2;
    let covariance = sum_xy - sum_x * sum_y / n;
    let x_variance = sum_x2 - sum_x * sum_x / n;
    let slope = covariance / x_variance;
    let intercept = sum_y / n - slope * sum_x / n;
    (slope, intercept)
}

fn double_exponential_smoothing(samples: &[Sample], smoothing: f64, trend: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let mut previous_smoothed = 0.0;
    let mut smoothed = samples[0].v;
    let mut trend_value = samples[1].v - samples[0].v;
    for (index, sample) in samples.iter().enumerate().skip(1) {
        let scaled = smoothing * sample.v;
        if index > 1 {
            trend_value = trend * (smoothed - previous_smoothed) + (1.0 - trend) * trend_value;
        }
        let carried = (1.0 - smoothing) * (smoothed + trend_value);
        previous_smoothed = smoothed;
        smoothed = scaled + carried;
    }
    Some(smoothed)
}

pub(super) fn call(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let name = call.func.name;
    let matrix_index = match name {
        "quantile_over_time" => 1,
        _ => 0,
    };
    let mut parameters = Vec::new();
    match name {
        "quantile_over_time" => parameters.push(evaluator.eval_scalar(argument(call, 0)?, ts)?),
        "predict_linear" => parameters.push(evaluator.eval_scalar(argument(call, 1)?, ts)?),
        "double_exponential_smoothing" | "holt_winters" => {
            parameters.push(evaluator.eval_scalar(argument(call, 1)?, ts)?);
            parameters.push(evaluator.eval_scalar(argument(call, 2)?, ts)?);
        }
        _ => {}
    }
    if name == "quantile_over_time" {
        let q = parameters[0];
        if q.is_nan() || !(0.0..=1.0).contains(&q) {
            let position = evaluator.argument_position(name, 0);
            evaluator.warn(format!(
                "quantile value should be between 0 and 1, got {} {position}",
                format_go_float(q)
            ));
        }
    }
    if matches!(name, "double_exponential_smoothing" | "holt_winters") {
        let (smoothing, trend) = (parameters[0], parameters[1]);
        if smoothing <= 0.0 || smoothing >= 1.0 {
            return Err(QueryError::Execution(format!(
                "invalid smoothing factor. Expected: 0 < sf < 1, got: {smoothing:.6}"
            )));
        }
        if trend <= 0.0 || trend >= 1.0 {
            return Err(QueryError::Execution(format!(
                "invalid trend factor. Expected: 0 < tf < 1, got: {trend:.6}"
            )));
        }
    }
    let anchored = super::range_modifier(call)? == Some("anchored");
    let window = matrix_argument(evaluator, call, matrix_index, ts)?;
    let window_start = window.window_end - window.range;
    if name == "absent_over_time" {
        if window.series.is_empty() {
            return Ok(StepValue::Vector(vec![Element {
                labels: absent_labels(argument(call, 0)?),
                t: ts,
                v: 1.0,
                drop_name: false,
            }]));
        }
        return Ok(StepValue::Vector(Vec::new()));
    }
    let mut out = Vec::with_capacity(window.series.len());
    for series in window.series {
        let samples = &series.samples;
        let values: Vec<f64> = samples.iter().map(|sample| sample.v).collect();
        let keeps_name = matches!(name, "last_over_time" | "first_over_time");
        // An anchored window needs a sample inside the window proper.
        if anchored && samples.last().is_none_or(|last| last.t <= window_start) {
            continue;
        }
        let value = match name {
            "avg_over_time" => Some(mean(&values)),
            "sum_over_time" => {
                let mut sum = 0.0;
                let mut compensation = 0.0;
                for value in &values {
                    (sum, compensation) = kahan_add(*value, sum, compensation);
                }
                Some(if sum.is_infinite() {
                    sum
                } else {
                    sum + compensation
                })
            }
            "count_over_time" => Some(values.len() as f64),
            "min_over_time" => Some(values.iter().copied().fold(f64::NAN, |acc, v| {
                if acc.is_nan() || v < acc { v } else { acc }
            })),
            "max_over_time" => Some(values.iter().copied().fold(f64::NAN, |acc, v| {
                if acc.is_nan() || v > acc { v } else { acc }
            })),
            "last_over_time" => values.last().copied(),
            "first_over_time" => values.first().copied(),
            "present_over_time" => Some(1.0),
            "stddev_over_time" => Some(variance(&values).sqrt()),
            "stdvar_over_time" => Some(variance(&values)),
            "quantile_over_time" => Some(quantile_of(parameters[0], values.clone())),
            "mad_over_time" if values.iter().any(|v| v.is_nan()) => Some(f64::NAN),
            "mad_over_time" => {
                let median = quantile_of(0.5, values.clone());
                let deviations = values.iter().map(|v| (v - median).abs()).collect();
                Some(quantile_of(0.5, deviations))
            }
            "ts_of_first_over_time" => samples.first().map(|s| s.t as f64 / 1000.0),
            "ts_of_last_over_time" => samples.last().map(|s| s.t as f64 / 1000.0),
            "ts_of_max_over_time" | "ts_of_min_over_time" => {
                let mut best = samples[0];
                for sample in samples {
                    let better = if name == "ts_of_max_over_time" {
                        sample.v >= best.v || best.v.is_nan()
                    } else {
                        sample.v <= best.v || best.v.is_nan()
                    };
                    if better {
                        best = *sample;
                    }
                }
                Some(best.t as f64 / 1000.0)
            }
            "changes" => {
                let mut changes = 0;
                for pair in values.windows(2) {
                    if pair[1] != pair[0] && !(pair[1].is_nan() && pair[0].is_nan()) {
                        changes += 1;
                    }
                }
                Some(f64::from(changes))
            }
            "resets" => {
                let mut resets = 0;
                for pair in values.windows(2) {
                    if pair[1] < pair[0] {
                        resets += 1;
                    }
                }
                Some(f64::from(resets))
            }
            "deriv" => {
                if samples.len() < 2 {
                    None
                } else {
                    Some(linear_regression(samples, samples[0].t).0)
                }
            }
            "predict_linear" => {
                if samples.len() < 2 {
                    None
                } else {
                    let (slope, intercept) = linear_regression(samples, ts);
                    Some(slope * parameters[0] + intercept)
                }
            }
            "double_exponential_smoothing" | "holt_winters" => {
                double_exponential_smoothing(samples, parameters[0], parameters[1])
            }
            other => {
                return Err(QueryError::Execution(format!(
                    "function {other}() is not supported"
                )));
            }
        };
        if let Some(v) = value {
            out.push(Element {
                labels: series.labels,
                t: ts,
                v,
                drop_name: if keeps_name { series.drop_name } else { true },
            });
        }
    }
    let _ = Labels::empty;
    Ok(StepValue::Vector(out))
}
