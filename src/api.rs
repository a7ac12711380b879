//! The HTTP API (axum). [`router`] builds every route over an [`ApiState`];
//! tests drive it with `tower::ServiceExt::oneshot` or over a real socket.
//! One file per endpoint family:
//!
//! - [`ingest`] — shared body reading (size limits, gzip) and commit reporting
//! - [`import`] — `POST /api/v1/import/prometheus` (text exposition)
//! - [`write`] — `POST /api/v1/write` (remote_write 1.0)
//! - [`series`] — `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values`
//! - [`export`] — `/api/v1/export` (JSON lines, streamed)
//! - [`status`] — `/-/healthy`, `/-/ready`, `/metrics`, `/api/v1/status/*`
//! - [`query`] — `/api/v1/query`, `/api/v1/query_range`, `/api/v1/format_query`,
//!   `/api/v1/parse_query`: PromQL through [`crate::promql::Engine`]
//! - [`query_json`] — Prometheus's JSON rendering of query results
//! - [`metadata`] — `/api/v1/metadata`, `/api/v1/query_exemplars`
//! - [`federate`] — `/federate` (latest sample per series, text exposition)
//! - [`targets`] — `/api/v1/targets`, `/api/v1/targets/metadata`, `/-/reload`
//! - [`silences`] — Alertmanager's `/api/v2/silences` and `/api/v2/silence/{id}`
//! - [`params`] — time, `match[]` and `limit` parameters as Prometheus reads them
//! - [`incidents`] — `/api/v1/incidents` (SLA incidents, actions, signed ack links)
//! - [`sla`] — `/api/v1/sla/report`
//! - [`error`] — the one place errors become HTTP responses
//!
//! Handlers do CPU and storage work in `spawn_blocking`, never on the async
//! runtime: storage commits block until durable and readers take redb
//! transactions.

pub mod error;
pub mod export;
pub mod federate;
pub mod import;
pub mod incidents;
pub mod ingest;
pub mod metadata;
pub mod notify_alerts;
pub mod params;
pub mod query;
pub mod query_json;
pub mod rules;
pub mod series;
pub mod silences;
pub mod sla;
pub mod status;
pub mod targets;
pub mod write;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use parking_lot::Mutex;

use crate::clock::Clock;
use crate::config::IngestLimits;
use crate::promql::EngineOptions;
use crate::storage::{Appendable, Queryable};
use crate::telemetry::{Exposition, Histogram};

pub use error::ApiError;

/// What the API needs from the store beyond the storage traits: readiness
/// for `/-/ready` and its self-metrics for `/metrics`.
pub trait Store: Appendable + Queryable + Send + Sync + 'static {
    /// False while starting, after a failed commit (poisoned) or when closing.
    fn is_ready(&self) -> bool;
    /// Appends the store's own metrics.
    fn render_metrics(&self, exposition: &mut Exposition);
    /// Size figures for `/api/v1/status/tsdb`, when the store keeps them.
    fn stats(&self) -> Option<crate::tsdb::TsdbStats> {
        None
    }
}

/// What the query and status endpoints need beyond the store: the engine's
/// settings, and the server's flags and configuration to show back.
#[derive(Clone, Debug, Default)]
pub struct QuerySettings {
    pub engine: EngineOptions,
    /// Flag name without the dashes → value, as `/api/v1/status/flags` shows them.
    pub flags: BTreeMap<String, String>,
    /// The configuration file's text, or the effective defaults as YAML.
    pub config_yaml: String,
}

/// Shared state of every handler; cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    shared: Arc<ApiShared>,
}

struct ApiShared {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    limits: IngestLimits,
    query: QuerySettings,
    /// Clock reading when the state was built, for `runtimeinfo`.
    start_time_ms: i64,
    metrics: ApiMetrics,
    /// Set once at start when scraping is configured.
    scrape_hooks: std::sync::OnceLock<targets::ScrapeHooks>,
    /// Series text → series reference for pushed text (see `import`).
    import_series_cache: import::SeriesTextCache,
    /// Set once at start by the server; `/api/v1/rules` and `/api/v1/alerts` read it.
    rule_manager: std::sync::OnceLock<Arc<crate::rules::RuleManager>>,
    /// Set once at start by the server; the incident and report endpoints read it.
    sla_manager: std::sync::OnceLock<Arc<crate::sla::manager::SlaManager>>,
    /// Set once at start by the server; `/api/v2/alerts` and `/metrics` read it.
    notifier: std::sync::OnceLock<Arc<crate::notify::Notifier>>,
    /// Set once at start by the server; the silence API reads it.
    silences: std::sync::OnceLock<Arc<crate::notify::silence::Silences>>,
}

