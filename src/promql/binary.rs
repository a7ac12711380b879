//! Binary operators: arithmetic, comparison (filtering or `bool`), the set
//! operators `and`/`or`/`unless`, vector matching with `on`/`ignoring` and
//! `group_left`/`group_right`, and the `fill`/`fill_left`/`fill_right`
//! modifiers for unmatched series.

use std::collections::{HashMap, HashSet};

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::QueryError;
use super::eval::Evaluator;
use super::value::{Element, StepValue};
use crate::model::{Label, Labels};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Operator {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Equal,
    NotEqual,
    Greater,
    Less,
    GreaterEqual,
    LessEqual,
    And,
    Or,
    Unless,
}

impl Operator {
    pub(crate) fn parse(text: &str) -> Result<Operator, QueryError> {
        Ok(match text {
            "+" => Operator::Add,
            "-" => Operator::Sub,
            "*" => Operator::Mul,
            "/" => Operator::Div,
            "%" => Operator::Mod,
            "^" => Operator::Pow,
            "atan2" => Operator::Atan2,
            "==" => Operator::Equal,
            "!=" => Operator::NotEqual,
            ">" => Operator::Greater,
            "<" => Operator::Less,
            ">=" => Operator::GreaterEqual,
            "<=" => Operator::LessEqual,
            "and" => Operator::And,
            "or" => Operator::Or,
            "unless" => Operator::Unless,
            other => {
                return Err(QueryError::Execution(format!(
                    "operator {other:?} not allowed in binary expression"
                )));
            }
        })
    }

    pub(crate) fn is_comparison(self) -> bool {
        matches!(
            self,
            Operator::Equal
                | Operator::NotEqual
                | Operator::Greater
                | Operator::Less
                | Operator::GreaterEqual
                | Operator::LessEqual
        )
    }

    pub(crate) fn is_set(self) -> bool {
        matches!(self, Operator::And | Operator::Or | Operator::Unless)
    }
}

/// Applies an arithmetic or comparison operator to two floats. For
/// comparisons the second value says whether the pair passes the filter.
pub(crate) fn apply(operator: Operator, lhs: f64, rhs: f64) -> (f64, bool) {
    match operator {
        Operator::Add => (lhs + rhs, true),
        Operator::Sub => (lhs - rhs, true),
        Operator::Mul => (lhs * rhs, true),
        Operator::Div => (lhs / rhs, true),
        Operator::Mod => (lhs % rhs, true),
        Operator::Pow => (lhs.powf(rhs), true),
        Operator::Atan2 => (lhs.atan2(rhs), true),
        Operator::Equal => (lhs, lhs == rhs),
        Operator::NotEqual => (lhs, lhs != rhs),
        Operator::Greater => (lhs, lhs > rhs),
        Operator::Less => (lhs, lhs < rhs),
        Operator::GreaterEqual => (lhs, lhs >= rhs),
        Operator::LessEqual => (lhs, lhs <= rhs),
        Operator::And | Operator::Or | Operator::Unless => (lhs, true),
    }
}

pub(crate) fn eval(
    evaluator: &mut Evaluator<'_>,
    expr: &BinaryExpr,
    ts: i64,
) -> Result<StepValue, QueryError> {
    let operator = Operator::parse(&expr.op.to_string())?;
    let return_bool = expr.return_bool();
    let lhs = evaluator.eval(&expr.lhs, ts)?;
    // `and` with an empty left side needs no right side.
    if operator == Operator::And
        && let StepValue::Vector(elements) = &lhs
        && elements.is_empty()
    {
        return Ok(StepValue::Vector(Vec::new()));
    }
    let rhs = evaluator.eval(&expr.rhs, ts)?;
    match (lhs, rhs) {
        (StepValue::Scalar(left), StepValue::Scalar(right)) => {
            let (value, keep) = apply(operator, left, right);
            if operator.is_comparison() {
                Ok(StepValue::Scalar(if keep { 1.0 } else { 0.0 }))
            } else {
                Ok(StepValue::Scalar(value))
            }
        }
        (StepValue::Vector(elements), StepValue::Scalar(scalar)) => Ok(StepValue::Vector(
            vector_scalar(operator, elements, scalar, false, return_bool, ts),
        )),
        (StepValue::Scalar(scalar), StepValue::Vector(elements)) => Ok(StepValue::Vector(
            vector_scalar(operator, elements, scalar, true, return_bool, ts),
        )),
        (StepValue::Vector(left), StepValue::Vector(right)) => {
            let matching = Matching::from_expr(expr);
            if operator.is_set() {
                return Ok(StepValue::Vector(set_operation(
                    operator, left, right, &matching,
                )));
            }
            vector_vector(operator, left, right, &matching, return_bool, ts).map(StepValue::Vector)
        }
        (left, right) => Err(QueryError::Execution(format!(
            "binary operator not allowed between {} and {}",
            left.type_name(),
            right.type_name()
        ))),
    }
}

