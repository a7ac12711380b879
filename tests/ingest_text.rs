//! Tests of the text exposition parser (`guardia::ingest::text`) against
//! real exporter output (committed captures and a live node_exporter), a
//! table of edge cases with their exact verdicts, the `prometheus-parse`
//! crate as a differential oracle, print-then-parse properties, and a
//! counting allocator that proves the steady state allocates nothing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use guardia::ingest::text::{
    Entry, Format, MetadataKind, MetricType, SampleBuf, TextParseError, TextParser, write_help,
    write_openmetrics_eof, write_sample, write_type,
};
use guardia::model::{MetricMetadata, is_legacy_label_name, is_legacy_metric_name};
use proptest::prelude::*;

const NODE_EXPORTER_PROM: &str = include_str!("data/node_exporter.prom");
const NODE_EXPORTER_OM: &str = include_str!("data/node_exporter.om.txt");
const NODE_EXPORTER_BINARY: &str = "/usr/bin/prometheus-node-exporter";

// ---------------------------------------------------------------------------
// Allocation counting, per thread so that parallel tests do not interfere.

struct CountingAllocator;

thread_local! {
    static COUNT_ALLOCATIONS: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // `try_with`: the thread-locals may be gone while a thread shuts down.
    let counting = COUNT_ALLOCATIONS.try_with(Cell::get).unwrap_or(false);
    if counting {
        let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
    }
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn allocations_during(work: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|count| count.set(0));
    COUNT_ALLOCATIONS.with(|counting| counting.set(true));
    work();
    COUNT_ALLOCATIONS.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
}

// ---------------------------------------------------------------------------
// Helpers.

/// A parsed sample in owned form, labels as written (name excluded).
#[derive(Clone, Debug)]
struct OwnedSample {
    metric_name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
    line_number: usize,
}

impl OwnedSample {
    fn same_as(&self, other: &OwnedSample) -> bool {
        self.metric_name == other.metric_name
            && self.labels == other.labels
            && self.timestamp_ms == other.timestamp_ms
            && same_value(self.value, other.value)
    }
}

/// Bit equality, except that any NaN equals any NaN: text carries no payloads.
fn same_value(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits()
}

#[derive(Debug, Default)]
struct Parsed {
    samples: Vec<OwnedSample>,
    metadata: Vec<(String, String)>,
}

fn parse_all(input: &str, format: Format) -> Result<Parsed, TextParseError> {
    let mut parser = TextParser::new(input, format);
    let mut sample = SampleBuf::new();
    let mut parsed = Parsed::default();
    while let Some(entry) = parser.next_entry(&mut sample)? {
        match entry {
            Entry::Sample => parsed.samples.push(OwnedSample {
                metric_name: sample.metric_name().to_string(),
                labels: sample
                    .labels()
                    .map(|(name, value)| (name.to_string(), value.to_string()))
                    .collect(),
                value: sample.value(),
                timestamp_ms: sample.timestamp_ms(),
                line_number: sample.line_number(),
            }),
            Entry::Metadata(metadata) => {
                let text = match &metadata.kind {
                    MetadataKind::Help(help) => format!("HELP {help}"),
                    MetadataKind::Type(metric_type) => format!("TYPE {}", metric_type.as_str()),
                    MetadataKind::Unit(unit) => format!("UNIT {unit}"),
                };
                parsed
                    .metadata
                    .push((metadata.metric_name.to_string(), text));
            }
        }
    }
    Ok(parsed)
}

/// A compact, unambiguous rendering: `name{label="value"} value @timestamp`,
/// strings in Rust debug quoting where they are not plain names.
fn render(sample: &OwnedSample) -> String {
    let mut text = if is_legacy_metric_name(&sample.metric_name) {
        sample.metric_name.clone()
    } else {
        format!("{:?}", sample.metric_name)
    };
    if !sample.labels.is_empty() {
        let labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(name, value)| {
                if is_legacy_label_name(name) {
                    format!("{name}={value:?}")
                } else {
                    format!("{name:?}={value:?}")
                }
            })
            .collect();
        text.push_str(&format!("{{{}}}", labels.join(",")));
    }
    text.push_str(&format!(" {}", sample.value));
    if let Some(timestamp) = sample.timestamp_ms {
        text.push_str(&format!(" @{timestamp}"));
    }
    text
}

/// Lines that are neither blank nor comments: the samples, counted without the parser.
fn count_sample_lines(text: &str) -> usize {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .count()
}

// ---------------------------------------------------------------------------
// Real exporter output.

