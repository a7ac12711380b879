//! `POST /api/v1/import/prometheus`: what is pushed comes back exactly;
//! gzip, `extra_label`, `timestamp`; a bad line stores nothing; every limit
//! answers with its code and message; out-of-order samples are reported.

#[path = "common/harness.rs"]
mod harness;

use std::io::Write;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use guardia::config::IngestLimits;
use harness::{NOW_MS, TestApi, encode, error_message};

const IMPORT: &str = "/api/v1/import/prometheus";

#[tokio::test]
async fn pushed_text_comes_back_through_export_series_and_labels() {
    let api = TestApi::new();
    let body = "# HELP temperature_celsius Room temperature.\n\
                # TYPE temperature_celsius gauge\n\
                temperature_celsius{room=\"a\",site=\"x\"} 21.5 1700000000000\n\
                temperature_celsius{room=\"a\",site=\"x\"} 0.1 1700000015000\n\
                temperature_celsius{room=\"b\",site=\"x\"} -3e-7 1700000000000\n\
                up{job=\"node\"} 1 1700000000000\n";
    let (status, response) = api.post(IMPORT, body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{response:?}");

    let (status, export) = api
        .get(&format!(
            "/api/v1/export?match[]={}",
            encode("temperature_celsius")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        std::str::from_utf8(&export).unwrap(),
        "{\"metric\":{\"__name__\":\"temperature_celsius\",\"room\":\"a\",\"site\":\"x\"},\"values\":[21.5,0.1],\"timestamps\":[1700000000000,1700000015000]}\n\
         {\"metric\":{\"__name__\":\"temperature_celsius\",\"room\":\"b\",\"site\":\"x\"},\"values\":[-0.0000003],\"timestamps\":[1700000000000]}\n"
    );

    assert_eq!(
        api.series_of("{site=\"x\"}").await,
        vec![
            "__name__=temperature_celsius,room=a,site=x",
            "__name__=temperature_celsius,room=b,site=x"
        ]
    );
    let (_, labels) = api.get_json("/api/v1/labels").await;
    assert_eq!(
        labels,
        serde_json::json!({"status":"success","data":["__name__","job","room","site"]})
    );
    let (_, values) = api.get_json("/api/v1/label/__name__/values").await;
    assert_eq!(
        values,
        serde_json::json!({"status":"success","data":["temperature_celsius","up"]})
    );
    let metadata = guardia::storage::Queryable::metadata(api.store.as_ref());
    assert_eq!(metadata[0].0, "temperature_celsius");
    assert_eq!(metadata[0].1.metric_type, "gauge");
    assert_eq!(metadata[0].1.help, "Room temperature.");
}

#[tokio::test]
async fn gzip_bodies_are_accepted_by_header_and_by_magic_bytes() {
    let api = TestApi::new();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder
        .write_all(b"zipped_metric 7 1700000000000\n")
        .unwrap();
    let compressed = encoder.finish().unwrap();

    let request = Request::post(IMPORT)
        .header("Content-Encoding", "gzip")
        .body(Body::from(compressed.clone()))
        .unwrap();
    let (status, _, _) = api.send(request).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // No header: recognised by the gzip magic bytes. Same sample again is an
    // idempotent duplicate, so still 204.
    let (status, _) = api.post(IMPORT, compressed).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        api.series_of("zipped_metric").await,
        vec!["__name__=zipped_metric"]
    );
}

#[tokio::test]
async fn extra_labels_override_and_timestamp_param_fills_missing_timestamps() {
    let api = TestApi::new();
    let uri =
        format!("{IMPORT}?extra_label=site=berlin&extra_label=job=forced&timestamp=1600000000000");
    let body = "m{job=\"original\",x=\"1\"} 1\nm{x=\"2\"} 2 1600000005000\n";
    let (status, response) = api.post(&uri, body).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{response:?}");
    let (_, export) = api
        .get(&format!("/api/v1/export?match[]={}", encode("m")))
        .await;
    assert_eq!(
        std::str::from_utf8(&export).unwrap(),
        "{\"metric\":{\"__name__\":\"m\",\"job\":\"forced\",\"site\":\"berlin\",\"x\":\"1\"},\"values\":[1],\"timestamps\":[1600000000000]}\n\
         {\"metric\":{\"__name__\":\"m\",\"job\":\"forced\",\"site\":\"berlin\",\"x\":\"2\"},\"values\":[2],\"timestamps\":[1600000005000]}\n"
    );
}

#[tokio::test]
async fn lines_without_timestamp_get_the_receive_time_from_the_clock() {
    let api = TestApi::new();
    api.clock.set(NOW_MS + 42);
    let (status, _) = api.post(IMPORT, "no_ts 3\n").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, export) = api
        .get(&format!("/api/v1/export?match[]={}", encode("no_ts")))
        .await;
    assert!(
        std::str::from_utf8(&export)
            .unwrap()
            .contains(&format!("\"timestamps\":[{}]", NOW_MS + 42)),
        "{export:?}"
    );
}

