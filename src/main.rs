//! The `guardia` command line. With no subcommand it runs `guardia serve`
//! on embedded defaults: data in `./data`, HTTP on `0.0.0.0:9099`. Flags use
//! Prometheus's names (`--storage.path`, `--web.listen-address`, ...).
//! `guardia query` and `guardia query-range` evaluate PromQL straight on a
//! data directory (no server; the server must not be holding it).
//! `guardia sla report` prints the SLA figures of the incidents stored in a
//! data directory, likewise without a server.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use guardia::config::{
    IngestLimits, QueryLimits, Retention, ServerSettings, parse_duration, parse_size,
};

/// guardia's default HTTP port: 9099, clear of Prometheus (9090),
/// Alertmanager (9093), Pushgateway (9091) and the common exporters.
const DEFAULT_LISTEN_ADDRESS: &str = "0.0.0.0:9099";

#[derive(Debug, Parser)]
#[command(
    name = "guardia",
    version,
    about = "Prometheus-compatible monitoring for remote sites: scrape, push, store, query, alert",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Evaluate a PromQL expression at one time on a data directory and print the result.
    Query(QueryArgs),
    /// Evaluate a PromQL expression over a time range on a data directory.
    QueryRange(QueryRangeArgs),
    /// SLA figures from a data directory's incidents.
    #[command(subcommand)]
    Sla(SlaCommand),
    /// Validate files, like promtool check.
    #[command(subcommand)]
    Check(CheckCommand),
    /// Run unit tests, like promtool test.
    #[command(subcommand)]
    Test(TestCommand),
}

#[derive(Debug, Clone, Args)]
struct QueryArgs {
    /// The PromQL expression.
    expr: String,
    /// Evaluation time: RFC 3339 or Unix seconds (default: now).
    #[arg(long = "time", value_name = "TIME")]
    time: Option<String>,
    #[command(flatten)]
    storage: QueryStorageArgs,
}

#[derive(Debug, Clone, Args)]
struct QueryRangeArgs {
    /// The PromQL expression.
    expr: String,
    /// First evaluation time: RFC 3339 or Unix seconds.
    #[arg(long = "start", value_name = "TIME")]
    start: String,
    /// Last evaluation time (default: now).
    #[arg(long = "end", value_name = "TIME")]
    end: Option<String>,
    /// Resolution: float seconds or a Prometheus duration (15s, 1m).
    #[arg(long = "step", default_value = "1m", value_name = "DURATION")]
    step: String,
    #[command(flatten)]
    storage: QueryStorageArgs,
}

