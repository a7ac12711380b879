//! Durability with a real process: writers push concurrently, the server is
//! killed with SIGKILL at a random moment, restarted on the same directory,
//! and every sample that was acknowledged (2xx) must be back with its exact
//! value. Repeated for several rounds on one data directory, so recovery of a
//! recovered store is exercised too.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[path = "common/process.rs"]
mod process;
use process::{Guardia, free_port};

const ROUNDS: usize = 5;
const WRITERS: usize = 4;
const SAMPLES_PER_BODY: usize = 500;

fn start_server(dir: &Path, port: u16) -> Guardia {
    Guardia::serve(
        port,
        [
            format!("--storage.path={}", dir.display()),
            "--log.level=warn".to_string(),
        ],
    )
}

/// A cheap deterministic generator so failures can be replayed.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

// Rounds are 10^7 ms (2.8 h) apart: far enough to cross partitions, close
// enough that the default 15 d retention keeps every round.

/// Exact value for a sample: finite, with many significant digits, so a lossy
/// round trip anywhere (text formatting, encoding) would be caught.
fn value_for(writer: usize, timestamp: i64) -> f64 {
    let bits = mix((writer as u64) << 48 ^ timestamp as u64);
    (bits >> 11) as f64 / 7.0 - 1e12
}

type Acked = Arc<Mutex<BTreeMap<(usize, i64), f64>>>;

async fn writer_loop(
    client: reqwest::Client,
    base: String,
    writer: usize,
    round: usize,
    acked: Acked,
) {
    let mut batch = 0i64;
    loop {
        let first = (round as i64) * 10_000_000 + batch * SAMPLES_PER_BODY as i64;
        let mut body = String::new();
        for offset in 0..SAMPLES_PER_BODY as i64 {
            let timestamp = first + offset;
            body.push_str(&format!(
                "crash_test{{writer=\"{writer}\"}} {:?} {timestamp}\n",
                value_for(writer, timestamp)
            ));
        }
        let response = client
            .post(format!("{base}/api/v1/import/prometheus"))
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => {
                let mut acked = acked.lock().expect("acked lock");
                for offset in 0..SAMPLES_PER_BODY as i64 {
                    let timestamp = first + offset;
                    acked.insert((writer, timestamp), value_for(writer, timestamp));
                }
            }
            Ok(response) => panic!("unexpected status {} while pushing", response.status()),
            // The server was killed: this body was never acknowledged.
            Err(_) => return,
        }
        batch += 1;
    }
}

async fn export_all(client: &reqwest::Client, base: &str) -> BTreeMap<(usize, i64), f64> {
    let text = client
        .get(format!("{base}/api/v1/export"))
        .query(&[("match[]", "crash_test")])
        .send()
        .await
        .expect("export request")
        .text()
        .await
        .expect("export body");
    let mut stored = BTreeMap::new();
    for line in text.lines().filter(|line| !line.trim().is_empty()) {
        let series: serde_json::Value = serde_json::from_str(line).expect("export line is JSON");
        let writer: usize = series["metric"]["writer"]
            .as_str()
            .expect("writer label")
            .parse()
            .expect("writer number");
        let values = series["values"].as_array().expect("values");
        let timestamps = series["timestamps"].as_array().expect("timestamps");
        assert_eq!(values.len(), timestamps.len());
        for (value, timestamp) in values.iter().zip(timestamps) {
            stored.insert(
                (writer, timestamp.as_i64().expect("timestamp")),
                value.as_f64().expect("value"),
            );
        }
    }
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_samples_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = reqwest::Client::new();
    let acked: Acked = Arc::new(Mutex::new(BTreeMap::new()));
    for round in 0..ROUNDS {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut server = start_server(dir.path(), port);
        server.wait_ready(&client).await;

        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                tokio::spawn(writer_loop(
                    client.clone(),
                    base.clone(),
                    writer,
                    round,
                    Arc::clone(&acked),
                ))
            })
            .collect();
        let kill_after = Duration::from_millis(300 + mix(round as u64 + 17) % 1200);
        tokio::time::sleep(kill_after).await;
        server.kill_9();
        for writer in writers {
            writer.await.expect("writer task");
        }

        let mut restarted = start_server(dir.path(), port);
        restarted.wait_ready(&client).await;
        let stored = export_all(&client, &base).await;
        let acked = acked.lock().expect("acked lock").clone();
        assert!(
            !acked.is_empty(),
            "round {round}: nothing was acknowledged before the kill"
        );
        let mut missing = 0usize;
        for (key, value) in &acked {
            match stored.get(key) {
                Some(stored_value) => assert_eq!(
                    stored_value.to_bits(),
                    value.to_bits(),
                    "round {round}: sample {key:?} came back with another value"
                ),
                None => missing += 1,
            }
        }
        assert_eq!(
            missing,
            0,
            "round {round}: {missing} of {} acknowledged samples lost",
            acked.len()
        );
        drop(restarted);
    }
}
