//! Heartbeats of remote sites: for each configured heartbeat, every value
//! of its `site_label` among the series of its selector is a site; a site
//! with no heartbeat sample in the last `missing_for` is *unreachable*. The
//! manager turns an unreachable site into one "SiteUnreachable" incident
//! (a synthetic alert `{alertname="SiteUnreachable", <site_label>=<site>,
//! heartbeat=<name>}`) and, while it lasts, the site's alerts matching the
//! heartbeat's `inhibit` matchers open no incident and
//! [`HeartbeatTracker::is_inhibited`] tells the notifier to hold them: a cut
//! link pages once, not once per target.
//!
//! A sample counts as a heartbeat when it is not a staleness marker and not
//! 0, because `up` (the natural selector for a scraped gateway) writes 0 for
//! every failed scrape. Sites are learnt from series with data in the last
//! [`KNOWN_SITE_WINDOW_MS`] and from earlier checks of this process.

use std::collections::BTreeMap;

use crate::config::sla::HeartbeatConfig;
use crate::model::{Labels, Matcher, Timestamp, is_stale_nan};
use crate::storage::Queryable;

/// How far back a heartbeat series makes its site known.
pub const KNOWN_SITE_WINDOW_MS: i64 = 24 * 3_600_000;

pub const SITE_UNREACHABLE_ALERT_NAME: &str = "SiteUnreachable";

/// A site that became unreachable or reachable again.
#[derive(Clone, Debug, PartialEq)]
pub struct HeartbeatTransition {
    pub heartbeat: String,
    pub policy: String,
    pub site: String,
    pub unreachable: bool,
    pub alert_labels: Labels,
    pub annotations: Labels,
}

struct TrackedHeartbeat {
    config: HeartbeatConfig,
    /// `None` when the selector does not parse (logged once at configure).
    matchers: Option<Vec<Matcher>>,
    /// site → unreachable now.
    sites: BTreeMap<String, bool>,
}

#[derive(Default)]
pub struct HeartbeatTracker {
    heartbeats: Vec<TrackedHeartbeat>,
}

/// Parses `name{matchers}`, `{matchers}` or a bare metric name.
pub fn parse_series_selector(selector: &str) -> Result<Vec<Matcher>, String> {
    let selector = selector.trim();
    let (name, rest) = match selector.find('{') {
        Some(index) => (selector[..index].trim(), &selector[index..]),
        None => (selector, ""),
    };
    let mut matchers = Vec::new();
    if !name.is_empty() {
        if !crate::model::is_legacy_metric_name(name) {
            return Err(format!("bad metric name {name:?} in selector {selector:?}"));
        }
        matchers.push(Matcher::equal("__name__", name));
    }
    if !rest.is_empty() && rest.trim() != "{}" {
        matchers.extend(
            crate::config::matcher::parse_matchers(rest).map_err(|error| error.to_string())?,
        );
    }
    if matchers.is_empty() {
        return Err(format!("empty selector {selector:?}"));
    }
    Ok(matchers)
}

impl HeartbeatTracker {
    pub fn new(configs: &[HeartbeatConfig]) -> HeartbeatTracker {
        let mut tracker = HeartbeatTracker::default();
        tracker.configure(configs);
        tracker
    }

    /// New configuration; the state of heartbeats that keep their name stays.
    pub fn configure(&mut self, configs: &[HeartbeatConfig]) {
        let mut previous: BTreeMap<String, BTreeMap<String, bool>> = self
            .heartbeats
            .drain(..)
            .map(|tracked| (tracked.config.name.clone(), tracked.sites))
            .collect();
        for config in configs {
            let matchers = match parse_series_selector(&config.selector) {
                Ok(matchers) => Some(matchers),
                Err(error) => {
                    tracing::error!(heartbeat = %config.name, %error, "heartbeat selector ignored");
                    None
                }
            };
            self.heartbeats.push(TrackedHeartbeat {
                config: config.clone(),
                matchers,
                sites: previous.remove(&config.name).unwrap_or_default(),
            });
        }
    }

    fn alert_labels(config: &HeartbeatConfig, site: &str) -> Labels {
        Labels::from_pairs([
            ("alertname", SITE_UNREACHABLE_ALERT_NAME),
            (config.site_label.as_str(), site),
            ("heartbeat", config.name.as_str()),
        ])
    }

    /// Reads the heartbeat series at `now` and returns the sites whose
    /// reachability changed.
    pub fn check(&mut self, store: &dyn Queryable, now: Timestamp) -> Vec<HeartbeatTransition> {
        let mut transitions = Vec::new();
        let querier = match store.querier() {
            Ok(querier) => querier,
            Err(error) => {
                tracing::warn!(%error, "cannot read heartbeats");
                return transitions;
            }
        };
        for tracked in &mut self.heartbeats {
            let Some(matchers) = &tracked.matchers else {
                continue;
            };
            let config = &tracked.config;
            let missing_for_ms = i64::try_from(config.missing_for.as_millis()).unwrap_or(i64::MAX);
            let series = match querier.select(
                now.saturating_sub(KNOWN_SITE_WINDOW_MS.max(missing_for_ms)),
                now,
                matchers,
            ) {
                Ok(series) => series,
                Err(error) => {
                    tracing::warn!(heartbeat = %config.name, %error, "cannot read heartbeat series");
                    continue;
                }
            };
            // site → newest heartbeat sample.
            let mut newest: BTreeMap<String, Option<Timestamp>> = tracked
                .sites
                .keys()
                .map(|site| (site.clone(), None))
                .collect();
            for one in &series {
                let Some(site) = one.labels.get(&config.site_label) else {
                    continue;
                };
                let beat = one
                    .samples
                    .iter()
                    .rev()
                    .find(|sample| !is_stale_nan(sample.v) && sample.v != 0.0)
                    .map(|sample| sample.t);
                let entry = newest.entry(site.to_string()).or_insert(None);
                *entry = (*entry).max(beat);
            }
            for (site, beat) in newest {
                let unreachable = beat.is_none_or(|at| now - at > missing_for_ms);
                let was_unreachable = tracked.sites.insert(site.clone(), unreachable);
                if was_unreachable == Some(unreachable)
                    || (was_unreachable.is_none() && !unreachable)
                {
                    continue;
                }
                transitions.push(HeartbeatTransition {
                    heartbeat: config.name.clone(),
                    policy: config.policy.clone(),
                    site: site.clone(),
                    unreachable,
                    alert_labels: Self::alert_labels(config, &site),
                    annotations: Labels::from_pairs([(
                        "summary",
                        format!(
                            "no heartbeat from {}={site} ({}) for more than {}",
                            config.site_label,
                            config.selector,
                            crate::sla::manager::format_duration_ms(missing_for_ms)
                        ),
                    )]),
                });
            }
        }
        transitions
    }

    /// True when `labels` belong to an unreachable site of a heartbeat whose
    /// `inhibit` matchers they match. The heartbeat's own alert is never
    /// inhibited.
    pub fn is_inhibited(&self, labels: &Labels) -> bool {
        if labels.get("alertname") == Some(SITE_UNREACHABLE_ALERT_NAME) {
            return false;
        }
        self.heartbeats.iter().any(|tracked| {
            let Some(site) = labels.get(&tracked.config.site_label) else {
                return false;
            };
            tracked.sites.get(site) == Some(&true)
                && crate::model::matches_all(&tracked.config.inhibit, labels)
        })
    }
}
