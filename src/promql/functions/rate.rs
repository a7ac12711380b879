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
    extrapolated_rate_checking_resets(samples, window_end, range, is_counter, is_rate, true)
}

/// `extrapolated_rate` for a caller that may know the window holds no
/// counter reset (`may_have_resets == false`), which skips the scan for them.
pub(crate) fn extrapolated_rate_checking_resets(
    samples: &[Sample],
    window_end: i64,
    range: i64,
    is_counter: bool,
    is_rate: bool,
    may_have_resets: bool,
) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let first = samples[0];
    let last = samples[samples.len() - 1];
    let result = window_increase(samples, is_counter && may_have_resets);
    let shape = WindowShape::new(first.t, last.t, samples.len(), window_end, range, is_rate);
    Some(shape.extrapolate(result, first.v, range, is_counter, is_rate))
}

/// Last minus first value of a window (at least one sample), plus the value
/// before each counter reset when `correct_resets`.
#[inline]
pub(crate) fn window_increase(samples: &[Sample], correct_resets: bool) -> f64 {
    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return 0.0;
    };
    let mut result = last.v - first.v;
    if correct_resets {
        for pair in samples.windows(2) {
            if pair[1].v < pair[0].v {
                result += pair[0].v;
            }
        }
    }
    result
}

/// The part of an extrapolated rate that depends only on where a window's
/// samples lie: the times from the window's start to its first sample and
/// from its last sample to the window's end, and the sample count. Windows
/// of a regularly scraped series repeat the same layout step after step,
/// so a caller walking many windows computes it once per layout (the
/// divisions are most of the cost) and gets the same bits as computing it
/// every time.
#[derive(Clone, Copy, Debug)]
pub(crate) struct WindowShape {
    duration_to_start: f64,
    duration_to_end: f64,
    sampled_interval: f64,
    /// The extrapolation factor when the counter's zero point does not
    /// shorten the start (divided by the range in seconds for `rate`).
    factor: f64,
}

impl WindowShape {
    /// The layout of a window `(window_end - range, window_end]` whose first
    /// and last samples are at `first_t` and `last_t` (`count ≥ 2` samples).
    #[inline]
    pub(crate) fn new(
        first_t: i64,
        last_t: i64,
        count: usize,
        window_end: i64,
        range: i64,
        is_rate: bool,
    ) -> WindowShape {
        let range_start = window_end - range;
        let mut duration_to_start = (first_t - range_start) as f64 / 1000.0;
        let mut duration_to_end = (window_end - last_t) as f64 / 1000.0;
        let sampled_interval = (last_t - first_t) as f64 / 1000.0;
        let average_between_samples = sampled_interval / (count - 1) as f64;
        let threshold = average_between_samples * 1.1;
        if duration_to_start >= threshold {
            duration_to_start = average_between_samples / 2.0;
        }
        if duration_to_end >= threshold {
            duration_to_end = average_between_samples / 2.0;
        }
        let factor = Self::factor(
            sampled_interval,
            duration_to_start,
            duration_to_end,
            range,
            is_rate,
        );
        WindowShape {
            duration_to_start,
            duration_to_end,
            sampled_interval,
            factor,
        }
    }

    #[inline]
    fn factor(
        sampled_interval: f64,
        duration_to_start: f64,
        duration_to_end: f64,
        range: i64,
        is_rate: bool,
    ) -> f64 {
        let mut factor =
            (sampled_interval + duration_to_start + duration_to_end) / sampled_interval;
        if is_rate {
            factor /= range as f64 / 1000.0;
        }
        factor
    }

    /// The extrapolated value of a window with this layout whose samples
    /// rose by `result` (resets corrected) from a first value `first_v`.
    #[inline]
    pub(crate) fn extrapolate(
        &self,
        result: f64,
        first_v: f64,
        range: i64,
        is_counter: bool,
        is_rate: bool,
    ) -> f64 {
        if is_counter && result > 0.0 && first_v >= 0.0 {
            // A counter does not extrapolate below zero: the start moves
            // to where the line through the samples crosses it.
            let duration_to_zero = self.sampled_interval * (first_v / result);
            if duration_to_zero < self.duration_to_start {
                let factor = Self::factor(
                    self.sampled_interval,
                    duration_to_zero,
                    self.duration_to_end,
                    range,
                    is_rate,
                );
                return result * factor;
            }
        }
        result * self.factor
    }
}

