//! Histogram functions over classic `_bucket` series: `histogram_quantile`,
//! `histogram_quantiles`, `histogram_fraction`. Native histograms are not
//! stored by guardia, so the native-only functions (`histogram_count`,
//! `histogram_sum`, …) always return an empty vector.

use promql_parser::parser::Call;

use super::{Evaluator, QueryError, StepValue, argument, format_go_float};
use crate::model::{Label, Labels, METRIC_NAME};
use crate::promql::aggregate::LabelGroups;
use crate::promql::value::Element;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    upper_bound: f64,
    count: f64,
}

struct BucketGroup {
    labels: Labels,
    buckets: Vec<Bucket>,
    drop_name: bool,
}

/// OpenMetrics float text: integers carry a `.0`.
fn format_open_metrics_float(value: f64) -> String {
    let text = format_go_float(value);
    if value.is_finite() && !text.contains('.') && !text.contains('e') {
        format!("{text}.0")
    } else {
        text
    }
}

/// Parses Go float syntax as used in `le` values.
fn parse_go_float(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    match trimmed.to_ascii_lowercase().as_str() {
        "+inf" | "inf" | "+infinity" | "infinity" => return Some(f64::INFINITY),
        "-inf" | "-infinity" => return Some(f64::NEG_INFINITY),
        "nan" => return Some(f64::NAN),
        _ => {}
    }
    if trimmed.is_empty() {
        return None;
    }
    trimmed.replace('_', "").parse::<f64>().ok()
}

/// Groups bucket series by their labels without `le`, warning about
/// series with a missing or malformed `le`.
fn group_buckets(
    evaluator: &mut Evaluator<'_>,
    elements: Vec<Element>,
    function: &str,
    argument_index: usize,
) -> Vec<BucketGroup> {
    let mut label_groups = LabelGroups::default();
    let mut groups: Vec<BucketGroup> = Vec::new();
    for element in elements {
        let le = element.labels.get("le").unwrap_or("");
        let Some(upper_bound) = parse_go_float(le) else {
            let metric = element.labels.get(METRIC_NAME).unwrap_or("").to_string();
            let position = evaluator.argument_position(function, argument_index);
            evaluator.warn(format!(
                "bucket label \"le\" is missing or has a malformed value of {le:?} for metric name {metric:?} {position}"
            ));
            continue;
        };
        let (index, created) = label_groups.group_of(&element.labels, |label| label.name != "le");
        if created {
            groups.push(BucketGroup {
                labels: Labels::empty(),
                buckets: Vec::new(),
                drop_name: false,
            });
        }
        groups[index].drop_name |= element.drop_name;
        groups[index].buckets.push(Bucket {
            upper_bound,
            count: element.v,
        });
    }
    for (group, labels) in groups.iter_mut().zip(label_groups.into_keys()) {
        group.labels = labels;
    }
    groups
}

