//! Alertmanager's time interval syntax (`time_intervals:` entries and the
//! `hours:` of SLA calendars): `times`, `weekdays`, `days_of_month`,
//! `months`, `years` and `location`. Parsing is strict and checks the same
//! things Alertmanager checks (ranges in order, days of month in ±31, a
//! negative start needs a negative end, `HH:MM` with `24:00` as the only
//! hour-24 value), and a few it does not (months in 1..12, years not
//! negative, unknown IANA zones named in the message). Matching follows
//! Alertmanager's `ContainsTime`: the instant is read as local time in
//! `location` and every given field must match; an absent field matches
//! anything. Ranges are inclusive except `times`, which is `[start, end)`.

use std::fmt;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::model::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeIntervalError {
    #[error("couldn't parse time {0:?}: use HH:MM from 00:00 to 24:00")]
    BadTime(String),
    #[error("start time {start:?} must be before end time {end:?}")]
    TimesOutOfOrder { start: String, end: String },
    #[error("{0:?} is not a valid weekday")]
    BadWeekday(String),
    #[error("{0:?} is not a valid day of the month: use 1..31 or -31..-1")]
    BadDayOfMonth(String),
    #[error("{0:?} is not a valid month: use a name or 1..12")]
    BadMonth(String),
    #[error("{0:?} is not a valid year")]
    BadYear(String),
    #[error("range {0:?} ends before it starts")]
    RangeOutOfOrder(String),
    #[error("day of month range {0:?}: the end must be negative when the start is")]
    NegativeStartPositiveEnd(String),
    #[error("unknown time zone {name:?}: {reason}")]
    UnknownTimeZone { name: String, reason: String },
}

/// Minutes of the day `[start_minute, end_minute)`, `end_minute` up to 1440.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeOfDayRange {
    pub start_minute: u16,
    pub end_minute: u16,
}

/// An inclusive range of integers: weekdays (0 = Sunday .. 6), days of the
/// month (negative counts from the end, -1 = last day), months (1..12) or
/// years.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InclusiveRange {
    pub begin: i32,
    pub end: i32,
}

impl InclusiveRange {
    fn contains(&self, value: i32) -> bool {
        self.begin <= value && value <= self.end
    }
}

/// One Alertmanager time interval. `None` fields match everything.
#[derive(Clone)]
pub struct TimeInterval {
    pub times: Option<Vec<TimeOfDayRange>>,
    pub weekdays: Option<Vec<InclusiveRange>>,
    pub days_of_month: Option<Vec<InclusiveRange>>,
    pub months: Option<Vec<InclusiveRange>>,
    pub years: Option<Vec<InclusiveRange>>,
    /// The IANA name as written (`UTC` when absent).
    pub location_name: String,
    location: TimeZone,
}

impl fmt::Debug for TimeInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimeInterval")
            .field("times", &self.times)
            .field("weekdays", &self.weekdays)
            .field("days_of_month", &self.days_of_month)
            .field("months", &self.months)
            .field("years", &self.years)
            .field("location", &self.location_name)
            .finish()
    }
}

impl PartialEq for TimeInterval {
    fn eq(&self, other: &TimeInterval) -> bool {
        self.times == other.times
            && self.weekdays == other.weekdays
            && self.days_of_month == other.days_of_month
            && self.months == other.months
            && self.years == other.years
            && self.location_name == other.location_name
    }
}

/// Minutes in a civil day; `times` ranges end at most here.
pub const MINUTES_PER_DAY: u16 = 1440;

impl TimeInterval {
    /// An interval with no fields: it contains every instant.
    pub fn always() -> TimeInterval {
        TimeInterval {
            times: None,
            weekdays: None,
            days_of_month: None,
            months: None,
            years: None,
            location_name: "UTC".to_string(),
            location: TimeZone::UTC,
        }
    }

    pub fn location(&self) -> &TimeZone {
        &self.location
    }

