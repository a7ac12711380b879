//! Service discovery: static groups, files (`file_sd_configs`, JSON or
//! YAML, polled) and HTTP (`http_sd_configs`, JSON). Each provider sends
//! the complete list of its groups whenever it changes; the pool keeps the
//! latest list per provider.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::config::file::{FileSdConfig, HttpSdConfig, StaticConfig};
use crate::scrape::ScrapeError;
use crate::scrape::relabel::LabelMap;

/// How often watched files are re-read. Prometheus reacts to inotify
/// events; polling once a second gives the same effect for files of a few
/// kilobytes and works on every file system.
pub const FILE_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// A discovered group: targets (each with at least `__address__`) and the
/// labels common to them, `__meta_*` included.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetGroup {
    /// Where the group came from (file path and index, URL and index).
    pub source: String,
    pub targets: Vec<LabelMap>,
    pub labels: LabelMap,
}

/// An update from provider `provider_index`: its complete current list.
#[derive(Debug)]
pub struct ProviderUpdate {
    pub provider_index: usize,
    pub groups: Vec<TargetGroup>,
}

pub fn static_groups(configs: &[StaticConfig]) -> Vec<TargetGroup> {
    configs
        .iter()
        .enumerate()
        .map(|(index, config)| group_from_static(config, index.to_string(), LabelMap::new()))
        .collect()
}

fn group_from_static(config: &StaticConfig, source: String, meta: LabelMap) -> TargetGroup {
    let mut labels: LabelMap = config
        .labels
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    labels.extend(meta);
    TargetGroup {
        source,
        targets: config
            .targets
            .iter()
            .map(|address| LabelMap::from([("__address__".to_string(), address.clone())]))
            .collect(),
        labels,
    }
}

/// Parses the groups of one file_sd file: YAML for `.yml`/`.yaml`, JSON otherwise.
pub fn parse_target_file(path: &Path, text: &str) -> Result<Vec<TargetGroup>, ScrapeError> {
    let is_yaml = matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("yml" | "yaml")
    );
    let configs: Vec<StaticConfig> = if text.trim().is_empty() {
        Vec::new()
    } else if is_yaml {
        serde_saphyr::from_str(text).map_err(|error| {
            ScrapeError::Discovery(format!("{}: {}", path.display(), error.without_snippet()))
        })?
    } else {
        serde_json::from_str(text)
            .map_err(|error| ScrapeError::Discovery(format!("{}: {error}", path.display())))?
    };
    let path_text = path.display().to_string();
    let mut groups = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        for target in &config.targets {
            crate::config::file::validate_target_address(target)
                .map_err(|error| ScrapeError::Discovery(format!("{path_text}: {error}")))?;
        }
        let meta = LabelMap::from([("__meta_filepath".to_string(), path_text.clone())]);
        groups.push(group_from_static(
            config,
            format!("{path_text}:{index}"),
            meta,
        ));
    }
    Ok(groups)
}

/// `*` matches any run of characters, `?` one character; no classes.
fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.first(), name.first()) {
        (None, None) => true,
        (Some(b'*'), _) => {
            wildcard_match(&pattern[1..], name)
                || (!name.is_empty() && wildcard_match(pattern, &name[1..]))
        }
        (Some(b'?'), Some(_)) => wildcard_match(&pattern[1..], &name[1..]),
        (Some(expected), Some(actual)) if expected == actual => {
            wildcard_match(&pattern[1..], &name[1..])
        }
        _ => false,
    }
}

/// The files a pattern names now (a glob only in the last component).
pub fn expand_file_pattern(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
        return Vec::new();
    };
    if !file_name.contains(['*', '?']) {
        return vec![path.to_path_buf()];
    }
    let directory = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut matches: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| wildcard_match(file_name.as_bytes(), name.as_bytes()))
        })
        .map(|entry| entry.path())
        .collect();
    matches.sort();
    matches
}

/// Reads every file of a file_sd config. A file that cannot be read or
/// parsed keeps its previous groups, as in Prometheus; a file that is gone
/// contributes nothing.
fn read_file_groups(
    config: &FileSdConfig,
    previous: &BTreeMap<PathBuf, Vec<TargetGroup>>,
) -> BTreeMap<PathBuf, Vec<TargetGroup>> {
    let mut current = BTreeMap::new();
    for pattern in &config.files {
        for path in expand_file_pattern(pattern) {
            match std::fs::read_to_string(&path) {
                Ok(text) => match parse_target_file(&path, &text) {
                    Ok(groups) => {
                        current.insert(path, groups);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "file_sd: cannot parse target file; keeping its previous targets");
                        if let Some(groups) = previous.get(&path) {
                            current.insert(path, groups.clone());
                        }
                    }
                },
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(path = %path.display(), %error, "file_sd: cannot read target file");
                    if let Some(groups) = previous.get(&path) {
                        current.insert(path, groups.clone());
                    }
                }
            }
        }
    }
    current
}

