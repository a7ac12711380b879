//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text:
//! a zero-copy, line-oriented parser that never panics, and a printer whose
//! output it accepts. This is the ingest hot path for pushed and scraped
//! text; it borrows names and values from the input and allocates only
//! for a label value, quoted name or HELP text that contains escapes.
//!
//! # API
//!
//! - [`TextParser::new`] (input already `&str`) or [`TextParser::from_bytes`]
//!   (checks UTF-8 once, up front), with a [`Format`]; the push endpoint gets
//!   the format from the request with [`Format::from_content_type`].
//! - [`TextParser::next_entry`] fills a caller-owned, reused [`SampleBuf`]
//!   and returns [`Entry::Sample`], or returns [`Entry::Metadata`] for a
//!   `# HELP`, `# TYPE` or (OpenMetrics) `# UNIT` line; `Ok(None)` at the end.
//!   After an error or the end it keeps returning `Ok(None)`.
//! - [`SampleBuf::with_sorted_label_pairs`] hands the sample's labels, sorted
//!   by name with `("__name__", name)` included and empty values dropped,
//!   to a closure: the shape `storage::Appender::append` wants. No heap
//!   allocation happens per sample once the buffers have grown.
//! - [`TextParser::next_entry_with_known_series`] is `next_entry` with a
//!   shortcut for series seen before: it offers each sample line's series
//!   text (see [`SampleBuf::series_text`]) to a closure and, when the caller
//!   knows it, parses only the value and timestamp. A series cache keyed by
//!   that text (as Prometheus's scrape cache is) skips label parsing,
//!   sorting, hashing and the store lookup for every known series.
//! - Errors are [`TextParseError`]: 1-based line number plus a
//!   [`ParseErrorReason`] in words, e.g. `line 12: expected '=' after label
//!   name "job"`.
//! - [`write_sample`], [`write_help`], [`write_type`] and
//!   [`write_openmetrics_eof`] print the formats back.
//!
//! ```
//! use guardia::ingest::text::{Entry, Format, SampleBuf, TextParser};
//! use guardia::model::MetricMetadata;
//!
//! let body = "# TYPE http_requests_total counter\n\
//!             http_requests_total{path=\"/a\",code=\"200\"} 1027 1700000000000\n\
//!             {\"my.metric\", \"a.b\"=\"c\\\"d\"} +Inf\n";
//! let mut parser = TextParser::new(body, Format::from_content_type("text/plain; version=0.0.4"));
//! let mut sample = SampleBuf::new();
//! let mut stored: Vec<(String, f64, Option<i64>)> = Vec::new();
//! let mut metadata = MetricMetadata::default();
//! while let Some(entry) = parser.next_entry(&mut sample)? {
//!     match entry {
//!         Entry::Sample => sample.with_sorted_label_pairs(&[("instance", "site-1")], |pairs| {
//!             // An appender would take `pairs` as they are.
//!             let text: Vec<String> = pairs.iter().map(|(n, v)| format!("{n}={v}")).collect();
//!             stored.push((text.join(","), sample.value(), sample.timestamp_ms()));
//!         }),
//!         Entry::Metadata(entry) => entry.apply_to(&mut metadata),
//!     }
//! }
//! assert_eq!(metadata.metric_type, "counter");
//! assert_eq!(stored[0], (
//!     "__name__=http_requests_total,code=200,instance=site-1,path=/a".to_string(),
//!     1027.0,
//!     Some(1_700_000_000_000),
//! ));
//! assert_eq!(stored[1].0, "__name__=my.metric,a.b=c\"d,instance=site-1");
//! assert_eq!(stored[1].1, f64::INFINITY);
//!
//! let error = TextParser::new("up{job=\"a\" 1\n", Format::Prometheus)
//!     .next_entry(&mut sample)
//!     .unwrap_err();
//! assert_eq!(error.to_string(), "line 1: expected ',' or '}' in the label set, found \"1\"");
//! # Ok::<(), guardia::ingest::text::TextParseError>(())
//! ```
//!
//! # Syntax accepted
//!
//! Both formats: `# HELP name text`, `# TYPE name type` (the types of both
//! formats are accepted in either; `untyped` reads as `unknown`), other `#`
//! lines are comments, blank lines, `\r\n` line ends (a `\r` elsewhere is
//! ordinary text), leading blanks, runs of spaces or tabs
//! between tokens, `name{label="value",...} value [timestamp]`, a trailing
//! comma in label sets, Prometheus 3.x quoted UTF-8 names
//! (`{"my.metric", "a.b"="c"}`, and also `"my.metric"{a="b"}`), a
//! `__name__="…"` label as the metric name. Label values and quoted names
//! know the escapes `\\`, `\"` and `\n`; any other escape is an error.
//! Values: see `number.rs` (Go `ParseFloat` syntax, `NaN`, `±Inf`).
//! A raw line feed cannot appear inside quotes: lines are the unit.
//! Next to the OpenMetrics grammar this is looser (blanks, blank lines,
//! free comments, which real pushers produce) and never stricter.
//!
//! # Performance
//!
//! Sample lines are parsed in one pass where they lie (no line splitting);
//! names and quoted runs are scanned eight bytes at a time (`scan.rs`);
//! comment lines find their end with SIMD memchr. `benches/parse.rs`
//! measures it on node_exporter output.
//!
//! Prometheus text: timestamps are integer milliseconds (sign allowed);
//! HELP knows the escapes `\\` and `\n` (other backslashes stay as written);
//! `# UNIT` and `# EOF` are ordinary comments; exemplars are an error.
//!
//! OpenMetrics: timestamps are float seconds, converted to milliseconds
//! (truncated toward zero, exactly for plain decimals); `# UNIT name unit`;
//! HELP also knows `\"`; exemplars (` # {labels} value [timestamp]`) are
//! syntax-checked and skipped; the input must end with `# EOF` and only
//! blank lines may follow it.
//!
//! Duplicate label names in one series are an error. Empty label values are
//! valid syntax and are kept in [`SampleBuf::labels`]; the storage treats an
//! empty value as an absent label, so `with_sorted_label_pairs` drops them.

mod number;
mod printer;
mod scan;

use std::borrow::Cow;
use std::cell::Cell;

pub use printer::{write_help, write_openmetrics_eof, write_sample, write_type};

use crate::model::{Labels, METRIC_NAME, MetricMetadata};
use scan::NameKind;

/// The two text formats, told apart by the request's `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// `text/plain; version=0.0.4`, also the default for unknown types.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
}

impl Format {
    /// OpenMetrics for `application/openmetrics-text` (any parameters, any
    /// case), the Prometheus text format for everything else.
    pub fn from_content_type(content_type: &str) -> Format {
        let media_type = content_type.split(';').next().unwrap_or("").trim();
        if media_type.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::Prometheus
        }
    }

    /// The `Content-Type` to send or expect for this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A metric family's type, as declared by `# TYPE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    /// `unknown` (OpenMetrics) or `untyped` (Prometheus text).
    Unknown,
}

impl MetricType {
    fn from_word(word: &str) -> Option<MetricType> {
        Some(match word {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "unknown" | "untyped" => MetricType::Unknown,
            _ => return None,
        })
    }

    /// The name Prometheus's `/api/v1/metadata` uses for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Summary => "summary",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
            MetricType::Unknown => "unknown",
        }
    }
}

/// What one `# HELP`, `# TYPE` or `# UNIT` line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetadataKind<'a> {
    /// HELP text with its escapes resolved.
    Help(Cow<'a, str>),
    Type(MetricType),
    /// OpenMetrics only.
    Unit(&'a str),
}

/// A metadata line, for `/api/v1/metadata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata<'a> {
    /// The metric family name as written (escapes resolved when quoted).
    pub metric_name: Cow<'a, str>,
    pub kind: MetadataKind<'a>,
    pub line_number: usize,
}

impl Metadata<'_> {
    /// Sets the one field of `metadata` that this line describes.
    pub fn apply_to(&self, metadata: &mut MetricMetadata) {
        match &self.kind {
            MetadataKind::Help(help) => metadata.help = help.to_string(),
            MetadataKind::Type(metric_type) => metadata.metric_type = metric_type.as_str().into(),
            MetadataKind::Unit(unit) => metadata.unit = (*unit).to_string(),
        }
    }
}

