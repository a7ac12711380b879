//! Fuzzes the `sla:` section and the calendar math behind it: the first 16
//! bytes are an instant and an amount of working time, the rest a
//! configuration. Any text must parse or fail without a panic; every
//! calendar it builds must answer every question without a panic, and
//! `deadline_after` must invert `working_ms_between`.
#![no_main]

use guardia::config::file::parse_config;
use guardia::sla::policy::PolicySet;
use libfuzzer_sys::fuzz_target;

/// Keeps instants within 1900..2100 and spans within a year, so one input
/// runs in milliseconds.
const SPAN_MS: i64 = 200 * 365 * 86_400_000;
const START_MS: i64 = -2_208_988_800_000;
const MAX_WORKING_MS: i64 = 365 * 86_400_000;

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() < 16 {
        return;
    }
    let (numbers, rest) = bytes.split_at(16);
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let mut first = [0u8; 8];
    first.copy_from_slice(&numbers[..8]);
    let mut second = [0u8; 8];
    second.copy_from_slice(&numbers[8..]);
    let from = START_MS + i64::from_le_bytes(first).rem_euclid(SPAN_MS);
    let working = i64::from_le_bytes(second).rem_euclid(MAX_WORKING_MS);
    let Ok(config) = parse_config(text) else {
        return;
    };
    let Some(mut sla) = config.sla else {
        return;
    };
    // Holiday files would be read from the fuzzing machine's disk.
    for calendar in &mut sla.calendars {
        calendar.holidays_file = None;
    }
    let _ = sla.receiver_names();
    let Ok(set) = PolicySet::from_config(&sla) else {
        return;
    };
    for policy in set.policies() {
        let calendar = &policy.calendar;
        let _ = calendar.is_covered(from);
        let _ = calendar.next_transition(from);
        let covered = calendar.working_ms_between(from, from + working);
        assert!((0..=working).contains(&covered));
        if let Some(deadline) = calendar.deadline_after(from, working) {
            assert_eq!(calendar.working_ms_between(from, deadline), working);
        }
    }
});
