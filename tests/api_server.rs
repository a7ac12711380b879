//! The real binary: start on a free port with a temp dir, push, SIGTERM,
//! expect exit code 0, restart and find the data. Also the CLI surface.

use std::path::Path;
use std::process::Command;

#[path = "common/process.rs"]
mod process;
use process::{BINARY, Guardia, free_port};

fn start(storage: &Path, port: u16) -> Guardia {
    Guardia::serve(
        port,
        [
            format!("--storage.path={}", storage.display()),
            "--log.level=debug".to_string(),
        ],
    )
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_data_survives_restart() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let mut child = start(directory.path(), port);
    child.wait_ready(&client).await;
    let response = client
        .post(format!("{base}/api/v1/import/prometheus"))
        .body("survivor{site=\"a\"} 1 1700000000000\nsurvivor{site=\"a\"} 2 1700000015000\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let status = child.terminate();
    assert_eq!(status.code(), Some(0), "{status}");

    let mut child = start(directory.path(), port);
    child.wait_ready(&client).await;
    let export = client
        .get(format!("{base}/api/v1/export"))
        .query(&[("match[]", "survivor")])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        export,
        "{\"metric\":{\"__name__\":\"survivor\",\"site\":\"a\"},\"values\":[1,2],\"timestamps\":[1700000000000,1700000015000]}\n"
    );
    let status = child.terminate();
    assert_eq!(status.code(), Some(0), "{status}");
}

#[test]
fn version_and_bad_flags() {
    let output = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("guardia {}", env!("CARGO_PKG_VERSION"))
    );
    let output = Command::new(BINARY)
        .arg("--storage.retention.time=15x")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("invalid duration \"15x\""),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = Command::new(BINARY)
        .arg("--log.format=xml")
        .output()
        .unwrap();
    assert!(!output.status.success());
}
