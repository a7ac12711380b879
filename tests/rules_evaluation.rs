//! Golden tests of rule evaluation over a real store (redb file in a temp
//! dir) with a manual clock and no sleeps: every alert state transition,
//! `keep_firing_for`, a recording rule feeding a later rule in the same
//! evaluation, staleness of vanished recorded series, and alert state
//! restored after a restart in the middle of `for` and of `keep_firing_for`.

use std::path::Path;
use std::sync::Arc;

use guardia::clock::ManualClock;
use guardia::model::Labels;
use guardia::promql::{Engine, QueryOptions, Value};
use guardia::rules::alerting::AlertState;
use guardia::rules::{Rule, RuleManager, RuleSettings, RuleStorage};
use guardia::storage::{Appendable, StateStore};
use guardia::tsdb::{Options, Tsdb};

const START: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

const RULES: &str = r#"groups:
  - name: load
    interval: 1m
    labels:
      layer: host
    rules:
      - record: instance:load:max
        expr: max by (instance) (load)
      - alert: HighLoad
        expr: instance:load:max > 5
        for: 5m
        keep_firing_for: 10m
        labels:
          severity: warning
        annotations:
          summary: "{{ $labels.instance }} load {{ $value }}"
"#;

struct Fixture {
    directory: tempfile::TempDir,
    tsdb: Arc<Tsdb>,
    manager: Arc<RuleManager>,
}

fn open(directory: tempfile::TempDir) -> Fixture {
    let rule_path = directory.path().join("rules.yml");
    if !rule_path.exists() {
        std::fs::write(&rule_path, RULES).unwrap();
    }
    let tsdb = Tsdb::open(&directory.path().join("data"), Options::default()).unwrap();
    let storage: Arc<dyn RuleStorage> = tsdb.clone();
    let state: Arc<dyn StateStore> = tsdb.clone();
    let manager = RuleManager::new(
        storage,
        Some(state),
        Arc::new(ManualClock::new(START)),
        Engine::default(),
    );
    manager
        .load(RuleSettings {
            rule_files: vec![rule_path],
            ..RuleSettings::default()
        })
        .unwrap();
    Fixture {
        directory,
        tsdb,
        manager,
    }
}

fn fresh() -> Fixture {
    open(tempfile::tempdir().unwrap())
}

impl Fixture {
    fn push(&self, t: i64, value: f64) {
        let mut appender = self.tsdb.appender();
        appender
            .append(&[("__name__", "load"), ("instance", "a")], t, value)
            .unwrap();
        appender.commit().unwrap();
    }

    /// Pushes `value` at `t` and evaluates every group at `t`.
    fn step(&self, t: i64, value: Option<f64>) {
        if let Some(value) = value {
            self.push(t, value);
        }
        self.manager.evaluate_all_at(t);
    }

    fn alert(&self) -> Option<(AlertState, i64, Option<i64>, String)> {
        let groups = self.manager.groups();
        let group = groups[0].lock();
        let Rule::Alerting(rule) = &group.rules[1].rule else {
            panic!("second rule is the alert");
        };
        rule.active.values().next().map(|alert| {
            (
                alert.state,
                alert.active_at,
                alert.keep_firing_since,
                alert.annotations.get("summary").unwrap_or("").to_string(),
            )
        })
    }

    fn query(&self, expr: &str, t: i64) -> Vec<(Labels, f64)> {
        let result = Engine::default()
            .instant_query(self.tsdb.as_ref(), expr, t, QueryOptions::default())
            .unwrap();
        match result.value {
            Value::Vector(samples) => samples.into_iter().map(|s| (s.labels, s.v)).collect(),
            other => panic!("expected a vector, got {other:?}"),
        }
    }

    fn restart(self) -> Fixture {
        let Fixture {
            directory,
            tsdb,
            manager,
        } = self;
        drop(manager);
        tsdb.close().unwrap();
        drop(tsdb);
        open(directory)
    }
}

fn data_path(directory: &Path) -> std::path::PathBuf {
    directory.join("data")
}

