//! The incident manager on a real redb file: pages are stored before they
//! are handed over and re-handed after a restart under the same key (the
//! sink keeps the first); a restart between tier 1 and tier 2 still pages
//! tier 2 once, on time; clock jumps neither repeat nor lose a step; the
//! `guardia_sla_*` series land in the store and survive a restart.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;

use guardia::model::{Labels, Matcher, Timestamp};
use guardia::rules::{AlertSink, OutgoingAlert};
use guardia::sla::manager::{PageSink, SlaManager, SlaSettings};
use guardia::storage::{Appendable, Queryable, StateStore};
use guardia::tsdb::{Options, Tsdb};

const MINUTE: i64 = 60_000;
const START: Timestamp = 1_800_000_000_000;

const CONFIG: &str = r#"
notifications:
  route: {receiver: primary}
  receivers:
    - name: primary
      webhook_configs: [{url: 'http://127.0.0.1:9/primary'}]
    - name: secondary
      webhook_configs: [{url: 'http://127.0.0.1:9/secondary'}]
    - name: lead
      webhook_configs: [{url: 'http://127.0.0.1:9/lead'}]
sla:
  policies:
    - name: database
      matchers: ['layer="database"']
      calendar: 24x7
      acknowledge_within: 15m
      resolve_within: 4h
      outside_hours: page
      group_by: [alertname, instance]
      escalation:
        - {after: 0s, receiver: primary}
        - {after: 10m, receiver: secondary}
        - {after: 30m, receiver: lead}
"#;

/// Receiver, arrival time and content of one page.
type RecordedPage = (String, Timestamp, OutgoingAlert);

/// Keeps the first page per key, as the notifier does, and when each arrived.
#[derive(Default)]
struct RecordingSink {
    pages: Mutex<BTreeMap<String, RecordedPage>>,
    handed: Mutex<u64>,
    now: Mutex<Timestamp>,
}

impl PageSink for RecordingSink {
    fn page(&self, receiver: &str, dedup_key: &str, alert: &OutgoingAlert) -> Result<(), String> {
        *self.handed.lock() += 1;
        let now = *self.now.lock();
        self.pages.lock().entry(dedup_key.to_string()).or_insert((
            receiver.to_string(),
            now,
            alert.clone(),
        ));
        Ok(())
    }
}

fn settings() -> SlaSettings {
    let config = guardia::config::file::parse_config(CONFIG).unwrap();
    SlaSettings::from_config(config.sla.as_ref(), "http://guardia.example:9099").unwrap()
}

fn open(tsdb: &Arc<Tsdb>, sink: &Arc<RecordingSink>) -> Arc<SlaManager> {
    let state_store: Arc<dyn StateStore> = tsdb.clone();
    let series: Arc<dyn Appendable> = tsdb.clone();
    let query: Arc<dyn Queryable> = tsdb.clone();
    let manager = SlaManager::open(state_store, Some(series), Some(query), settings()).unwrap();
    manager.set_page_sink(sink.clone());
    manager
}

fn firing(instance: &str, at: Timestamp) -> OutgoingAlert {
    OutgoingAlert {
        labels: Labels::from_pairs([
            ("alertname", "PostgresDown"),
            ("layer", "database"),
            ("instance", instance),
        ]),
        annotations: Labels::from_pairs([("summary", "postgres is down")]),
        starts_at: at,
        fired_at: Some(at),
        ends_at: at + 4 * MINUTE,
        resolved: false,
        generator_url: String::new(),
    }
}

fn tick(manager: &SlaManager, sink: &RecordingSink, now: Timestamp) {
    *sink.now.lock() = now;
    manager.tick(now);
}

fn keys(sink: &RecordingSink) -> Vec<(String, Timestamp)> {
    sink.pages
        .lock()
        .iter()
        .map(|(key, (_, at, _))| (key.clone(), *at))
        .collect()
}

