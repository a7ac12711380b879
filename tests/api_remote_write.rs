//! `POST /api/v1/write` (remote_write 1.0): round trip with a staleness
//! marker kept bit-exactly, all-or-nothing refusal, size limits checked on
//! the snappy-declared length, histograms refused.

#[path = "common/harness.rs"]
mod harness;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use guardia::config::IngestLimits;
use guardia::ingest::remote_write::{
    TimeSeries, WireHistogram, WireLabel, WireMetricMetadata, WireSample, WriteRequest,
    encode_snappy,
};
use guardia::model::{Matcher, STALE_NAN_BITS, stale_nan};
use guardia::storage::Queryable;
use harness::{TestApi, error_message};

const WRITE: &str = "/api/v1/write";

fn label(name: &str, value: &str) -> WireLabel {
    WireLabel {
        name: name.into(),
        value: value.into(),
    }
}

fn series(labels: Vec<WireLabel>, samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels,
        samples: samples
            .iter()
            .map(|(timestamp, value)| WireSample {
                value: *value,
                timestamp: *timestamp,
            })
            .collect(),
        exemplars: vec![],
        histograms: vec![],
    }
}

fn write_request(body: Vec<u8>) -> Request<Body> {
    Request::post(WRITE)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn round_trip_keeps_staleness_marker_bits() {
    let api = TestApi::new();
    let request = WriteRequest {
        timeseries: vec![
            series(
                vec![
                    label("job", "node"),
                    label("__name__", "up"),
                    label("instance", "a:9100"),
                ],
                &[(1_700_000_000_000, 1.0), (1_700_000_015_000, stale_nan())],
            ),
            series(
                vec![label("__name__", "load1")],
                &[(1_700_000_000_000, 0.25)],
            ),
        ],
        metadata: vec![WireMetricMetadata {
            metric_type: 2,
            metric_family_name: "load1".into(),
            help: "1m load average.".into(),
            unit: String::new(),
        }],
    };
    let (status, _, body) = api.send(write_request(encode_snappy(&request))).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body:?}");

    let querier = api.store.querier().unwrap();
    let selected = querier
        .select(i64::MIN, i64::MAX, &[Matcher::equal("__name__", "up")])
        .unwrap();
    assert_eq!(selected.len(), 1);
    assert_eq!(
        selected[0].labels.to_string(),
        "up{instance=\"a:9100\", job=\"node\"}"
    );
    assert_eq!(selected[0].samples[0].v, 1.0);
    assert_eq!(selected[0].samples[1].t, 1_700_000_015_000);
    assert_eq!(selected[0].samples[1].v.to_bits(), STALE_NAN_BITS);

    let metadata = api.store.metadata();
    assert!(metadata.iter().any(|(metric, entry)| metric == "load1"
        && entry.metric_type == "gauge"
        && entry.help == "1m load average."));
    let (_, export) = api.get("/api/v1/export?match[]=up").await;
    assert!(
        std::str::from_utf8(&export)
            .unwrap()
            .contains("\"values\":[1,NaN]")
    );
}

#[tokio::test]
async fn one_invalid_series_refuses_the_whole_request() {
    let api = TestApi::new();
    let request = WriteRequest {
        timeseries: vec![
            series(vec![label("__name__", "fine")], &[(1, 1.0)]),
            series(vec![label("job", "nameless")], &[(1, 1.0)]),
        ],
        metadata: vec![],
    };
    let (status, _, body) = api.send(write_request(encode_snappy(&request))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("no metric name"), "{body:?}");
    assert!(api.series_of("fine").await.is_empty());
}

#[tokio::test]
async fn native_histograms_are_refused_not_dropped() {
    let api = TestApi::new();
    let mut histogram_series = series(vec![label("__name__", "latency")], &[]);
    histogram_series.histograms.push(WireHistogram {
        count_int: 4,
        sum: 1.0,
        schema: 1,
        timestamp: 1,
    });
    let request = WriteRequest {
        timeseries: vec![histogram_series],
        metadata: vec![],
    };
    let (status, _, body) = api.send(write_request(encode_snappy(&request))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error_message(&body).contains("native histograms are not supported yet"),
        "{body:?}"
    );
}

#[tokio::test]
async fn snappy_declared_length_over_the_limit_is_413() {
    let api = TestApi::with_limits(IngestLimits {
        max_body_bytes: 1 << 20,
        ..IngestLimits::default()
    });
    // Header varint declaring 3 GiB, followed by a few bytes: refused from
    // the header alone, nothing allocated for the declared size.
    let mut body = Vec::new();
    let mut declared: u64 = 3 << 30;
    while declared >= 0x80 {
        body.push((declared as u8) | 0x80);
        declared >>= 7;
    }
    body.push(declared as u8);
    body.extend_from_slice(b"\x00\x00\x00");
    let (status, _, response) = api.send(write_request(body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        error_message(&response).contains("snappy-declared decompressed size 3221225472 bytes"),
        "{response:?}"
    );
}

#[tokio::test]
async fn garbage_and_wrong_protocols_are_refused() {
    let api = TestApi::new();
    let (status, _, body) = api.send(write_request(b"not snappy at all".to_vec())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");

    let request = Request::post(WRITE)
        .header("Content-Encoding", "gzip")
        .body(Body::from("x"))
        .unwrap();
    let (status, _, _) = api.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let request = Request::post(WRITE)
        .header(
            "Content-Type",
            "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        )
        .body(Body::from("x"))
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(error_message(&body).contains("remote write 2.0"));
}

#[tokio::test]
async fn series_limit_applies_to_remote_write() {
    let api = TestApi::with_limits(IngestLimits {
        max_series_per_request: 1,
        ..IngestLimits::default()
    });
    let request = WriteRequest {
        timeseries: vec![
            series(vec![label("__name__", "a")], &[(1, 1.0)]),
            series(vec![label("__name__", "b")], &[(1, 1.0)]),
        ],
        metadata: vec![],
    };
    let (status, _, body) = api.send(write_request(encode_snappy(&request))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_message(&body),
        "request has more than 1 series (limit --ingest.max-series-per-request)"
    );
    assert!(api.series_of("a").await.is_empty());
}
