//! Scraping: the target manager. [`ScrapeManager::apply_config`] turns a
//! configuration file into one pool per `job_name`; a pool runs its
//! discovery providers (static, file, HTTP), relabels what they find into
//! targets and keeps one scrape loop per target (`scrape_loop`). A new
//! configuration replaces the old at once: pools whose job is unchanged
//! keep running untouched (their loops scrape on without a gap), changed
//! pools are rebuilt, removed pools stop and mark their series stale.
//!
//! ```text
//! discovery ─► TargetGroup ─► target::populate_target (relabel_configs)
//!           ─► pool sync: new loop / keep loop / stop loop (stale markers)
//! loop: fetch ─► parse, metric_relabel, limits, append ─► commit_then ─► await the fsync
//! ```

pub mod discovery;
pub mod md5;
pub mod relabel;
pub mod scrape_loop;
pub mod target;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::file::{ConfigFile, ScrapeConfig};
use crate::model::{Labels, MetricMetadata, Timestamp};
use crate::storage::Appendable;
use crate::telemetry::Exposition;

use discovery::{ProviderUpdate, TargetGroup};
use relabel::LabelMap;
use scrape_loop::{Health, LoopContext, LoopHandle, TargetStatus};
use target::{TargetOutcome, discovered_labels, populate_target};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScrapeError {
    #[error("service discovery: {0}")]
    Discovery(String),
    #[error("HTTP client: {0}")]
    Client(String),
}

/// One active target as `/api/v1/targets` shows it.
#[derive(Clone, Debug)]
pub struct ActiveTargetView {
    pub scrape_pool: String,
    pub labels: Labels,
    pub discovered_labels: LabelMap,
    pub scrape_url: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    pub status: TargetStatus,
}

/// One target dropped by relabeling.
#[derive(Clone, Debug)]
pub struct DroppedTargetView {
    pub scrape_pool: String,
    pub discovered_labels: LabelMap,
}

/// One pool: a job's discovery and loops.
struct Pool {
    config: Arc<ScrapeConfig>,
    shared: Arc<PoolShared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct PoolShared {
    loops: Mutex<BTreeMap<u64, LoopHandle>>,
    dropped: Mutex<Vec<LabelMap>>,
}

impl Pool {
    /// Stops discovery and every loop; with `mark_stale` the loops write
    /// staleness markers for their series.
    fn stop(self, mark_stale: bool) -> Vec<tokio::task::JoinHandle<()>> {
        for task in &self.tasks {
            task.abort();
        }
        let loops = std::mem::take(&mut *self.shared.loops.lock());
        loops
            .into_values()
            .filter_map(|handle| handle.stop(mark_stale))
            .collect()
    }
}

/// Reload outcome counters, for `/metrics`.
#[derive(Default)]
struct ReloadMetrics {
    last_reload_successful: AtomicU64,
    last_reload_success_timestamp_ms: AtomicU64,
}

/// The target manager. Cheap to share (`Arc`); all methods take `&self`.
pub struct ScrapeManager {
    appendable: Arc<dyn Appendable>,
    clock: Arc<dyn Clock>,
    pools: Mutex<BTreeMap<String, Pool>>,
    reload_metrics: ReloadMetrics,
}

impl ScrapeManager {
    pub fn new(appendable: Arc<dyn Appendable>, clock: Arc<dyn Clock>) -> Arc<ScrapeManager> {
        Arc::new(ScrapeManager {
            appendable,
            clock,
            pools: Mutex::new(BTreeMap::new()),
            reload_metrics: ReloadMetrics::default(),
        })
    }