    /// Replaces the zone the fields are read in (SLA calendars set their
    /// `time_zone` on every `hours` entry).
    pub fn with_location(mut self, name: &str) -> Result<TimeInterval, TimeIntervalError> {
        self.location = load_time_zone(name)?;
        self.location_name = name.to_string();
        Ok(self)
    }

    /// Whether the instant `timestamp` (ms since the epoch) falls inside.
    pub fn contains(&self, timestamp: Timestamp) -> bool {
        let Ok(instant) = jiff::Timestamp::from_millisecond(timestamp) else {
            return false;
        };
        let local = instant.to_zoned(self.location.clone()).datetime();
        let minute_of_day = local.hour() as u16 * 60 + local.minute() as u16;
        self.date_matches(local.date()) && self.minute_matches(minute_of_day)
    }

    /// Whether a local time of day (in minutes) is inside `times`.
    pub fn minute_matches(&self, minute_of_day: u16) -> bool {
        match &self.times {
            None => true,
            Some(ranges) => ranges.iter().any(|range| {
                range.start_minute <= minute_of_day && minute_of_day < range.end_minute
            }),
        }
    }

    /// Whether the date-level fields (weekday, day of month, month, year)
    /// all match a local civil date.
    pub fn date_matches(&self, date: Date) -> bool {
        if let Some(ranges) = &self.days_of_month {
            let days_in_month = i32::from(date.days_in_month());
            let day = i32::from(date.day());
            let matched = ranges.iter().any(|range| {
                let begin = if range.begin < 0 {
                    days_in_month + range.begin + 1
                } else {
                    range.begin
                };
                let end = if range.end < 0 {
                    days_in_month + range.end + 1
                } else {
                    range.end
                };
                // A start past the month's end (day 31 in April) selects
                // nothing, and an end past it stops at the last day, as in
                // Alertmanager.
                begin <= days_in_month && begin <= day && day <= end.min(days_in_month)
            });
            if !matched {
                return false;
            }
        }
        if let Some(ranges) = &self.months
            && !ranges
                .iter()
                .any(|range| range.contains(i32::from(date.month())))
        {
            return false;
        }
        if let Some(ranges) = &self.weekdays {
            let weekday = i32::from(date.weekday().to_sunday_zero_offset());
            if !ranges.iter().any(|range| range.contains(weekday)) {
                return false;
            }
        }
        if let Some(ranges) = &self.years
            && !ranges
                .iter()
                .any(|range| range.contains(i32::from(date.year())))
        {
            return false;
        }
        true
    }

    /// The `[start, end)` minute ranges of `times` (the whole day when absent).
    pub fn minute_ranges(&self) -> Vec<TimeOfDayRange> {
        match &self.times {
            None => vec![TimeOfDayRange {
                start_minute: 0,
                end_minute: MINUTES_PER_DAY,
            }],
            Some(ranges) => ranges.clone(),
        }
    }
}

/// Looks an IANA zone up; `UTC` is always known, `Local` is refused because
/// a server's zone is not part of a contract.
pub fn load_time_zone(name: &str) -> Result<TimeZone, TimeIntervalError> {
    if name == "UTC" {
        return Ok(TimeZone::UTC);
    }
    if name.is_empty() || name == "Local" {
        return Err(TimeIntervalError::UnknownTimeZone {
            name: name.to_string(),
            reason: "name an IANA zone such as America/Santiago".to_string(),
        });
    }
    TimeZone::get(name).map_err(|error| TimeIntervalError::UnknownTimeZone {
        name: name.to_string(),
        reason: error.to_string(),
    })
}

