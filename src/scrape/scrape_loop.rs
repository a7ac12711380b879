//! One target's scrape loop: a tokio task that waits for its stable offset
//! within the interval (a hash of the target), then every interval fetches
//! the target over HTTP (timeout, gzip, `Accept` negotiation, body size
//! limit), parses and checks the body inline (a body is milliseconds of
//! work), and stores the whole scrape with one appender commit, awaited
//! without holding a thread (`commit_then`): the samples, the synthetic
//! `up`/`scrape_*` series, and staleness markers for series that vanished.
//! A failed scrape (HTTP error, timeout, bad body, a limit exceeded) stores
//! nothing of the body: only `up 0`, the other synthetic series and stale
//! markers for every series of the previous scrape. When the loop stops
//! (target gone, reload, shutdown) it marks all its series stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::config::file::{HttpClientConfig, ScrapeConfig};
use crate::ingest::text::{
    Entry, Format, SampleBuf, TextParseError, TextParser, parse_series_text,
};
use crate::model::{LabelHasher, METRIC_NAME, MetricMetadata, Timestamp, stale_nan};
use crate::scrape::ScrapeError;
use crate::scrape::relabel::{LabelMap, relabel};
use crate::scrape::target::ScrapeTarget;
use crate::storage::{Appendable, Appender, CommitOutcome, SeriesRef, StorageError};

/// What Prometheus 3 sends: OpenMetrics preferred, then the classic text
/// format, then anything.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";

/// The synthetic series written for every scrape.
pub const SYNTHETIC_SERIES: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// What `/api/v1/targets` shows of a loop.
#[derive(Clone, Debug)]
pub struct TargetStatus {
    pub health: Health,
    pub last_error: String,
    pub last_scrape_ms: Option<Timestamp>,
    pub last_scrape_duration_seconds: f64,
    /// Scrapes done by this loop since it started: a reload that keeps the
    /// loop keeps counting.
    pub scrape_count: u64,
    /// From the last successful scrape's TYPE/HELP/UNIT lines.
    pub metadata: BTreeMap<String, MetricMetadata>,
}

impl Default for TargetStatus {
    fn default() -> TargetStatus {
        TargetStatus {
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape_ms: None,
            last_scrape_duration_seconds: 0.0,
            scrape_count: 0,
            metadata: BTreeMap::new(),
        }
    }
}

/// A running loop; dropping the handle without `stop` aborts nothing (the
/// loop ends when its stop sender is dropped, after writing stale markers).
pub struct LoopHandle {
    pub target: ScrapeTarget,
    pub status: Arc<Mutex<TargetStatus>>,
    /// Sends whether to write end-of-run staleness markers.
    stop: Option<oneshot::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl LoopHandle {
    /// Asks the loop to end. With `mark_stale` it first writes staleness
    /// markers for all its series (the target is gone); without, its series
    /// simply pause (shutdown, or a replacement loop takes over, as in
    /// Prometheus). The returned task completes when the loop is done.
    pub fn stop(mut self, mark_stale: bool) -> Option<tokio::task::JoinHandle<()>> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(mark_stale);
        }
        self.task.take()
    }
}

impl Drop for LoopHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

/// Everything a loop shares with the rest of its pool.
#[derive(Clone)]
pub struct LoopContext {
    pub config: Arc<ScrapeConfig>,
    pub client: reqwest::Client,
    pub appendable: Arc<dyn Appendable>,
    pub clock: Arc<dyn Clock>,
}

pub fn start_loop(target: ScrapeTarget, context: LoopContext) -> LoopHandle {
    let status = Arc::new(Mutex::new(TargetStatus::default()));
    let (stop_sender, stop_receiver) = oneshot::channel();
    let task = tokio::spawn(run_loop(
        target.clone(),
        context,
        status.clone(),
        stop_receiver,
    ));
    LoopHandle {
        target,
        status,
        stop: Some(stop_sender),
        task: Some(task),
    }
}