/// One step of the parse. A sample's data lives in the [`SampleBuf`] that
/// was passed to [`TextParser::next_entry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    Sample,
    Metadata(Metadata<'a>),
}

/// Where a parse failed: the 1-based line and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line_number}: {reason}")]
pub struct TextParseError {
    pub line_number: usize,
    pub reason: ParseErrorReason,
}

/// Why a line was refused. `found` fields hold a short excerpt of the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorReason {
    #[error("invalid UTF-8")]
    InvalidUtf8,
    #[error("expected a metric name, found {found:?}")]
    ExpectedMetricName { found: String },
    #[error("expected a label name, found {found:?}")]
    ExpectedLabelName { found: String },
    #[error("expected '=' after label name {label_name:?}")]
    ExpectedEquals { label_name: String },
    #[error("expected a quoted value for label {label_name:?}")]
    ExpectedLabelValue { label_name: String },
    #[error("expected ',' or '}}' in the label set, found {found:?}")]
    ExpectedCommaOrBrace { found: String },
    #[error("missing '}}' at the end of the label set")]
    MissingClosingBrace,
    #[error("unterminated quoted string")]
    UnterminatedString,
    #[error("invalid escape sequence \"\\{sequence}\" (allowed: \\\\, \\\", \\n)")]
    InvalidEscape { sequence: char },
    #[error("duplicate label name {label_name:?}")]
    DuplicateLabel { label_name: String },
    #[error("the metric name is given twice")]
    MetricNameTwice,
    #[error("label set without a metric name")]
    MissingMetricName,
    #[error("empty metric name")]
    EmptyMetricName,
    #[error("empty label name")]
    EmptyLabelName,
    #[error("expected a sample value after the series")]
    MissingValue,
    #[error("invalid sample value {text:?}")]
    InvalidValue { text: String },
    #[error("invalid timestamp {text:?}")]
    InvalidTimestamp { text: String },
    #[error("unexpected text after the timestamp: {text:?}")]
    TextAfterTimestamp { text: String },
    #[error("unexpected text after the series: {text:?}")]
    TextAfterSeries { text: String },
    #[error("exemplars (\" # {{...}}\") are allowed only in OpenMetrics")]
    ExemplarInPrometheusText,
    #[error("invalid exemplar: {detail}")]
    InvalidExemplar { detail: String },
    #[error("expected a metric name after {keyword}")]
    MissingMetadataName { keyword: &'static str },
    #[error("expected a space after the metric name in {keyword}, found {found:?}")]
    InvalidMetadataName {
        keyword: &'static str,
        found: String,
    },
    #[error("invalid metric type {text:?}")]
    InvalidMetricType { text: String },
    #[error("content after \"# EOF\"")]
    ContentAfterEof,
    #[error("OpenMetrics input does not end with \"# EOF\"")]
    MissingEof,
}

/// Character classes of name bytes, one table lookup per byte.
const LABEL_NAME_START: u8 = 1;
const LABEL_NAME_CONTINUE: u8 = 2;
const METRIC_NAME_START: u8 = 4;
const METRIC_NAME_CONTINUE: u8 = 8;

static NAME_BYTE_CLASSES: [u8; 256] = name_byte_classes();

const fn name_byte_classes() -> [u8; 256] {
    let mut classes = [0u8; 256];
    let mut index = 0;
    while index < 256 {
        let byte = index as u8;
        classes[index] = if byte.is_ascii_alphabetic() || byte == b'_' {
            LABEL_NAME_START | LABEL_NAME_CONTINUE | METRIC_NAME_START | METRIC_NAME_CONTINUE
        } else if byte.is_ascii_digit() {
            LABEL_NAME_CONTINUE | METRIC_NAME_CONTINUE
        } else if byte == b':' {
            METRIC_NAME_START | METRIC_NAME_CONTINUE
        } else {
            0
        };
        index += 1;
    }
    classes
}

#[inline(always)]
fn byte_has_class(byte: u8, class: u8) -> bool {
    NAME_BYTE_CLASSES[usize::from(byte)] & class != 0
}

/// Up to this many labels the duplicate check compares pairs directly;
/// above it, it sorts indices (no allocation once the index buffer grew).
const DUPLICATE_CHECK_PAIRWISE_LIMIT: usize = 12;

/// Longest input excerpt quoted in an error message.
const ERROR_EXCERPT_CHARS: usize = 24;

type LabelPair<'a> = (Cow<'a, str>, Cow<'a, str>);

/// One parsed sample, reused from line to line so that parsing does not
/// allocate per sample. Everything borrows from the parser's input except
/// names and values that contained escapes.
#[derive(Default)]
pub struct SampleBuf<'a> {
    metric_name: Cow<'a, str>,
    /// As written, without the metric name.
    labels: Vec<LabelPair<'a>>,
    value: f64,
    timestamp_ms: Option<i64>,
    line_number: usize,
    /// The input from the metric name (or `{`) to the end of the label set.
    series_text: &'a str,
    /// True when the line's series was known and its labels were not parsed.
    labels_skipped: bool,
    /// Allocation kept between calls of `with_sorted_label_pairs`; always empty here.
    /// In a `Cell` so that the closure can read the sample too.
    sorted_pairs_storage: Cell<Vec<(&'static str, &'static str)>>,
    duplicate_check_indices: Vec<u32>,
}

impl std::fmt::Debug for SampleBuf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SampleBuf")
            .field("metric_name", &self.metric_name)
            .field("labels", &self.labels)
            .field("value", &self.value)
            .field("timestamp_ms", &self.timestamp_ms)
            .field("line_number", &self.line_number)
            .finish()
    }
}

impl<'a> SampleBuf<'a> {
    pub fn new() -> SampleBuf<'a> {
        SampleBuf::default()
    }

    pub fn metric_name(&self) -> &str {
        &self.metric_name
    }

    /// Labels in input order, without the metric name, empty values included.
    pub fn labels(&self) -> impl ExactSizeIterator<Item = (&str, &str)> + '_ {
        self.labels
            .iter()
            .map(|(name, value)| (name.as_ref(), value.as_ref()))
    }

    /// The value of label `name` as written (`__name__` gives the metric name).
    pub fn label(&self, name: &str) -> Option<&str> {
        if name == METRIC_NAME {
            return Some(&self.metric_name);
        }
        self.labels
            .iter()
            .find(|(label_name, _)| label_name == name)
            .map(|(_, value)| value.as_ref())
    }

    pub fn value(&self) -> f64 {
        self.value
    }

    /// Milliseconds since the epoch when the line carried a timestamp.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    /// The 1-based line the sample came from.
    pub fn line_number(&self) -> usize {
        self.line_number
    }

    /// The sample's series as written: from the first byte of the metric
    /// name (or of `{`) to the closing `}` of the label set, or to the end
    /// of the name when there is no label set. Two lines with equal series
    /// text have equal series (the converse need not hold).
    pub fn series_text(&self) -> &'a str {
        self.series_text
    }

    /// True when `next_entry_with_known_series` was told this line's series
    /// is known: the metric name and labels were then not parsed and read
    /// as empty; only [`SampleBuf::series_text`], the value, the timestamp
    /// and the line number are set.
    pub fn labels_skipped(&self) -> bool {
        self.labels_skipped
    }

    /// Calls `use_pairs` with the sample's labels plus `extra_labels`,
    /// sorted by name, `("__name__", metric name)` included, names unique
    /// and empty values dropped: what `storage::Appender::append` takes.
    /// An extra label replaces a parsed label of the same name (an empty
    /// extra value removes it), as `extra_label` does on the push endpoint.
    /// Allocation-free once the internal buffer has grown.
    pub fn with_sorted_label_pairs<R>(
        &self,
        extra_labels: &[(&str, &str)],
        use_pairs: impl FnOnce(&[(&str, &str)]) -> R,
    ) -> R {
        let mut pairs = recycle_pair_storage(self.sorted_pairs_storage.take());
        pairs.push((METRIC_NAME, self.metric_name.as_ref()));
        pairs.extend(
            self.labels
                .iter()
                .map(|(name, value)| (name.as_ref(), value.as_ref())),
        );
        pairs.extend_from_slice(extra_labels);
        sort_pairs_by_name_stably(&mut pairs);
        // Of equal names keep the last written (extra labels come last), then
        // drop empty values: the storage reads an empty value as "absent".
        let mut kept = 0;
        for index in 0..pairs.len() {
            let is_last_of_its_name = pairs
                .get(index + 1)
                .is_none_or(|next| next.0 != pairs[index].0);
            if is_last_of_its_name && !pairs[index].1.is_empty() {
                pairs[kept] = pairs[index];
                kept += 1;
            }
        }
        pairs.truncate(kept);
        let result = use_pairs(&pairs);
        self.sorted_pairs_storage.set(recycle_pair_storage(pairs));
        result
    }

    /// An owned, canonical label set (allocates; for tests and slow paths).
    pub fn to_labels(&self) -> Labels {
        Labels::from_pairs(
            std::iter::once((METRIC_NAME, self.metric_name.as_ref())).chain(
                self.labels
                    .iter()
                    .map(|(name, value)| (name.as_ref(), value.as_ref())),
            ),
        )
    }
}