#[test]
fn pending_then_firing_after_for_then_resolved() {
    let fixture = fresh();
    fixture.step(START, Some(1.0));
    assert_eq!(fixture.alert(), None);
    fixture.step(START + MINUTE, Some(9.0));
    let (state, active_at, _, summary) = fixture.alert().unwrap();
    assert_eq!(state, AlertState::Pending);
    assert_eq!(active_at, START + MINUTE);
    assert_eq!(summary, "a load 9");
    let alerts = fixture.query("ALERTS", START + MINUTE);
    assert_eq!(alerts.len(), 1);
    assert_eq!(
        alerts[0].0,
        Labels::from_pairs([
            ("__name__", "ALERTS"),
            ("alertname", "HighLoad"),
            ("alertstate", "pending"),
            ("instance", "a"),
            ("layer", "host"),
            ("severity", "warning"),
        ])
    );
    let for_state = fixture.query("ALERTS_FOR_STATE", START + MINUTE);
    assert_eq!(for_state[0].1, (START + MINUTE) as f64 / 1000.0);
    for minute in 2..6 {
        fixture.step(START + minute * MINUTE, Some(9.0));
        assert_eq!(
            fixture.alert().unwrap().0,
            AlertState::Pending,
            "minute {minute}"
        );
    }
    fixture.step(START + 6 * MINUTE, Some(9.0));
    assert_eq!(fixture.alert().unwrap().0, AlertState::Firing);
    let firing = fixture.query("ALERTS{alertstate=\"firing\"}", START + 6 * MINUTE);
    assert_eq!(firing.len(), 1);
    // The pending series got a staleness marker when the alert fired.
    assert!(
        fixture
            .query("ALERTS{alertstate=\"pending\"}", START + 6 * MINUTE)
            .is_empty()
    );

    // Condition clears: keep_firing_for (10m) holds the alert, then it resolves.
    fixture.step(START + 7 * MINUTE, Some(1.0));
    let (state, _, since, _) = fixture.alert().unwrap();
    assert_eq!(state, AlertState::Firing);
    assert_eq!(since, Some(START + 7 * MINUTE));
    fixture.step(START + 16 * MINUTE, Some(1.0));
    assert_eq!(fixture.alert().unwrap().0, AlertState::Firing);
    fixture.step(START + 17 * MINUTE, Some(1.0));
    assert_eq!(fixture.alert().unwrap().0, AlertState::Inactive);
    assert!(fixture.query("ALERTS", START + 17 * MINUTE).is_empty());
    fixture.tsdb.close().unwrap();
}

#[test]
fn pending_alert_disappears_when_condition_clears_before_for() {
    let fixture = fresh();
    fixture.step(START, Some(9.0));
    assert_eq!(fixture.alert().unwrap().0, AlertState::Pending);
    fixture.step(START + MINUTE, Some(1.0));
    assert_eq!(fixture.alert(), None);
    fixture.tsdb.close().unwrap();
}

#[test]
fn recording_rule_output_feeds_the_next_rule_in_the_same_evaluation() {
    let fixture = fresh();
    fixture.step(START, Some(9.0));
    // The alert reads `instance:load:max`, written by the first rule moments before.
    assert_eq!(fixture.alert().unwrap().0, AlertState::Pending);
    let recorded = fixture.query("instance:load:max", START);
    assert_eq!(
        recorded,
        vec![(
            Labels::from_pairs([
                ("__name__", "instance:load:max"),
                ("instance", "a"),
                ("layer", "host")
            ]),
            9.0
        )]
    );
    fixture.tsdb.close().unwrap();
}

#[test]
fn vanished_recorded_series_is_marked_stale() {
    let fixture = fresh();
    fixture.step(START, Some(1.0));
    assert_eq!(fixture.query("instance:load:max", START).len(), 1);
    // `load` ends with a staleness marker, so the rule returns nothing and
    // its own series gets one; without it the recorded sample would still
    // be inside the 5 m lookback a minute later.
    fixture.step(START + MINUTE, Some(guardia::model::stale_nan()));
    assert!(
        fixture
            .query("instance:load:max", START + 2 * MINUTE)
            .is_empty()
    );
    fixture.tsdb.close().unwrap();
}

