//! Incident clocks and due actions as pure functions of (timeline, policy,
//! now), driven with explicit timestamps: office hours across a night and
//! a weekend, ack-timeout re-open, repeats of the last tier, manual resolve
//! before the alert resolves, flapping, clock jumps, outside-hours modes.

use std::sync::Arc;

use guardia::model::{Labels, Timestamp};
use guardia::sla::incident::{
    DueAction, FLAP_GRACE_MS, Incident, IncidentState, clocks, due_actions,
};
use guardia::sla::policy::{Policy, PolicySet};

const MINUTE: i64 = 60_000;

const CONFIG: &str = r#"
sla:
  calendars:
    - name: office
      time_zone: America/Santiago
      hours:
        - weekdays: ['monday:friday']
          times: [{start_time: '08:00', end_time: '18:00'}]
  policies:
    - name: database
      matchers: ['layer="database"']
      calendar: 24x7
      acknowledge_within: 15m
      resolve_within: 4h
      acknowledge_timeout: 1h
      outside_hours: page
      escalation:
        - {after: 0s, receiver: primary}
        - {after: 10m, receiver: secondary}
        - {after: 30m, receiver: lead, repeat: 2, repeat_interval: 10m}
    - name: web-notify
      matchers: ['layer="web"']
      calendar: office
      acknowledge_within: 15m
      resolve_within: 4h
      outside_hours: notify
      escalation:
        - {after: 5m, receiver: web-primary}
        - {after: 10m, receiver: web-secondary}
    - name: web-none
      matchers: ['layer="quiet"']
      calendar: office
      acknowledge_within: 15m
      resolve_within: 4h
      outside_hours: none
      escalation:
        - {after: 0s, receiver: quiet-primary}
"#;

fn policies() -> PolicySet {
    let config = guardia::config::file::parse_config(CONFIG).expect("config parses");
    PolicySet::from_config(config.sla.as_ref().expect("sla section")).expect("policies build")
}

fn policy(name: &str) -> Arc<Policy> {
    policies().policy(name).expect("policy exists").clone()
}

fn santiago(text: &str) -> Timestamp {
    format!("{text}[America/Santiago]")
        .parse::<jiff::Zoned>()
        .expect("time parses")
        .timestamp()
        .as_millisecond()
}

fn alert(layer: &str) -> Labels {
    Labels::from_pairs([("alertname", "Down"), ("layer", layer), ("instance", "db1")])
}

fn open(layer: &str, at: Timestamp) -> Incident {
    Incident::open(1, "p", Labels::empty(), alert(layer), Labels::empty(), at)
}

/// Applies every due action until none is left, returning them.
fn run(incident: &mut Incident, policy: &Policy, now: Timestamp) -> Vec<DueAction> {
    let mut all = Vec::new();
    for _ in 0..8 {
        let actions = due_actions(incident, policy, now);
        if actions.is_empty() {
            break;
        }
        for action in &actions {
            incident.apply(action, now);
        }
        all.extend(actions);
    }
    all
}

fn escalations(actions: &[DueAction]) -> Vec<(u32, u32, u32)> {
    actions
        .iter()
        .filter_map(|action| match action {
            DueAction::Escalate {
                round,
                tier,
                repeat,
                ..
            } => Some((*round, *tier, *repeat)),
            _ => None,
        })
        .collect()
}

#[test]
fn office_hours_time_to_acknowledge_counts_working_minutes_only() {
    let web = policy("web-notify");
    // (fired, acknowledged, expected working minutes)
    let cases = [
        // Tuesday evening to Wednesday morning: 5 + 10 minutes.
        ("2026-11-24T17:55:00", "2026-11-25T08:10:00", 15),
        // Friday evening to Monday morning, across the weekend.
        ("2026-11-27T17:55:00", "2026-11-30T08:10:00", 15),
        // Saturday to Monday: nothing counts until Monday 08:00.
        ("2026-11-28T10:00:00", "2026-11-30T08:03:00", 3),
        // Inside one working day.
        ("2026-11-24T09:00:00", "2026-11-24T09:20:00", 20),
    ];
    for (fired, acknowledged, minutes) in cases {
        let mut incident = open("web", santiago(fired));
        incident
            .acknowledge("ana", "on it", santiago(acknowledged))
            .unwrap();
        let figures = clocks(&incident, &web, santiago(acknowledged) + 3_600_000);
        assert_eq!(
            figures.acknowledge.elapsed_ms,
            minutes * MINUTE,
            "{fired} → {acknowledged}"
        );
        assert_eq!(figures.acknowledge.breached, minutes > 15, "{fired}");
        assert_eq!(figures.acknowledge.stopped_at, Some(santiago(acknowledged)));
    }
}

