//! Values a PromQL query produces: the public result types the HTTP layer
//! renders, and the per-step working types the evaluator passes between
//! nodes (an instant vector element remembers whether its `__name__` must be
//! dropped at the end, Prometheus 3's delayed name removal).

use crate::model::{Labels, Sample, Timestamp};

/// One element of an instant vector in a query result.
#[derive(Clone, Debug, PartialEq)]
pub struct InstantSample {
    pub labels: Labels,
    pub t: Timestamp,
    pub v: f64,
}

/// One series of a range vector (matrix) in a query result.
#[derive(Clone, Debug, PartialEq)]
pub struct RangeSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

/// The result of a query, shaped as Prometheus's `resultType`.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Scalar { t: Timestamp, v: f64 },
    String { t: Timestamp, value: String },
    Vector(Vec<InstantSample>),
    Matrix(Vec<RangeSeries>),
}

impl Value {
    /// The `resultType` string of the Prometheus HTTP API.
    pub fn result_type(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// An instant-vector element while a query runs.
#[derive(Clone, Debug)]
pub(crate) struct Element {
    pub labels: Labels,
    /// Timestamp of the underlying sample (what `timestamp()` reports);
    /// the evaluation time for computed elements.
    pub t: Timestamp,
    pub v: f64,
    /// `__name__` is to be removed when the query finishes.
    pub drop_name: bool,
}

/// One series of a range vector while a query runs: the samples inside the
/// window of the current step.
#[derive(Clone, Debug)]
pub(crate) struct WindowSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub drop_name: bool,
}

/// A range vector at one evaluation step, with the window it covers, which
/// rate extrapolation needs: `(window_end - range, window_end]`.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    pub series: Vec<WindowSeries>,
    pub window_end: Timestamp,
    pub range: i64,
}

/// The value of an expression node at one evaluation step.
#[derive(Clone, Debug)]
pub(crate) enum StepValue {
    Scalar(f64),
    Str(String),
    Vector(Vec<Element>),
    Matrix(Window),
}

impl StepValue {
    pub fn type_name(&self) -> &'static str {
        match self {
            StepValue::Scalar(_) => "scalar",
            StepValue::Str(_) => "string",
            StepValue::Vector(_) => "instant vector",
            StepValue::Matrix(_) => "range vector",
        }
    }
}
