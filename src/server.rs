//! Wiring of a running guardia: open the store, build the API router, serve
//! HTTP on `--web.listen-address`, apply retention every minute off the
//! async runtime, and shut down gracefully on SIGINT/SIGTERM: stop accepting,
//! let in-flight requests finish (their commits included), stop background
//! work, then close the store so everything acknowledged is on disk.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::api::targets::{ConfigReloader, ScrapeHooks};
use crate::api::{self, ApiState, QuerySettings, Store};
use crate::clock::{Clock, SystemClock};
use crate::config::ServerSettings;
use crate::config::notifications::NotificationsConfig;
use crate::notify::Notifier;
use crate::notify::notifier::notifications_sending_nothing;
use crate::promql::{Engine, EngineOptions};
use crate::rules::{RuleManager, RuleSettings};
use crate::scrape::ScrapeManager;
use crate::sla::manager::{SlaManager, SlaSettings};
use crate::storage::{Appendable, Appender, Querier, Queryable, StateStore, StorageError};
use crate::telemetry::Exposition;
use crate::tsdb::{Options, Tsdb};

/// How often the SLA manager applies due escalations, breaches and re-opens.
pub const SLA_TICK_INTERVAL: Duration = Duration::from_secs(1);

/// How often retention runs.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open storage at {path}: {reason}")]
    OpenStorage { path: String, reason: String },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    #[error("cannot load the configuration: {0}")]
    Config(String),
    #[error("closing storage failed: {0}")]
    Close(String),
}

/// The store's lifecycle as the server drives it.
pub trait ManagedStore: Store {
    /// Drops data outside the retention settings; blocks.
    fn apply_retention(&self) -> Result<(), String>;
    /// Flushes and closes; blocks. Called once, after the last request.
    fn close(&self) -> Result<(), String>;
    /// Where rules keep their alert state across restarts, when the store has one.
    fn state_store(self: Arc<Self>) -> Option<Arc<dyn StateStore>> {
        None
    }
}

/// The store as the rules see it: queries and appends.
struct RuleStore(Arc<dyn ManagedStore>);

impl Appendable for RuleStore {
    fn appender(&self) -> Box<dyn Appender + '_> {
        self.0.appender()
    }
}

impl Queryable for RuleStore {
    fn querier(&self) -> Result<Box<dyn Querier + '_>, StorageError> {
        self.0.querier()
    }

    fn metadata(&self) -> Vec<(String, crate::model::MetricMetadata)> {
        self.0.metadata()
    }
}

/// SLA pages through `Notifier::send_direct`: durable when it returns and
/// idempotent by dedup key, as `sla::manager::PageSink` asks.
struct NotifierPageSink(Arc<Notifier>);

impl crate::sla::manager::PageSink for NotifierPageSink {
    fn page(
        &self,
        receiver: &str,
        dedup_key: &str,
        alert: &crate::rules::OutgoingAlert,
    ) -> Result<(), String> {
        self.0
            .send_direct(receiver, dedup_key, vec![alert.clone()])
            .map_err(|error| error.to_string())
    }
}

/// Accepts Prometheus's `:9099` (all interfaces) as well as `host:port`.
pub fn normalize_listen_address(address: &str) -> String {
    if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    }
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = interrupt => tracing::info!("received SIGINT, shutting down"),
        _ = terminate => tracing::info!("received SIGTERM, shutting down"),
    }
}

/// Reloads the configuration file on every SIGHUP, as Prometheus does.
async fn reload_on_sighup(reload: ConfigReloader, config_file: Option<std::path::PathBuf>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(signal) => signal,
        Err(error) => {
            tracing::warn!(%error, "cannot listen for SIGHUP");
            return;
        }
    };
    while hangup.recv().await.is_some() {
        let Some(path) = config_file.clone() else {
            tracing::warn!("SIGHUP received but no --config.file was given");
            continue;
        };
        tracing::info!("SIGHUP received, reloading configuration");
        let reload = reload.clone();
        let runtime = tokio::runtime::Handle::current();
        let _ = tokio::task::spawn_blocking(move || {
            let _entered = runtime.enter();
            if let Err(error) = reload(&path) {
                tracing::error!(%error, "configuration reload failed");
            }
        })
        .await;
    }
}

