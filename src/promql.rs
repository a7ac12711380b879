//! PromQL evaluation over `storage::Querier` (in progress).