/// Empties a pair vector and retypes it to a new borrow lifetime. The
/// standard library collects a `vec::IntoIter` mapped to an element of the
/// same size and alignment in place, so the allocation is kept; this is
/// what lets one buffer of borrowed pairs outlive each sample's borrows
/// without `unsafe` (checked by a unit test).
fn recycle_pair_storage<'to>(mut storage: Vec<(&'_ str, &'_ str)>) -> Vec<(&'to str, &'to str)> {
    storage.clear();
    storage.into_iter().map(|_| ("", "")).collect()
}

/// Insertion sort: stable, allocation-free, and fastest for the handful of
/// labels a series has. Large sets fall back to the standard stable sort.
fn sort_pairs_by_name_stably(pairs: &mut [(&str, &str)]) {
    if pairs.len() > 32 {
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        return;
    }
    for unsorted_start in 1..pairs.len() {
        let mut index = unsorted_start;
        while index > 0 && pairs[index - 1].0 > pairs[index].0 {
            pairs.swap(index - 1, index);
            index -= 1;
        }
    }
}

/// A quoted string at the cursor is either a label name (followed by `=`)
/// or, in a series' label set, the metric name.
#[derive(Clone, Copy, PartialEq, Eq)]
enum LabelSetKind {
    Series,
    Exemplar,
}

enum CommentLine<'a> {
    Comment,
    Metadata(Metadata<'a>),
    OpenMetricsEof,
}

/// The parser. See the module documentation for the API and the syntax.
#[derive(Debug)]
pub struct TextParser<'a> {
    input: &'a str,
    format: Format,
    /// Byte offset where the next line starts.
    position: usize,
    /// 1-based number of the line read last (0 before the first).
    line_number: usize,
    finished: bool,
    /// Scratch for exemplar label sets, which are checked and dropped.
    exemplar_labels: Vec<LabelPair<'a>>,
    /// Set by `fingerprint_comment_lines`: comment lines are hashed, not parsed.
    fingerprint_comments: bool,
    /// Chained hash of the comment lines passed so far in that mode.
    comment_fingerprint: u64,
}

/// Start of `TextParser::comment_fingerprint`, one per format: a text's
/// comment lines mean what they mean only within the format they were read in.
const COMMENT_FINGERPRINT_SEED_PROMETHEUS: u64 = 0x0067_7561_7264_6961;
const COMMENT_FINGERPRINT_SEED_OPENMETRICS: u64 = 0x6f70_656e_6d65_7472;

impl<'a> TextParser<'a> {
    pub fn new(input: &'a str, format: Format) -> TextParser<'a> {
        TextParser {
            input,
            format,
            position: 0,
            line_number: 0,
            finished: false,
            exemplar_labels: Vec::new(),
            fingerprint_comments: false,
            comment_fingerprint: match format {
                Format::Prometheus => COMMENT_FINGERPRINT_SEED_PROMETHEUS,
                Format::OpenMetrics => COMMENT_FINGERPRINT_SEED_OPENMETRICS,
            },
        }
    }

    /// From now on comment lines (`# HELP`, `# TYPE`, `# UNIT` and free
    /// comments) are not parsed: each is found with memchr, folded into
    /// [`TextParser::comment_fingerprint`] and passed over, so no
    /// [`Entry::Metadata`] is returned (OpenMetrics `# EOF` still ends the
    /// input). For a caller that has seen the same metadata before, as a
    /// scrape loop has on nearly every scrape: when the fingerprint equals
    /// the one of a text whose metadata it read in full, the comment lines
    /// are the same (up to a 64-bit hash collision), so they parse the same.
    /// When it differs, [`TextParser::rewound`] and
    /// [`TextParser::next_metadata`] read them (and their errors, which
    /// this mode does not see).
    pub fn fingerprint_comment_lines(&mut self) {
        self.fingerprint_comments = true;
    }

    /// A hash of the bytes of every comment line passed so far while
    /// `fingerprint_comment_lines` was on (each line from its `#` to its
    /// end, in order), and of the format.
    pub fn comment_fingerprint(&self) -> u64 {
        self.comment_fingerprint
    }

    /// A new parser over the same input and format, at its start.
    pub fn rewound(&self) -> TextParser<'a> {
        TextParser::new(self.input, self.format)
    }

