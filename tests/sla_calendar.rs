//! Coverage calendars answered through the public API, from calendars
//! written as an operator writes them (the `sla:` section of the config
//! file): office hours across weekends, holidays as dates and from an ICS
//! file, both DST changes of America/Santiago and Europe/Berlin in 2026 and
//! 2027, the 17:55 → 08:10 case, and `deadline_after` as the inverse of
//! `working_ms_between`. Expected values are worked out in the comments.

use std::sync::Arc;

use guardia::config::file::{load_file, parse_config};
use guardia::config::sla::OutsideHours;
use guardia::model::Labels;
use guardia::sla::calendar::Calendar;
use guardia::sla::policy::PolicySet;
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use proptest::prelude::*;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;

/// One calendar named `test` from the YAML of its body (indented 6 spaces).
fn calendar(body: &str) -> Calendar {
    let text = format!("sla:\n  calendars:\n    - name: test\n{body}");
    let config = parse_config(&text).unwrap_or_else(|error| panic!("{text}\n{error}"));
    let sla = config.sla.expect("sla section");
    let set = PolicySet::from_config(&sla).unwrap();
    Arc::unwrap_or_clone(set.calendar("test").expect("calendar test").clone())
}

fn santiago_office() -> Calendar {
    calendar(
        "      time_zone: America/Santiago
      hours:
        - weekdays: ['monday:friday']
          times: [{start_time: '08:00', end_time: '18:00'}]
",
    )
}

/// Every day, `start`–`end` local time in `zone`.
fn daily(zone: &str, start: &str, end: &str) -> Calendar {
    calendar(&format!(
        "      time_zone: {zone}
      hours:
        - times: [{{start_time: '{start}', end_time: '{end}'}}]
"
    ))
}

/// Milliseconds of a local civil time in `zone` (the earlier instant when
/// the time is repeated, the later when it is skipped).
fn local(zone: &str, civil: &str) -> i64 {
    let datetime: DateTime = civil.parse().unwrap();
    let time_zone = TimeZone::get(zone).unwrap();
    datetime
        .to_zoned(time_zone)
        .unwrap()
        .timestamp()
        .as_millisecond()
}

fn utc(text: &str) -> i64 {
    text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
}

const SANTIAGO: &str = "America/Santiago";
const BERLIN: &str = "Europe/Berlin";

#[test]
fn office_hours_across_a_weekend() {
    let office = santiago_office();
    // Friday 2026-11-27 17:00 → 18:00 = 1 h; weekend 0; Monday 08:00 → 09:00 = 1 h.
    assert_eq!(
        office.working_ms_between(
            local(SANTIAGO, "2026-11-27T17:00"),
            local(SANTIAGO, "2026-11-30T09:00")
        ),
        2 * HOUR
    );
    // A whole week Monday 00:00 → next Monday 00:00 = 5 × 10 h.
    assert_eq!(
        office.working_ms_between(
            local(SANTIAGO, "2026-11-23T00:00"),
            local(SANTIAGO, "2026-11-30T00:00")
        ),
        50 * HOUR
    );
    assert!(!office.is_covered(local(SANTIAGO, "2026-11-28T10:00")));
    assert!(office.is_covered(local(SANTIAGO, "2026-11-27T08:00")));
    assert!(!office.is_covered(local(SANTIAGO, "2026-11-27T18:00")));
    assert_eq!(office.working_ms_between(10, 10), 0);
    assert_eq!(office.working_ms_between(10, 5), 0);
}