fn sort_and_coalesce(buckets: &mut Vec<Bucket>) {
    buckets.sort_by(|a, b| {
        a.upper_bound
            .partial_cmp(&b.upper_bound)
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
    for bucket in buckets.drain(..) {
        match merged.last_mut() {
            Some(last) if last.upper_bound == bucket.upper_bound => last.count += bucket.count,
            _ => merged.push(bucket),
        }
    }
    *buckets = merged;
}

/// Quantile over classic buckets; the flag says whether monotonicity had to
/// be forced.
fn bucket_quantile(q: f64, mut buckets: Vec<Bucket>) -> (f64, bool) {
    if q.is_nan() {
        return (f64::NAN, false);
    }
    if q < 0.0 {
        return (f64::NEG_INFINITY, false);
    }
    if q > 1.0 {
        return (f64::INFINITY, false);
    }
    if buckets.is_empty() {
        return (f64::NAN, false);
    }
    sort_and_coalesce(&mut buckets);
    if buckets
        .last()
        .is_none_or(|last| last.upper_bound != f64::INFINITY)
    {
        return (f64::NAN, false);
    }
    // Tiny float errors are not reported as a monotonicity problem.
    let mut previous = buckets[0].count;
    for bucket in buckets.iter_mut().skip(1) {
        let delta = (bucket.count - previous).abs();
        if delta == 0.0 {
            continue;
        }
        if delta / bucket.count <= 1e-12 {
            bucket.count = previous;
        } else {
            previous = bucket.count;
        }
    }
    let mut forced = false;
    let mut maximum = buckets[0].count;
    for bucket in buckets.iter_mut().skip(1) {
        if bucket.count > maximum {
            maximum = bucket.count;
        } else if bucket.count < maximum {
            bucket.count = maximum;
            forced = true;
        }
    }
    if buckets.len() < 2 {
        return (f64::NAN, false);
    }
    let observations = buckets[buckets.len() - 1].count;
    if observations == 0.0 {
        return (f64::NAN, false);
    }
    let mut rank = q * observations;
    let searchable = buckets.len() - 1;
    let index = buckets[..searchable].partition_point(|bucket| bucket.count < rank);
    if index == searchable {
        return (buckets[buckets.len() - 2].upper_bound, forced);
    }
    if index == 0 && buckets[0].upper_bound <= 0.0 {
        return (buckets[0].upper_bound, forced);
    }
    let mut bucket_start = 0.0;
    let bucket_end = buckets[index].upper_bound;
    let mut count = buckets[index].count;
    if index > 0 {
        bucket_start = buckets[index - 1].upper_bound;
        count -= buckets[index - 1].count;
        rank -= buckets[index - 1].count;
    }
    (
        bucket_start + (bucket_end - bucket_start) * (rank / count),
        forced,
    )
}

/// Fraction of observations between `lower` and `upper`, interpolating
/// linearly inside buckets.
fn bucket_fraction(lower: f64, upper: f64, mut buckets: Vec<Bucket>) -> f64 {
    if buckets.is_empty() {
        return f64::NAN;
    }
    sort_and_coalesce(&mut buckets);
    if buckets
        .last()
        .is_none_or(|last| last.upper_bound != f64::INFINITY)
    {
        return f64::NAN;
    }
    let total = buckets[buckets.len() - 1].count;
    if total == 0.0 || lower.is_nan() || upper.is_nan() {
        return f64::NAN;
    }
    if lower >= upper {
        return 0.0;
    }
    let rank_at = |value: f64| -> f64 {
        let mut previous_bound = f64::NEG_INFINITY;
        let mut previous_count = 0.0;
        for (index, bucket) in buckets.iter().enumerate() {
            if value <= bucket.upper_bound {
                if value == bucket.upper_bound {
                    return bucket.count;
                }
                // The lowest bucket starts at 0 when its bound is positive.
                let lower_bound = if index == 0 {
                    if bucket.upper_bound > 0.0 {
                        0.0
                    } else {
                        f64::NEG_INFINITY
                    }
                } else {
                    previous_bound
                };
                if value <= lower_bound {
                    return previous_count;
                }
                if bucket.upper_bound.is_infinite() || lower_bound.is_infinite() {
                    // Cannot interpolate into an open-ended bucket.
                    return if bucket.upper_bound.is_infinite() {
                        previous_count
                    } else {
                        bucket.count
                    };
                }
                let fraction = (value - lower_bound) / (bucket.upper_bound - lower_bound);
                return previous_count + (bucket.count - previous_count) * fraction;
            }
            previous_bound = bucket.upper_bound;
            previous_count = bucket.count;
        }
        total
    };
    let lower_rank = if lower == f64::NEG_INFINITY {
        0.0
    } else {
        rank_at(lower)
    };
    let upper_rank = if upper == f64::INFINITY {
        total
    } else {
        rank_at(upper)
    };
    (upper_rank - lower_rank) / total
}

pub(super) fn call(
    evaluator: &mut Evaluator<'_>,
    call: &Call,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let name = call.func.name;
    match name {
        "histogram_quantile" => {
            let q = evaluator.eval_scalar(argument(call, 0)?, ts)?;
            let elements = evaluator.eval_vector(argument(call, 1)?, ts)?;
            if q.is_nan() || !(0.0..=1.0).contains(&q) {
                let position = evaluator.argument_position(name, 0);
                evaluator.warn(format!(
                    "quantile value should be between 0 and 1, got {} {position}",
                    format_go_float(q)
                ));
            }
            let groups = group_buckets(evaluator, elements, name, 1);
            let mut out = Vec::with_capacity(groups.len());
            for group in groups {
                let (value, forced) = bucket_quantile(q, group.buckets);
                if forced {
                    let metric = group.labels.get(METRIC_NAME).unwrap_or("").to_string();
                    let position = evaluator.argument_position(name, 1);
                    evaluator.info(format!(
                        "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {metric:?} {position}"
                    ));
                }
                out.push(Element {
                    labels: group.labels,
                    t: ts,
                    v: value,
                    drop_name: true,
                });
            }
            Ok(StepValue::Vector(out))
        }
        "histogram_quantiles" => {
            let elements = evaluator.eval_vector(argument(call, 0)?, ts)?;
            let label_name = evaluator.eval_string(argument(call, 1)?, ts)?;
            let mut quantiles = Vec::new();
            for index in 2..call.args.args.len() {
                let q = evaluator.eval_scalar(argument(call, index)?, ts)?;
                if q.is_nan() || !(0.0..=1.0).contains(&q) {
                    let position = evaluator.argument_position(name, index);
                    evaluator.warn(format!(
                        "quantile value should be between 0 and 1, got {} {position}",
                        format_go_float(q)
                    ));
                }
                quantiles.push(q);
            }
            let groups = group_buckets(evaluator, elements, name, 0);
            let mut out = Vec::new();
            for q in quantiles {
                for group in &groups {
                    let (value, forced) = bucket_quantile(q, group.buckets.clone());
                    if forced {
                        let metric = group.labels.get(METRIC_NAME).unwrap_or("").to_string();
                        let position = evaluator.argument_position(name, 0);
                        evaluator.info(format!(
                            "input to histogram_quantile needed to be fixed for monotonicity (see https://prometheus.io/docs/prometheus/latest/querying/functions/#histogram_quantile) for metric name {metric:?} {position}"
                        ));
                    }
                    let mut labels: Vec<Label> = group.labels.clone().into_vec();
                    labels.retain(|label| label.name != label_name);
                    labels.push(Label::new(label_name.clone(), format_open_metrics_float(q)));
                    out.push(Element {
                        labels: Labels::new(labels),
                        t: ts,
                        v: value,
                        drop_name: true,
                    });
                }
            }
            Ok(StepValue::Vector(out))
        }
        "histogram_fraction" => {
            let lower = evaluator.eval_scalar(argument(call, 0)?, ts)?;
            let upper = evaluator.eval_scalar(argument(call, 1)?, ts)?;
            let elements = evaluator.eval_vector(argument(call, 2)?, ts)?;
            let groups = group_buckets(evaluator, elements, name, 2);
            Ok(StepValue::Vector(
                groups
                    .into_iter()
                    .map(|group| Element {
                        v: bucket_fraction(lower, upper, group.buckets),
                        labels: group.labels,
                        t: ts,
                        drop_name: true,
                    })
                    .collect(),
            ))
        }
        _ => {
            // Native-histogram functions: float samples are ignored.
            let _ = evaluator.eval_vector(argument(call, 0)?, ts)?;
            Ok(StepValue::Vector(Vec::new()))
        }
    }
}