/// The one reload path of SIGHUP and `POST /-/reload`: the scrape
/// configuration first (a bad file stops there and everything keeps
/// running), then the rules (a bad rule file keeps the previous rules).
fn config_reloader(
    scrape_manager: Arc<ScrapeManager>,
    rule_manager: Arc<RuleManager>,
    sla_manager: Option<Arc<SlaManager>>,
    notifier: Option<Arc<Notifier>>,
    external_url: String,
) -> ConfigReloader {
    Arc::new(move |path: &std::path::Path| {
        // Failures of the scrape part are logged and counted by the manager.
        let config = scrape_manager
            .reload_from_file(path)
            .map_err(|error| format!("failed to reload config: {error}"))?;
        let mut rule_settings = RuleSettings::from_config(&config, path);
        rule_settings.external_url = external_url.clone();
        rule_manager.reload(rule_settings).map_err(|errors| {
            let reasons: Vec<String> = errors.iter().map(ToString::to_string).collect();
            format!("failed to reload rule files: {}", reasons.join("; "))
        })?;
        // SLA policies change; incidents, their timelines and clocks stay.
        if let Some(sla_manager) = &sla_manager {
            let sla_settings = SlaSettings::from_config(config.sla.as_ref(), &external_url)
                .map_err(|error| format!("failed to reload SLA policies: {error}"))?;
            sla_manager.update_settings(sla_settings);
        }
        // Groups, pending notifications and delivery records stay across a reload.
        if let Some(notifier) = &notifier {
            notifier
                .reload(notifications_of(&config))
                .map_err(|error| format!("failed to reload notifications: {error}"))?;
        }
        Ok(())
    })
}

/// The `notifications:` section, or one that sends nothing when absent
/// (a later reload may add it).
fn notifications_of(config: &crate::config::file::ConfigFile) -> NotificationsConfig {
    config
        .notifications
        .clone()
        .unwrap_or_else(notifications_sending_nothing)
}

/// The silences kept in the store's state tables, when it has them.
async fn open_silences(
    store: &Arc<dyn ManagedStore>,
    clock: &Arc<dyn Clock>,
    settings: &ServerSettings,
) -> Result<Option<Arc<crate::notify::silence::Silences>>, ServerError> {
    let Some(state_store) = store.clone().state_store() else {
        return Ok(None);
    };
    let clock = clock.clone();
    let opened = tokio::task::spawn_blocking(move || {
        crate::notify::silence::Silences::open(state_store, clock)
    })
    .await
    .map_err(|error| error.to_string())
    .and_then(|result| result.map_err(|error| error.to_string()));
    match opened {
        Ok(silences) => Ok(Some(silences)),
        Err(reason) => Err(ServerError::OpenStorage {
            path: settings.storage_path.display().to_string(),
            reason: format!("loading silences: {reason}"),
        }),
    }
}

