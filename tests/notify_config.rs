//! The `notifications:` section: an alertmanager.yml pasted under it parses
//! to the expected tree and receivers, and every check `amtool check-config`
//! makes is reported, through the library and through `guardia check config`.

use std::process::Command;
use std::time::Duration;

use guardia::config::file::parse_config;
use guardia::config::notifications::{GroupBy, NotificationsConfig};
use guardia::model::Labels;
use guardia::notify::inhibit::Inhibitor;
use guardia::notify::route::RouteTree;

/// An alertmanager.yml in the shape users have, webhook receivers only.
const PASTED_ALERTMANAGER_YML: &str = r#"
notifications:
  global:
    resolve_timeout: 2m
    smtp_smarthost: 'localhost:25'
    smtp_from: 'alertmanager@example.org'
    slack_api_url: 'https://hooks.slack.invalid/x'
  route:
    receiver: team-ops
    group_by: ['alertname', 'cluster', 'service']
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 3h
    routes:
    - matchers:
      - service=~"foo1|foo2|baz"
      receiver: team-x
      routes:
      - matchers:
        - severity="critical"
        receiver: team-x-pager
    - matchers: [service="files"]
      receiver: team-y
      continue: true
    - match:
        service: database
      receiver: team-db
      group_by: [alertname, cluster, database]
      mute_time_intervals: [offhours]
  inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [alertname, cluster, service]
  - source_match: {alertname: NodeDown}
    target_match_re: {alertname: "Disk.*"}
    equal: [instance]
  time_intervals:
  - name: offhours
    time_intervals:
    - times:
      - start_time: '18:00'
        end_time: '24:00'
      weekdays: ['monday:friday']
  mute_time_intervals:
  - name: legacy
    time_intervals:
    - weekdays: [saturday]
  receivers:
  - name: team-ops
    webhook_configs:
    - url: http://127.0.0.1:5001/hook
  - name: team-x
    webhook_configs:
    - url: https://hooks.example.org/x
      send_resolved: false
      max_alerts: 10
      timeout: 10s
      http_config:
        basic_auth: {username: am, password: secret}
  - name: team-x-pager
    alertmanager_configs:
    - url: http://alertmanager.example.org:9093/
  - name: team-y
  - name: team-db
    webhook_configs:
    - url: http://db-hooks.example.org/
"#;

