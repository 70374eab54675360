//! The publisher as a real process, for scenarios that `kill -9` it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use revocast_core::PublicKey;
use revocast_publisher::client::ApiClient;
use revocast_testkit::free_port;

/// Path of the `revocast-publisher` binary next to this test's target directory,
/// building it first when `cargo test` did not (for example with `-p revocast-tests`).
pub fn publisher_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/revocast-publisher
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the target directory");
    let bin = dir.join("revocast-publisher");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args([
                "build",
                "-p",
                "revocast-publisher",
                "--bin",
                "revocast-publisher",
            ])
            .status()
            .expect("run cargo build for the publisher");
        assert!(status.success(), "building revocast-publisher failed");
    }
    assert!(bin.is_file(), "no publisher binary at {}", bin.display());
    bin
}

/// A `revocast-publisher serve` process; killed with SIGKILL on drop.
#[derive(Debug)]
pub struct PublisherProcess {
    child: Option<Child>,
    args: Vec<String>,
    pub port: u16,
    pub data_dir: tempfile::TempDir,
}

impl PublisherProcess {
    /// Starts `serve` against `nats_url` with a fresh data dir and waits for
    /// `/readyz`.
    pub async fn start(nats_url: &str) -> PublisherProcess {
        let port = free_port();
        let data_dir = tempfile::tempdir().expect("a data dir");
        let args = vec![
            "serve".to_owned(),
            "--nats".to_owned(),
            nats_url.to_owned(),
            "--listen".to_owned(),
            format!("127.0.0.1:{port}"),
            "--data-dir".to_owned(),
            data_dir.path().display().to_string(),
            "--heartbeat-interval".to_owned(),
            "200ms".to_owned(),
        ];
        let mut process = PublisherProcess {
            child: None,
            args,
            port,
            data_dir,
        };
        process.spawn().await;
        process
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The public key of the key file the process created.
    pub fn public_key(&self) -> PublicKey {
        let text = std::fs::read_to_string(self.data_dir.path().join("signing.key"))
            .expect("the signing key file");
        let key = revocast_core::signing_key_from_file(&text).expect("a valid key file");
        PublicKey(key.verifying_key())
    }

    /// SIGKILL, no chance to flush or snapshot.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the process again with the same arguments and data dir.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = Command::new(publisher_bin())
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the publisher");
        self.child = Some(child);
        let api = ApiClient::builder(self.url())
            .timeout(Duration::from_secs(5))
            .build()
            .expect("an API client");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = api.readiness().await.is_ok_and(|r| r.ready);
            if ready {
                return;
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("the publisher exited with {status} before it was ready");
            }
            assert!(
                Instant::now() < deadline,
                "the publisher was not ready within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PublisherProcess {
    fn drop(&mut self) {
        self.kill9();
    }
}