    /// The next `# HELP`, `# TYPE` or `# UNIT` line, passing over every
    /// other line unchecked; `Ok(None)` at the end (or OpenMetrics `# EOF`,
    /// which is not checked for what follows it) and after an error. The
    /// metadata half of a parse whose samples were read with
    /// `fingerprint_comment_lines` on: together they find every error the
    /// full parse finds.
    pub fn next_metadata(&mut self) -> Result<Option<Metadata<'a>>, TextParseError> {
        while !self.finished && self.position < self.input.len() {
            self.line_number += 1;
            let mut cursor = Cursor::new(self.input, self.position);
            cursor.skip_blanks();
            let parsed = if cursor.peek() == Some(b'#') {
                Some(self.parse_comment_line(&mut cursor))
            } else {
                None
            };
            self.position = cursor.next_line_start();
            match parsed {
                None | Some(Ok(CommentLine::Comment)) => {}
                Some(Ok(CommentLine::Metadata(metadata))) => return Ok(Some(metadata)),
                Some(Ok(CommentLine::OpenMetricsEof)) => self.finished = true,
                Some(Err(reason)) => {
                    self.finished = true;
                    return Err(TextParseError {
                        line_number: self.line_number,
                        reason,
                    });
                }
            }
        }
        self.finished = true;
        Ok(None)
    }

    /// In `fingerprint_comment_lines` mode: folds the comment line at
    /// `cursor` (on its `#`) into the fingerprint and moves the cursor to
    /// the line's end. False, cursor unmoved, for an OpenMetrics line that
    /// may be `# EOF`, which the caller parses in full.
    #[inline]
    fn fingerprint_comment_line(&mut self, cursor: &mut Cursor<'a>) -> bool {
        use std::hash::BuildHasher;
        let line_end = cursor.line_end();
        let line = cursor.bytes.get(cursor.position..line_end).unwrap_or(&[]);
        if self.format == Format::OpenMetrics && line.trim_ascii_end().ends_with(b"EOF") {
            let mut probe = Cursor::new(self.input, cursor.position);
            if matches!(
                self.parse_comment_line(&mut probe),
                Ok(CommentLine::OpenMetricsEof)
            ) {
                return false;
            }
        }
        self.comment_fingerprint =
            foldhash::fast::FixedState::with_seed(self.comment_fingerprint).hash_one(line);
        cursor.position = line_end;
        true
    }

    /// Checks that `input` is UTF-8 (one fast pass) and starts a parser.
    pub fn from_bytes(input: &'a [u8], format: Format) -> Result<TextParser<'a>, TextParseError> {
        match std::str::from_utf8(input) {
            Ok(text) => Ok(TextParser::new(text, format)),
            Err(utf8_error) => {
                let valid_prefix = input.get(..utf8_error.valid_up_to()).unwrap_or(input);
                let line_number = 1 + valid_prefix.iter().filter(|&&b| b == b'\n').count();
                Err(TextParseError {
                    line_number,
                    reason: ParseErrorReason::InvalidUtf8,
                })
            }
        }
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The next sample (written into `sample`) or metadata line; `Ok(None)`
    /// at the end of the input, and after an error.
    ///
    /// Never inlined: this is the whole per-line state machine, and one
    /// out-of-line copy keeps callers' loops small and makes the parse show
    /// up as one symbol in profiles and in `benches/parse.rs`.
    #[inline(never)]
    pub fn next_entry(
        &mut self,
        sample: &mut SampleBuf<'a>,
    ) -> Result<Option<Entry<'a>>, TextParseError> {
        if self.finished {
            return Ok(None);
        }
        // Patched in place rather than re-wrapped: the result is large and
        // this runs once per line.
        let mut result = self.parse_next_entry(sample, None);
        match &mut result {
            Ok(Some(_)) => {}
            Ok(None) => self.finished = true,
            Err(error) => {
                self.finished = true;
                error.line_number = self.line_number.max(1);
            }
        }
        result
    }

    /// `next_entry`, but each sample line's series text is first offered to
    /// `is_known_series`; when it answers true, the label set is not parsed
    /// (the sample's [`SampleBuf::labels_skipped`] is then true) and only the
    /// value and timestamp are. The series text offered is the line up to
    /// its last `}` (or up to its first blank without one), so a line whose
    /// label set is malformed is never offered text the caller has seen as
    /// a series text: the shortcut gives the same samples and the same
    /// errors as the full parse for any input, given a caller that answers
    /// true only for texts it earlier read from [`SampleBuf::series_text`]
    /// of a fully parsed line in the same format.
    #[inline(never)]
    pub fn next_entry_with_known_series(
        &mut self,
        sample: &mut SampleBuf<'a>,
        is_known_series: &mut dyn FnMut(&'a str) -> bool,
    ) -> Result<Option<Entry<'a>>, TextParseError> {
        if self.finished {
            return Ok(None);
        }
        let mut result = self.parse_next_entry(sample, Some(is_known_series));
        match &mut result {
            Ok(Some(_)) => {}
            Ok(None) => self.finished = true,
            Err(error) => {
                self.finished = true;
                error.line_number = self.line_number.max(1);
            }
        }
        result
    }

    /// One pass over the input: a sample line is parsed where it lies and
    /// its end is found on the way; only comment lines are searched for
    /// their end (with SIMD memchr).
    /// Errors leave here with line number 0; `next_entry` fills it in.
    fn parse_next_entry(
        &mut self,
        sample: &mut SampleBuf<'a>,
        mut is_known_series: Option<&mut dyn FnMut(&'a str) -> bool>,
    ) -> Result<Option<Entry<'a>>, TextParseError> {
        let at_line_set_later = |reason| TextParseError {
            line_number: 0,
            reason,
        };
        loop {
            if self.position >= self.input.len() {
                return match self.format {
                    Format::OpenMetrics => Err(at_line_set_later(ParseErrorReason::MissingEof)),
                    Format::Prometheus => Ok(None),
                };
            }
            self.line_number += 1;
            let mut cursor = Cursor::new(self.input, self.position);
            cursor.skip_blanks();
            let entry = match cursor.peek() {
                None => None,
                Some(b'#')
                    if self.fingerprint_comments && self.fingerprint_comment_line(&mut cursor) =>
                {
                    None
                }
                Some(b'#') => match self
                    .parse_comment_line(&mut cursor)
                    .map_err(at_line_set_later)?
                {
                    CommentLine::Comment => None,
                    CommentLine::Metadata(metadata) => Some(Entry::Metadata(metadata)),
                    CommentLine::OpenMetricsEof => {
                        self.position = cursor.next_line_start();
                        self.refuse_content_after_eof().map_err(at_line_set_later)?;
                        return Ok(None);
                    }
                },
                Some(_) => {
                    let known = match is_known_series.as_mut() {
                        Some(is_known_series) => {
                            self.try_known_series(&mut cursor, sample, is_known_series)
                        }
                        None => false,
                    };
                    if known {
                        self.parse_value_and_timestamp(&mut cursor, sample)
                    } else {
                        self.parse_sample_line(&mut cursor, sample)
                    }
                    .map_err(at_line_set_later)?;
                    sample.line_number = self.line_number;
                    Some(Entry::Sample)
                }
            };
            self.position = cursor.next_line_start();
            if entry.is_some() {
                return Ok(entry);
            }
        }
    }

    /// After `# EOF` only blank lines may follow; the error names the first other line.
    fn refuse_content_after_eof(&mut self) -> Result<(), ParseErrorReason> {
        while self.position < self.input.len() {
            self.line_number += 1;
            let mut cursor = Cursor::new(self.input, self.position);
            cursor.skip_blanks();
            if cursor.peek().is_some() {
                return Err(ParseErrorReason::ContentAfterEof);
            }
            self.position = cursor.next_line_start();
        }
        Ok(())
    }

    fn parse_comment_line(
        &mut self,
        cursor: &mut Cursor<'a>,
    ) -> Result<CommentLine<'a>, ParseErrorReason> {
        cursor.position += 1;
        if !cursor.skip_blanks() {
            return Ok(CommentLine::Comment);
        }
        let keyword = cursor.take_while(|byte| byte.is_ascii_uppercase());
        let keyword_ends_in_blank = cursor.skip_blanks();
        let keyword: &'static str = match keyword.as_bytes() {
            b"HELP" => "HELP",
            b"TYPE" => "TYPE",
            b"UNIT" if self.format == Format::OpenMetrics => "UNIT",
            b"EOF" if self.format == Format::OpenMetrics && cursor.peek().is_none() => {
                return Ok(CommentLine::OpenMetricsEof);
            }
            _ => return Ok(CommentLine::Comment),
        };
        if !keyword_ends_in_blank {
            // `# HELP` alone, or `# HELPER …`: a comment, as in Prometheus.
            return Ok(CommentLine::Comment);
        }
        let metric_name = match cursor.peek() {
            Some(b'"') => cursor.parse_quoted_string()?,
            Some(byte) if byte_has_class(byte, METRIC_NAME_START) => {
                Cow::Borrowed(cursor.take_name(NameKind::Metric))
            }
            _ => return Err(ParseErrorReason::MissingMetadataName { keyword }),
        };
        // The text starts after exactly one blank, as Prometheus reads it.
        match cursor.peek() {
            None => {}
            Some(b' ' | b'\t') => cursor.position += 1,
            Some(_) => {
                return Err(ParseErrorReason::InvalidMetadataName {
                    keyword,
                    found: cursor.excerpt(),
                });
            }
        }
        let kind = match keyword {
            "HELP" => MetadataKind::Help(cursor.take_help_text(self.format)),
            "TYPE" => {
                let word = cursor.take_short_text();
                match MetricType::from_word(word) {
                    Some(metric_type) => MetadataKind::Type(metric_type),
                    None => {
                        return Err(ParseErrorReason::InvalidMetricType {
                            text: excerpt_of(word),
                        });
                    }
                }
            }
            _ => MetadataKind::Unit(cursor.take_short_text()),
        };
        Ok(CommentLine::Metadata(Metadata {
            metric_name,
            kind,
            line_number: self.line_number,
        }))
    }

    /// The shortcut of `next_entry_with_known_series`: offers the line's
    /// candidate series text and, when it is known, leaves the cursor after
    /// it with the sample's labels empty. False (cursor unmoved) otherwise.
    ///
    /// Why the candidate is safe: a series text the full parse produced
    /// ends where its name ends (no `{` follows after blanks) or at the `}`
    /// closing its label set, and that parse looks at nothing past it. So a
    /// line that starts with such a text parses to that same series, with
    /// the rest of the line read as value and timestamp. The candidate is
    /// cut at the line's last `}` (a value or timestamp has none; an
    /// OpenMetrics exemplar does, which only makes the candidate unknown),
    /// or at the first blank; the one case left, a known bare name followed
    /// by a `{` without a closing `}`, is sent to the full parse.
    #[inline]
    fn try_known_series(
        &mut self,
        cursor: &mut Cursor<'a>,
        sample: &mut SampleBuf<'a>,
        is_known_series: &mut dyn FnMut(&'a str) -> bool,
    ) -> bool {
        let start = cursor.position;
        let rest = cursor.bytes.get(start..).unwrap_or(&[]);
        let line = match memchr::memchr(b'\n', rest) {
            Some(newline) => rest.get(..newline).unwrap_or(rest),
            None => rest,
        };
        let (length, ends_with_brace) = match memchr::memrchr(b'}', line) {
            Some(brace) => (brace + 1, true),
            None => (
                memchr::memchr2(b' ', b'\t', line).unwrap_or(line.len()),
                false,
            ),
        };
        let candidate = cursor.text(start, start + length);
        if candidate.is_empty() || !is_known_series(candidate) {
            return false;
        }
        cursor.position = start + length;
        cursor.skip_blanks();
        if !ends_with_brace && cursor.peek() == Some(b'{') {
            cursor.position = start;
            return false;
        }
        sample.labels.clear();
        sample.metric_name = Cow::Borrowed("");
        sample.series_text = candidate;
        sample.labels_skipped = true;
        true
    }

    fn parse_sample_line(
        &mut self,
        cursor: &mut Cursor<'a>,
        sample: &mut SampleBuf<'a>,
    ) -> Result<(), ParseErrorReason> {
        parse_series(cursor, sample)?;
        self.parse_value_and_timestamp(cursor, sample)
    }

    /// The rest of a sample line after its series and the blanks after it.
    fn parse_value_and_timestamp(
        &mut self,
        cursor: &mut Cursor<'a>,
        sample: &mut SampleBuf<'a>,
    ) -> Result<(), ParseErrorReason> {
        let value_text = cursor.take_token();
        if value_text.is_empty() {
            return Err(ParseErrorReason::MissingValue);
        }
        sample.value = number::parse_sample_value(value_text).ok_or_else(|| {
            ParseErrorReason::InvalidValue {
                text: excerpt_of(value_text),
            }
        })?;
        sample.timestamp_ms = None;
        cursor.skip_blanks();
        match cursor.peek() {
            None => return Ok(()),
            Some(b'#') => return self.skip_exemplar(cursor),
            Some(_) => {}
        }
        let timestamp_text = cursor.take_token();
        let timestamp = match self.format {
            Format::Prometheus => number::parse_prometheus_timestamp(timestamp_text),
            Format::OpenMetrics => number::parse_openmetrics_timestamp(timestamp_text),
        };
        sample.timestamp_ms =
            Some(timestamp.ok_or_else(|| ParseErrorReason::InvalidTimestamp {
                text: excerpt_of(timestamp_text),
            })?);
        cursor.skip_blanks();
        match cursor.peek() {
            None => Ok(()),
            Some(b'#') => self.skip_exemplar(cursor),
            Some(_) => Err(ParseErrorReason::TextAfterTimestamp {
                text: cursor.excerpt(),
            }),
        }
    }

    /// OpenMetrics exemplar: `# {labels} value [timestamp]`, checked, then dropped.
    fn skip_exemplar(&mut self, cursor: &mut Cursor<'a>) -> Result<(), ParseErrorReason> {
        if self.format == Format::Prometheus {
            return Err(ParseErrorReason::ExemplarInPrometheusText);
        }
        let invalid = |detail: &str| ParseErrorReason::InvalidExemplar {
            detail: detail.to_string(),
        };
        cursor.position += 1;
        cursor.skip_blanks();
        if cursor.peek() != Some(b'{') {
            return Err(invalid("expected '{' after '#'"));
        }
        cursor.position += 1;
        self.exemplar_labels.clear();
        let mut no_metric_name = None;
        cursor
            .parse_label_set(
                &mut no_metric_name,
                &mut self.exemplar_labels,
                LabelSetKind::Exemplar,
            )
            .map_err(|reason| ParseErrorReason::InvalidExemplar {
                detail: reason.to_string(),
            })?;
        cursor.skip_blanks();
        let value_text = cursor.take_token();
        if number::parse_sample_value(value_text).is_none() {
            return Err(ParseErrorReason::InvalidExemplar {
                detail: format!("invalid value {:?}", excerpt_of(value_text)),
            });
        }
        cursor.skip_blanks();
        if cursor.peek().is_some() {
            let timestamp_text = cursor.take_token();
            if number::parse_openmetrics_timestamp(timestamp_text).is_none() {
                return Err(ParseErrorReason::InvalidExemplar {
                    detail: format!("invalid timestamp {:?}", excerpt_of(timestamp_text)),
                });
            }
            cursor.skip_blanks();
            if cursor.peek().is_some() {
                return Err(ParseErrorReason::InvalidExemplar {
                    detail: format!("unexpected text {:?}", cursor.excerpt()),
                });
            }
        }
        Ok(())
    }
}