#[test]
fn alert_at_1755_acked_at_0810_next_working_day_is_15_working_minutes() {
    let office = santiago_office();
    // Monday 17:55 → 18:00 = 5 min; Tuesday 08:00 → 08:10 = 10 min.
    let fired = local(SANTIAGO, "2026-11-23T17:55");
    let acked = local(SANTIAGO, "2026-11-24T08:10");
    assert_eq!(office.working_ms_between(fired, acked), 15 * MINUTE);
    assert_eq!(office.deadline_after(fired, 15 * MINUTE), Some(acked));
    // Over a weekend: Friday 17:55 → Monday 08:10 is the same 15 min.
    let friday = local(SANTIAGO, "2026-11-27T17:55");
    let monday = local(SANTIAGO, "2026-11-30T08:10");
    assert_eq!(office.working_ms_between(friday, monday), 15 * MINUTE);
    assert_eq!(office.deadline_after(friday, 15 * MINUTE), Some(monday));
    // Friday 17:00 + 4 working hours: 1 h on Friday, 3 h on Monday → 11:00.
    assert_eq!(
        office.deadline_after(local(SANTIAGO, "2026-11-27T17:00"), 4 * HOUR),
        Some(local(SANTIAGO, "2026-11-30T11:00"))
    );
    // A deadline that lands exactly on 18:00 is 18:00, not next morning.
    assert_eq!(
        office.deadline_after(fired, 5 * MINUTE),
        Some(local(SANTIAGO, "2026-11-23T18:00"))
    );
}

#[test]
fn a_holiday_date_has_no_coverage() {
    let with_christmas = calendar(
        "      time_zone: America/Santiago
      hours:
        - weekdays: ['monday:friday']
          times: [{start_time: '08:00', end_time: '18:00'}]
      holidays: ['2026-12-25']
",
    );
    let from = local(SANTIAGO, "2026-12-24T17:00");
    let to = local(SANTIAGO, "2026-12-28T09:00");
    // Thursday 1 h + Friday holiday 0 + weekend 0 + Monday 1 h.
    assert_eq!(with_christmas.working_ms_between(from, to), 2 * HOUR);
    // Without the holiday, Friday adds its 10 h.
    assert_eq!(santiago_office().working_ms_between(from, to), 12 * HOUR);
    assert!(!with_christmas.is_covered(local(SANTIAGO, "2026-12-25T10:00")));
    // The 17:00 alert with a 4 h target falls due on Monday at 11:00.
    assert_eq!(
        with_christmas.deadline_after(from, 4 * HOUR),
        Some(local(SANTIAGO, "2026-12-28T11:00"))
    );
}

/// Chilean holidays as a public feed writes them: CRLF, folded lines,
/// a yearly fixed-date holiday, a two-day event with an exclusive DTEND, a
/// date-time event, and lines the reader ignores.
const CHILE_ICS: &str = "BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//guardia tests//holidays//ES\r
X-WR-CALNAME:Feriados Chile\r
BEGIN:VEVENT\r
UID:anio-nuevo@example.invalid\r
DTSTART;VALUE=DATE:20260101\r
DTEND;VALUE=DATE:20260102\r
RRULE:FREQ=YEARLY\r
SUMMARY:A\r
 ño Nuevo\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:fiestas-patrias-2026@example.invalid\r
DTSTART;VALUE=DATE:20260917\r
DTEND;VALUE=DATE:20260919\r
SUMMARY:Fiestas Patrias (feriado largo)\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:elecciones-2026@example.invalid\r
DTSTART;TZID=America/Santiago:20261021T000000\r
DTEND;TZID=America/Santiago:20261022T000000\r
SUMMARY:Feriado electoral\r
END:VEVENT\r
END:VCALENDAR\r
";

#[test]
fn holidays_from_an_ics_file_next_to_the_config() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("feriados.ics"), CHILE_ICS).unwrap();
    let config_path = directory.path().join("guardia.yml");
    std::fs::write(
        &config_path,
        "sla:
  calendars:
    - name: test
      time_zone: America/Santiago
      hours:
        - weekdays: ['monday:friday']
          times: [{start_time: '08:00', end_time: '18:00'}]
      holidays_file: feriados.ics
",
    )
    .unwrap();
    let config = load_file(&config_path).unwrap();
    let sla = config.sla.unwrap();
    assert_eq!(
        sla.calendars[0].holidays_file.as_deref(),
        Some(directory.path().join("feriados.ics").as_path())
    );
    let set = PolicySet::from_config(&sla).unwrap();
    let office = set.calendar("test").unwrap();
    // Yearly New Year: Thursday 2026-12-31 17:00 → Monday 2027-01-04 09:00
    // is 1 h + (Friday holiday) + 1 h.
    assert_eq!(
        office.working_ms_between(
            local(SANTIAGO, "2026-12-31T17:00"),
            local(SANTIAGO, "2027-01-04T09:00")
        ),
        2 * HOUR
    );
    // Thursday 17th and Friday 18th September 2026 (DTEND 19th exclusive):
    // Wednesday 17:00 → Monday 09:00 is 1 h + 1 h.
    assert_eq!(
        office.working_ms_between(
            local(SANTIAGO, "2026-09-16T17:00"),
            local(SANTIAGO, "2026-09-21T09:00")
        ),
        2 * HOUR
    );
    // The date-time event marks its day, Wednesday 2026-10-21, only.
    assert!(!office.is_covered(local(SANTIAGO, "2026-10-21T10:00")));
    assert!(office.is_covered(local(SANTIAGO, "2026-10-22T10:00")));
}

