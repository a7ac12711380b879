//! Aggregation operators: `sum`, `avg`, `min`, `max`, `group`, `count`,
//! `count_values`, `stddev`, `stdvar`, `quantile`, `topk`, `bottomk`,
//! `limitk`, `limit_ratio`, with `by`/`without` grouping.

use std::collections::HashMap;

use promql_parser::parser::{AggregateExpr, Expr, LabelModifier, VectorSelector};

use super::QueryError;
use super::eval::{Evaluator, is_name_like};
use super::functions::{format_go_float, kahan_add, quantile_of};
use super::value::{Element, StepValue};
use crate::model::{Label, Labels, is_legacy_label_name};
use crate::storage::Series;

/// Which labels form a group.
struct Grouping<'a> {
    without: bool,
    names: &'a [String],
}

impl Grouping<'_> {
    /// Whether a label of this name belongs to the group key.
    fn keeps(&self, label_name: &str) -> bool {
        let listed = self.names.iter().any(|name| name == label_name);
        if self.without {
            !is_name_like(label_name) && !listed
        } else {
            listed
        }
    }

    fn group_labels(&self, labels: &Labels) -> Labels {
        Labels::new(
            labels
                .iter()
                .filter(|label| self.keeps(&label.name))
                .cloned()
                .collect(),
        )
    }

    /// The group key of `labels` as borrowed pairs (in `labels`' order),
    /// into `key`: equal keys are equal `group_labels`.
    fn group_pairs<'l>(&self, labels: &'l Labels, key: &mut Vec<(&'l str, &'l str)>) {
        key.clear();
        key.extend(
            labels
                .iter()
                .filter(|label| self.keeps(&label.name) && !label.value.is_empty())
                .map(|label| (label.name.as_str(), label.value.as_str())),
        );
    }
}

/// One group of `count_or_group_any_order`.
struct GroupTally<'l> {
    key: Vec<(&'l str, &'l str)>,
    members: usize,
    /// The member whose label set sorts first.
    first_member: &'l Labels,
}

/// `count` or `group` (`count` false) of the values a plain instant
/// selector yields, given as (position in `series`, value) in any order.
/// The groups come out in the order the general path gives for input sorted
/// by labels, the order of each group's first member; that needs one label
/// comparison per member instead of sorting all members, and no member's
/// label set is cloned.
fn count_or_group_any_order(
    grouping: &Grouping<'_>,
    series: &[Series],
    values: &[(usize, f64)],
    count: bool,
    ts: i64,
) -> Vec<Element> {
    let mut index_by_key: HashMap<Vec<(&str, &str)>, usize, foldhash::fast::RandomState> =
        HashMap::default();
    let mut groups: Vec<GroupTally<'_>> = Vec::new();
    let mut key = Vec::new();
    for (position, _) in values {
        let Some(member) = series.get(*position) else {
            continue;
        };
        grouping.group_pairs(&member.labels, &mut key);
        match index_by_key.get(key.as_slice()) {
            Some(index) => {
                let group = &mut groups[*index];
                group.members += 1;
                if member.labels < *group.first_member {
                    group.first_member = &member.labels;
                }
            }
            None => {
                index_by_key.insert(key.clone(), groups.len());
                groups.push(GroupTally {
                    key: key.clone(),
                    members: 1,
                    first_member: &member.labels,
                });
            }
        }
    }
    groups.sort_unstable_by(|a, b| a.first_member.cmp(b.first_member));
    groups
        .into_iter()
        .map(|group| Element {
            labels: Labels::new(
                group
                    .key
                    .iter()
                    .map(|(name, value)| Label::new(*name, *value))
                    .collect(),
            ),
            t: ts,
            v: if count { group.members as f64 } else { 1.0 },
            drop_name: false,
        })
        .collect()
}

