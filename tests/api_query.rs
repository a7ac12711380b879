//! PromQL over HTTP on a real `Tsdb` in a temp dir: Prometheus's JSON shapes
//! for every result type, annotations, each error class with its status
//! code, POST forms, format/parse_query, metadata, the status pages,
//! federation, and the `guardia query` CLI on a closed data directory.

#[path = "common/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use guardia::api::{ApiState, QuerySettings, Store, router};
use guardia::clock::ManualClock;
use guardia::config::IngestLimits;
use guardia::ingest::text::{Entry, Format, SampleBuf, TextParser};
use guardia::promql::EngineOptions;
use guardia::tsdb::{FaultInjection, Options, Tsdb};
use harness::{NOW_MS, TestApi, encode, error_message};
use serde_json::{Value, json};

const NOW_SECONDS: i64 = NOW_MS / 1000;

/// The data every test starts from: two `up` series 10 s and 40 s before
/// now, a counter, and metadata for `up`.
fn data() -> String {
    let t1 = NOW_MS - 40_000;
    let t2 = NOW_MS - 10_000;
    format!(
        "# TYPE up gauge\n\
         # HELP up Whether the target answered.\n\
         up{{job=\"node\",instance=\"a\"}} 1 {t1}\n\
         up{{job=\"node\",instance=\"a\"}} 0 {t2}\n\
         up{{job=\"node\",instance=\"b\"}} 1 {t1}\n\
         up{{job=\"node\",instance=\"b\"}} 1 {t2}\n\
         requests_total{{job=\"web\"}} 10 {t1}\n\
         requests_total{{job=\"web\"}} 40 {t2}\n"
    )
}

fn api_with(engine: EngineOptions, flags: BTreeMap<String, String>) -> TestApi {
    let directory = tempfile::tempdir().unwrap();
    let fault = Arc::new(FaultInjection::new());
    let store = Tsdb::open(
        directory.path(),
        Options {
            fault_injection: Some(fault.clone()),
            ..Options::default()
        },
    )
    .unwrap();
    let clock = ManualClock::new(NOW_MS);
    let api_store: Arc<dyn Store> = store.clone();
    let settings = QuerySettings {
        engine,
        flags,
        config_yaml: "scrape_configs: []\n".to_string(),
    };
    let state = ApiState::with_query_settings(
        api_store,
        Arc::new(clock.clone()),
        IngestLimits::default(),
        settings,
    );
    TestApi {
        router: router(state),
        store,
        fault,
        clock,
        directory,
    }
}

async fn loaded_with(engine: EngineOptions) -> TestApi {
    let api = api_with(engine, BTreeMap::new());
    let (status, body) = api.post("/api/v1/import/prometheus", data()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body:?}");
    api
}

async fn loaded() -> TestApi {
    loaded_with(EngineOptions::default()).await
}

async fn instant(api: &TestApi, expr: &str) -> (StatusCode, Value) {
    api.get_json(&format!(
        "/api/v1/query?query={}&time={NOW_SECONDS}",
        encode(expr)
    ))
    .await
}

fn assert_error(status: StatusCode, json: &Value, code: StatusCode, error_type: &str) {
    assert_eq!(status, code, "{json}");
    assert_eq!(json["status"], "error", "{json}");
    assert_eq!(json["errorType"], error_type, "{json}");
}

