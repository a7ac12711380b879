//! Request parameters read the way Prometheus reads them: times as RFC 3339
//! or float Unix seconds, `match[]` selectors through the `promql-parser`
//! crate, `limit` as a non-negative integer (0 = no limit). Parameters come
//! from the query string and, for POST, from a form-encoded body.

use axum::extract::{FromRequest, Query, Request};
use axum::http::Method;
use axum::http::header::CONTENT_TYPE;
use promql_parser::label::MatchOp as ParserMatchOp;
use promql_parser::parser::{self, Expr};

use crate::api::error::ApiError;
use crate::model::{METRIC_NAME, MatchOp, Matcher, Timestamp};

/// The earliest and latest times a request may name: far enough out to mean
/// "unbounded", close enough to zero that arithmetic on them cannot overflow.
pub const MIN_TIME: Timestamp = i64::MIN / 4;
pub const MAX_TIME: Timestamp = i64::MAX / 4;

/// All parameters of a request in order, repeated names kept.
#[derive(Clone, Debug, Default)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn first(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// `start`/`end`, defaulting to an unbounded range.
    pub fn time_range(&self) -> Result<(Timestamp, Timestamp), ApiError> {
        let mint = match self.first("start") {
            Some(text) if !text.is_empty() => {
                parse_time(text).map_err(|error| invalid_parameter("start", &error))?
            }
            _ => MIN_TIME,
        };
        let maxt = match self.first("end") {
            Some(text) if !text.is_empty() => {
                parse_time(text).map_err(|error| invalid_parameter("end", &error))?
            }
            _ => MAX_TIME,
        };
        if maxt < mint {
            return Err(ApiError::BadData(
                "end timestamp must not be before start time".to_string(),
            ));
        }
        Ok((mint, maxt))
    }

    /// `limit`: `None` when absent or 0.
    pub fn limit(&self) -> Result<Option<usize>, ApiError> {
        match self.first("limit") {
            None | Some("") => Ok(None),
            Some(text) => {
                let limit: i64 = text
                    .parse()
                    .map_err(|error| invalid_parameter("limit", &format!("{error}")))?;
                if limit < 0 {
                    return Err(invalid_parameter("limit", "limit must be non-negative"));
                }
                Ok(usize::try_from(limit).ok().filter(|limit| *limit > 0))
            }
        }
    }

    /// Every `match[]` parsed into a matcher set; several sets are a union.
    pub fn matcher_sets(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        let mut sets = Vec::new();
        for selector in self.all("match[]") {
            sets.extend(parse_selector(selector)?);
        }
        Ok(sets)
    }
}

impl<S: Send + Sync> FromRequest<S> for Params {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Params, ApiError> {
        let mut pairs = Query::<Vec<(String, String)>>::try_from_uri(request.uri())
            .map_err(|error| ApiError::BadData(format!("error parsing query string: {error}")))?
            .0;
        let is_form = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
        if request.method() == Method::POST && is_form {
            let axum::Form(body_pairs) =
                axum::Form::<Vec<(String, String)>>::from_request(request, state)
                    .await
                    .map_err(|error| {
                        ApiError::BadData(format!("error parsing form values: {error}"))
                    })?;
            pairs.extend(body_pairs);
        }
        Ok(Params(pairs))
    }
}

fn invalid_parameter(name: &str, reason: &str) -> ApiError {
    ApiError::BadData(format!("invalid parameter {name:?}: {reason}"))
}

