//! From a discovered target to a scrape target, as Prometheus's
//! `PopulateLabels`: job defaults (`job`, `__scheme__`, `__metrics_path__`,
//! `__scrape_interval__`, `__scrape_timeout__`, `__param_*`) under the
//! discovered labels, `relabel_configs`, then `instance` defaults to
//! `__address__`, the scrape URL is built, and every label starting with
//! `__` is dropped from the public set.

use std::time::Duration;

use crate::config::file::ScrapeConfig;
use crate::config::parse_duration;
use crate::model::{Labels, is_legacy_label_name};
use crate::scrape::discovery::TargetGroup;
use crate::scrape::relabel::{LabelMap, relabel};

/// A target ready to scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// Public labels (no `__` names) attached to every scraped series.
    pub labels: Labels,
    /// The labels before relabeling, for `/api/v1/targets`.
    pub discovered_labels: LabelMap,
    pub scrape_url: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Identity within a pool: labels and URL.
    pub identity: u64,
}

/// What became of one discovered target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetOutcome {
    Active(ScrapeTarget),
    /// Dropped by relabeling (or without address); kept for the API.
    Dropped(LabelMap),
}

fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(60_000) && millis > 0 {
        format!("{}m", millis / 60_000)
    } else if millis.is_multiple_of(1000) {
        format!("{}s", millis / 1000)
    } else {
        format!("{millis}ms")
    }
}

/// The labels of one discovered target before relabeling.
pub fn discovered_labels(
    config: &ScrapeConfig,
    group: &TargetGroup,
    target: &LabelMap,
) -> LabelMap {
    let mut labels = group.labels.clone();
    for (name, value) in target {
        labels.insert(name.clone(), value.clone());
    }
    let defaults = [
        ("job", config.job_name.clone()),
        ("__scheme__", config.scheme.clone()),
        ("__metrics_path__", config.metrics_path.clone()),
        (
            "__scrape_interval__",
            format_duration(config.scrape_interval),
        ),
        ("__scrape_timeout__", format_duration(config.scrape_timeout)),
    ];
    for (name, value) in defaults {
        labels.entry(name.to_string()).or_insert(value);
    }
    for (name, values) in &config.params {
        if let Some(first) = values.first() {
            labels
                .entry(format!("__param_{name}"))
                .or_insert_with(|| first.clone());
        }
    }
    labels
}

/// Relabels a discovered target; `Err` for a target whose labels are
/// unusable after relabeling (logged and shown as dropped by the caller).
pub fn populate_target(
    config: &ScrapeConfig,
    discovered: LabelMap,
) -> Result<TargetOutcome, String> {
    let mut labels = discovered.clone();
    if !relabel(&config.relabel_configs, &mut labels) {
        return Ok(TargetOutcome::Dropped(discovered));
    }
    let Some(address) = labels.get("__address__").cloned() else {
        return Ok(TargetOutcome::Dropped(discovered));
    };
    crate::config::file::validate_target_address(&address)?;
    let interval = match labels.get("__scrape_interval__") {
        Some(text) => {
            parse_duration(text).map_err(|error| format!("__scrape_interval__: {error}"))?
        }
        None => config.scrape_interval,
    };
    let timeout = match labels.get("__scrape_timeout__") {
        Some(text) => {
            parse_duration(text).map_err(|error| format!("__scrape_timeout__: {error}"))?
        }
        None => config.scrape_timeout,
    };
    if interval.is_zero() {
        return Err("scrape interval cannot be 0".into());
    }
    if timeout > interval {
        return Err(format!(
            "scrape timeout cannot be greater than scrape interval ({} > {})",
            format_duration(timeout),
            format_duration(interval)
        ));
    }
    labels
        .entry("instance".to_string())
        .or_insert_with(|| address.clone());
    let scheme = labels
        .get("__scheme__")
        .cloned()
        .unwrap_or_else(|| "http".into());
    let path = labels
        .get("__metrics_path__")
        .cloned()
        .unwrap_or_else(|| "/metrics".into());
    let mut query: Vec<(String, String)> = Vec::new();
    for (name, values) in &config.params {
        let relabeled = labels.get(&format!("__param_{name}"));
        match relabeled {
            Some(first) => {
                query.push((name.clone(), first.clone()));
                query.extend(
                    values
                        .iter()
                        .skip(1)
                        .map(|value| (name.clone(), value.clone())),
                );
            }
            None => query.extend(values.iter().map(|value| (name.clone(), value.clone()))),
        }
    }
    for (name, value) in &labels {
        if let Some(param) = name.strip_prefix("__param_")
            && !config.params.contains_key(param)
        {
            query.push((param.to_string(), value.clone()));
        }
    }
    let mut scrape_url = format!("{scheme}://{address}{path}");
    if !query.is_empty() {
        let encoded: Vec<String> = query
            .iter()
            .map(|(name, value)| {
                format!("{}={}", encode_query_part(name), encode_query_part(value))
            })
            .collect();
        scrape_url.push(if path.contains('?') { '&' } else { '?' });
        scrape_url.push_str(&encoded.join("&"));
    }
    let public: Vec<(String, String)> = labels
        .into_iter()
        .filter(|(name, value)| !name.starts_with("__") && !value.is_empty())
        .collect();
    for (name, _) in &public {
        if !is_legacy_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
    }
    let labels = Labels::from_pairs(public);
    let identity = labels.hash64()
        ^ crate::model::hash_label_pairs(&[("__url__", &scrape_url)]).rotate_left(1);
    Ok(TargetOutcome::Active(ScrapeTarget {
        labels,
        discovered_labels: discovered,
        scrape_url,
        interval,
        timeout,
        identity,
    }))
}

