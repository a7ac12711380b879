//! Runtime settings: command-line flags (Prometheus-style names) and their
//! embedded defaults. The YAML configuration file arrives with the scrape
//! work; until then `--config.file` is accepted and checked to exist.

pub mod file;
pub mod matcher;
pub mod notifications;
pub mod sla;
pub mod time_interval;

use std::collections::BTreeMap;
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

/// PromQL engine settings; every one is a flag with Prometheus's name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// `--query.lookback-delta`: how far back an instant selector looks.
    pub lookback_delta: Duration,
    /// `--query.timeout`: wall time after which a query is abandoned.
    pub timeout: Duration,
    /// `--query.max-samples`: most samples one query may hold in memory.
    pub max_samples: usize,
}

impl Default for QueryLimits {
    fn default() -> QueryLimits {
        QueryLimits {
            lookback_delta: Duration::from_secs(5 * 60),
            timeout: Duration::from_secs(2 * 60),
            max_samples: 50_000_000,
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
    pub query: QueryLimits,
    /// Every flag of the command line as given or defaulted, for `/api/v1/status/flags`.
    pub flags: BTreeMap<String, String>,
    /// `--web.enable-lifecycle`: allow `POST /-/reload`.
    pub enable_lifecycle: bool,
    /// `--storage.cache-size`: redb's page cache in bytes.
    pub storage_cache_bytes: usize,
    /// `--web.external-url`: the URL guardia is reached at from outside
    /// (alert generator URLs, links in notifications), without a trailing
    /// slash.
    pub external_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid duration {0:?}: use Prometheus syntax such as 15d, 2h30m, 90s or 500ms")]
    InvalidDuration(String),
    #[error(
        "invalid size {0:?}: use a number with B, KB, MB, GB, TB, PB (or KiB, MiB, ...; both are powers of 1024)"
    )]
    InvalidSize(String),
}

/// Parses a Prometheus duration: units `y` (365 days), `w`, `d`, `h`, `m`,
/// `s`, `ms`, each at most once and from largest to smallest, or a bare `0`.
pub fn parse_duration(text: &str) -> Result<Duration, ConfigError> {
    const UNITS: [(&str, u64); 7] = [
        ("y", 365 * 24 * 3600 * 1000),
        ("w", 7 * 24 * 3600 * 1000),
        ("d", 24 * 3600 * 1000),
        ("h", 3600 * 1000),
        ("m", 60 * 1000),
        ("s", 1000),
        ("ms", 1),
    ];
    let invalid = || ConfigError::InvalidDuration(text.to_string());
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut next_unit = 0usize;
    let mut total_ms: u64 = 0;
    if rest.is_empty() {
        return Err(invalid());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_length = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_length];
        rest = &rest[unit_length..];
        let position = UNITS[next_unit..]
            .iter()
            .position(|(name, _)| *name == unit)
            .ok_or_else(invalid)?;
        let (_, unit_ms) = UNITS[next_unit + position];
        next_unit += position + 1;
        total_ms = number
            .checked_mul(unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    Ok(Duration::from_millis(total_ms))
}

/// Parses a byte size like Prometheus's `--storage.tsdb.retention.size`:
/// `B`, `KB`/`KiB`, `MB`/`MiB`, `GB`/`GiB`, `TB`/`TiB`, `PB`/`PiB`, `EB`/`EiB`,
/// all powers of 1024. A bare number is bytes.
pub fn parse_size(text: &str) -> Result<u64, ConfigError> {
    let invalid = || ConfigError::InvalidSize(text.to_string());
    let trimmed = text.trim();
    let digits = trimmed
        .bytes()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    if digits == 0 {
        return Err(invalid());
    }
    let number: u64 = trimmed[..digits].parse().map_err(|_| invalid())?;
    let shift = match trimmed[digits..].trim() {
        "" | "B" => 0,
        "KB" | "KiB" | "K" => 10,
        "MB" | "MiB" | "M" => 20,
        "GB" | "GiB" | "G" => 30,
        "TB" | "TiB" | "T" => 40,
        "PB" | "PiB" | "P" => 50,
        "EB" | "EiB" | "E" => 60,
        _ => return Err(invalid()),
    };
    number.checked_mul(1u64 << shift).ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_prometheus_syntax() {
        assert_eq!(
            parse_duration("15d").unwrap(),
            Duration::from_secs(15 * 86_400)
        );
        assert_eq!(parse_duration("2h30m").unwrap(), Duration::from_secs(9000));
        assert_eq!(
            parse_duration("1y").unwrap(),
            Duration::from_secs(365 * 86_400)
        );
        assert_eq!(
            parse_duration("1s500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for bad in ["", "15", "30m2h", "1h1h", "5x", "h", "1.5h", "-1d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_are_powers_of_1024() {
        assert_eq!(parse_size("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_size("10GB").unwrap(), 10 << 30);
        assert_eq!(parse_size("1TiB").unwrap(), 1 << 40);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        for bad in ["", "MB", "1.5GB", "10XB", "99999999999EB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
