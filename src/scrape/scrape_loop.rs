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
use crate::ingest::text::{Entry, Format, SampleBuf, TextParser};
use crate::model::{LabelHasher, METRIC_NAME, MetricMetadata, Timestamp, stale_nan};
use crate::scrape::ScrapeError;
use crate::scrape::relabel::{LabelMap, relabel};
use crate::scrape::target::ScrapeTarget;
use crate::storage::{Appendable, Appender};

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

/// Series written by the previous scrape, for staleness markers: label
/// hash → sorted label pairs.
#[derive(Default)]
pub struct SeriesTracker {
    series: HashMap<u64, Vec<(String, String)>>,
    /// Newest timestamp this loop stored, so markers never go backwards.
    last_timestamp: Timestamp,
}

/// A sample ready to append: sorted label pairs, timestamp, value, and
/// whether the timestamp came from the exposition.
type ReadySample = (Vec<(String, String)>, Timestamp, f64, bool);

struct ParsedScrape {
    samples: Vec<ReadySample>,
    metadata: BTreeMap<String, MetricMetadata>,
    scraped: u64,
}

fn pairs_hash(pairs: &[(String, String)]) -> u64 {
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

/// Parses and checks a whole body; nothing is stored here, so a failure
/// anywhere leaves no partial scrape.
fn parse_scrape(
    fetched: &Fetched,
    target: &ScrapeTarget,
    config: &ScrapeConfig,
    scrape_time: Timestamp,
) -> Result<ParsedScrape, String> {
    let format = Format::from_content_type(&fetched.content_type);
    let mut parser = TextParser::from_bytes(&fetched.body, format)
        .map_err(|error| format!("parse error: {error}"))?;
    let mut sample = SampleBuf::new();
    let mut parsed = ParsedScrape {
        samples: Vec::new(),
        metadata: BTreeMap::new(),
        scraped: 0,
    };
    loop {
        let entry = parser
            .next_entry(&mut sample)
            .map_err(|error| format!("parse error: {error}"))?;
        match entry {
            None => break,
            Some(Entry::Metadata(metadata)) => {
                metadata.apply_to(
                    parsed
                        .metadata
                        .entry(metadata.metric_name.to_string())
                        .or_default(),
                );
            }
            Some(Entry::Sample) => {
                parsed.scraped += 1;
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
                    continue;
                }
                if labels.get(METRIC_NAME).is_none_or(String::is_empty) {
                    continue;
                }
                check_label_limits(config, &labels)?;
                let explicit = config.honor_timestamps && sample.timestamp_ms().is_some();
                let timestamp = if explicit {
                    sample.timestamp_ms().unwrap_or(scrape_time)
                } else {
                    scrape_time
                };
                parsed.samples.push((
                    labels.into_iter().collect(),
                    timestamp,
                    sample.value(),
                    explicit,
                ));
                if config.sample_limit > 0 && parsed.samples.len() as u64 > config.sample_limit {
                    return Err(format!(
                        "sample_limit exceeded: more than {} samples after metric relabeling",
                        config.sample_limit
                    ));
                }
            }
        }
    }
    Ok(parsed)
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

fn append_pairs(
    appender: &mut dyn Appender,
    pairs: &[(String, String)],
    timestamp: Timestamp,
    value: f64,
) -> Result<(), crate::storage::StorageError> {
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    appender.append(&borrowed, timestamp, value)
}

/// The outcome of one scrape, for the target's status.
pub struct ScrapeReport {
    pub error: Option<String>,
    pub metadata: Option<BTreeMap<String, MetricMetadata>>,
}

/// Stores one scrape (or its failure) in one commit. Blocking.
fn store_scrape(
    fetched: Result<Fetched, String>,
    target: &ScrapeTarget,
    context: &LoopContext,
    tracker: &mut SeriesTracker,
    scrape_time: Timestamp,
    duration_seconds: f64,
) -> ScrapeReport {
    let config = &context.config;
    let parsed = fetched.and_then(|fetched| parse_scrape(&fetched, target, config, scrape_time));
    let mut appender = context.appendable.appender();
    let mut next_series: HashMap<u64, Vec<(String, String)>> = HashMap::new();
    let (error, metadata, scraped, post_relabel) = match parsed {
        Ok(parsed) => {
            let post = parsed.samples.len() as u64;
            next_series.reserve(parsed.samples.len());
            for (pairs, timestamp, value, explicit) in parsed.samples {
                if let Err(error) = append_pairs(appender.as_mut(), &pairs, timestamp, value) {
                    tracing::debug!(%error, target = %target.scrape_url, "scraped sample refused");
                    continue;
                }
                if !explicit || config.track_timestamps_staleness {
                    // Moved, not cloned: the pairs are not needed after the append.
                    next_series.insert(pairs_hash(&pairs), pairs);
                }
            }
            for (metric, metadata) in &parsed.metadata {
                appender.set_metadata(metric, metadata);
            }
            (None, Some(parsed.metadata), parsed.scraped, post)
        }
        Err(error) => (Some(error), None, 0, 0),
    };
    let marker_time = scrape_time.max(tracker.last_timestamp + 1);
    for (hash, pairs) in &tracker.series {
        if !next_series.contains_key(hash) {
            let _ = append_pairs(appender.as_mut(), pairs, marker_time, stale_nan());
        }
    }
    let series_added = next_series
        .keys()
        .filter(|hash| !tracker.series.contains_key(hash))
        .count();
    let up = if error.is_none() { 1.0 } else { 0.0 };
    let synthetic_values = [
        up,
        duration_seconds,
        scraped as f64,
        post_relabel as f64,
        series_added as f64,
    ];
    for (name, value) in SYNTHETIC_SERIES.iter().zip(synthetic_values) {
        let _ = append_pairs(
            appender.as_mut(),
            &synthetic_pairs(target, name),
            marker_time,
            value,
        );
    }
    match appender.commit() {
        Ok(outcome) => {
            if outcome.rejected() > 0 {
                tracing::debug!(target = %target.scrape_url, rejected = outcome.rejected(), "scraped samples rejected by the store");
            }
            tracker.series = next_series;
            tracker.last_timestamp = marker_time;
            ScrapeReport { error, metadata }
        }
        Err(storage_error) => ScrapeReport {
            error: Some(format!("storing the scrape failed: {storage_error}")),
            metadata: None,
        },
    }
}

/// Marks every series of the loop stale; the last act of a stopped loop.
fn store_end_of_run_staleness(
    target: &ScrapeTarget,
    context: &LoopContext,
    tracker: &SeriesTracker,
) {
    if tracker.last_timestamp == 0 {
        return;
    }
    let marker_time = context.clock.now_ms().max(tracker.last_timestamp + 1);
    let mut appender = context.appendable.appender();
    for pairs in tracker.series.values() {
        let _ = append_pairs(appender.as_mut(), pairs, marker_time, stale_nan());
    }
    for name in SYNTHETIC_SERIES {
        let _ = append_pairs(
            appender.as_mut(),
            &synthetic_pairs(target, name),
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
    let mut tracker = SeriesTracker::default();
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
        let mut blocking_tracker = std::mem::take(&mut tracker);
        let stored = tokio::task::spawn_blocking(move || {
            let report = store_scrape(
                fetched,
                &blocking_target,
                &blocking_context,
                &mut blocking_tracker,
                scrape_time,
                duration_seconds,
            );
            (report, blocking_tracker)
        })
        .await;
        let Ok((report, returned_tracker)) = stored else {
            tracing::error!(target = %target.scrape_url, "scrape worker failed");
            return;
        };
        tracker = returned_tracker;
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
        store_end_of_run_staleness(&final_target, &final_context, &tracker)
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