/// Builds the HTTP client of a pool from its `basic_auth`/TLS settings.
pub fn build_client(
    http: &HttpClientConfig,
    enable_compression: bool,
) -> Result<reqwest::Client, ScrapeError> {
    let mut builder =
        reqwest::Client::builder().user_agent(concat!("guardia/", env!("CARGO_PKG_VERSION")));
    if !enable_compression {
        builder = builder.no_gzip();
    }
    let tls = &http.tls_config;
    if let Some(ca_file) = &tls.ca_file {
        let pem = std::fs::read(ca_file).map_err(|error| {
            ScrapeError::Client(format!(
                "cannot read ca_file {}: {error}",
                ca_file.display()
            ))
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
            ScrapeError::Client(format!("invalid ca_file {}: {error}", ca_file.display()))
        })?;
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let (Some(cert_file), Some(key_file)) = (&tls.cert_file, &tls.key_file) {
        let mut pem = std::fs::read(cert_file).map_err(|error| {
            ScrapeError::Client(format!(
                "cannot read cert_file {}: {error}",
                cert_file.display()
            ))
        })?;
        pem.push(b'\n');
        pem.extend(std::fs::read(key_file).map_err(|error| {
            ScrapeError::Client(format!(
                "cannot read key_file {}: {error}",
                key_file.display()
            ))
        })?);
        let identity = reqwest::Identity::from_pem(&pem).map_err(|error| {
            ScrapeError::Client(format!("invalid client certificate or key: {error}"))
        })?;
        builder = builder.identity(identity);
    }
    if tls.insecure_skip_verify {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder
        .build()
        .map_err(|error| ScrapeError::Client(error.to_string()))
}

/// Builds a scrape pool's client. It never decompresses on its own: the
/// loop asks for gzip itself (when `enable_compression` is on) and inflates
/// the body in one call with a reused decoder (`gunzip_body`), which costs
/// less than reqwest's streaming decompression with a new decoder state per
/// request.
pub fn build_scrape_client(http: &HttpClientConfig) -> Result<reqwest::Client, ScrapeError> {
    build_client(http, false)
}

/// A gzip decoder kept between bodies; its input is swapped per body.
type PooledGzipDecoder = flate2::bufread::GzDecoder<std::io::Cursor<Vec<u8>>>;

/// Decoders (each some 40 KB of inflate state and window) of finished
/// bodies. Inflating never awaits, so no more are in use at once than
/// there are runtime worker threads; the pool keeps a few.
static GZIP_DECODERS: Mutex<Vec<PooledGzipDecoder>> = Mutex::new(Vec::new());
const MAX_POOLED_GZIP_DECODERS: usize = 4;

fn body_size_limit_error(limit: u64) -> String {
    format!("body_size_limit exceeded: the response body is larger than {limit} bytes")
}

/// Inflates a gzip body (its first member, as a single-member reader
/// does) into a buffer sized for `expected_len`; `limit` (0: none) bounds
/// the inflated size, as Prometheus's `body_size_limit` does.
fn gunzip_body(compressed: Vec<u8>, limit: u64, expected_len: usize) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let pooled = GZIP_DECODERS.lock().pop();
    let mut decoder =
        pooled.unwrap_or_else(|| flate2::bufread::GzDecoder::new(std::io::Cursor::new(Vec::new())));
    decoder.reset(std::io::Cursor::new(compressed));
    let mut body = Vec::with_capacity(expected_len + expected_len / 8);
    let read = if limit > 0 {
        (&mut decoder)
            .take(limit.saturating_add(1))
            .read_to_end(&mut body)
    } else {
        decoder.read_to_end(&mut body)
    };
    // Back to the pool without the input (reset clears all stream state).
    decoder.reset(std::io::Cursor::new(Vec::new()));
    {
        let mut pool = GZIP_DECODERS.lock();
        if pool.len() < MAX_POOLED_GZIP_DECODERS {
            pool.push(decoder);
        }
    }
    match read {
        Err(error) => Err(format!("invalid gzip body: {error}")),
        Ok(_) if limit > 0 && body.len() as u64 > limit => Err(body_size_limit_error(limit)),
        Ok(_) => Ok(body),
    }
}

async fn read_secret(
    inline: &Option<String>,
    file: &Option<std::path::PathBuf>,
) -> Result<String, ScrapeError> {
    if let Some(value) = inline {
        return Ok(value.clone());
    }
    match file {
        Some(path) => tokio::fs::read_to_string(path)
            .await
            .map(|text| text.trim().to_string())
            .map_err(|error| {
                ScrapeError::Client(format!("cannot read {}: {error}", path.display()))
            }),
        None => Ok(String::new()),
    }
}

/// Adds basic auth or the `Authorization` header; credential files are
/// read on every request so that rotated secrets are picked up.
pub async fn authorize(
    request: reqwest::RequestBuilder,
    http: &HttpClientConfig,
) -> Result<reqwest::RequestBuilder, ScrapeError> {
    let mut request = request;
    if let Some(basic) = &http.basic_auth {
        let password = read_secret(&basic.password, &basic.password_file).await?;
        request = request.basic_auth(&basic.username, Some(password));
    }
    if let Some(authorization) = &http.authorization {
        let credentials =
            read_secret(&authorization.credentials, &authorization.credentials_file).await?;
        request = request.header(
            AUTHORIZATION,
            format!("{} {credentials}", authorization.credentials_type),
        );
    }
    Ok(request)
}

struct Fetched {
    body: Vec<u8>,
    content_type: String,
}

/// Most bytes a body buffer is given up front (a `Content-Length` is the
/// server's word, not a size to trust with memory).
const MAX_PRESIZED_BODY_BYTES: usize = 16 << 20;

/// Fetches one body. `expected_len` (the last body's size) sizes the buffer
/// so that it is not regrown and copied chunk after chunk.
async fn fetch(
    target: &ScrapeTarget,
    context: &LoopContext,
    expected_len: usize,
) -> Result<Fetched, String> {
    let request = context
        .client
        .get(&target.scrape_url)
        .header(ACCEPT, ACCEPT_HEADER)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", target.timeout.as_secs_f64()),
        )
        .timeout(target.timeout);
    let request = if context.config.enable_compression {
        request.header(ACCEPT_ENCODING, "gzip")
    } else {
        request
    };
    let request = authorize(request, &context.config.http_client)
        .await
        .map_err(|error| error.to_string())?;
    let timeout_text = format!("{}s", target.timeout.as_secs_f64());
    let describe = |error: reqwest::Error| {
        if error.is_timeout() {
            format!("scrape timeout: no complete response within {timeout_text}")
        } else {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(inner) = source {
                text.push_str(": ");
                text.push_str(&inner.to_string());
                source = inner.source();
            }
            text
        }
    };
    let work = async {
        let mut response = request.send().await.map_err(describe)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(format!("server returned HTTP status {}", response.status()));
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_string();
        let gzipped = response
            .headers()
            .get(CONTENT_ENCODING)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|encoding| {
                let encoding = encoding.trim();
                encoding.eq_ignore_ascii_case("gzip") || encoding.eq_ignore_ascii_case("x-gzip")
            });
        let limit = context.config.body_size_limit;
        // A gzip body arrives at a fraction of its inflated size; the
        // limit applies to both (a compressed body over it cannot inflate
        // to less, but for a few bytes of incompressible data).
        let download_capacity = if gzipped {
            response
                .content_length()
                .map_or(expected_len / 4, |length| length as usize)
        } else {
            expected_len + expected_len / 8
        };
        let mut downloaded = Vec::with_capacity(download_capacity.min(MAX_PRESIZED_BODY_BYTES));
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if limit > 0 && (downloaded.len() + chunk.len()) as u64 > limit {
                return Err(body_size_limit_error(limit));
            }
            downloaded.extend_from_slice(&chunk);
        }
        let body = if gzipped {
            gunzip_body(downloaded, limit, expected_len)?
        } else {
            downloaded
        };
        Ok(Fetched { body, content_type })
    };
    match tokio::time::timeout(target.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "scrape timeout: no complete response within {timeout_text}"
        )),
    }
}

/// `CachedLine::reference` of a line whose series has no ref yet.
const NO_REF: SeriesRef = SeriesRef::MAX;

/// `CachedLine::flags`: relabeling drops the line.
const LINE_DROPPED: u8 = 1;
/// `CachedLine::flags`: its last sample counts for staleness (not an
/// explicit timestamp, or `track_timestamps_staleness`).
const LINE_TRACKED: u8 = 2;
/// `CachedLine::flags`: the scrape that last saw it also found it tracked
/// in the last successful scrape before (it is not new).
const LINE_SEEN_BEFORE: u8 = 4;

/// What one exposition series (name and labels as written) became, and
/// when it was last seen: the scrape cache and the staleness tracking in
/// 24 bytes (plus its 16-byte key) per line.
#[derive(Clone, Copy)]
struct CachedLine {
    /// Hash of the final label set (target labels merged, relabeled).
    label_hash: u64,
    /// `SeriesRef`, or `NO_REF` until the store knows the series (a new
    /// series gets its ref on the scrape after the one that created it).
    reference: SeriesRef,
    /// Generation of the newest scrape that saw the line.
    last_seen_generation: u32,
    flags: u8,
}

/// A 128-bit hash of a line's series text (see `line_key`); the low half is
/// the table hash, both halves are compared.
#[derive(Clone, Copy, PartialEq, Eq)]
struct LineKey {
    low: u64,
    high: u64,
}

impl std::hash::Hash for LineKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.low);
    }
}

/// Passes an already-uniform 64-bit key half through as the hash.
#[derive(Default, Clone, Copy)]
struct LineKeyHasher(u64);

