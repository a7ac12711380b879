//! The `notifications:` section of the configuration file, shaped exactly
//! like `alertmanager.yml` so a user can paste theirs: `global`
//! (`resolve_timeout`, `http_config`), the `route` tree, `inhibit_rules`,
//! `time_intervals` (and the legacy `mute_time_intervals`) and `receivers`
//! (`webhook_configs`, plus guardia's own `alertmanager_configs`). Parsing is
//! strict: every Alertmanager key guardia does not implement (other receiver
//! types, `templates`, …) is an error saying so, never silently ignored. The
//! validation is `amtool check-config`'s: the root route has a receiver and
//! no matchers, every referenced receiver and time interval exists, names are
//! unique. Route defaults (30s / 5m / 4h) are resolved by `notify::route`,
//! which inherits them down the tree as Alertmanager does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

use super::file::{
    ConfigFileError, HttpClientConfig, RawAuthorization, RawBasicAuth, RawTlsConfig,
    resolve_http_client,
};
use super::matcher::parse_matcher_list;
use super::parse_duration;
use super::time_interval::TimeInterval;
use crate::model::{MatchOp, Matcher, Timestamp};

/// Alertmanager's `global.resolve_timeout` default.
pub const DEFAULT_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The resolved `notifications:` section.
#[derive(Debug, Clone, PartialEq)]
pub struct NotificationsConfig {
    /// `global.resolve_timeout`: how long an alert that stopped being
    /// updated stays firing. guardia's own rules always send an explicit
    /// end, so this only matters for alerts without one.
    pub resolve_timeout: Duration,
    /// The root of the routing tree. When the section has neither a route
    /// nor receivers, this is an empty root route whose receiver is `""`:
    /// nothing is sent, but silences still work.
    pub route: RouteConfig,
    pub inhibit_rules: Vec<InhibitRuleConfig>,
    /// `time_intervals` followed by the legacy `mute_time_intervals`.
    pub time_intervals: Vec<NamedTimeIntervals>,
    pub receivers: Vec<ReceiverConfig>,
}

impl NotificationsConfig {
    /// The receiver with this name.
    pub fn receiver(&self, name: &str) -> Option<&ReceiverConfig> {
        self.receivers.iter().find(|receiver| receiver.name == name)
    }

    /// The named time intervals as a lookup table.
    pub fn time_interval_table(&self) -> TimeIntervals {
        TimeIntervals::new(&self.time_intervals)
    }
}

/// How alerts of one route are grouped into notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupBy {
    /// `group_by: ['...']`: every label set is its own group.
    All,
    /// Group by these labels (sorted, unique); empty puts every alert of
    /// the route into one group.
    Labels(Vec<String>),
}

/// One node of the routing tree as written: unset fields are `None` and
/// are inherited from the parent when the tree is built.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RouteConfig {
    pub receiver: Option<String>,
    pub group_by: Option<GroupBy>,
    /// `continue`: after this route matched, try its later siblings too.
    pub continue_matching: bool,
    /// `matchers`, legacy `match` and `match_re`, in that order of writing
    /// (the tree sorts them for its route keys).
    pub matchers: Vec<Matcher>,
    pub group_wait: Option<Duration>,
    pub group_interval: Option<Duration>,
    pub repeat_interval: Option<Duration>,
    /// Not inherited (Alertmanager's rule).
    pub mute_time_intervals: Vec<String>,
    /// Not inherited (Alertmanager's rule).
    pub active_time_intervals: Vec<String>,
    pub routes: Vec<RouteConfig>,
}

/// One `inhibit_rules` entry: while an alert matching `source_matchers` is
/// firing, alerts matching `target_matchers` with the same values of the
/// `equal` labels are not notified.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InhibitRuleConfig {
    pub source_matchers: Vec<Matcher>,
    pub target_matchers: Vec<Matcher>,
    pub equal: Vec<String>,
}

