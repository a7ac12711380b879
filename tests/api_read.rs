//! Raw reads: `/api/v1/series`, `/api/v1/labels`, `/api/v1/label/{name}/values`
//! and `/api/v1/export` with Prometheus's `match[]`, `start`, `end`, `limit`
//! semantics and JSON shapes; some requests go over a real socket.

#[path = "common/harness.rs"]
mod harness;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use harness::{TestApi, encode, error_message};
use serde_json::json;

async fn loaded() -> TestApi {
    let api = TestApi::new();
    let body = "cpu{host=\"a\",mode=\"idle\"} 1 1000\n\
                cpu{host=\"a\",mode=\"idle\"} 2 2000\n\
                cpu{host=\"b\",mode=\"user\"} 3 5000\n\
                mem{host=\"a\"} 4 1000\n\
                disk{dev=\"sda\"} 5 9000\n";
    let (status, _) = api.post("/api/v1/import/prometheus", body).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    api
}

#[tokio::test]
async fn series_requires_match_and_unions_several() {
    let api = loaded().await;
    let (status, body) = api.get("/api/v1/series").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_message(&body), "no match[] parameter provided");

    let uri = format!(
        "/api/v1/series?match[]={}&match[]={}&match[]={}",
        encode("mem"),
        encode("cpu{mode=\"user\"}"),
        encode("mem{host=\"a\"}")
    );
    let (status, json) = api.get_json(&uri).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        json,
        json!({"status":"success","data":[
            {"__name__":"cpu","host":"b","mode":"user"},
            {"__name__":"mem","host":"a"}
        ]})
    );
}

#[tokio::test]
async fn time_range_accepts_float_seconds_and_rfc3339() {
    let api = loaded().await;
    // Only samples in [4s, 6s]: cpu{host="b"} at 5000 ms.
    for (start, end) in [
        ("4", "6"),
        ("1970-01-01T00:00:04Z", "1970-01-01T00:00:06.000Z"),
    ] {
        let uri = format!(
            "/api/v1/series?match[]={}&start={}&end={}",
            encode("{__name__=~\".+\"}"),
            encode(start),
            encode(end)
        );
        let (_, json) = api.get_json(&uri).await;
        assert_eq!(
            json["data"],
            json!([{"__name__":"cpu","host":"b","mode":"user"}]),
            "{start} {end}"
        );
    }
    let (status, body) = api.get("/api/v1/series?match[]=cpu&start=yesterday").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_message(&body),
        "invalid parameter \"start\": cannot parse \"yesterday\" to a valid timestamp"
    );
    let (status, body) = api.get("/api/v1/series?match[]=cpu&start=10&end=5").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_message(&body),
        "end timestamp must not be before start time"
    );
}

#[tokio::test]
async fn bad_selectors_are_bad_data_with_the_parser_message() {
    let api = loaded().await;
    let (status, body) = api
        .get(&format!("/api/v1/series?match[]={}", encode("cpu{")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["errorType"], "bad_data");
    assert!(!json["error"].as_str().unwrap().is_empty());
    let (status, body) = api
        .get(&format!(
            "/api/v1/labels?match[]={}",
            encode("{job=~\".*\"}")
        ))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("at least one non-empty matcher"));
}

#[tokio::test]
async fn labels_and_values_with_and_without_match() {
    let api = loaded().await;
    let (_, json) = api.get_json("/api/v1/labels").await;
    assert_eq!(json["data"], json!(["__name__", "dev", "host", "mode"]));
    let (_, json) = api
        .get_json(&format!("/api/v1/labels?match[]={}", encode("mem")))
        .await;
    assert_eq!(json["data"], json!(["__name__", "host"]));
    let (_, json) = api.get_json("/api/v1/label/host/values").await;
    assert_eq!(json, json!({"status":"success","data":["a","b"]}));
    let (_, json) = api
        .get_json(&format!(
            "/api/v1/label/host/values?match[]={}",
            encode("cpu{mode=\"user\"}")
        ))
        .await;
    assert_eq!(json["data"], json!(["b"]));
    let (_, json) = api.get_json("/api/v1/label/nothing/values").await;
    assert_eq!(json, json!({"status":"success","data":[]}));
}

#[tokio::test]
async fn limit_truncates_with_a_warning() {
    let api = loaded().await;
    let (_, json) = api.get_json("/api/v1/labels?limit=2").await;
    assert_eq!(
        json,
        json!({"status":"success","data":["__name__","dev"],"warnings":["results truncated due to limit"]})
    );
    let (_, json) = api.get_json("/api/v1/labels?limit=4").await;
    assert!(json.get("warnings").is_none(), "{json}");
    let (_, json) = api.get_json("/api/v1/labels?limit=0").await;
    assert_eq!(json["data"].as_array().unwrap().len(), 4);
    let (_, json) = api
        .get_json(&format!("/api/v1/series?match[]={}&limit=1", encode("cpu")))
        .await;
    assert_eq!(
        json["data"],
        json!([{"__name__":"cpu","host":"a","mode":"idle"}])
    );
    assert_eq!(json["warnings"], json!(["results truncated due to limit"]));
    let (status, body) = api.get("/api/v1/labels?limit=-1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        error_message(&body),
        "invalid parameter \"limit\": limit must be non-negative"
    );
}

#[tokio::test]
async fn post_form_parameters_work_like_query_parameters() {
    let api = loaded().await;
    let request = Request::post("/api/v1/series")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(Body::from(format!("match[]={}", encode("disk"))))
        .unwrap();
    let (status, _, body) = api.send(request).await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["data"], json!([{"__name__":"disk","dev":"sda"}]));
}

#[tokio::test]
async fn export_requires_match_and_respects_the_time_range() {
    let api = loaded().await;
    let (status, body) = api.get("/api/v1/export").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_message(&body).contains("match[]"));
    let (status, body) = api
        .get(&format!(
            "/api/v1/export?match[]={}&start=1.5&end=9",
            encode("cpu")
        ))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "{\"metric\":{\"__name__\":\"cpu\",\"host\":\"a\",\"mode\":\"idle\"},\"values\":[2],\"timestamps\":[2000]}\n\
         {\"metric\":{\"__name__\":\"cpu\",\"host\":\"b\",\"mode\":\"user\"},\"values\":[3],\"timestamps\":[5000]}\n"
    );
}

/// The same router behind a real TCP socket, driven by reqwest.
#[tokio::test]
async fn real_socket_push_and_read_back() {
    let api = TestApi::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = api.router.clone();
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let client = reqwest::Client::new();
    let base = format!("http://{address}");
    let response = client
        .post(format!(
            "{base}/api/v1/import/prometheus?extra_label=site=s1"
        ))
        .body("socket_metric{a=\"1\"} 42 1700000000000\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);

    let response = client
        .get(format!("{base}/api/v1/series"))
        .query(&[("match[]", "socket_metric")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let json: serde_json::Value = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    assert_eq!(
        json,
        json!({"status":"success","data":[{"__name__":"socket_metric","a":"1","site":"s1"}]})
    );

    let export = client
        .post(format!("{base}/api/v1/export"))
        .form(&[("match[]", "socket_metric")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        export.headers()["content-type"],
        "application/stream+json; charset=utf-8"
    );
    assert_eq!(
        export.text().await.unwrap(),
        "{\"metric\":{\"__name__\":\"socket_metric\",\"a\":\"1\",\"site\":\"s1\"},\"values\":[42],\"timestamps\":[1700000000000]}\n"
    );
    server.abort();
}