#[test]
fn acknowledge_deadline_and_pause_follow_the_calendar() {
    let web = policy("web-notify");
    let incident = open("web", santiago("2026-11-24T17:55:00"));
    let night = clocks(&incident, &web, santiago("2026-11-24T23:00:00"));
    assert!(night.acknowledge.paused);
    assert_eq!(night.acknowledge.elapsed_ms, 5 * MINUTE);
    assert_eq!(night.acknowledge.remaining_ms, 10 * MINUTE);
    assert_eq!(
        night.acknowledge.deadline,
        Some(santiago("2026-11-25T08:10:00"))
    );
    let late = clocks(&incident, &web, santiago("2026-11-25T08:11:00"));
    assert!(!late.acknowledge.paused);
    assert!(late.acknowledge.breached);
    assert_eq!(late.acknowledge.remaining_ms, 0);
}

/// Minutes into the incident, and the (round, tier, repeat) escalations due then.
type EscalationsDueAt = (i64, Vec<(u32, u32, u32)>);

#[test]
fn escalation_tiers_fire_once_each_and_the_last_tier_repeats() {
    let database = policy("database");
    let start = 1_800_000_000_000;
    let mut incident = open("database", start);
    let table: [EscalationsDueAt; 7] = [
        (0, vec![(0, 0, 0)]),
        (9, vec![]),
        (10, vec![(0, 1, 0)]),
        (30, vec![(0, 2, 0)]),
        (40, vec![(0, 2, 1)]),
        (50, vec![(0, 2, 2)]),
        (120, vec![]),
    ];
    for (minutes, expected) in table {
        let actions = run(&mut incident, &database, start + minutes * MINUTE);
        assert_eq!(escalations(&actions), expected, "at {minutes} min");
    }
    assert!(incident.was_breached(guardia::sla::incident::BreachKind::Acknowledge));
    assert_eq!(incident.current_tier(), Some(2));
}

#[test]
fn forward_jump_fires_each_missed_step_once_and_backward_jump_nothing() {
    let database = policy("database");
    let start = 1_800_000_000_000;
    let mut incident = open("database", start);
    let actions = run(&mut incident, &database, start + 5 * 3_600_000);
    assert_eq!(
        escalations(&actions),
        vec![(0, 0, 0), (0, 1, 0), (0, 2, 0), (0, 2, 1), (0, 2, 2)]
    );
    let breaches = actions
        .iter()
        .filter(|action| matches!(action, DueAction::Breach { .. }))
        .count();
    assert_eq!(breaches, 2, "acknowledge and resolve targets both passed");
    assert!(run(&mut incident, &database, start + 5 * 3_600_000).is_empty());
    // The clock goes back an hour before the opening: nothing due, no negative figures.
    let back = start - 3_600_000;
    assert!(due_actions(&incident, &database, back).is_empty());
    let figures = clocks(&incident, &database, back);
    assert_eq!(figures.acknowledge.elapsed_ms, 0);
    assert_eq!(figures.resolve.elapsed_ms, 0);
}

#[test]
fn acknowledge_timeout_reopens_and_escalation_starts_a_new_round() {
    let database = policy("database");
    let start = 1_800_000_000_000;
    let mut incident = open("database", start);
    run(&mut incident, &database, start);
    incident
        .acknowledge("ana", "looking", start + 5 * MINUTE)
        .unwrap();
    assert_eq!(incident.state(), IncidentState::Acknowledged);
    assert!(run(&mut incident, &database, start + 64 * MINUTE).is_empty());
    let actions = run(&mut incident, &database, start + 65 * MINUTE);
    assert_eq!(actions[0], DueAction::ReopenAfterAcknowledgeTimeout);
    assert_eq!(escalations(&actions), vec![(1, 0, 0)]);
    assert_eq!(incident.state(), IncidentState::Reopened);
    assert_eq!(incident.current_round(), (1, start + 65 * MINUTE));
    // The acknowledgement stopped the response clock for good.
    let figures = clocks(&incident, &database, start + 70 * MINUTE);
    assert_eq!(figures.acknowledge.elapsed_ms, 5 * MINUTE);
    assert!(!figures.acknowledge.breached);
    // Round 1 escalates to tier 1 after its own 10 minutes.
    let actions = run(&mut incident, &database, start + 75 * MINUTE);
    assert_eq!(escalations(&actions), vec![(1, 1, 0)]);
}