impl std::hash::Hasher for LineKeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `LineKey` is hashed here; fold anything else anyway.
        for byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*byte);
        }
    }
    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type LineMap = HashMap<LineKey, CachedLine, std::hash::BuildHasherDefault<LineKeyHasher>>;
type FastHashMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A final label set kept for a staleness marker: sorted (name, value) pairs.
type OwnedLabelPairs = Box<[(Box<str>, Box<str>)]>;

/// A loop's memory between scrapes, as Prometheus's scrape cache: a line
/// seen before skips label building, target-label merging, relabeling,
/// label checks, hashing and the head lookup, and is appended by ref.
/// Staleness is tracked by generation numbers in the same entries instead
/// of building and diffing a set of label sets per scrape: a line last seen
/// by the previous successful scrape but not by this one has vanished.
#[derive(Default)]
pub struct ScrapeCache {
    /// Keys hash the text instead of storing it: the cache stays small and
    /// a lookup is one memory access (comparing stored texts cost more than
    /// the rest of the fast path, in cache misses).
    lines: LineMap,
    /// Final labels of tracked series that have no ref yet, by label hash:
    /// what their staleness marker needs. Empty in steady state.
    pending_labels: FastHashMap<u64, OwnedLabelPairs>,
    /// Refs of the synthetic `up`/`scrape_*` series, in `SYNTHETIC_SERIES` order.
    synthetic: [Option<SeriesRef>; SYNTHETIC_SERIES.len()],
    /// Of the scrape under way (or the last one); starts at 1.
    generation: u32,
    /// Of the last scrape stored successfully; 0 when none (or it failed
    /// since, which ended every series).
    last_success_generation: u32,
    /// Newest timestamp this loop stored, so markers never go backwards.
    last_timestamp: Timestamp,
    /// Fingerprint of the metadata lines stored last; unchanged metadata is
    /// neither rebuilt nor stored again.
    metadata_fingerprint: Option<u64>,
    /// The store's `series_refs_generation` the kept refs were taken
    /// under; when it moves (retention removed series) every ref is dropped.
    refs_generation: u64,
    /// Size of the last body, to size the next one's buffer at once.
    last_body_len: usize,
    /// Samples the last scrape queued, to size the next batch at once.
    last_batch_samples: usize,
    /// Lines of `lines` that the scrape under way has seen (marked with
    /// its generation). When it equals `lines.len()` after a successful
    /// body, no line vanished: the two walks over every line that find
    /// vanished series and forget them are skipped (the steady state).
    lines_seen_this_scrape: usize,
}

impl ScrapeCache {
    /// Drops every kept series ref (the store removed series, so a ref may
    /// no longer name its series); lines find their refs again by labels.
    fn forget_refs(&mut self) {
        for line in self.lines.values_mut() {
            line.reference = NO_REF;
        }
        self.synthetic = Default::default();
    }

    /// Caches `line` (marked seen by the scrape under way) under `key`.
    fn insert_seen_line(&mut self, key: LineKey, line: CachedLine) {
        let replaced = self.lines.insert(key, line);
        if replaced.is_none_or(|old| old.last_seen_generation != line.last_seen_generation) {
            self.lines_seen_this_scrape += 1;
        }
    }

    /// Whether every cached line was seen by the scrape under way.
    fn every_line_seen(&self) -> bool {
        self.lines_seen_this_scrape == self.lines.len()
    }

    /// Number of exposition lines the loop remembers.
    pub fn cached_lines(&self) -> usize {
        self.lines.len()
    }

    /// Whether `line` was a tracked series of the last successful scrape,
    /// judged before the current scrape touched it.
    fn was_tracked_in_last_success(&self, line: &CachedLine) -> bool {
        line_was_tracked_in(line, self.last_success_generation)
    }

    /// Series of the last successful scrape that the current scrape has not
    /// written (all of them with `scrape_failed`), one per label hash: the
    /// series that get a staleness marker. Lines of the same final series
    /// count once, and not at all while one of them is still written.
    fn vanished_series(&self, scrape_failed: bool) -> Vec<(u64, SeriesRef)> {
        let generation = self.generation;
        let mut vanished: Vec<(u64, SeriesRef)> = Vec::new();
        for line in self.lines.values() {
            let tracked_before = if line.last_seen_generation == generation {
                scrape_failed && line.flags & LINE_SEEN_BEFORE != 0
            } else {
                self.was_tracked_in_last_success(line)
            };
            if tracked_before {
                vanished.push((line.label_hash, line.reference));
            }
        }
        if vanished.is_empty() {
            return vanished;
        }
        vanished.sort_unstable_by_key(|(label_hash, _)| *label_hash);
        vanished.dedup_by_key(|(label_hash, _)| *label_hash);
        if !scrape_failed {
            let still_written: std::collections::HashSet<u64> = self
                .lines
                .values()
                .filter(|line| {
                    line.last_seen_generation == generation
                        && line.flags & (LINE_DROPPED | LINE_TRACKED) == LINE_TRACKED
                })
                .map(|line| line.label_hash)
                .collect();
            vanished.retain(|(label_hash, _)| !still_written.contains(label_hash));
        }
        vanished
    }
}

/// Whether `line` was a tracked series of the successful scrape
/// `last_success_generation` (0: none).
#[inline]
fn line_was_tracked_in(line: &CachedLine, last_success_generation: u32) -> bool {
    line.flags & (LINE_DROPPED | LINE_TRACKED) == LINE_TRACKED
        && line.last_seen_generation == last_success_generation
        && last_success_generation != 0
}

/// Fixed seeds: the cache lives in memory only, but fixed seeds make a
/// collision (which would need two distinct series of one target to agree
/// on both independent 64-bit halves, odds about n²/2¹²⁹) reproducible.
const LINE_KEY_SEED_LOW: u64 = 0x9e37_79b9_7f4a_7c15;
const LINE_KEY_SEED_HIGH: u64 = 0xc2b2_ae3d_27d4_eb4f;
/// Mixed into both seeds for OpenMetrics bodies: a series text is only
/// known to the parser's shortcut within the format it was parsed in.
const LINE_KEY_OPENMETRICS_TWEAK: u64 = 0x6f70_656e_6d65_7472;

/// The cache key of a sample's series as written (the parser's
/// `SampleBuf::series_text`, as Prometheus keys its scrape cache by the
/// raw series bytes), hashed twice with independent seeds.
fn line_key(series_text: &str, format: Format) -> LineKey {
    use std::hash::BuildHasher;
    let tweak = match format {
        Format::OpenMetrics => LINE_KEY_OPENMETRICS_TWEAK,
        Format::Prometheus => 0,
    };
    let text = series_text.as_bytes();
    LineKey {
        low: foldhash::quality::FixedState::with_seed(LINE_KEY_SEED_LOW ^ tweak).hash_one(text),
        high: foldhash::quality::FixedState::with_seed(LINE_KEY_SEED_HIGH ^ tweak).hash_one(text),
    }
}

