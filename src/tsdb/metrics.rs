//! Self-metrics of one store instance. Counters are per instance (not
//! statics) so tests that open several stores in one process see their own.

use crate::telemetry::{Counter, Exposition, Gauge, Histogram};

#[derive(Debug, Default)]
pub struct TsdbMetrics {
    pub samples_appended: Counter,
    pub samples_out_of_order: Counter,
    pub samples_duplicate_timestamp: Counter,
    pub samples_duplicate: Counter,
    pub series_created: Counter,
    /// Appender batches received by the commit thread.
    pub batches: Counter,
    /// Write transactions committed (one per group of batches).
    pub commits: Counter,
    pub fsyncs: Counter,
    pub commit_failures: Counter,
    pub commit_duration: Histogram,
    pub chunks_sealed: Counter,
    pub log_records_deleted: Counter,
    pub database_bytes: Gauge,
    pub log_bytes: Gauge,
    pub head_series: Gauge,
    pub poisoned: Gauge,
    pub retention_runs: Counter,
    pub retention_partitions_deleted: Counter,
}

impl TsdbMetrics {
    pub fn render(&self, out: &mut Exposition) {
        out.gauge(
            "guardia_tsdb_head_series",
            "Series held in the head.",
            self.head_series.get(),
        );
        out.counter(
            "guardia_ingest_samples_total",
            "Samples appended durably.",
            self.samples_appended.get(),
        );
        out.counter_vec(
            "guardia_ingest_rejected_samples_total",
            "Samples rejected at commit, by reason.",
            "reason",
            &[
                ("out_of_order", self.samples_out_of_order.get()),
                (
                    "duplicate_timestamp",
                    self.samples_duplicate_timestamp.get(),
                ),
            ],
        );
        out.counter(
            "guardia_ingest_out_of_order_samples_total",
            "Samples older than the newest sample of their series.",
            self.samples_out_of_order.get(),
        );
        out.counter(
            "guardia_ingest_duplicate_samples_total",
            "Samples identical to a stored one (idempotent, not stored again).",
            self.samples_duplicate.get(),
        );
        out.counter(
            "guardia_tsdb_series_created_total",
            "Series created.",
            self.series_created.get(),
        );
        out.counter(
            "guardia_tsdb_commit_batches_total",
            "Appender batches committed; several share one commit under load.",
            self.batches.get(),
        );
        out.counter(
            "guardia_tsdb_commits_total",
            "Write transactions committed.",
            self.commits.get(),
        );
        out.counter(
            "guardia_tsdb_fsyncs_total",
            "Durable (fsync'd) commits.",
            self.fsyncs.get(),
        );
        out.counter(
            "guardia_tsdb_commit_failures_total",
            "Failed write transactions (each poisons the store).",
            self.commit_failures.get(),
        );
        out.histogram(
            "guardia_tsdb_commit_duration_seconds",
            "Time to build and commit one write transaction.",
            &self.commit_duration,
        );
        out.counter(
            "guardia_tsdb_chunks_sealed_total",
            "Head chunks sealed into the chunks table.",
            self.chunks_sealed.get(),
        );
        out.counter(
            "guardia_tsdb_log_records_deleted_total",
            "Log records truncated after their samples were sealed.",
            self.log_records_deleted.get(),
        );
        out.gauge(
            "guardia_tsdb_database_bytes",
            "Size of the redb file.",
            self.database_bytes.get(),
        );
        out.gauge(
            "guardia_tsdb_log_bytes",
            "Bytes of log records not yet truncated.",
            self.log_bytes.get(),
        );
        out.gauge(
            "guardia_tsdb_poisoned",
            "1 after a failed commit: writes are refused until restart.",
            self.poisoned.get(),
        );
        out.counter(
            "guardia_tsdb_retention_runs_total",
            "Retention passes applied.",
            self.retention_runs.get(),
        );
        out.counter(
            "guardia_tsdb_retention_partitions_deleted_total",
            "Partitions deleted by retention.",
            self.retention_partitions_deleted.get(),
        );
    }
}
