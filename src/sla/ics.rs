//! A small reader for holiday calendars in iCalendar (RFC 5545) form, as
//! public holiday feeds publish them. It takes from each `VEVENT` its
//! `DTSTART` (a `VALUE=DATE` date, or a date-time whose date is taken as
//! written), its `DTEND` (exclusive, so multi-day holidays cover
//! `[DTSTART, DTEND)`), and an `RRULE` with `FREQ=YEARLY` (optionally
//! `INTERVAL`, `COUNT`, `UNTIL`) for fixed-date holidays, expanded up to
//! [`YEARLY_EXPANSION_FIRST_YEAR`]..=[`YEARLY_EXPANSION_LAST_YEAR`]. Every other line is ignored. Folded lines
//! (continuations that start with a space or tab) are unfolded first.
//!
//! This routine never panics on any input: the `ics_holidays` fuzz target
//! checks it.

use std::collections::BTreeSet;

use jiff::civil::Date;

/// Yearly holidays are expanded up to this year; contracts are not signed
/// for longer.
pub const YEARLY_EXPANSION_LAST_YEAR: i16 = 2100;

/// Yearly holidays are expanded from this year on (earlier occurrences
/// cannot matter to a clock, and a garbage year 0 must not cost memory).
pub const YEARLY_EXPANSION_FIRST_YEAR: i16 = 1970;

/// A multi-day event longer than this is taken as a mistake (a feed that
/// lists a whole season), not as holidays.
pub const MAX_EVENT_DAYS: i32 = 366;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IcsError {
    #[error("line {line}: {property} value {value:?} is not a date (YYYYMMDD)")]
    BadDate {
        line: usize,
        property: String,
        value: String,
    },
    #[error("line {line}: event without DTSTART")]
    MissingStart { line: usize },
    #[error("line {line}: DTEND is before DTSTART")]
    EndBeforeStart { line: usize },
    #[error("line {line}: event longer than {MAX_EVENT_DAYS} days")]
    EventTooLong { line: usize },
    #[error("line {line}: bad RRULE {value:?}: {reason}")]
    BadRecurrence {
        line: usize,
        value: String,
        reason: String,
    },
    #[error("no BEGIN:VCALENDAR: not an iCalendar file")]
    NotCalendar,
}

#[derive(Default)]
struct EventInProgress {
    begin_line: usize,
    start: Option<(Date, bool)>,
    end: Option<Date>,
    yearly: Option<YearlyRule>,
}

#[derive(Debug, Clone, Copy)]
struct YearlyRule {
    interval: i16,
    count: Option<u32>,
    until: Option<Date>,
}

/// Reads every holiday date of an iCalendar text.
pub fn parse_holidays(text: &str) -> Result<BTreeSet<Date>, IcsError> {
    let mut holidays = BTreeSet::new();
    let mut event: Option<EventInProgress> = None;
    let mut saw_calendar = false;
    for (line_number, line) in unfolded_lines(text) {
        let Some((name_and_parameters, value)) = line.split_once(':') else {
            continue;
        };
        let mut parameters = name_and_parameters.split(';');
        let name = parameters.next().unwrap_or_default().to_ascii_uppercase();
        let value = value.trim();
        match name.as_str() {
            "BEGIN" if value.eq_ignore_ascii_case("VCALENDAR") => saw_calendar = true,
            "BEGIN" if value.eq_ignore_ascii_case("VEVENT") => {
                event = Some(EventInProgress {
                    begin_line: line_number,
                    ..EventInProgress::default()
                });
            }
            "END" if value.eq_ignore_ascii_case("VEVENT") => {
                if let Some(finished) = event.take() {
                    add_event(&finished, &mut holidays)?;
                }
            }
            "DTSTART" | "DTEND" => {
                let Some(current) = event.as_mut() else {
                    continue;
                };
                let is_date_only = value.len() == 8;
                let date = parse_ics_date(value).ok_or_else(|| IcsError::BadDate {
                    line: line_number,
                    property: name.clone(),
                    value: value.to_string(),
                })?;
                if name == "DTSTART" {
                    current.start = Some((date, is_date_only));
                } else {
                    current.end = Some(date);
                }
            }
            "RRULE" => {
                if let Some(current) = event.as_mut() {
                    current.yearly = parse_yearly_rule(value, line_number)?;
                }
            }
            _ => {}
        }
    }
    if !saw_calendar {
        return Err(IcsError::NotCalendar);
    }
    Ok(holidays)
}

/// Joins RFC 5545 folded lines; yields (1-based number of the first physical line, text).
fn unfolded_lines(text: &str) -> Vec<(usize, String)> {
    let mut lines: Vec<(usize, String)> = Vec::new();
    for (index, physical) in text.lines().enumerate() {
        let physical = physical.strip_suffix('\r').unwrap_or(physical);
        if let Some(continuation) = physical
            .strip_prefix(' ')
            .or_else(|| physical.strip_prefix('\t'))
            && let Some((_, last)) = lines.last_mut()
        {
            last.push_str(continuation);
            continue;
        }
        lines.push((index + 1, physical.to_string()));
    }
    lines
}

