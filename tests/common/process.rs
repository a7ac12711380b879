//! Shared parts of the tests that run the real binary: a free loopback port,
//! a `guardia serve` child process that is killed when a failed assertion
//! unwinds past it, readiness polling, SIGTERM and SIGKILL. Deadlines here
//! only guard against a hung test; nothing asserts on timing.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

pub const BINARY: &str = env!("CARGO_BIN_EXE_guardia");

/// How long a test waits for a condition before it fails as hung.
pub const DEADLINE: Duration = Duration::from_secs(120);

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

/// Any child process (an exporter, an Alertmanager), killed when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A running `guardia serve`; killed (SIGKILL) when dropped.
pub struct Guardia {
    pub child: Child,
    pub port: u16,
}

impl Guardia {
    /// Starts `guardia serve` on `127.0.0.1:port` with the extra `args`
    /// (storage path, config file, flags).
    pub fn serve<I, S>(port: u16, args: I) -> Guardia
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let child = Command::new(BINARY)
            .arg("serve")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Guardia { child, port }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("guardia exited early: {status}");
        }
    }

    /// Polls `/-/ready` until it answers 200 (the store is open and
    /// replayed, rules and notifier are loaded).
    pub async fn wait_ready(&mut self, client: &reqwest::Client) {
        let url = format!("{}/-/ready", self.base());
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.assert_running();
            if let Ok(response) = client.get(&url).send().await
                && response.status().as_u16() == 200
            {
                return;
            }
            assert!(Instant::now() < deadline, "guardia never became ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends the named signal (`"HUP"`, `"TERM"`).
    pub fn signal(&self, name: &str) {
        let signalled = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(signalled.success());
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.child.wait().unwrap()
    }

    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Polls a JSON endpoint until `check` accepts it.
    pub async fn wait_json(
        &mut self,
        client: &reqwest::Client,
        path: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let url = format!("{}{path}", self.base());
        let deadline = Instant::now() + DEADLINE;
        loop {
            self.assert_running();
            if let Ok(response) = client.get(&url).send().await
                && response.status().is_success()
                && let Ok(text) = response.text().await
                && let Ok(body) = serde_json::from_str::<Value>(&text)
                && check(&body)
            {
                return body;
            }
            assert!(Instant::now() < deadline, "condition not reached on {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Guardia {
    fn drop(&mut self) {
        self.kill_9();
    }
}