fn pairs_hash(pairs: &[(&str, &str)]) -> u64 {
    let mut hasher = LabelHasher::new();
    for (name, value) in pairs {
        hasher.add(name, value);
    }
    hasher.finish()
}

/// Adds the target's labels to a scraped series, as Prometheus does:
/// with `honor_labels` the scraped value wins; otherwise the target's does
/// and the scraped one moves to `exported_<name>`.
fn merge_target_labels(labels: &mut LabelMap, target: &ScrapeTarget, honor_labels: bool) {
    for label in target.labels.iter() {
        if honor_labels {
            labels
                .entry(label.name.clone())
                .or_insert_with(|| label.value.clone());
            continue;
        }
        if let Some(scraped_value) = labels.remove(&label.name) {
            let mut exported = format!("exported_{}", label.name);
            while labels.contains_key(&exported) {
                exported = format!("exported_{exported}");
            }
            labels.insert(exported, scraped_value);
        }
        labels.insert(label.name.clone(), label.value.clone());
    }
}

fn check_label_limits(config: &ScrapeConfig, labels: &LabelMap) -> Result<(), String> {
    let metric = labels.get(METRIC_NAME).map_or("", String::as_str);
    if config.label_limit > 0 && labels.len() as u64 > config.label_limit {
        return Err(format!(
            "label_limit exceeded (metric: {metric}, number of labels: {}, limit: {})",
            labels.len(),
            config.label_limit
        ));
    }
    for (name, value) in labels {
        if config.label_name_length_limit > 0 && name.len() as u64 > config.label_name_length_limit
        {
            return Err(format!(
                "label_name_length_limit exceeded (metric: {metric}, label name: {name}, length: {}, limit: {})",
                name.len(),
                config.label_name_length_limit
            ));
        }
        if config.label_value_length_limit > 0
            && value.len() as u64 > config.label_value_length_limit
        {
            return Err(format!(
                "label_value_length_limit exceeded (metric: {metric}, label name: {name}, value length: {}, limit: {})",
                value.len(),
                config.label_value_length_limit
            ));
        }
    }
    Ok(())
}

/// The final labels of a parsed sample: scraped labels (empty values
/// dropped), target labels merged, `metric_relabel_configs` applied.
/// `None` when relabeling drops the sample or leaves no metric name.
fn final_labels(
    sample: &SampleBuf<'_>,
    target: &ScrapeTarget,
    config: &ScrapeConfig,
) -> Option<LabelMap> {
    let mut labels: LabelMap = LabelMap::new();
    labels.insert(METRIC_NAME.to_string(), sample.metric_name().to_string());
    for (name, value) in sample.labels() {
        if !value.is_empty() {
            labels.insert(name.to_string(), value.to_string());
        }
    }
    merge_target_labels(&mut labels, target, config.honor_labels);
    if !config.metric_relabel_configs.is_empty()
        && !relabel(&config.metric_relabel_configs, &mut labels)
    {
        return None;
    }
    if labels.get(METRIC_NAME).is_none_or(String::is_empty) {
        return None;
    }
    Some(labels)
}

/// What the body of a successful scrape put into the appender.
struct AppendedScrape {
    scraped: u64,
    post_relabel: u64,
    series_added: u64,
    /// The metadata and its fingerprint when it differs from the last stored.
    changed_metadata: Option<(BTreeMap<String, MetricMetadata>, u64)>,
}

/// The error a full parse would have reported: `sample_error`, from the
/// pass that skipped metadata lines, unless a metadata line before it is
/// bad (`metadata_parser`, at the start of the same body, finds that).
fn first_parse_error(sample_error: TextParseError, mut metadata_parser: TextParser<'_>) -> String {
    let mut first = sample_error;
    loop {
        match metadata_parser.next_metadata() {
            Ok(Some(line)) if line.line_number <= first.line_number => {}
            Ok(_) => break,
            Err(metadata_error) => {
                // On the same line (the last, missing OpenMetrics `# EOF`)
                // the full parse meets the metadata line's error first.
                if metadata_error.line_number <= first.line_number {
                    first = metadata_error;
                }
                break;
            }
        }
    }
    format!("parse error: {first}")
}