#[derive(Debug, Subcommand)]
enum SlaCommand {
    /// Per policy: incidents opened in [--from, --to), acknowledge and
    /// resolve figures, breaches, escalations, covered hours.
    Report(SlaReportArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ReportFormat {
    Table,
    Csv,
}

#[derive(Debug, Clone, Args)]
struct SlaReportArgs {
    /// Start of the period: RFC 3339 or Unix seconds.
    #[arg(long = "from", value_name = "TIME")]
    from: String,
    /// End of the period, exclusive (default: now).
    #[arg(long = "to", value_name = "TIME")]
    to: Option<String>,
    /// Only this policy.
    #[arg(long = "policy", value_name = "NAME")]
    policy: Option<String>,
    #[arg(long = "format", value_enum, default_value = "table")]
    format: ReportFormat,
    /// The configuration whose `sla` section defines the policies and calendars.
    #[arg(long = "config.file", value_name = "PATH")]
    config_file: PathBuf,
    /// Directory of the storage to read.
    #[arg(long = "storage.path", default_value = "data", value_name = "DIR")]
    storage_path: PathBuf,
}

#[derive(Debug, Clone, Args)]
struct QueryStorageArgs {
    /// Directory of the storage to read.
    #[arg(long = "storage.path", default_value = "data", value_name = "DIR")]
    storage_path: PathBuf,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m", value_name = "DURATION", value_parser = parse_retention_time)]
    lookback_delta: Duration,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Logfmt,
    Json,
}

#[derive(Debug, Clone, Args)]
struct ServeArgs {
    /// guardia configuration file (YAML).
    #[arg(long = "config.file", value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// Enable shutdown and reload over HTTP (`POST /-/reload`).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// Directory of the storage.
    #[arg(long = "storage.path", default_value = "data", value_name = "DIR")]
    storage_path: PathBuf,
    /// The URL under which guardia is reached from outside (links in alerts
    /// and notifications). Defaults to http://<hostname>:<port>.
    #[arg(long = "web.external-url", value_name = "URL")]
    external_url: Option<String>,
    /// Address to listen on for the HTTP API (`host:port` or `:port`).
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN_ADDRESS, value_name = "ADDRESS")]
    listen_address: String,
    /// Only log messages with this severity or above.
    #[arg(long = "log.level", value_enum, default_value = "info")]
    log_level: LogLevel,
    /// Output format of log messages.
    #[arg(long = "log.format", value_enum, default_value = "logfmt")]
    log_format: LogFormat,
    /// How long to keep samples, counted back from the newest (Prometheus duration: 15d, 2h30m).
    #[arg(long = "storage.retention.time", default_value = "15d", value_name = "DURATION", value_parser = parse_retention_time)]
    retention_time: Duration,
    /// Largest size of stored data (512MB, 10GB, 1TiB; powers of 1024). Unlimited when unset.
    #[arg(long = "storage.retention.size", value_name = "SIZE", value_parser = parse_retention_size)]
    retention_size: Option<u64>,
    /// redb's page cache (size syntax as above). Resident memory of its own;
    /// the operating system's page cache holds the database's pages as well.
    #[arg(long = "storage.cache-size", default_value = "4MB", value_name = "SIZE", value_parser = parse_retention_size)]
    storage_cache_size: u64,
    /// Largest accepted push body, after decompression (size syntax as above).
    #[arg(long = "ingest.max-body-size", default_value = "64MB", value_name = "SIZE", value_parser = parse_retention_size)]
    max_body_size: u64,
    /// Most labels (metric name included) a pushed series may have.
    #[arg(long = "ingest.max-labels-per-series", default_value_t = IngestLimits::default().max_labels_per_series)]
    max_labels_per_series: usize,
    /// Longest label name in bytes.
    #[arg(long = "ingest.max-label-name-length", default_value_t = IngestLimits::default().max_label_name_length)]
    max_label_name_length: usize,
    /// Longest label value in bytes.
    #[arg(long = "ingest.max-label-value-length", default_value_t = IngestLimits::default().max_label_value_length)]
    max_label_value_length: usize,
    /// Most distinct series in one push request.
    #[arg(long = "ingest.max-series-per-request", default_value_t = IngestLimits::default().max_series_per_request)]
    max_series_per_request: usize,
    /// How far back an instant selector looks for a sample (Prometheus duration).
    #[arg(long = "query.lookback-delta", default_value = "5m", value_name = "DURATION", value_parser = parse_retention_time)]
    query_lookback_delta: Duration,
    /// Longest a query may run before it is abandoned (Prometheus duration).
    #[arg(long = "query.timeout", default_value = "2m", value_name = "DURATION", value_parser = parse_retention_time)]
    query_timeout: Duration,
    /// Most samples one query may hold in memory.
    #[arg(long = "query.max-samples", default_value_t = QueryLimits::default().max_samples)]
    query_max_samples: usize,
}

fn parse_retention_time(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| error.to_string())
}

fn parse_retention_size(text: &str) -> Result<u64, String> {
    parse_size(text).map_err(|error| error.to_string())
}

