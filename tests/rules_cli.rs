//! The rule commands of the real binary: `guardia check rules` and
//! `guardia test rules`, their promtool-style output and exit codes, and
//! every rule pack under `rules/` passing its unit tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_guardia");

fn run(arguments: &[&str]) -> Output {
    Command::new(BINARY).args(arguments).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn packs_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

fn pack_files(suffix: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(packs_directory())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if suffix == ".yml" {
                name.ends_with(".yml") && !name.ends_with(".test.yml")
            } else {
                name.ends_with(suffix)
            }
        })
        .map(|path| path.display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn every_rule_pack_passes_its_unit_tests() {
    let tests = pack_files(".test.yml");
    assert_eq!(tests.len(), 4, "one test file per pack: {tests:?}");
    let mut arguments = vec!["test", "rules"];
    arguments.extend(tests.iter().map(String::as_str));
    let output = run(&arguments);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert_eq!(stdout.matches("  SUCCESS").count(), 4, "{stdout}");
}

#[test]
fn every_rule_pack_checks_and_every_alert_has_layer_severity_summary_description() {
    let packs = pack_files(".yml");
    assert_eq!(packs.len(), 4, "{packs:?}");
    let mut arguments = vec!["check", "rules"];
    arguments.extend(packs.iter().map(String::as_str));
    let output = run(&arguments);
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    for pack in &packs {
        let file = guardia::rules::load_rule_file(Path::new(pack)).unwrap();
        for group in &file.groups {
            for rule in &group.rules {
                let guardia::rules::file::RuleKind::Alerting { annotations, .. } = &rule.kind
                else {
                    continue;
                };
                let label = |name: &str| {
                    rule.labels
                        .get(name)
                        .or_else(|| group.labels.get(name))
                        .cloned()
                };
                assert!(
                    label("layer").is_some(),
                    "{pack}: {} has no layer",
                    rule.name
                );
                assert!(
                    matches!(label("severity").as_deref(), Some("warning" | "critical")),
                    "{pack}: {} has no severity",
                    rule.name
                );
                for annotation in ["summary", "description"] {
                    assert!(
                        annotations.contains_key(annotation),
                        "{pack}: {} has no {annotation}",
                        rule.name
                    );
                }
            }
        }
    }
}

#[test]
fn check_rules_reports_like_promtool() {
    let directory = tempfile::tempdir().unwrap();
    let good = directory.path().join("good.yml");
    std::fs::write(
        &good,
        "groups:\n  - name: g\n    rules:\n      - record: a:b\n        expr: sum(up)\n      - alert: A\n        expr: up == 0\n",
    )
    .unwrap();
    let output = run(&["check", "rules", good.to_str().unwrap()]);
    assert!(output.status.success());
    assert_eq!(
        text(&output.stdout),
        format!("Checking {}\n  SUCCESS: 2 rules found\n\n", good.display())
    );

    let bad = directory.path().join("bad.yml");
    std::fs::write(
        &bad,
        "groups:\n  - name: g\n    rules:\n      - alert: Broken\n        expr: sum(up\n",
    )
    .unwrap();
    let output = run(&[
        "check",
        "rules",
        good.to_str().unwrap(),
        bad.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.starts_with("  FAILED:\n"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: 5:15: group \"g\", rule 1, \"Broken\": could not parse expression:",
            bad.display()
        )),
        "{stderr}"
    );
    assert!(text(&output.stdout).contains("  SUCCESS: 2 rules found"));
}

#[test]
fn test_rules_fails_on_a_wrong_expectation_with_promtool_message() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("r.yml"),
        "groups:\n  - name: g\n    rules:\n      - alert: Down\n        expr: up == 0\n        for: 1m\n        labels:\n          severity: page\n",
    )
    .unwrap();
    let test_file = directory.path().join("r.test.yml");
    std::fs::write(
        &test_file,
        r#"rule_files: [r.yml]
tests:
  - interval: 1m
    input_series:
      - series: 'up{instance="a"}'
        values: '0x5'
    alert_rule_test:
      - eval_time: 2m
        alertname: Down
        exp_alerts:
          - exp_labels: {instance: b, severity: page}
"#,
    )
    .unwrap();
    let output = run(&["test", "rules", test_file.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stdout = text(&output.stdout);
    assert!(
        stdout.starts_with(&format!(
            "Unit Testing:  {}\n  FAILED:\n",
            test_file.display()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("    alertname: Down, time: 2m, \n        exp:["),
        "{stdout}"
    );
    assert!(
        stdout.contains("Labels:{alertname=\"Down\", instance=\"b\", severity=\"page\"}"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Labels:{alertname=\"Down\", instance=\"a\", severity=\"page\"}"),
        "{stdout}"
    );
}
