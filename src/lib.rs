//! guardia: one binary that scrapes and accepts Prometheus data, keeps it
//! compressed in one redb file, answers PromQL over the Prometheus HTTP API,
//! evaluates alert rules and runs SLA response clocks.
//!
//! # Code map
//!
//! Layers point downward only (DESIGN.md has the table):
//!
//! - layer 0: [`model`] (labels, samples, matchers), [`clock`] (the only
//!   reader of system time), [`telemetry`] (self-metrics), [`config`]
//! - layer 1: [`storage`] (the `Appender`/`Querier` traits), [`chunk`]
//!   (sample encodings, pure), [`ingest`] (text and remote_write decoders, pure)
//! - layer 2: [`tsdb`] (head, redb tables, commit thread, retention; the only
//!   module that touches redb)
//! - layer 3: [`promql`] (evaluation over `storage::Querier`), [`scrape`]
//!   (target manager, discovery, relabeling, scrape loops, staleness)
//! - layer 4: [`rules`] (rule files, groups, alert state, templates),
//!   [`sla`] (coverage calendars and policies: pure time math)
//! - layer 6: [`notify`] (routing tree, inhibition, silences, delivery)
//! - layer 7: [`api`] (axum routes; the one place errors become HTTP)
//! - layer 8: [`server`] (wiring, threads, shutdown) and `main.rs` (CLI)
//!
//! # Write path
//!
//! ```text
//! HTTP body ─► api::ingest (gunzip / snappy, limits)
//!           ─► ingest::text | ingest::remote_write (parse, never panics)
//!           ─► storage::Appender::append (tsdb: series lookup by label hash)
//!           ─► Appender::commit ─► tsdb commit thread (group commit:
//!              series + log record in one redb write txn, Durability::Immediate)
//!           ─► head (open chunks) updated ─► 204 to the client
//! head chunk full (120 samples or 2 h window) ─► chunk::encode ─► redb `chunks`
//!           ─► `log` truncated behind the oldest open chunk
//! ```
//!
//! # Read path
//!
//! ```text
//! HTTP query ─► api ─► promql engine ─► storage::Queryable::querier
//!           ─► tsdb querier (head snapshot + redb read txn, one MVCC view)
//!           ─► postings (label=value ─► series ids) ─► chunks decoded ─► samples
//! ```

pub mod api;
pub mod chunk;
pub mod clock;
pub mod config;
pub mod ingest;
pub mod model;
pub mod notify;
pub mod promql;
pub mod rules;
pub mod scrape;
pub mod server;
pub mod sla;
pub mod storage;
pub mod telemetry;
pub mod tsdb;