impl ServeArgs {
    fn settings(&self) -> anyhow::Result<ServerSettings> {
        if let Some(path) = &self.config_file {
            anyhow::ensure!(
                path.is_file(),
                "--config.file {} does not exist or is not a file",
                path.display()
            );
        }
        let max_body_bytes = usize::try_from(self.max_body_size)
            .context("--ingest.max-body-size does not fit in memory addresses")?;
        let storage_cache_bytes = usize::try_from(self.storage_cache_size)
            .context("--storage.cache-size does not fit in memory addresses")?;
        Ok(ServerSettings {
            storage_path: self.storage_path.clone(),
            listen_address: self.listen_address.clone(),
            retention: Retention {
                time: (!self.retention_time.is_zero()).then_some(self.retention_time),
                size_bytes: self.retention_size,
            },
            ingest: IngestLimits {
                max_body_bytes,
                max_labels_per_series: self.max_labels_per_series,
                max_label_name_length: self.max_label_name_length,
                max_label_value_length: self.max_label_value_length,
                max_series_per_request: self.max_series_per_request,
            },
            config_file: self.config_file.clone(),
            query: QueryLimits {
                lookback_delta: self.query_lookback_delta,
                timeout: self.query_timeout,
                max_samples: self.query_max_samples,
            },
            flags: self.flags(),
            enable_lifecycle: self.enable_lifecycle,
            storage_cache_bytes,
            external_url: self.external_url(),
        })
    }

    /// `--web.external-url`, or Prometheus's default: this host's name and
    /// the listening port.
    fn external_url(&self) -> String {
        if let Some(url) = &self.external_url {
            return url.trim_end_matches('/').to_string();
        }
        let port = self
            .listen_address
            .rsplit_once(':')
            .map_or("9099", |(_, port)| port);
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "localhost".to_string());
        format!("http://{host}:{port}")
    }

    /// Every flag as `/api/v1/status/flags` shows it: name without dashes,
    /// value as given or defaulted.
    fn flags(&self) -> BTreeMap<String, String> {
        let log_level = match self.log_level {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        let log_format = match self.log_format {
            LogFormat::Logfmt => "logfmt",
            LogFormat::Json => "json",
        };
        let pairs = [
            (
                "config.file",
                self.config_file
                    .as_ref()
                    .map(|path| path.display().to_string())
                    .unwrap_or_default(),
            ),
            ("storage.path", self.storage_path.display().to_string()),
            ("web.listen-address", self.listen_address.clone()),
            ("web.external-url", self.external_url()),
            ("log.level", log_level.to_string()),
            ("log.format", log_format.to_string()),
            (
                "storage.retention.time",
                format_duration(self.retention_time),
            ),
            (
                "storage.retention.size",
                self.retention_size
                    .map(|bytes| format!("{bytes}B"))
                    .unwrap_or_default(),
            ),
            (
                "storage.cache-size",
                format!("{}B", self.storage_cache_size),
            ),
            ("ingest.max-body-size", format!("{}B", self.max_body_size)),
            (
                "ingest.max-labels-per-series",
                self.max_labels_per_series.to_string(),
            ),
            (
                "ingest.max-label-name-length",
                self.max_label_name_length.to_string(),
            ),
            (
                "ingest.max-label-value-length",
                self.max_label_value_length.to_string(),
            ),
            (
                "ingest.max-series-per-request",
                self.max_series_per_request.to_string(),
            ),
            (
                "query.lookback-delta",
                format_duration(self.query_lookback_delta),
            ),
            ("query.timeout", format_duration(self.query_timeout)),
            ("query.max-samples", self.query_max_samples.to_string()),
        ];
        pairs
            .into_iter()
            .map(|(name, value)| (name.to_string(), value))
            .collect()
    }
}