#[tokio::test]
async fn a_bad_line_is_named_and_nothing_of_the_request_is_stored() {
    let api = TestApi::new();
    let body =
        "good_metric 1 1700000000000\ngood_metric{a=\"b\"} 2 1700000000000\nbad_metric{a=\"b\" 3\n";
    let (status, response) = api.post(IMPORT, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = error_message(&response);
    assert!(message.starts_with("line 3: "), "{message}");
    let json: serde_json::Value = serde_json::from_slice(&response).unwrap();
    assert_eq!(json["errorType"], "bad_data");
    assert!(api.series_of("good_metric").await.is_empty());
    assert!(api.series_of("{__name__=~\".+\"}").await.is_empty());
}

async fn limit_error(limits: IngestLimits, body: &str) -> (StatusCode, String) {
    let api = TestApi::with_limits(limits);
    let (status, response) = api.post(IMPORT, body.to_string()).await;
    let message = error_message(&response);
    assert!(
        api.series_of("{__name__=~\".+\"}").await.is_empty(),
        "nothing may be stored after a refused request"
    );
    (status, message)
}

#[tokio::test]
async fn every_limit_has_its_code_and_message() {
    let (status, message) = limit_error(
        IngestLimits {
            max_body_bytes: 10,
            ..IngestLimits::default()
        },
        "body_that_is_too_long 1\n",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        message.contains("exceeds the limit of 10 bytes (--ingest.max-body-size)"),
        "{message}"
    );

    let (status, message) = limit_error(
        IngestLimits {
            max_labels_per_series: 2,
            ..IngestLimits::default()
        },
        "ok{a=\"1\"} 1\nm{a=\"1\",b=\"2\"} 1\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message,
        "line 2: 3 labels, more than the limit of 2 (--ingest.max-labels-per-series)"
    );

    let (status, message) = limit_error(
        IngestLimits {
            max_label_name_length: 8,
            ..IngestLimits::default()
        },
        "m{abcdefghi=\"1\"} 1\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message,
        "line 1: label name of 9 bytes, longer than the limit of 8 (--ingest.max-label-name-length)"
    );

    let (status, message) = limit_error(
        IngestLimits {
            max_label_value_length: 3,
            ..IngestLimits::default()
        },
        "m{a=\"1234\"} 1\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message,
        "line 1: value of label \"a\" is 4 bytes, longer than the limit of 3 (--ingest.max-label-value-length)"
    );

    let (status, message) = limit_error(
        IngestLimits {
            max_series_per_request: 2,
            ..IngestLimits::default()
        },
        "a 1 1\na 2 2\nb 1 1\nc 1 1\n",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        message,
        "line 4: request has more than 2 series (limit --ingest.max-series-per-request)"
    );
}

#[tokio::test]
async fn declared_content_length_over_the_limit_is_refused_before_reading() {
    let api = TestApi::with_limits(IngestLimits {
        max_body_bytes: 100,
        ..IngestLimits::default()
    });
    let request = Request::post(IMPORT)
        .header("Content-Length", "1000000")
        .body(Body::from("x 1\n"))
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_message(&body).contains("1000000 bytes"));
}