#[test]
fn a_missing_or_bad_holidays_file_is_an_error_naming_it() {
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("guardia.yml");
    let yaml = "sla:
  calendars:
    - name: test
      time_zone: America/Santiago
      holidays_file: feriados.ics
";
    std::fs::write(&config_path, yaml).unwrap();
    let sla = load_file(&config_path).unwrap().sla.unwrap();
    let error = PolicySet::from_config(&sla).unwrap_err().to_string();
    assert!(error.contains("feriados.ics"), "{error}");
    std::fs::write(
        directory.path().join("feriados.ics"),
        "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20261345\nEND:VEVENT\nEND:VCALENDAR\n",
    )
    .unwrap();
    let error = PolicySet::from_config(&sla).unwrap_err().to_string();
    assert!(
        error.contains("line 3") && error.contains("20261345"),
        "{error}"
    );
}

/// The zone's transitions in 2026 and 2027 as jiff's database has them.
fn transitions(zone: &str) -> Vec<String> {
    let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
    let end: jiff::Timestamp = "2028-01-01T00:00:00Z".parse().unwrap();
    TimeZone::get(zone)
        .unwrap()
        .following(start)
        .take_while(|transition| transition.timestamp() < end)
        .map(|transition| transition.timestamp().to_string())
        .collect()
}

#[test]
fn the_dst_dates_used_below_are_the_zones_real_ones() {
    // Santiago: summer time ends the first Saturday of April at 24:00
    // (-03 → -04, Saturday 23:00–24:00 repeats) and starts the first
    // Saturday of September at 24:00 (-04 → -03, Sunday 00:00–01:00 skipped).
    assert_eq!(
        transitions(SANTIAGO),
        [
            "2026-04-05T03:00:00Z",
            "2026-09-06T04:00:00Z",
            "2027-04-04T03:00:00Z",
            "2027-09-05T04:00:00Z"
        ]
    );
    // Berlin: last Sunday of March 02:00 → 03:00, last Sunday of October
    // 03:00 → 02:00.
    assert_eq!(
        transitions(BERLIN),
        [
            "2026-03-29T01:00:00Z",
            "2026-10-25T01:00:00Z",
            "2027-03-28T01:00:00Z",
            "2027-10-31T01:00:00Z"
        ]
    );
}

/// (calendar zone, daily start, end, range from, range to (UTC), covered ms)
type DstCase = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    i64,
);