    /// Replaces the running configuration. Must run inside a tokio runtime.
    /// An HTTP client that cannot be built (bad CA file...) fails the whole
    /// apply and leaves the old configuration running.
    pub fn apply_config(&self, config: &ConfigFile) -> Result<(), ScrapeError> {
        let mut new_clients = HashMap::new();
        for job in &config.scrape_configs {
            let client = scrape_loop::build_scrape_client(&job.http_client)
                .map_err(|error| ScrapeError::Client(format!("job {:?}: {error}", job.job_name)))?;
            new_clients.insert(job.job_name.clone(), client);
        }
        let mut pools = self.pools.lock();
        let mut stopped = Vec::new();
        let wanted: BTreeMap<&str, &ScrapeConfig> = config
            .scrape_configs
            .iter()
            .map(|job| (job.job_name.as_str(), job))
            .collect();
        let existing: Vec<String> = pools.keys().cloned().collect();
        for name in existing {
            let still_wanted = wanted.get(name.as_str());
            let unchanged = still_wanted
                .is_some_and(|job| pools.get(&name).is_some_and(|pool| *pool.config == **job));
            if !unchanged && let Some(pool) = pools.remove(&name) {
                // A changed job's series continue under the new pool, as in
                // Prometheus; a removed job's series end now.
                let removed = still_wanted.is_none();
                tracing::info!(job = %name, removed, "stopping scrape pool");
                stopped.extend(pool.stop(removed));
            }
        }
        for (name, job) in wanted {
            if pools.contains_key(name) {
                continue;
            }
            let Some(client) = new_clients.remove(name) else {
                continue;
            };
            tracing::info!(job = %name, "starting scrape pool");
            pools.insert(name.to_string(), self.start_pool(job.clone(), client));
        }
        drop(pools);
        if !stopped.is_empty() {
            tokio::spawn(async move {
                for task in stopped {
                    let _ = task.await;
                }
            });
        }
        Ok(())
    }

    fn start_pool(&self, config: ScrapeConfig, client: reqwest::Client) -> Pool {
        let config = Arc::new(config);
        let shared = Arc::new(PoolShared::default());
        let (updates_sender, updates_receiver) = mpsc::channel::<ProviderUpdate>(16);
        let mut tasks = Vec::new();
        let mut provider_index = 0;
        let mut initial: Vec<ProviderUpdate> = Vec::new();
        if !config.static_configs.is_empty() {
            initial.push(ProviderUpdate {
                provider_index,
                groups: discovery::static_groups(&config.static_configs),
            });
            provider_index += 1;
        }
        for file_sd in &config.file_sd_configs {
            tasks.push(tokio::spawn(discovery::run_file_discovery(
                provider_index,
                file_sd.clone(),
                updates_sender.clone(),
            )));
            provider_index += 1;
        }
        for http_sd in &config.http_sd_configs {
            match scrape_loop::build_client(&http_sd.http_client, true) {
                Ok(sd_client) => tasks.push(tokio::spawn(discovery::run_http_discovery(
                    provider_index,
                    http_sd.clone(),
                    sd_client,
                    updates_sender.clone(),
                ))),
                Err(error) => tracing::warn!(%error, url = %http_sd.url, "http_sd disabled"),
            }
            provider_index += 1;
        }
        drop(updates_sender);
        let context = LoopContext {
            config: config.clone(),
            client,
            appendable: self.appendable.clone(),
            clock: self.clock.clone(),
        };
        tasks.push(tokio::spawn(run_pool_sync(
            context,
            shared.clone(),
            initial,
            updates_receiver,
        )));
        Pool {
            config,
            shared,
            tasks,
        }
    }

    /// Stops every pool and waits for their loops to end. No staleness
    /// markers: as in Prometheus, series resume after a restart.
    pub async fn shutdown(&self) {
        let pools = std::mem::take(&mut *self.pools.lock());
        let mut stopped = Vec::new();
        for (_, pool) in pools {
            stopped.extend(pool.stop(false));
        }
        for task in stopped {
            let _ = task.await;
        }
    }