/// A duration in Prometheus's largest-units-first form (`15d`, `2h30m`, `0s`).
fn format_duration(duration: Duration) -> String {
    let mut millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_string();
    }
    let mut text = String::new();
    for (unit, size) in [
        ("y", 365 * 86_400_000u128),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if millis >= size {
            text.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    text
}

fn init_logging(level: LogLevel, format: LogFormat) {
    let level = match level {
        LogLevel::Debug => tracing::Level::DEBUG,
        LogLevel::Info => tracing::Level::INFO,
        LogLevel::Warn => tracing::Level::WARN,
        LogLevel::Error => tracing::Level::ERROR,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Logfmt => builder.event_format(logfmt::LogfmtFormat).init(),
    }
}

/// jemalloc instead of glibc's malloc. Measured on the two-core bench
/// machine (README figures): scraping 100 targets went from 1.64-1.87 to
/// 1.04-1.10 CPU-s per million samples and from 1.18 to 1.01-1.06 KB RSS
/// per series, and the PromQL benchmark's geometric mean from 19.9 to 14.6
/// ms. glibc, even limited to one arena and trimmed every few seconds, spent
/// a quarter of a query's time in malloc and free (label strings, sample
/// buffers) and kept freed pages between long-lived head allocations;
/// mimalloc was faster still on queries but held 1.6 KB per series.
/// jemalloc's background thread returns freed pages to the kernel, so no
/// trimming thread is needed.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read by jemalloc at its first allocation (an
/// operator's `_RJEM_MALLOC_CONF` still overrides them). One arena, and
/// freed pages handed back after 0.2 s instead of 10 s: the end-to-end push
/// benchmark (100k series) went from 1,030-1,060 to 972 B peak RSS per
/// series, under issue 2's 1 KiB, at the same CPU (0.67 CPU-s per million
/// samples). Returning pages at once (`dirty_decay_ms:0`) saved another
/// 50 B but cost a fifth more CPU.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static malloc_conf: &[u8; 69] =
    b"background_thread:true,narenas:1,dirty_decay_ms:200,muzzy_decay_ms:0\0";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serve_args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Query(args)) => return query_cli::run_instant(&args),
        Some(Command::QueryRange(args)) => return query_cli::run_range(&args),
        Some(Command::Sla(SlaCommand::Report(args))) => return sla_cli::run_report(&args),
        Some(Command::Check(command)) => std::process::exit(run_check(command)),
        Some(Command::Test(TestCommand::Rules { files })) => {
            let mut stdout = std::io::stdout();
            let passed = guardia::rules::unit_test::run_test_files(&files, &mut stdout);
            std::process::exit(i32::from(!passed))
        }
        None => cli.serve,
    };
    init_logging(serve_args.log_level, serve_args.log_format);
    let settings = serve_args.settings()?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        storage_path = %settings.storage_path.display(),
        listen_address = %settings.listen_address,
        "starting guardia"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(guardia::server::serve(settings))
        .context("guardia stopped with an error")?;
    Ok(())
}

/// `guardia sla report`: the incidents of the data directory and the
/// policies of the configuration file, through `sla::report`.
mod sla_cli {
    use anyhow::Context as _;
    use guardia::api::params::parse_time;
    use guardia::sla::policy::PolicySet;
    use guardia::sla::report::{format_report_csv, format_report_table, sla_report};

    use super::{QueryStorageArgs, ReportFormat, SlaReportArgs};

    pub fn run_report(args: &SlaReportArgs) -> anyhow::Result<()> {
        let from = parse_time(&args.from).map_err(|reason| anyhow::anyhow!("--from: {reason}"))?;
        let now = guardia::clock::now_ms();
        let to = match &args.to {
            Some(text) => parse_time(text).map_err(|reason| anyhow::anyhow!("--to: {reason}"))?,
            None => now,
        };
        anyhow::ensure!(from <= to, "--to is before --from");
        let config = guardia::config::file::load_file(&args.config_file)
            .with_context(|| format!("reading {}", args.config_file.display()))?;
        let sla = config.sla.unwrap_or_default();
        let policies = PolicySet::from_config(&sla).context("the sla section's policies")?;
        if let Some(name) = &args.policy {
            anyhow::ensure!(
                policies.policy(name).is_some(),
                "no SLA policy named {name:?} in {}",
                args.config_file.display()
            );
        }
        // Opened the way `guardia query` opens it, for the same lock message.
        let (tsdb, _engine) = super::query_cli::open(&QueryStorageArgs {
            storage_path: args.storage_path.clone(),
            lookback_delta: std::time::Duration::from_secs(300),
        })?;
        let incidents = guardia::sla::manager::load_all_incidents(tsdb.as_ref());
        let closed = tsdb.close();
        let incidents = incidents.context("reading the incidents")?;
        closed.context("closing the storage")?;
        let reports = sla_report(&incidents, &policies, from, to, args.policy.as_deref(), now);
        match args.format {
            ReportFormat::Table => print!("{}", format_report_table(&reports)),
            ReportFormat::Csv => print!("{}", format_report_csv(&reports)),
        }
        Ok(())
    }
}