const DST_CASES: &[DstCase] = &[
    // Santiago 2026-09-06: local 00:00–01:00 does not exist, so 00:00–06:00
    // covers 01:00-03 (04:00Z) → 06:00-03 (09:00Z) = 5 h. The range is the
    // whole of Sunday (Saturday 12:00Z .. Sunday 20:00Z).
    (
        SANTIAGO,
        "00:00",
        "06:00",
        "2026-09-05T12:00:00Z",
        "2026-09-06T20:00:00Z",
        5 * HOUR,
    ),
    // The night before: Saturday 22:00-04 (02:00Z) → end of Saturday, which
    // is Sunday's first instant 01:00-03 (04:00Z) = 2 h.
    (
        SANTIAGO,
        "22:00",
        "24:00",
        "2026-09-05T12:00:00Z",
        "2026-09-06T20:00:00Z",
        2 * HOUR,
    ),
    // Santiago 2026-04-04/05: Saturday 22:00-03 (01:00Z) → Sunday 00:00-04
    // (04:00Z) = 3 h, the repeated 23:00–24:00 counted twice as it happens.
    (
        SANTIAGO,
        "22:00",
        "24:00",
        "2026-04-04T12:00:00Z",
        "2026-04-05T20:00:00Z",
        3 * HOUR,
    ),
    // Sunday 00:00-04 (04:00Z) → 06:00-04 (10:00Z) = 6 h.
    (
        SANTIAGO,
        "00:00",
        "06:00",
        "2026-04-04T12:00:00Z",
        "2026-04-05T20:00:00Z",
        6 * HOUR,
    ),
    // Office hours on the transition Sunday are unaffected: 10 h.
    (
        SANTIAGO,
        "08:00",
        "18:00",
        "2026-09-06T00:00:00Z",
        "2026-09-07T00:00:00Z",
        10 * HOUR,
    ),
    // 2027: the same shapes on 2027-09-04/05 and 2027-04-03/04.
    (
        SANTIAGO,
        "00:00",
        "06:00",
        "2027-09-04T12:00:00Z",
        "2027-09-05T20:00:00Z",
        5 * HOUR,
    ),
    (
        SANTIAGO,
        "22:00",
        "24:00",
        "2027-09-04T12:00:00Z",
        "2027-09-05T20:00:00Z",
        2 * HOUR,
    ),
    (
        SANTIAGO,
        "22:00",
        "24:00",
        "2027-04-03T12:00:00Z",
        "2027-04-04T20:00:00Z",
        3 * HOUR,
    ),
    (
        SANTIAGO,
        "00:00",
        "06:00",
        "2027-04-03T12:00:00Z",
        "2027-04-04T20:00:00Z",
        6 * HOUR,
    ),
    // Berlin 2026-03-29: 02:00–03:00 skipped. 00:00+01 (23:00Z) → 06:00+02
    // (04:00Z) = 5 h; 01:00+01 (00:00Z) → 04:00+02 (02:00Z) = 2 h;
    // 08:00–18:00 is after the change: 10 h.
    (
        BERLIN,
        "00:00",
        "06:00",
        "2026-03-28T12:00:00Z",
        "2026-03-29T12:00:00Z",
        5 * HOUR,
    ),
    (
        BERLIN,
        "01:00",
        "04:00",
        "2026-03-28T12:00:00Z",
        "2026-03-29T12:00:00Z",
        2 * HOUR,
    ),
    (
        BERLIN,
        "08:00",
        "18:00",
        "2026-03-29T00:00:00Z",
        "2026-03-30T00:00:00Z",
        10 * HOUR,
    ),
    // Berlin 2026-10-25: 02:00–03:00 repeated. 00:00+02 (22:00Z) → 06:00+01
    // (05:00Z) = 7 h; 02:00+02 (00:00Z) → 03:00+01 (02:00Z) = 2 h.
    (
        BERLIN,
        "00:00",
        "06:00",
        "2026-10-24T12:00:00Z",
        "2026-10-25T12:00:00Z",
        7 * HOUR,
    ),
    (
        BERLIN,
        "02:00",
        "03:00",
        "2026-10-24T12:00:00Z",
        "2026-10-25T12:00:00Z",
        2 * HOUR,
    ),
    // 2027: 2027-03-28 and 2027-10-31.
    (
        BERLIN,
        "00:00",
        "06:00",
        "2027-03-27T12:00:00Z",
        "2027-03-28T12:00:00Z",
        5 * HOUR,
    ),
    (
        BERLIN,
        "01:00",
        "04:00",
        "2027-03-27T12:00:00Z",
        "2027-03-28T12:00:00Z",
        2 * HOUR,
    ),
    (
        BERLIN,
        "00:00",
        "06:00",
        "2027-10-30T12:00:00Z",
        "2027-10-31T12:00:00Z",
        7 * HOUR,
    ),
    (
        BERLIN,
        "02:00",
        "03:00",
        "2027-10-30T12:00:00Z",
        "2027-10-31T12:00:00Z",
        2 * HOUR,
    ),
];