impl ApiState {
    /// State with the engine's default settings and no flags to show.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, limits: IngestLimits) -> ApiState {
        ApiState::with_query_settings(store, clock, limits, QuerySettings::default())
    }

    pub fn with_query_settings(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: IngestLimits,
        query: QuerySettings,
    ) -> ApiState {
        let start_time_ms = clock.now_ms();
        ApiState {
            shared: Arc::new(ApiShared {
                store,
                clock,
                limits,
                query,
                start_time_ms,
                metrics: ApiMetrics::default(),
                scrape_hooks: std::sync::OnceLock::new(),
                import_series_cache: import::SeriesTextCache::default(),
                rule_manager: std::sync::OnceLock::new(),
                sla_manager: std::sync::OnceLock::new(),
                notifier: std::sync::OnceLock::new(),
                silences: std::sync::OnceLock::new(),
            }),
        }
    }

    pub fn query_settings(&self) -> &QuerySettings {
        &self.shared.query
    }

    pub fn start_time_ms(&self) -> i64 {
        self.shared.start_time_ms
    }

    pub fn import_series_cache(&self) -> &import::SeriesTextCache {
        &self.shared.import_series_cache
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    pub fn limits(&self) -> &IngestLimits {
        &self.shared.limits
    }

    pub fn metrics(&self) -> &ApiMetrics {
        &self.shared.metrics
    }

    /// Attaches the scrape manager; only the first call has an effect.
    pub fn set_scrape_hooks(&self, hooks: targets::ScrapeHooks) {
        let _ = self.shared.scrape_hooks.set(hooks);
    }

    pub fn scrape_hooks(&self) -> Option<&targets::ScrapeHooks> {
        self.shared.scrape_hooks.get()
    }

    /// Attaches the rule manager; only the first call has an effect.
    pub fn set_rule_manager(&self, manager: Arc<crate::rules::RuleManager>) {
        let _ = self.shared.rule_manager.set(manager);
    }

    pub fn rule_manager(&self) -> Option<&Arc<crate::rules::RuleManager>> {
        self.shared.rule_manager.get()
    }

    /// Attaches the SLA incident manager; only the first call has an effect.
    pub fn set_sla_manager(&self, manager: Arc<crate::sla::manager::SlaManager>) {
        let _ = self.shared.sla_manager.set(manager);
    }

    pub fn sla_manager(&self) -> Option<&Arc<crate::sla::manager::SlaManager>> {
        self.shared.sla_manager.get()
    }

    /// Attaches the notifier; only the first call has an effect.
    pub fn set_notifier(&self, notifier: Arc<crate::notify::Notifier>) {
        let _ = self.shared.notifier.set(notifier);
    }

    pub fn notifier(&self) -> Option<&Arc<crate::notify::Notifier>> {
        self.shared.notifier.get()
    }

    /// Attaches the silences; only the first call has an effect.
    pub fn set_silences(&self, silences: Arc<crate::notify::silence::Silences>) {
        let _ = self.shared.silences.set(silences);
    }

    pub fn silences(&self) -> Option<&Arc<crate::notify::silence::Silences>> {
        self.shared.silences.get()
    }
}

/// Request and ingest counters of this API instance, rendered on `/metrics`.
#[derive(Default)]
pub struct ApiMetrics {
    /// (handler route, status code) → requests.
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// handler route → latency histogram.
    durations: Mutex<BTreeMap<String, Arc<Histogram>>>,
    /// (protocol, rejection reason) → push requests refused as a whole.
    requests_rejected: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// (protocol, outcome) → pushed samples.
    samples_pushed: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
}

impl ApiMetrics {
    fn observe_request(&self, handler: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .entry((handler.to_string(), status))
            .or_insert(0) += 1;
        let histogram = self
            .durations
            .lock()
            .entry(handler.to_string())
            .or_insert_with(|| Arc::new(Histogram::new()))
            .clone();
        histogram.observe(seconds);
    }

    pub fn reject_request(&self, protocol: &'static str, reason: &'static str) {
        *self
            .requests_rejected
            .lock()
            .entry((protocol, reason))
            .or_insert(0) += 1;
    }

    pub fn count_samples(&self, protocol: &'static str, outcome: &'static str, samples: u64) {
        *self
            .samples_pushed
            .lock()
            .entry((protocol, outcome))
            .or_insert(0) += samples;
    }