// ---------------------------------------------------------------- parsing

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeInterval {
    #[serde(default)]
    times: Option<Vec<RawTimeRange>>,
    #[serde(default)]
    weekdays: Option<Vec<String>>,
    #[serde(default)]
    days_of_month: Option<Vec<String>>,
    #[serde(default)]
    months: Option<Vec<String>>,
    #[serde(default)]
    years: Option<Vec<String>>,
    #[serde(default)]
    location: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTimeRange {
    start_time: String,
    end_time: String,
}

impl<'de> Deserialize<'de> for TimeInterval {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TimeInterval, D::Error> {
        let raw = RawTimeInterval::deserialize(deserializer)?;
        TimeInterval::try_from_raw(raw).map_err(serde::de::Error::custom)
    }
}

impl TimeInterval {
    fn try_from_raw(raw: RawTimeInterval) -> Result<TimeInterval, TimeIntervalError> {
        let times = raw
            .times
            .map(|ranges| ranges.iter().map(parse_time_range).collect())
            .transpose()?;
        let weekdays = parse_ranges(raw.weekdays, parse_weekday_range)?;
        let days_of_month = parse_ranges(raw.days_of_month, parse_day_of_month_range)?;
        let months = parse_ranges(raw.months, parse_month_range)?;
        let years = parse_ranges(raw.years, parse_year_range)?;
        let location_name = raw.location.unwrap_or_else(|| "UTC".to_string());
        let location = load_time_zone(&location_name)?;
        Ok(TimeInterval {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            location_name,
            location,
        })
    }
}

fn parse_ranges(
    texts: Option<Vec<String>>,
    parse: fn(&str) -> Result<InclusiveRange, TimeIntervalError>,
) -> Result<Option<Vec<InclusiveRange>>, TimeIntervalError> {
    texts
        .map(|texts| texts.iter().map(|text| parse(text)).collect())
        .transpose()
}

fn parse_time_range(raw: &RawTimeRange) -> Result<TimeOfDayRange, TimeIntervalError> {
    let start_minute = parse_time_of_day(&raw.start_time)?;
    let end_minute = parse_time_of_day(&raw.end_time)?;
    if start_minute >= end_minute {
        return Err(TimeIntervalError::TimesOutOfOrder {
            start: raw.start_time.clone(),
            end: raw.end_time.clone(),
        });
    }
    Ok(TimeOfDayRange {
        start_minute,
        end_minute,
    })
}

/// `HH:MM` with two-digit fields, 00:00..23:59, or exactly `24:00`.
pub fn parse_time_of_day(text: &str) -> Result<u16, TimeIntervalError> {
    let bad = || TimeIntervalError::BadTime(text.to_string());
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return Err(bad());
    }
    let two_digits = |slice: &[u8]| -> Option<u16> {
        if slice.iter().all(u8::is_ascii_digit) {
            Some(u16::from(slice[0] - b'0') * 10 + u16::from(slice[1] - b'0'))
        } else {
            None
        }
    };
    let hours = two_digits(&bytes[0..2]).ok_or_else(bad)?;
    let minutes = two_digits(&bytes[3..5]).ok_or_else(bad)?;
    if minutes > 59 || hours > 24 || (hours == 24 && minutes != 0) {
        return Err(bad());
    }
    Ok(hours * 60 + minutes)
}

/// Splits `a:b` (or a single `a`, meaning `a:a`), lowercased as Alertmanager does.
fn split_range(text: &str) -> Result<(String, String), ()> {
    let lowered = text.trim().to_ascii_lowercase();
    let mut parts = lowered.split(':');
    let first = parts.next().unwrap_or_default().to_string();
    match (parts.next(), parts.next()) {
        (None, _) => Ok((first.clone(), first)),
        (Some(second), None) => Ok((first, second.to_string())),
        (Some(_), Some(_)) => Err(()),
    }
}

fn weekday_number(name: &str) -> Option<i32> {
    const NAMES: [&str; 7] = [
        "sunday",
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
    ];
    NAMES
        .iter()
        .position(|candidate| *candidate == name)
        .and_then(|index| i32::try_from(index).ok())
}

fn parse_weekday_range(text: &str) -> Result<InclusiveRange, TimeIntervalError> {
    let bad = || TimeIntervalError::BadWeekday(text.to_string());
    let (first, second) = split_range(text).map_err(|()| bad())?;
    let begin = weekday_number(&first).ok_or_else(bad)?;
    let end = weekday_number(&second).ok_or_else(bad)?;
    if begin > end {
        return Err(TimeIntervalError::RangeOutOfOrder(text.to_string()));
    }
    Ok(InclusiveRange { begin, end })
}

