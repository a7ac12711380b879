//! PromQL evaluation over `storage::Querier`, on the AST of the
//! `promql-parser` crate, with Prometheus 3.x semantics: left-open range
//! windows, a 5 m lookback that stops at staleness markers, `offset` and `@`,
//! subqueries, delayed `__name__` removal, all aggregations, binary operators
//! and float functions. Native histograms are not supported.
//!
//! The engine evaluates an expression one step at a time: every node returns
//! its value at one timestamp, and a range query is the instant evaluation
//! repeated at every step. Selectors fetch their series once per query (the
//! whole time span they can need, worked out before evaluation) and slice
//! windows out of that in memory, so a range query does not go back to
//! storage per step. Subquery steps are memoised by absolute timestamp, which
//! lets the windows of consecutive outer steps share their inner evaluations.
//! For range queries, `range` evaluates the common subtrees (selectors, the
//! rate family, simple aggregations) per series across all steps first, with
//! sliding windows, and the step evaluator takes their values step by step.
//!
//! Code map: [`value`] (result and working types), `eval` (the step
//! evaluator, selectors, subqueries), `range` (the per-series range path), `binary` (operators and vector
//! matching), `aggregate`, `functions` (one file per family), `durations`
//! (duration arithmetic inside `[...]` and after `offset`, which the parser
//! crate does not know, rewritten before parsing).

mod aggregate;
mod binary;
mod durations;
mod eval;
mod functions;
mod range;
pub mod value;

use std::time::{Duration, Instant};

use crate::storage::{Queryable, StorageError};

pub use value::{InstantSample, RangeSeries, Value};

/// Most steps a range query may have, as in Prometheus.
pub const MAX_POINTS_PER_SERIES: i64 = 11_000;

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// How far back an instant selector looks for a sample (Prometheus: 5 m).
    pub lookback_delta_ms: i64,
    /// Wall time after which a query is abandoned.
    pub timeout: Duration,
    /// Upper bound on samples held by one query (loaded plus produced).
    pub max_samples: usize,
    /// Step of a subquery written without one (`[30m:]`); Prometheus uses the
    /// global evaluation interval, 1 m by default.
    pub default_subquery_step_ms: i64,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            lookback_delta_ms: 5 * 60 * 1000,
            timeout: Duration::from_secs(120),
            max_samples: 50_000_000,
            default_subquery_step_ms: 60 * 1000,
        }
    }
}

/// Per-query overrides.
#[derive(Clone, Debug, Default)]
pub struct QueryOptions {
    pub lookback_delta_ms: Option<i64>,
}

/// A successful answer, with Prometheus's annotations.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryResult {
    pub value: Value,
    /// Rendered as `PromQL warning: …`.
    pub warnings: Vec<String>,
    /// Rendered as `PromQL info: …`.
    pub infos: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The expression does not parse (HTTP 400 `bad_data`).
    #[error("{message}")]
    Parse { message: String },
    /// The expression parsed but cannot be evaluated (HTTP 422 `execution`).
    #[error("{0}")]
    Execution(String),
    /// The query ran longer than the engine's timeout (HTTP 503 `timeout`).
    #[error("query timed out in query execution")]
    Timeout,
    /// The query needed more samples than the engine allows (HTTP 422 `execution`).
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The PromQL engine. Cheap to share; holds only its options.
#[derive(Clone, Debug, Default)]
pub struct Engine {
    options: EngineOptions,
}

impl Engine {
    pub fn new(options: EngineOptions) -> Engine {
        Engine { options }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// Evaluates `expr` at `time_ms`.
    pub fn instant_query(
        &self,
        queryable: &dyn Queryable,
        expr: &str,
        time_ms: i64,
        options: QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        self.run(queryable, expr, time_ms, time_ms, 0, options, false, false)
    }

    /// Evaluates `expr` at `start_ms`, `start_ms + step_ms`, … up to `end_ms`.
    pub fn range_query(
        &self,
        queryable: &dyn Queryable,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        options: QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        check_range(start_ms, end_ms, step_ms)?;
        self.run(
            queryable, expr, start_ms, end_ms, step_ms, options, true, true,
        )
    }

    /// `range_query` evaluated one step at a time, without the per-series
    /// range evaluator: the reference the tests compare that evaluator with.
    #[doc(hidden)]
    pub fn range_query_step_by_step(
        &self,
        queryable: &dyn Queryable,
        expr: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        options: QueryOptions,
    ) -> Result<QueryResult, QueryError> {
        check_range(start_ms, end_ms, step_ms)?;
        self.run(
            queryable, expr, start_ms, end_ms, step_ms, options, true, false,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        queryable: &dyn Queryable,
        expr_text: &str,
        start_ms: i64,
        end_ms: i64,
        step_ms: i64,
        options: QueryOptions,
        is_range: bool,
        use_range_columns: bool,
    ) -> Result<QueryResult, QueryError> {
        let deadline = Instant::now() + self.options.timeout;
        let prepared = durations::prepare(expr_text, step_ms, end_ms - start_ms)?;
        let expr =
            promql_parser::parser::parse(&prepared.text).map_err(|message| QueryError::Parse {
                message: format!("parse error: {message}"),
            })?;
        let querier = queryable.querier()?;
        let settings = eval::Settings {
            start: start_ms,
            end: end_ms,
            step: step_ms,
            lookback: options
                .lookback_delta_ms
                .unwrap_or(self.options.lookback_delta_ms),
            default_subquery_step: self.options.default_subquery_step_ms,
            max_samples: self.options.max_samples,
            deadline,
        };
        let mut evaluator = eval::Evaluator::new(querier.as_ref(), expr_text, &prepared, settings);
        evaluator.use_range_columns = use_range_columns;
        let value = if is_range {
            evaluator.run_range(&expr)?
        } else {
            evaluator.run_instant(&expr)?
        };
        let (warnings, infos) = evaluator.take_annotations();
        Ok(QueryResult {
            value,
            warnings,
            infos,
        })
    }
}

fn check_range(start_ms: i64, end_ms: i64, step_ms: i64) -> Result<(), QueryError> {
    if step_ms <= 0 {
        return Err(QueryError::Execution(
            "zero or negative query resolution step widths are not accepted. Try a positive integer".into(),
        ));
    }
    if end_ms < start_ms {
        return Err(QueryError::Execution(
            "end timestamp must not be before start time".into(),
        ));
    }
    // Prometheus's cap, which also bounds the memory of one query.
    if (end_ms - start_ms) / step_ms > MAX_POINTS_PER_SERIES {
        return Err(QueryError::Execution(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)".into(),
        ));
    }
    Ok(())
}