#[test]
fn dst_days_count_the_time_that_really_elapses() {
    for &(zone, start, end, from, to, expected) in DST_CASES {
        let daily_calendar = daily(zone, start, end);
        let (from, to) = (utc(from), utc(to));
        assert_eq!(
            daily_calendar.working_ms_between(from, to),
            expected,
            "{zone} {start}-{end} over {from}..{to}"
        );
        // The deadline of the whole covered amount is the end of coverage
        // inside the range, and one millisecond less ends inside it.
        let deadline = daily_calendar.deadline_after(from, expected).unwrap();
        assert!(deadline <= to);
        assert_eq!(daily_calendar.working_ms_between(from, deadline), expected);
    }
}

#[test]
fn repeated_and_skipped_hours_are_covered_as_alertmanager_would() {
    let repeated_hour = daily(BERLIN, "02:00", "03:00");
    // 00:30Z is 02:30+02, 01:30Z is 02:30+01: both covered; 02:30Z is 03:30+01.
    assert!(repeated_hour.is_covered(utc("2026-10-25T00:30:00Z")));
    assert!(repeated_hour.is_covered(utc("2026-10-25T01:30:00Z")));
    assert!(!repeated_hour.is_covered(utc("2026-10-25T02:30:00Z")));
    // On the spring day there is no 02:xx at all.
    assert!(!repeated_hour.is_covered(utc("2026-03-29T00:59:59.999Z")));
    assert!(!repeated_hour.is_covered(utc("2026-03-29T01:00:00Z")));
    let santiago_late = daily(SANTIAGO, "22:00", "24:00");
    // 02:30Z = 23:30-03 and 03:30Z = 23:30-04 (the repeated hour).
    assert!(santiago_late.is_covered(utc("2026-04-05T02:30:00Z")));
    assert!(santiago_late.is_covered(utc("2026-04-05T03:30:00Z")));
    assert!(!santiago_late.is_covered(utc("2026-04-05T04:00:00Z")));
}

#[test]
fn next_transition_skips_midnight_inside_continuous_coverage() {
    let office = santiago_office();
    assert_eq!(
        office.next_transition(local(SANTIAGO, "2026-11-27T18:00")),
        Some(local(SANTIAGO, "2026-11-30T08:00"))
    );
    assert_eq!(
        office.next_transition(local(SANTIAGO, "2026-11-30T08:00")),
        Some(local(SANTIAGO, "2026-11-30T18:00"))
    );
    assert_eq!(
        office.next_transition(local(SANTIAGO, "2026-11-30T07:59")),
        Some(local(SANTIAGO, "2026-11-30T08:00"))
    );
    let weekdays_all_day = calendar(
        "      time_zone: Europe/Berlin
      hours:
        - weekdays: ['monday:friday']
",
    );
    // Monday 10:00 → coverage runs to Saturday 00:00 without a break.
    assert_eq!(
        weekdays_all_day.next_transition(local(BERLIN, "2026-11-23T10:00")),
        Some(local(BERLIN, "2026-11-28T00:00"))
    );
    assert_eq!(
        weekdays_all_day.next_transition(local(BERLIN, "2026-11-28T00:00")),
        Some(local(BERLIN, "2026-11-30T00:00"))
    );
    assert_eq!(Calendar::always().next_transition(0), None);
}

#[test]
fn a_calendar_without_future_coverage_has_no_deadline() {
    let past_only = calendar(
        "      time_zone: UTC
      hours:
        - years: ['2020']
",
    );
    let now = utc("2026-11-24T00:00:00Z");
    assert_eq!(past_only.deadline_after(now, HOUR), None);
    assert_eq!(past_only.next_transition(now), None);
    assert_eq!(past_only.working_ms_between(now, now + 400 * 24 * HOUR), 0);
    // Coverage far ahead is still found within the two-year horizon.
    let next_year = calendar(
        "      time_zone: UTC
      hours:
        - years: ['2028']
",
    );
    assert_eq!(
        next_year.deadline_after(now, HOUR),
        Some(utc("2028-01-01T01:00:00Z"))
    );
}