/// A position in the input. The current line ends at the next `\n` (or a
/// `\r\n`, or the end of the input), where [`Cursor::peek`] returns `None`.
/// Every index it slices at sits next to an ASCII delimiter, so slices
/// always fall on character boundaries.
struct Cursor<'a> {
    input: &'a str,
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Cursor<'a> {
    fn new(input: &'a str, position: usize) -> Cursor<'a> {
        Cursor {
            input,
            bytes: input.as_bytes(),
            position,
        }
    }

    /// The byte at the cursor, `None` at the end of the line.
    #[inline]
    fn peek(&self) -> Option<u8> {
        match self.bytes.get(self.position) {
            Some(&byte) if byte > b'\r' => Some(byte),
            None | Some(b'\n') => None,
            Some(b'\r') if self.is_line_end_after_carriage_return(self.position) => None,
            Some(&byte) => Some(byte),
        }
    }

    fn is_line_end_after_carriage_return(&self, carriage_return_index: usize) -> bool {
        matches!(
            self.bytes.get(carriage_return_index + 1),
            None | Some(b'\n')
        )
    }

    /// Index of the end of the current line (its `\r\n` or `\n`, or the input's end).
    fn line_end(&self) -> usize {
        let rest = self.bytes.get(self.position..).unwrap_or(&[]);
        let newline =
            memchr::memchr(b'\n', rest).map_or(self.bytes.len(), |offset| self.position + offset);
        if newline > self.position && self.bytes.get(newline - 1) == Some(&b'\r') {
            newline - 1
        } else {
            newline
        }
    }

    /// Where the line after the current one starts.
    fn next_line_start(&self) -> usize {
        match self.bytes.get(self.position) {
            None => self.bytes.len(),
            Some(b'\n') => self.position + 1,
            Some(_) => {
                let rest = self.bytes.get(self.position..).unwrap_or(&[]);
                memchr::memchr(b'\n', rest)
                    .map_or(self.bytes.len(), |offset| self.position + offset + 1)
            }
        }
    }

    /// `input[start..end]`; the empty string for a range that cannot occur.
    fn text(&self, start: usize, end: usize) -> &'a str {
        self.input.get(start..end).unwrap_or("")
    }

    /// Skips spaces and tabs; true when there was at least one.
    fn skip_blanks(&mut self) -> bool {
        let start = self.position;
        let mut index = start;
        while let Some(b' ' | b'\t') = self.bytes.get(index) {
            index += 1;
        }
        self.position = index;
        index > start
    }

    fn take_while(&mut self, keep: impl Fn(u8) -> bool) -> &'a str {
        let start = self.position;
        let mut index = start;
        while let Some(&byte) = self.bytes.get(index) {
            if !keep(byte) {
                break;
            }
            index += 1;
        }
        self.position = index;
        self.text(start, index)
    }

    /// A name whose first byte the caller has checked.
    fn take_name(&mut self, kind: NameKind) -> &'a str {
        let start = self.position;
        let rest = self.bytes.get(start + 1..).unwrap_or(&[]);
        self.position = start + 1 + scan::name_length(rest, kind);
        self.text(start, self.position)
    }

    /// Everything up to the next blank or the end of the line.
    fn take_token(&mut self) -> &'a str {
        let start = self.position;
        let mut index = start;
        loop {
            let rest = self.bytes.get(index..).unwrap_or(&[]);
            match rest.iter().position(|&byte| byte <= b' ') {
                None => {
                    index = self.bytes.len();
                    break;
                }
                Some(offset) => {
                    index += offset;
                    // A carriage return inside a token belongs to it.
                    if self.bytes.get(index) == Some(&b'\r')
                        && !self.is_line_end_after_carriage_return(index)
                        || !matches!(self.bytes.get(index), Some(b' ' | b'\t' | b'\n' | b'\r'))
                    {
                        index += 1;
                        continue;
                    }
                    break;
                }
            }
        }
        self.position = index;
        self.text(start, index)
    }

    /// The rest of a `# TYPE` or `# UNIT` line, trailing blanks dropped:
    /// a short word, scanned without a memchr call.
    fn take_short_text(&mut self) -> &'a str {
        let start = self.position;
        let mut end;
        loop {
            // Each round consumes at least one byte or stops at the line end.
            self.take_token();
            end = self.position;
            self.skip_blanks();
            if self.peek().is_none() {
                break;
            }
        }
        self.text(start, end)
    }

    /// The rest of a `# HELP` line with its escapes resolved: `\\` and `\n`,
    /// and in OpenMetrics also `\"`; other backslashes stay as written.
    /// One memchr2 pass finds the line end or the first backslash.
    fn take_help_text(&mut self, format: Format) -> Cow<'a, str> {
        let start = self.position;
        let rest = self.bytes.get(start..).unwrap_or(&[]);
        match memchr::memchr2(b'\n', b'\\', rest) {
            Some(offset) if rest.get(offset) == Some(&b'\n') => {
                self.position = start + offset;
                let end = if offset > 0 && rest.get(offset - 1) == Some(&b'\r') {
                    self.position - 1
                } else {
                    self.position
                };
                Cow::Borrowed(self.text(start, end))
            }
            None => {
                self.position = self.bytes.len();
                let end = if self.bytes.last() == Some(&b'\r') {
                    self.position - 1
                } else {
                    self.position
                };
                Cow::Borrowed(self.text(start, end))
            }
            Some(_) => {
                let end = self.line_end();
                self.position = end;
                unescape_help(self.text(start, end), format)
            }
        }
    }

    /// A short piece of the input at the cursor for error messages.
    fn excerpt(&self) -> String {
        excerpt_of(self.text(self.position, self.line_end()))
    }

    /// A double-quoted string at the cursor, escapes resolved. Borrowed
    /// unless it contains an escape.
    fn parse_quoted_string(&mut self) -> Result<Cow<'a, str>, ParseErrorReason> {
        let bytes = self.bytes;
        let content_start = self.position + 1;
        let content = bytes.get(content_start..).unwrap_or(&[]);
        let mut index = match scan::quoted_run_end(content) {
            None => return Err(ParseErrorReason::UnterminatedString),
            Some(offset) => content_start + offset,
        };
        match bytes.get(index) {
            Some(b'"') => {
                self.position = index + 1;
                return Ok(Cow::Borrowed(self.text(content_start, index)));
            }
            Some(b'\\') => {}
            _ => return Err(ParseErrorReason::UnterminatedString),
        }
        let mut unescaped = String::with_capacity(index - content_start + 16);
        unescaped.push_str(self.text(content_start, index));
        loop {
            match bytes.get(index) {
                None | Some(b'\n') => return Err(ParseErrorReason::UnterminatedString),
                Some(b'"') => {
                    self.position = index + 1;
                    return Ok(Cow::Owned(unescaped));
                }
                Some(b'\\') => {
                    match bytes.get(index + 1) {
                        Some(b'\\') => unescaped.push('\\'),
                        Some(b'"') => unescaped.push('"'),
                        Some(b'n') => unescaped.push('\n'),
                        None | Some(b'\n') => return Err(ParseErrorReason::UnterminatedString),
                        Some(_) => {
                            let sequence = self
                                .text(index + 1, self.bytes.len())
                                .chars()
                                .next()
                                .unwrap_or('\\');
                            return Err(ParseErrorReason::InvalidEscape { sequence });
                        }
                    }
                    index += 2;
                }
                Some(_) => {
                    let run_start = index;
                    let run = bytes.get(index..).unwrap_or(&[]);
                    index += scan::quoted_run_end(run).unwrap_or(run.len());
                    unescaped.push_str(self.text(run_start, index));
                }
            }
        }
    }

    /// The inside of `{…}`, the cursor just after `{`. Ends after `}`.
    fn parse_label_set(
        &mut self,
        metric_name: &mut Option<Cow<'a, str>>,
        labels: &mut Vec<LabelPair<'a>>,
        kind: LabelSetKind,
    ) -> Result<(), ParseErrorReason> {
        loop {
            self.skip_blanks();
            let label_name: Cow<'a, str> = match self.peek() {
                Some(b'}') => {
                    self.position += 1;
                    return Ok(());
                }
                Some(b'"') => {
                    let quoted = self.parse_quoted_string()?;
                    self.skip_blanks();
                    if kind == LabelSetKind::Series && matches!(self.peek(), Some(b',' | b'}')) {
                        if metric_name.is_some() {
                            return Err(ParseErrorReason::MetricNameTwice);
                        }
                        *metric_name = Some(quoted);
                        if self.peek() == Some(b',') {
                            self.position += 1;
                        }
                        continue;
                    }
                    if quoted.is_empty() {
                        return Err(ParseErrorReason::EmptyLabelName);
                    }
                    quoted
                }
                Some(byte) if byte_has_class(byte, LABEL_NAME_START) => {
                    Cow::Borrowed(self.take_name(NameKind::Label))
                }
                None => return Err(ParseErrorReason::MissingClosingBrace),
                Some(_) => {
                    return Err(ParseErrorReason::ExpectedLabelName {
                        found: self.excerpt(),
                    });
                }
            };
            self.skip_blanks();
            if self.peek() != Some(b'=') {
                return Err(ParseErrorReason::ExpectedEquals {
                    label_name: excerpt_of(&label_name),
                });
            }
            self.position += 1;
            self.skip_blanks();
            if self.peek() != Some(b'"') {
                return Err(ParseErrorReason::ExpectedLabelValue {
                    label_name: excerpt_of(&label_name),
                });
            }
            let label_value = self.parse_quoted_string()?;
            if kind == LabelSetKind::Series && label_name == METRIC_NAME {
                if metric_name.is_some() {
                    return Err(ParseErrorReason::DuplicateLabel {
                        label_name: METRIC_NAME.to_string(),
                    });
                }
                *metric_name = Some(label_value);
            } else {
                labels.push((label_name, label_value));
            }
            self.skip_blanks();
            match self.peek() {
                Some(b',') => self.position += 1,
                Some(b'}') => {
                    self.position += 1;
                    return Ok(());
                }
                None => return Err(ParseErrorReason::MissingClosingBrace),
                Some(_) => {
                    return Err(ParseErrorReason::ExpectedCommaOrBrace {
                        found: self.excerpt(),
                    });
                }
            }
        }
    }
}