/// Serves `store` until `shutdown` resolves, then closes it.
pub async fn serve_store(
    settings: &ServerSettings,
    store: Arc<dyn ManagedStore>,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let address = normalize_listen_address(&settings.listen_address);
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| ServerError::Listen {
            address: address.clone(),
            source,
        })?;
    let local_address: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(
        address = %local_address.map_or(address.clone(), |bound| bound.to_string()),
        "listening for HTTP"
    );

    let api_store: Arc<dyn Store> = store.clone();
    let state = ApiState::with_query_settings(
        api_store,
        clock.clone(),
        settings.ingest.clone(),
        query_settings(settings),
    );
    let scrape_manager = ScrapeManager::new(store.clone(), clock.clone());
    let rule_manager = RuleManager::new(
        Arc::new(RuleStore(store.clone())),
        store.clone().state_store(),
        clock.clone(),
        Engine::new(state.query_settings().engine.clone()),
    );
    let mut sla_settings = SlaSettings::from_config(None, &settings.external_url)
        .map_err(|error| ServerError::Config(error.to_string()))?;
    let mut notifications = notifications_sending_nothing();
    if let Some(path) = &settings.config_file {
        let config = scrape_manager
            .reload_from_file(path)
            .map_err(ServerError::Config)?;
        sla_settings = SlaSettings::from_config(config.sla.as_ref(), &settings.external_url)
            .map_err(|error| ServerError::Config(format!("SLA policies: {error}")))?;
        notifications = notifications_of(&config);
        let rules_store = rule_manager.clone();
        let mut rule_settings = RuleSettings::from_config(&config, path);
        rule_settings.external_url = settings.external_url.clone();
        tokio::task::spawn_blocking(move || rules_store.load(rule_settings))
            .await
            .map_err(|error| ServerError::Config(error.to_string()))?
            .map_err(|errors| {
                ServerError::Config(
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
    }
    // SLA incidents live beside the rules' state; a store without state
    // tables runs without them.
    let sla_manager = match store.clone().state_store() {
        Some(state_store) => {
            let series_store: Arc<dyn Appendable> = Arc::new(RuleStore(store.clone()));
            let query_store: Arc<dyn Queryable> = Arc::new(RuleStore(store.clone()));
            let manager = tokio::task::spawn_blocking(move || {
                SlaManager::open(
                    state_store,
                    Some(series_store),
                    Some(query_store),
                    sla_settings,
                )
            })
            .await
            .map_err(|error| ServerError::Config(error.to_string()))?
            .map_err(|error| ServerError::Config(format!("SLA incidents: {error}")))?;
            rule_manager.add_alert_sink(manager.clone());
            state.set_sla_manager(manager.clone());
            Some(manager)
        }
        None => None,
    };
    let silences = open_silences(&store, &clock, settings).await?;
    if let Some(silences) = &silences {
        state.set_silences(silences.clone());
    }
    let notifier = match store.clone().state_store() {
        Some(state_store) => {
            let notifier = Notifier::start(
                notifications,
                settings.external_url.clone(),
                state_store,
                silences.clone(),
                clock.clone(),
                tokio::runtime::Handle::current(),
            )
            .map_err(|error| ServerError::Config(error.to_string()))?;
            rule_manager.add_alert_sink(notifier.clone());
            state.set_notifier(notifier.clone());
            Some(notifier)
        }
        None => None,
    };
    // Escalations and breach notices reach the receivers through the
    // notifier's outbox, like any alert.
    if let (Some(sla_manager), Some(notifier)) = (&sla_manager, &notifier) {
        sla_manager.set_page_sink(Arc::new(NotifierPageSink(notifier.clone())));
        notifier.set_external_inhibitor(sla_manager.clone());
    }
    rule_manager.start();
    state.set_rule_manager(rule_manager.clone());
    let reload = config_reloader(
        scrape_manager.clone(),
        rule_manager.clone(),
        sla_manager.clone(),
        notifier.clone(),
        settings.external_url.clone(),
    );
    state.set_scrape_hooks(ScrapeHooks {
        manager: scrape_manager.clone(),
        config_file: settings.config_file.clone(),
        enable_lifecycle: settings.enable_lifecycle,
        reload: reload.clone(),
    });
    let reload_task = tokio::spawn(reload_on_sighup(reload, settings.config_file.clone()));
    let router = api::router(state);

    let retention_store = store.clone();
    let retention_task = tokio::spawn(async move {
        let mut interval = tokio::time::interval(RETENTION_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick fires at once; retention at startup is the store's business.
        interval.tick().await;
        loop {
            interval.tick().await;
            let store = retention_store.clone();
            match tokio::task::spawn_blocking(move || store.apply_retention()).await {
                Ok(Ok(())) => tracing::debug!("retention applied"),
                Ok(Err(error)) => tracing::warn!(%error, "retention failed"),
                Err(error) => tracing::error!(%error, "retention task panicked"),
            }
            if let Some(silences) = silences.clone() {
                match tokio::task::spawn_blocking(move || silences.garbage_collect()).await {
                    Ok(Ok(dropped)) => tracing::debug!(dropped, "expired silences collected"),
                    Ok(Err(error)) => tracing::warn!(%error, "silence collection failed"),
                    Err(error) => tracing::error!(%error, "silence collection panicked"),
                }
            }
        }
    });

    // Stopped by a message rather than aborted, so a tick that is storing
    // an incident finishes before the store closes.
    let (sla_stop_sender, sla_stop_receiver) = tokio::sync::watch::channel(false);
    let sla_task = sla_manager.clone().map(|manager| {
        let clock = clock.clone();
        let mut stop = sla_stop_receiver;
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(SLA_TICK_INTERVAL);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = stop.changed() => break,
                }
                let manager = manager.clone();
                let now = clock.now_ms();
                // Ticks persist incidents (fsync) and page: blocking work.
                if let Err(error) = tokio::task::spawn_blocking(move || manager.tick(now)).await {
                    tracing::error!(%error, "SLA tick panicked");
                }
            }
        })
    });

    let served = axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await;
    retention_task.abort();
    let _ = retention_task.await;
    reload_task.abort();
    tracing::info!("stopping scrape loops");
    scrape_manager.shutdown().await;
    tracing::info!("stopping rule evaluation");
    rule_manager.shutdown().await;
    if let Some(sla_task) = sla_task {
        tracing::info!("stopping SLA clocks");
        let _ = sla_stop_sender.send(true);
        let _ = sla_task.await;
    }
    if let Some(notifier) = notifier {
        tracing::info!("stopping the notifier; pending notifications stay in the outbox");
        let _ = tokio::task::spawn_blocking(move || notifier.shutdown()).await;
    }
    tracing::info!("HTTP server stopped; closing storage");
    let closing_store = store.clone();
    let closed = tokio::task::spawn_blocking(move || closing_store.close())
        .await
        .map_err(|error| ServerError::Close(format!("close task failed: {error}")))?;
    served.map_err(ServerError::Serve)?;
    closed.map_err(ServerError::Close)?;
    tracing::info!("storage closed; bye");
    Ok(())
}