fn interpolate(first: Sample, second: Sample, t: i64, is_counter: bool) -> f64 {
    let mut start_value = first.v;
    if is_counter && second.v < first.v {
        // After a reset the counter is taken to have restarted from 0.
        start_value = 0.0;
    }
    start_value + (second.v - start_value) * (t - first.t) as f64 / (second.t - first.t) as f64
}

/// `rate`/`increase`/`delta` over an anchored or smoothed window: the
/// difference between the values at the window edges (the sample at or
/// before the start; for `smoothed`, values interpolated at both edges),
/// corrected for counter resets, without extrapolation.
pub(crate) fn extended_rate(
    samples: &[Sample],
    window_end: i64,
    range: i64,
    smoothed: bool,
    is_counter: bool,
    is_rate: bool,
) -> Option<f64> {
    let window_start = window_end - range;
    // Data only after the window says nothing about it.
    if samples.first().is_none_or(|first| first.t > window_end) {
        return None;
    }
    let mut last = samples.len() - 1;
    let first = samples[..last]
        .partition_point(|sample| sample.t <= window_start)
        .saturating_sub(1);
    if smoothed {
        last = samples[..last].partition_point(|sample| sample.t < window_end);
    }
    if samples[last].t <= window_start {
        return None;
    }
    let left = if smoothed && samples[first].t < window_start {
        interpolate(samples[first], samples[first + 1], window_start, is_counter)
    } else {
        samples[first].v
    };
    let right = if smoothed && last > 0 && samples[last].t > window_end {
        interpolate(samples[last - 1], samples[last], window_end, is_counter)
    } else {
        samples[last].v
    };
    let mut result = right - left;
    if is_counter {
        let mut inner_first = first;
        if samples[inner_first].t <= window_start {
            inner_first += 1;
        }
        let mut inner_last = last as i64;
        if samples[last].t >= window_end {
            inner_last -= 1;
        }
        let mut previous = left;
        let mut correction = 0.0;
        if inner_last >= inner_first as i64 {
            for sample in &samples[inner_first..=inner_last as usize] {
                if sample.v < previous {
                    correction += previous;
                }
                previous = sample.v;
            }
        }
        if right < previous {
            correction += previous;
        }
        result += correction;
    }
    if is_rate {
        result /= range as f64 / 1000.0;
    }
    Some(result)
}

/// `irate`/`idelta` from the last two samples.
pub(crate) fn instant_value(samples: &[Sample], is_rate: bool) -> Option<f64> {
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
    let modifier = super::range_modifier(call)?;
    let window = matrix_argument(evaluator, call, 0, ts)?;
    let mut out = Vec::with_capacity(window.series.len());
    let mut not_counter_names: Vec<String> = Vec::new();
    for series in window.series {
        let value = match (name, modifier) {
            ("rate" | "increase" | "delta", Some(modifier)) => extended_rate(
                &series.samples,
                window.window_end,
                window.range,
                modifier == "smoothed",
                name != "delta",
                name == "rate",
            ),
            _ => None,
        };
        let value = if modifier.is_some() {
            value
        } else {
            match name {
                "rate" => {
                    extrapolated_rate(&series.samples, window.window_end, window.range, true, true)
                }
                "increase" => extrapolated_rate(
                    &series.samples,
                    window.window_end,
                    window.range,
                    true,
                    false,
                ),
                "delta" => extrapolated_rate(
                    &series.samples,
                    window.window_end,
                    window.range,
                    false,
                    false,
                ),
                "irate" => instant_value(&series.samples, true),
                _ => instant_value(&series.samples, false),
            }
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