/// `YYYYMMDD`, optionally followed by `T...` (a date-time: its written date).
fn parse_ics_date(value: &str) -> Option<Date> {
    let digits = value.get(..8)?;
    let rest = value.get(8..)?;
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    if !rest.is_empty() && !rest.starts_with('T') {
        return None;
    }
    let year: i16 = digits.get(..4)?.parse().ok()?;
    let month: i8 = digits.get(4..6)?.parse().ok()?;
    let day: i8 = digits.get(6..8)?.parse().ok()?;
    Date::new(year, month, day).ok()
}

fn parse_yearly_rule(value: &str, line: usize) -> Result<Option<YearlyRule>, IcsError> {
    let bad = |reason: &str| IcsError::BadRecurrence {
        line,
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let mut frequency = None;
    let mut rule = YearlyRule {
        interval: 1,
        count: None,
        until: None,
    };
    for part in value.split(';') {
        let Some((key, part_value)) = part.split_once('=') else {
            continue;
        };
        match key.to_ascii_uppercase().as_str() {
            "FREQ" => frequency = Some(part_value.to_ascii_uppercase()),
            "INTERVAL" => {
                rule.interval = part_value
                    .parse::<i16>()
                    .ok()
                    .filter(|interval| *interval > 0)
                    .ok_or_else(|| bad("INTERVAL must be a positive number"))?;
            }
            "COUNT" => {
                rule.count = Some(
                    part_value
                        .parse::<u32>()
                        .map_err(|_| bad("COUNT must be a number"))?,
                );
            }
            "UNTIL" => {
                rule.until =
                    Some(parse_ics_date(part_value).ok_or_else(|| bad("UNTIL is not a date"))?);
            }
            "BYDAY" | "BYWEEKNO" | "BYYEARDAY" | "BYSETPOS" => {
                // Floating holidays ("fourth Thursday of November") need a
                // recurrence engine; such a feed should list each date.
                return Err(bad(
                    "only fixed-date yearly rules are read; list moving holidays as dates",
                ));
            }
            _ => {}
        }
    }
    match frequency.as_deref() {
        Some("YEARLY") => Ok(Some(rule)),
        Some(_) => Err(bad("only FREQ=YEARLY is read")),
        None => Err(bad("no FREQ")),
    }
}

fn add_event(event: &EventInProgress, holidays: &mut BTreeSet<Date>) -> Result<(), IcsError> {
    let line = event.begin_line;
    let Some((start, is_date_only)) = event.start else {
        return Err(IcsError::MissingStart { line });
    };
    // A date-time event marks the day it starts on; a date event runs to its
    // exclusive DTEND (one day when absent).
    let length_days: i32 = match event.end {
        Some(end) if is_date_only => {
            let days = days_between(start, end);
            if days < 0 {
                return Err(IcsError::EndBeforeStart { line });
            }
            days.max(1)
        }
        _ => 1,
    };
    if length_days > MAX_EVENT_DAYS {
        return Err(IcsError::EventTooLong { line });
    }
    let Some(rule) = event.yearly else {
        add_days(start, length_days, holidays);
        return Ok(());
    };
    let mut occurrences: u32 = 0;
    let mut year = start.year();
    if year < YEARLY_EXPANSION_FIRST_YEAR {
        // Occurrences skipped still count towards COUNT.
        let interval = i32::from(rule.interval);
        let skipped =
            (i32::from(YEARLY_EXPANSION_FIRST_YEAR) - i32::from(year) + interval - 1) / interval;
        occurrences = u32::try_from(skipped).unwrap_or(u32::MAX);
        year = i16::try_from(i32::from(year) + skipped * interval).unwrap_or(i16::MAX);
    }
    while year <= YEARLY_EXPANSION_LAST_YEAR {
        if rule.count.is_some_and(|count| occurrences >= count) {
            break;
        }
        // 29 February recurs only in leap years (RFC 5545 skips invalid dates).
        if let Ok(date) = Date::new(year, start.month(), start.day()) {
            if rule.until.is_some_and(|until| date > until) {
                break;
            }
            add_days(date, length_days, holidays);
            occurrences = occurrences.saturating_add(1);
        }
        let Some(next_year) = year.checked_add(rule.interval) else {
            break;
        };
        year = next_year;
    }
    Ok(())
}

fn add_days(start: Date, length_days: i32, holidays: &mut BTreeSet<Date>) {
    let mut date = start;
    for _ in 0..length_days {
        holidays.insert(date);
        match date.tomorrow() {
            Ok(next) => date = next,
            Err(_) => break,
        }
    }
}

/// Whole days from `start` to `end` (negative when `end` is earlier).
pub fn days_between(start: Date, end: Date) -> i32 {
    let days = days_from_civil(end) - days_from_civil(start);
    i32::try_from(days).unwrap_or(if days < 0 { i32::MIN } else { i32::MAX })
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(date: Date) -> i64 {
    crate::model::days_from_civil(
        i64::from(date.year()),
        i64::from(date.month()),
        i64::from(date.day()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    #[test]
    fn days_from_civil_matches_known_epochs() {
        assert_eq!(days_from_civil(date(1970, 1, 1)), 0);
        assert_eq!(days_from_civil(date(2000, 3, 1)), 11_017);
        assert_eq!(days_from_civil(date(1969, 12, 31)), -1);
        assert_eq!(days_from_civil(date(2026, 11, 24)), 20_781);
    }
}