/// Polls the files of `config` and sends their groups whenever they change
/// (and at least every `refresh_interval`). Ends when the receiver is gone.
pub async fn run_file_discovery(
    provider_index: usize,
    config: FileSdConfig,
    updates: mpsc::Sender<ProviderUpdate>,
) {
    let mut previous: Option<BTreeMap<PathBuf, Vec<TargetGroup>>> = None;
    let mut last_sent = Instant::now();
    loop {
        let known = previous.clone().unwrap_or_default();
        let read_config = config.clone();
        let current =
            match tokio::task::spawn_blocking(move || read_file_groups(&read_config, &known)).await
            {
                Ok(groups) => groups,
                Err(error) => {
                    tracing::error!(%error, "file_sd: reader task failed");
                    return;
                }
            };
        let changed = previous.as_ref() != Some(&current);
        if changed || last_sent.elapsed() >= config.refresh_interval {
            let groups = current.values().flatten().cloned().collect();
            if updates
                .send(ProviderUpdate {
                    provider_index,
                    groups,
                })
                .await
                .is_err()
            {
                return;
            }
            last_sent = Instant::now();
            previous = Some(current);
        }
        tokio::time::sleep(FILE_POLL_INTERVAL.min(config.refresh_interval)).await;
    }
}

/// Parses an http_sd response body: a JSON list of groups.
pub fn parse_http_groups(url: &str, body: &[u8]) -> Result<Vec<TargetGroup>, ScrapeError> {
    let configs: Vec<StaticConfig> = serde_json::from_slice(body)
        .map_err(|error| ScrapeError::Discovery(format!("{url}: {error}")))?;
    let mut groups = Vec::new();
    for (index, config) in configs.iter().enumerate() {
        for target in &config.targets {
            crate::config::file::validate_target_address(target)
                .map_err(|error| ScrapeError::Discovery(format!("{url}: {error}")))?;
        }
        let meta = LabelMap::from([("__meta_url".to_string(), url.to_string())]);
        groups.push(group_from_static(config, format!("{url}:{index}"), meta));
    }
    Ok(groups)
}

/// Fetches the http_sd URL every `refresh_interval`; a failed fetch keeps
/// the previous groups.
pub async fn run_http_discovery(
    provider_index: usize,
    config: HttpSdConfig,
    client: reqwest::Client,
    updates: mpsc::Sender<ProviderUpdate>,
) {
    let mut previous: Option<Vec<TargetGroup>> = None;
    loop {
        let fetched = async {
            let request =
                crate::scrape::scrape_loop::authorize(client.get(&config.url), &config.http_client)
                    .await?;
            let response = request
                .header(
                    "X-Prometheus-Refresh-Interval-Seconds",
                    config.refresh_interval.as_secs().to_string(),
                )
                .send()
                .await
                .map_err(|error| ScrapeError::Discovery(format!("{}: {error}", config.url)))?;
            if !response.status().is_success() {
                return Err(ScrapeError::Discovery(format!(
                    "{}: server returned HTTP status {}",
                    config.url,
                    response.status()
                )));
            }
            let body = response
                .bytes()
                .await
                .map_err(|error| ScrapeError::Discovery(format!("{}: {error}", config.url)))?;
            parse_http_groups(&config.url, &body)
        }
        .await;
        match fetched {
            Ok(groups) => {
                if previous.as_ref() != Some(&groups) {
                    if updates
                        .send(ProviderUpdate {
                            provider_index,
                            groups: groups.clone(),
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    previous = Some(groups);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "http_sd: refresh failed; keeping previous targets")
            }
        }
        tokio::time::sleep(config.refresh_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_target_files_parse_alike() {
        let json = r#"[{"targets": ["a:1", "b:2"], "labels": {"env": "prod"}}]"#;
        let yaml = "- targets: ['a:1', 'b:2']\n  labels:\n    env: prod\n";
        let from_json = parse_target_file(Path::new("/x/t.json"), json).unwrap();
        let from_yaml = parse_target_file(Path::new("/x/t.json"), json).unwrap();
        let from_real_yaml = parse_target_file(Path::new("/x/t.yml"), yaml).unwrap();
        assert_eq!(from_json, from_yaml);
        assert_eq!(from_json[0].targets.len(), 2);
        assert_eq!(
            from_real_yaml[0].labels.get("env").map(String::as_str),
            Some("prod")
        );
        assert_eq!(
            from_json[0]
                .labels
                .get("__meta_filepath")
                .map(String::as_str),
            Some("/x/t.json")
        );
        assert!(parse_target_file(Path::new("t.json"), "[{\"targetz\": []}]").is_err());
    }

    #[test]
    fn wildcards_match_names() {
        assert!(wildcard_match(b"*.json", b"a.json"));
        assert!(wildcard_match(b"t?.yml", b"t1.yml"));
        assert!(!wildcard_match(b"*.json", b"a.yml"));
    }
}