/// A `time_intervals` entry: a name and the intervals it covers (any of them).
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTimeIntervals {
    pub name: String,
    pub time_intervals: Vec<TimeInterval>,
}

/// Named time intervals by name, for `RouteNode::is_active_at`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TimeIntervals {
    by_name: BTreeMap<String, Vec<TimeInterval>>,
}

impl TimeIntervals {
    pub fn new(named: &[NamedTimeIntervals]) -> TimeIntervals {
        let mut by_name = BTreeMap::new();
        for entry in named {
            by_name
                .entry(entry.name.clone())
                .or_insert_with(|| entry.time_intervals.clone());
        }
        TimeIntervals { by_name }
    }

    /// Whether `ts` falls in any interval of the named entry; `None` when
    /// the name is unknown (the config validation makes that impossible for
    /// names referenced by routes).
    pub fn contains(&self, name: &str, ts: Timestamp) -> Option<bool> {
        self.by_name
            .get(name)
            .map(|intervals| intervals.iter().any(|interval| interval.contains(ts)))
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReceiverConfig {
    pub name: String,
    pub webhook_configs: Vec<WebhookConfig>,
    pub alertmanager_configs: Vec<AlertmanagerTargetConfig>,
}

/// Alertmanager's `webhook_configs` entry; the payload is its webhook JSON
/// version 4.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub url: String,
    /// Default true, as in Alertmanager.
    pub send_resolved: bool,
    /// Most alerts in one payload; 0 sends all.
    pub max_alerts: usize,
    /// Per request; `None` leaves it to the sender's default.
    pub timeout: Option<Duration>,
    pub http_config: HttpClientConfig,
}

/// guardia's own receiver type: post the alerts to a real Alertmanager's
/// `/api/v2/alerts`; `url` is its base URL (`http://am:9093`).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerTargetConfig {
    pub url: String,
    /// Default true: Alertmanager needs the end time to resolve.
    pub send_resolved: bool,
    pub timeout: Option<Duration>,
    pub http_config: HttpClientConfig,
}

// ---------------------------------------------------------------- raw YAML

/// The raw section, read by `config::file` as the `notifications` key.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNotifications {
    global: Option<RawNotificationsGlobal>,
    route: Option<RawRoute>,
    #[serde(default)]
    inhibit_rules: Vec<RawInhibitRule>,
    #[serde(default)]
    time_intervals: Vec<RawNamedTimeIntervals>,
    #[serde(default)]
    mute_time_intervals: Vec<RawNamedTimeIntervals>,
    #[serde(default)]
    receivers: Vec<RawReceiver>,
    // Recognised so that the error can say "not supported" instead of "unknown".
    templates: Option<IgnoredAny>,
    tracing: Option<IgnoredAny>,
}