#[tokio::test]
async fn gzip_bomb_is_refused_with_413() {
    let api = TestApi::with_limits(IngestLimits {
        max_body_bytes: 1 << 20,
        ..IngestLimits::default()
    });
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let line = b"bomb_metric 1\n";
    for _ in 0..(8 << 20) / line.len() {
        encoder.write_all(line).unwrap();
    }
    let compressed = encoder.finish().unwrap();
    assert!(compressed.len() < 1 << 20);
    let (status, body) = api.post(IMPORT, compressed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(error_message(&body).contains("decompressed request body exceeds the limit"));
}

#[tokio::test]
async fn out_of_order_and_duplicate_timestamps_are_reported_and_the_rest_stored() {
    let api = TestApi::new();
    let (status, _) = api.post(IMPORT, "s 10 2000\n").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = api
        .post(IMPORT, "s 1 1000\ns 11 2000\nother 5 1000\n")
        .await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], "success");
    assert_eq!(json["data"]["samplesAppended"], 1);
    assert_eq!(json["data"]["outOfOrder"], 1);
    assert_eq!(json["data"]["duplicateTimestamp"], 1);
    assert_eq!(json["data"]["examples"].as_array().unwrap().len(), 2);
    assert_eq!(json["warnings"].as_array().unwrap().len(), 2);
    assert_eq!(api.series_of("other").await, vec!["__name__=other"]);
}

#[tokio::test]
async fn invalid_query_parameters_are_bad_data() {
    let api = TestApi::new();
    let (status, body) = api
        .post(&format!("{IMPORT}?extra_label=novalue"), "m 1\n")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("extra_label"));
    let (status, body) = api.post(&format!("{IMPORT}?timestamp=soon"), "m 1\n").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("invalid timestamp"));
    let request = Request::post(IMPORT)
        .header("Content-Encoding", "br")
        .body(Body::from("m 1\n"))
        .unwrap();
    let (status, _, _) = api.send(request).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

/// A real node_exporter scrape pushed through the API reads back sample for
/// sample, values bit-exact, through the storage querier.
#[tokio::test]
async fn real_node_exporter_capture_round_trips() {
    use guardia::ingest::text::{Entry, Format, SampleBuf, TextParser};
    use guardia::model::Matcher;
    use guardia::storage::Queryable;

    let capture = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/node_exporter.prom"
    ))
    .unwrap();
    let mut expected = std::collections::BTreeMap::new();
    let mut parser = TextParser::new(&capture, Format::Prometheus);
    let mut sample = SampleBuf::new();
    while let Some(entry) = parser.next_entry(&mut sample).unwrap() {
        if entry == Entry::Sample {
            expected.insert(sample.to_labels(), sample.value().to_bits());
        }
    }
    assert!(expected.len() > 100);

    let api = TestApi::new();
    let (status, body) = api
        .post(
            &format!("{IMPORT}?timestamp=1700000000000"),
            capture.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body:?}");

    let querier = api.store.querier().unwrap();
    let selected = querier
        .select(
            i64::MIN / 4,
            i64::MAX / 4,
            &[Matcher::new(guardia::model::MatchOp::Regex, "__name__", ".+").unwrap()],
        )
        .unwrap();
    let stored: std::collections::BTreeMap<_, _> = selected
        .into_iter()
        .map(|series| {
            assert_eq!(series.samples.len(), 1);
            assert_eq!(series.samples[0].t, 1_700_000_000_000);
            (series.labels, series.samples[0].v.to_bits())
        })
        .collect();
    assert_eq!(stored, expected);
}