fn vector_scalar(
    operator: Operator,
    elements: Vec<Element>,
    scalar: f64,
    scalar_on_left: bool,
    return_bool: bool,
    ts: i64,
) -> Vec<Element> {
    let mut out = Vec::with_capacity(elements.len());
    for element in elements {
        let (left, right) = if scalar_on_left {
            (scalar, element.v)
        } else {
            (element.v, scalar)
        };
        let (mut value, keep) = apply(operator, left, right);
        if operator.is_comparison() {
            if return_bool {
                out.push(Element {
                    labels: element.labels,
                    t: ts,
                    v: if keep { 1.0 } else { 0.0 },
                    drop_name: true,
                });
                continue;
            }
            if !keep {
                continue;
            }
            // A filter keeps the vector's own value, whichever side it is on.
            value = element.v;
            out.push(Element {
                labels: element.labels,
                t: ts,
                v: value,
                drop_name: element.drop_name,
            });
            continue;
        }
        out.push(Element {
            labels: element.labels,
            t: ts,
            v: value,
            drop_name: true,
        });
    }
    out
}

/// How two vectors are matched.
pub(crate) struct Matching {
    /// `on(...)` when true, `ignoring(...)` (or nothing) when false.
    pub(crate) on: bool,
    pub(crate) names: Vec<String>,
    pub(crate) cardinality: Cardinality,
    pub(crate) include: Vec<String>,
    pub(crate) fill_left: Option<f64>,
    pub(crate) fill_right: Option<f64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cardinality {
    OneToOne,
    ManyToOne,
    OneToMany,
}

impl Matching {
    pub(crate) fn from_expr(expr: &BinaryExpr) -> Matching {
        let mut matching = Matching {
            on: false,
            names: Vec::new(),
            cardinality: Cardinality::OneToOne,
            include: Vec::new(),
            fill_left: None,
            fill_right: None,
        };
        if let Some(modifier) = &expr.modifier {
            match &modifier.matching {
                Some(LabelModifier::Include(labels)) => {
                    matching.on = true;
                    matching.names = labels.labels.clone();
                }
                Some(LabelModifier::Exclude(labels)) => {
                    matching.names = labels.labels.clone();
                }
                None => {}
            }
            match &modifier.card {
                VectorMatchCardinality::ManyToOne(labels) => {
                    matching.cardinality = Cardinality::ManyToOne;
                    matching.include = labels.labels.clone();
                }
                VectorMatchCardinality::OneToMany(labels) => {
                    matching.cardinality = Cardinality::OneToMany;
                    matching.include = labels.labels.clone();
                }
                _ => {}
            }
            matching.fill_left = modifier.fill_values.lhs;
            matching.fill_right = modifier.fill_values.rhs;
        }
        matching
    }

    /// The labels that identify a match group.
    pub(crate) fn group_labels(&self, labels: &Labels) -> Labels {
        if self.on {
            Labels::new(
                labels
                    .iter()
                    .filter(|label| self.names.contains(&label.name))
                    .cloned()
                    .collect(),
            )
        } else {
            Labels::new(
                labels
                    .iter()
                    .filter(|label| {
                        label.name != crate::model::METRIC_NAME && !self.names.contains(&label.name)
                    })
                    .cloned()
                    .collect(),
            )
        }
    }
}

/// Prometheus's text form of a label set: `{a="b", c="d"}`, name included.
pub(crate) fn labels_go_string(labels: &Labels) -> String {
    let mut out = String::from("{");
    for (index, label) in labels.iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        out.push_str(&label.name);
        out.push('=');
        out.push_str(&format!("{:?}", label.value));
    }
    out.push('}');
    out
}

fn set_operation(
    operator: Operator,
    left: Vec<Element>,
    right: Vec<Element>,
    matching: &Matching,
) -> Vec<Element> {
    match operator {
        Operator::And => {
            let right_groups: HashSet<Labels> = right
                .iter()
                .map(|element| matching.group_labels(&element.labels))
                .collect();
            left.into_iter()
                .filter(|element| right_groups.contains(&matching.group_labels(&element.labels)))
                .collect()
        }
        Operator::Unless => {
            let right_groups: HashSet<Labels> = right
                .iter()
                .map(|element| matching.group_labels(&element.labels))
                .collect();
            left.into_iter()
                .filter(|element| !right_groups.contains(&matching.group_labels(&element.labels)))
                .collect()
        }
        _ => {
            let left_groups: HashSet<Labels> = left
                .iter()
                .map(|element| matching.group_labels(&element.labels))
                .collect();
            let mut out = left;
            for element in right {
                if !left_groups.contains(&matching.group_labels(&element.labels)) {
                    out.push(element);
                }
            }
            out
        }
    }
}

