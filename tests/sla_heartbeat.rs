//! Site heartbeats through the SLA manager, on a real redb file and a
//! manual clock (every tick is given its time): two gateways send `up`
//! every 15 s; one goes silent, and after `missing_for` exactly one
//! `SiteUnreachable` incident opens for that site; while it lasts, that
//! site's target-down alerts are inhibited (and open no incident) while the
//! other site's are not; the gateway comes back and the incident resolves.

use std::sync::Arc;

use guardia::clock::{Clock, ManualClock};
use guardia::model::{Labels, Timestamp};
use guardia::rules::{AlertSink, OutgoingAlert};
use guardia::sla::heartbeat::SITE_UNREACHABLE_ALERT_NAME;
use guardia::sla::incident::FLAP_GRACE_MS;
use guardia::sla::incident::Incident;
use guardia::sla::manager::{SlaManager, SlaSettings};
use guardia::storage::{Appendable, Queryable, StateStore};
use guardia::tsdb::{Options, Tsdb};

const SECOND: i64 = 1000;
const START: Timestamp = 1_800_000_000_000;
/// The north gateway's last heartbeat before it goes silent...
const NORTH_SILENT_FROM: Timestamp = START + 120 * SECOND;
/// ...and its first one after it comes back.
const NORTH_BACK_AT: Timestamp = START + 600 * SECOND;
const MISSING_FOR_MS: i64 = 120 * SECOND;

const CONFIG: &str = r#"
notifications:
  route: {receiver: noc}
  receivers:
    - name: noc
      webhook_configs: [{url: 'http://127.0.0.1:9/noc'}]
sla:
  policies:
    - name: sites
      matchers: ['alertname="SiteUnreachable"']
      calendar: 24x7
      acknowledge_within: 15m
      resolve_within: 4h
      outside_hours: page
      escalation:
        - {after: 0s, receiver: noc}
    - name: targets
      matchers: ['alertname="TargetDown"']
      calendar: 24x7
      acknowledge_within: 15m
      resolve_within: 4h
      group_by: [alertname, site]
      escalation:
        - {after: 0s, receiver: noc}
  heartbeats:
    - name: gateways
      selector: 'up{job="gateway"}'
      missing_for: 2m
      policy: sites
"#;

fn target_down(site: &str, at: Timestamp) -> OutgoingAlert {
    OutgoingAlert {
        labels: Labels::from_pairs([
            ("alertname", "TargetDown"),
            ("instance", "plc-1"),
            ("site", site),
        ]),
        annotations: Labels::empty(),
        starts_at: at,
        fired_at: Some(at),
        ends_at: at + 60 * SECOND,
        resolved: false,
        generator_url: String::new(),
    }
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn site_unreachable_incidents(manager: &SlaManager) -> Vec<Incident> {
    manager
        .all_incidents()
        .unwrap()
        .into_iter()
        .filter(|incident| {
            incident
                .alerts
                .iter()
                .any(|alert| alert.labels.get("alertname") == Some(SITE_UNREACHABLE_ALERT_NAME))
        })
        .collect()
}

fn heartbeat(tsdb: &Tsdb, site: &str, at: Timestamp) {
    let mut appender = tsdb.appender();
    appender
        .append(
            &[("__name__", "up"), ("job", "gateway"), ("site", site)],
            at,
            1.0,
        )
        .unwrap();
    appender.commit().unwrap();
}

#[test]
fn a_silent_site_opens_one_incident_inhibits_its_alerts_and_resolves_on_return() {
    let directory = tempfile::tempdir().unwrap();
    let tsdb = Tsdb::open(directory.path(), Options::default()).unwrap();
    let config = guardia::config::file::parse_config(CONFIG).unwrap();
    let settings = SlaSettings::from_config(config.sla.as_ref(), "http://127.0.0.1").unwrap();
    let state_store: Arc<dyn StateStore> = tsdb.clone();
    let series: Arc<dyn Appendable> = tsdb.clone();
    let query: Arc<dyn Queryable> = tsdb.clone();
    let manager = SlaManager::open(state_store, Some(series), Some(query), settings).unwrap();
    let clock = ManualClock::new(START);

    let north_down = labels(&[("alertname", "TargetDown"), ("site", "north")]);
    let south_down = labels(&[("alertname", "TargetDown"), ("site", "south")]);
    let north_latency = labels(&[("alertname", "HighLatency"), ("site", "north")]);
    let mut opened_at = None;
    let mut resolved_at = None;
    let mut resolution_seen_at = None;
    let mut inhibition_checked = false;
    while clock.now_ms() <= NORTH_BACK_AT + FLAP_GRACE_MS + 30 * SECOND {
        let now = clock.now_ms();
        heartbeat(&tsdb, "south", now);
        if !(NORTH_SILENT_FROM < now && now < NORTH_BACK_AT) {
            heartbeat(&tsdb, "north", now);
        }
        manager.tick(now);
        let incidents = site_unreachable_incidents(&manager);
        assert!(incidents.len() <= 1, "{incidents:?}");
        if let Some(incident) = incidents.first() {
            opened_at.get_or_insert(incident.opened_at());
            if resolved_at.is_none() {
                resolved_at = incident.resolved_at();
                if resolved_at.is_some() {
                    resolution_seen_at = Some(now);
                }
            }
        }
        // Inhibition ends with the first heartbeat back; the incident
        // resolves later, after the manager's flap grace period.
        let unreachable = opened_at.is_some() && now < NORTH_BACK_AT;
        assert_eq!(manager.is_inhibited(&north_down), unreachable, "at {now}");
        assert!(!manager.is_inhibited(&south_down));
        assert!(!manager.is_inhibited(&north_latency), "not a down alert");
        if unreachable && !inhibition_checked {
            // Both sites' targets go down: only the reachable site's alert
            // opens an incident; the unreachable site's is the cut link.
            manager.receive_alerts(
                "f",
                "g",
                now,
                &[target_down("north", now), target_down("south", now)],
            );
            manager.tick(now);
            let target_incidents: Vec<Incident> = manager
                .all_incidents()
                .unwrap()
                .into_iter()
                .filter(|incident| incident.policy == "targets")
                .collect();
            assert_eq!(target_incidents.len(), 1, "{target_incidents:?}");
            assert_eq!(target_incidents[0].label("site"), Some("south"));
            inhibition_checked = true;
        }
        clock.advance(15 * SECOND);
    }

    let opened_at = opened_at.expect("no SiteUnreachable incident opened");
    assert!(
        opened_at - NORTH_SILENT_FROM > MISSING_FOR_MS,
        "opened at {opened_at}"
    );
    assert!(opened_at - NORTH_SILENT_FROM <= MISSING_FOR_MS + 15 * SECOND);
    let resolved_at = resolved_at.expect("the incident did not resolve");
    assert_eq!(resolved_at, NORTH_BACK_AT, "dated when the site came back");
    assert!(resolution_seen_at.unwrap() >= NORTH_BACK_AT + FLAP_GRACE_MS);
    assert!(inhibition_checked);
    let incidents = site_unreachable_incidents(&manager);
    assert_eq!(incidents.len(), 1);
    let incident = &incidents[0];
    assert_eq!(incident.policy, "sites");
    assert_eq!(incident.state().as_str(), "resolved");
    let alert = &incident.alerts[0];
    assert_eq!(
        alert.labels,
        labels(&[
            ("alertname", SITE_UNREACHABLE_ALERT_NAME),
            ("heartbeat", "gateways"),
            ("site", "north"),
        ])
    );
    assert!(!manager.is_inhibited(&north_down));
    drop(manager);
    tsdb.close().unwrap();
}