#[tokio::test]
async fn instant_vector_has_prometheus_shape() {
    let api = loaded().await;
    let (status, json) = instant(&api, "up").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"up","instance":"a","job":"node"},"value":[NOW_SECONDS,"0"]},
            {"metric":{"__name__":"up","instance":"b","job":"node"},"value":[NOW_SECONDS,"1"]}
        ]}})
    );
    // The default time is the clock's now; a fractional time keeps its milliseconds.
    let (_, json) = api
        .get_json(&format!("/api/v1/query?query={}", encode("sum(up)")))
        .await;
    assert_eq!(
        json["data"]["result"],
        json!([{"metric":{},"value":[NOW_SECONDS,"1"]}])
    );
    let (_, body) = api
        .get(&format!(
            "/api/v1/query?query={}&time=1700000000.5",
            encode("sum(up)")
        ))
        .await;
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("\"value\":[1700000000.5,\"1\"]"), "{text}");
    // RFC 3339 time.
    let (_, json) = api
        .get_json(&format!(
            "/api/v1/query?query={}&time=2023-11-14T22:13:20Z",
            encode("count(up)")
        ))
        .await;
    assert_eq!(
        json["data"]["result"][0]["value"],
        json!([NOW_SECONDS, "2"])
    );
}

#[tokio::test]
async fn range_selector_and_range_query_are_matrices() {
    let api = loaded().await;
    let (status, json) = instant(&api, "up{instance=\"a\"}[1m]").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","instance":"a","job":"node"},
             "values":[[NOW_SECONDS - 40,"1"],[NOW_SECONDS - 10,"0"]]}
        ]}})
    );
    let uri = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=15s",
        encode("up{instance=\"a\"}"),
        NOW_SECONDS - 30,
        NOW_SECONDS
    );
    let (status, json) = api.get_json(&uri).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        json,
        json!({"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"__name__":"up","instance":"a","job":"node"},
             "values":[[NOW_SECONDS - 30,"1"],[NOW_SECONDS - 15,"1"],[NOW_SECONDS,"0"]]}
        ]}})
    );
    // Float-seconds step gives the same answer.
    let float_step = uri.replace("step=15s", "step=15");
    assert_eq!(api.get_json(&float_step).await.1, json);
}

#[tokio::test]
async fn scalars_and_strings_have_prometheus_shape() {
    let api = loaded().await;
    let (_, json) = instant(&api, "1 + 1").await;
    assert_eq!(
        json,
        json!({"status":"success","data":{"resultType":"scalar","result":[NOW_SECONDS,"2"]}})
    );
    let (_, json) = instant(&api, "1 / 0").await;
    assert_eq!(json["data"]["result"], json!([NOW_SECONDS, "+Inf"]));
    let (_, json) = instant(&api, "-1 / 0").await;
    assert_eq!(json["data"]["result"], json!([NOW_SECONDS, "-Inf"]));
    let (_, json) = instant(&api, "0 / 0").await;
    assert_eq!(json["data"]["result"], json!([NOW_SECONDS, "NaN"]));
    let (_, json) = instant(&api, "1 / 3").await;
    assert_eq!(
        json["data"]["result"],
        json!([NOW_SECONDS, "0.3333333333333333"])
    );
    let (_, json) = instant(&api, "1e21").await;
    assert_eq!(
        json["data"]["result"],
        json!([NOW_SECONDS, "1000000000000000000000"])
    );
    let (_, json) = instant(&api, "\"hello\"").await;
    assert_eq!(
        json,
        json!({"status":"success","data":{"resultType":"string","result":[NOW_SECONDS,"hello"]}})
    );
}

#[tokio::test]
async fn annotations_appear_only_when_present() {
    let api = loaded().await;
    let (_, json) = instant(&api, "rate(requests_total[5m])").await;
    assert!(json.get("warnings").is_none(), "{json}");
    assert!(json.get("infos").is_none(), "{json}");

    let (status, json) = instant(&api, "rate(up[5m])").await;
    assert_eq!(status, StatusCode::OK);
    let infos = json["infos"].as_array().expect("infos array");
    assert_eq!(infos.len(), 1, "{json}");
    assert!(
        infos[0].as_str().unwrap().starts_with(
            "PromQL info: metric might not be a counter, name does not end in _total/_sum/_count/_bucket: \"up\""
        ),
        "{json}"
    );
    assert!(json.get("warnings").is_none(), "{json}");

    let (_, json) = instant(&api, "limit_ratio(2, up)").await;
    let warnings = json["warnings"].as_array().expect("warnings array");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with("PromQL warning: ratio value should be between -1 and 1, got 2"),
        "{json}"
    );
}