/// The series part of a sample line (metric name and label set), leaving
/// the cursor on the blanks-skipped rest of the line. Shared by the line
/// parse and `parse_series_text`.
fn parse_series<'a>(
    cursor: &mut Cursor<'a>,
    sample: &mut SampleBuf<'a>,
) -> Result<(), ParseErrorReason> {
    sample.labels.clear();
    sample.labels_skipped = false;
    let series_start = cursor.position;
    let mut metric_name: Option<Cow<'a, str>> = None;
    match cursor.peek() {
        Some(byte) if byte_has_class(byte, METRIC_NAME_START) => {
            metric_name = Some(Cow::Borrowed(cursor.take_name(NameKind::Metric)));
        }
        Some(b'"') => metric_name = Some(cursor.parse_quoted_string()?),
        Some(b'{') => {}
        _ => {
            return Err(ParseErrorReason::ExpectedMetricName {
                found: cursor.excerpt(),
            });
        }
    }
    let mut series_end = cursor.position;
    cursor.skip_blanks();
    if cursor.peek() == Some(b'{') {
        cursor.position += 1;
        cursor.parse_label_set(&mut metric_name, &mut sample.labels, LabelSetKind::Series)?;
        if let Some(duplicate) =
            find_duplicate_label(&sample.labels, &mut sample.duplicate_check_indices)
        {
            return Err(ParseErrorReason::DuplicateLabel {
                label_name: duplicate,
            });
        }
        series_end = cursor.position;
        cursor.skip_blanks();
    }
    sample.metric_name = match metric_name {
        Some(name) if name.is_empty() => return Err(ParseErrorReason::EmptyMetricName),
        Some(name) => name,
        None => return Err(ParseErrorReason::MissingMetricName),
    };
    sample.series_text = cursor.text(series_start, series_end);
    Ok(())
}

