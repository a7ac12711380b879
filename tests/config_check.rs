//! `guardia check config` run as a process, as an operator would: SUCCESS
//! and exit 0 for a valid file, FAILED with the reason and exit 1 otherwise.

use std::process::Command;

fn check(yaml: &str) -> (i32, String) {
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
fn valid_config_succeeds() {
    let (code, text) = check(concat!(
        "global:\n  scrape_interval: 15s\n  external_labels: {site: a}\n",
        "scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['localhost:9100']\n",
        "    relabel_configs:\n      - source_labels: [__address__]\n        regex: '(.*):.*'\n        target_label: host\n",
    ));
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
}

#[test]
fn unknown_key_fails_naming_key_and_position() {
    let (code, text) = check("scrape_configs:\n  - job_name: node\n    scrape_intervl: 15s\n");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("FAILED"), "{text}");
    assert!(text.contains("scrape_intervl"), "{text}");
    assert!(text.contains("line 3"), "{text}");
}

#[test]
fn missing_credentials_file_fails() {
    let (code, text) =
        check("scrape_configs:\n  - job_name: node\n    bearer_token_file: /nonexistent/token\n");
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("/nonexistent/token"), "{text}");
}

#[test]
fn missing_file_fails() {
    let output = Command::new(env!("CARGO_BIN_EXE_guardia"))
        .args(["check", "config", "/nonexistent/guardia.yml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
}