#[tokio::test]
async fn bad_parameters_are_400_bad_data() {
    let api = loaded().await;
    let (status, json) = instant(&api, "up{").await;
    assert_error(status, &json, StatusCode::BAD_REQUEST, "bad_data");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid parameter \"query\": parse error"),
        "{json}"
    );

    let (status, body) = api.get("/api/v1/query?query=up&time=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_message(&body),
        "invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp"
    );

    let cases = [
        (
            "start=0&end=100000&step=1",
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query resolution (?step=XX)",
        ),
        (
            "start=10&end=5&step=1",
            "invalid parameter \"end\": end timestamp must not be before start time",
        ),
        (
            "start=0&end=5&step=0",
            "invalid parameter \"step\": zero or negative query resolution step widths are not accepted. Try a positive integer",
        ),
        (
            "start=0&end=5&step=-15s",
            "invalid parameter \"step\": cannot parse \"-15s\" to a valid duration",
        ),
        (
            "start=0&end=5&step=fast",
            "invalid parameter \"step\": cannot parse \"fast\" to a valid duration",
        ),
        (
            "end=5&step=1",
            "invalid parameter \"start\": cannot parse \"\" to a valid timestamp",
        ),
        (
            "start=0&end=5&step=1&timeout=soon",
            "invalid parameter \"timeout\": cannot parse \"soon\" to a valid duration",
        ),
    ];
    for (query, message) in cases {
        let (status, body) = api
            .get(&format!("/api/v1/query_range?query=up&{query}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert_eq!(error_message(&body), message, "{query}");
    }
}

#[tokio::test]
async fn execution_errors_are_422() {
    let api = loaded().await;
    // Two series per side with the same `job`: no one-to-one match.
    let (status, json) = instant(&api, "up + on(job) up").await;
    assert_error(status, &json, StatusCode::UNPROCESSABLE_ENTITY, "execution");
    assert!(
        json["error"]
            .as_str()
            .unwrap()
            .contains("many-to-many matching not allowed")
            || json["error"].as_str().unwrap().contains("duplicate series"),
        "{json}"
    );

    let small = loaded_with(EngineOptions {
        max_samples: 1,
        ..EngineOptions::default()
    })
    .await;
    let (status, json) = instant(&small, "up").await;
    assert_error(status, &json, StatusCode::UNPROCESSABLE_ENTITY, "execution");
    assert_eq!(
        json["error"],
        "query processing would load too many samples into memory in query execution"
    );
}

#[tokio::test]
async fn timeouts_are_503() {
    let api = loaded().await;
    let uri = format!(
        "/api/v1/query_range?query={}&start={}&end={NOW_SECONDS}&step=1&timeout=0s",
        encode("sum(up)"),
        NOW_SECONDS - 3600
    );
    let (status, json) = api.get_json(&uri).await;
    assert_error(status, &json, StatusCode::SERVICE_UNAVAILABLE, "timeout");
    assert_eq!(json["error"], "query timed out in query execution");

    // The server-wide timeout applies too.
    let strict = loaded_with(EngineOptions {
        timeout: Duration::ZERO,
        ..EngineOptions::default()
    })
    .await;
    let uri = format!(
        "/api/v1/query_range?query=up&start={}&end={NOW_SECONDS}&step=1",
        NOW_SECONDS - 3600
    );
    let (status, json) = strict.get_json(&uri).await;
    assert_error(status, &json, StatusCode::SERVICE_UNAVAILABLE, "timeout");
}

#[tokio::test]
async fn post_form_queries_and_lookback_delta() {
    let api = loaded().await;
    let form = format!("query={}&time={NOW_SECONDS}", encode("sum(up)"));
    let request = Request::post("/api/v1/query")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        json["data"]["result"],
        json!([{"metric":{},"value":[NOW_SECONDS,"1"]}])
    );

    let form = format!(
        "query=up&start={}&end={NOW_SECONDS}&step=30",
        NOW_SECONDS - 30
    );
    let request = Request::post("/api/v1/query_range")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["data"]["result"].as_array().unwrap().len(), 2);

    // The newest samples are 10 s old: a 5 s lookback finds nothing.
    let (_, json) = api
        .get_json(&format!(
            "/api/v1/query?query=up&time={NOW_SECONDS}&lookback_delta=5s"
        ))
        .await;
    assert_eq!(json["data"]["result"], json!([]));

    // `limit` cuts the result and says so.
    let (_, json) = api
        .get_json(&format!(
            "/api/v1/query?query=up&time={NOW_SECONDS}&limit=1"
        ))
        .await;
    assert_eq!(json["data"]["result"].as_array().unwrap().len(), 1);
    assert_eq!(json["warnings"], json!(["results truncated due to limit"]));
}

