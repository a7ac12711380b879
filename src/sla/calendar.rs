//! Coverage calendars: which instants a support contract counts. A calendar
//! is either the built-in `24x7` or weekly hours in an IANA zone minus
//! holidays. All answers are computed per local civil day, never per minute:
//! a day's covered instants are the union of the `hours` entries whose date
//! fields match the day, each `[start, end)` local range mapped to instants
//! through the zone's offsets *inside that day*, so a DST change inside a
//! range counts the time that really elapsed (08:00–18:00 is 10 h on a DST
//! day unless the change falls between 08:00 and 18:00) and an instant is
//! covered exactly when Alertmanager's `ContainsTime` would say so.
//!
//! All instants are milliseconds since the epoch (`model::Timestamp`).

use std::collections::BTreeSet;
use std::path::PathBuf;

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;

use super::ics::{IcsError, days_from_civil, parse_holidays};
use crate::config::sla::{ALWAYS_CALENDAR_NAME, CalendarConfig};
use crate::config::time_interval::{TimeInterval, TimeOfDayRange, load_time_zone};
use crate::model::Timestamp;

/// Days without any coverage after which a search for the next covered
/// instant gives up (a little over two years).
pub const MAX_DAYS_WITHOUT_COVERAGE: u32 = 800;

const MILLISECONDS_PER_MINUTE: i64 = 60_000;
const MILLISECONDS_PER_DAY: i64 = 86_400_000;

#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("calendar {calendar:?}: cannot read holidays file {path}: {reason}")]
    ReadHolidays {
        calendar: String,
        path: PathBuf,
        reason: String,
    },
    #[error("calendar {calendar:?}: holidays file {path}: {source}")]
    Holidays {
        calendar: String,
        path: PathBuf,
        #[source]
        source: IcsError,
    },
    #[error("calendar {calendar:?}: {reason}")]
    TimeZone { calendar: String, reason: String },
}

/// A coverage calendar, ready to answer time questions.
#[derive(Debug, Clone)]
pub struct Calendar {
    name: String,
    coverage: Coverage,
}

#[derive(Debug, Clone)]
enum Coverage {
    Always,
    Weekly(WeeklyCoverage),
}

#[derive(Debug, Clone)]
struct WeeklyCoverage {
    time_zone: TimeZone,
    /// Empty means the whole of every day.
    hours: Vec<TimeInterval>,
    holidays: BTreeSet<Date>,
}