/// Parses the body and queues its samples in `appender`. On an error the
/// caller discards the appender, so nothing partial of the scrape is
/// stored; the cache may have learnt lines, which stay true.
fn append_scrape_body(
    fetched: &Fetched,
    target: &ScrapeTarget,
    config: &ScrapeConfig,
    cache: &mut ScrapeCache,
    appender: &mut dyn Appender,
    scrape_time: Timestamp,
) -> Result<AppendedScrape, String> {
    let generation = cache.generation;
    cache.lines_seen_this_scrape = 0;
    let format = Format::from_content_type(&fetched.content_type);
    let mut parser = TextParser::from_bytes(&fetched.body, format)
        .map_err(|error| format!("parse error: {error}"))?;
    // Metadata lines are only hashed on the way; they are read (second
    // pass, below) when the hash says they changed.
    parser.fingerprint_comment_lines();
    let mut sample = SampleBuf::new();
    let last_success_generation = cache.last_success_generation;
    let mut appended = AppendedScrape {
        scraped: 0,
        post_relabel: 0,
        series_added: 0,
        changed_metadata: None,
    };
    let sample_limit_error = || {
        format!(
            "sample_limit exceeded: more than {} samples after metric relabeling",
            config.sample_limit
        )
    };
    loop {
        // Set by the parser's callback: the key of the series text it
        // offered, when the cache can take the line without its labels.
        let mut offered_key: Option<LineKey> = None;
        let lines = &cache.lines;
        let entry = parser.next_entry_with_known_series(&mut sample, &mut |series_text| {
            let key = line_key(series_text, format);
            offered_key = Some(key);
            // Lines the slow path must see again (no ref yet) are
            // parsed in full; the shortcut only serves lines whose
            // fate is settled: dropped, or appended by ref.
            lines
                .get(&key)
                .is_some_and(|line| line.flags & LINE_DROPPED != 0 || line.reference != NO_REF)
        });
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => return Err(first_parse_error(error, parser.rewound())),
        };
        match entry {
            None => break,
            // Not returned while comment lines are fingerprinted.
            Some(Entry::Metadata(_)) => {}
            Some(Entry::Sample) => {
                appended.scraped += 1;
                let explicit = config.honor_timestamps && sample.timestamp_ms().is_some();
                let timestamp = match sample.timestamp_ms() {
                    Some(written) if explicit => written,
                    _ => scrape_time,
                };
                let tracked_flag = if !explicit || config.track_timestamps_staleness {
                    LINE_TRACKED
                } else {
                    0
                };
                let value = sample.value();
                let mut labels_skipped = sample.labels_skipped();
                let line_key = match offered_key {
                    Some(offered) if labels_skipped => offered,
                    // A full parse's series text can differ from the text
                    // offered (which runs to the line's last `}`).
                    _ => line_key(sample.series_text(), format),
                };
                // Whether the line was a tracked series of the last
                // successful scrape, decided once per scrape (a line written
                // twice keeps what its first sighting found).
                let mut seen_before = false;
                // One probe for the fast path: the entry is updated in place.
                if let Some(entry) = cache.lines.get_mut(&line_key) {
                    let line = *entry;
                    let first_sighting = usize::from(line.last_seen_generation != generation);
                    seen_before = if line.last_seen_generation == generation {
                        line.flags & LINE_SEEN_BEFORE != 0
                    } else {
                        line_was_tracked_in(&line, last_success_generation)
                    };
                    if line.flags & LINE_DROPPED != 0 {
                        entry.last_seen_generation = generation;
                        cache.lines_seen_this_scrape += first_sighting;
                        continue;
                    }
                    if line.reference != NO_REF {
                        appended.post_relabel += 1;
                        if config.sample_limit > 0 && appended.post_relabel > config.sample_limit {
                            return Err(sample_limit_error());
                        }
                        match appender.append_ref(line.reference, timestamp, value) {
                            Ok(()) => {
                                entry.last_seen_generation = generation;
                                cache.lines_seen_this_scrape += first_sighting;
                                entry.flags =
                                    tracked_flag | if seen_before { LINE_SEEN_BEFORE } else { 0 };
                                if tracked_flag != 0 && !seen_before {
                                    appended.series_added += 1;
                                }
                                continue;
                            }
                            // A ref the store refuses: take the slow path,
                            // which appends by labels.
                            Err(error) => {
                                tracing::debug!(%error, target = %target.scrape_url, "series ref refused, appending by labels");
                                appended.post_relabel -= 1;
                                if labels_skipped {
                                    // The parser skipped this line's labels;
                                    // its series text is known, so parse
                                    // them now rather than lose the sample.
                                    let series_text = sample.series_text();
                                    parse_series_text(series_text, &mut sample)
                                        .map_err(|error| format!("parse error: {error}"))?;
                                    labels_skipped = false;
                                }
                            }
                        }
                    }
                }
                if labels_skipped {
                    // Not reached: the parser skips labels only for lines the
                    // cache holds settled, and those were handled above.
                    tracing::debug!(target = %target.scrape_url, "line without labels missing from the scrape cache");
                    continue;
                }
                let Some(labels) = final_labels(&sample, target, config) else {
                    cache.insert_seen_line(
                        line_key,
                        CachedLine {
                            label_hash: 0,
                            reference: NO_REF,
                            last_seen_generation: generation,
                            flags: LINE_DROPPED,
                        },
                    );
                    continue;
                };
                appended.post_relabel += 1;
                if config.sample_limit > 0 && appended.post_relabel > config.sample_limit {
                    return Err(sample_limit_error());
                }
                check_label_limits(config, &labels)?;
                let pairs: Vec<(&str, &str)> = labels
                    .iter()
                    .map(|(name, value)| (name.as_str(), value.as_str()))
                    .collect();
                let reference = match appender.append_and_get_ref(&pairs, timestamp, value) {
                    Ok(reference) => reference,
                    Err(error) => {
                        // Not cached: the line takes this path (and is refused) each time.
                        tracing::debug!(%error, target = %target.scrape_url, "scraped sample refused");
                        continue;
                    }
                };
                let label_hash = pairs_hash(&pairs);
                cache.insert_seen_line(
                    line_key,
                    CachedLine {
                        label_hash,
                        reference: reference.unwrap_or(NO_REF),
                        last_seen_generation: generation,
                        flags: tracked_flag | if seen_before { LINE_SEEN_BEFORE } else { 0 },
                    },
                );
                if reference.is_some() {
                    cache.pending_labels.remove(&label_hash);
                } else if tracked_flag != 0 {
                    cache.pending_labels.entry(label_hash).or_insert_with(|| {
                        pairs
                            .iter()
                            .map(|(name, value)| (Box::from(*name), Box::from(*value)))
                            .collect()
                    });
                }
                if tracked_flag != 0 && !seen_before {
                    appended.series_added += 1;
                }
            }
        }
    }
    let fingerprint = parser.comment_fingerprint();
    if cache.metadata_fingerprint != Some(fingerprint) {
        let mut metadata: BTreeMap<String, MetricMetadata> = BTreeMap::new();
        let mut metadata_parser = parser.rewound();
        while let Some(line) = metadata_parser
            .next_metadata()
            .map_err(|error| format!("parse error: {error}"))?
        {
            line.apply_to(metadata.entry(line.metric_name.to_string()).or_default());
        }
        for (metric, family_metadata) in &metadata {
            appender.set_metadata(metric, family_metadata);
        }
        appended.changed_metadata = Some((metadata, fingerprint));
    }
    Ok(appended)
}

fn synthetic_pairs(target: &ScrapeTarget, name: &str) -> Vec<(String, String)> {
    let mut labels: LabelMap = target
        .labels
        .iter()
        .map(|label| (label.name.clone(), label.value.clone()))
        .collect();
    labels.insert(METRIC_NAME.to_string(), name.to_string());
    labels.into_iter().collect()
}

/// Appends by ref when the ref is known and still valid, else by labels
/// (learning the ref when the store has one).
fn append_synthetic(
    appender: &mut dyn Appender,
    reference: &mut Option<SeriesRef>,
    target: &ScrapeTarget,
    name: &str,
    timestamp: Timestamp,
    value: f64,
) {
    if let Some(known) = *reference
        && appender.append_ref(known, timestamp, value).is_ok()
    {
        return;
    }
    let pairs = synthetic_pairs(target, name);
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    *reference = appender
        .append_and_get_ref(&borrowed, timestamp, value)
        .ok()
        .flatten();
}

/// Writes the staleness markers of `vanished` (label hash, ref) series.
fn append_markers(
    appender: &mut dyn Appender,
    cache: &ScrapeCache,
    vanished: &[(u64, SeriesRef)],
    timestamp: Timestamp,
) {
    for (label_hash, reference) in vanished {
        if *reference != NO_REF {
            // A ref the store no longer knows names a deleted series: nothing to end.
            let _ = appender.append_ref(*reference, timestamp, stale_nan());
        } else if let Some(labels) = cache.pending_labels.get(label_hash) {
            let borrowed: Vec<(&str, &str)> = labels
                .iter()
                .map(|(name, value)| (name.as_ref(), value.as_ref()))
                .collect();
            let _ = appender.append(&borrowed, timestamp, stale_nan());
        }
    }
}

