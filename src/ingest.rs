//! Decoders for data pushed or scraped into guardia: the Prometheus and
//! OpenMetrics text formats and Prometheus remote_write 1.0. Pure functions
//! over bytes; they never panic, whatever the input (fuzzed).

pub mod remote_write;
pub mod text;