/// The vector selector `expr` is, through parentheses.
fn plain_vector_selector(expr: &Expr) -> Option<&VectorSelector> {
    match expr {
        Expr::VectorSelector(selector) => Some(selector),
        Expr::Paren(paren) => plain_vector_selector(&paren.expr),
        _ => None,
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
    // `count`/`group` of a selector in an instant query: neither the
    // members' order nor their other labels can change the result, so the
    // selection skips the label sort and the members their label clones.
    // (The selector node is read by this aggregation only.)
    if matches!(operator.as_str(), "count" | "group")
        && evaluator.settings.step == 0
        && let Some(selector) = plain_vector_selector(&expr.expr)
        && let Some((series, values)) = evaluator.vector_selector_values_any_order(selector, ts)?
    {
        return Ok(StepValue::Vector(count_or_group_any_order(
            &grouping,
            &series,
            &values,
            operator == "count",
            ts,
        )));
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

/// The aggregations a [`RunningAggregate`] folds one value at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FoldKind {
    Sum,
    Avg,
    Count,
    Group,
    Min,
    Max,
    Stddev,
    Stdvar,
}

impl FoldKind {
    pub(crate) fn from_operator(operator: &str) -> Option<FoldKind> {
        Some(match operator {
            "sum" => FoldKind::Sum,
            "avg" => FoldKind::Avg,
            "count" => FoldKind::Count,
            "group" => FoldKind::Group,
            "min" => FoldKind::Min,
            "max" => FoldKind::Max,
            "stddev" => FoldKind::Stddev,
            "stdvar" => FoldKind::Stdvar,
            _ => return None,
        })
    }
}

/// An aggregation folded value by value, so a range query can aggregate
/// each step while walking its input series one after the other instead of
/// gathering every step's members first. The slice functions below are
/// folds over this type, so both paths give the same bits.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RunningAggregate {
    count: u64,
    /// Kahan sum (sum, avg before it overflows); min or max.
    sum: f64,
    compensation: f64,
    /// avg once the running sum overflowed; Welford's mean for stddev/stdvar.
    running_mean: f64,
    incremental: bool,
    aux: f64,
    aux_compensation: f64,
}

impl RunningAggregate {
    #[inline]
    pub(crate) fn add(&mut self, kind: FoldKind, value: f64) {
        self.count += 1;
        match kind {
            FoldKind::Sum => {
                (self.sum, self.compensation) = kahan_add(value, self.sum, self.compensation);
            }
            FoldKind::Count | FoldKind::Group => {}
            FoldKind::Min => {
                if self.count == 1 || self.sum.is_nan() || value < self.sum {
                    self.sum = value;
                }
            }
            FoldKind::Max => {
                if self.count == 1 || self.sum.is_nan() || value > self.sum {
                    self.sum = value;
                }
            }
            FoldKind::Avg => self.add_to_mean(value),
            FoldKind::Stddev | FoldKind::Stdvar => {
                let count = self.count as f64;
                let delta = value - (self.running_mean + self.compensation);
                (self.running_mean, self.compensation) =
                    kahan_add(delta / count, self.running_mean, self.compensation);
                (self.aux, self.aux_compensation) = kahan_add(
                    delta * (value - (self.running_mean + self.compensation)),
                    self.aux,
                    self.aux_compensation,
                );
            }
        }
    }

    /// Direct Kahan summation, switching to an incremental mean once the
    /// running sum would overflow.
    #[inline]
    fn add_to_mean(&mut self, value: f64) {
        if self.count == 1 {
            self.sum = value;
            return;
        }
        let count = self.count as f64;
        if !self.incremental {
            let (new_sum, new_compensation) = kahan_add(value, self.sum, self.compensation);
            if !new_sum.is_infinite() {
                self.sum = new_sum;
                self.compensation = new_compensation;
                return;
            }
            self.incremental = true;
            self.running_mean = self.sum / (count - 1.0);
            self.compensation /= count - 1.0;
        }
        let q = (count - 1.0) / count;
        (self.running_mean, self.compensation) =
            kahan_add(value / count, q * self.running_mean, q * self.compensation);
    }

    pub(crate) fn count(&self) -> u64 {
        self.count
    }

    pub(crate) fn finish(&self, kind: FoldKind) -> f64 {
        match kind {
            FoldKind::Sum => {
                if self.sum.is_infinite() {
                    self.sum
                } else {
                    self.sum + self.compensation
                }
            }
            FoldKind::Count => self.count as f64,
            FoldKind::Group => 1.0,
            FoldKind::Min | FoldKind::Max => {
                if self.count == 0 {
                    f64::NAN
                } else {
                    self.sum
                }
            }
            FoldKind::Avg => {
                if self.count == 0 {
                    f64::NAN
                } else if self.incremental {
                    self.running_mean + self.compensation
                } else {
                    let count = self.count as f64;
                    self.sum / count + self.compensation / count
                }
            }
            FoldKind::Stdvar => (self.aux + self.aux_compensation) / self.count as f64,
            FoldKind::Stddev => ((self.aux + self.aux_compensation) / self.count as f64).sqrt(),
        }
    }
}

fn fold_slice(kind: FoldKind, values: &[f64]) -> f64 {
    let mut running = RunningAggregate::default();
    for value in values {
        running.add(kind, *value);
    }
    running.finish(kind)
}

/// Kahan-compensated sum, as Prometheus sums.
pub(crate) fn kahan_sum(values: &[f64]) -> f64 {
    fold_slice(FoldKind::Sum, values)
}

/// Mean by direct Kahan summation, switching to an incremental mean once the
/// running sum would overflow.
pub(crate) fn mean(values: &[f64]) -> f64 {
    fold_slice(FoldKind::Avg, values)
}

/// Population variance (Welford with Kahan-compensated accumulators).
pub(crate) fn variance(values: &[f64]) -> f64 {
    fold_slice(FoldKind::Stdvar, values)
}

/// Group keys found by hashing the kept labels of a borrowed label set: a
/// key's label set is allocated once, when its group first appears, never
/// per member (a wide aggregation folds thousands of series into a few
/// groups). Groups are numbered in order of first appearance.
#[derive(Default)]
pub(crate) struct LabelGroups {
    /// Hash of a group's labels → the groups with that hash (almost always one).
    by_hash: HashMap<u64, Vec<usize>>,
    keys: Vec<Labels>,
}

impl LabelGroups {
    /// The group of `labels` restricted to the labels `keep` accepts, and
    /// whether this call created it.
    pub(crate) fn group_of(
        &mut self,
        labels: &Labels,
        keep: impl Fn(&Label) -> bool,
    ) -> (usize, bool) {
        let keep = |label: &Label| !label.value.is_empty() && keep(label);
        let mut hasher = crate::model::LabelHasher::new();
        for label in labels.iter().filter(|label| keep(label)) {
            hasher.add(&label.name, &label.value);
        }
        let hash = hasher.finish();
        let candidates = self.by_hash.entry(hash).or_default();
        for &group in candidates.iter() {
            if self.keys[group]
                .iter()
                .eq(labels.iter().filter(|label| keep(label)))
            {
                return (group, false);
            }
        }
        let group = self.keys.len();
        candidates.push(group);
        // A subset of a canonical label set is canonical.
        self.keys.push(Labels::new(
            labels.iter().filter(|label| keep(label)).cloned().collect(),
        ));
        (group, true)
    }

    /// The group keys, by group number.
    pub(crate) fn into_keys(self) -> Vec<Labels> {
        self.keys
    }
}