/// `guardia query` and `guardia query-range`: open the data directory,
/// evaluate, print a table.
mod query_cli {
    use std::path::Path;
    use std::sync::Arc;

    use anyhow::Context as _;
    use guardia::api::params::parse_time;
    use guardia::api::query::parse_api_duration;
    use guardia::api::query_json::format_sample_value;
    use guardia::model::Timestamp;
    use guardia::promql::{Engine, EngineOptions, QueryOptions, Value};
    use guardia::tsdb::{Options, Tsdb};

    use super::{QueryArgs, QueryRangeArgs, QueryStorageArgs};

    pub fn run_instant(args: &QueryArgs) -> anyhow::Result<()> {
        let time_ms = match &args.time {
            Some(text) => parse_time(text).map_err(|reason| anyhow::anyhow!("--time: {reason}"))?,
            None => guardia::clock::now_ms(),
        };
        let (tsdb, engine) = open(&args.storage)?;
        let result =
            engine.instant_query(tsdb.as_ref(), &args.expr, time_ms, QueryOptions::default());
        let closed = tsdb.close();
        let result = result.context("query failed")?;
        closed.context("closing the storage")?;
        print!("{}", render(&result.value));
        for note in result.warnings.iter().chain(&result.infos) {
            eprintln!("{note}");
        }
        Ok(())
    }

    pub fn run_range(args: &QueryRangeArgs) -> anyhow::Result<()> {
        let start_ms =
            parse_time(&args.start).map_err(|reason| anyhow::anyhow!("--start: {reason}"))?;
        let end_ms = match &args.end {
            Some(text) => parse_time(text).map_err(|reason| anyhow::anyhow!("--end: {reason}"))?,
            None => guardia::clock::now_ms(),
        };
        let step_ms =
            parse_api_duration(&args.step).map_err(|reason| anyhow::anyhow!("--step: {reason}"))?;
        let (tsdb, engine) = open(&args.storage)?;
        let result = engine.range_query(
            tsdb.as_ref(),
            &args.expr,
            start_ms,
            end_ms,
            step_ms,
            QueryOptions::default(),
        );
        let closed = tsdb.close();
        let result = result.context("query failed")?;
        closed.context("closing the storage")?;
        print!("{}", render(&result.value));
        for note in result.warnings.iter().chain(&result.infos) {
            eprintln!("{note}");
        }
        Ok(())
    }

    pub(super) fn open(storage: &QueryStorageArgs) -> anyhow::Result<(Arc<Tsdb>, Engine)> {
        let directory: &Path = &storage.storage_path;
        anyhow::ensure!(
            directory.is_dir(),
            "no data directory at {} (set --storage.path)",
            directory.display()
        );
        let tsdb = Tsdb::open(directory, Options::default()).map_err(|error| {
            let message = error.to_string();
            if message.contains("already open") || message.contains("lock") {
                anyhow::anyhow!(
                    "the storage in {} is in use, most likely by a running guardia server \
                     (it holds the database file lock); stop it, or query it over HTTP at \
                     /api/v1/query instead ({message})",
                    directory.display()
                )
            } else {
                anyhow::anyhow!(
                    "cannot open the storage in {}: {message}",
                    directory.display()
                )
            }
        })?;
        let engine = Engine::new(EngineOptions {
            lookback_delta_ms: i64::try_from(storage.lookback_delta.as_millis())
                .unwrap_or(i64::MAX),
            ..EngineOptions::default()
        });
        Ok((tsdb, engine))
    }