#[test]
fn manual_resolve_before_the_alert_resolves_ends_the_incident() {
    let database = policy("database");
    let start = 1_800_000_000_000;
    let mut incident = open("database", start);
    run(&mut incident, &database, start);
    incident
        .resolve_manually("ana", "fixed by hand", start + 20 * MINUTE)
        .unwrap();
    assert_eq!(incident.state(), IncidentState::Resolved);
    assert!(run(&mut incident, &database, start + 3 * 3_600_000).is_empty());
    let figures = clocks(&incident, &database, start + 3 * 3_600_000);
    assert_eq!(figures.resolve.elapsed_ms, 20 * MINUTE);
    assert_eq!(figures.acknowledge.elapsed_ms, 20 * MINUTE);
    // The alert still fires: it belongs to this incident, which is not finished.
    assert!(incident.absorbs(&alert("database")));
    assert!(!incident.is_finished());
    assert!(
        incident
            .acknowledge("bob", "", start + 21 * MINUTE)
            .is_err()
    );
    assert!(incident.record_alert_resolved(&alert("database"), start + 30 * MINUTE));
    assert!(incident.is_finished());
    // Firing again now is a new problem.
    assert!(!incident.absorbs(&alert("database")));
}

#[test]
fn a_flapping_alert_stays_in_one_incident() {
    let database = policy("database");
    let start = 1_800_000_000_000;
    let mut incident = open("database", start);
    run(&mut incident, &database, start);
    assert!(incident.record_alert_resolved(&alert("database"), start + 5 * MINUTE));
    // Resolved alerts stop escalation: tier 1 would be due at 10 minutes.
    assert!(run(&mut incident, &database, start + 8 * MINUTE).is_empty());
    assert!(incident.absorbs(&alert("database")));
    assert!(incident.record_alert_firing(&alert("database"), &Labels::empty(), start + 8 * MINUTE));
    let actions = run(&mut incident, &database, start + 10 * MINUTE);
    assert_eq!(escalations(&actions), vec![(0, 1, 0)]);
    incident
        .acknowledge("ana", "", start + 11 * MINUTE)
        .unwrap();
    assert!(incident.record_alert_resolved(&alert("database"), start + 20 * MINUTE));
    assert!(
        run(
            &mut incident,
            &database,
            start + 20 * MINUTE + FLAP_GRACE_MS - 1
        )
        .is_empty()
    );
    let actions = run(
        &mut incident,
        &database,
        start + 20 * MINUTE + FLAP_GRACE_MS,
    );
    assert_eq!(
        actions,
        vec![DueAction::ResolveAlertsGone {
            at: start + 20 * MINUTE
        }]
    );
    assert_eq!(incident.state(), IncidentState::Resolved);
    assert_eq!(incident.resolved_at(), Some(start + 20 * MINUTE));
    assert!(incident.is_finished());
}

#[test]
fn outside_hours_notify_pages_tier_zero_only_and_none_waits_for_coverage() {
    let notify = policy("web-notify");
    let saturday = santiago("2026-11-28T10:00:00");
    let mut incident = open("web", saturday);
    let actions = run(&mut incident, &notify, saturday);
    assert_eq!(escalations(&actions), vec![(0, 0, 0)]);
    assert!(run(&mut incident, &notify, santiago("2026-11-29T23:00:00")).is_empty());
    assert!(run(&mut incident, &notify, santiago("2026-11-30T08:09:00")).is_empty());
    let actions = run(&mut incident, &notify, santiago("2026-11-30T08:10:00"));
    assert_eq!(escalations(&actions), vec![(0, 1, 0)]);

    let none = policy("web-none");
    let mut quiet = open("quiet", saturday);
    assert!(run(&mut quiet, &none, saturday).is_empty());
    assert!(run(&mut quiet, &none, santiago("2026-11-30T07:59:59")).is_empty());
    let actions = run(&mut quiet, &none, santiago("2026-11-30T08:00:00"));
    assert_eq!(escalations(&actions), vec![(0, 0, 0)]);
}

#[test]
fn transitions_refused_by_the_state() {
    let mut incident = open("database", 0);
    assert!(incident.unacknowledge("ana", 1).is_err());
    incident.acknowledge("ana", "", 2).unwrap();
    assert!(incident.acknowledge("bob", "", 3).is_err());
    incident.unacknowledge("ana", 4).unwrap();
    assert_eq!(incident.state(), IncidentState::Open);
    assert_eq!(incident.current_round(), (1, 4));
}

#[test]
fn stored_records_round_trip_and_garbage_is_an_error() {
    use guardia::sla::manager::{decode_incident_record, encode_incident_record};
    let mut incident = open("database", 5);
    incident.add_note("ana", "hello", 6);
    let bytes = encode_incident_record(&incident).unwrap();
    assert_eq!(decode_incident_record(&bytes).unwrap(), incident);
    assert!(decode_incident_record(&[]).is_err());
    assert!(decode_incident_record(&[9, 1, 2]).is_err());
    assert!(decode_incident_record(&bytes[..bytes.len() / 2]).is_err());
}
