//! Fuzzes the ICS holiday reader: any text must give dates or an error,
//! never a panic, and the set of dates stays bounded by the number of events.
#![no_main]

use guardia::sla::ics::{
    MAX_EVENT_DAYS, YEARLY_EXPANSION_FIRST_YEAR, YEARLY_EXPANSION_LAST_YEAR, parse_holidays,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return;
    };
    if let Ok(holidays) = parse_holidays(text) {
        // Each event adds at most MAX_EVENT_DAYS days per expanded year:
        // no input can make the set grow without bound.
        // An event takes at least 20 bytes (`BEGIN:VEVENT`, a DTSTART).
        let events = text.len() / 20 + 1;
        let years = usize::try_from(YEARLY_EXPANSION_LAST_YEAR - YEARLY_EXPANSION_FIRST_YEAR + 1)
            .unwrap_or(usize::MAX);
        let most_days_per_event = usize::try_from(MAX_EVENT_DAYS).unwrap_or(usize::MAX) * years;
        assert!(holidays.len() <= events * most_days_per_event);
    }
});