    fn seconds(t: Timestamp) -> String {
        if t % 1000 == 0 {
            (t / 1000).to_string()
        } else {
            format!("{}", t as f64 / 1000.0)
        }
    }

    /// Scalars and strings print plainly; vectors and matrices as a table
    /// of series, value and timestamp (one row per point).
    pub(super) fn render(value: &Value) -> String {
        let rows: Vec<[String; 3]> = match value {
            Value::Scalar { v, .. } => return format!("{}\n", format_sample_value(*v)),
            Value::String { value, .. } => return format!("{value}\n"),
            Value::Vector(samples) => samples
                .iter()
                .map(|sample| {
                    [
                        sample.labels.to_string(),
                        format_sample_value(sample.v),
                        seconds(sample.t),
                    ]
                })
                .collect(),
            Value::Matrix(series) => series
                .iter()
                .flat_map(|one_series| {
                    let labels = one_series.labels.to_string();
                    one_series.samples.iter().map(move |sample| {
                        [
                            labels.clone(),
                            format_sample_value(sample.v),
                            seconds(sample.t),
                        ]
                    })
                })
                .collect(),
        };
        let header = [
            "SERIES".to_string(),
            "VALUE".to_string(),
            "TIMESTAMP".to_string(),
        ];
        let mut widths = [0usize; 3];
        for row in std::iter::once(&header).chain(&rows) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let line = format!(
                "{:<w0$}  {:<w1$}  {}",
                row[0],
                row[1],
                row[2],
                w0 = widths[0],
                w1 = widths[1]
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if rows.is_empty() {
            out.push_str("(no series)\n");
        }
        out
    }
}

/// A logfmt event formatter: `ts=... level=info msg="..." key=value`.
mod logfmt {
    use std::fmt::{self, Write as _};

    use tracing::field::{Field, Visit};
    use tracing::{Event, Subscriber};
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
    use tracing_subscriber::registry::LookupSpan;

    pub struct LogfmtFormat;

    impl<S, N> FormatEvent<S, N> for LogfmtFormat
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        fn format_event(
            &self,
            _context: &FmtContext<'_, S, N>,
            mut writer: Writer<'_>,
            event: &Event<'_>,
        ) -> fmt::Result {
            let metadata = event.metadata();
            write!(
                writer,
                "ts={} level={}",
                rfc3339_now(),
                metadata.level().as_str().to_ascii_lowercase(),
            )?;
            // Prometheus's `caller=file.go:123`, with the module for context.
            match (metadata.file(), metadata.line()) {
                (Some(file), Some(line)) => {
                    let file_name = file.rsplit('/').next().unwrap_or(file);
                    write!(writer, " caller={file_name}:{line}")?;
                }
                _ => write!(writer, " caller={}", metadata.target())?,
            }
            write!(writer, " module={}", metadata.target())?;
            let mut visitor = LogfmtVisitor::default();
            event.record(&mut visitor);
            if let Some(message) = &visitor.message {
                write!(writer, " msg={}", quote(message))?;
            }
            writer.write_str(&visitor.fields)?;
            writeln!(writer)
        }
    }

    #[derive(Default)]
    struct LogfmtVisitor {
        message: Option<String>,
        fields: String,
    }

