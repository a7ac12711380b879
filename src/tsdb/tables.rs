//! The redb tables of the store and the rows of `meta`. Byte layouts of the
//! values are in `encoding.rs` and `docs/format.md`.

use redb::TableDefinition;

/// On-disk format version written to `meta`. A store written by a newer
/// guardia (higher number) is refused rather than misread. Version 2 added
/// the `blocks` table (compacted partitions) and the `symbols` table (series
/// rows hold symbol ids instead of label text); a version-1 store is
/// upgraded in place on open (its series rows are re-encoded).
pub const FORMAT_VERSION: u64 = 2;

/// Name of the database file inside the storage directory.
pub const DATABASE_FILE_NAME: &str = "guardia.redb";

/// `meta`: row name → u64 little endian (see `META_*`).
pub const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// `series`: persistent series id → label set as symbol ids (`symbols.rs`).
pub const SERIES: TableDefinition<u64, &[u8]> = TableDefinition::new("series");
/// `series_tail`: series id → newest sealed sample and oldest time.
pub const SERIES_TAIL: TableDefinition<u64, &[u8]> = TableDefinition::new("series_tail");
/// `log`: log sequence → log record (samples not yet sealed into chunks).
pub const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
/// `chunks`: 24-byte (partition, series id, mint) key → chunk value.
pub const CHUNKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("chunks");
/// `blocks`: 16-byte (partition, first series id) key → block of a
/// compacted partition (`block.rs`).
pub const BLOCKS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("blocks");
/// `symbols`: symbol id → label name or value (`symbols.rs`).
pub const SYMBOLS: TableDefinition<u64, &str> = TableDefinition::new("symbols");
/// `partitions`: partition start → totals of its chunks.
pub const PARTITIONS: TableDefinition<i64, &[u8]> = TableDefinition::new("partitions");
/// `metadata`: metric family name → postcard-encoded `MetricMetadata`.
pub const METADATA: TableDefinition<&str, &[u8]> = TableDefinition::new("metadata");

pub const META_FORMAT_VERSION: &str = "format_version";
pub const META_NEXT_SERIES_ID: &str = "next_series_id";
pub const META_NEXT_LOG_SEQ: &str = "next_log_seq";
/// Samples older than this (i64 stored as u64 bits) are invisible: set by
/// retention so that a partially deleted range never shows.
pub const META_RETENTION_FLOOR: &str = "retention_floor";
/// `rules_state`: rule group key (file, NUL, group name) → postcard-encoded
/// active alerts of the group (see `rules::group`).
pub const RULES_STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rules_state");

/// `incidents`: SLA incidents and their timelines (see `sla`).
pub const INCIDENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("incidents");

/// `outbox`: notifications not yet delivered, and the notifier's
/// aggregation-group state (see `notify`).
pub const OUTBOX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbox");

/// `silences`: Alertmanager-shaped silences (see `notify`).
pub const SILENCES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("silences");