/// A half-open interval of covered instants `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoveredInterval {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Calendar {
    /// The built-in `24x7` calendar.
    pub fn always() -> Calendar {
        Calendar {
            name: ALWAYS_CALENDAR_NAME.to_string(),
            coverage: Coverage::Always,
        }
    }

    /// Builds a calendar from its configuration, reading its holidays file.
    pub fn from_config(config: &CalendarConfig) -> Result<Calendar, CalendarError> {
        let mut holidays: BTreeSet<Date> = config.holidays.iter().copied().collect();
        if let Some(path) = &config.holidays_file {
            let text =
                std::fs::read_to_string(path).map_err(|error| CalendarError::ReadHolidays {
                    calendar: config.name.clone(),
                    path: path.clone(),
                    reason: error.to_string(),
                })?;
            let from_file = parse_holidays(&text).map_err(|source| CalendarError::Holidays {
                calendar: config.name.clone(),
                path: path.clone(),
                source,
            })?;
            holidays.extend(from_file);
        }
        Calendar::weekly(
            &config.name,
            &config.time_zone,
            config.hours.clone(),
            holidays,
        )
    }

    /// A calendar of weekly hours in `time_zone` minus `holidays`; each
    /// `hours` entry is read in `time_zone` whatever its own location.
    pub fn weekly(
        name: &str,
        time_zone: &str,
        hours: Vec<TimeInterval>,
        holidays: BTreeSet<Date>,
    ) -> Result<Calendar, CalendarError> {
        let zone_error =
            |error: crate::config::time_interval::TimeIntervalError| CalendarError::TimeZone {
                calendar: name.to_string(),
                reason: error.to_string(),
            };
        let zone = load_time_zone(time_zone).map_err(zone_error)?;
        let hours = hours
            .into_iter()
            .map(|interval| interval.with_location(time_zone))
            .collect::<Result<Vec<_>, _>>()
            .map_err(zone_error)?;
        Ok(Calendar {
            name: name.to_string(),
            coverage: Coverage::Weekly(WeeklyCoverage {
                time_zone: zone,
                hours,
                holidays,
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for the built-in `24x7` calendar.
    pub fn is_always(&self) -> bool {
        matches!(self.coverage, Coverage::Always)
    }

    /// Whether the instant counts on this calendar.
    pub fn is_covered(&self, timestamp: Timestamp) -> bool {
        match &self.coverage {
            Coverage::Always => true,
            Coverage::Weekly(weekly) => {
                let Some(date) = weekly.local_date(timestamp) else {
                    return false;
                };
                let mut intervals = Vec::new();
                weekly.covered_intervals_of_day(date, &mut intervals);
                intervals
                    .iter()
                    .any(|interval| interval.start <= timestamp && timestamp < interval.end)
            }
        }
    }

    /// Covered milliseconds in `[from, to)` (0 when `to <= from`).
    pub fn working_ms_between(&self, from: Timestamp, to: Timestamp) -> i64 {
        if to <= from {
            return 0;
        }
        match &self.coverage {
            Coverage::Always => to.saturating_sub(from),
            Coverage::Weekly(weekly) => {
                let mut total: i64 = 0;
                for interval in weekly.covered_intervals_from(from, None).until(to) {
                    if interval.start >= to {
                        break;
                    }
                    let start = interval.start.max(from);
                    let end = interval.end.min(to);
                    if end > start {
                        total = total.saturating_add(end - start);
                    }
                }
                total
            }
        }
    }

    /// The instant at which `working_ms` covered milliseconds have passed
    /// since `from` (a target's deadline); `from` itself for 0 or less;
    /// `None` when the calendar has no coverage within about two years.
    pub fn deadline_after(&self, from: Timestamp, working_ms: i64) -> Option<Timestamp> {
        if working_ms <= 0 {
            return Some(from);
        }
        match &self.coverage {
            Coverage::Always => from.checked_add(working_ms),
            Coverage::Weekly(weekly) => {
                let mut remaining = working_ms;
                for interval in weekly.covered_intervals_from(from, Some(MAX_DAYS_WITHOUT_COVERAGE))
                {
                    let start = interval.start.max(from);
                    let length = interval.end - start;
                    if length <= 0 {
                        continue;
                    }
                    if remaining <= length {
                        return Some(start + remaining);
                    }
                    remaining -= length;
                }
                None
            }
        }
    }

    /// The next instant after `timestamp` at which coverage starts or stops
    /// (for scheduling wake-ups); `None` for `24x7` and when nothing changes
    /// within about two years.
    pub fn next_transition(&self, timestamp: Timestamp) -> Option<Timestamp> {
        let Coverage::Weekly(weekly) = &self.coverage else {
            return None;
        };
        // Intervals of consecutive days that touch (a range ending at 24:00
        // and the next day's starting at 00:00) are one stretch of coverage:
        // midnight is no transition there.
        let mut pending: Option<CoveredInterval> = None;
        for interval in weekly.covered_intervals_from(timestamp, Some(MAX_DAYS_WITHOUT_COVERAGE)) {
            match pending {
                Some(current) if current.end == interval.start => {
                    pending = Some(CoveredInterval {
                        start: current.start,
                        end: interval.end,
                    });
                    continue;
                }
                Some(current) => {
                    if let Some(found) = first_boundary_after(current, timestamp) {
                        return Some(found);
                    }
                }
                None => {}
            }
            pending = Some(interval);
        }
        pending.and_then(|current| first_boundary_after(current, timestamp))
    }

    /// The covered intervals that intersect `[from, to)`, clipped to it, in
    /// order, touching intervals merged. For reports and charts.
    pub fn covered_intervals_between(
        &self,
        from: Timestamp,
        to: Timestamp,
    ) -> Vec<CoveredInterval> {
        if to <= from {
            return Vec::new();
        }
        let Coverage::Weekly(weekly) = &self.coverage else {
            return vec![CoveredInterval {
                start: from,
                end: to,
            }];
        };
        let mut merged: Vec<CoveredInterval> = Vec::new();
        for interval in weekly.covered_intervals_from(from, None).until(to) {
            if interval.start >= to {
                break;
            }
            let clipped = CoveredInterval {
                start: interval.start.max(from),
                end: interval.end.min(to),
            };
            if clipped.end <= clipped.start {
                continue;
            }
            match merged.last_mut() {
                Some(last) if last.end == clipped.start => last.end = clipped.end,
                _ => merged.push(clipped),
            }
        }
        merged
    }
}

fn first_boundary_after(interval: CoveredInterval, timestamp: Timestamp) -> Option<Timestamp> {
    if interval.start > timestamp {
        Some(interval.start)
    } else if interval.end > timestamp {
        Some(interval.end)
    } else {
        None
    }
}

impl WeeklyCoverage {
    fn local_date(&self, timestamp: Timestamp) -> Option<Date> {
        let instant = jiff::Timestamp::from_millisecond(timestamp).ok()?;
        Some(self.time_zone.to_datetime(instant).date())
    }

    /// The first instant of a local day (later than midnight when midnight
    /// falls in a DST gap).
    fn start_of_day(&self, date: Date) -> Option<Timestamp> {
        let midnight = DateTime::from_parts(date, Time::midnight());
        self.time_zone
            .to_ambiguous_timestamp(midnight)
            .compatible()
            .ok()
            .map(|instant| instant.as_millisecond())
    }

    fn offset_ms(&self, timestamp: Timestamp) -> i64 {
        match jiff::Timestamp::from_millisecond(timestamp) {
            Ok(instant) => i64::from(self.time_zone.to_offset(instant).seconds()) * 1000,
            Err(_) => 0,
        }
    }

    /// Appends the covered instants of one local day, in order, touching
    /// pieces merged.
    fn covered_intervals_of_day(&self, date: Date, intervals: &mut Vec<CoveredInterval>) {
        if self.holidays.contains(&date) {
            return;
        }
        let mut minute_ranges: Vec<TimeOfDayRange> = Vec::new();
        if self.hours.is_empty() {
            minute_ranges.push(TimeOfDayRange {
                start_minute: 0,
                end_minute: crate::config::time_interval::MINUTES_PER_DAY,
            });
        }
        for interval in &self.hours {
            if interval.date_matches(date) {
                minute_ranges.extend(interval.minute_ranges());
            }
        }
        if minute_ranges.is_empty() {
            return;
        }
        minute_ranges.sort_unstable();
        let Some(day_start) = self.start_of_day(date) else {
            return;
        };
        let day_end = match date
            .tomorrow()
            .ok()
            .and_then(|next| self.start_of_day(next))
        {
            Some(end) => end,
            None => return,
        };
        // Local wall time is instant + offset; the offset is constant
        // between the zone's transitions, so split the day at them.
        let civil_midnight_ms = days_from_civil(date) * MILLISECONDS_PER_DAY;
        let mut segment_start = day_start;
        let segment_ends: Vec<Timestamp> = self.transitions_within(day_start, day_end);
        for segment_end in segment_ends.into_iter().chain(std::iter::once(day_end)) {
            let offset = self.offset_ms(segment_start);
            for range in &minute_ranges {
                let start = civil_midnight_ms
                    + i64::from(range.start_minute) * MILLISECONDS_PER_MINUTE
                    - offset;
                let end = civil_midnight_ms + i64::from(range.end_minute) * MILLISECONDS_PER_MINUTE
                    - offset;
                let start = start.max(segment_start);
                let end = end.min(segment_end);
                if end <= start {
                    continue;
                }
                match intervals.last_mut() {
                    Some(last) if last.end >= start => last.end = last.end.max(end),
                    _ => intervals.push(CoveredInterval { start, end }),
                }
            }
            segment_start = segment_end;
        }
    }

    /// Zone transitions strictly inside `(day_start, day_end)`.
    fn transitions_within(&self, day_start: Timestamp, day_end: Timestamp) -> Vec<Timestamp> {
        // The common day: 24 h long with one offset throughout.
        if day_end - day_start == MILLISECONDS_PER_DAY
            && self.offset_ms(day_start) == self.offset_ms(day_end - 1)
        {
            return Vec::new();
        }
        let Ok(start) = jiff::Timestamp::from_millisecond(day_start) else {
            return Vec::new();
        };
        self.time_zone
            .following(start)
            .map(|transition| transition.timestamp().as_millisecond())
            .skip_while(|instant| *instant <= day_start)
            .take_while(|instant| *instant < day_end)
            .collect()
    }

    /// Covered intervals of the local days from the one holding `from`
    /// onwards, day by day. With `give_up_after_empty_days`, stops after
    /// that many consecutive days without coverage.
    fn covered_intervals_from(
        &self,
        from: Timestamp,
        give_up_after_empty_days: Option<u32>,
    ) -> CoveredIntervals<'_> {
        CoveredIntervals {
            coverage: self,
            next_date: self.local_date(from),
            buffer: Vec::new(),
            buffer_position: 0,
            empty_days: 0,
            give_up_after_empty_days,
            last_date: None,
        }
    }
}

struct CoveredIntervals<'a> {
    coverage: &'a WeeklyCoverage,
    next_date: Option<Date>,
    buffer: Vec<CoveredInterval>,
    buffer_position: usize,
    empty_days: u32,
    give_up_after_empty_days: Option<u32>,
    /// No day after this local date is looked at.
    last_date: Option<Date>,
}

impl CoveredIntervals<'_> {
    /// Stops after the local day that holds `to`.
    fn until(mut self, to: Timestamp) -> Self {
        self.last_date = self.coverage.local_date(to);
        self
    }
}

impl Iterator for CoveredIntervals<'_> {
    type Item = CoveredInterval;

    fn next(&mut self) -> Option<CoveredInterval> {
        loop {
            if let Some(interval) = self.buffer.get(self.buffer_position) {
                self.buffer_position += 1;
                return Some(*interval);
            }
            let date = self.next_date?;
            if self.last_date.is_some_and(|last| date > last) {
                return None;
            }
            if self
                .give_up_after_empty_days
                .is_some_and(|limit| self.empty_days >= limit)
            {
                return None;
            }
            self.next_date = date.tomorrow().ok();
            self.buffer.clear();
            self.buffer_position = 0;
            self.coverage
                .covered_intervals_of_day(date, &mut self.buffer);
            if self.buffer.is_empty() {
                self.empty_days += 1;
            } else {
                self.empty_days = 0;
            }
        }
    }
}