#[test]
fn restart_between_tier_one_and_two_pages_tier_two_once_on_time() {
    let directory = tempfile::tempdir().unwrap();
    let sink = Arc::new(RecordingSink::default());
    {
        let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
        let manager = open(&tsdb, &sink);
        manager.receive_alerts("f", "g", START, &[firing("db1", START)]);
        // Another evaluation of the same alert joins the same incident.
        manager.receive_alerts("f", "g", START, &[firing("db1", START)]);
        tick(&manager, &sink, START);
        tick(&manager, &sink, START + 10 * MINUTE);
        manager.receive_alerts("f", "g", START + 11 * MINUTE, &[firing("db1", START)]);
        tick(&manager, &sink, START + 11 * MINUTE);
        drop(manager);
        tsdb.close().unwrap();
    }
    assert_eq!(
        keys(&sink),
        vec![
            ("incident/1/tier/0/0".to_string(), START),
            ("incident/1/tier/1/0".to_string(), START + 10 * MINUTE),
        ]
    );
    let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
    let manager = open(&tsdb, &sink);
    tick(&manager, &sink, START + 20 * MINUTE);
    // The restart handed the stored pages over again (the sink kept the
    // first); new is only the acknowledge breach, due at 15 minutes.
    let after_restart: Vec<String> = keys(&sink).into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        after_restart,
        vec![
            "incident/1/breach/acknowledge",
            "incident/1/tier/0/0",
            "incident/1/tier/1/0",
        ]
    );
    assert!(*sink.handed.lock() >= 5);
    tick(&manager, &sink, START + 29 * MINUTE);
    assert_eq!(keys(&sink).len(), 3);
    tick(&manager, &sink, START + 30 * MINUTE);
    tick(&manager, &sink, START + 31 * MINUTE);
    let pages = sink.pages.lock();
    let (receiver, at, alert) = &pages["incident/1/tier/2/0"];
    assert_eq!(receiver, "lead");
    assert_eq!(*at, START + 30 * MINUTE);
    assert_eq!(alert.labels.get("alertname"), Some("SLAEscalation"));
    assert_eq!(alert.labels.get("incident_id"), Some("1"));
    assert_eq!(alert.labels.get("sla_policy"), Some("database"));
    assert_eq!(alert.labels.get("sla_tier"), Some("2"));
    assert_eq!(alert.labels.get("instance"), Some("db1"));
    assert_eq!(alert.labels.get("incident_alertname"), Some("PostgresDown"));
    let link = alert.annotations.get("ack_link").unwrap();
    assert!(
        link.starts_with(
            "http://guardia.example:9099/api/v1/incidents/1/ack-link?by=lead&expires="
        ),
        "{link}"
    );
    // The acknowledge target (15m) passed before tier 2: a breach went to the current tier.
    assert!(pages.contains_key("incident/1/breach/acknowledge"));
    let incident = manager.incident(1).unwrap();
    let escalations = incident
        .events
        .iter()
        .filter(|event| {
            matches!(
                event.kind,
                guardia::sla::incident::EventKind::Escalated { .. }
            )
        })
        .count();
    assert_eq!(escalations, 3);
}

#[test]
fn clock_jumps_neither_repeat_nor_lose_a_step() {
    let directory = tempfile::tempdir().unwrap();
    let sink = Arc::new(RecordingSink::default());
    let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
    let manager = open(&tsdb, &sink);
    manager.receive_alerts("f", "g", START, &[firing("db2", START)]);
    tick(&manager, &sink, START);
    // Backward by a day: nothing new, nothing repeated.
    tick(&manager, &sink, START - 24 * 60 * MINUTE);
    assert_eq!(keys(&sink).len(), 1);
    // Forward by two hours: tiers 1 and 2 once each, plus the breach.
    tick(&manager, &sink, START + 120 * MINUTE);
    tick(&manager, &sink, START + 121 * MINUTE);
    let found: Vec<String> = keys(&sink).into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        found,
        vec![
            "incident/1/breach/acknowledge",
            "incident/1/tier/0/0",
            "incident/1/tier/1/0",
            "incident/1/tier/2/0",
        ]
    );
    let incident = manager.incident(1).unwrap();
    let escalations = incident
        .events
        .iter()
        .filter(|event| {
            matches!(
                event.kind,
                guardia::sla::incident::EventKind::Escalated { .. }
            )
        })
        .count();
    assert_eq!(escalations, 3);
}