#[tokio::test]
async fn format_and_parse_query() {
    let api = loaded().await;
    let (status, json) = api
        .get_json(&format!(
            "/api/v1/format_query?query={}",
            encode("sum(rate(http_requests_total{job=\"a\"}[5m]))by(job)")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"status":"success","data":"sum by (job) (rate(http_requests_total{job=\"a\"}[5m]))"})
    );

    let (status, json) = api
        .get_json(&format!(
            "/api/v1/parse_query?query={}",
            encode("up{job=\"a\"} offset 1m")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    let tree = &json["data"];
    assert_eq!(tree["type"], "vectorSelector", "{json}");
    assert_eq!(tree["name"], "up");
    assert_eq!(tree["offset"], 60_000);
    assert_eq!(
        tree["matchers"],
        json!([{"name":"job","type":"=","value":"a"}])
    );

    let (_, json) = api
        .get_json(&format!(
            "/api/v1/parse_query?query={}",
            encode("sum by (job) (up) > 1")
        ))
        .await;
    assert_eq!(json["data"]["type"], "binaryExpr", "{json}");
    assert_eq!(json["data"]["op"], ">");
    assert_eq!(json["data"]["lhs"]["type"], "aggregation");
    assert_eq!(json["data"]["lhs"]["grouping"], json!(["job"]));
    assert_eq!(json["data"]["rhs"]["type"], "numberLiteral");

    let (status, body) = api.get("/api/v1/format_query?query=sum(").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).starts_with("invalid parameter \"query\": parse error"));
}