/// The engine's options from the flags, and the flags and configuration
/// for the status pages.
pub fn query_settings(settings: &ServerSettings) -> QuerySettings {
    let engine = EngineOptions {
        lookback_delta_ms: i64::try_from(settings.query.lookback_delta.as_millis())
            .unwrap_or(i64::MAX),
        timeout: settings.query.timeout,
        max_samples: settings.query.max_samples,
        ..EngineOptions::default()
    };
    let config_yaml = match &settings.config_file {
        Some(path) => std::fs::read_to_string(path).unwrap_or_else(|error| {
            tracing::warn!(path = %path.display(), %error, "cannot read the configuration file");
            String::new()
        }),
        None => DEFAULT_CONFIG_YAML.to_string(),
    };
    QuerySettings {
        engine,
        flags: settings.flags.clone(),
        config_yaml,
    }
}

/// What `/api/v1/status/config` shows when no `--config.file` is given:
/// guardia then runs on flags alone, with nothing scraped and no rules.
pub const DEFAULT_CONFIG_YAML: &str = "\
# No --config.file given: guardia runs on its flags and built-in defaults.
scrape_configs: []
rule_files: []
";

/// Opens the store under `settings.storage_path` and serves until SIGINT/SIGTERM.
pub async fn serve(settings: ServerSettings) -> Result<(), ServerError> {
    let store = open_store(&settings)?;
    serve_store(&settings, store, Arc::new(SystemClock), shutdown_signal()).await
}

impl Store for Tsdb {
    fn is_ready(&self) -> bool {
        Tsdb::is_ready(self)
    }

    fn render_metrics(&self, exposition: &mut Exposition) {
        Tsdb::render_metrics(self, exposition);
    }

    fn stats(&self) -> Option<crate::tsdb::TsdbStats> {
        Some(Tsdb::stats(self))
    }
}

impl ManagedStore for Tsdb {
    fn apply_retention(&self) -> Result<(), String> {
        Tsdb::apply_retention(self)
            .map(|report| tracing::debug!(?report, "retention applied"))
            .map_err(|error| error.to_string())
    }

    fn close(&self) -> Result<(), String> {
        Tsdb::close(self).map_err(|error| error.to_string())
    }

    fn state_store(self: Arc<Self>) -> Option<Arc<dyn StateStore>> {
        Some(self)
    }
}

fn open_store(settings: &ServerSettings) -> Result<Arc<dyn ManagedStore>, ServerError> {
    let options = Options {
        retention: settings.retention.clone(),
        cache_bytes: settings.storage_cache_bytes,
        ..Options::default()
    };
    tracing::info!(path = %settings.storage_path.display(), "opening storage");
    let tsdb =
        Tsdb::open(&settings.storage_path, options).map_err(|error| ServerError::OpenStorage {
            path: settings.storage_path.display().to_string(),
            reason: error.to_string(),
        })?;
    Ok(tsdb)
}
