//! A real Prometheus server for tests: `prometheus` on a random loopback port with a
//! generated configuration (short scrape and evaluation intervals, the given rule
//! files and targets) and its own storage directory, killed (and its storage removed)
//! on drop; and `promtool`, to check and unit-test rule files.
//!
//! Debian and Ubuntu ship both in the package `prometheus`. Unlike `nats-server`,
//! Prometheus is optional: [`try_prometheus_bin`] and [`try_promtool_bin`] say why it
//! is missing so that a test can skip with that message.

use crate::program::Found;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::nats::free_port;

/// How long Prometheus may take to start.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a Prometheus binary was not found.
#[derive(Debug, thiserror::Error)]
pub enum PrometheusMissing {
    /// The environment variable names no file.
    #[error("{var}={} does not name a file", .path.display())]
    NotAFile {
        /// `PROMETHEUS_BIN` or `PROMTOOL_BIN`.
        var: &'static str,
        /// Its value.
        path: PathBuf,
    },
    /// Not in `PATH` or `/usr/bin`.
    #[error(
        "{0} not found in PATH or /usr/bin. Install it (Debian/Ubuntu: \
         `sudo apt-get install -y prometheus`, which ships prometheus and promtool) \
         or set PROMETHEUS_BIN / PROMTOOL_BIN to its path."
    )]
    NotFound(&'static str),
}

fn find(name: &'static str, var: &'static str) -> Result<PathBuf, PrometheusMissing> {
    match crate::program::find(name, var, &["/usr/bin"]) {
        Found::At(path) => Ok(path),
        Found::NotAFile(path) => Err(PrometheusMissing::NotAFile { var, path }),
        Found::Nowhere => Err(PrometheusMissing::NotFound(name)),
    }
}

/// Where `prometheus` is: `PROMETHEUS_BIN`, then `PATH`, then `/usr/bin`.
pub fn try_prometheus_bin() -> Result<PathBuf, PrometheusMissing> {
    find("prometheus", "PROMETHEUS_BIN")
}

/// Where `promtool` is: `PROMTOOL_BIN`, then `PATH`, then `/usr/bin`.
pub fn try_promtool_bin() -> Result<PathBuf, PrometheusMissing> {
    find("promtool", "PROMTOOL_BIN")
}

/// One scrape job: a name and `host:port` targets serving `/metrics`.
#[derive(Debug, Clone)]
struct Job {
    name: String,
    targets: Vec<String>,
}

/// Options for a server; [`Prometheus::builder`] starts from a 1 s scrape and
/// evaluation interval.
#[derive(Debug, Clone)]
pub struct PrometheusBuilder {
    interval: Duration,
    jobs: Vec<Job>,
    rule_files: Vec<PathBuf>,
}

impl PrometheusBuilder {
    /// Scrape and rule evaluation interval (whole seconds, at least 1).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Scrapes `targets` (`host:port`, path `/metrics`) as job `name`.
    pub fn scrape(mut self, name: &str, targets: &[String]) -> Self {
        self.jobs.push(Job {
            name: name.to_owned(),
            targets: targets.to_vec(),
        });
        self
    }

    /// Loads an alerting or recording rule file.
    pub fn rule_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.rule_files.push(path.into());
        self
    }

    /// The configuration file text.
    fn config_text(&self) -> String {
        let secs = self.interval.as_secs().max(1);
        let mut text = format!(
            "global:\n  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\n  \
             evaluation_interval: {secs}s\n"
        );
        if !self.rule_files.is_empty() {
            text.push_str("rule_files:\n");
            for file in &self.rule_files {
                text.push_str(&format!("  - {:?}\n", file.display().to_string()));
            }
        }
        text.push_str("scrape_configs:\n");
        for job in &self.jobs {
            let targets: Vec<String> = job.targets.iter().map(|t| format!("{t:?}")).collect();
            text.push_str(&format!(
                "  - job_name: {:?}\n    static_configs:\n      - targets: [{}]\n",
                job.name,
                targets.join(", ")
            ));
        }
        text
    }

    /// Starts Prometheus and waits until it serves requests. Panics when the binary
    /// is missing (check [`try_prometheus_bin`] first) or it does not start.
    pub fn start(self) -> Prometheus {
        let bin = try_prometheus_bin().unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::Builder::new()
            .prefix("revocast-prometheus-")
            .tempdir()
            .expect("create a temp dir for prometheus");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, self.config_text()).expect("write prometheus.yml");
        let mut server = Prometheus {
            child: None,
            port: 0,
            dir,
        };
        // The port is found free, then released: another process may take it in
        // between, so a start that finds it taken tries another one.
        for attempt in 1..=START_ATTEMPTS {
            server.port = free_port();
            let log = server.dir.path().join("prometheus.log");
            let child = Command::new(&bin)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    server.dir.path().join("data").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{}", server.port))
                .arg("--log.level=info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("create the prometheus log"))
                .spawn()
                .expect("spawn prometheus");
            server.child = Some(child);
            match server.wait_ready(&log) {
                Ok(()) => return server,
                Err(text)
                    if attempt < START_ATTEMPTS && text.contains("address already in use") =>
                {
                    server.stop();
                }
                Err(text) => panic!("prometheus did not start:\n{text}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

/// Starts tried before giving up (see [`PrometheusBuilder::start`]).
const START_ATTEMPTS: u32 = 3;

/// A running `prometheus`, killed (and its storage removed) on drop.
#[derive(Debug)]
pub struct Prometheus {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    /// A builder: add scrape jobs and rule files, then [`PrometheusBuilder::start`].
    pub fn builder() -> PrometheusBuilder {
        PrometheusBuilder {
            interval: Duration::from_secs(1),
            jobs: Vec::new(),
            rule_files: Vec::new(),
        }
    }

    /// `http://127.0.0.1:<port>`: the HTTP API is under `/api/v1/`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// Waits until the server is ready; `Err(log)` when it exits first or does not
    /// get ready in time.
    fn wait_ready(&mut self, log: &Path) -> Result<(), String> {
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("Server is ready to receive web requests") {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("exited ({status}) before it was ready:\n{text}"));
            }
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!("not ready after {READY_TIMEOUT:?}:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `promtool` with `args` in `dir`; `Ok(output)` when it exits 0, else
/// `Err(output)` (stdout and stderr together).
pub fn promtool(dir: &Path, args: &[&str]) -> Result<String, String> {
    let bin = try_promtool_bin().map_err(|e| e.to_string())?;
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run promtool: {e}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}