fn parse_day_of_month_range(text: &str) -> Result<InclusiveRange, TimeIntervalError> {
    let bad = || TimeIntervalError::BadDayOfMonth(text.to_string());
    let (first, second) = split_range(text).map_err(|()| bad())?;
    let begin: i32 = first.parse().map_err(|_| bad())?;
    let end: i32 = second.parse().map_err(|_| bad())?;
    for day in [begin, end] {
        if day == 0 || !(-31..=31).contains(&day) {
            return Err(bad());
        }
    }
    if begin < 0 && end > 0 {
        return Err(TimeIntervalError::NegativeStartPositiveEnd(
            text.to_string(),
        ));
    }
    // Negative days are compared in the shortest month (28 days): a range
    // that is out of order there is out of order in every month.
    let comparable = |day: i32| if day < 0 { 28 + day } else { day };
    if comparable(begin) > comparable(end) {
        return Err(TimeIntervalError::RangeOutOfOrder(text.to_string()));
    }
    Ok(InclusiveRange { begin, end })
}

fn month_number(name: &str) -> Option<i32> {
    const NAMES: [&str; 12] = [
        "january",
        "february",
        "march",
        "april",
        "may",
        "june",
        "july",
        "august",
        "september",
        "october",
        "november",
        "december",
    ];
    if let Some(index) = NAMES.iter().position(|candidate| *candidate == name) {
        return i32::try_from(index + 1).ok();
    }
    name.parse::<i32>()
        .ok()
        .filter(|month| (1..=12).contains(month))
}

fn parse_month_range(text: &str) -> Result<InclusiveRange, TimeIntervalError> {
    let bad = || TimeIntervalError::BadMonth(text.to_string());
    let (first, second) = split_range(text).map_err(|()| bad())?;
    let begin = month_number(&first).ok_or_else(bad)?;
    let end = month_number(&second).ok_or_else(bad)?;
    if begin > end {
        return Err(TimeIntervalError::RangeOutOfOrder(text.to_string()));
    }
    Ok(InclusiveRange { begin, end })
}

fn parse_year_range(text: &str) -> Result<InclusiveRange, TimeIntervalError> {
    let bad = || TimeIntervalError::BadYear(text.to_string());
    let (first, second) = split_range(text).map_err(|()| bad())?;
    let begin: i32 = first.parse().map_err(|_| bad())?;
    let end: i32 = second.parse().map_err(|_| bad())?;
    if begin < 0 || end < 0 {
        return Err(bad());
    }
    if begin > end {
        return Err(TimeIntervalError::RangeOutOfOrder(text.to_string()));
    }
    Ok(InclusiveRange { begin, end })
}

