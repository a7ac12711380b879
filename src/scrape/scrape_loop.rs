//! One target's scrape loop: a tokio task that waits for its stable offset
//! within the interval (a hash of the target), then every interval fetches
//! the target over HTTP (timeout, gzip, `Accept` negotiation, body size
//! limit), parses and checks the body off the async runtime, and stores
//! the whole scrape with one appender commit: the samples, the synthetic
//! `up`/`scrape_*` series, and staleness markers for series that vanished.
//! A failed scrape (HTTP error, timeout, bad body, a limit exceeded) stores
//! nothing of the body: only `up 0`, the other synthetic series and stale
//! markers for every series of the previous scrape. When the loop stops
//! (target gone, reload, shutdown) it marks all its series stale.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::config::file::{HttpClientConfig, ScrapeConfig};
use crate::ingest::text::{Entry, Format, Metadata, MetadataKind, SampleBuf, TextParser};
use crate::model::{LabelHasher, METRIC_NAME, MetricMetadata, Timestamp, stale_nan};
use crate::scrape::ScrapeError;
use crate::scrape::relabel::{LabelMap, relabel};
use crate::scrape::target::ScrapeTarget;
use crate::storage::{Appendable, Appender, SeriesRef};

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

async fn fetch(target: &ScrapeTarget, context: &LoopContext) -> Result<Fetched, String> {
    let request = context
        .client
        .get(&target.scrape_url)
        .header(ACCEPT, ACCEPT_HEADER)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", target.timeout.as_secs_f64()),
        )
        .timeout(target.timeout);
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
        let limit = context.config.body_size_limit;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(describe)? {
            if limit > 0 && (body.len() + chunk.len()) as u64 > limit {
                return Err(format!(
                    "body_size_limit exceeded: the response body is larger than {limit} bytes"
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, content_type })
    };
    match tokio::time::timeout(target.timeout, work).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "scrape timeout: no complete response within {timeout_text}"
        )),
    }
}

/// What a scraped series needs for its staleness marker: its ref, or its
/// labels while the store has not handed out a ref yet (a series first
/// seen in the last scrape).
enum MarkerTarget {
    Ref(SeriesRef),
    Labels(Box<[(Box<str>, Box<str>)]>),
}

/// A series written by a recent scrape of the loop, keyed in
/// [`ScrapeCache::tracked`] by the hash of its final labels.
struct TrackedSeries {
    /// Generation of the newest scrape that wrote it: a series whose number
    /// falls behind vanished from the exposition and gets a marker.
    last_seen_generation: u64,
    /// Generation that first tracked it, so a failed scrape can forget
    /// series it added without having stored them.
    added_generation: u64,
    marker: MarkerTarget,
}

/// What one exposition series (name and labels as written) became.
#[derive(Clone, Copy)]
struct CachedLine {
    /// `None`: dropped by `metric_relabel_configs`.
    series: Option<CachedSeries>,
    last_seen_generation: u64,
}

#[derive(Clone, Copy)]
struct CachedSeries {
    /// Hash of the final label set (target labels merged, relabeled).
    label_hash: u64,
    /// `None` until the store knows the series (new series get a ref on the
    /// scrape after the one that created them).
    reference: Option<SeriesRef>,
}

type FastHashMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A loop's memory between scrapes, as Prometheus's scrape cache: a line
/// seen before skips label building, target-label merging, relabeling,
/// label checks, hashing and the head lookup, and is appended by ref.
/// Staleness is tracked by generation numbers rather than by building and
/// diffing a set of label sets per scrape.
#[derive(Default)]
pub struct ScrapeCache {
    /// Key: the metric name and label pairs as parsed, separated by bytes
    /// that UTF-8 never contains, so distinct series never share a key.
    lines: FastHashMap<Box<[u8]>, CachedLine>,
    tracked: FastHashMap<u64, TrackedSeries>,
    /// Refs of the synthetic `up`/`scrape_*` series, in `SYNTHETIC_SERIES` order.
    synthetic: [Option<SeriesRef>; SYNTHETIC_SERIES.len()],
    generation: u64,
    /// Newest timestamp this loop stored, so markers never go backwards.
    last_timestamp: Timestamp,
    /// Fingerprint of the metadata lines stored last; unchanged metadata is
    /// neither rebuilt nor stored again.
    metadata_fingerprint: Option<u64>,
    /// Scratch for building line keys.
    key: Vec<u8>,
}

impl ScrapeCache {
    /// Number of series the loop tracks for staleness.
    pub fn tracked_series(&self) -> usize {
        self.tracked.len()
    }
}

/// Separates a name from its value in a line key (0xFF never occurs in UTF-8).
const KEY_NAME_END: u8 = 0xFF;
/// Ends a label value in a line key (0xFE never occurs in UTF-8).
const KEY_VALUE_END: u8 = 0xFE;

