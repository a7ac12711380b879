//! `guardia check config` run as a process, as an operator would: SUCCESS
//! and exit 0 for a valid file, FAILED with the reason and exit 1 otherwise.

use std::process::Command;

fn check(yaml: &str) -> (i32, String) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("guardia.yml");
    std::fs::write(&path, yaml).unwrap();
    check_file(&path)
}

/// Exit code and stdout + stderr of `guardia check config PATH`.
fn check_file(path: &std::path::Path) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_guardia"))
        .args(["check", "config"])
        .arg(path)
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
fn rule_files_listed_by_the_config_are_checked_too() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::create_dir(directory.path().join("rules")).unwrap();
    std::fs::write(
        directory.path().join("rules/good.yml"),
        "groups:\n  - name: good\n    rules:\n      - record: job:up:sum\n        expr: sum by (job) (up)\n",
    )
    .unwrap();
    let path = directory.path().join("guardia.yml");
    std::fs::write(&path, "rule_files:\n  - rules/*.yml\n").unwrap();
    let run = || check_file(&path);
    let (code, text) = run();
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("SUCCESS: 1 rule files found"), "{text}");
    assert!(
        text.contains("good.yml\n  SUCCESS: 1 rules found"),
        "{text}"
    );

    // A broken rule file (resolved against the config's directory) fails the check.
    std::fs::write(
        directory.path().join("rules/bad.yml"),
        "groups:\n  - name: bad\n    rules:\n      - record: bad:sum\n        expr: sum(\n",
    )
    .unwrap();
    let (code, text) = run();
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("bad.yml"), "{text}");
    assert!(text.contains("FAILED"), "{text}");
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