#[test]
fn always_is_wall_time() {
    let always = Calendar::always();
    assert_eq!(always.name(), "24x7");
    assert!(always.is_covered(0));
    assert_eq!(always.working_ms_between(1_000, 61_000), 60_000);
    assert_eq!(always.deadline_after(1_000, 60_000), Some(61_000));
    assert_eq!(always.deadline_after(i64::MAX - 1, 60_000), None);
}

#[test]
fn policies_match_in_order_and_carry_their_calendar() {
    let config = parse_config(
        r#"
notifications:
  route: {receiver: oncall-primary}
  receivers:
    - name: oncall-primary
      webhook_configs: [{url: 'http://127.0.0.1:9/oncall-primary'}]
    - name: oncall-secondary
      webhook_configs: [{url: 'http://127.0.0.1:9/oncall-secondary'}]
    - name: support-lead
      webhook_configs: [{url: 'http://127.0.0.1:9/support-lead'}]
sla:
  calendars:
    - name: office
      time_zone: America/Santiago
      hours:
        - weekdays: ['monday:friday']
          times: [{start_time: '08:00', end_time: '18:00'}]
  policies:
    - name: database-critical
      matchers: ['layer="database"', 'severity="critical"']
      calendar: 24x7
      acknowledge_within: 15m
      resolve_within: 4h
      acknowledge_timeout: 1h
      outside_hours: page
      group_by: [alertname, instance]
      escalation:
        - {after: 0s, receiver: oncall-primary}
        - {after: 10m, receiver: oncall-secondary}
        - {after: 30m, receiver: support-lead, repeat: 3}
    - name: web
      matchers: ['layer=~"web|app"']
      calendar: office
      acknowledge_within: 4h
      resolve_within: 2d
"#,
    )
    .unwrap();
    let sla = config.sla.unwrap();
    assert_eq!(
        sla.receiver_names(),
        ["oncall-primary", "oncall-secondary", "support-lead"]
    );
    let set = PolicySet::from_config(&sla).unwrap();
    let critical = Labels::from_pairs([("layer", "database"), ("severity", "critical")]);
    let policy = set.policy_for(&critical).unwrap();
    assert_eq!(policy.name, "database-critical");
    assert!(policy.calendar.is_always());
    assert_eq!(policy.acknowledge_within_ms, 15 * MINUTE);
    assert_eq!(policy.acknowledge_timeout_ms, Some(HOUR));
    assert_eq!(policy.outside_hours, OutsideHours::Page);
    assert_eq!(policy.escalation.len(), 3);
    assert_eq!(policy.escalation[1].after_ms, 10 * MINUTE);
    assert_eq!(policy.escalation[2].repeat, 3);
    // The repeating last tier keeps the 20 min gap to the tier before it.
    assert_eq!(policy.escalation[2].repeat_interval_ms, 20 * MINUTE);
    let warning = Labels::from_pairs([("layer", "database"), ("severity", "warning")]);
    assert!(set.policy_for(&warning).is_none());
    let web = set
        .policy_for(&Labels::from_pairs([("layer", "app")]))
        .unwrap();
    assert_eq!(web.name, "web");
    assert_eq!(web.calendar.name(), "office");
    assert_eq!(web.outside_hours, OutsideHours::Notify);
    assert!(web.escalation.is_empty());
    assert!(Arc::ptr_eq(&web.calendar, set.calendar("office").unwrap()));
    assert_eq!(set.policies().len(), 2);
    assert!(set.policy("web").is_some() && set.policy("nope").is_none());
}