/// Parses a series text as [`SampleBuf::series_text`] gave it (the name
/// and label set of a line, as written) into `sample`'s metric name and
/// labels; value, timestamp and line number stay as they were. For a
/// caller that skipped a line's labels (`next_entry_with_known_series`)
/// and needs them after all. Errors (with the sample's line number) when
/// the text is not exactly one series.
pub fn parse_series_text<'a>(
    series_text: &'a str,
    sample: &mut SampleBuf<'a>,
) -> Result<(), TextParseError> {
    let mut cursor = Cursor::new(series_text, 0);
    let mut parsed = parse_series(&mut cursor, sample);
    if parsed.is_ok() && cursor.peek().is_some() {
        parsed = Err(ParseErrorReason::TextAfterSeries {
            text: cursor.excerpt(),
        });
    }
    parsed.map_err(|reason| TextParseError {
        line_number: sample.line_number.max(1),
        reason,
    })
}

/// The name of a label that occurs twice, if any.
fn find_duplicate_label(labels: &[LabelPair<'_>], indices: &mut Vec<u32>) -> Option<String> {
    if labels.len() <= DUPLICATE_CHECK_PAIRWISE_LIMIT {
        for (index, (name, _)) in labels.iter().enumerate() {
            if labels[index + 1..].iter().any(|(other, _)| other == name) {
                return Some(excerpt_of(name));
            }
        }
        return None;
    }
    indices.clear();
    indices.extend((0..labels.len()).filter_map(|index| u32::try_from(index).ok()));
    indices.sort_unstable_by(|&a, &b| labels[a as usize].0.cmp(&labels[b as usize].0));
    indices
        .windows(2)
        .find(|pair| labels[pair[0] as usize].0 == labels[pair[1] as usize].0)
        .map(|pair| excerpt_of(&labels[pair[0] as usize].0))
}

/// HELP escapes: `\\` and `\n` in both formats, `\"` in OpenMetrics; any
/// other backslash stays as written (Prometheus does the same).
fn unescape_help(text: &str, format: Format) -> Cow<'_, str> {
    if memchr::memchr(b'\\', text.as_bytes()).is_none() {
        return Cow::Borrowed(text);
    }
    let mut unescaped = String::with_capacity(text.len());
    let mut characters = text.chars().peekable();
    while let Some(character) = characters.next() {
        if character != '\\' {
            unescaped.push(character);
            continue;
        }
        match characters.peek() {
            Some('\\') => unescaped.push('\\'),
            Some('n') => unescaped.push('\n'),
            Some('"') if format == Format::OpenMetrics => unescaped.push('"'),
            _ => {
                unescaped.push('\\');
                continue;
            }
        }
        characters.next();
    }
    Cow::Owned(unescaped)
}

fn excerpt_of(text: &str) -> String {
    let mut characters = text.char_indices();
    match characters.nth(ERROR_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", text.get(..cut).unwrap_or("")),
        None => text.to_string(),
    }
}

/// Every entry of `input` as text (a sample as its labels, value bits,
/// timestamp and line), the final error included; with `known` the
/// series shortcut is offered those texts, and a skipped line reads its
/// labels from `known`. Shared by the unit test and the `text_known_series`
/// fuzz target, which compare the shortcut with the full parse.
#[doc(hidden)]
pub fn entries_with_known_series(
    input: &str,
    format: Format,
    known: Option<&std::collections::HashMap<String, String>>,
    series_texts_seen: &mut std::collections::HashMap<String, String>,
) -> Vec<String> {
    let mut parser = TextParser::new(input, format);
    let mut sample = SampleBuf::new();
    let mut entries = Vec::new();
    loop {
        let entry = match known {
            Some(known) => parser
                .next_entry_with_known_series(&mut sample, &mut |text| known.contains_key(text)),
            None => parser.next_entry(&mut sample),
        };
        match entry {
            Ok(Some(Entry::Sample)) => {
                let labels = if sample.labels_skipped() {
                    known
                        .and_then(|known| known.get(sample.series_text()))
                        .cloned()
                } else {
                    let labels = sample.to_labels().to_string();
                    let earlier = series_texts_seen
                        .entry(sample.series_text().to_string())
                        .or_insert_with(|| labels.clone());
                    assert_eq!(*earlier, labels, "one series text, two label sets");
                    Some(labels)
                };
                entries.push(format!(
                    "{labels:?} {:x} {:?} line {}",
                    sample.value().to_bits(),
                    sample.timestamp_ms(),
                    sample.line_number()
                ));
            }
            Ok(Some(Entry::Metadata(metadata))) => entries.push(format!("{metadata:?}")),
            Ok(None) => return entries,
            Err(error) => {
                entries.push(error.to_string());
                return entries;
            }
        }
    }
}

