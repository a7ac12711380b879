//! The `guardia` command line. With no subcommand it runs `guardia serve`
//! on embedded defaults: data in `./data`, HTTP on `0.0.0.0:9099`. Flags use
//! Prometheus's names (`--storage.path`, `--web.listen-address`, ...).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use guardia::config::{IngestLimits, Retention, ServerSettings, parse_duration, parse_size};

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
    /// Validate files, like promtool check.
    #[command(subcommand)]
    Check(CheckCommand),
}

#[derive(Debug, Subcommand)]
enum CheckCommand {
    /// Check configuration files (SUCCESS / FAILED per file; exit 1 on any failure).
    Config {
        #[arg(required = true, value_name = "CONFIG_FILE")]
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
                        println!(
                            " SUCCESS: {} is valid guardia config file syntax ({} scrape configs)",
                            file.display(),
                            config.scrape_configs.len()
                        );
                    }
                    Err(error) => {
                        failed = true;
                        eprintln!("  FAILED: {error}");
                    }
                }
                println!();
            }
            i32::from(failed)
        }
    }
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
            enable_lifecycle: self.enable_lifecycle,
        })
    }
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let serve_args = match cli.command {
        Some(Command::Serve(args)) => args,
        Some(Command::Check(command)) => std::process::exit(run_check(command)),
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
        let millis = guardia::clock::now_ms();
        let seconds = millis.div_euclid(1000);
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
            second_of_day / 3600,
            second_of_day % 3600 / 60,
            second_of_day % 60,
            millis.rem_euclid(1000)
        )
    }

    /// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
    pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let shifted = days + 719_468;
        let era = shifted.div_euclid(146_097);
        let day_of_era = shifted - era * 146_097;
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        (year, month, day)
    }
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
        assert_eq!(settings.ingest.max_body_bytes, 1 << 20);
        assert_eq!(settings.ingest.max_series_per_request, 10);
        assert_eq!(settings.listen_address, ":9100");
        assert!(Cli::try_parse_from(["guardia", "--log.level=trace"]).is_err());
    }
}

#[cfg(test)]
mod logfmt_tests {
    use super::logfmt::{civil_from_days, quote};

    #[test]
    fn values_are_quoted_only_when_needed() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("two words"), "\"two words\"");
        assert_eq!(quote("a=\"b\""), "\"a=\\\"b\\\"\"");
        assert_eq!(quote(""), "\"\"");
    }

    #[test]
    fn days_convert_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_675), (2023, 11, 14));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