/// The outcome of one scrape, for the target's status.
pub struct ScrapeReport {
    pub error: Option<String>,
    /// Set when the metadata changed (always on the first success).
    pub metadata: Option<BTreeMap<String, MetricMetadata>>,
}

/// Longest time a scrape's commit may wait for other scrapes to share its
/// transaction and fsync.
const MAX_SHARED_COMMIT_DELAY: Duration = Duration::from_secs(1);

/// How long a scrape of this interval may wait for company at commit: a
/// tenth of the interval (at most `MAX_SHARED_COMMIT_DELAY`), so the loop's
/// next tick is never late because of it and the data is visible well
/// within one interval. At 100 targets every 5 s that groups about ten
/// scrapes per commit.
fn shared_commit_delay(interval: Duration) -> Duration {
    (interval / 10).min(MAX_SHARED_COMMIT_DELAY)
}

/// A scrape handed to the store, waiting for its commit.
struct QueuedScrape {
    /// The commit's result, sent by the commit thread once durable.
    committed: oneshot::Receiver<Result<CommitOutcome, StorageError>>,
    /// The body's error, when the scrape failed (its commit still stores
    /// `up 0` and the markers).
    error: Option<String>,
    vanished: Vec<(u64, SeriesRef)>,
    changed_metadata: Option<(BTreeMap<String, MetricMetadata>, u64)>,
    marker_time: Timestamp,
}

/// Parses and queues one scrape (or its failure) as one batch and hands it
/// to the store without waiting for the commit; `finish_scrape` applies
/// the outcome. Runs inline on the async worker: parsing a body is a few
/// milliseconds, and the wait for the shared commit holds no thread.
fn queue_scrape(
    fetched: Result<Fetched, String>,
    target: &ScrapeTarget,
    context: &LoopContext,
    cache: &mut ScrapeCache,
    scrape_time: Timestamp,
    duration_seconds: f64,
) -> QueuedScrape {
    let config = &context.config;
    if let Ok(fetched) = &fetched {
        cache.last_body_len = fetched.body.len();
    }
    // Generation 0 means "never"; wrapping after 2³² scrapes skips it.
    cache.generation = cache.generation.wrapping_add(1).max(1);
    let commit_delay = shared_commit_delay(target.interval);
    let mut appender = context.appendable.appender();
    appender.allow_commit_delay(commit_delay);
    appender.reserve(cache.last_batch_samples);
    let refs_generation = appender.series_refs_generation();
    if cache.refs_generation != refs_generation {
        cache.forget_refs();
        cache.refs_generation = refs_generation;
    }
    let appended = fetched.and_then(|fetched| {
        append_scrape_body(
            &fetched,
            target,
            config,
            cache,
            appender.as_mut(),
            scrape_time,
        )
    });
    let marker_time = scrape_time.max(cache.last_timestamp + 1);
    let (error, scraped, post_relabel, series_added, changed_metadata) = match appended {
        Ok(appended) => (
            None,
            appended.scraped,
            appended.post_relabel,
            appended.series_added,
            appended.changed_metadata,
        ),
        Err(error) => {
            // Nothing of the body is stored: a fresh appender, and every
            // series of the previous scrape ends.
            appender = context.appendable.appender();
            appender.allow_commit_delay(commit_delay);
            (Some(error), 0, 0, 0, None)
        }
    };
    let vanished = if error.is_none() && cache.every_line_seen() {
        Vec::new()
    } else {
        cache.vanished_series(error.is_some())
    };
    append_markers(appender.as_mut(), cache, &vanished, marker_time);
    let up = if error.is_none() { 1.0 } else { 0.0 };
    let synthetic_values = [
        up,
        duration_seconds,
        scraped as f64,
        post_relabel as f64,
        series_added as f64,
    ];
    for ((name, value), reference) in SYNTHETIC_SERIES
        .iter()
        .zip(synthetic_values)
        .zip(cache.synthetic.iter_mut())
    {
        append_synthetic(
            appender.as_mut(),
            reference,
            target,
            name,
            marker_time,
            value,
        );
    }
    cache.last_batch_samples = appender.len();
    let (commit_sender, committed) = oneshot::channel();
    appender.commit_then(Box::new(move |result| {
        // A loop stopped meanwhile no longer listens.
        let _ = commit_sender.send(result);
    }));
    QueuedScrape {
        committed,
        error,
        vanished,
        changed_metadata,
        marker_time,
    }
}

/// Applies a queued scrape's commit result to the cache: what the loop
/// remembers moves on only when the scrape was stored.
fn finish_scrape(
    queued: QueuedScrape,
    committed: Result<CommitOutcome, StorageError>,
    target: &ScrapeTarget,
    cache: &mut ScrapeCache,
) -> ScrapeReport {
    let QueuedScrape {
        error,
        vanished,
        changed_metadata,
        marker_time,
        ..
    } = queued;
    match committed {
        Ok(outcome) => {
            if outcome.rejected() > 0 {
                tracing::debug!(target = %target.scrape_url, rejected = outcome.rejected(), "scraped samples rejected by the store");
            }
            cache.last_timestamp = marker_time;
            let generation = cache.generation;
            for (label_hash, _) in &vanished {
                cache.pending_labels.remove(label_hash);
            }
            if error.is_some() {
                // Every series ended; lines stay cached (what they map to is still true).
                cache.last_success_generation = 0;
                cache.pending_labels.clear();
            } else {
                cache.last_success_generation = generation;
                if !cache.every_line_seen() {
                    cache
                        .lines
                        .retain(|_, line| line.last_seen_generation == generation);
                }
            }
            let metadata = changed_metadata.map(|(metadata, fingerprint)| {
                cache.metadata_fingerprint = Some(fingerprint);
                metadata
            });
            ScrapeReport { error, metadata }
        }
        Err(storage_error) => ScrapeReport {
            error: Some(format!("storing the scrape failed: {storage_error}")),
            metadata: None,
        },
    }
}

/// Stores one scrape (or its failure) in one commit: queues it, waits for
/// the commit without holding a thread, and applies the outcome.
async fn store_scrape(
    fetched: Result<Fetched, String>,
    target: &ScrapeTarget,
    context: &LoopContext,
    cache: &mut ScrapeCache,
    scrape_time: Timestamp,
    duration_seconds: f64,
) -> ScrapeReport {
    let mut queued = queue_scrape(
        fetched,
        target,
        context,
        cache,
        scrape_time,
        duration_seconds,
    );
    // A dropped sender means the store shut down before answering.
    let committed = (&mut queued.committed)
        .await
        .unwrap_or(Err(StorageError::Closed));
    finish_scrape(queued, committed, target, cache)
}