fn vector_vector(
    operator: Operator,
    left: Vec<Element>,
    right: Vec<Element>,
    matching: &Matching,
    return_bool: bool,
    ts: i64,
) -> Result<Vec<Element>, QueryError> {
    // The "one" side is always kept on the right; group_right swaps.
    let swapped = matching.cardinality == Cardinality::OneToMany;
    let (many, one) = if swapped {
        (right, left)
    } else {
        (left, right)
    };
    // Prometheus applies the fill values after swapping sides for
    // group_right: `fill_left` always fills the "many" side.
    let fill_for_missing_one = matching.fill_right;
    let fill_for_missing_many = matching.fill_left;

    let mut one_by_group: HashMap<Labels, usize> = HashMap::with_capacity(one.len());
    for (index, element) in one.iter().enumerate() {
        let group = matching.group_labels(&element.labels);
        if let Some(previous) = one_by_group.get(&group) {
            let side = if swapped { "left" } else { "right" };
            return Err(QueryError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                labels_go_string(&group),
                labels_go_string(&one[*previous].labels),
                labels_go_string(&element.labels),
            )));
        }
        one_by_group.insert(group, index);
    }

    let drops_name = !operator.is_comparison() || return_bool;
    let mut matched_groups: HashSet<Labels> = HashSet::new();
    let mut inserted_by_group: HashMap<Labels, HashSet<Labels>> = HashMap::new();
    let mut out = Vec::new();

    for many_element in &many {
        let group = matching.group_labels(&many_element.labels);
        let one_element = one_by_group.get(&group).map(|index| &one[*index]);
        let one_value = match (one_element, fill_for_missing_one) {
            (Some(found), _) => found.v,
            (None, Some(fill)) => fill,
            (None, None) => continue,
        };
        if matching.cardinality == Cardinality::OneToOne
            && one_element.is_some()
            && !matched_groups.insert(group.clone())
        {
            {
                return Err(QueryError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)".into(),
                ));
            }
        }
        let (left_value, right_value) = if swapped {
            (one_value, many_element.v)
        } else {
            (many_element.v, one_value)
        };
        let (mut value, keep) = apply(operator, left_value, right_value);
        if operator.is_comparison() && return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let labels = result_labels(
            &many_element.labels,
            one_element.map(|e| &e.labels),
            matching,
        );
        if matching.cardinality != Cardinality::OneToOne {
            let inserted = inserted_by_group.entry(group.clone()).or_default();
            if !inserted.insert(labels.clone()) {
                return Err(QueryError::Execution(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                        .into(),
                ));
            }
        }
        matched_groups.insert(group);
        out.push(Element {
            labels,
            t: ts,
            v: value,
            drop_name: many_element.drop_name || drops_name,
        });
    }

    if let Some(fill) = fill_for_missing_many {
        let many_groups: HashSet<Labels> = many
            .iter()
            .map(|element| matching.group_labels(&element.labels))
            .collect();
        for one_element in &one {
            let group = matching.group_labels(&one_element.labels);
            if many_groups.contains(&group) {
                continue;
            }
            let (left_value, right_value) = if swapped {
                (one_element.v, fill)
            } else {
                (fill, one_element.v)
            };
            let (mut value, keep) = apply(operator, left_value, right_value);
            if operator.is_comparison() && return_bool {
                value = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            let mut labels: Vec<Label> = group.clone().into_vec();
            for name in &matching.include {
                if let Some(found) = one_element.labels.get(name) {
                    labels.retain(|label| label.name != *name);
                    labels.push(Label::new(name.clone(), found));
                }
            }
            out.push(Element {
                labels: Labels::new(labels),
                t: ts,
                v: value,
                drop_name: true,
            });
        }
    }
    Ok(out)
}

/// Labels of a result element, from the "many" side.
pub(crate) fn result_labels(many: &Labels, one: Option<&Labels>, matching: &Matching) -> Labels {
    let mut labels: Vec<Label> = if matching.cardinality == Cardinality::OneToOne {
        if matching.on {
            many.iter()
                .filter(|label| matching.names.contains(&label.name))
                .cloned()
                .collect()
        } else {
            many.iter()
                .filter(|label| !matching.names.contains(&label.name))
                .cloned()
                .collect()
        }
    } else {
        many.as_slice().to_vec()
    };
    for name in &matching.include {
        labels.retain(|label| label.name != *name);
        if let Some(value) = one.and_then(|one| one.get(name)) {
            labels.push(Label::new(name.clone(), value));
        }
    }
    Labels::new(labels)
}
