//! [`Caddy`]: a real `caddy` on a loopback port for tests: the given Caddyfile with
//! the admin endpoint off, `HOME` and `XDG_*` in a temporary directory, killed on drop.
//! Like nginx, caddy is optional: [`caddy_bin`] gives `None` when it is missing.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where `caddy` is: `CADDY_BIN`, then `PATH`, then `/usr/bin`; `None` if missing.
pub fn caddy_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CADDY_BIN") {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .iter()
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/local/bin")].iter())
        .map(|dir| dir.join("caddy"))
        .find(|p| p.is_file())
}

/// A running caddy; killed, and its directory removed, on drop.
#[derive(Debug)]
pub struct Caddy {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Drop for Caddy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Caddy {
    /// Runs `bin` with `caddyfile` (global options `admin off` are prepended) and waits
    /// until `port` accepts connections; panics with caddy's log otherwise.
    pub fn start(bin: &Path, caddyfile: &str, port: u16) -> Caddy {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("Caddyfile");
        std::fs::write(&path, format!("{{\n\tadmin off\n}}\n\n{caddyfile}"))
            .expect("writing the Caddyfile");
        let log = std::fs::File::create(dir.path().join("caddy.log")).expect("a log file");
        let child = Command::new(bin)
            .arg("run")
            .arg("--config")
            .arg(&path)
            .arg("--adapter")
            .arg("caddyfile")
            .env("HOME", dir.path())
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut caddy = Caddy { child, port, dir };
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = caddy.child.try_wait() {
                panic!("caddy exited ({status}): {}", caddy.log());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return caddy;
            }
            if start.elapsed() > READY_TIMEOUT {
                panic!("caddy not listening on {port}: {}", caddy.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Caddy's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("caddy.log")).unwrap_or_default()
    }
}