#[test]
fn acknowledged_and_resolved_incidents_feed_the_series_across_restarts() {
    let directory = tempfile::tempdir().unwrap();
    let sink = Arc::new(RecordingSink::default());
    let read_counter = |tsdb: &Arc<Tsdb>, name: &str, at: Timestamp| -> Vec<(Labels, f64)> {
        let querier = tsdb.querier().unwrap();
        querier
            .select_latest(at - MINUTE, at, &[Matcher::equal("__name__", name)])
            .unwrap()
            .into_iter()
            .map(|series| (series.labels, series.samples[0].v))
            .collect()
    };
    {
        let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
        let manager = open(&tsdb, &sink);
        manager.receive_alerts("f", "g", START, &[firing("db3", START)]);
        tick(&manager, &sink, START);
        manager
            .acknowledge(1, "ana", "on it", START + 5 * MINUTE)
            .unwrap();
        assert!(
            manager
                .acknowledge(1, "bob", "", START + 6 * MINUTE)
                .is_err()
        );
        let mut resolved = firing("db3", START);
        resolved.resolved = true;
        resolved.ends_at = START + 20 * MINUTE;
        manager.receive_alerts("f", "g", START + 20 * MINUTE, &[resolved]);
        tick(&manager, &sink, START + 20 * MINUTE);
        tick(&manager, &sink, START + 40 * MINUTE);
        let incident = manager.incident(1).unwrap();
        assert_eq!(incident.resolved_at(), Some(START + 20 * MINUTE));
        let open = read_counter(&tsdb, "guardia_sla_incidents_open", START + 40 * MINUTE);
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].1, 0.0);
        drop(manager);
        tsdb.close().unwrap();
    }
    let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
    let manager = open(&tsdb, &sink);
    tick(&manager, &sink, START + 60 * MINUTE);
    let at = START + 60 * MINUTE;
    let escalations = read_counter(&tsdb, "guardia_sla_escalations_total", at);
    assert_eq!(escalations.len(), 1);
    assert_eq!(escalations[0].0.get("tier"), Some("0"));
    assert_eq!(escalations[0].1, 1.0);
    let acknowledged = read_counter(&tsdb, "guardia_sla_acknowledge_seconds_count", at);
    assert_eq!(acknowledged[0].1, 1.0);
    let sum = read_counter(&tsdb, "guardia_sla_acknowledge_seconds_sum", at);
    assert_eq!(sum[0].1, 300.0);
    let resolve_sum = read_counter(&tsdb, "guardia_sla_resolve_seconds_sum", at);
    assert_eq!(resolve_sum[0].1, 1200.0);
    let buckets = read_counter(&tsdb, "guardia_sla_acknowledge_seconds_bucket", at);
    let bucket = |le: &str| {
        buckets
            .iter()
            .find(|(labels, _)| labels.get("le") == Some(le))
            .map(|(_, value)| *value)
    };
    assert_eq!(bucket("60"), Some(0.0));
    assert_eq!(bucket("300"), Some(1.0));
    assert_eq!(bucket("+Inf"), Some(1.0));
    let breaches = read_counter(&tsdb, "guardia_sla_breaches_total", at);
    assert!(breaches.iter().all(|(_, value)| *value == 0.0));
    // A new firing of the same alert after the incident finished is a new incident.
    manager.receive_alerts("f", "g", at, &[firing("db3", at)]);
    tick(&manager, &sink, at);
    assert_eq!(manager.incident(2).unwrap().policy, "database");
}