/// `global`: `resolve_timeout` and `http_config` are used; the keys that
/// only configure receiver types guardia rejects anyway (SMTP, Slack,
/// PagerDuty, …) are accepted and ignored, because a receiver that would
/// use them is an error on its own.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
#[allow(
    dead_code,
    reason = "the receiver-specific keys are read only to be accepted"
)]
struct RawNotificationsGlobal {
    resolve_timeout: Option<String>,
    http_config: Option<RawNotifyHttpConfig>,
    smtp_from: Option<IgnoredAny>,
    smtp_hello: Option<IgnoredAny>,
    smtp_smarthost: Option<IgnoredAny>,
    smtp_auth_username: Option<IgnoredAny>,
    smtp_auth_password: Option<IgnoredAny>,
    smtp_auth_password_file: Option<IgnoredAny>,
    smtp_auth_secret: Option<IgnoredAny>,
    smtp_auth_secret_file: Option<IgnoredAny>,
    smtp_auth_identity: Option<IgnoredAny>,
    smtp_require_tls: Option<IgnoredAny>,
    smtp_tls_config: Option<IgnoredAny>,
    smtp_force_implicit_tls: Option<IgnoredAny>,
    slack_api_url: Option<IgnoredAny>,
    slack_api_url_file: Option<IgnoredAny>,
    slack_app_token: Option<IgnoredAny>,
    slack_app_token_file: Option<IgnoredAny>,
    slack_app_url: Option<IgnoredAny>,
    victorops_api_key: Option<IgnoredAny>,
    victorops_api_key_file: Option<IgnoredAny>,
    victorops_api_url: Option<IgnoredAny>,
    pagerduty_url: Option<IgnoredAny>,
    opsgenie_api_key: Option<IgnoredAny>,
    opsgenie_api_key_file: Option<IgnoredAny>,
    opsgenie_api_url: Option<IgnoredAny>,
    wechat_api_url: Option<IgnoredAny>,
    wechat_api_secret: Option<IgnoredAny>,
    wechat_api_secret_file: Option<IgnoredAny>,
    wechat_api_corp_id: Option<IgnoredAny>,
    telegram_api_url: Option<IgnoredAny>,
    telegram_bot_token: Option<IgnoredAny>,
    telegram_bot_token_file: Option<IgnoredAny>,
    webex_api_url: Option<IgnoredAny>,
    rocketchat_api_url: Option<IgnoredAny>,
    rocketchat_token: Option<IgnoredAny>,
    rocketchat_token_file: Option<IgnoredAny>,
    rocketchat_token_id: Option<IgnoredAny>,
    rocketchat_token_id_file: Option<IgnoredAny>,
    jira_api_url: Option<IgnoredAny>,
    mattermost_webhook_url: Option<IgnoredAny>,
    mattermost_webhook_url_file: Option<IgnoredAny>,
}

