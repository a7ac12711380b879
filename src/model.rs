//! The vocabulary every layer shares: label sets, samples, matchers and the
//! staleness marker. Nothing here performs I/O or reads the clock; it is the
//! bottom of the dependency graph (see DESIGN.md).

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, as Prometheus counts time.
pub type Timestamp = i64;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// Bit pattern of Prometheus's staleness marker: a signalling-free NaN that no
/// arithmetic produces, so it can be told apart from an ordinary NaN value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker as a float. Compare with [`is_stale_nan`], never `==`.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True when `value` carries exactly the staleness-marker bit pattern.
pub fn is_stale_nan(value: f64) -> bool {
    value.to_bits() == STALE_NAN_BITS
}

/// One sample of a float series.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub t: Timestamp,
    pub v: f64,
}

impl Sample {
    /// Equality on the bit pattern, so NaN payloads (staleness) compare exactly.
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A series identity: labels sorted by name, names unique, no empty values
/// (an empty value means "label absent" in Prometheus).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a canonical label set: sorts by name, drops empty values, and
    /// keeps the last of duplicate names.
    pub fn new(mut labels: Vec<Label>) -> Labels {
        labels.retain(|label| !label.value.is_empty());
        // Stable sort keeps input order among equal names; the dedup below
        // then keeps the last one written.
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        let mut deduped: Vec<Label> = Vec::with_capacity(labels.len());
        for label in labels {
            match deduped.last_mut() {
                Some(last) if last.name == label.name => *last = label,
                _ => deduped.push(label),
            }
        }
        Labels(deduped)
    }

    /// Wraps labels the caller has already checked to be canonical (sorted
    /// by strictly increasing name, no empty value), skipping the second
    /// buffer and the sort of `new`: decoders of stored label sets check
    /// that as they read.
    pub fn from_canonical(labels: Vec<Label>) -> Labels {
        debug_assert!(
            labels.windows(2).all(|pair| pair[0].name < pair[1].name)
                && labels.iter().all(|label| !label.value.is_empty())
        );
        Labels(labels)
    }

    pub fn from_pairs<N: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (N, V)>,
    ) -> Labels {
        Labels::new(
            pairs
                .into_iter()
                .map(|(name, value)| Label::new(name, value))
                .collect(),
        )
    }

    pub fn empty() -> Labels {
        Labels(Vec::new())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|label| label.name.as_str().cmp(name))
            .ok()
            .map(|index| self.0[index].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// Returns a copy with `name` set to `value` (removed when `value` is empty).
    pub fn with(&self, name: &str, value: &str) -> Labels {
        let mut labels = self.0.clone();
        labels.retain(|label| label.name != name);
        labels.push(Label::new(name, value));
        Labels::new(labels)
    }

    /// Returns a copy without `name`.
    pub fn without(&self, name: &str) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|label| label.name != name)
                .cloned()
                .collect(),
        )
    }

    /// A 64-bit hash of the canonical label set, equal to [`hash_label_pairs`]
    /// over the same sorted pairs. Stable within one build; never persisted.
    pub fn hash64(&self) -> u64 {
        let mut hasher = LabelHasher::new();
        for label in &self.0 {
            hasher.add(&label.name, &label.value);
        }
        hasher.finish()
    }
}

impl Ord for Labels {
    /// Prometheus's label-set order: pairwise by (name, value), shorter set first on a tie.
    fn cmp(&self, other: &Labels) -> Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            let by_pair = a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value));
            if by_pair != Ordering::Equal {
                return by_pair;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Labels) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Labels {
    /// Prometheus's text form: `name{a="b", c="d"}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name();
        if let Some(name) = name {
            f.write_str(name)?;
        }
        let mut first = true;
        for label in self.0.iter().filter(|label| label.name != METRIC_NAME) {
            f.write_str(if first { "{" } else { ", " })?;
            first = false;
            write!(f, "{}=\"", label.name)?;
            for character in label.value.chars() {
                match character {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    other => write!(f, "{other}")?,
                }
            }
            f.write_str("\"")?;
        }
        if !first {
            f.write_str("}")?;
        } else if name.is_none() {
            f.write_str("{}")?;
        }
        Ok(())
    }
}

/// Incremental hash over sorted (name, value) pairs, so a caller holding
/// borrowed pairs can find a series without building a [`Labels`].
pub struct LabelHasher(foldhash::fast::FoldHasher<'static>);

impl LabelHasher {
    pub fn new() -> LabelHasher {
        use std::hash::BuildHasher;
        // A fixed seed keeps the hash identical across threads and instances
        // of one process; it is never written to disk.
        static STATE: foldhash::fast::FixedState =
            foldhash::fast::FixedState::with_seed(0x0067_7561_7264_6961);
        LabelHasher(STATE.build_hasher())
    }

    pub fn add(&mut self, name: &str, value: &str) {
        use std::hash::Hasher;
        self.0.write(name.as_bytes());
        self.0.write_u8(0xff);
        self.0.write(value.as_bytes());
        self.0.write_u8(0xfe);
    }

    pub fn finish(&self) -> u64 {
        use std::hash::Hasher;
        self.0.finish()
    }
}

impl Default for LabelHasher {
    fn default() -> Self {
        LabelHasher::new()
    }
}

/// Hash of borrowed pairs that must already be sorted by name, without empty values.
pub fn hash_label_pairs(pairs: &[(&str, &str)]) -> u64 {
    let mut hasher = LabelHasher::new();
    for (name, value) in pairs {
        hasher.add(name, value);
    }
    hasher.finish()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl fmt::Display for MatchOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("invalid regular expression {pattern:?} for label {name:?}: {source}")]
    InvalidRegex {
        name: String,
        pattern: String,
        #[source]
        source: Box<regex::Error>,
    },
}