/// Parses a Prometheus API time: float Unix seconds or RFC 3339, to milliseconds.
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    let cannot = || format!("cannot parse {text:?} to a valid timestamp");
    if let Ok(seconds) = text.parse::<f64>() {
        if !seconds.is_finite() {
            return Err(cannot());
        }
        let whole = seconds.trunc();
        let fraction_ms = ((seconds - whole) * 1000.0).round();
        let millis = whole * 1000.0 + fraction_ms;
        if millis < MIN_TIME as f64 || millis > MAX_TIME as f64 {
            return Err(cannot());
        }
        return Ok(millis as Timestamp);
    }
    parse_rfc3339(text).ok_or_else(cannot)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, to milliseconds (fraction
/// beyond milliseconds is truncated, like Go's conversion to ms).
pub fn parse_rfc3339(text: &str) -> Option<Timestamp> {
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = bytes.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    if bytes.len() < 20
        || bytes[4] != b'-'
        || bytes[7] != b'-'
        || !matches!(bytes[10], b'T' | b't' | b' ')
        || bytes[13] != b':'
        || bytes[16] != b':'
    {
        return None;
    }
    let year = number(0..4)?;
    let month = number(5..7)?;
    let day = number(8..10)?;
    let hour = number(11..13)?;
    let minute = number(14..16)?;
    let second = number(17..19)?;
    if !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut position = 19;
    let mut millis = 0i64;
    if bytes.get(position) == Some(&b'.') {
        position += 1;
        let start = position;
        while bytes.get(position).is_some_and(u8::is_ascii_digit) {
            position += 1;
        }
        if position == start {
            return None;
        }
        let mut scale = 100;
        for digit in &bytes[start..position.min(start + 3)] {
            millis += i64::from(digit - b'0') * scale;
            scale /= 10;
        }
    }
    let offset_seconds = match bytes.get(position)? {
        b'Z' | b'z' if position + 1 == bytes.len() => 0,
        sign @ (b'+' | b'-') if position + 6 == bytes.len() && bytes[position + 3] == b':' => {
            let offset_hours = number(position + 1..position + 3)?;
            let offset_minutes = number(position + 4..position + 6)?;
            if offset_hours > 23 || offset_minutes > 59 {
                return None;
            }
            let magnitude = offset_hours * 3600 + offset_minutes * 60;
            if *sign == b'-' { -magnitude } else { magnitude }
        }
        _ => return None,
    };
    let days = crate::model::days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(seconds * 1000 + millis)
}

fn is_leap_year(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses one `match[]` selector into matcher sets: one set, or one per
/// branch of a `{a="x" or b="y"}` selector.
pub fn parse_selector(selector: &str) -> Result<Vec<Vec<Matcher>>, ApiError> {
    let expression = parser::parse(selector).map_err(ApiError::BadData)?;
    let vector_selector = match expression {
        Expr::VectorSelector(vector_selector) => vector_selector,
        other => {
            return Err(ApiError::BadData(format!(
                "invalid parameter \"match[]\": expected a series selector, got {other}"
            )));
        }
    };
    let groups = if vector_selector.matchers.or_matchers.is_empty() {
        vec![vector_selector.matchers.matchers]
    } else {
        let mut groups = vector_selector.matchers.or_matchers;
        if !vector_selector.matchers.matchers.is_empty() {
            groups.push(vector_selector.matchers.matchers);
        }
        groups
    };
    let mut sets = Vec::with_capacity(groups.len());
    for group in groups {
        let mut set = Vec::with_capacity(group.len() + 1);
        if let Some(name) = &vector_selector.name {
            set.push(Matcher::equal(METRIC_NAME, name.clone()));
        }
        for parsed in group {
            let op = match parsed.op {
                ParserMatchOp::Equal => MatchOp::Equal,
                ParserMatchOp::NotEqual => MatchOp::NotEqual,
                ParserMatchOp::Re(_) => MatchOp::Regex,
                ParserMatchOp::NotRe(_) => MatchOp::NotRegex,
            };
            let matcher = Matcher::new(op, parsed.name, parsed.value)
                .map_err(|error| ApiError::BadData(error.to_string()))?;
            set.push(matcher);
        }
        if set.iter().all(Matcher::matches_empty) {
            return Err(ApiError::BadData(
                "match[] must contain at least one non-empty matcher".to_string(),
            ));
        }
        sets.push(set);
    }
    Ok(sets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_like_prometheus() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("1700000000.123").unwrap(), 1_700_000_000_123);
        assert_eq!(parse_time("-1.5").unwrap(), -1500);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert_eq!(
            parse_time("2023-11-14T22:13:20.5+01:00").unwrap(),
            1_700_000_000_500 - 3_600_000
        );
        assert_eq!(parse_time("1970-01-01T00:00:00Z").unwrap(), 0);
        assert_eq!(
            parse_time("2024-02-29T00:00:00Z").unwrap(),
            1_709_164_800_000
        );
        for bad in [
            "",
            "x",
            "2023-02-29T00:00:00Z",
            "2023-11-14T22:13:20",
            "NaN",
            "Inf",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_become_matcher_sets() {
        let sets = parse_selector(r#"up{job=~"no.*", instance!="a"}"#).unwrap();
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0][0], Matcher::equal("__name__", "up"));
        assert_eq!(sets[0][1].op, MatchOp::Regex);
        assert!(sets[0][1].matches("node"));
        assert!(!sets[0][1].matches("xnode"));
        let or_sets = parse_selector(r#"{a="1" or b="2"}"#).unwrap();
        assert_eq!(or_sets.len(), 2);
        assert!(parse_selector(r#"{job=~".*"}"#).is_err());
        assert!(parse_selector("up[5m]").is_err());
        assert!(parse_selector("up{").is_err());
    }
}