#[tokio::test]
async fn metadata_and_exemplars() {
    let api = loaded().await;
    let (status, json) = api.get_json("/api/v1/metadata").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json["data"]["up"],
        json!([{"type":"gauge","help":"Whether the target answered.","unit":""}])
    );
    let (_, json) = api.get_json("/api/v1/metadata?metric=nothing").await;
    assert_eq!(json["data"], json!({}));
    let (_, json) = api.get_json("/api/v1/metadata?metric=up&limit=1").await;
    assert_eq!(json["data"].as_object().unwrap().len(), 1);
    let (_, json) = api.get_json("/api/v1/metadata?limit=0").await;
    assert_eq!(json["data"], json!({}));
    let (_, json) = api.get_json("/api/v1/metadata?limit_per_metric=0").await;
    assert_eq!(json["data"]["up"].as_array().unwrap().len(), 1);
    let (status, body) = api.get("/api/v1/metadata?limit=x").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_message(&body), "limit must be a number");
    let (status, body) = api.get("/api/v1/metadata?limit_per_metric=few").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_message(&body), "limit_per_metric must be a number");

    let (status, json) = api
        .get_json("/api/v1/query_exemplars?query=up&start=0&end=10")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json, json!({"status":"success","data":[]}));
    let (status, _) = api
        .get("/api/v1/query_exemplars?query=up&start=10&end=0")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/api/v1/query_exemplars?query=up{").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn status_pages() {
    let flags: BTreeMap<String, String> = [
        ("storage.path".to_string(), "/var/lib/guardia".to_string()),
        ("query.timeout".to_string(), "2m".to_string()),
        ("storage.retention.time".to_string(), "15d".to_string()),
    ]
    .into_iter()
    .collect();
    let api = api_with(EngineOptions::default(), flags);
    let (status, _) = api.post("/api/v1/import/prometheus", data()).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let (_, json) = api.get_json("/api/v1/status/buildinfo").await;
    assert_eq!(json["data"]["version"], env!("CARGO_PKG_VERSION"));
    let (_, json) = api.get_json("/api/v1/status/flags").await;
    assert_eq!(
        json,
        json!({"status":"success","data":{
            "query.timeout":"2m","storage.path":"/var/lib/guardia","storage.retention.time":"15d"
        }})
    );
    let (_, json) = api.get_json("/api/v1/status/config").await;
    assert_eq!(
        json,
        json!({"status":"success","data":{"yaml":"scrape_configs: []\n"}})
    );
    let (_, json) = api.get_json("/api/v1/status/runtimeinfo").await;
    assert_eq!(json["data"]["startTime"], "2023-11-14T22:13:20.000Z");
    assert_eq!(json["data"]["storageRetention"], "15d");

    let (status, json) = api.get_json("/api/v1/status/tsdb").await;
    assert_eq!(status, StatusCode::OK);
    let data = &json["data"];
    assert_eq!(data["headStats"]["numSeries"], 3, "{json}");
    // __name__=up, __name__=requests_total, job=node, job=web, instance=a, instance=b.
    assert_eq!(data["headStats"]["numLabelPairs"], 6);
    assert_eq!(data["headStats"]["minTime"], NOW_MS - 40_000);
    assert_eq!(data["headStats"]["maxTime"], NOW_MS - 10_000);
    assert_eq!(
        data["seriesCountByMetricName"],
        json!([{"name":"up","value":2},{"name":"requests_total","value":1}])
    );
    // Ties in count are ordered by name.
    assert_eq!(
        data["seriesCountByLabelValuePair"].as_array().unwrap()[..2],
        [
            json!({"name":"__name__=up","value":2}),
            json!({"name":"job=node","value":2})
        ]
    );
    let (_, json) = api.get_json("/api/v1/status/tsdb?limit=1").await;
    assert_eq!(
        json["data"]["seriesCountByMetricName"],
        json!([{"name":"up","value":2}])
    );
    let (status, body) = api.get("/api/v1/status/tsdb?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_message(&body), "limit must be a positive number");
}

#[tokio::test]
async fn federate_exposes_latest_samples() {
    let api = loaded().await;
    // A series whose newest sample is outside the 5 m lookback is left out.
    let old = format!("old_metric 7 {}\n", NOW_MS - 600_000);
    let (status, _) = api.post("/api/v1/import/prometheus", old).await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    let uri = format!(
        "/federate?match[]={}&match[]={}&match[]=old_metric",
        encode("up"),
        encode("{job=\"web\"}")
    );
    let (status, headers, body) = api
        .send(Request::get(&uri).body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = String::from_utf8(body.to_vec()).unwrap();
    let t = NOW_MS - 10_000;
    assert_eq!(
        text,
        format!(
            "# TYPE requests_total untyped\n\
             requests_total{{job=\"web\"}} 40 {t}\n\
             # TYPE up untyped\n\
             up{{instance=\"a\",job=\"node\"}} 0 {t}\n\
             up{{instance=\"b\",job=\"node\"}} 1 {t}\n"
        )
    );
    let mut parser = TextParser::new(&text, Format::Prometheus);
    let mut sample = SampleBuf::new();
    let mut parsed = Vec::new();
    while let Some(entry) = parser.next_entry(&mut sample).unwrap() {
        if entry == Entry::Sample {
            parsed.push((
                sample.to_labels().to_string(),
                sample.value(),
                sample.timestamp_ms(),
            ));
        }
    }
    assert_eq!(
        parsed,
        vec![
            ("requests_total{job=\"web\"}".to_string(), 40.0, Some(t)),
            ("up{instance=\"a\", job=\"node\"}".to_string(), 0.0, Some(t)),
            ("up{instance=\"b\", job=\"node\"}".to_string(), 1.0, Some(t)),
        ]
    );

    let (status, _) = api.get("/federate").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Writes `data()` into a fresh directory with a `Tsdb`, then closes it.
fn closed_data_directory() -> tempfile::TempDir {
    let directory = tempfile::tempdir().unwrap();
    let store = Tsdb::open(directory.path(), Options::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let api_store: Arc<dyn Store> = store.clone();
        let state = ApiState::new(
            api_store,
            Arc::new(ManualClock::new(NOW_MS)),
            IngestLimits::default(),
        );
        let request = Request::post("/api/v1/import/prometheus")
            .body(Body::from(data()))
            .unwrap();
        let response = tower::ServiceExt::oneshot(router(state), request)
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    });
    store.close().unwrap();
    drop(store);
    directory
}

fn run_cli(arguments: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_guardia"))
        .args(arguments)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn cli_query_prints_a_table() {
    let directory = closed_data_directory();
    let path = directory.path().to_str().unwrap().to_string();
    let time = NOW_SECONDS.to_string();
    let (ok, stdout, stderr) = run_cli(&["query", "up", "--time", &time, "--storage.path", &path]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("SERIES"), "{stdout}");
    assert!(lines[0].contains("VALUE") && lines[0].contains("TIMESTAMP"));
    let row_a: Vec<&str> = lines[1]
        .split("  ")
        .filter(|cell| !cell.is_empty())
        .collect();
    assert_eq!(
        row_a,
        vec!["up{instance=\"a\", job=\"node\"}", "0", &time],
        "{stdout}"
    );
    assert!(lines[2].contains("up{instance=\"b\", job=\"node\"}") && lines[2].contains(" 1 "));

    let (ok, stdout, _) = run_cli(&["query", "1 + 1", "--time", &time, "--storage.path", &path]);
    assert!(ok);
    assert_eq!(stdout, "2\n");

    let start = (NOW_SECONDS - 30).to_string();
    let (ok, stdout, stderr) = run_cli(&[
        "query-range",
        "up{instance=\"a\"}",
        "--start",
        &start,
        "--end",
        &time,
        "--step",
        "15s",
        "--storage.path",
        &path,
    ]);
    assert!(ok, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    let values: Vec<&str> = lines[1..]
        .iter()
        .map(|line| {
            line.split("  ")
                .filter(|cell| !cell.is_empty())
                .nth(1)
                .unwrap()
        })
        .collect();
    assert_eq!(values, vec!["1", "1", "0"], "{stdout}");

    let (ok, _, stderr) = run_cli(&["query", "up{", "--storage.path", &path]);
    assert!(!ok);
    assert!(stderr.contains("parse error"), "{stderr}");
}

#[test]
fn cli_query_refuses_a_directory_the_server_holds() {
    let directory = closed_data_directory();
    let path = directory.path().to_str().unwrap().to_string();
    let holder = Tsdb::open(directory.path(), Options::default()).unwrap();
    let (ok, _, stderr) = run_cli(&["query", "up", "--storage.path", &path]);
    assert!(!ok);
    assert!(stderr.contains("in use"), "{stderr}");
    holder.close().unwrap();

    let (ok, _, stderr) = run_cli(&["query", "up", "--storage.path", "/nonexistent/guardia"]);
    assert!(!ok);
    assert!(stderr.contains("no data directory"), "{stderr}");
}
