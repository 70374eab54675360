//! What the figures were measured on: CPU, cores, memory, kernel and versions.

use std::path::Path;
use std::process::Command;

use serde::Serialize;

/// The machine and the software versions of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model from `/proc/cpuinfo`.
    pub cpu_model: String,
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// `MemTotal` in bytes.
    pub memory_bytes: u64,
    /// Kernel release.
    pub kernel: String,
    /// `nats-server --version`.
    pub nats_server: String,
    /// `redis-server --version`, when installed.
    pub redis_server: Option<String>,
    /// `rustc --version` when a toolchain is on the PATH.
    pub rustc: Option<String>,
    /// The checked-out commit, when run from a git work tree.
    pub git_commit: Option<String>,
    /// Version of this crate.
    pub bench_version: String,
    /// Unix seconds when the run started.
    pub started_at: u64,
    /// `/proc/loadavg` when the run started (other work on the machine).
    pub load_average: String,
}

/// `/proc/loadavg`: 1, 5 and 15 minute load averages.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn first_line(program: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let text = if text.trim().is_empty() {
        String::from_utf8_lossy(&output.stderr).into_owned()
    } else {
        text.into_owned()
    };
    text.lines().next().map(|l| l.trim().to_owned())
}

impl Machine {
    /// Describes this machine. `nats` and `redis` are the server binaries used.
    pub fn describe(nats: &Path, redis: Option<&Path>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        Machine {
            cpu_model,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            nats_server: first_line(nats, &["--version"]).unwrap_or_else(|| "unknown".to_owned()),
            redis_server: redis.and_then(|p| first_line(p, &["--version"])),
            rustc: first_line(Path::new("rustc"), &["--version"]),
            git_commit: first_line(Path::new("git"), &["rev-parse", "--short", "HEAD"]),
            bench_version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: crate::workload::now(),
            load_average: load_average(),
        }
    }

    /// One line for the top of the tables.
    pub fn summary(&self) -> String {
        format!(
            "{} ({} cores), {:.1} GiB, Linux {}, {}, {}, {}",
            self.cpu_model,
            self.cores,
            self.memory_bytes as f64 / f64::from(1u32 << 30),
            self.kernel,
            self.nats_server,
            self.redis_server
                .as_deref()
                .unwrap_or("redis-server missing"),
            self.rustc.as_deref().unwrap_or("rustc unknown"),
        )
    }
}
