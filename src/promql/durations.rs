//! Rewrites the parts of a query the `promql-parser` crate (0.11) does not
//! parse yet, before it is parsed (filled in later).

use super::QueryError;

/// A query text ready for the parser.
#[derive(Clone, Debug, Default)]
pub(crate) struct PreparedQuery {
    pub text: String,
}

pub(crate) fn prepare(text: &str, _step_ms: i64, _range_ms: i64) -> Result<PreparedQuery, QueryError> {
    Ok(PreparedQuery {
        text: text.to_string(),
    })
}

impl PreparedQuery {
    /// Whether the range selector at this node address carries `anchored`
    /// or `smoothed`.
    pub(crate) fn is_extended(&self, _selector_key: usize) -> bool {
        false
    }
}