fn encode_query_part(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                encoded.push(byte as char)
            }
            b' ' => encoded.push('+'),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::file::parse_config;

    fn job(yaml: &str) -> ScrapeConfig {
        parse_config(yaml).unwrap().scrape_configs.remove(0)
    }

    fn group(address: &str) -> TargetGroup {
        TargetGroup {
            source: "0".into(),
            targets: vec![LabelMap::from([(
                "__address__".to_string(),
                address.to_string(),
            )])],
            labels: LabelMap::from([
                ("__meta_x".to_string(), "m".to_string()),
                ("env".to_string(), "prod".to_string()),
            ]),
        }
    }

    #[test]
    fn defaults_give_instance_job_and_url() {
        let config =
            job("scrape_configs:\n  - job_name: node\n    params:\n      module: [if_mib]\n");
        let discovered = discovered_labels(&config, &group("h:9100"), &group("h:9100").targets[0]);
        let TargetOutcome::Active(target) = populate_target(&config, discovered).unwrap() else {
            panic!("dropped");
        };
        assert_eq!(target.scrape_url, "http://h:9100/metrics?module=if_mib");
        assert_eq!(
            target.labels,
            Labels::from_pairs([("env", "prod"), ("instance", "h:9100"), ("job", "node")])
        );
        assert_eq!(target.interval, Duration::from_secs(60));
    }

    #[test]
    fn relabeling_reaches_scheme_path_params_interval_and_drops() {
        let config = job(concat!(
            "scrape_configs:\n  - job_name: probe\n    relabel_configs:\n",
            "      - {source_labels: [__address__], target_label: __param_target}\n",
            "      - {target_label: __address__, replacement: 'exporter:9115'}\n",
            "      - {target_label: __metrics_path__, replacement: /probe}\n",
            "      - {target_label: __scheme__, replacement: https}\n",
            "      - {target_label: __scrape_interval__, replacement: 5s}\n",
            "      - {target_label: __scrape_timeout__, replacement: 5s}\n",
            "      - {source_labels: [__param_target], target_label: instance}\n",
            "      - {source_labels: [__param_target], regex: 'skip.*', action: drop}\n",
        ));
        let discovered = discovered_labels(&config, &group("site-a"), &group("site-a").targets[0]);
        let TargetOutcome::Active(target) = populate_target(&config, discovered).unwrap() else {
            panic!("dropped");
        };
        assert_eq!(
            target.scrape_url,
            "https://exporter:9115/probe?target=site-a"
        );
        assert_eq!(target.labels.get("instance"), Some("site-a"));
        assert_eq!(target.interval, Duration::from_secs(5));
        assert_eq!(target.timeout, Duration::from_secs(5));
        let dropped = discovered_labels(&config, &group("skip-me"), &group("skip-me").targets[0]);
        assert!(matches!(
            populate_target(&config, dropped).unwrap(),
            TargetOutcome::Dropped(_)
        ));
    }
}
