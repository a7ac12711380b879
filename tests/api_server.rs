//! The real binary: start on a free port with a temp dir, push, SIGTERM,
//! expect exit code 0, restart and find the data. Also the CLI surface.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_guardia");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start(storage: &Path, port: u16) -> Child {
    Command::new(BINARY)
        .arg("serve")
        .arg(format!("--storage.path={}", storage.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=debug")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Polls `/-/ready` until 200; startup time is not what is being tested, so
/// the deadline is generous and only guards against a hung test.
async fn wait_ready(client: &reqwest::Client, base: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("guardia exited before becoming ready: {status}");
        }
        if let Ok(response) = client.get(format!("{base}/-/ready")).send().await
            && response.status().as_u16() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "guardia did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn terminate_and_wait(child: &mut Child) -> std::process::ExitStatus {
    let killed = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(killed.success());
    child.wait().unwrap()
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_data_survives_restart() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let mut child = start(directory.path(), port);
    wait_ready(&client, &base, &mut child).await;
    let response = client
        .post(format!("{base}/api/v1/import/prometheus"))
        .body("survivor{site=\"a\"} 1 1700000000000\nsurvivor{site=\"a\"} 2 1700000015000\n")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let status = terminate_and_wait(&mut child);
    assert_eq!(status.code(), Some(0), "{status}");

    let mut child = start(directory.path(), port);
    wait_ready(&client, &base, &mut child).await;
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
    let status = terminate_and_wait(&mut child);
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