/// The weekday number used by `weekdays` ranges (0 = Sunday).
pub fn weekday_index(weekday: Weekday) -> i32 {
    i32::from(weekday.to_sunday_zero_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<TimeInterval, String> {
        serde_saphyr::from_str::<TimeInterval>(yaml).map_err(|error| error.to_string())
    }

    fn at(text: &str) -> Timestamp {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond()
    }

    /// (interval YAML, instants inside, instants outside); the cases follow
    /// Alertmanager's documented examples and its `ContainsTime` semantics.
    const CONTAINS_CASES: &[(&str, &[&str], &[&str])] = &[
        // No fields: everything.
        ("{}", &["2006-01-02T15:04:00Z", "2007-01-03T10:04:00Z"], &[]),
        // Business hours, 09:00 inclusive to 17:00 exclusive, Monday to Friday.
        (
            "{weekdays: ['monday:friday'], times: [{start_time: '09:00', end_time: '17:00'}]}",
            &[
                "2020-05-04T15:04:00Z",
                "2020-05-05T09:00:00Z",
                "2020-07-08T16:59:59Z",
            ],
            // Sunday; 08:59 Monday; 17:00 Wednesday.
            &[
                "2020-05-03T15:04:00Z",
                "2020-05-04T08:59:00Z",
                "2020-07-08T17:00:00Z",
            ],
        ),
        // Easter 2020: days 4..6 of April 2020, all day.
        (
            "{days_of_month: ['4:6'], months: ['april'], years: ['2020']}",
            &[
                "2020-04-04T15:04:00Z",
                "2020-04-05T00:00:00Z",
                "2020-04-06T23:05:00Z",
            ],
            &[
                "2020-04-03T23:59:00Z",
                "2020-06-04T23:59:00Z",
                "2019-04-06T23:59:00Z",
                "2020-04-07T00:00:00Z",
            ],
        ),
        // Last three days of every month, leap February included.
        (
            "{days_of_month: ['-3:-1']}",
            &[
                "2020-01-29T15:04:00Z",
                "2020-01-31T15:04:00Z",
                "2020-06-30T00:00:00Z",
                "2020-02-29T23:05:00Z",
                "2021-02-26T00:00:00Z",
            ],
            &[
                "2020-01-28T15:04:00Z",
                "2020-03-01T00:00:00Z",
                "2021-02-25T23:59:00Z",
            ],
        ),
        // An end past the month's end stops at its last day: 25:31 in June.
        // (Alertmanager refuses -31:31 in YAML, as here.)
        (
            "{months: ['6'], days_of_month: ['25:31']}",
            &["2020-06-30T00:00:00Z", "2020-06-25T00:00:00Z"],
            &["2020-06-24T23:59:59Z", "2020-07-01T00:00:00Z"],
        ),
        // A start past the month's end selects nothing (30:31 in February).
        (
            "{days_of_month: ['30:31'], months: ['february']}",
            &[],
            &["2021-02-28T13:00:00Z", "2020-02-29T13:00:00Z"],
        ),
        // 09:00-17:00 in Sydney (+10 in April, +11 in November).
        (
            "{weekdays: ['monday:friday'], times: [{start_time: '09:00', end_time: '17:00'}], location: Australia/Sydney}",
            &["2021-04-06T03:00:00Z", "2021-10-31T22:00:00Z"],
            &["2021-04-06T13:00:00Z", "2021-10-31T21:00:00Z"],
        ),
        // Several fields at once, with a negative day range.
        (
            "{weekdays: ['monday:wednesday', 'saturday', 'sunday'], times: [{start_time: '13:00', end_time: '15:00'}], days_of_month: ['1', '10', '20:-1'], years: ['2020:2023'], months: ['january:march']}",
            &["2021-01-10T13:00:00Z", "2021-01-30T14:24:00Z"],
            &[
                "2021-01-09T13:00:00Z",
                "2021-01-20T12:59:00Z",
                "2021-02-02T13:00:00Z",
            ],
        ),
        // Last week of each quarter's first month range, weekdays plus Sunday.
        (
            "{weekdays: ['monday:friday', 'sunday'], months: ['january:march'], days_of_month: ['-7:-1'], years: ['2020:2025', '2030:2035'], times: [{start_time: '09:00', end_time: '17:00'}]}",
            &[
                "2021-01-27T09:00:00Z",
                "2021-01-28T16:59:00Z",
                "2025-03-31T13:00:00Z",
                "2035-01-31T13:00:00Z",
            ],
            &[
                "2021-01-30T13:00:00Z",
                "2021-04-01T13:00:00Z",
                "2026-01-30T13:00:00Z",
                "2035-01-31T17:01:00Z",
            ],
        ),
        // 24:00 ends the day; case does not matter.
        (
            "{times: [{start_time: '22:00', end_time: '24:00'}], weekdays: ['Saturday', 'SUNDAY']}",
            &["2026-11-28T23:59:59.999Z", "2026-11-29T22:00:00Z"],
            &["2026-11-30T00:00:00Z", "2026-11-28T21:59:59.999Z"],
        ),
    ];

    #[test]
    fn contains_follows_alertmanager() {
        for (yaml, inside, outside) in CONTAINS_CASES {
            let interval = parse(yaml).unwrap_or_else(|error| panic!("{yaml}: {error}"));
            for instant in *inside {
                assert!(
                    interval.contains(at(instant)),
                    "{yaml} should contain {instant}"
                );
            }
            for instant in *outside {
                assert!(
                    !interval.contains(at(instant)),
                    "{yaml} should not contain {instant}"
                );
            }
        }
    }

    #[test]
    fn ranges_parse_to_numbers() {
        let interval = parse(
            "{times: [{start_time: '01:35', end_time: '17:39'}, {start_time: '00:00', end_time: '24:00'}], \
             weekdays: ['monday:friday', 'sunday'], days_of_month: ['1:-1'], months: ['January:december'], years: ['2020:2022']}",
        )
        .unwrap();
        assert_eq!(
            interval.times,
            Some(vec![
                TimeOfDayRange {
                    start_minute: 95,
                    end_minute: 1059
                },
                TimeOfDayRange {
                    start_minute: 0,
                    end_minute: 1440
                },
            ])
        );
        assert_eq!(
            interval.weekdays,
            Some(vec![
                InclusiveRange { begin: 1, end: 5 },
                InclusiveRange { begin: 0, end: 0 }
            ])
        );
        assert_eq!(
            interval.days_of_month,
            Some(vec![InclusiveRange { begin: 1, end: -1 }])
        );
        assert_eq!(
            interval.months,
            Some(vec![InclusiveRange { begin: 1, end: 12 }])
        );
        assert_eq!(
            interval.years,
            Some(vec![InclusiveRange {
                begin: 2020,
                end: 2022
            }])
        );
        assert_eq!(interval.location_name, "UTC");
    }

    #[test]
    fn invalid_intervals_are_refused_with_a_reason() {
        for (yaml, expected) in [
            (
                "{times: [{start_time: '01:99', end_time: '23:59'}]}",
                "01:99",
            ),
            (
                "{times: [{start_time: '00:00', end_time: '99:99'}]}",
                "99:99",
            ),
            (
                "{times: [{start_time: '12:30', end_time: '24:01'}]}",
                "24:01",
            ),
            (
                "{times: [{start_time: '17:31', end_time: '17:31'}]}",
                "must be before",
            ),
            (
                "{times: [{start_time: '09:30', end_time: '07:41'}]}",
                "must be before",
            ),
            (
                "{times: [{start_time: '24:00', end_time: '17:41'}]}",
                "must be before",
            ),
            ("{times: [{start_time: '9:00', end_time: '17:00'}]}", "9:00"),
            ("{times: [{start_time: '14:03'}]}", "end_time"),
            ("{weekdays: ['friday:monday']}", "ends before it starts"),
            ("{weekdays: ['blurgsday:flurgsday']}", "blurgsday"),
            ("{weekdays: ['1:3']}", "not a valid weekday"),
            (
                "{weekdays: ['monday:tuesday:friday']}",
                "not a valid weekday",
            ),
            ("{days_of_month: ['0']}", "not a valid day of the month"),
            (
                "{days_of_month: ['-50:-20']}",
                "not a valid day of the month",
            ),
            ("{days_of_month: ['1:50']}", "not a valid day of the month"),
            ("{days_of_month: ['-15:5']}", "must be negative"),
            ("{days_of_month: ['10:-25']}", "ends before it starts"),
            ("{months: ['martius:june']}", "martius"),
            ("{months: ['march:junius']}", "junius"),
            ("{months: ['13']}", "not a valid month"),
            ("{months: ['december:january']}", "ends before it starts"),
            ("{years: ['2022:2020']}", "ends before it starts"),
            ("{years: ['-5']}", "not a valid year"),
            ("{location: 'Mars/Olympus_Mons'}", "Mars/Olympus_Mons"),
            ("{location: 'Local'}", "Local"),
            ("{weekday: ['monday']}", "weekday"),
        ] {
            let error = parse(yaml).expect_err(yaml);
            assert!(error.contains(expected), "{yaml}: {error}");
        }
    }
}