#[test]
fn node_exporter_text_capture_parses_completely() {
    let parsed = parse_all(NODE_EXPORTER_PROM, Format::Prometheus).unwrap();
    assert_eq!(parsed.samples.len(), count_sample_lines(NODE_EXPORTER_PROM));
    assert_eq!(parsed.samples.len(), 507);
    let rendered: Vec<String> = parsed.samples.iter().map(render).collect();
    for expected in [
        "node_load1 0.42",
        "node_boot_time_seconds 1795470476",
        "node_memory_MemTotal_bytes 25276063744",
        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"} 857.94",
        "go_info{version=\"go1.19.8\"} 1",
        "node_network_info{address=\"00:00:00:00:00:00\",broadcast=\"00:00:00:00:00:00\",device=\"lo\",duplex=\"\",ifalias=\"\",operstate=\"unknown\"} 1",
        "node_uname_info{domainname=\"(none)\",machine=\"x86_64\",nodename=\"vm\",release=\"6.18.44-fc-v782\",sysname=\"Linux\",version=\"#1 SMP PREEMPT_DYNAMIC @0\"} 1",
    ] {
        assert!(
            rendered.iter().any(|line| line == expected),
            "missing {expected}"
        );
    }
    // Every sample line number points at a line that starts with its name.
    let lines: Vec<&str> = NODE_EXPORTER_PROM.lines().collect();
    for sample in &parsed.samples {
        assert!(lines[sample.line_number - 1].starts_with(&sample.metric_name));
    }
    assert!(parsed.metadata.contains(&(
        "node_load1".to_string(),
        "HELP 1m load average.".to_string()
    )));
    assert!(
        parsed
            .metadata
            .contains(&("node_load1".to_string(), "TYPE gauge".to_string()))
    );
}

#[test]
fn node_exporter_openmetrics_capture_matches_the_text_capture() {
    let openmetrics = parse_all(NODE_EXPORTER_OM, Format::OpenMetrics).unwrap();
    assert_eq!(
        openmetrics.samples.len(),
        count_sample_lines(NODE_EXPORTER_OM)
    );
    let text = parse_all(NODE_EXPORTER_PROM, Format::Prometheus).unwrap();
    // The same scrape re-encoded: same series and values, in the same order.
    assert_eq!(openmetrics.samples.len(), text.samples.len());
    for (from_openmetrics, from_text) in openmetrics.samples.iter().zip(&text.samples) {
        assert!(
            from_openmetrics.same_as(from_text),
            "{} != {}",
            render(from_openmetrics),
            render(from_text)
        );
    }
    assert!(
        openmetrics
            .metadata
            .contains(&("node_load1".to_string(), "TYPE gauge".to_string()))
    );
}

#[test]
fn node_exporter_capture_is_parsed_without_allocating_in_the_steady_state() {
    let mut sample = SampleBuf::new();
    let mut metadata = MetricMetadata::default();
    let mut parse_and_sort = |sample: &mut SampleBuf<'static>| {
        let mut parser = TextParser::new(NODE_EXPORTER_PROM, Format::Prometheus);
        let mut pairs_seen = 0usize;
        while let Some(entry) = parser.next_entry(sample).unwrap() {
            match entry {
                Entry::Sample => {
                    pairs_seen += sample.with_sorted_label_pairs(&[("site", "x")], |pairs| {
                        assert!(pairs.windows(2).all(|pair| pair[0].0 < pair[1].0));
                        pairs.len()
                    })
                }
                Entry::Metadata(entry) => {
                    if let MetadataKind::Type(metric_type) = entry.kind {
                        metadata.metric_type.clear();
                        metadata.metric_type.push_str(metric_type.as_str());
                    }
                }
            }
        }
        pairs_seen
    };
    // The counter sees allocations at all (or the zero below proves nothing).
    assert!(allocations_during(|| drop(std::hint::black_box(vec![1u8; 8]))) >= 1);
    let warm_up = parse_and_sort(&mut sample);
    let mut steady = 0;
    let allocations = allocations_during(|| steady = parse_and_sort(&mut sample));
    assert_eq!(warm_up, steady);
    assert!(steady > 507 * 2);
    assert_eq!(allocations, 0);
}

/// Kills the exporter when the test ends, however it ends.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(port: u16, accept: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: {accept}\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body_start = response
        .find("\r\n\r\n")
        .map(|index| index + 4)
        .unwrap_or(response.len());
    Ok(response[body_start..].to_string())
}