    pub fn active_targets(&self) -> Vec<ActiveTargetView> {
        let pools = self.pools.lock();
        let mut views = Vec::new();
        for (name, pool) in pools.iter() {
            for handle in pool.shared.loops.lock().values() {
                views.push(ActiveTargetView {
                    scrape_pool: name.clone(),
                    labels: handle.target.labels.clone(),
                    discovered_labels: handle.target.discovered_labels.clone(),
                    scrape_url: handle.target.scrape_url.clone(),
                    interval_ms: handle.target.interval.as_millis() as u64,
                    timeout_ms: handle.target.timeout.as_millis() as u64,
                    status: handle.status.lock().clone(),
                });
            }
        }
        views
    }

    pub fn dropped_targets(&self) -> Vec<DroppedTargetView> {
        let pools = self.pools.lock();
        let mut views = Vec::new();
        for (name, pool) in pools.iter() {
            for labels in pool.shared.dropped.lock().iter() {
                views.push(DroppedTargetView {
                    scrape_pool: name.clone(),
                    discovered_labels: labels.clone(),
                });
            }
        }
        views
    }

    /// Metadata scraped from each active target: (target labels, metric, metadata).
    pub fn target_metadata(&self) -> Vec<(Labels, String, MetricMetadata)> {
        let mut rows = Vec::new();
        for view in self.active_targets() {
            for (metric, metadata) in view.status.metadata {
                rows.push((view.labels.clone(), metric, metadata));
            }
        }
        rows
    }

    /// Reads `path` and applies it; on any error the running configuration
    /// stays, the error is logged and returned, and the reload metrics say so.
    pub fn reload_from_file(&self, path: &std::path::Path) -> Result<ConfigFile, String> {
        let outcome = crate::config::file::load_file(path)
            .map_err(|error| error.to_string())
            .and_then(|config| {
                self.apply_config(&config)
                    .map(|()| config)
                    .map_err(|error| error.to_string())
            });
        match &outcome {
            Ok(_) => {
                tracing::info!(file = %path.display(), "configuration loaded");
                self.record_reload(true, self.clock.now_ms());
            }
            Err(error) => {
                tracing::error!(file = %path.display(), %error, "configuration reload failed; keeping the previous configuration");
                self.record_reload(false, self.clock.now_ms());
            }
        }
        outcome
    }

    /// Records the outcome of a configuration reload.
    pub fn record_reload(&self, successful: bool, now_ms: Timestamp) {
        self.reload_metrics
            .last_reload_successful
            .store(u64::from(successful), Ordering::Relaxed);
        if successful {
            self.reload_metrics
                .last_reload_success_timestamp_ms
                .store(now_ms.max(0) as u64, Ordering::Relaxed);
        }
    }

    pub fn last_reload_successful(&self) -> bool {
        self.reload_metrics
            .last_reload_successful
            .load(Ordering::Relaxed)
            == 1
    }

