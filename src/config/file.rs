//! The YAML configuration file (`--config.file`) in the shape of
//! `prometheus.yml`: `global` and `scrape_configs`, with their relabel
//! rules compiled and every default filled in, so later layers never see an
//! optional field. Parsing is strict: an unknown key is an error naming the
//! key with its line and column, and the keys of service discoveries or
//! sections guardia does not implement say so instead of being ignored.
//! `docs/configuration.md` lists what is supported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde::de::IgnoredAny;

use super::parse_duration;
use super::parse_size;

/// Prometheus's defaults.
pub const DEFAULT_SCRAPE_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_FILE_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
pub const DEFAULT_HTTP_SD_REFRESH_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    /// YAML syntax or shape; `location` is `line L, column C` when known.
    #[error("{location}{message}")]
    Syntax { location: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// A fully resolved configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigFile {
    pub global: GlobalConfig,
    pub scrape_configs: Vec<ScrapeConfig>,
    /// Parsed and kept for the rules engine; not read by the scraper.
    pub rule_files: Vec<String>,
    /// The `notifications:` section (alertmanager.yml's shape), when present.
    pub notifications: Option<super::notifications::NotificationsConfig>,
    pub sla: Option<super::sla::SlaConfig>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GlobalConfig {
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub evaluation_interval: Duration,
    pub external_labels: BTreeMap<String, String>,
}

impl Default for GlobalConfig {
    fn default() -> GlobalConfig {
        GlobalConfig {
            scrape_interval: DEFAULT_SCRAPE_INTERVAL,
            scrape_timeout: DEFAULT_SCRAPE_TIMEOUT,
            evaluation_interval: DEFAULT_EVALUATION_INTERVAL,
            external_labels: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScrapeConfig {
    pub job_name: String,
    pub scrape_interval: Duration,
    pub scrape_timeout: Duration,
    pub metrics_path: String,
    pub scheme: String,
    pub params: BTreeMap<String, Vec<String>>,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub track_timestamps_staleness: bool,
    pub static_configs: Vec<StaticConfig>,
    pub file_sd_configs: Vec<FileSdConfig>,
    pub http_sd_configs: Vec<HttpSdConfig>,
    pub relabel_configs: Vec<RelabelConfig>,
    pub metric_relabel_configs: Vec<RelabelConfig>,
    pub http_client: HttpClientConfig,
    /// 0 means no limit, as in Prometheus.
    pub sample_limit: u64,
    pub label_limit: u64,
    pub label_name_length_limit: u64,
    pub label_value_length_limit: u64,
    pub body_size_limit: u64,
    pub target_limit: u64,
    pub enable_compression: bool,
}

/// How a scrape (or an http_sd request) authenticates and checks TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct HttpClientConfig {
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization` header: (type, credentials file or inline credentials).
    pub authorization: Option<Authorization>,
    pub tls_config: TlsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BasicAuth {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authorization {
    /// `Bearer` unless configured.
    pub credentials_type: String,
    pub credentials: Option<String>,
    pub credentials_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// A group of targets sharing labels (`static_configs` entries and the
/// groups read by file and HTTP discovery).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    #[serde(default)]
    pub targets: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSdConfig {
    /// Paths as written; the last path component may hold a `*` glob.
    pub files: Vec<String>,
    pub refresh_interval: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSdConfig {
    pub url: String,
    pub refresh_interval: Duration,
    pub http_client: HttpClientConfig,
}

/// The relabel actions of Prometheus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelabelAction {
    Replace,
    Lowercase,
    Uppercase,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
}

impl RelabelAction {
    fn from_name(name: &str) -> Option<RelabelAction> {
        Some(match name {
            "replace" => RelabelAction::Replace,
            "lowercase" => RelabelAction::Lowercase,
            "uppercase" => RelabelAction::Uppercase,
            "keep" => RelabelAction::Keep,
            "drop" => RelabelAction::Drop,
            "keepequal" => RelabelAction::KeepEqual,
            "dropequal" => RelabelAction::DropEqual,
            "hashmod" => RelabelAction::HashMod,
            "labelmap" => RelabelAction::LabelMap,
            "labeldrop" => RelabelAction::LabelDrop,
            "labelkeep" => RelabelAction::LabelKeep,
            _ => return None,
        })
    }
}

/// One relabel rule with Prometheus's defaults applied and its regex
/// compiled anchored (`^(?s:regex)$`).
#[derive(Debug, Clone)]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub regex: Regex,
    /// The regex as written, for display and equality.
    pub regex_source: String,
    pub modulus: u64,
    pub target_label: String,
    pub replacement: String,
    pub action: RelabelAction,
}

impl PartialEq for RelabelConfig {
    fn eq(&self, other: &RelabelConfig) -> bool {
        self.source_labels == other.source_labels
            && self.separator == other.separator
            && self.regex_source == other.regex_source
            && self.modulus == other.modulus
            && self.target_label == other.target_label
            && self.replacement == other.replacement
            && self.action == other.action
    }
}

impl RelabelConfig {
    /// A rule from its YAML fields; the defaults are Prometheus's.
    pub fn new(
        source_labels: Vec<String>,
        separator: Option<String>,
        regex: Option<String>,
        modulus: Option<u64>,
        target_label: Option<String>,
        replacement: Option<String>,
        action: &str,
    ) -> Result<RelabelConfig, String> {
        let action = RelabelAction::from_name(&action.to_ascii_lowercase())
            .ok_or_else(|| format!("unknown relabel action {action:?}"))?;
        let regex_source = regex.unwrap_or_else(|| "(.*)".to_string());
        let compiled = Regex::new(&format!("^(?s:{regex_source})$"))
            .map_err(|error| format!("invalid relabel regex {regex_source:?}: {error}"))?;
        let target_label_given = target_label.is_some();
        let target_label = target_label.unwrap_or_default();
        let replacement_given = replacement.is_some();
        let replacement = replacement.unwrap_or_else(|| "$1".to_string());
        let config = RelabelConfig {
            source_labels,
            separator: separator.unwrap_or_else(|| ";".to_string()),
            regex: compiled,
            regex_source,
            modulus: modulus.unwrap_or(0),
            target_label,
            replacement,
            action,
        };
        let name = action_name(action);
        let needs_target = matches!(
            action,
            RelabelAction::Replace
                | RelabelAction::HashMod
                | RelabelAction::Lowercase
                | RelabelAction::Uppercase
                | RelabelAction::KeepEqual
                | RelabelAction::DropEqual
        );
        if needs_target && (!target_label_given || config.target_label.is_empty()) {
            return Err(format!("relabel action {name} requires target_label"));
        }
        let target_is_valid = if action == RelabelAction::Replace {
            is_valid_target_label_template(&config.target_label)
        } else {
            !needs_target || crate::model::is_legacy_label_name(&config.target_label)
        };
        if !target_is_valid {
            return Err(format!(
                "{:?} is invalid 'target_label' for {name} action",
                config.target_label
            ));
        }
        if action == RelabelAction::HashMod && config.modulus == 0 {
            return Err("relabel action hashmod requires a non-zero modulus".to_string());
        }
        if matches!(action, RelabelAction::KeepEqual | RelabelAction::DropEqual)
            && config.regex_source != "(.*)"
        {
            return Err(format!("relabel action {name} does not take a regex"));
        }
        if matches!(action, RelabelAction::LabelDrop | RelabelAction::LabelKeep)
            && (!config.source_labels.is_empty()
                || target_label_given
                || config.modulus != 0
                || replacement_given)
        {
            return Err(format!(
                "relabel action {name} takes only regex (no source_labels, target_label, modulus or replacement)"
            ));
        }
        if action == RelabelAction::LabelMap && !is_valid_target_label_template(&config.replacement)
        {
            return Err(format!(
                "{:?} is invalid 'replacement' for labelmap action",
                config.replacement
            ));
        }
        Ok(config)
    }
}

fn action_name(action: RelabelAction) -> &'static str {
    match action {
        RelabelAction::Replace => "replace",
        RelabelAction::Lowercase => "lowercase",
        RelabelAction::Uppercase => "uppercase",
        RelabelAction::Keep => "keep",
        RelabelAction::Drop => "drop",
        RelabelAction::KeepEqual => "keepequal",
        RelabelAction::DropEqual => "dropequal",
        RelabelAction::HashMod => "hashmod",
        RelabelAction::LabelMap => "labelmap",
        RelabelAction::LabelDrop => "labeldrop",
        RelabelAction::LabelKeep => "labelkeep",
    }
}

/// A label name, possibly built from `$1`, `${1}` or `$name` references:
/// Prometheus checks the template's shape, the result is checked again
/// when the rule runs.
fn is_valid_target_label_template(text: &str) -> bool {
    static TEMPLATE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            Regex::new(r"^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$").unwrap_or_else(|_| {
                // The pattern is a constant; this branch cannot run.
                Regex::new("^$").unwrap_or_else(|_| unreachable!())
            })
        })
        .is_match(text)
}

// ---------------------------------------------------------------- raw YAML

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfigFile {
    #[serde(default)]
    global: Option<RawGlobal>,
    #[serde(default)]
    scrape_configs: Option<Vec<RawScrapeConfig>>,
    #[serde(default)]
    rule_files: Option<Vec<String>>,
    #[serde(default)]
    notifications: Option<super::notifications::RawNotifications>,
    sla: Option<super::sla::RawSlaConfig>,
    #[serde(default)]
    scrape_config_files: Option<IgnoredAny>,
    #[serde(default)]
    alerting: Option<IgnoredAny>,
    #[serde(default)]
    remote_write: Option<IgnoredAny>,
    #[serde(default)]
    remote_read: Option<IgnoredAny>,
    #[serde(default)]
    storage: Option<IgnoredAny>,
    #[serde(default)]
    tracing: Option<IgnoredAny>,
    #[serde(default)]
    otlp: Option<IgnoredAny>,
    #[serde(default)]
    runtime: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGlobal {
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    evaluation_interval: Option<String>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    rule_query_offset: Option<IgnoredAny>,
    #[serde(default)]
    query_log_file: Option<IgnoredAny>,
    #[serde(default)]
    scrape_protocols: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBasicAuth {
    username: String,
    password: Option<String>,
    password_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuthorization {
    #[serde(rename = "type")]
    credentials_type: Option<String>,
    credentials: Option<String>,
    credentials_file: Option<PathBuf>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTlsConfig {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default)]
    insecure_skip_verify: bool,
    min_version: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFileSd {
    files: Vec<String>,
    refresh_interval: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpSd {
    url: String,
    refresh_interval: Option<String>,
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    tls_config: Option<RawTlsConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelabel {
    #[serde(default)]
    source_labels: Vec<String>,
    separator: Option<String>,
    regex: Option<String>,
    modulus: Option<u64>,
    target_label: Option<String>,
    replacement: Option<String>,
    action: Option<String>,
}

/// Service discoveries Prometheus has and guardia does not (yet).
const UNSUPPORTED_SERVICE_DISCOVERIES: [&str; 26] = [
    "azure_sd_configs",
    "consul_sd_configs",
    "digitalocean_sd_configs",
    "docker_sd_configs",
    "dockerswarm_sd_configs",
    "dns_sd_configs",
    "ec2_sd_configs",
    "eureka_sd_configs",
    "gce_sd_configs",
    "hetzner_sd_configs",
    "ionos_sd_configs",
    "kubernetes_sd_configs",
    "kuma_sd_configs",
    "lightsail_sd_configs",
    "linode_sd_configs",
    "marathon_sd_configs",
    "nerve_sd_configs",
    "nomad_sd_configs",
    "openstack_sd_configs",
    "ovhcloud_sd_configs",
    "puppetdb_sd_configs",
    "scaleway_sd_configs",
    "serverset_sd_configs",
    "triton_sd_configs",
    "uyuni_sd_configs",
    "vultr_sd_configs",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrapeConfig {
    job_name: String,
    scrape_interval: Option<String>,
    scrape_timeout: Option<String>,
    metrics_path: Option<String>,
    scheme: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    honor_labels: bool,
    honor_timestamps: Option<bool>,
    #[serde(default)]
    track_timestamps_staleness: bool,
    #[serde(default)]
    static_configs: Vec<StaticConfig>,
    #[serde(default)]
    file_sd_configs: Vec<RawFileSd>,
    #[serde(default)]
    http_sd_configs: Vec<RawHttpSd>,
    #[serde(default)]
    relabel_configs: Vec<RawRelabel>,
    #[serde(default)]
    metric_relabel_configs: Vec<RawRelabel>,
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    tls_config: Option<RawTlsConfig>,
    #[serde(default)]
    sample_limit: u64,
    #[serde(default)]
    label_limit: u64,
    #[serde(default)]
    label_name_length_limit: u64,
    #[serde(default)]
    label_value_length_limit: u64,
    body_size_limit: Option<String>,
    #[serde(default)]
    target_limit: u64,
    enable_compression: Option<bool>,
    // Recognised so that the error can say "not supported" instead of "unknown".
    azure_sd_configs: Option<IgnoredAny>,
    consul_sd_configs: Option<IgnoredAny>,
    digitalocean_sd_configs: Option<IgnoredAny>,
    docker_sd_configs: Option<IgnoredAny>,
    dockerswarm_sd_configs: Option<IgnoredAny>,
    dns_sd_configs: Option<IgnoredAny>,
    ec2_sd_configs: Option<IgnoredAny>,
    eureka_sd_configs: Option<IgnoredAny>,
    gce_sd_configs: Option<IgnoredAny>,
    hetzner_sd_configs: Option<IgnoredAny>,
    ionos_sd_configs: Option<IgnoredAny>,
    kubernetes_sd_configs: Option<IgnoredAny>,
    kuma_sd_configs: Option<IgnoredAny>,
    lightsail_sd_configs: Option<IgnoredAny>,
    linode_sd_configs: Option<IgnoredAny>,
    marathon_sd_configs: Option<IgnoredAny>,
    nerve_sd_configs: Option<IgnoredAny>,
    nomad_sd_configs: Option<IgnoredAny>,
    openstack_sd_configs: Option<IgnoredAny>,
    ovhcloud_sd_configs: Option<IgnoredAny>,
    puppetdb_sd_configs: Option<IgnoredAny>,
    scaleway_sd_configs: Option<IgnoredAny>,
    serverset_sd_configs: Option<IgnoredAny>,
    triton_sd_configs: Option<IgnoredAny>,
    uyuni_sd_configs: Option<IgnoredAny>,
    vultr_sd_configs: Option<IgnoredAny>,
}

impl RawScrapeConfig {
    fn unsupported_service_discoveries(&self) -> Vec<&'static str> {
        let present = [
            self.azure_sd_configs.is_some(),
            self.consul_sd_configs.is_some(),
            self.digitalocean_sd_configs.is_some(),
            self.docker_sd_configs.is_some(),
            self.dockerswarm_sd_configs.is_some(),
            self.dns_sd_configs.is_some(),
            self.ec2_sd_configs.is_some(),
            self.eureka_sd_configs.is_some(),
            self.gce_sd_configs.is_some(),
            self.hetzner_sd_configs.is_some(),
            self.ionos_sd_configs.is_some(),
            self.kubernetes_sd_configs.is_some(),
            self.kuma_sd_configs.is_some(),
            self.lightsail_sd_configs.is_some(),
            self.linode_sd_configs.is_some(),
            self.marathon_sd_configs.is_some(),
            self.nerve_sd_configs.is_some(),
            self.nomad_sd_configs.is_some(),
            self.openstack_sd_configs.is_some(),
            self.ovhcloud_sd_configs.is_some(),
            self.puppetdb_sd_configs.is_some(),
            self.scaleway_sd_configs.is_some(),
            self.serverset_sd_configs.is_some(),
            self.triton_sd_configs.is_some(),
            self.uyuni_sd_configs.is_some(),
            self.vultr_sd_configs.is_some(),
        ];
        UNSUPPORTED_SERVICE_DISCOVERIES
            .iter()
            .zip(present)
            .filter(|(_, is_present)| *is_present)
            .map(|(name, _)| *name)
            .collect()
    }
}

// ---------------------------------------------------------------- loading

/// Reads and resolves a configuration file.
pub fn load_file(path: &Path) -> Result<ConfigFile, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigFileError::Read {
        path: path.display().to_string(),
        reason: error.to_string(),
    })?;
    let mut config = parse_config(&text)?;
    if let (Some(sla), Some(directory)) = (config.sla.as_mut(), path.parent()) {
        sla.resolve_relative_paths(directory);
    }
    Ok(config)
}

/// Parses and resolves configuration text; an empty text is the default configuration.
pub fn parse_config(text: &str) -> Result<ConfigFile, ConfigFileError> {
    if text.trim().is_empty() {
        return Ok(ConfigFile {
            global: GlobalConfig::default(),
            scrape_configs: Vec::new(),
            rule_files: Vec::new(),
            notifications: None,
            sla: None,
        });
    }
    let raw: RawConfigFile = serde_saphyr::from_str(text).map_err(syntax_error)?;
    resolve(raw)
}

fn syntax_error(error: serde_saphyr::Error) -> ConfigFileError {
    let message = error.without_snippet().to_string();
    let message = message.lines().next().unwrap_or("").trim().to_string();
    let location = match error.location() {
        // The library's message may already end with the position.
        _ if message.contains(" at line ") => String::new(),
        Some(location) if location.line() > 0 => {
            format!("line {}, column {}: ", location.line(), location.column())
        }
        _ => String::new(),
    };
    ConfigFileError::Syntax { location, message }
}

fn duration_field(
    value: Option<&str>,
    default: Duration,
    what: &str,
) -> Result<Duration, ConfigFileError> {
    match value {
        None => Ok(default),
        Some(text) => parse_duration(text)
            .map_err(|error| ConfigFileError::Invalid(format!("{what}: {error}"))),
    }
}

fn resolve(raw: RawConfigFile) -> Result<ConfigFile, ConfigFileError> {
    for (name, present) in [
        ("alerting", raw.alerting.is_some()),
        ("remote_write", raw.remote_write.is_some()),
        ("remote_read", raw.remote_read.is_some()),
        ("storage", raw.storage.is_some()),
        ("tracing", raw.tracing.is_some()),
        ("otlp", raw.otlp.is_some()),
        ("runtime", raw.runtime.is_some()),
        ("scrape_config_files", raw.scrape_config_files.is_some()),
    ] {
        if present {
            return Err(ConfigFileError::Invalid(format!(
                "top-level key {name:?} is not supported yet by guardia"
            )));
        }
    }
    let raw_global = raw.global.unwrap_or_default();
    for (name, present) in [
        ("rule_query_offset", raw_global.rule_query_offset.is_some()),
        ("query_log_file", raw_global.query_log_file.is_some()),
        ("scrape_protocols", raw_global.scrape_protocols.is_some()),
    ] {
        if present {
            return Err(ConfigFileError::Invalid(format!(
                "global key {name:?} is not supported yet by guardia"
            )));
        }
    }
    let scrape_interval = duration_field(
        raw_global.scrape_interval.as_deref(),
        DEFAULT_SCRAPE_INTERVAL,
        "global.scrape_interval",
    )?;
    let default_timeout = DEFAULT_SCRAPE_TIMEOUT.min(scrape_interval);
    let scrape_timeout = duration_field(
        raw_global.scrape_timeout.as_deref(),
        default_timeout,
        "global.scrape_timeout",
    )?;
    if scrape_timeout > scrape_interval {
        return Err(ConfigFileError::Invalid(
            "global scrape timeout greater than scrape interval".to_string(),
        ));
    }
    for name in raw_global.external_labels.keys() {
        if !crate::model::is_legacy_label_name(name) {
            return Err(ConfigFileError::Invalid(format!(
                "{name:?} is not a valid label name in external_labels"
            )));
        }
    }
    let global = GlobalConfig {
        scrape_interval,
        scrape_timeout,
        evaluation_interval: duration_field(
            raw_global.evaluation_interval.as_deref(),
            DEFAULT_EVALUATION_INTERVAL,
            "global.evaluation_interval",
        )?,
        external_labels: raw_global.external_labels,
    };
    let mut scrape_configs: Vec<ScrapeConfig> = Vec::new();
    for raw_scrape in raw.scrape_configs.unwrap_or_default() {
        let job = raw_scrape.job_name.clone();
        if job.is_empty() {
            return Err(ConfigFileError::Invalid(
                "job_name is empty in scrape_configs".to_string(),
            ));
        }
        if scrape_configs.iter().any(|other| other.job_name == job) {
            return Err(ConfigFileError::Invalid(format!(
                "found multiple scrape configs with job name {job:?}"
            )));
        }
        let scrape_config = resolve_scrape_config(raw_scrape, &global)
            .map_err(|message| ConfigFileError::Invalid(format!("job {job:?}: {message}")))?;
        scrape_configs.push(scrape_config);
    }
    let notifications = raw
        .notifications
        .map(super::notifications::resolve_notifications)
        .transpose()?;
    let sla = (raw.sla.map(super::sla::SlaConfig::from_raw).transpose())
        .map_err(|error| ConfigFileError::Invalid(error.to_string()))?;
    if let Some(sla) = &sla {
        check_escalation_receivers(sla, notifications.as_ref())?;
    }
    Ok(ConfigFile {
        global,
        scrape_configs,
        rule_files: raw.rule_files.unwrap_or_default(),
        notifications,
        sla,
    })
}

/// Escalation tiers page receivers of the `notifications:` section; a name
/// that is not there would only fail when an incident escalates.
fn check_escalation_receivers(
    sla: &super::sla::SlaConfig,
    notifications: Option<&super::notifications::NotificationsConfig>,
) -> Result<(), ConfigFileError> {
    let known: Vec<&str> = notifications
        .map(|config| {
            config
                .receivers
                .iter()
                .map(|receiver| receiver.name.as_str())
                .collect()
        })
        .unwrap_or_default();
    for name in sla.receiver_names() {
        if !known.contains(&name.as_str()) {
            return Err(ConfigFileError::Invalid(format!(
                "sla: escalation receiver {name:?} is not defined in notifications.receivers"
            )));
        }
    }
    Ok(())
}

pub(super) fn resolve_http_client(
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    tls_config: Option<RawTlsConfig>,
) -> Result<HttpClientConfig, String> {
    let bearer = match (bearer_token, bearer_token_file) {
        (Some(_), Some(_)) => {
            return Err("at most one of bearer_token and bearer_token_file may be set".into());
        }
        (Some(token), None) => Some(Authorization {
            credentials_type: "Bearer".into(),
            credentials: Some(token),
            credentials_file: None,
        }),
        (None, Some(file)) => Some(Authorization {
            credentials_type: "Bearer".into(),
            credentials: None,
            credentials_file: Some(file),
        }),
        (None, None) => None,
    };
    let authorization = match authorization {
        Some(raw) => {
            if bearer.is_some() {
                return Err(
                    "at most one of authorization and bearer_token(_file) may be set".into(),
                );
            }
            if raw.credentials.is_some() && raw.credentials_file.is_some() {
                return Err(
                    "at most one of authorization credentials and credentials_file may be set"
                        .into(),
                );
            }
            let credentials_type = raw.credentials_type.unwrap_or_else(|| "Bearer".into());
            if credentials_type.eq_ignore_ascii_case("basic") {
                return Err(
                    "authorization type cannot be set to \"basic\", use \"basic_auth\" instead"
                        .into(),
                );
            }
            Some(Authorization {
                credentials_type,
                credentials: raw.credentials,
                credentials_file: raw.credentials_file,
            })
        }
        None => bearer,
    };
    let basic_auth = match basic_auth {
        Some(raw) => {
            if authorization.is_some() {
                return Err("at most one of basic_auth and authorization may be set".into());
            }
            if raw.password.is_some() && raw.password_file.is_some() {
                return Err(
                    "at most one of basic_auth password and password_file may be set".into(),
                );
            }
            Some(BasicAuth {
                username: raw.username,
                password: raw.password,
                password_file: raw.password_file,
            })
        }
        None => None,
    };
    let tls = tls_config.unwrap_or_default();
    if tls.min_version.is_some() {
        return Err("tls_config.min_version is not supported yet by guardia".into());
    }
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        return Err("tls_config needs both cert_file and key_file, or neither".into());
    }
    Ok(HttpClientConfig {
        basic_auth,
        authorization,
        tls_config: TlsConfig {
            ca_file: tls.ca_file,
            cert_file: tls.cert_file,
            key_file: tls.key_file,
            server_name: tls.server_name,
            insecure_skip_verify: tls.insecure_skip_verify,
        },
    })
}

fn resolve_relabel(raw: RawRelabel) -> Result<RelabelConfig, String> {
    RelabelConfig::new(
        raw.source_labels,
        raw.separator,
        raw.regex,
        raw.modulus,
        raw.target_label,
        raw.replacement,
        raw.action.as_deref().unwrap_or("replace"),
    )
}

fn resolve_scrape_config(
    raw: RawScrapeConfig,
    global: &GlobalConfig,
) -> Result<ScrapeConfig, String> {
    if let Some(first) = raw.unsupported_service_discoveries().first() {
        return Err(format!(
            "{first} is not supported yet by guardia (supported: static_configs, file_sd_configs, http_sd_configs)"
        ));
    }
    let parse = |value: Option<&str>, default: Duration, what: &str| match value {
        None => Ok(default),
        Some(text) => parse_duration(text).map_err(|error| format!("{what}: {error}")),
    };
    let scrape_interval = parse(
        raw.scrape_interval.as_deref(),
        global.scrape_interval,
        "scrape_interval",
    )?;
    if scrape_interval.is_zero() {
        return Err("scrape_interval must be greater than 0".into());
    }
    // Prometheus: an unset job timeout is the global one, capped at the job's interval.
    let scrape_timeout = match raw.scrape_timeout.as_deref() {
        Some(text) => parse(Some(text), global.scrape_timeout, "scrape_timeout")?,
        None => global.scrape_timeout.min(scrape_interval),
    };
    if scrape_timeout > scrape_interval {
        return Err(format!(
            "scrape timeout greater than scrape interval ({} > {})",
            humantime(scrape_timeout),
            humantime(scrape_interval)
        ));
    }
    let scheme = raw.scheme.unwrap_or_else(|| "http".into());
    if scheme != "http" && scheme != "https" {
        return Err(format!("invalid scheme {scheme:?}, expected http or https"));
    }
    let metrics_path = raw.metrics_path.unwrap_or_else(|| "/metrics".into());
    for group in &raw.static_configs {
        for target in &group.targets {
            validate_target_address(target)?;
        }
        for name in group.labels.keys() {
            if name.is_empty() {
                return Err("empty label name in static_configs labels".into());
            }
        }
    }
    let mut file_sd_configs = Vec::new();
    for file_sd in raw.file_sd_configs {
        for file in &file_sd.files {
            let last = Path::new(file)
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or("");
            let pattern_ok = [".json", ".yml", ".yaml"]
                .iter()
                .any(|extension| last.ends_with(extension));
            if !pattern_ok {
                return Err(format!(
                    "file_sd_configs: path {file:?} must end in .json, .yml or .yaml"
                ));
            }
            if Path::new(file)
                .parent()
                .and_then(|parent| parent.to_str())
                .is_some_and(|parent| parent.contains('*'))
            {
                return Err(format!(
                    "file_sd_configs: path {file:?}: a glob is allowed only in the file name"
                ));
            }
        }
        file_sd_configs.push(FileSdConfig {
            files: file_sd.files,
            refresh_interval: parse(
                file_sd.refresh_interval.as_deref(),
                DEFAULT_FILE_SD_REFRESH_INTERVAL,
                "file_sd_configs.refresh_interval",
            )?,
        });
    }
    let mut http_sd_configs = Vec::new();
    for http_sd in raw.http_sd_configs {
        if !(http_sd.url.starts_with("http://") || http_sd.url.starts_with("https://")) {
            return Err(format!(
                "http_sd_configs: URL {:?} must use http or https",
                http_sd.url
            ));
        }
        http_sd_configs.push(HttpSdConfig {
            url: http_sd.url,
            refresh_interval: parse(
                http_sd.refresh_interval.as_deref(),
                DEFAULT_HTTP_SD_REFRESH_INTERVAL,
                "http_sd_configs.refresh_interval",
            )?,
            http_client: resolve_http_client(
                http_sd.basic_auth,
                http_sd.authorization,
                http_sd.bearer_token,
                http_sd.bearer_token_file,
                http_sd.tls_config,
            )?,
        });
    }
    let relabel_configs = raw
        .relabel_configs
        .into_iter()
        .map(resolve_relabel)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("relabel_configs: {error}"))?;
    let metric_relabel_configs = raw
        .metric_relabel_configs
        .into_iter()
        .map(resolve_relabel)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("metric_relabel_configs: {error}"))?;
    let body_size_limit = match raw.body_size_limit.as_deref() {
        None => 0,
        Some(text) => parse_size(text).map_err(|error| format!("body_size_limit: {error}"))?,
    };
    Ok(ScrapeConfig {
        job_name: raw.job_name,
        scrape_interval,
        scrape_timeout,
        metrics_path,
        scheme,
        params: raw.params,
        honor_labels: raw.honor_labels,
        honor_timestamps: raw.honor_timestamps.unwrap_or(true),
        track_timestamps_staleness: raw.track_timestamps_staleness,
        static_configs: raw.static_configs,
        file_sd_configs,
        http_sd_configs,
        relabel_configs,
        metric_relabel_configs,
        http_client: resolve_http_client(
            raw.basic_auth,
            raw.authorization,
            raw.bearer_token,
            raw.bearer_token_file,
            raw.tls_config,
        )?,
        sample_limit: raw.sample_limit,
        label_limit: raw.label_limit,
        label_name_length_limit: raw.label_name_length_limit,
        label_value_length_limit: raw.label_value_length_limit,
        body_size_limit,
        target_limit: raw.target_limit,
        enable_compression: raw.enable_compression.unwrap_or(true),
    })
}

/// A target address is `host:port` or `host`, without scheme or path.
pub fn validate_target_address(target: &str) -> Result<(), String> {
    if target.is_empty() {
        return Err("empty target address".into());
    }
    if target.contains('/') {
        return Err(format!(
            "{target:?} is not a valid hostname (no scheme or path; use scheme and metrics_path)"
        ));
    }
    Ok(())
}

fn humantime(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_prometheus_defaults() {
        let config = parse_config("scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['localhost:9100']\n").unwrap();
        let job = &config.scrape_configs[0];
        assert_eq!(job.scrape_interval, Duration::from_secs(60));
        assert_eq!(job.scrape_timeout, Duration::from_secs(10));
        assert_eq!(job.metrics_path, "/metrics");
        assert_eq!(job.scheme, "http");
        assert!(job.honor_timestamps);
        assert!(!job.honor_labels);
        assert!(job.enable_compression);
        assert_eq!(job.static_configs[0].targets, vec!["localhost:9100"]);
    }

    #[test]
    fn short_interval_caps_the_default_timeout() {
        let config = parse_config("global:\n  scrape_interval: 5s\nscrape_configs:\n  - job_name: a\n    scrape_interval: 1s\n").unwrap();
        assert_eq!(config.global.scrape_timeout, Duration::from_secs(5));
        assert_eq!(
            config.scrape_configs[0].scrape_timeout,
            Duration::from_secs(1)
        );
    }

    #[test]
    fn unknown_key_is_named_with_its_position() {
        let error = parse_config("global:\n  scrape_intervall: 5s\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("scrape_intervall"), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn unsupported_discovery_is_said_so() {
        let error = parse_config(
            "scrape_configs:\n  - job_name: k\n    kubernetes_sd_configs:\n      - role: pod\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("kubernetes_sd_configs is not supported yet"),
            "{error}"
        );
    }

    #[test]
    fn invalid_settings_are_refused() {
        for (text, needle) in [
            (
                "scrape_configs:\n  - job_name: a\n  - job_name: a\n",
                "multiple scrape configs",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    scrape_interval: 5s\n    scrape_timeout: 10s\n",
                "timeout greater",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: hashmod\n        target_label: x\n",
                "modulus",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: replace\n        target_label: '1x'\n",
                "invalid 'target_label'",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - action: nope\n",
                "unknown relabel action",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    relabel_configs:\n      - regex: '('\n",
                "invalid relabel regex",
            ),
            (
                "scrape_configs:\n  - job_name: a\n    scheme: ftp\n",
                "invalid scheme",
            ),
            ("alerting: {}\n", "not supported yet"),
            (
                "scrape_configs:\n  - job_name: a\n    static_configs:\n      - targets: ['http://x:1/metrics']\n",
                "not a valid hostname",
            ),
        ] {
            let error = parse_config(text).unwrap_err().to_string();
            assert!(error.contains(needle), "{text}: {error}");
        }
    }
}