#[test]
fn live_node_exporter_scrape_parses_every_sample() {
    if !std::path::Path::new(NODE_EXPORTER_BINARY).exists() {
        eprintln!("skipped: {NODE_EXPORTER_BINARY} is not installed");
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let exporter = ChildGuard(
        Command::new(NODE_EXPORTER_BINARY)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        match http_get(port, "text/plain") {
            Ok(body) if !body.is_empty() => break body,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            other => panic!("node_exporter did not answer: {other:?}"),
        }
    };
    let parsed = parse_all(&body, Format::Prometheus).unwrap();
    assert_eq!(parsed.samples.len(), count_sample_lines(&body));
    assert!(parsed.samples.len() > 100);
    assert!(parsed.samples.iter().any(|s| s.metric_name == "node_load1"));
    // Whatever the exporter negotiates for an OpenMetrics request, the
    // parser for the format it declares reads all of it.
    let openmetrics_body = http_get(port, "application/openmetrics-text; version=1.0.0").unwrap();
    let format = if openmetrics_body.trim_end().ends_with("# EOF") {
        Format::OpenMetrics
    } else {
        Format::Prometheus
    };
    let parsed = parse_all(&openmetrics_body, format).unwrap();
    assert_eq!(parsed.samples.len(), count_sample_lines(&openmetrics_body));
    drop(exporter);
}

// ---------------------------------------------------------------------------
// Edge cases, each with its exact result.

const PROM: Format = Format::Prometheus;
const OM: Format = Format::OpenMetrics;

fn check_accepts(format: Format, input: &str, expected: &[&str]) {
    let parsed = parse_all(input, format)
        .unwrap_or_else(|error| panic!("{format:?} {input:?} failed: {error}"));
    let rendered: Vec<String> = parsed.samples.iter().map(render).collect();
    assert_eq!(rendered, expected, "{format:?} {input:?}");
}

fn check_refuses(format: Format, input: &str, expected: &str) {
    match parse_all(input, format) {
        Ok(parsed) => panic!("{format:?} {input:?} was accepted: {:?}", parsed.samples),
        Err(error) => assert_eq!(error.to_string(), expected, "{format:?} {input:?}"),
    }
}

#[test]
fn edge_cases_that_parse() {
    let cases: &[(Format, &str, &[&str])] = &[
        (PROM, "m 1\n", &["m 1"]),
        (PROM, "m 1", &["m 1"]),
        (PROM, "", &[]),
        (PROM, "\n\n  \n", &[]),
        (PROM, "a:b_c 1\n", &["a:b_c 1"]),
        (
            PROM,
            "m{a=\"b\",c=\"d\"} 2 1700000000000\n",
            &["m{a=\"b\",c=\"d\"} 2 @1700000000000"],
        ),
        // Escapes in label values, and a value that borrows after an escaped one.
        (
            PROM,
            "m{a=\"x\\\"y\\\\z\\nw\",b=\"plain\"} 1\n",
            &["m{a=\"x\\\"y\\\\z\\nw\",b=\"plain\"} 1"],
        ),
        (PROM, "m{a=\"é ü 日本\"} 1\n", &["m{a=\"é ü 日本\"} 1"]),
        // Characters that confuse naive parsers inside values.
        (
            PROM,
            "m{a=\"x,y=z}\",b=\"# q\"} 1\n",
            &["m{a=\"x,y=z}\",b=\"# q\"} 1"],
        ),
        // Quoted UTF-8 names (Prometheus 3.x).
        (
            PROM,
            "{\"my.metric\", \"a.b\"=\"c\"} 1\n",
            &["\"my.metric\"{\"a.b\"=\"c\"} 1"],
        ),
        (
            PROM,
            "\"my.metric\"{a=\"b\"} 2\n",
            &["\"my.metric\"{a=\"b\"} 2"],
        ),
        (PROM, "{\"my.metric\"} 3\n", &["\"my.metric\" 3"]),
        (
            PROM,
            "{a=\"b\", \"my.metric\"} 4\n",
            &["\"my.metric\"{a=\"b\"} 4"],
        ),
        (
            PROM,
            "m{\"quote\\\"d\"=\"v\"} 5\n",
            &["m{\"quote\\\"d\"=\"v\"} 5"],
        ),
        (PROM, "{__name__=\"m\",a=\"b\"} 6\n", &["m{a=\"b\"} 6"]),
        // Special values and Go float syntax.
        (
            PROM,
            "m NaN\nm +Inf\nm -Inf\nm Inf\nm nan\nm inf\n",
            &["m NaN", "m inf", "m -inf", "m inf", "m NaN", "m inf"],
        ),
        (
            PROM,
            "m 1e3\nm .5\nm 5.\nm -0\nm 1.5E-3\nm +7\n",
            &["m 1000", "m 0.5", "m 5", "m -0", "m 0.0015", "m 7"],
        ),
        (PROM, "m 2.5276063744e+010\n", &["m 25276063744"]),
        // Timestamps: signed integer milliseconds.
        (
            PROM,
            "m 1 -1000\nm 1 0\nm 1 +5\n",
            &["m 1 @-1000", "m 1 @0", "m 1 @5"],
        ),
        (
            PROM,
            "m 1 9223372036854775807\n",
            &["m 1 @9223372036854775807"],
        ),
        // Layout: trailing commas, blanks anywhere, tabs, CRLF, comments.
        (PROM, "m{a=\"b\",} 1\n", &["m{a=\"b\"} 1"]),
        (
            PROM,
            "m { a = \"b\" , c=\"d\" , } 1\n",
            &["m{a=\"b\",c=\"d\"} 1"],
        ),
        (PROM, "\tm\t1\t2\t\n", &["m 1 @2"]),
        (PROM, "m 1\r\nn 2\r\n", &["m 1", "n 2"]),
        (
            PROM,
            "m 1 5\r\nn{a=\"x\ry\"} 2\r",
            &["m 1 @5", "n{a=\"x\\ry\"} 2"],
        ),
        (PROM, "m{a=\"b\"}\t1\r\n\r\n# c\r\n", &["m{a=\"b\"} 1"]),
        (PROM, "m{a=\"b\"}1\n", &["m{a=\"b\"} 1"]),
        (PROM, "m{} 1\n", &["m 1"]),
        (
            PROM,
            "# plain comment\n#no space\n# UNIT m seconds\n# EOF\nm 1\n",
            &["m 1"],
        ),
        (PROM, "# HELP\n# TYPEWRITER x\nm 1\n", &["m 1"]),
        (PROM, "m{a=\"\"} 1\n", &["m{a=\"\"} 1"]),
        // OpenMetrics: float-second timestamps, exemplars, # EOF.
        (
            OM,
            "m_total 1 1700000000.5\n# EOF\n",
            &["m_total 1 @1700000000500"],
        ),
        (OM, "m_total 1 -1.5\n# EOF", &["m_total 1 @-1500"]),
        (OM, "m_total 1 1.0009\n# EOF\n", &["m_total 1 @1000"]),
        (OM, "m_total 1 1e3\n# EOF\n", &["m_total 1 @1000000"]),
        (
            OM,
            "m_bucket{le=\"1\"} 2 # {trace_id=\"abc\"} 0.5 1700000000.1\n# EOF\n",
            &["m_bucket{le=\"1\"} 2"],
        ),
        (
            OM,
            "m_total 1 1.5 # {a=\"b\"} 1\n# EOF\n",
            &["m_total 1 @1500"],
        ),
        (OM, "m_total 1 # {} 1\n# EOF\n", &["m_total 1"]),
        (
            OM,
            "# UNIT m_seconds seconds\nm_seconds 1\n# EOF\n\n\n",
            &["m_seconds 1"],
        ),
        (
            OM,
            "# HELP m x\n# TYPE m gaugehistogram\n# some comment\nm 1\n# EOF\r\n",
            &["m 1"],
        ),
    ];
    for (format, input, expected) in cases {
        check_accepts(*format, input, expected);
    }
}

#[test]
fn edge_cases_that_fail_with_their_line_number() {
    let cases: &[(Format, &str, &str)] = &[
        (
            PROM,
            "m 1\nm 2\nm abc\n",
            "line 3: invalid sample value \"abc\"",
        ),
        (
            PROM,
            "m{a=\"b\" 1\n",
            "line 1: expected ',' or '}' in the label set, found \"1\"",
        ),
        (
            PROM,
            "ok 1\nm{a=\"b\"\n",
            "line 2: missing '}' at the end of the label set",
        ),
        (
            PROM,
            "m{a=\"b\",\n",
            "line 1: missing '}' at the end of the label set",
        ),
        (PROM, "m{a=\"b} 1\n", "line 1: unterminated quoted string"),
        (
            PROM,
            "m{a=\"b\\\"} 1\n",
            "line 1: unterminated quoted string",
        ),
        (
            PROM,
            "m{a=\"b\nc\"} 1\n",
            "line 1: unterminated quoted string",
        ),
        (
            PROM,
            "m{a=\"\\t\"} 1\n",
            "line 1: invalid escape sequence \"\\t\" (allowed: \\\\, \\\", \\n)",
        ),
        (
            PROM,
            "m{a=\"x\\é\"} 1\n",
            "line 1: invalid escape sequence \"\\é\" (allowed: \\\\, \\\", \\n)",
        ),
        (
            PROM,
            "\n\nm{a=\"1\",b=\"2\",a=\"3\"} 1\n",
            "line 3: duplicate label name \"a\"",
        ),
        (
            PROM,
            "m{__name__=\"x\"} 1\n",
            "line 1: duplicate label name \"__name__\"",
        ),
        (
            PROM,
            "\"a\"{\"b\"} 1\n",
            "line 1: the metric name is given twice",
        ),
        (
            PROM,
            "{a=\"b\"} 1\n",
            "line 1: label set without a metric name",
        ),
        (PROM, "{\"\"} 1\n", "line 1: empty metric name"),
        (PROM, "m{\"\"=\"x\"} 1\n", "line 1: empty label name"),
        (
            PROM,
            "m 1 2 3\n",
            "line 1: unexpected text after the timestamp: \"3\"",
        ),
        (
            PROM,
            "m 1 2 junk here\n",
            "line 1: unexpected text after the timestamp: \"junk here\"",
        ),
        (PROM, "m 1 abc\n", "line 1: invalid timestamp \"abc\""),
        (
            PROM,
            "m 1\r\nm 1\r2\r\n",
            "line 2: invalid sample value \"1\\r2\"",
        ),
        (
            PROM,
            "m 1\r\n\r\nm{a=\"b\r\n\"} 1\r\n",
            "line 3: unterminated quoted string",
        ),
        (PROM, "m 1 1.5\n", "line 1: invalid timestamp \"1.5\""),
        (
            PROM,
            "m 1 9223372036854775808\n",
            "line 1: invalid timestamp \"9223372036854775808\"",
        ),
        (
            PROM,
            "m\n",
            "line 1: expected a sample value after the series",
        ),
        (
            PROM,
            "m{a=\"b\"}\n",
            "line 1: expected a sample value after the series",
        ),
        (PROM, "m 1e400\n", "line 1: invalid sample value \"1e400\""),
        (
            PROM,
            "m 0x1p-2\n",
            "line 1: invalid sample value \"0x1p-2\"",
        ),
        (PROM, "m 1_000\n", "line 1: invalid sample value \"1_000\""),
        (PROM, "m -NaN\n", "line 1: invalid sample value \"-NaN\""),
        (
            PROM,
            "m{1a=\"b\"} 1\n",
            "line 1: expected a label name, found \"1a=\\\"b\\\"} 1\"",
        ),
        (
            PROM,
            "m{,} 1\n",
            "line 1: expected a label name, found \",} 1\"",
        ),
        (
            PROM,
            "m{a \"b\"} 1\n",
            "line 1: expected '=' after label name \"a\"",
        ),
        (
            PROM,
            "m{a=b} 1\n",
            "line 1: expected a quoted value for label \"a\"",
        ),
        (
            PROM,
            "1m 1\n",
            "line 1: expected a metric name, found \"1m 1\"",
        ),
        (
            PROM,
            "m 1 # {a=\"b\"} 1\n",
            "line 1: exemplars (\" # {...}\") are allowed only in OpenMetrics",
        ),
        (
            PROM,
            "# TYPE m foo\n",
            "line 1: invalid metric type \"foo\"",
        ),
        (
            PROM,
            "# HELP \n",
            "line 1: expected a metric name after HELP",
        ),
        (
            PROM,
            "# TYPE m.x counter\n",
            "line 1: expected a space after the metric name in TYPE, found \".x counter\"",
        ),
        (OM, "m 1\n# EOF\nm 2\n", "line 3: content after \"# EOF\""),
        (
            OM,
            "m 1\n# EOF\n\n  \n# EOF\n",
            "line 5: content after \"# EOF\"",
        ),
        (
            OM,
            "m 1\n",
            "line 1: OpenMetrics input does not end with \"# EOF\"",
        ),
        (
            OM,
            "",
            "line 1: OpenMetrics input does not end with \"# EOF\"",
        ),
        (
            OM,
            "m 1 1.5 2\n# EOF\n",
            "line 1: unexpected text after the timestamp: \"2\"",
        ),
        (OM, "m 1 NaN\n# EOF\n", "line 1: invalid timestamp \"NaN\""),
        (
            OM,
            "m 1 # {a=\"b\" 1\n# EOF\n",
            "line 1: invalid exemplar: expected ',' or '}' in the label set, found \"1\"",
        ),
        (
            OM,
            "m 1 # a 1\n# EOF\n",
            "line 1: invalid exemplar: expected '{' after '#'",
        ),
        (
            OM,
            "m 1 # {a=\"b\"} x\n# EOF\n",
            "line 1: invalid exemplar: invalid value \"x\"",
        ),
        (
            OM,
            "m 1 # {a=\"b\"} 1 2 3\n# EOF\n",
            "line 1: invalid exemplar: unexpected text \"3\"",
        ),
        (
            OM,
            "m 1 # {\"q\"} 1\n# EOF\n",
            "line 1: invalid exemplar: expected '=' after label name \"q\"",
        ),
    ];
    for (format, input, expected) in cases {
        check_refuses(*format, input, expected);
    }
}

#[test]
fn the_parser_stops_after_an_error() {
    let mut parser = TextParser::new("m x\nn 1\n", PROM);
    let mut sample = SampleBuf::new();
    assert!(parser.next_entry(&mut sample).is_err());
    assert_eq!(parser.next_entry(&mut sample), Ok(None));
}

#[test]
fn metadata_entries_carry_help_type_and_unit() {
    let input = "# HELP m Help with \\\\ backslash,\\nnewline and \\\"quote\\\".\n\
                 # TYPE m counter\n\
                 # UNIT m seconds\n\
                 # HELP \"my.metric\" x\n\
                 # TYPE n untyped\n\
                 # HELP e\n\
                 # HELP s  two spaces\n\
                 # HELP crlf text\r\n";
    let parsed = parse_all(input, PROM).unwrap();
    assert_eq!(
        parsed.metadata,
        vec![
            (
                "m".to_string(),
                "HELP Help with \\ backslash,\nnewline and \\\"quote\\\".".to_string()
            ),
            ("m".to_string(), "TYPE counter".to_string()),
            ("my.metric".to_string(), "HELP x".to_string()),
            ("n".to_string(), "TYPE unknown".to_string()),
            ("e".to_string(), "HELP ".to_string()),
            ("s".to_string(), "HELP  two spaces".to_string()),
            ("crlf".to_string(), "HELP text".to_string()),
        ]
    );
    let parsed = parse_all(&format!("{input}# EOF\n"), OM).unwrap();
    assert_eq!(
        parsed.metadata[0].1,
        "HELP Help with \\ backslash,\nnewline and \"quote\"."
    );
    assert_eq!(
        parsed.metadata[2],
        ("m".to_string(), "UNIT seconds".to_string())
    );

    let mut metadata = MetricMetadata::default();
    let mut parser = TextParser::new("# TYPE m counter\n# HELP m h\n# UNIT m s\n# EOF\n", OM);
    let mut sample = SampleBuf::new();
    while let Some(Entry::Metadata(entry)) = parser.next_entry(&mut sample).unwrap() {
        assert!(entry.line_number >= 1);
        entry.apply_to(&mut metadata);
    }
    assert_eq!(
        metadata,
        MetricMetadata {
            metric_type: "counter".into(),
            help: "h".into(),
            unit: "s".into()
        }
    );
}

#[test]
fn from_bytes_checks_utf8_and_parses_the_same() {
    let parsed_bytes = {
        let mut parser = TextParser::from_bytes(NODE_EXPORTER_PROM.as_bytes(), PROM).unwrap();
        let mut sample = SampleBuf::new();
        let mut count = 0;
        while let Some(entry) = parser.next_entry(&mut sample).unwrap() {
            count += usize::from(entry == Entry::Sample);
        }
        count
    };
    assert_eq!(parsed_bytes, 507);
    let error = TextParser::from_bytes(b"m 1\n# \xc3\x28\n", PROM).unwrap_err();
    assert_eq!(error.to_string(), "line 2: invalid UTF-8");
}

// ---------------------------------------------------------------------------
// Differential oracle: the prometheus-parse crate, on input it reads correctly
// (legacy names, no TYPE lines so that it does not group histograms, and no
// `,` `=` `}` `"` `\` or line feeds in label values).

/// Name, labels, value and timestamp as the oracle reports a sample.
type OracleSample = (String, BTreeMap<String, String>, f64, Option<i64>);

fn oracle_samples(input: &str) -> Vec<OracleSample> {
    let scrape =
        prometheus_parse::Scrape::parse(input.lines().map(|line| Ok(line.to_string()))).unwrap();
    scrape
        .samples
        .into_iter()
        .map(|sample| {
            let value = match sample.value {
                prometheus_parse::Value::Untyped(value)
                | prometheus_parse::Value::Counter(value)
                | prometheus_parse::Value::Gauge(value) => value,
                other => panic!("oracle grouped a sample: {other:?}"),
            };
            let labels: BTreeMap<String, String> = sample
                .labels
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            (
                sample.metric,
                labels,
                value,
                Some(sample.timestamp.timestamp_millis()),
            )
        })
        .collect()
}

fn assert_agrees_with_oracle(input: &str) {
    let ours = parse_all(input, PROM).unwrap().samples;
    let oracle = oracle_samples(input);
    assert_eq!(ours.len(), oracle.len(), "{input}");
    for (ours, (name, labels, value, timestamp)) in ours.iter().zip(&oracle) {
        let our_labels: BTreeMap<String, String> = ours.labels.iter().cloned().collect();
        assert_eq!(&ours.metric_name, name);
        assert_eq!(&our_labels, labels);
        assert!(same_value(ours.value, *value), "{} vs {value}", ours.value);
        // Without a timestamp on the line the oracle substitutes "now".
        if ours.timestamp_ms.is_some() {
            assert_eq!(&ours.timestamp_ms, timestamp);
        }
    }
}

#[test]
fn node_exporter_capture_agrees_with_prometheus_parse() {
    let without_type_lines: String = NODE_EXPORTER_PROM
        .lines()
        .filter(|line| !line.starts_with("# TYPE"))
        .map(|line| format!("{line}\n"))
        .collect();
    assert_agrees_with_oracle(&without_type_lines);
}

fn oracle_friendly_sample()
-> impl Strategy<Value = (String, Vec<(String, String)>, f64, Option<i64>)> {
    (
        "[a-zA-Z_][a-zA-Z0-9_]{0,20}",
        prop::collection::btree_map(
            "[a-zA-Z_][a-zA-Z0-9_]{0,10}",
            "[^,=}\"\\\\\n\r]{0,12}",
            0..5,
        ),
        prop_oneof![
            prop::num::f64::NORMAL,
            prop::num::f64::SUBNORMAL,
            Just(0.0),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
        ],
        prop::option::of(-1_000_000_000_000_000i64..1_000_000_000_000_000),
    )
        .prop_map(|(name, labels, value, timestamp)| {
            // The oracle reads an empty label set `{}` as no sample at all.
            (name, labels.into_iter().collect(), value, timestamp)
        })
}

proptest! {
    #[test]
    fn random_oracle_friendly_input_agrees_with_prometheus_parse(
        samples in prop::collection::vec(oracle_friendly_sample(), 1..20)
    ) {
        let mut text = String::new();
        for (name, labels, value, timestamp) in &samples {
            let pairs: Vec<(&str, &str)> =
                labels.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            write_sample(&mut text, name, &pairs, *value, *timestamp, PROM);
        }
        assert_agrees_with_oracle(&text);
    }
}

// ---------------------------------------------------------------------------
// Print, then parse: every printed series comes back.

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_:][a-zA-Z0-9_:]{0,15}",
        // Anything non-empty, including quotes, backslashes and line feeds.
        ".{1,12}",
        "[\"\\\\\n .{}=,#]{1,6}",
    ]
}