    pub fn render_metrics(&self, exposition: &mut Exposition) {
        exposition.gauge(
            "guardia_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful.",
            self.reload_metrics
                .last_reload_successful
                .load(Ordering::Relaxed) as f64,
        );
        exposition.gauge(
            "guardia_config_last_reload_success_timestamp_seconds",
            "Timestamp of the last successful configuration reload.",
            self.reload_metrics
                .last_reload_success_timestamp_ms
                .load(Ordering::Relaxed) as f64
                / 1000.0,
        );
        let targets = self.active_targets();
        exposition.family(
            "guardia_scrape_targets",
            "gauge",
            "Active scrape targets by pool and health.",
        );
        let mut counts: BTreeMap<(String, &'static str), u64> = BTreeMap::new();
        for target in &targets {
            *counts
                .entry((target.scrape_pool.clone(), target.status.health.as_str()))
                .or_insert(0) += 1;
        }
        for ((pool, health), count) in counts {
            exposition.sample(
                "guardia_scrape_targets",
                &[("scrape_pool", &pool), ("health", health)],
                count as f64,
            );
        }
    }
}

/// What `guardia check config` does: parse and validate the file, build
/// every HTTP client (CA, certificate and key files must load), check that
/// credential files exist and that file_sd files which exist parse.
pub fn check_config_file(path: &std::path::Path) -> Result<ConfigFile, String> {
    let config = crate::config::file::load_file(path).map_err(|error| error.to_string())?;
    for job in &config.scrape_configs {
        let in_job = |error: String| format!("job {:?}: {error}", job.job_name);
        scrape_loop::build_scrape_client(&job.http_client)
            .map_err(|error| in_job(error.to_string()))?;
        let mut secret_files = Vec::new();
        if let Some(basic) = &job.http_client.basic_auth {
            secret_files.extend(basic.password_file.clone());
        }
        if let Some(authorization) = &job.http_client.authorization {
            secret_files.extend(authorization.credentials_file.clone());
        }
        for file in secret_files {
            if !file.is_file() {
                return Err(in_job(format!(
                    "error checking credentials file {}: no such file",
                    file.display()
                )));
            }
        }
        for file_sd in &job.file_sd_configs {
            for pattern in &file_sd.files {
                for file in discovery::expand_file_pattern(pattern) {
                    if let Ok(text) = std::fs::read_to_string(&file) {
                        discovery::parse_target_file(&file, &text)
                            .map_err(|error| in_job(error.to_string()))?;
                    }
                }
            }
        }
        for http_sd in &job.http_sd_configs {
            scrape_loop::build_client(&http_sd.http_client, true)
                .map_err(|error| in_job(error.to_string()))?;
        }
    }
    Ok(config)
}

/// Keeps a pool's loops in line with the latest groups of every provider.
async fn run_pool_sync(
    context: LoopContext,
    shared: Arc<PoolShared>,
    initial: Vec<ProviderUpdate>,
    mut updates: mpsc::Receiver<ProviderUpdate>,
) {
    let mut groups_by_provider: BTreeMap<usize, Vec<TargetGroup>> = BTreeMap::new();
    for update in initial {
        groups_by_provider.insert(update.provider_index, update.groups);
    }
    sync_loops(&context, &shared, &groups_by_provider);
    while let Some(update) = updates.recv().await {
        groups_by_provider.insert(update.provider_index, update.groups);
        sync_loops(&context, &shared, &groups_by_provider);
    }
}

fn sync_loops(
    context: &LoopContext,
    shared: &PoolShared,
    groups_by_provider: &BTreeMap<usize, Vec<TargetGroup>>,
) {
    let config = &context.config;
    let mut active: BTreeMap<u64, target::ScrapeTarget> = BTreeMap::new();
    let mut dropped: Vec<LabelMap> = Vec::new();
    for groups in groups_by_provider.values() {
        for group in groups {
            for discovered_target in &group.targets {
                let discovered = discovered_labels(config, group, discovered_target);
                match populate_target(config, discovered.clone()) {
                    Ok(TargetOutcome::Active(scrape_target)) => {
                        active
                            .entry(scrape_target.identity)
                            .or_insert(scrape_target);
                    }
                    Ok(TargetOutcome::Dropped(labels)) => dropped.push(labels),
                    Err(error) => {
                        tracing::warn!(job = %config.job_name, %error, "target dropped: invalid after relabeling");
                        dropped.push(discovered);
                    }
                }
            }
        }
    }
    if config.target_limit > 0 && active.len() as u64 > config.target_limit {
        tracing::warn!(job = %config.job_name, targets = active.len(), limit = config.target_limit, "target_limit exceeded: no target of the pool is scraped");
        active.clear();
    }
    *shared.dropped.lock() = dropped;
    let mut loops = shared.loops.lock();
    let gone: Vec<u64> = loops
        .keys()
        .filter(|identity| !active.contains_key(identity))
        .copied()
        .collect();
    for identity in gone {
        if let Some(handle) = loops.remove(&identity) {
            tracing::info!(job = %config.job_name, target = %handle.target.scrape_url, "target removed");
            handle.stop(true);
        }
    }
    for (identity, scrape_target) in active {
        loops
            .entry(identity)
            .or_insert_with(|| scrape_loop::start_loop(scrape_target, context.clone()));
    }
}

/// Health as shown by the API.
pub fn health_name(health: Health) -> &'static str {
    health.as_str()
}