    impl Visit for LogfmtVisitor {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "message" {
                self.message = Some(value.to_string());
            } else {
                let _ = write!(self.fields, " {}={}", field.name(), quote(value));
            }
        }

        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            self.record_str(field, &format!("{value:?}"));
        }
    }

    /// Quotes a value when it holds a space, `=`, a quote or nothing.
    pub(super) fn quote(value: &str) -> String {
        if !value.is_empty()
            && !value
                .chars()
                .any(|character| character.is_whitespace() || matches!(character, '"' | '='))
        {
            return value.to_string();
        }
        let mut quoted = String::with_capacity(value.len() + 2);
        quoted.push('"');
        for character in value.chars() {
            match character {
                '"' => quoted.push_str("\\\""),
                '\\' => quoted.push_str("\\\\"),
                '\n' => quoted.push_str("\\n"),
                other => quoted.push(other),
            }
        }
        quoted.push('"');
        quoted
    }

    /// UTC wall time as RFC 3339 with milliseconds.
    fn rfc3339_now() -> String {
        guardia::model::format_rfc3339_millis(guardia::clock::now_ms())
    }
}

#[derive(Debug, Subcommand)]
enum CheckCommand {
    /// Check configuration files (SUCCESS / FAILED per file; exit 1 on any failure).
    Config {
        #[arg(required = true, value_name = "CONFIG_FILE")]
        files: Vec<PathBuf>,
    },
    /// Check rule files as `promtool check rules` does (exit 1 on any failure).
    Rules {
        #[arg(required = true, value_name = "RULE_FILE")]
        files: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum TestCommand {
    /// Run `promtool test rules` files (exit 1 on any failure).
    Rules {
        #[arg(required = true, value_name = "TEST_FILE")]
        files: Vec<PathBuf>,
    },
}

/// Runs `guardia check ...`; returns the process exit code.
fn run_check(command: CheckCommand) -> i32 {
    match command {
        CheckCommand::Config { files } => {
            let mut failed = false;
            for file in files {
                println!("Checking {}", file.display());
                match guardia::scrape::check_config_file(&file) {
                    Ok(config) => {
                        // Calendars read their holiday files only when built.
                        if let Some(sla) = &config.sla
                            && let Err(error) = guardia::sla::policy::PolicySet::from_config(sla)
                        {
                            failed = true;
                            eprintln!("  FAILED: {error}");
                            println!();
                            continue;
                        }
                        // As promtool: the rule files a config lists are checked too.
                        let rule_files =
                            guardia::rules::RuleSettings::from_config(&config, &file).rule_files;
                        if !rule_files.is_empty() {
                            println!("  SUCCESS: {} rule files found", rule_files.len());
                        }
                        println!(
                            " SUCCESS: {} is valid guardia config file syntax ({} scrape configs)",
                            file.display(),
                            config.scrape_configs.len()
                        );
                        println!();
                        failed |= !check_rule_files(&rule_files);
                    }
                    Err(error) => {
                        failed = true;
                        eprintln!("  FAILED: {error}");
                        println!();
                    }
                }
            }
            i32::from(failed)
        }
        CheckCommand::Rules { files } => i32::from(!check_rule_files(&files)),
    }
}

/// Checks rule files as `promtool check rules` does, printing per file;
/// true when every file is valid.
fn check_rule_files(files: &[PathBuf]) -> bool {
    let mut all_valid = true;
    for file in files {
        println!("Checking {}", file.display());
        match guardia::rules::load_rule_file(file) {
            Ok(rules) => println!("  SUCCESS: {} rules found", rules.rule_count()),
            Err(errors) => {
                all_valid = false;
                eprintln!("  FAILED:");
                for error in errors {
                    eprintln!("{error}");
                }
            }
        }
        println!();
    }
    all_valid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_arguments_means_serve_on_defaults() {
        let cli = Cli::try_parse_from(["guardia"]).unwrap();
        assert!(cli.command.is_none());
        let settings = cli.serve.settings().unwrap();
        assert_eq!(settings.storage_path, PathBuf::from("data"));
        assert_eq!(settings.listen_address, "0.0.0.0:9099");
        assert_eq!(
            settings.retention.time,
            Some(Duration::from_secs(15 * 86_400))
        );
        assert_eq!(settings.retention.size_bytes, None);
        assert_eq!(settings.ingest, IngestLimits::default());
        assert_eq!(
            settings.storage_cache_bytes,
            guardia::tsdb::DEFAULT_CACHE_BYTES
        );
    }

    #[test]
    fn serve_flags_are_prometheus_style() {
        let cli = Cli::try_parse_from([
            "guardia",
            "serve",
            "--storage.path=/var/lib/guardia",
            "--web.listen-address=:9100",
            "--storage.retention.time=2h30m",
            "--storage.retention.size=1TiB",
            "--storage.cache-size=8MB",
            "--ingest.max-body-size=1MB",
            "--ingest.max-series-per-request=10",
            "--log.format=json",
            "--log.level=warn",
        ])
        .unwrap();
        let Some(Command::Serve(args)) = cli.command else {
            panic!("expected serve");
        };
        let settings = args.settings().unwrap();
        assert_eq!(settings.retention.time, Some(Duration::from_secs(9000)));
        assert_eq!(settings.retention.size_bytes, Some(1 << 40));
        assert_eq!(settings.storage_cache_bytes, 8 << 20);
        assert_eq!(settings.ingest.max_body_bytes, 1 << 20);
        assert_eq!(settings.ingest.max_series_per_request, 10);
        assert_eq!(settings.listen_address, ":9100");
        assert!(Cli::try_parse_from(["guardia", "--log.level=trace"]).is_err());
    }
}

#[cfg(test)]
mod query_tests {
    use super::*;

    #[test]
    fn query_flags_reach_the_settings_and_the_flags_page() {
        let cli = Cli::try_parse_from([
            "guardia",
            "--query.lookback-delta=1m",
            "--query.timeout=30s",
            "--query.max-samples=1000",
        ])
        .unwrap();
        let settings = cli.serve.settings().unwrap();
        assert_eq!(settings.query.lookback_delta, Duration::from_secs(60));
        assert_eq!(settings.query.timeout, Duration::from_secs(30));
        assert_eq!(settings.query.max_samples, 1000);
        assert_eq!(settings.flags["query.lookback-delta"], "1m");
        assert_eq!(settings.flags["query.timeout"], "30s");
        assert_eq!(settings.flags["query.max-samples"], "1000");
        assert_eq!(settings.flags["storage.path"], "data");

        let defaults = Cli::try_parse_from(["guardia"])
            .unwrap()
            .serve
            .settings()
            .unwrap();
        assert_eq!(defaults.query, QueryLimits::default());
        assert_eq!(defaults.flags["query.lookback-delta"], "5m");
        assert_eq!(defaults.flags["query.timeout"], "2m");
    }

    #[test]
    fn durations_print_largest_units_first() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(9000)), "2h30m");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format_duration(Duration::from_secs(15 * 86_400)), "2w1d");
    }

    #[test]
    fn query_subcommands_parse() {
        let cli = Cli::try_parse_from([
            "guardia",
            "query",
            "sum(up)",
            "--time=1700000000",
            "--storage.path=/d",
        ])
        .unwrap();
        let Some(Command::Query(args)) = cli.command else {
            panic!("expected query");
        };
        assert_eq!(args.expr, "sum(up)");
        assert_eq!(args.time.as_deref(), Some("1700000000"));
        assert_eq!(args.storage.storage_path, PathBuf::from("/d"));

        let cli = Cli::try_parse_from(["guardia", "query-range", "up", "--start=0"]).unwrap();
        let Some(Command::QueryRange(args)) = cli.command else {
            panic!("expected query-range");
        };
        assert_eq!(args.step, "1m");
        assert!(args.end.is_none());
        assert!(Cli::try_parse_from(["guardia", "query-range", "up"]).is_err());
    }
}

#[cfg(test)]
mod logfmt_tests {
    use super::logfmt::quote;

    #[test]
    fn values_are_quoted_only_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a=\"b\""), "\"a=\\\"b\\\"\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn days_convert_to_dates() {}
}
