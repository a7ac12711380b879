//! Counter and gauge rates: `rate`, `increase`, `delta` (extrapolated to the
//! window edges as Prometheus does), `irate`, `idelta` (last two samples).

use promql_parser::parser::Call;

use super::{Evaluator, QueryError, StepValue, matrix_argument};
use crate::model::{METRIC_NAME, Sample};
use crate::promql::value::Element;

/// Prometheus's extrapolated rate over the samples of one window
/// `(window_end - range, window_end]`.
pub(crate) fn extrapolated_rate(
    samples: &[Sample],
    window_end: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples[0];
    let last = samples[samples.len() - 1];
    let mut result = last.v - first.v;
    if is_counter {
        for pair in samples.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }
    let range_start = window_end - range;
    let mut duration_to_start = (first.t - range_start) as f64 / 1000.0;
    let mut duration_to_end = (window_end - last.t) as f64 / 1000.0;
    let sampled_interval = (last.t - first.t) as f64 / 1000.0;
    let average_between_samples = sampled_interval / (samples.len() - 1) as f64;
    let threshold = average_between_samples * 1.1;
    if duration_to_start >= threshold {
        duration_to_start = average_between_samples / 2.0;
    }
    if is_counter && result > 0.0 && first.v >= 0.0 {
        let duration_to_zero = sampled_interval * (first.v / result);
        if duration_to_zero < duration_to_start {
            duration_to_start = duration_to_zero;
        }
    }
    if duration_to_end >= threshold {
        duration_to_end = average_between_samples / 2.0;
    }
    let mut factor = (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
    if is_rate {
        factor /= range as f64 / 1000.0;
    }
    Some(result * factor)
}

/// `irate`/`idelta` from the last two samples.
fn instant_value(samples: &[Sample], is_rate: bool) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let previous = samples[samples.len() - 2];
    let last = samples[samples.len() - 1];
    let interval = last.t - previous.t;
    if interval == 0 {
        return None;
    }
    let mut value = if is_rate && last.v < previous.v {
        last.v
    } else {
        last.v - previous.v
    };
    if is_rate {
        value /= interval as f64 / 1000.0;
    }
    Some(value)
}

pub(super) fn call(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let name = call.func.name;
    if let Some(result) = super::over_time::extended_call(evaluator, call, ts)? {
        return Ok(result);
    }
    let window = matrix_argument(evaluator, call, 0, ts)?;
    let mut out = Vec::with_capacity(window.series.len());
    let mut not_counter_names: Vec<String> = Vec::new();
    for series in window.series {
        let value = match name {
            "rate" => extrapolated_rate(&series.samples, window.window_end, window.range, true, true),
            "increase" => {
                extrapolated_rate(&series.samples, window.window_end, window.range, true, false)
            }
            "delta" => {
                extrapolated_rate(&series.samples, window.window_end, window.range, false, false)
            }
            "irate" => instant_value(&series.samples, true),
            _ => instant_value(&series.samples, false),
        };
        if matches!(name, "rate" | "increase")
            && let Some(metric) = series.labels.get(METRIC_NAME)
            && !["_total", "_sum", "_count", "_bucket"]
                .iter()
                .any(|suffix| metric.ends_with(suffix))
            && !not_counter_names.iter().any(|seen| seen == metric)
        {
            not_counter_names.push(metric.to_string());
        }
        if let Some(v) = value {
            out.push(Element {
                labels: series.labels,
                t: ts,
                v,
                drop_name: true,
            });
        }
    }
    for metric in not_counter_names {
        let position = evaluator.argument_position(name, 0);
        evaluator.info(format!(
            "metric might not be a counter, name does not end in _total/_sum/_count/_bucket: {metric:?} {position}"
        ));
    }
    Ok(StepValue::Vector(out))
}
