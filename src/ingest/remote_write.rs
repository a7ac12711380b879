//! Prometheus remote_write 1.0 decoder: a snappy *block*-compressed
//! protobuf `prometheus.WriteRequest`. The message types are declared by hand
//! with `prost` derives (no protoc); field numbers follow
//! `prometheus/prompb/remote.proto` and `prompb/types.proto`:
//!
//! ```text
//! WriteRequest   { repeated TimeSeries timeseries = 1; reserved 2;
//!                  repeated MetricMetadata metadata = 3; }
//! TimeSeries     { repeated Label labels = 1; repeated Sample samples = 2;
//!                  repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
//! Label          { string name = 1; string value = 2; }
//! Sample         { double value = 1; int64 timestamp = 2; }
//! Exemplar       { repeated Label labels = 1; double value = 2; int64 timestamp = 3; }
//! MetricMetadata { MetricType type = 1; string metric_family_name = 2;
//!                  string help = 4; string unit = 5; }
//! ```
//!
//! Decoding is two-level so memory stays bounded by the request limits: the
//! outer message keeps each series as an unparsed byte slice (zero-copy
//! `Bytes`), the number of series is checked by a cheap wire scan *before*
//! the vector is built, and each series is decoded and validated only when
//! the caller walks it. Exemplars are ignored (guardia stores none); native
//! histograms are refused with an error rather than dropped silently.
//!
//! This module never panics, whatever the input (fuzz target `remote_write`).

use prost::Message;
use prost::bytes::Buf;
pub use prost::bytes::Bytes;

use crate::config::IngestLimits;
use crate::model::{self, Label, METRIC_NAME, MetricMetadata, Timestamp};

/// Why a remote_write body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteWriteError {
    #[error("invalid snappy block: {0}")]
    Snappy(String),
    #[error(
        "snappy-declared decompressed size {declared_bytes} bytes exceeds the body size limit of {limit_bytes} bytes"
    )]
    DecompressedTooLarge {
        declared_bytes: usize,
        limit_bytes: usize,
    },
    #[error("invalid protobuf WriteRequest: {0}")]
    Protobuf(String),
    #[error("request has more than {limit} series (limit --ingest.max-series-per-request)")]
    TooManySeries { limit: usize },
    #[error("native histograms are not supported yet (series {series})")]
    NativeHistogram { series: String },
    #[error("series #{index} has no metric name (__name__ label missing or empty)")]
    MissingMetricName { index: usize },
    #[error("series {series} has an empty label name")]
    EmptyLabelName { series: String },
    #[error("series {series} has duplicate label name {name:?}")]
    DuplicateLabelName { series: String, name: String },
    #[error(
        "series {series} has {count} labels, more than the limit of {limit} (--ingest.max-labels-per-series)"
    )]
    TooManyLabels {
        series: String,
        count: usize,
        limit: usize,
    },
    #[error(
        "series {series} has a label name of {length} bytes, longer than the limit of {limit} (--ingest.max-label-name-length)"
    )]
    LabelNameTooLong {
        series: String,
        length: usize,
        limit: usize,
    },
    #[error(
        "series {series} has a value of {length} bytes for label {name:?}, longer than the limit of {limit} (--ingest.max-label-value-length)"
    )]
    LabelValueTooLong {
        series: String,
        name: String,
        length: usize,
        limit: usize,
    },
}

impl RemoteWriteError {
    /// True when the error is about size (HTTP 413) rather than content (400).
    pub fn is_too_large(&self) -> bool {
        matches!(self, RemoteWriteError::DecompressedTooLarge { .. })
    }
}

/// `prometheus.WriteRequest`, for encoding (tests, seeds, a future forwarder).
#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<WireMetricMetadata>,
}

/// `prometheus.TimeSeries`.
#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<WireLabel>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<WireSample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<WireExemplar>,
    #[prost(message, repeated, tag = "4")]
    pub histograms: Vec<WireHistogram>,
}