    pub fn render(&self, exposition: &mut Exposition) {
        exposition.family(
            "guardia_http_requests_total",
            "counter",
            "HTTP requests served, by handler and status code.",
        );
        for ((handler, code), count) in self.requests.lock().iter() {
            let code = code.to_string();
            exposition.sample(
                "guardia_http_requests_total",
                &[("handler", handler), ("code", &code)],
                *count as f64,
            );
        }
        exposition.family(
            "guardia_http_request_duration_seconds",
            "histogram",
            "Time to produce the response head, by handler.",
        );
        let durations: Vec<(String, Arc<Histogram>)> = self
            .durations
            .lock()
            .iter()
            .map(|(handler, histogram)| (handler.clone(), histogram.clone()))
            .collect();
        for (handler, histogram) in &durations {
            exposition.histogram_sample(
                "guardia_http_request_duration_seconds",
                &[("handler", handler)],
                histogram,
            );
        }
        exposition.family(
            "guardia_push_samples_total",
            "counter",
            "Samples pushed over HTTP, by protocol and outcome (appended, out_of_order, duplicate_timestamp).",
        );
        for ((protocol, outcome), count) in self.samples_pushed.lock().iter() {
            exposition.sample(
                "guardia_push_samples_total",
                &[("protocol", protocol), ("outcome", outcome)],
                *count as f64,
            );
        }
        exposition.family(
            "guardia_push_requests_rejected_total",
            "counter",
            "Push requests refused as a whole (nothing stored), by protocol and reason.",
        );
        for ((protocol, reason), count) in self.requests_rejected.lock().iter() {
            exposition.sample(
                "guardia_push_requests_rejected_total",
                &[("protocol", protocol), ("reason", reason)],
                *count as f64,
            );
        }
    }
}

/// Builds every route over `state`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/import/prometheus", post(import::import_prometheus))
        .route("/api/v1/write", post(write::remote_write))
        .route(
            "/api/v1/series",
            get(series::series_handler).post(series::series_handler),
        )
        .route(
            "/api/v1/labels",
            get(series::label_names_handler).post(series::label_names_handler),
        )
        .route(
            "/api/v1/label/{name}/values",
            get(series::label_values_handler),
        )
        .route(
            "/api/v1/export",
            get(export::export_handler).post(export::export_handler),
        )
        .route(
            "/api/v1/query",
            get(query::instant_query_handler).post(query::instant_query_handler),
        )
        .route(
            "/api/v1/query_range",
            get(query::range_query_handler).post(query::range_query_handler),
        )
        .route(
            "/api/v1/format_query",
            get(query::format_query_handler).post(query::format_query_handler),
        )
        .route(
            "/api/v1/parse_query",
            get(query::parse_query_handler).post(query::parse_query_handler),
        )
        .route("/api/v1/metadata", get(metadata::metadata_handler))
        .route(
            "/api/v1/query_exemplars",
            get(metadata::query_exemplars_handler).post(metadata::query_exemplars_handler),
        )
        .route("/api/v1/status/buildinfo", get(status::buildinfo))
        .route("/api/v1/status/runtimeinfo", get(status::runtimeinfo))
        .route("/api/v1/status/flags", get(status::flags))
        .route("/api/v1/status/config", get(status::config))
        .route("/api/v1/status/tsdb", get(status::tsdb_status))
        .route("/federate", get(federate::federate_handler))
        .route("/-/healthy", get(status::healthy).head(status::healthy))
        .route("/-/ready", get(status::ready).head(status::ready))
        .route("/metrics", get(status::metrics))
        .route("/api/v1/targets", get(targets::targets_handler))
        .route("/api/v1/rules", get(rules::rules_handler))
        .route("/api/v1/alerts", get(rules::alerts_handler))
        .route("/api/v2/alerts", get(notify_alerts::alerts_handler))
        .route("/api/v2/status", get(notify_alerts::status_handler))
        .route(
            "/api/v2/silences",
            get(silences::list_silences).post(silences::post_silence),
        )
        .route(
            "/api/v2/silence/{id}",
            get(silences::get_silence).delete(silences::delete_silence),
        )
        .route(
            "/api/v1/targets/metadata",
            get(targets::targets_metadata_handler),
        )
        // SLA incidents and reports.
        .route("/api/v1/incidents", get(incidents::list_incidents_handler))
        .route(
            "/api/v1/incidents/{id}",
            get(incidents::get_incident_handler),
        )
        .route(
            "/api/v1/incidents/{id}/ack",
            post(incidents::acknowledge_handler),
        )
        .route(
            "/api/v1/incidents/{id}/unack",
            post(incidents::unacknowledge_handler),
        )
        .route(
            "/api/v1/incidents/{id}/resolve",
            post(incidents::resolve_handler),
        )
        .route(
            "/api/v1/incidents/{id}/notes",
            post(incidents::note_handler),
        )
        .route(
            "/api/v1/incidents/{id}/ack-link",
            get(incidents::ack_link_page_handler).post(incidents::ack_link_confirm_handler),
        )
        .route("/api/v1/sla/report", get(sla::report_handler))
        .route(
            "/-/reload",
            post(targets::reload_handler).put(targets::reload_handler),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            track_request,
        ))
        .with_state(state)
}

/// Counts every routed request by handler and status, and times it.
async fn track_request(
    State(state): State<ApiState>,
    matched_path: Option<MatchedPath>,
    request: Request,
    next: Next,
) -> Response {
    let handler = matched_path
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "other".to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    state.metrics().observe_request(
        &handler,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Runs blocking work off the async runtime; a panic in it becomes a 500.
pub(crate) async fn run_blocking<T, F>(work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| ApiError::Internal(format!("worker task failed: {error}")))?
}