/// Marks every series of the loop stale; the last act of a stopped loop.
fn store_end_of_run_staleness(target: &ScrapeTarget, context: &LoopContext, cache: &ScrapeCache) {
    if cache.last_timestamp == 0 {
        return;
    }
    let marker_time = context.clock.now_ms().max(cache.last_timestamp + 1);
    let mut appender = context.appendable.appender();
    let mut live: Vec<(u64, SeriesRef)> = cache
        .lines
        .values()
        .filter(|line| cache.was_tracked_in_last_success(line))
        .map(|line| (line.label_hash, line.reference))
        .collect();
    live.sort_unstable_by_key(|(label_hash, _)| *label_hash);
    live.dedup_by_key(|(label_hash, _)| *label_hash);
    append_markers(appender.as_mut(), cache, &live, marker_time);
    let mut synthetic = cache.synthetic;
    for (name, reference) in SYNTHETIC_SERIES.iter().zip(synthetic.iter_mut()) {
        append_synthetic(
            appender.as_mut(),
            reference,
            target,
            name,
            marker_time,
            stale_nan(),
        );
    }
    if let Err(error) = appender.commit() {
        tracing::warn!(%error, target = %target.scrape_url, "cannot store staleness markers of a stopped target");
    }
}

/// Milliseconds to wait so that this target scrapes at its own stable
/// offset within the interval, spreading targets over time.
pub fn initial_delay_ms(identity: u64, interval: Duration, now_ms: Timestamp) -> u64 {
    let interval_ms = (interval.as_millis() as u64).max(1);
    let offset = identity % interval_ms;
    let position = now_ms.rem_euclid(interval_ms as i64) as u64;
    (offset + interval_ms - position) % interval_ms
}

/// Most a scrape's timestamp is moved back onto the loop's schedule, as
/// Prometheus does (`--scrape.timestamp-tolerance`, default 2 ms).
const SCRAPE_TIMESTAMP_TOLERANCE_MS: Timestamp = 2;

/// The timestamp of a scrape that starts at `now_ms`: the loop's scheduled
/// time when the timer woke at most `SCRAPE_TIMESTAMP_TOLERANCE_MS` (and at
/// most 1 % of the interval) late, else `now_ms`. `grid` holds the schedule:
/// the first scrape's time, moved by whole intervals.
///
/// Why: timer wake-ups jitter by a millisecond or two, and a jittered
/// interval costs the head chunk about nine bits per sample (a non-zero
/// delta of deltas) where an exact one costs one; fewer bits are less
/// memory and less chunk work. Prometheus aligns the same way.
fn aligned_scrape_time(
    grid: &mut Option<Timestamp>,
    now_ms: Timestamp,
    interval_ms: Timestamp,
) -> Timestamp {
    let scheduled = grid.get_or_insert(now_ms);
    if now_ms < *scheduled {
        // The wall clock went back: start a new schedule.
        *scheduled = now_ms;
    }
    let behind = now_ms - *scheduled;
    if behind >= interval_ms {
        *scheduled += behind / interval_ms * interval_ms;
    }
    let tolerance = SCRAPE_TIMESTAMP_TOLERANCE_MS.min(interval_ms / 100);
    if now_ms - *scheduled <= tolerance {
        *scheduled
    } else {
        now_ms
    }
}