/// `prometheus.Label`.
#[derive(Clone, PartialEq, Message)]
pub struct WireLabel {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `prometheus.Sample`.
#[derive(Clone, Copy, PartialEq, Message)]
pub struct WireSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// `prometheus.Exemplar`; decoded only to be skipped.
#[derive(Clone, PartialEq, Message)]
pub struct WireExemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<WireLabel>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

/// `prometheus.Histogram`, reduced to the fields needed to build one in a
/// test; the decoder only looks at whether any histogram is present.
#[derive(Clone, PartialEq, Message)]
pub struct WireHistogram {
    #[prost(uint64, tag = "1")]
    pub count_int: u64,
    #[prost(double, tag = "3")]
    pub sum: f64,
    #[prost(sint32, tag = "4")]
    pub schema: i32,
    #[prost(int64, tag = "15")]
    pub timestamp: i64,
}

/// `prometheus.MetricMetadata`.
#[derive(Clone, PartialEq, Message)]
pub struct WireMetricMetadata {
    /// `MetricType` enum: 0 unknown, 1 counter, 2 gauge, 3 histogram,
    /// 4 gaugehistogram, 5 summary, 6 info, 7 stateset.
    #[prost(int32, tag = "1")]
    pub metric_type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

/// The outer message with each series left undecoded.
#[derive(Clone, PartialEq, Message)]
struct WriteRequestFrame {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    timeseries: Vec<Bytes>,
    #[prost(message, repeated, tag = "3")]
    metadata: Vec<WireMetricMetadata>,
}

/// Text name of a `MetricMetadata.MetricType` value, as `# TYPE` writes it.
pub fn metric_type_name(metric_type: i32) -> &'static str {
    match metric_type {
        1 => "counter",
        2 => "gauge",
        3 => "histogram",
        4 => "gaugehistogram",
        5 => "summary",
        6 => "info",
        7 => "stateset",
        _ => "unknown",
    }
}

/// Decompresses a snappy block, refusing before any allocation when the
/// size declared in the block header exceeds `limit_bytes`.
pub fn decompress_snappy(body: &[u8], limit_bytes: usize) -> Result<Vec<u8>, RemoteWriteError> {
    let declared_bytes = snap::raw::decompress_len(body)
        .map_err(|error| RemoteWriteError::Snappy(error.to_string()))?;
    if declared_bytes > limit_bytes {
        return Err(RemoteWriteError::DecompressedTooLarge {
            declared_bytes,
            limit_bytes,
        });
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|error| RemoteWriteError::Snappy(error.to_string()))
}

/// A decoded, validated series: labels sorted by name, names unique, empty
/// values dropped, and its samples as sent (values bit-exact).
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedSeries {
    pub labels: Vec<Label>,
    pub samples: Vec<model::Sample>,
}

impl DecodedSeries {
    /// Borrowed `(name, value)` pairs in the order `Appender::append` wants.
    pub fn label_pairs(&self) -> Vec<(&str, &str)> {
        self.labels
            .iter()
            .map(|label| (label.name.as_str(), label.value.as_str()))
            .collect()
    }
}

/// A request whose outer frame is decoded; series are decoded one at a time
/// by [`DecodedWriteRequest::series`].
#[derive(Debug)]
pub struct DecodedWriteRequest {
    raw_series: Vec<Bytes>,
    metadata: Vec<WireMetricMetadata>,
}

/// Decodes the outer `WriteRequest` of an uncompressed body, after checking
/// the number of series against `limits.max_series_per_request`.
pub fn decode_write_request(
    uncompressed: Bytes,
    limits: &IngestLimits,
) -> Result<DecodedWriteRequest, RemoteWriteError> {
    let series_count = count_top_level_fields(&uncompressed, 1)?;
    if series_count > limits.max_series_per_request {
        return Err(RemoteWriteError::TooManySeries {
            limit: limits.max_series_per_request,
        });
    }
    let frame = WriteRequestFrame::decode(uncompressed)
        .map_err(|error| RemoteWriteError::Protobuf(error.to_string()))?;
    Ok(DecodedWriteRequest {
        raw_series: frame.timeseries,
        metadata: frame.metadata,
    })
}

impl DecodedWriteRequest {
    pub fn series_count(&self) -> usize {
        self.raw_series.len()
    }

    /// Metadata entries as `(metric family name, metadata)`; entries without
    /// a family name are skipped.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, MetricMetadata)> + '_ {
        self.metadata
            .iter()
            .filter(|entry| !entry.metric_family_name.is_empty())
            .map(|entry| {
                (
                    entry.metric_family_name.as_str(),
                    MetricMetadata {
                        metric_type: metric_type_name(entry.metric_type).to_string(),
                        help: entry.help.clone(),
                        unit: entry.unit.clone(),
                    },
                )
            })
    }