fn build_line_key(key: &mut Vec<u8>, sample: &SampleBuf<'_>) {
    key.clear();
    key.extend_from_slice(sample.metric_name().as_bytes());
    for (name, value) in sample.labels() {
        key.push(KEY_VALUE_END);
        key.extend_from_slice(name.as_bytes());
        key.push(KEY_NAME_END);
        key.extend_from_slice(value.as_bytes());
    }
}

/// Records that `label_hash` was written by scrape `generation`; returns 1
/// when the series was not tracked yet (it counts in `scrape_series_added`).
fn track_series(
    tracked: &mut FastHashMap<u64, TrackedSeries>,
    label_hash: u64,
    reference: Option<SeriesRef>,
    generation: u64,
    labels_for_marker: impl FnOnce() -> Box<[(Box<str>, Box<str>)]>,
) -> u64 {
    match tracked.entry(label_hash) {
        std::collections::hash_map::Entry::Occupied(entry) => {
            let series = entry.into_mut();
            series.last_seen_generation = generation;
            if let (MarkerTarget::Labels(_), Some(reference)) = (&series.marker, reference) {
                series.marker = MarkerTarget::Ref(reference);
            }
            0
        }
        std::collections::hash_map::Entry::Vacant(entry) => {
            let marker = match reference {
                Some(reference) => MarkerTarget::Ref(reference),
                None => MarkerTarget::Labels(labels_for_marker()),
            };
            entry.insert(TrackedSeries {
                last_seen_generation: generation,
                added_generation: generation,
                marker,
            });
            1
        }
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

fn metadata_fingerprint(lines: &[Metadata<'_>]) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = foldhash::fast::FixedState::with_seed(0x6775_6172_6469_61).build_hasher();
    for line in lines {
        line.metric_name.hash(&mut hasher);
        match &line.kind {
            MetadataKind::Help(help) => (0u8, help.as_ref()).hash(&mut hasher),
            MetadataKind::Type(metric_type) => (1u8, metric_type.as_str()).hash(&mut hasher),
            MetadataKind::Unit(unit) => (2u8, *unit).hash(&mut hasher),
        }
    }
    hasher.finish()
}

/// Parses the body and queues its samples in `appender`. On an error the
/// caller discards the appender, so nothing partial of the scrape is
/// stored; the cache may have learnt lines, which stay true.
#[allow(clippy::too_many_arguments)]
fn append_scrape_body(
    fetched: &Fetched,
    target: &ScrapeTarget,
    config: &ScrapeConfig,
    cache: &mut ScrapeCache,
    appender: &mut dyn Appender,
    scrape_time: Timestamp,
    generation: u64,
) -> Result<AppendedScrape, String> {
    let format = Format::from_content_type(&fetched.content_type);
    let mut parser = TextParser::from_bytes(&fetched.body, format)
        .map_err(|error| format!("parse error: {error}"))?;
    let mut sample = SampleBuf::new();
    let mut metadata_lines: Vec<Metadata<'_>> = Vec::new();
    let mut key = std::mem::take(&mut cache.key);
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
        let entry = parser
            .next_entry(&mut sample)
            .map_err(|error| format!("parse error: {error}"))?;
        match entry {
            None => break,
            Some(Entry::Metadata(metadata)) => metadata_lines.push(metadata),
            Some(Entry::Sample) => {
                appended.scraped += 1;
                let explicit = config.honor_timestamps && sample.timestamp_ms().is_some();
                let timestamp = match sample.timestamp_ms() {
                    Some(written) if explicit => written,
                    _ => scrape_time,
                };
                let tracked = !explicit || config.track_timestamps_staleness;
                let value = sample.value();
                build_line_key(&mut key, &sample);
                if let Some(line) = cache.lines.get_mut(key.as_slice()) {
                    line.last_seen_generation = generation;
                    let Some(cached) = line.series else {
                        continue;
                    };
                    if let Some(reference) = cached.reference {
                        appended.post_relabel += 1;
                        if config.sample_limit > 0 && appended.post_relabel > config.sample_limit {
                            return Err(sample_limit_error());
                        }
                        match appender.append_ref(reference, timestamp, value) {
                            Ok(true) => {
                                if tracked {
                                    appended.series_added += track_series(
                                        &mut cache.tracked,
                                        cached.label_hash,
                                        Some(reference),
                                        generation,
                                        || Box::new([]),
                                    );
                                }
                                continue;
                            }
                            // The series is gone from the store: take the
                            // slow path, which appends by labels.
                            Ok(false) => appended.post_relabel -= 1,
                            Err(error) => {
                                tracing::debug!(%error, target = %target.scrape_url, "scraped sample refused");
                                continue;
                            }
                        }
                    }
                }
                let Some(labels) = final_labels(&sample, target, config) else {
                    cache.lines.insert(
                        key.as_slice().into(),
                        CachedLine {
                            series: None,
                            last_seen_generation: generation,
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
                let reference = match appender.append_returning_ref(&pairs, timestamp, value) {
                    Ok(reference) => reference,
                    Err(error) => {
                        // Not cached: the line takes this path (and is refused) each time.
                        tracing::debug!(%error, target = %target.scrape_url, "scraped sample refused");
                        continue;
                    }
                };
                let label_hash = pairs_hash(&pairs);
                cache.lines.insert(
                    key.as_slice().into(),
                    CachedLine {
                        series: Some(CachedSeries {
                            label_hash,
                            reference,
                        }),
                        last_seen_generation: generation,
                    },
                );
                if tracked {
                    appended.series_added +=
                        track_series(&mut cache.tracked, label_hash, reference, generation, || {
                            pairs
                                .iter()
                                .map(|(name, value)| (Box::from(*name), Box::from(*value)))
                                .collect()
                        });
                }
            }
        }
    }
    cache.key = key;
    let fingerprint = metadata_fingerprint(&metadata_lines);
    if cache.metadata_fingerprint != Some(fingerprint) {
        let mut metadata: BTreeMap<String, MetricMetadata> = BTreeMap::new();
        for line in &metadata_lines {
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
        && let Ok(true) = appender.append_ref(known, timestamp, value)
    {
        return;
    }
    let pairs = synthetic_pairs(target, name);
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    *reference = appender
        .append_returning_ref(&borrowed, timestamp, value)
        .ok()
        .flatten();
}

fn append_marker(appender: &mut dyn Appender, marker: &MarkerTarget, timestamp: Timestamp) {
    match marker {
        MarkerTarget::Ref(reference) => {
            // A ref the store no longer knows names a deleted series: nothing to end.
            let _ = appender.append_ref(*reference, timestamp, stale_nan());
        }
        MarkerTarget::Labels(labels) => {
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

/// Stores one scrape (or its failure) in one commit. Blocking.
fn store_scrape(
    fetched: Result<Fetched, String>,
    target: &ScrapeTarget,
    context: &LoopContext,
    cache: &mut ScrapeCache,
    scrape_time: Timestamp,
    duration_seconds: f64,
) -> ScrapeReport {
    let config = &context.config;
    cache.generation += 1;
    let generation = cache.generation;
    let mut appender = context.appendable.appender();
    let appended = fetched.and_then(|fetched| {
        append_scrape_body(
            &fetched,
            target,
            config,
            cache,
            appender.as_mut(),
            scrape_time,
            generation,
        )
    });
    let marker_time = scrape_time.max(cache.last_timestamp + 1);
    let (error, scraped, post_relabel, series_added, changed_metadata) = match appended {
        Ok(appended) => {
            for series in cache.tracked.values() {
                if series.last_seen_generation != generation {
                    append_marker(appender.as_mut(), &series.marker, marker_time);
                }
            }
            (
                None,
                appended.scraped,
                appended.post_relabel,
                appended.series_added,
                appended.changed_metadata,
            )
        }
        Err(error) => {
            // Nothing of the body is stored: a fresh appender, and every
            // series of the previous scrape ends.
            appender = context.appendable.appender();
            cache
                .tracked
                .retain(|_, series| series.added_generation != generation);
            for series in cache.tracked.values() {
                append_marker(appender.as_mut(), &series.marker, marker_time);
            }
            (Some(error), 0, 0, 0, None)
        }
    };
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
    match appender.commit() {
        Ok(outcome) => {
            if outcome.rejected() > 0 {
                tracing::debug!(target = %target.scrape_url, rejected = outcome.rejected(), "scraped samples rejected by the store");
            }
            cache.last_timestamp = marker_time;
            if error.is_some() {
                cache.tracked.clear();
            } else {
                cache
                    .tracked
                    .retain(|_, series| series.last_seen_generation == generation);
                cache
                    .lines
                    .retain(|_, line| line.last_seen_generation == generation);
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

/// Marks every series of the loop stale; the last act of a stopped loop.
fn store_end_of_run_staleness(target: &ScrapeTarget, context: &LoopContext, cache: &ScrapeCache) {
    if cache.last_timestamp == 0 {
        return;
    }
    let marker_time = context.clock.now_ms().max(cache.last_timestamp + 1);
    let mut appender = context.appendable.appender();
    for series in cache.tracked.values() {
        append_marker(appender.as_mut(), &series.marker, marker_time);
    }
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
        let scrape_time = context.clock.now_ms();
        let started = Instant::now();
        let fetched = tokio::select! {
            fetched = fetch(&target, &context) => fetched,
            mark = &mut stop => {
                mark_stale_at_end = mark.unwrap_or(true);
                break;
            }
        };
        let duration_seconds = started.elapsed().as_secs_f64();
        let blocking_target = target.clone();
        let blocking_context = context.clone();
        let mut blocking_cache = std::mem::take(&mut cache);
        let stored = tokio::task::spawn_blocking(move || {
            let report = store_scrape(
                fetched,
                &blocking_target,
                &blocking_context,
                &mut blocking_cache,
                scrape_time,
                duration_seconds,
            );
            (report, blocking_cache)
        })
        .await;
        let Ok((report, returned_cache)) = stored else {
            tracing::error!(target = %target.scrape_url, "scrape worker failed");
            return;
        };
        cache = returned_cache;
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