fn notifications(yaml: &str) -> NotificationsConfig {
    match parse_config(yaml) {
        Ok(config) => config.notifications.expect("a notifications section"),
        Err(error) => panic!("config does not parse: {error}"),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

#[test]
fn a_pasted_alertmanager_yml_parses_with_its_settings() {
    let config = notifications(PASTED_ALERTMANAGER_YML);
    assert_eq!(config.resolve_timeout, Duration::from_secs(120));
    assert_eq!(config.receivers.len(), 5);
    let team_x = config.receiver("team-x").unwrap();
    assert_eq!(team_x.webhook_configs.len(), 1);
    let webhook = &team_x.webhook_configs[0];
    assert!(!webhook.send_resolved);
    assert_eq!(webhook.max_alerts, 10);
    assert_eq!(webhook.timeout, Some(Duration::from_secs(10)));
    assert_eq!(
        webhook.http_config.basic_auth.as_ref().unwrap().username,
        "am"
    );
    assert!(
        config.receiver("team-ops").unwrap().webhook_configs[0].send_resolved,
        "send_resolved defaults to true"
    );
    let pager = config.receiver("team-x-pager").unwrap();
    assert_eq!(
        pager.alertmanager_configs[0].url,
        "http://alertmanager.example.org:9093"
    );
    assert_eq!(
        config
            .time_intervals
            .iter()
            .map(|named| named.name.as_str())
            .collect::<Vec<_>>(),
        ["offhours", "legacy"]
    );
    assert_eq!(config.inhibit_rules.len(), 2);

    let tree = RouteTree::new(&config.route);
    let route_of = |pairs: &[(&str, &str)]| {
        tree.matching(&labels(pairs))
            .iter()
            .map(|node| node.receiver.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(route_of(&[("service", "foo1")]), ["team-x"]);
    assert_eq!(
        route_of(&[("service", "baz"), ("severity", "critical")]),
        ["team-x-pager"]
    );
    assert_eq!(route_of(&[("service", "files")]), ["team-y"]);
    assert_eq!(route_of(&[("service", "database")]), ["team-db"]);
    assert_eq!(route_of(&[("service", "other")]), ["team-ops"]);
    let database = tree.matching(&labels(&[("service", "database")]))[0];
    assert_eq!(
        database.group_by,
        GroupBy::Labels(vec![
            "alertname".to_string(),
            "cluster".to_string(),
            "database".to_string()
        ])
    );
    assert_eq!(database.repeat_interval, Duration::from_secs(3 * 3600));
    assert_eq!(database.mute_time_intervals, ["offhours"]);

    let inhibitor = Inhibitor::new(&config.inhibit_rules);
    let node_down = labels(&[("alertname", "NodeDown"), ("instance", "a")]);
    assert!(inhibitor.is_inhibited(
        &labels(&[("alertname", "DiskFull"), ("instance", "a")]),
        std::slice::from_ref(&node_down)
    ));
    assert!(!inhibitor.is_inhibited(
        &labels(&[("alertname", "DiskFull"), ("instance", "b")]),
        std::slice::from_ref(&node_down)
    ));
}

#[test]
fn global_http_config_is_the_default_of_receivers_without_their_own() {
    let config = notifications(
        r#"
notifications:
  global:
    http_config:
      authorization: {credentials: token}
  route: {receiver: a}
  receivers:
  - name: a
    webhook_configs:
    - url: http://x/
    - url: http://y/
      http_config: {basic_auth: {username: u}}
"#,
    );
    let hooks = &config.receivers[0].webhook_configs;
    let authorization = hooks[0].http_config.authorization.as_ref().unwrap();
    assert_eq!(authorization.credentials.as_deref(), Some("token"));
    assert_eq!(authorization.credentials_type, "Bearer");
    assert!(hooks[1].http_config.authorization.is_none());
    assert!(hooks[1].http_config.basic_auth.is_some());
}

#[test]
fn a_section_without_routes_or_receivers_is_allowed_and_sends_nothing() {
    let config = notifications("notifications: {}\n");
    assert!(config.receivers.is_empty());
    assert_eq!(config.route.receiver.as_deref(), Some(""));
    assert!(
        parse_config("scrape_configs: []\n")
            .unwrap()
            .notifications
            .is_none()
    );
}

/// Each invalid section with a fragment its error must contain.
#[test]
fn invalid_sections_are_refused_as_amtool_check_config_would() {
    let receivers = "  receivers: [{name: a}, {name: b}]\n";
    let cases: Vec<(String, &str)> = vec![
        (
            format!("notifications:\n  route: {{group_by: [x]}}\n{receivers}"),
            "root route must specify a default receiver",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, matchers: [x=y]}}\n{receivers}"),
            "root route must not have any matchers",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, match: {{x: y}}}}\n{receivers}"),
            "root route must not have any matchers",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, continue: true}}\n{receivers}"),
            "cannot have continue in root route",
        ),
        (
            format!(
                "notifications:\n  route: {{receiver: a, mute_time_intervals: [t]}}\n{receivers}  time_intervals: [{{name: t}}]\n"
            ),
            "root route must not have any mute time intervals",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, routes: [{{receiver: nobody}}]}}\n{receivers}"),
            "undefined receiver \"nobody\"",
        ),
        (
            format!("notifications:\n  route: {{receiver: missing}}\n{receivers}"),
            "undefined receiver \"missing\"",
        ),
        (
            "notifications:\n  route: {receiver: a}\n  receivers: [{name: a}, {name: a}]\n".to_string(),
            "notification config name \"a\" is not unique",
        ),
        (
            format!(
                "notifications:\n  route: {{receiver: a, routes: [{{matchers: [x=y], mute_time_intervals: [nope]}}]}}\n{receivers}"
            ),
            "undefined time interval \"nope\"",
        ),
        (
            format!(
                "notifications:\n  route: {{receiver: a}}\n{receivers}  time_intervals: [{{name: t}}]\n  mute_time_intervals: [{{name: t}}]\n"
            ),
            "time interval \"t\" is not unique",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, group_by: ['...', x]}}\n{receivers}"),
            "wildcard group_by",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, group_by: [x, x]}}\n{receivers}"),
            "duplicated label \"x\" in group_by",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, group_interval: 0s}}\n{receivers}"),
            "group_interval cannot be zero",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, repeat_interval: 0s}}\n{receivers}"),
            "repeat_interval cannot be zero",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, group_wait: 5 minutes}}\n{receivers}"),
            "group_wait",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, routes: [{{matchers: ['x=~\"(\"']}}]}}\n{receivers}"),
            "bad matcher",
        ),
        (
            format!("notifications:\n  route: {{receiver: a, routes: [{{match_re: {{x: '('}}}}]}}\n{receivers}"),
            "match_re",
        ),
        (
            "notifications:\n  receivers: [{name: a}]\n".to_string(),
            "no routes provided",
        ),
        (
            "notifications:\n  route: {receiver: a}\n  receivers:\n  - name: a\n    slack_configs: [{channel: x}]\n".to_string(),
            "slack_configs is not supported by guardia yet",
        ),
        (
            "notifications:\n  route: {receiver: a}\n  receivers:\n  - name: a\n    email_configs: [{to: x}]\n".to_string(),
            "email_configs is not supported by guardia yet",
        ),
        (
            "notifications:\n  route: {receiver: a}\n  receivers: [{name: a}]\n  templates: ['/etc/am/*.tmpl']\n".to_string(),
            "\"templates\" is not supported",
        ),
        (
            "notifications:\n  route: {receiver: a}\n  receivers:\n  - name: a\n    webhook_configs: [{url: 'ftp://x'}]\n".to_string(),
            "must be an absolute http or https URL",
        ),
        (
            "notifications:\n  route: {receiver: a}\n  receivers:\n  - name: a\n    webhook_configs: [{url: 'http://x', http_config: {oauth2: {}}}]\n".to_string(),
            "oauth2 is not supported",
        ),
        (
            "notifications:\n  route: {receiver: a}\n  receivers:\n  - name: a\n    webhook_configs: [{}]\n".to_string(),
            "one of url or url_file",
        ),
        (
            "notifications:\n  global: {victorops_api_key: x, unknown_global: 1}\n".to_string(),
            "unknown_global",
        ),
        (
            "notifications:\n  route: {receiver: a, matchers_typo: []}\n".to_string(),
            "matchers_typo",
        ),
        (
            format!(
                "notifications:\n  route: {{receiver: a}}\n{receivers}  time_intervals: [{{name: t, time_intervals: [{{weekdays: [funday]}}]}}]\n"
            ),
            "funday",
        ),
        (
            format!(
                "notifications:\n  route: {{receiver: a}}\n{receivers}  inhibit_rules: [{{source_matchers: ['a=\"'], target_matchers: [b=c]}}]\n"
            ),
            "inhibit_rules[0]",
        ),
    ];
    for (yaml, fragment) in cases {
        match parse_config(&yaml) {
            Ok(_) => panic!("accepted, expected an error with {fragment:?}:\n{yaml}"),
            Err(error) => {
                let message = error.to_string();
                assert!(
                    message.contains(fragment),
                    "error {message:?} should contain {fragment:?} for:\n{yaml}"
                );
            }
        }
    }
}

#[test]
fn a_yaml_shape_error_names_its_line() {
    let yaml = "notifications:\n  route:\n    receiver: a\n    routes:\n    - receiver: a\n      group_by: x\n  receivers: [{name: a}]\n";
    let message = parse_config(yaml).unwrap_err().to_string();
    assert!(message.contains("line 6"), "{message}");
}

/// Exit code and output of `guardia check config` on `yaml`.
fn check_config(yaml: &str) -> (i32, String) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("guardia.yml");
    std::fs::write(&path, yaml).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_guardia"))
        .args(["check", "config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn guardia_check_config_reports_notification_errors() {
    let (code, text) = check_config(PASTED_ALERTMANAGER_YML);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let (code, text) = check_config(
        "notifications:\n  route: {receiver: a, routes: [{receiver: ghost}]}\n  receivers: [{name: a}]\n",
    );
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("undefined receiver \"ghost\""), "{text}");
}