    /// Decodes and validates each series in request order.
    pub fn series<'request>(
        &'request self,
        limits: &'request IngestLimits,
    ) -> impl Iterator<Item = Result<DecodedSeries, RemoteWriteError>> + 'request {
        self.raw_series
            .iter()
            .enumerate()
            .map(move |(index, raw)| decode_series(index, raw.clone(), limits))
    }
}

fn decode_series(
    index: usize,
    raw: Bytes,
    limits: &IngestLimits,
) -> Result<DecodedSeries, RemoteWriteError> {
    let wire = TimeSeries::decode(raw)
        .map_err(|error| RemoteWriteError::Protobuf(format!("series #{index}: {error}")))?;
    let mut labels: Vec<Label> = Vec::with_capacity(wire.labels.len());
    for wire_label in wire.labels {
        labels.push(Label::new(wire_label.name, wire_label.value));
    }
    // Stable sort: duplicates stay adjacent and are reported below.
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    let describe = |labels: &[Label]| model::Labels::new(labels.to_vec()).to_string();

    if let Some(pair) = labels.windows(2).find(|pair| pair[0].name == pair[1].name) {
        return Err(RemoteWriteError::DuplicateLabelName {
            series: describe(&labels),
            name: pair[0].name.clone(),
        });
    }
    if labels.iter().any(|label| label.name.is_empty()) {
        return Err(RemoteWriteError::EmptyLabelName {
            series: describe(&labels),
        });
    }
    // An empty value means "no such label" in Prometheus.
    labels.retain(|label| !label.value.is_empty());
    let has_metric_name = labels.iter().any(|label| label.name == METRIC_NAME);
    if !has_metric_name {
        return Err(RemoteWriteError::MissingMetricName { index });
    }
    if labels.len() > limits.max_labels_per_series {
        return Err(RemoteWriteError::TooManyLabels {
            series: describe(&labels),
            count: labels.len(),
            limit: limits.max_labels_per_series,
        });
    }
    for label in &labels {
        if label.name.len() > limits.max_label_name_length {
            return Err(RemoteWriteError::LabelNameTooLong {
                series: describe(&labels),
                length: label.name.len(),
                limit: limits.max_label_name_length,
            });
        }
        if label.value.len() > limits.max_label_value_length {
            return Err(RemoteWriteError::LabelValueTooLong {
                series: describe(&labels),
                name: label.name.clone(),
                length: label.value.len(),
                limit: limits.max_label_value_length,
            });
        }
    }
    if !wire.histograms.is_empty() {
        return Err(RemoteWriteError::NativeHistogram {
            series: describe(&labels),
        });
    }
    let samples = wire
        .samples
        .iter()
        .map(|sample| model::Sample {
            t: sample.timestamp as Timestamp,
            v: sample.value,
        })
        .collect();
    Ok(DecodedSeries { labels, samples })
}

/// Counts occurrences of `field_number` among the top-level fields of a
/// protobuf message by walking the wire format without decoding values.
fn count_top_level_fields(message: &[u8], field_number: u32) -> Result<usize, RemoteWriteError> {
    use prost::encoding::{WireType, decode_key, decode_varint};
    let malformed = |what: &str| RemoteWriteError::Protobuf(what.to_string());
    let mut buffer = message;
    let mut count = 0usize;
    while buffer.has_remaining() {
        let (number, wire_type) = decode_key(&mut buffer)
            .map_err(|error| RemoteWriteError::Protobuf(error.to_string()))?;
        if number == field_number {
            count += 1;
        }
        let skip = match wire_type {
            WireType::Varint => {
                decode_varint(&mut buffer)
                    .map_err(|error| RemoteWriteError::Protobuf(error.to_string()))?;
                0
            }
            WireType::SixtyFourBit => 8,
            WireType::ThirtyTwoBit => 4,
            WireType::LengthDelimited => {
                let length = decode_varint(&mut buffer)
                    .map_err(|error| RemoteWriteError::Protobuf(error.to_string()))?;
                usize::try_from(length).map_err(|_| malformed("length overflows"))?
            }
            WireType::StartGroup | WireType::EndGroup => {
                return Err(malformed("groups are not used by WriteRequest"));
            }
        };
        if skip > buffer.remaining() {
            return Err(malformed("field runs past the end of the message"));
        }
        buffer.advance(skip);
    }
    Ok(count)
}

