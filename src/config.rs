//! Runtime settings: command-line flags (Prometheus-style names) and their
//! embedded defaults. The YAML configuration file arrives with the scrape
//! work; until then `--config.file` is accepted and checked to exist.

use std::path::PathBuf;
use std::time::Duration;

/// Ingest limits applied to pushed data; every one is a flag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestLimits {
    /// Largest accepted request body, after decompression.
    pub max_body_bytes: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    pub max_series_per_request: usize,
}

impl Default for IngestLimits {
    fn default() -> IngestLimits {
        IngestLimits {
            max_body_bytes: 64 << 20,
            max_labels_per_series: 64,
            max_label_name_length: 1024,
            max_label_value_length: 16 << 10,
            max_series_per_request: 1_000_000,
        }
    }
}

/// Retention settings for the storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Retention {
    /// Keep samples newer than the newest sample minus this.
    pub time: Option<Duration>,
    /// Keep the stored chunks under this many bytes.
    pub size_bytes: Option<u64>,
}

/// Where the server keeps its data and listens.
#[derive(Clone, Debug)]
pub struct ServerSettings {
    pub storage_path: PathBuf,
    pub listen_address: String,
    pub retention: Retention,
    pub ingest: IngestLimits,
    pub config_file: Option<PathBuf>,
}