/// The parse of `input` as the scrape loop reads it, in the shape of
/// `entries_with_known_series` without `known`: a first pass with
/// `fingerprint_comment_lines` (samples, and its error), then
/// `next_metadata` over a rewound parser (metadata lines, and its error),
/// merged by line number and cut at the earlier error. Also returns the
/// comment fingerprint of the first pass. Shared by the unit test and the
/// `text_fingerprinted_comments` fuzz target, which compare it with the
/// full parse.
#[doc(hidden)]
pub fn entries_in_two_passes(input: &str, format: Format) -> (Vec<String>, u64) {
    let mut lines: Vec<(usize, String)> = Vec::new();
    let mut first_error: Option<TextParseError> = None;
    let mut parser = TextParser::new(input, format);
    parser.fingerprint_comment_lines();
    let mut sample = SampleBuf::new();
    loop {
        match parser.next_entry(&mut sample) {
            Ok(Some(Entry::Sample)) => lines.push((
                sample.line_number(),
                format!(
                    "{:?} {:x} {:?} line {}",
                    Some(sample.to_labels().to_string()),
                    sample.value().to_bits(),
                    sample.timestamp_ms(),
                    sample.line_number()
                ),
            )),
            Ok(Some(Entry::Metadata(metadata))) => {
                lines.push((metadata.line_number, format!("unexpected {metadata:?}")));
            }
            Ok(None) => break,
            Err(error) => {
                first_error = Some(error);
                break;
            }
        }
    }
    let fingerprint = parser.comment_fingerprint();
    let mut metadata_parser = parser.rewound();
    loop {
        match metadata_parser.next_metadata() {
            Ok(Some(metadata)) => lines.push((metadata.line_number, format!("{metadata:?}"))),
            Ok(None) => break,
            Err(error) => {
                if first_error
                    .as_ref()
                    .is_none_or(|first| error.line_number <= first.line_number)
                {
                    first_error = Some(error);
                }
                break;
            }
        }
    }
    lines.sort_by_key(|(line_number, _)| *line_number);
    let mut entries: Vec<String> = lines
        .into_iter()
        .filter(|(line_number, _)| {
            first_error
                .as_ref()
                // `<=`: the end-of-input error carries the last line's number.
                .is_none_or(|error| *line_number <= error.line_number)
        })
        .map(|(_, entry)| entry)
        .collect();
    if let Some(error) = first_error {
        entries.push(error.to_string());
    }
    (entries, fingerprint)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn collect(
        input: &str,
        format: Format,
    ) -> Result<Vec<(String, f64, Option<i64>)>, TextParseError> {
        let mut parser = TextParser::new(input, format);
        let mut sample = SampleBuf::new();
        let mut samples = Vec::new();
        while let Some(entry) = parser.next_entry(&mut sample)? {
            if entry == Entry::Sample {
                samples.push((
                    sample.to_labels().to_string(),
                    sample.value(),
                    sample.timestamp_ms(),
                ));
            }
        }
        Ok(samples)
    }

    #[test]
    fn known_series_shortcut_parses_exactly_like_the_full_parse() {
        let inputs = [
            "up 1 1000\nup 2 2000\nup{job=\"a\"} 3\n  up{job=\"a\"}   4 5\n",
            "a{b=\"}\",c=\"x y\"} 1\na{b=\"}\",c=\"x y\"} 2 3\n",
            // A known bare name, then the same name with an unclosed label set.
            "up 1\nup {job=\"a\" 2\n",
            "up 1\nup {job=\"a\"} 2\nup\t{job=\"a\"} 3\n",
            // A known series followed by garbage where the value belongs.
            "m{a=\"1\"} 1\nm{a=\"1\"} x\n",
            "m{a=\"1\"} 1\nm{a=\"1\"} 2 3 }\n",
            "m{a=\"1\"} 1\nm{a=\"1\"}} 2\n",
            "{\"my.metric\", \"a.b\"=\"c\"} 1\n{\"my.metric\", \"a.b\"=\"c\"} 2\n",
            "\"quoted name\" 1\n\"quoted name\" 2\n",
            "m{a=\"1\"} 1\r\nm{a=\"1\"} 2\r\n# HELP m x\nm 3\n",
            "m{a=\"1\"} 1 # {t=\"x\"} 1\nm{a=\"1\"} 2 # {t=\"y\"} 1 2\n# EOF\n",
            "m{a=\"1\",a=\"2\"} 1\n",
            "m{a=\"1\"} 1\nm{a=\"1\"}\n",
        ];
        for input in inputs {
            for format in [Format::Prometheus, Format::OpenMetrics] {
                let mut known = HashMap::new();
                let full = entries_with_known_series(input, format, None, &mut known);
                let mut unused = HashMap::new();
                let shortcut = entries_with_known_series(input, format, Some(&known), &mut unused);
                assert_eq!(full, shortcut, "{input:?} as {format:?}");
            }
        }
        // The shortcut is taken: a known series' labels are not parsed.
        let mut known = HashMap::new();
        known.insert("m{a=\"1\"}".to_string(), String::new());
        let mut parser = TextParser::new("m{a=\"1\"} 7 8\n", Format::Prometheus);
        let mut sample = SampleBuf::new();
        let entry =
            parser.next_entry_with_known_series(&mut sample, &mut |text| known.contains_key(text));
        assert!(matches!(entry, Ok(Some(Entry::Sample))));
        assert!(sample.labels_skipped());
        assert_eq!(sample.series_text(), "m{a=\"1\"}");
        assert_eq!((sample.value(), sample.timestamp_ms()), (7.0, Some(8)));
    }

    #[test]
    fn recycled_pair_storage_keeps_its_allocation() {
        let mut storage: Vec<(&str, &str)> = Vec::with_capacity(16);
        let owned = String::from("x");
        storage.push((owned.as_str(), owned.as_str()));
        let pointer = storage.as_ptr() as usize;
        let recycled: Vec<(&'static str, &'static str)> = recycle_pair_storage(storage);
        assert!(recycled.is_empty());
        assert_eq!(recycled.capacity(), 16);
        assert_eq!(recycled.as_ptr() as usize, pointer);
    }

    #[test]
    fn sorted_pairs_include_the_name_drop_empty_values_and_let_extras_win() {
        let mut parser =
            TextParser::new("m{b=\"2\",a=\"1\",e=\"\",Z=\"z\"} 1\n", Format::Prometheus);
        let mut sample = SampleBuf::new();
        assert_eq!(parser.next_entry(&mut sample), Ok(Some(Entry::Sample)));
        let pairs = sample.with_sorted_label_pairs(&[("b", "x"), ("c", "3"), ("a", "")], |pairs| {
            pairs
                .iter()
                .map(|(n, v)| format!("{n}={v}"))
                .collect::<Vec<_>>()
        });
        assert_eq!(pairs, ["Z=z", "__name__=m", "b=x", "c=3"]);
    }

    #[test]
    fn many_labels_use_the_sorting_duplicate_check() {
        let mut input = String::from("m{");
        for index in 0..40 {
            input.push_str(&format!("l{index}=\"v\","));
        }
        assert_eq!(
            collect(&format!("{input}}} 1\n"), Format::Prometheus).map(|s| s.len()),
            Ok(1)
        );
        let error = collect(&format!("{input}l7=\"again\"}} 1\n"), Format::Prometheus).unwrap_err();
        assert_eq!(
            error.reason,
            ParseErrorReason::DuplicateLabel {
                label_name: "l7".into()
            }
        );
    }

    #[test]
    fn content_type_selects_the_format() {
        assert_eq!(
            Format::from_content_type("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type(" Application/OpenMetrics-Text"),
            Format::OpenMetrics
        );
        assert_eq!(
            Format::from_content_type("text/plain; version=0.0.4"),
            Format::Prometheus
        );
        assert_eq!(Format::from_content_type(""), Format::Prometheus);
    }

    #[test]
    fn invalid_utf8_reports_its_line() {
        let error =
            TextParser::from_bytes(b"a 1\nb 2\nc{x=\"\xff\"} 3\n", Format::Prometheus).unwrap_err();
        assert_eq!(error.line_number, 3);
        assert_eq!(error.reason, ParseErrorReason::InvalidUtf8);
    }

    #[test]
    fn long_excerpts_are_cut_on_a_character_boundary() {
        let text = "é".repeat(40);
        let excerpt = excerpt_of(&text);
        assert_eq!(excerpt.chars().count(), ERROR_EXCERPT_CHARS + 1);
        assert!(excerpt.ends_with('…'));
    }

    #[test]
    fn fingerprinted_comment_lines_then_metadata_read_as_the_full_parse() {
        let inputs = [
            "# HELP a Some help.\n# TYPE a counter\na{x=\"1\"} 1\n# free comment\nb 2 1000\n",
            "a 1\n# TYPE a bogus\nb 2\n",
            "# TYPE a bogus\na{x=} 1\n",
            "a{x=} 1\n# TYPE a bogus\n",
            "# HELP a x\\ny\r\n  # TYPE a gauge\r\na 1\r\n",
            "# TYPE a gauge\n# UNIT a seconds\na 1 1.5\n# EOF\n",
            "# TYPE a gauge\na 1\n#  EOF  \n\n",
            "# TYPE a gauge\na 1\n# EOF\n# HELP a late\n",
            "# HELP a ends in EOF\na 1\n# EOF\n",
            "# TYPE a gauge\na 1\n",
            "a 1\n# TYPE a bogus",
        ];
        for input in inputs {
            for format in [Format::Prometheus, Format::OpenMetrics] {
                let full = entries_with_known_series(input, format, None, &mut HashMap::new());
                let (two_passes, _) = entries_in_two_passes(input, format);
                assert_eq!(full, two_passes, "{input:?} as {format:?}");
            }
        }
    }

    #[test]
    fn the_comment_fingerprint_follows_comment_lines_only() {
        let fingerprint = |input: &str, format: Format| entries_in_two_passes(input, format).1;
        let base = "# HELP a Help.\n# TYPE a gauge\na 1\n";
        assert_eq!(
            fingerprint(base, Format::Prometheus),
            fingerprint("# HELP a Help.\n# TYPE a gauge\na 2\n", Format::Prometheus),
            "a new value keeps it"
        );
        assert_eq!(
            fingerprint(base, Format::Prometheus),
            fingerprint(
                "  # HELP a Help.\r\n# TYPE a gauge\na 1\n",
                Format::Prometheus
            ),
            "indentation and line ends are not part of a line"
        );
        for changed in [
            "# HELP a Help!\n# TYPE a gauge\na 1\n",
            "# HELP a Help.\n# TYPE a counter\na 1\n",
            "# TYPE a gauge\n# HELP a Help.\na 1\n",
            "# HELP a Help.\n# TYPE a gauge\n# note\na 1\n",
            "# HELP a Help.\na 1\n",
        ] {
            assert_ne!(
                fingerprint(base, Format::Prometheus),
                fingerprint(changed, Format::Prometheus),
                "{changed:?}"
            );
        }
        assert_ne!(
            fingerprint(base, Format::Prometheus),
            fingerprint(base, Format::OpenMetrics)
        );
    }

    #[test]
    fn a_series_text_parses_back_to_its_labels() {
        let mut sample = SampleBuf::new();
        let mut parser = TextParser::new("m {b=\"x\\\"y\",a=\"1\",} 5\n", Format::Prometheus);
        assert_eq!(parser.next_entry(&mut sample), Ok(Some(Entry::Sample)));
        let series_text = sample.series_text();
        let expected = sample.to_labels();
        let mut again = SampleBuf::new();
        parse_series_text(series_text, &mut again).expect("series text parses");
        assert_eq!(again.to_labels(), expected);
        assert!(!again.labels_skipped());
        let mut bad = SampleBuf::new();
        assert!(parse_series_text("m{a=\"1\"} 5", &mut bad).is_err());
        assert!(parse_series_text("m{a=\"1\"", &mut bad).is_err());
        assert!(parse_series_text("", &mut bad).is_err());
    }
}