fn any_label_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_]{0,10}",
        ".{1,8}",
        "[\"\\\\\n .{}=,#]{1,6}"
    ]
    .prop_filter("__name__ is the metric name", |name| name != "__name__")
}

fn any_label_value() -> impl Strategy<Value = String> {
    prop_oneof![".{0,16}", "[\"\\\\\n\r\t {}=,#]{0,8}", "\\PC{0,8}"]
}

fn any_value() -> impl Strategy<Value = f64> {
    prop_oneof![
        prop::num::f64::ANY,
        Just(f64::NAN),
        Just(-0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        (-1_000_000i64..1_000_000).prop_map(|integer| integer as f64),
    ]
}

#[derive(Clone, Debug)]
struct GeneratedSeries {
    metric_name: String,
    labels: Vec<(String, String)>,
    value: f64,
    timestamp_ms: Option<i64>,
    help: Option<String>,
}

fn any_series() -> impl Strategy<Value = GeneratedSeries> {
    (
        any_name(),
        prop::collection::btree_map(any_label_name(), any_label_value(), 0..5),
        any_value(),
        prop::option::of(any::<i64>()),
        prop::option::of(
            ".{0,20}".prop_filter("a final CR is a line end", |help| !help.ends_with('\r')),
        ),
    )
        .prop_map(
            |(metric_name, labels, value, timestamp_ms, help)| GeneratedSeries {
                metric_name,
                labels: labels.into_iter().collect(),
                value,
                timestamp_ms,
                help,
            },
        )
}

fn print_document(series: &[GeneratedSeries], format: Format) -> String {
    let mut text = String::new();
    for one in series {
        if let Some(help) = &one.help {
            write_help(&mut text, &one.metric_name, help, format);
            write_type(&mut text, &one.metric_name, MetricType::Gauge, format);
        }
        let pairs: Vec<(&str, &str)> = one
            .labels
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
            .collect();
        write_sample(
            &mut text,
            &one.metric_name,
            &pairs,
            one.value,
            one.timestamp_ms,
            format,
        );
    }
    if format == Format::OpenMetrics {
        write_openmetrics_eof(&mut text);
    }
    text
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn printed_series_parse_back_identically(
        series in prop::collection::vec(any_series(), 1..8),
        openmetrics in any::<bool>(),
    ) {
        let format = if openmetrics { OM } else { PROM };
        let text = print_document(&series, format);
        let parsed = parse_all(&text, format);
        prop_assert!(parsed.is_ok(), "{:?}\n{}", parsed.err(), text);
        let parsed = parsed.unwrap();
        prop_assert_eq!(parsed.samples.len(), series.len());
        for (generated, sample) in series.iter().zip(&parsed.samples) {
            let expected = OwnedSample {
                metric_name: generated.metric_name.clone(),
                labels: generated.labels.clone(),
                value: generated.value,
                timestamp_ms: generated.timestamp_ms,
                line_number: 0,
            };
            prop_assert!(
                expected.same_as(sample),
                "{} != {}\n{}", render(&expected), render(sample), text
            );
        }
        let helps: Vec<(String, String)> = series
            .iter()
            .filter_map(|one| {
                one.help.as_ref().map(|help| (one.metric_name.clone(), format!("HELP {help}")))
            })
            .collect();
        let parsed_helps: Vec<(String, String)> = parsed
            .metadata
            .iter()
            .filter(|(_, text)| text.starts_with("HELP "))
            .cloned()
            .collect();
        prop_assert_eq!(parsed_helps, helps);
    }

    /// What the `text_parser` fuzz target checks, on generated input: every
    /// accepted sample, printed alone, parses back to the same sample.
    #[test]
    fn accepted_samples_survive_print_and_parse(
        input in prop::collection::vec(
            prop_oneof![
                prop::sample::select(b"{}\"\\=, #\n\tmab_:.NaInf0123456789e+-".to_vec()),
                any::<u8>(),
            ],
            0..120,
        )
    ) {
        for format in [PROM, OM] {
            let Ok(text) = std::str::from_utf8(&input) else { continue };
            let mut parser = TextParser::new(text, format);
            let mut sample = SampleBuf::new();
            while let Ok(Some(entry)) = parser.next_entry(&mut sample) {
                if entry != Entry::Sample {
                    continue;
                }
                let labels: Vec<(&str, &str)> = sample.labels().collect();
                let mut printed = String::new();
                write_sample(
                    &mut printed,
                    sample.metric_name(),
                    &labels,
                    sample.value(),
                    sample.timestamp_ms(),
                    format,
                );
                if format == OM {
                    write_openmetrics_eof(&mut printed);
                }
                let reparsed = parse_all(&printed, format);
                prop_assert!(reparsed.is_ok(), "{:?} from {:?}", reparsed.err(), printed);
                let reparsed = reparsed.unwrap().samples;
                prop_assert_eq!(reparsed.len(), 1);
                let original = OwnedSample {
                    metric_name: sample.metric_name().to_string(),
                    labels: labels.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                    value: sample.value(),
                    timestamp_ms: sample.timestamp_ms(),
                    line_number: 0,
                };
                prop_assert!(original.same_as(&reparsed[0]), "{:?}", printed);
            }
        }
    }

    /// Arbitrary input never panics, in either format, as bytes or text.
    #[test]
    fn arbitrary_input_never_panics(
        input in prop::collection::vec(
            prop_oneof![
                any::<u8>(),
                prop::sample::select(b"{}\"\\=, #\n\tmHELPTYPEUNITEOFNaInf0123456789.e+-".to_vec()),
            ],
            0..200,
        )
    ) {
        for format in [PROM, OM] {
            if let Ok(mut parser) = TextParser::from_bytes(&input, format) {
                let mut sample = SampleBuf::new();
                let mut steps = 0;
                while let Ok(Some(_)) = parser.next_entry(&mut sample) {
                    steps += 1;
                    prop_assert!(steps <= input.len() + 1);
                    sample.with_sorted_label_pairs(&[], |pairs| {
                        assert!(pairs.windows(2).all(|pair| pair[0].0 < pair[1].0));
                    });
                }
            }
        }
    }
}