/// Encodes and snappy-compresses a request, as a remote_write sender does.
pub fn encode_snappy(request: &WriteRequest) -> Vec<u8> {
    let uncompressed = request.encode_to_vec();
    // Compression of an in-memory buffer fails only past 4 GiB input; an
    // empty body then makes the receiver report a clear snappy error.
    snap::raw::Encoder::new()
        .compress_vec(&uncompressed)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(name: &str, value: &str) -> WireLabel {
        WireLabel {
            name: name.to_string(),
            value: value.to_string(),
        }
    }

    fn series(labels: Vec<WireLabel>, samples: Vec<(i64, f64)>) -> TimeSeries {
        TimeSeries {
            labels,
            samples: samples
                .into_iter()
                .map(|(timestamp, value)| WireSample { value, timestamp })
                .collect(),
            exemplars: vec![],
            histograms: vec![],
        }
    }

    fn decode_all(
        request: &WriteRequest,
        limits: &IngestLimits,
    ) -> Result<Vec<DecodedSeries>, RemoteWriteError> {
        let body = encode_snappy(request);
        let uncompressed = decompress_snappy(&body, limits.max_body_bytes)?;
        let decoded = decode_write_request(Bytes::from(uncompressed), limits)?;
        decoded.series(limits).collect()
    }

    #[test]
    fn round_trip_sorts_labels_and_keeps_stale_nan_bits() {
        let request = WriteRequest {
            timeseries: vec![series(
                vec![
                    label("job", "node"),
                    label("__name__", "up"),
                    label("a", ""),
                ],
                vec![(1000, 1.0), (2000, model::stale_nan())],
            )],
            metadata: vec![WireMetricMetadata {
                metric_type: 2,
                metric_family_name: "up".into(),
                help: "h".into(),
                unit: String::new(),
            }],
        };
        let decoded = decode_all(&request, &IngestLimits::default()).unwrap();
        assert_eq!(decoded.len(), 1);
        assert_eq!(
            decoded[0].label_pairs(),
            vec![("__name__", "up"), ("job", "node")]
        );
        assert_eq!(decoded[0].samples[1].t, 2000);
        assert_eq!(decoded[0].samples[1].v.to_bits(), model::STALE_NAN_BITS);

        let body = encode_snappy(&request);
        let uncompressed = decompress_snappy(&body, 1 << 20).unwrap();
        let outer =
            decode_write_request(Bytes::from(uncompressed), &IngestLimits::default()).unwrap();
        let metadata: Vec<_> = outer.metadata().collect();
        assert_eq!(metadata[0].0, "up");
        assert_eq!(metadata[0].1.metric_type, "gauge");
    }

    #[test]
    fn declared_length_over_limit_is_refused_before_decompressing() {
        // A snappy block header is the varint of the decompressed length; the
        // rest of the body is irrelevant because it must never be read.
        let mut body = Vec::new();
        let mut declared: u64 = 1 << 31;
        while declared >= 0x80 {
            body.push((declared as u8) | 0x80);
            declared >>= 7;
        }
        body.push(declared as u8);
        body.extend_from_slice(&[0u8; 4]);
        let error = decompress_snappy(&body, 1 << 20).unwrap_err();
        assert!(error.is_too_large(), "{error}");
        assert!(matches!(
            error,
            RemoteWriteError::DecompressedTooLarge {
                declared_bytes: 2147483648,
                limit_bytes: 1048576
            }
        ));
    }

    #[test]
    fn histograms_are_refused() {
        let mut with_histogram = series(vec![label("__name__", "h")], vec![]);
        with_histogram.histograms.push(WireHistogram {
            count_int: 3,
            sum: 1.5,
            schema: 0,
            timestamp: 1,
        });
        let request = WriteRequest {
            timeseries: vec![with_histogram],
            metadata: vec![],
        };
        let error = decode_all(&request, &IngestLimits::default()).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("native histograms are not supported yet"),
            "{error}"
        );
    }

    #[test]
    fn invalid_label_sets_are_refused() {
        let limits = IngestLimits::default();
        let no_name = WriteRequest {
            timeseries: vec![series(vec![label("job", "x")], vec![(1, 1.0)])],
            metadata: vec![],
        };
        assert!(matches!(
            decode_all(&no_name, &limits),
            Err(RemoteWriteError::MissingMetricName { index: 0 })
        ));
        let duplicate = WriteRequest {
            timeseries: vec![series(
                vec![label("__name__", "m"), label("a", "1"), label("a", "2")],
                vec![(1, 1.0)],
            )],
            metadata: vec![],
        };
        assert!(matches!(
            decode_all(&duplicate, &limits),
            Err(RemoteWriteError::DuplicateLabelName { ref name, .. }) if name == "a"
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let limits = IngestLimits {
            max_labels_per_series: 2,
            max_label_name_length: 8,
            max_label_value_length: 3,
            max_series_per_request: 1,
            ..IngestLimits::default()
        };
        let too_many_labels = WriteRequest {
            timeseries: vec![series(
                vec![label("__name__", "m"), label("a", "1"), label("b", "2")],
                vec![],
            )],
            metadata: vec![],
        };
        assert!(matches!(
            decode_all(&too_many_labels, &limits),
            Err(RemoteWriteError::TooManyLabels {
                count: 3,
                limit: 2,
                ..
            })
        ));
        let long_value = WriteRequest {
            timeseries: vec![series(vec![label("__name__", "long")], vec![])],
            metadata: vec![],
        };
        assert!(matches!(
            decode_all(&long_value, &limits),
            Err(RemoteWriteError::LabelValueTooLong { length: 4, .. })
        ));
        let long_name = WriteRequest {
            timeseries: vec![series(
                vec![label("__name__", "m"), label("abcdefghi", "1")],
                vec![],
            )],
            metadata: vec![],
        };
        assert!(matches!(
            decode_all(&long_name, &limits),
            Err(RemoteWriteError::LabelNameTooLong { length: 9, .. })
        ));
        let two_series = WriteRequest {
            timeseries: vec![
                series(vec![label("__name__", "m")], vec![]),
                series(vec![label("__name__", "n")], vec![]),
            ],
            metadata: vec![],
        };
        assert!(matches!(
            decode_all(&two_series, &limits),
            Err(RemoteWriteError::TooManySeries { limit: 1 })
        ));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let limits = IngestLimits::default();
        for body in [
            &b""[..],
            &b"\xff\xff\xff\xff\xff\xff"[..],
            &b"\x05\x00abc"[..],
            &b"\x03\x08\x0a\xff"[..],
        ] {
            if let Ok(uncompressed) = decompress_snappy(body, 1 << 20)
                && let Ok(decoded) = decode_write_request(Bytes::from(uncompressed), &limits)
            {
                let _ = decoded.series(&limits).count();
            }
        }
        // Truncated length-delimited field.
        assert!(decode_write_request(Bytes::from_static(b"\x0a\x05ab"), &limits).is_err());
    }

    /// Regenerates `fuzz/corpus/remote_write/seed-*`: real snappy-compressed
    /// requests as a Prometheus sender writes them.
    #[test]
    #[ignore = "writes the fuzz seed corpus; run by hand"]
    fn write_fuzz_seed_corpus() {
        let directory =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/remote_write");
        std::fs::create_dir_all(&directory).unwrap();
        let node = WriteRequest {
            timeseries: vec![
                series(
                    vec![
                        label("__name__", "node_cpu_seconds_total"),
                        label("cpu", "0"),
                        label("instance", "site-a:9100"),
                        label("job", "node"),
                        label("mode", "idle"),
                    ],
                    vec![(1_700_000_000_000, 12345.67), (1_700_000_015_000, 12360.02)],
                ),
                series(
                    vec![label("__name__", "up"), label("job", "node")],
                    vec![(1_700_000_030_000, model::stale_nan())],
                ),
            ],
            metadata: vec![WireMetricMetadata {
                metric_type: 1,
                metric_family_name: "node_cpu_seconds_total".into(),
                help: "Seconds the CPUs spent in each mode.".into(),
                unit: "seconds".into(),
            }],
        };
        let mut histogram = series(vec![label("__name__", "rpc_latency")], vec![]);
        histogram.histograms.push(WireHistogram {
            count_int: 10,
            sum: 2.5,
            schema: 3,
            timestamp: 1_700_000_000_000,
        });
        histogram.exemplars.push(WireExemplar {
            labels: vec![label("trace_id", "abc")],
            value: 0.2,
            timestamp: 1_700_000_000_000,
        });
        let with_histogram = WriteRequest {
            timeseries: vec![histogram],
            metadata: vec![],
        };
        let empty = WriteRequest {
            timeseries: vec![],
            metadata: vec![],
        };
        for (name, request) in [
            ("node", &node),
            ("histogram-exemplar", &with_histogram),
            ("empty", &empty),
        ] {
            std::fs::write(
                directory.join(format!("seed-{name}")),
                encode_snappy(request),
            )
            .unwrap();
        }
    }
}
