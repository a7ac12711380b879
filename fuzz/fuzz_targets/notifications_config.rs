//! Fuzzes the `notifications:` section (alertmanager.yml's shape): any text
//! must parse or fail with an error, never panic; a section that parses must
//! build a route tree that routes every alert somewhere, with receivers that
//! exist and unique names.
#![no_main]

use guardia::config::file::parse_config;
use guardia::model::Labels;
use guardia::notify::inhibit::Inhibitor;
use guardia::notify::route::RouteTree;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    // The section is fuzzed both as a whole file and pasted under the key,
    // as a user pastes an alertmanager.yml.
    let indented: String = text.lines().map(|line| format!("  {line}\n")).collect();
    for candidate in [text.to_string(), format!("notifications:\n{indented}")] {
        let Ok(config) = parse_config(&candidate) else {
            continue;
        };
        let Some(notifications) = config.notifications else {
            continue;
        };
        let mut names = std::collections::BTreeSet::new();
        for receiver in &notifications.receivers {
            assert!(names.insert(receiver.name.clone()));
        }
        let tree = RouteTree::new(&notifications.route);
        let alert = Labels::from_pairs([("alertname", "Fuzz"), ("severity", "critical")]);
        let matched = tree.matching(&alert);
        assert!(!matched.is_empty());
        if !notifications.receivers.is_empty() {
            for node in tree.nodes() {
                assert!(names.contains(&node.receiver), "{}", node.receiver);
            }
        }
        let intervals = notifications.time_interval_table();
        for node in matched {
            let _ = node.group_labels(&alert);
            let _ = node.is_active_at(1_800_000_000_000, &intervals);
        }
        let inhibitor = Inhibitor::new(&notifications.inhibit_rules);
        let _ = inhibitor.is_inhibited(&alert, std::slice::from_ref(&alert));
    }
});