async fn run_loop(
    target: ScrapeTarget,
    context: LoopContext,
    status: Arc<Mutex<TargetStatus>>,
    mut stop: oneshot::Receiver<bool>,
) {
    let delay = initial_delay_ms(target.identity, target.interval, context.clock.now_ms());
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(delay)) => {}
        _ = &mut stop => return,
    }
    let mut ticker = tokio::time::interval(target.interval);
    // A scrape that overruns skips ticks rather than bunching them.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let target = Arc::new(target);
    let mut cache = ScrapeCache::default();
    let interval_ms = (target.interval.as_millis() as Timestamp).max(1);
    let mut scrape_time_grid: Option<Timestamp> = None;
    // A dropped sender (pool task gone) counts as "target gone".
    let mark_stale_at_end;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            mark = &mut stop => {
                mark_stale_at_end = mark.unwrap_or(true);
                break;
            }
        }
        let scrape_time =
            aligned_scrape_time(&mut scrape_time_grid, context.clock.now_ms(), interval_ms);
        let started = Instant::now();
        let fetched = tokio::select! {
            fetched = fetch(&target, &context, cache.last_body_len) => fetched,
            mark = &mut stop => {
                mark_stale_at_end = mark.unwrap_or(true);
                break;
            }
        };
        let duration_seconds = started.elapsed().as_secs_f64();
        let report = store_scrape(
            fetched,
            &target,
            &context,
            &mut cache,
            scrape_time,
            duration_seconds,
        )
        .await;
        let mut current = status.lock();
        current.scrape_count += 1;
        current.last_scrape_ms = Some(scrape_time);
        current.last_scrape_duration_seconds = duration_seconds;
        match report.error {
            None => {
                current.health = Health::Up;
                current.last_error.clear();
            }
            Some(error) => {
                tracing::debug!(target = %target.scrape_url, %error, "scrape failed");
                current.health = Health::Down;
                current.last_error = error;
            }
        }
        if let Some(metadata) = report.metadata {
            current.metadata = metadata;
        }
    }
    if !mark_stale_at_end {
        return;
    }
    let final_context = context.clone();
    let final_target = target.clone();
    let _ = tokio::task::spawn_blocking(move || {
        store_end_of_run_staleness(&final_target, &final_context, &cache)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;

    fn target(labels: &[(&str, &str)]) -> ScrapeTarget {
        ScrapeTarget {
            labels: Labels::from_pairs(labels.iter().copied()),
            discovered_labels: LabelMap::new(),
            scrape_url: "http://x/metrics".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            identity: 7,
        }
    }

    #[test]
    fn conflicting_labels_move_to_exported_unless_honored() {
        let target = target(&[("instance", "a:1"), ("job", "node")]);
        let scraped = || {
            LabelMap::from([
                ("__name__".to_string(), "m".to_string()),
                ("job".to_string(), "inner".to_string()),
                ("exported_job".to_string(), "older".to_string()),
            ])
        };
        let mut labels = scraped();
        merge_target_labels(&mut labels, &target, false);
        assert_eq!(labels.get("job").map(String::as_str), Some("node"));
        assert_eq!(
            labels.get("exported_exported_job").map(String::as_str),
            Some("inner")
        );
        assert_eq!(
            labels.get("exported_job").map(String::as_str),
            Some("older")
        );
        assert_eq!(labels.get("instance").map(String::as_str), Some("a:1"));
        let mut honored = scraped();
        merge_target_labels(&mut honored, &target, true);
        assert_eq!(honored.get("job").map(String::as_str), Some("inner"));
        assert_eq!(honored.get("instance").map(String::as_str), Some("a:1"));
    }

    fn scrape_config() -> ScrapeConfig {
        let file = crate::config::file::parse_config(
            "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['x:1']\n",
        )
        .expect("config");
        file.scrape_configs.into_iter().next().expect("one job")
    }

    /// The store's appender refuses a ref with the top bit set: its mark
    /// for series that a batch creates, never handed out.
    const REFUSED_REF: SeriesRef = (1 << 31) | 77;

    /// Parses `body` into one appender of `tsdb` and commits it.
    fn store_body(
        tsdb: &crate::tsdb::Tsdb,
        cache: &mut ScrapeCache,
        target: &ScrapeTarget,
        config: &ScrapeConfig,
        body: &str,
        scrape_time: Timestamp,
    ) -> AppendedScrape {
        cache.generation += 1;
        let fetched = Fetched {
            body: body.as_bytes().to_vec(),
            content_type: "text/plain; version=0.0.4".to_string(),
        };
        let mut appender = crate::storage::Appendable::appender(tsdb);
        let appended = append_scrape_body(
            &fetched,
            target,
            config,
            cache,
            appender.as_mut(),
            scrape_time,
        )
        .expect("body parses");
        appender.commit().expect("commit");
        cache.last_success_generation = cache.generation;
        appended
    }

    #[test]
    fn a_refused_ref_of_a_line_without_parsed_labels_still_stores_its_sample() {
        use crate::storage::Queryable;
        let directory = tempfile::tempdir().unwrap();
        let tsdb = crate::tsdb::Tsdb::open(directory.path(), crate::tsdb::Options::default())
            .expect("open store");
        let target = target(&[("instance", "a:1"), ("job", "node")]);
        let config = scrape_config();
        let mut cache = ScrapeCache::default();
        let body = |value: u32| format!("# TYPE m gauge\nm{{k=\"v\"}} {value}\nother 1\n");
        // First scrape creates the series, the second learns their refs.
        store_body(&tsdb, &mut cache, &target, &config, &body(1), 1_000);
        store_body(&tsdb, &mut cache, &target, &config, &body(2), 2_000);
        assert!(cache.lines.values().all(|line| line.reference != NO_REF));
        // A ref the store refuses (never handed out by it), as a stale
        // cache entry would hold: the line's labels are skipped by the
        // parser, and its sample must still be stored, by labels.
        for line in cache.lines.values_mut() {
            line.reference = REFUSED_REF;
        }
        let appended = store_body(&tsdb, &mut cache, &target, &config, &body(3), 3_000);
        assert_eq!(appended.post_relabel, 2);
        let querier = tsdb.querier().expect("querier");
        let stored = querier
            .select(0, 10_000, &[crate::model::Matcher::equal("__name__", "m")])
            .expect("select");
        assert_eq!(stored.len(), 1);
        let values: Vec<(Timestamp, f64)> = stored[0]
            .samples
            .iter()
            .map(|sample| (sample.t, sample.v))
            .collect();
        assert_eq!(values, vec![(1_000, 1.0), (2_000, 2.0), (3_000, 3.0)]);
        assert_eq!(stored[0].labels.get("k"), Some("v"));
        assert_eq!(stored[0].labels.get("instance"), Some("a:1"));
        // The cache holds a valid ref again, taken by the label path.
        assert!(
            cache
                .lines
                .values()
                .all(|line| line.reference != REFUSED_REF && line.reference != NO_REF)
        );
    }

    #[test]
    fn gzip_bodies_inflate_with_pooled_decoders_and_obey_the_limit() {
        use std::io::Write;
        let gzip = |text: &[u8]| {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(text).unwrap();
            encoder.finish().unwrap()
        };
        let first = b"# TYPE up gauge\nup 1\n".repeat(50);
        let second = b"other 2\n".to_vec();
        // Twice each, so that a decoder taken back from the pool is reused.
        for _ in 0..2 {
            assert_eq!(gunzip_body(gzip(&first), 0, 10), Ok(first.clone()));
            assert_eq!(gunzip_body(gzip(&second), 0, 0), Ok(second.clone()));
        }
        let limit = first.len() as u64;
        assert_eq!(gunzip_body(gzip(&first), limit, 0), Ok(first.clone()));
        assert_eq!(
            gunzip_body(gzip(&first), limit - 1, 0),
            Err(body_size_limit_error(limit - 1))
        );
        let mut corrupt = gzip(&first);
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        assert!(gunzip_body(corrupt, 0, 0).is_err());
        assert!(gunzip_body(b"not gzip at all".to_vec(), 0, 0).is_err());
        let truncated = gzip(&first)[..20].to_vec();
        assert!(gunzip_body(truncated, 0, 0).is_err());
        // A failed body leaves no state behind in the pooled decoders.
        assert_eq!(gunzip_body(gzip(&second), 0, 0), Ok(second));
    }

    #[test]
    fn scrape_times_snap_to_the_schedule_within_the_tolerance() {
        let mut grid = None;
        let interval = 5_000;
        assert_eq!(
            aligned_scrape_time(&mut grid, 1_000_003, interval),
            1_000_003
        );
        // One or two milliseconds late: the scheduled time.
        assert_eq!(
            aligned_scrape_time(&mut grid, 1_005_004, interval),
            1_005_003
        );
        assert_eq!(
            aligned_scrape_time(&mut grid, 1_010_005, interval),
            1_010_003
        );
        // Later than the tolerance: the real time, and the schedule stays.
        assert_eq!(
            aligned_scrape_time(&mut grid, 1_015_010, interval),
            1_015_010
        );
        // A skipped tick: the schedule moves by whole intervals.
        assert_eq!(
            aligned_scrape_time(&mut grid, 1_025_004, interval),
            1_025_003
        );
        // A wake-up before the next scheduled time: the real time (a
        // time is only ever moved back).
        assert_eq!(
            aligned_scrape_time(&mut grid, 1_029_999, interval),
            1_029_999
        );
        assert_eq!(
            aligned_scrape_time(&mut grid, 1_030_003, interval),
            1_030_003
        );
        // The wall clock stepping back restarts the schedule.
        assert_eq!(aligned_scrape_time(&mut grid, 900_000, interval), 900_000);
        assert_eq!(
            aligned_scrape_time(&mut grid, 905_001, interval),
            900_000 + interval
        );
        // A 100 ms interval tolerates 1 ms.
        let mut short_grid = None;
        assert_eq!(aligned_scrape_time(&mut short_grid, 0, 100), 0);
        assert_eq!(aligned_scrape_time(&mut short_grid, 101, 100), 100);
        assert_eq!(aligned_scrape_time(&mut short_grid, 202, 100), 202);
    }

    #[test]
    fn offsets_are_stable_and_inside_the_interval() {
        let interval = Duration::from_secs(10);
        for now in [0i64, 1234, 9_999, 1_700_000_000_123] {
            let delay = initial_delay_ms(12_345, interval, now);
            assert!(delay < 10_000);
            assert_eq!((now + delay as i64).rem_euclid(10_000), 12_345 % 10_000);
        }
    }
}