/// Prometheus's common HTTP client settings as Alertmanager takes them.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNotifyHttpConfig {
    basic_auth: Option<RawBasicAuth>,
    authorization: Option<RawAuthorization>,
    bearer_token: Option<String>,
    bearer_token_file: Option<std::path::PathBuf>,
    tls_config: Option<RawTlsConfig>,
    // Harmless: reqwest follows redirects and negotiates HTTP/2 by itself.
    follow_redirects: Option<bool>,
    enable_http2: Option<bool>,
    // Recognised to say "not supported".
    oauth2: Option<IgnoredAny>,
    proxy_url: Option<IgnoredAny>,
    no_proxy: Option<IgnoredAny>,
    proxy_from_environment: Option<IgnoredAny>,
    proxy_connect_header: Option<IgnoredAny>,
    http_headers: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    receiver: Option<String>,
    group_by: Option<Vec<String>>,
    #[serde(default, rename = "continue")]
    continue_matching: bool,
    #[serde(default)]
    matchers: Vec<String>,
    #[serde(default, rename = "match")]
    match_equal: BTreeMap<String, String>,
    #[serde(default)]
    match_re: BTreeMap<String, String>,
    group_wait: Option<String>,
    group_interval: Option<String>,
    repeat_interval: Option<String>,
    #[serde(default)]
    mute_time_intervals: Vec<String>,
    #[serde(default)]
    active_time_intervals: Vec<String>,
    #[serde(default)]
    routes: Vec<RawRoute>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInhibitRule {
    #[serde(default)]
    source_matchers: Vec<String>,
    #[serde(default)]
    target_matchers: Vec<String>,
    #[serde(default)]
    source_match: BTreeMap<String, String>,
    #[serde(default)]
    source_match_re: BTreeMap<String, String>,
    #[serde(default)]
    target_match: BTreeMap<String, String>,
    #[serde(default)]
    target_match_re: BTreeMap<String, String>,
    #[serde(default)]
    equal: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNamedTimeIntervals {
    name: String,
    #[serde(default)]
    time_intervals: Vec<TimeInterval>,
}

/// Receiver types of Alertmanager that guardia does not send to (yet).
const UNSUPPORTED_RECEIVER_TYPES: [&str; 18] = [
    "discord_configs",
    "email_configs",
    "incidentio_configs",
    "jira_configs",
    "mattermost_configs",
    "msteams_configs",
    "msteamsv2_configs",
    "opsgenie_configs",
    "pagerduty_configs",
    "pushover_configs",
    "rocketchat_configs",
    "slack_configs",
    "sns_configs",
    "telegram_configs",
    "victorops_configs",
    "webex_configs",
    "wechat_configs",
    "webhook_url_configs",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReceiver {
    name: String,
    #[serde(default)]
    webhook_configs: Vec<RawWebhook>,
    #[serde(default)]
    alertmanager_configs: Vec<RawAlertmanagerTarget>,
    discord_configs: Option<IgnoredAny>,
    email_configs: Option<IgnoredAny>,
    incidentio_configs: Option<IgnoredAny>,
    jira_configs: Option<IgnoredAny>,
    mattermost_configs: Option<IgnoredAny>,
    msteams_configs: Option<IgnoredAny>,
    msteamsv2_configs: Option<IgnoredAny>,
    opsgenie_configs: Option<IgnoredAny>,
    pagerduty_configs: Option<IgnoredAny>,
    pushover_configs: Option<IgnoredAny>,
    rocketchat_configs: Option<IgnoredAny>,
    slack_configs: Option<IgnoredAny>,
    sns_configs: Option<IgnoredAny>,
    telegram_configs: Option<IgnoredAny>,
    victorops_configs: Option<IgnoredAny>,
    webex_configs: Option<IgnoredAny>,
    wechat_configs: Option<IgnoredAny>,
    webhook_url_configs: Option<IgnoredAny>,
}

impl RawReceiver {
    fn unsupported_receiver_types(&self) -> Vec<&'static str> {
        let present = [
            self.discord_configs.is_some(),
            self.email_configs.is_some(),
            self.incidentio_configs.is_some(),
            self.jira_configs.is_some(),
            self.mattermost_configs.is_some(),
            self.msteams_configs.is_some(),
            self.msteamsv2_configs.is_some(),
            self.opsgenie_configs.is_some(),
            self.pagerduty_configs.is_some(),
            self.pushover_configs.is_some(),
            self.rocketchat_configs.is_some(),
            self.slack_configs.is_some(),
            self.sns_configs.is_some(),
            self.telegram_configs.is_some(),
            self.victorops_configs.is_some(),
            self.webex_configs.is_some(),
            self.wechat_configs.is_some(),
            self.webhook_url_configs.is_some(),
        ];
        UNSUPPORTED_RECEIVER_TYPES
            .iter()
            .zip(present)
            .filter(|(_, is_present)| *is_present)
            .map(|(name, _)| *name)
            .collect()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    url: Option<String>,
    url_file: Option<IgnoredAny>,
    send_resolved: Option<bool>,
    #[serde(default)]
    max_alerts: usize,
    timeout: Option<String>,
    http_config: Option<RawNotifyHttpConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanagerTarget {
    url: String,
    send_resolved: Option<bool>,
    timeout: Option<String>,
    http_config: Option<RawNotifyHttpConfig>,
}

// ---------------------------------------------------------------- resolving

fn invalid(message: impl Into<String>) -> ConfigFileError {
    ConfigFileError::Invalid(format!("notifications: {}", message.into()))
}

fn optional_duration(text: Option<&str>, what: &str) -> Result<Option<Duration>, ConfigFileError> {
    text.map(|text| parse_duration(text).map_err(|error| invalid(format!("{what}: {error}"))))
        .transpose()
}

/// Resolves and validates the raw section.
pub(super) fn resolve_notifications(
    raw: RawNotifications,
) -> Result<NotificationsConfig, ConfigFileError> {
    if raw.templates.is_some() {
        return Err(invalid(
            "\"templates\" is not supported by guardia yet: receivers send Alertmanager's webhook JSON, not rendered text",
        ));
    }
    if raw.tracing.is_some() {
        return Err(invalid("\"tracing\" is not supported by guardia yet"));
    }
    let global = raw.global.unwrap_or_default();
    let resolve_timeout =
        optional_duration(global.resolve_timeout.as_deref(), "global.resolve_timeout")?
            .unwrap_or(DEFAULT_RESOLVE_TIMEOUT);
    let global_http_config = match global.http_config {
        Some(raw_http) => resolve_notify_http_config(raw_http)
            .map_err(|message| invalid(format!("global.http_config: {message}")))?,
        None => HttpClientConfig::default(),
    };

    let mut receivers: Vec<ReceiverConfig> = Vec::new();
    for raw_receiver in raw.receivers {
        let name = raw_receiver.name.clone();
        if name.is_empty() {
            return Err(invalid("missing name in receiver"));
        }
        if receivers.iter().any(|other| other.name == name) {
            return Err(invalid(format!(
                "notification config name {name:?} is not unique"
            )));
        }
        let receiver = resolve_receiver(raw_receiver, &global_http_config)
            .map_err(|message| invalid(format!("receiver {name:?}: {message}")))?;
        receivers.push(receiver);
    }

    let mut time_intervals: Vec<NamedTimeIntervals> = Vec::new();
    for (raw_named, section) in raw
        .time_intervals
        .into_iter()
        .map(|entry| (entry, "time_intervals"))
        .chain(
            raw.mute_time_intervals
                .into_iter()
                .map(|entry| (entry, "mute_time_intervals")),
        )
    {
        if raw_named.name.is_empty() {
            return Err(invalid(format!("missing name in {section}")));
        }
        if time_intervals
            .iter()
            .any(|other| other.name == raw_named.name)
        {
            return Err(invalid(format!(
                "time interval {:?} is not unique",
                raw_named.name
            )));
        }
        time_intervals.push(NamedTimeIntervals {
            name: raw_named.name,
            time_intervals: raw_named.time_intervals,
        });
    }

    let route = match raw.route {
        Some(raw_route) => {
            let route = resolve_route(raw_route).map_err(invalid)?;
            validate_root_route(&route)?;
            let receiver_names: BTreeSet<&str> = receivers
                .iter()
                .map(|receiver| receiver.name.as_str())
                .collect();
            check_route_references(&route, &receiver_names, &time_intervals)?;
            route
        }
        None if receivers.is_empty() => RouteConfig {
            receiver: Some(String::new()),
            ..RouteConfig::default()
        },
        None => return Err(invalid("no routes provided")),
    };

    let mut inhibit_rules = Vec::new();
    for (index, raw_rule) in raw.inhibit_rules.into_iter().enumerate() {
        inhibit_rules.push(
            resolve_inhibit_rule(raw_rule)
                .map_err(|message| invalid(format!("inhibit_rules[{index}]: {message}")))?,
        );
    }

    Ok(NotificationsConfig {
        resolve_timeout,
        route,
        inhibit_rules,
        time_intervals,
        receivers,
    })
}

fn validate_root_route(route: &RouteConfig) -> Result<(), ConfigFileError> {
    if route.receiver.as_deref().unwrap_or("").is_empty() {
        return Err(invalid("root route must specify a default receiver"));
    }
    if !route.matchers.is_empty() {
        return Err(invalid("root route must not have any matchers"));
    }
    if !route.mute_time_intervals.is_empty() {
        return Err(invalid("root route must not have any mute time intervals"));
    }
    if !route.active_time_intervals.is_empty() {
        return Err(invalid(
            "root route must not have any active time intervals",
        ));
    }
    if route.continue_matching {
        return Err(invalid("cannot have continue in root route"));
    }
    Ok(())
}

fn check_route_references(
    route: &RouteConfig,
    receiver_names: &BTreeSet<&str>,
    time_intervals: &[NamedTimeIntervals],
) -> Result<(), ConfigFileError> {
    if let Some(receiver) = &route.receiver
        && !receiver_names.contains(receiver.as_str())
    {
        return Err(invalid(format!(
            "undefined receiver {receiver:?} used in route"
        )));
    }
    for name in route
        .mute_time_intervals
        .iter()
        .chain(&route.active_time_intervals)
    {
        if !time_intervals.iter().any(|named| &named.name == name) {
            return Err(invalid(format!(
                "undefined time interval {name:?} used in route"
            )));
        }
    }
    for child in &route.routes {
        check_route_references(child, receiver_names, time_intervals)?;
    }
    Ok(())
}

fn resolve_route(raw: RawRoute) -> Result<RouteConfig, String> {
    let group_by = match raw.group_by {
        None => None,
        Some(names) => Some(resolve_group_by(names)?),
    };
    let mut matchers = parse_matcher_list(&raw.matchers).map_err(|error| error.to_string())?;
    matchers.extend(legacy_matchers(&raw.match_equal, &raw.match_re, "match")?);
    let group_wait = parse_optional(raw.group_wait.as_deref(), "group_wait")?;
    let group_interval = parse_optional(raw.group_interval.as_deref(), "group_interval")?;
    if group_interval == Some(Duration::ZERO) {
        return Err("group_interval cannot be zero".to_string());
    }
    let repeat_interval = parse_optional(raw.repeat_interval.as_deref(), "repeat_interval")?;
    if repeat_interval == Some(Duration::ZERO) {
        return Err("repeat_interval cannot be zero".to_string());
    }
    let mut routes = Vec::with_capacity(raw.routes.len());
    for child in raw.routes {
        routes.push(resolve_route(child)?);
    }
    Ok(RouteConfig {
        receiver: raw.receiver.filter(|name| !name.is_empty()),
        group_by,
        continue_matching: raw.continue_matching,
        matchers,
        group_wait,
        group_interval,
        repeat_interval,
        mute_time_intervals: raw.mute_time_intervals,
        active_time_intervals: raw.active_time_intervals,
        routes,
    })
}

fn parse_optional(text: Option<&str>, what: &str) -> Result<Option<Duration>, String> {
    text.map(|text| parse_duration(text).map_err(|error| format!("{what}: {error}")))
        .transpose()
}

fn resolve_group_by(names: Vec<String>) -> Result<GroupBy, String> {
    if names.iter().any(|name| name == "...") {
        if names.len() > 1 {
            return Err(
                "cannot have wildcard group_by (`...`) and other labels at the same time"
                    .to_string(),
            );
        }
        return Ok(GroupBy::All);
    }
    let mut seen = BTreeSet::new();
    for name in &names {
        if name.is_empty() {
            return Err("empty label name in group_by".to_string());
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("duplicated label {name:?} in group_by"));
        }
    }
    let mut sorted = names;
    sorted.sort();
    Ok(GroupBy::Labels(sorted))
}

/// `match` / `match_re` (and the inhibit rules' `source_match…`): label
/// names checked, regexes anchored.
fn legacy_matchers(
    equal: &BTreeMap<String, String>,
    regex: &BTreeMap<String, String>,
    what: &str,
) -> Result<Vec<Matcher>, String> {
    let mut matchers = Vec::new();
    for (name, value) in equal {
        if !crate::model::is_legacy_label_name(name) {
            return Err(format!("{name:?} is not a valid label name in {what}"));
        }
        matchers.push(Matcher::equal(name.clone(), value.clone()));
    }
    for (name, pattern) in regex {
        if !crate::model::is_legacy_label_name(name) {
            return Err(format!("{name:?} is not a valid label name in {what}_re"));
        }
        matchers.push(
            Matcher::new(MatchOp::Regex, name.clone(), pattern.clone())
                .map_err(|error| format!("{what}_re: {error}"))?,
        );
    }
    Ok(matchers)
}

fn resolve_inhibit_rule(raw: RawInhibitRule) -> Result<InhibitRuleConfig, String> {
    let mut source_matchers =
        parse_matcher_list(&raw.source_matchers).map_err(|error| error.to_string())?;
    source_matchers.extend(legacy_matchers(
        &raw.source_match,
        &raw.source_match_re,
        "source_match",
    )?);
    let mut target_matchers =
        parse_matcher_list(&raw.target_matchers).map_err(|error| error.to_string())?;
    target_matchers.extend(legacy_matchers(
        &raw.target_match,
        &raw.target_match_re,
        "target_match",
    )?);
    for name in &raw.equal {
        if name.is_empty() {
            return Err("empty label name in equal".to_string());
        }
    }
    Ok(InhibitRuleConfig {
        source_matchers,
        target_matchers,
        equal: raw.equal,
    })
}

fn resolve_receiver(
    raw: RawReceiver,
    global_http_config: &HttpClientConfig,
) -> Result<ReceiverConfig, String> {
    if let Some(first) = raw.unsupported_receiver_types().first() {
        return Err(format!(
            "{first} is not supported by guardia yet (supported: webhook_configs, alertmanager_configs)"
        ));
    }
    let http_config = |raw_http: Option<RawNotifyHttpConfig>| match raw_http {
        Some(raw_http) => resolve_notify_http_config(raw_http),
        None => Ok(global_http_config.clone()),
    };
    let mut webhook_configs = Vec::new();
    for raw_webhook in raw.webhook_configs {
        if raw_webhook.url_file.is_some() {
            return Err(
                "webhook_configs: url_file is not supported by guardia yet; use url".into(),
            );
        }
        let url = raw_webhook.url.ok_or_else(|| {
            "webhook_configs: one of url or url_file must be configured".to_string()
        })?;
        check_url(&url, "webhook_configs")?;
        webhook_configs.push(WebhookConfig {
            url,
            send_resolved: raw_webhook.send_resolved.unwrap_or(true),
            max_alerts: raw_webhook.max_alerts,
            timeout: parse_optional(raw_webhook.timeout.as_deref(), "webhook_configs.timeout")?,
            http_config: http_config(raw_webhook.http_config)
                .map_err(|message| format!("webhook_configs.http_config: {message}"))?,
        });
    }
    let mut alertmanager_configs = Vec::new();
    for raw_target in raw.alertmanager_configs {
        check_url(&raw_target.url, "alertmanager_configs")?;
        alertmanager_configs.push(AlertmanagerTargetConfig {
            url: raw_target.url.trim_end_matches('/').to_string(),
            send_resolved: raw_target.send_resolved.unwrap_or(true),
            timeout: parse_optional(
                raw_target.timeout.as_deref(),
                "alertmanager_configs.timeout",
            )?,
            http_config: http_config(raw_target.http_config)
                .map_err(|message| format!("alertmanager_configs.http_config: {message}"))?,
        });
    }
    Ok(ReceiverConfig {
        name: raw.name,
        webhook_configs,
        alertmanager_configs,
    })
}

fn check_url(url: &str, what: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(host_and_path) if !host_and_path.is_empty() && !host_and_path.starts_with('/') => {
            Ok(())
        }
        _ => Err(format!(
            "{what}: URL {url:?} must be an absolute http or https URL"
        )),
    }
}

fn resolve_notify_http_config(raw: RawNotifyHttpConfig) -> Result<HttpClientConfig, String> {
    for (name, present) in [
        ("oauth2", raw.oauth2.is_some()),
        ("proxy_url", raw.proxy_url.is_some()),
        ("no_proxy", raw.no_proxy.is_some()),
        (
            "proxy_from_environment",
            raw.proxy_from_environment.is_some(),
        ),
        ("proxy_connect_header", raw.proxy_connect_header.is_some()),
        ("http_headers", raw.http_headers.is_some()),
    ] {
        if present {
            return Err(format!("{name} is not supported by guardia yet"));
        }
    }
    // Read so that a `false` is not a surprise later: both are defaults of
    // the HTTP client guardia uses.
    let _ = (raw.follow_redirects, raw.enable_http2);
    resolve_http_client(
        raw.basic_auth,
        raw.authorization,
        raw.bearer_token,
        raw.bearer_token_file,
        raw.tls_config,
    )
}