#[test]
fn the_example_configuration_parses_and_builds() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/sla.yml");
    let config = load_file(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
    let sla = config.sla.expect("sla section");
    let set = PolicySet::from_config(&sla).unwrap();
    let database = set
        .policy_for(&Labels::from_pairs([
            ("alertname", "PostgresDown"),
            ("layer", "database"),
            ("severity", "critical"),
        ]))
        .unwrap();
    assert_eq!(database.acknowledge_within_ms, 15 * MINUTE);
    assert!(database.calendar.is_always());
    assert_eq!(database.escalation.len(), 2);
    let web = set
        .policy_for(&Labels::from_pairs([
            ("layer", "web"),
            ("severity", "critical"),
        ]))
        .unwrap();
    assert_eq!(web.acknowledge_within_ms, 4 * HOUR);
    assert!(!web.calendar.is_always());
    let host = set
        .policy_for(&Labels::from_pairs([
            ("layer", "host"),
            ("severity", "warning"),
        ]))
        .unwrap();
    assert_eq!(host.outside_hours, OutsideHours::None);
    assert!(host.escalation.is_empty());
    assert_eq!(sla.heartbeats.len(), 1);
}

fn office_with_holidays() -> Calendar {
    calendar(
        "      time_zone: America/Santiago
      hours:
        - weekdays: ['monday:friday']
          times: [{start_time: '08:00', end_time: '13:00'}, {start_time: '14:00', end_time: '18:00'}]
        - weekdays: ['saturday']
          times: [{start_time: '09:00', end_time: '12:00'}]
      holidays: ['2026-12-25', '2027-01-01', '2027-04-02', '2027-09-17']
",
    )
}

/// 2026-01-01 .. 2028-01-01: both years' DST changes in both zones.
const PROPERTY_FROM: i64 = 1_767_225_600_000;
const PROPERTY_SPAN: i64 = 730 * 24 * HOUR;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn deadline_after_inverts_working_ms_between(
        offset in 0..PROPERTY_SPAN,
        working in 0..(120 * 24 * HOUR),
    ) {
        for calendar in [office_with_holidays(), daily(BERLIN, "01:30", "02:30"), daily(SANTIAGO, "23:00", "24:00")] {
            let from = PROPERTY_FROM + offset;
            let deadline = calendar.deadline_after(from, working).unwrap();
            prop_assert_eq!(calendar.working_ms_between(from, deadline), working);
            // And it is the earliest such instant.
            if working > 0 {
                prop_assert_eq!(calendar.working_ms_between(from, deadline - 1), working - 1);
            }
        }
    }

    #[test]
    fn is_covered_agrees_with_the_time_interval_and_with_working_time(
        offset in 0..PROPERTY_SPAN,
    ) {
        let instant = PROPERTY_FROM + offset;
        for (zone, start, end) in [
            (BERLIN, "01:30", "02:30"),
            (BERLIN, "02:00", "03:00"),
            (SANTIAGO, "23:00", "24:00"),
            (SANTIAGO, "00:00", "00:30"),
        ] {
            let text = format!(
                "{{times: [{{start_time: '{start}', end_time: '{end}'}}], location: {zone}}}"
            );
            let interval: guardia::config::time_interval::TimeInterval =
                serde_saphyr::from_str(&text).unwrap();
            let calendar = daily(zone, start, end);
            prop_assert_eq!(calendar.is_covered(instant), interval.contains(instant), "{} {}-{}", zone, start, end);
            prop_assert_eq!(
                calendar.working_ms_between(instant, instant + 1) == 1,
                calendar.is_covered(instant)
            );
        }
    }
}

/// Exit code and output of `guardia check config PATH`.
fn check_config(path: &std::path::Path) -> (i32, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_guardia"))
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
fn check_config_accepts_the_example_and_names_a_bad_holidays_file() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config/sla.yml");
    let (code, text) = check_config(&example);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("SUCCESS"), "{text}");
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("guardia.yml");
    std::fs::write(
        &config_path,
        "sla:\n  calendars:\n    - name: office\n      time_zone: America/Santiago\n      holidays_file: feriados.ics\n",
    )
    .unwrap();
    let (code, text) = check_config(&config_path);
    assert_eq!(code, 1, "{text}");
    assert!(
        text.contains("FAILED") && text.contains("feriados.ics"),
        "{text}"
    );
    std::fs::write(
        &config_path,
        "sla:\n  calendars:\n    - name: office\n      time_zone: Europe/Berlín\n",
    )
    .unwrap();
    let (code, text) = check_config(&config_path);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("Europe/Berlín"), "{text}");
}