#[test]
fn restart_in_the_middle_of_for_keeps_the_timer() {
    let fixture = fresh();
    fixture.step(START, Some(9.0));
    fixture.step(START + 2 * MINUTE, Some(9.0));
    assert_eq!(fixture.alert().unwrap().0, AlertState::Pending);
    let fixture = fixture.restart();
    assert!(data_path(fixture.directory.path()).exists());
    let (state, active_at, _, _) = fixture.alert().unwrap();
    assert_eq!((state, active_at), (AlertState::Pending, START));
    fixture.step(START + 5 * MINUTE, Some(9.0));
    // Fires 5 minutes after it first became pending, restart or not.
    assert_eq!(fixture.alert().unwrap().0, AlertState::Firing);
    fixture.tsdb.close().unwrap();
}

#[test]
fn restart_during_keep_firing_for_keeps_firing_until_it_ends() {
    let fixture = fresh();
    fixture.step(START, Some(9.0));
    fixture.step(START + 5 * MINUTE, Some(9.0));
    assert_eq!(fixture.alert().unwrap().0, AlertState::Firing);
    fixture.step(START + 6 * MINUTE, Some(1.0));
    assert_eq!(fixture.alert().unwrap().2, Some(START + 6 * MINUTE));
    let fixture = fixture.restart();
    let (state, _, since, _) = fixture.alert().unwrap();
    assert_eq!(
        (state, since),
        (AlertState::Firing, Some(START + 6 * MINUTE))
    );
    fixture.step(START + 15 * MINUTE, Some(1.0));
    assert_eq!(fixture.alert().unwrap().0, AlertState::Firing);
    fixture.step(START + 16 * MINUTE, Some(1.0));
    assert_eq!(fixture.alert().unwrap().0, AlertState::Inactive);
    fixture.tsdb.close().unwrap();
}

#[test]
fn failed_query_marks_the_rule_and_the_group_goes_on() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("rules.yml"),
        r#"groups:
  - name: load
    rules:
      - record: broken
        expr: 'label_replace(load, "x", "$1", "instance", "(")'
      - alert: HighLoad
        expr: load > 5
"#,
    )
    .unwrap();
    let fixture = open(directory);
    fixture.step(START, Some(9.0));
    let groups = fixture.manager.groups();
    let group = groups[0].lock();
    assert_eq!(group.rules[0].health, guardia::rules::RuleHealth::Err);
    assert!(group.rules[0].last_error.is_some());
    assert_eq!(group.rules[1].health, guardia::rules::RuleHealth::Ok);
    drop(group);
    assert_eq!(fixture.alert().unwrap().0, AlertState::Firing);
    fixture.tsdb.close().unwrap();
}

#[test]
fn query_offset_evaluates_and_writes_in_the_past() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("rules.yml"),
        r#"groups:
  - name: load
    query_offset: 1m
    rules:
      - record: load:offset
        expr: load
"#,
    )
    .unwrap();
    let fixture = open(directory);
    fixture.push(START, 1.0);
    fixture.push(START + MINUTE, 2.0);
    fixture.manager.evaluate_all_at(START + MINUTE);
    // Evaluated at START (one minute back) and written there.
    let recorded = fixture.query("load:offset", START);
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].1, 1.0);
    let at_write = fixture.query("timestamp(load:offset)", START + MINUTE);
    assert_eq!(at_write[0].1, START as f64 / 1000.0);
    fixture.tsdb.close().unwrap();
}

#[test]
fn group_limit_fails_the_rule_and_drops_its_alerts() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(
        directory.path().join("rules.yml"),
        r#"groups:
  - name: load
    limit: 1
    rules:
      - alert: AnyLoad
        expr: load > 0 or other > 0
"#,
    )
    .unwrap();
    let fixture = open(directory);
    let mut appender = fixture.tsdb.appender();
    appender
        .append(&[("__name__", "load"), ("instance", "a")], START, 1.0)
        .unwrap();
    appender
        .append(&[("__name__", "other"), ("instance", "b")], START, 1.0)
        .unwrap();
    appender.commit().unwrap();
    fixture.manager.evaluate_all_at(START);
    let groups = fixture.manager.groups();
    let group = groups[0].lock();
    assert_eq!(
        group.rules[0].last_error.as_deref(),
        Some("exceeded limit of 1 with 2 alerts")
    );
    let Rule::Alerting(rule) = &group.rules[0].rule else {
        panic!("alerting rule expected");
    };
    assert!(rule.active.is_empty());
    drop(group);
    fixture.tsdb.close().unwrap();
}