/// A label matcher. Regexes are fully anchored and `.` matches newlines, as
/// in Prometheus (`^(?s:<re>)$`). An absent label matches as the empty string.
#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    regex: Option<regex::Regex>,
}

impl Matcher {
    pub fn new(
        op: MatchOp,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Matcher, ModelError> {
        let name = name.into();
        let value = value.into();
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex::Regex::new(&format!("^(?s:{value})$")).map_err(|source| {
                    ModelError::InvalidRegex {
                        name: name.clone(),
                        pattern: value.clone(),
                        source: Box::new(source),
                    }
                })?,
            ),
            MatchOp::Equal | MatchOp::NotEqual => None,
        };
        Ok(Matcher {
            name,
            op,
            value,
            regex,
        })
    }

    /// Shorthand for an equality matcher, which cannot fail.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Matcher {
        Matcher {
            name: name.into(),
            op: MatchOp::Equal,
            value: value.into(),
            regex: None,
        }
    }

    /// Whether a label value (empty when the label is absent) satisfies this matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.op {
            MatchOp::Equal => value == self.value,
            MatchOp::NotEqual => value != self.value,
            MatchOp::Regex => self.regex.as_ref().is_some_and(|re| re.is_match(value)),
            MatchOp::NotRegex => !self.regex.as_ref().is_some_and(|re| re.is_match(value)),
        }
    }

    /// True when the matcher accepts the empty string, i.e. also selects
    /// series that lack the label entirely.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }

    pub fn matches_labels(&self, labels: &Labels) -> bool {
        self.matches(labels.get(&self.name).unwrap_or(""))
    }
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Matcher) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op, self.value)
    }
}

/// True when every matcher accepts the label set.
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers
        .iter()
        .all(|matcher| matcher.matches_labels(labels))
}

/// Metric metadata from `# TYPE`, `# HELP` and `# UNIT` lines.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricMetadata {
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`,
    /// `stateset` or `unknown`, as written.
    pub metric_type: String,
    pub help: String,
    pub unit: String,
}

/// A valid legacy metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_legacy_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b':'))
}

/// A valid legacy label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_legacy_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_'))
}

/// Proleptic Gregorian (year, month 1-12, day 1-31) of a day count since
/// 1970-01-01, for any i64 day count (Howard Hinnant's civil-from-days).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a proleptic Gregorian date; inverse of [`civil_from_days`].
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// UTC RFC 3339 with milliseconds, e.g. `2026-11-23T21:48:00.000Z`.
pub fn format_rfc3339_millis(millis: Timestamp) -> String {
    let seconds = millis.div_euclid(1000);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        millis.rem_euclid(1000)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_deduplicated_and_drop_empty_values() {
        let labels = Labels::from_pairs([("b", "1"), ("a", "x"), ("c", ""), ("a", "y")]);
        let pairs: Vec<(&str, &str)> = labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        assert_eq!(pairs, vec![("a", "y"), ("b", "1")]);
    }

    #[test]
    fn hash_of_labels_equals_hash_of_borrowed_pairs() {
        let labels = Labels::from_pairs([("__name__", "up"), ("job", "node")]);
        assert_eq!(
            labels.hash64(),
            hash_label_pairs(&[("__name__", "up"), ("job", "node")])
        );
        assert_ne!(
            labels.hash64(),
            hash_label_pairs(&[("__name__", "up"), ("job", "nodf")])
        );
    }

    #[test]
    fn regex_matchers_are_anchored_and_dot_matches_newline() {
        let matcher = Matcher::new(MatchOp::Regex, "job", "no.e").unwrap();
        assert!(matcher.matches("node"));
        assert!(!matcher.matches("xnode"));
        assert!(matcher.matches("no\ne"));
        let not = Matcher::new(MatchOp::NotRegex, "job", "").unwrap();
        assert!(!not.matches(""));
        assert!(not.matches("a"));
    }

    #[test]
    fn display_escapes_values() {
        let labels = Labels::from_pairs([("__name__", "m"), ("a", "x\"y\\\n")]);
        assert_eq!(labels.to_string(), "m{a=\"x\\\"y\\\\\\n\"}");
    }

    #[test]
    fn calendar_conversions_round_trip() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for days in [-800_000i64, -1, 0, 59, 19_675, 2_932_896] {
            let (year, month, day) = civil_from_days(days);
            assert_eq!(days_from_civil(year, month.into(), day.into()), days);
        }
        assert_eq!(
            format_rfc3339_millis(1_700_000_000_123),
            "2023-11-14T22:13:20.123Z"
        );
    }

    #[test]
    fn stale_marker_is_distinguished_from_plain_nan() {
        assert!(is_stale_nan(stale_nan()));
        assert!(!is_stale_nan(f64::NAN));
    }
}
