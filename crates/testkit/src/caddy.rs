//! [`Caddy`]: a real `caddy` on a loopback port for tests: the given Caddyfile with
//! the admin endpoint off, `HOME` and `XDG_*` in a temporary directory, killed on drop.
//! Like nginx, caddy is optional: [`caddy_bin`] gives `None` when it is missing.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::program;

/// Where `caddy` is: `CADDY_BIN`, then `PATH`, then `/usr/bin`; `None` if missing.
pub fn caddy_bin() -> Option<PathBuf> {
    program::find("caddy", "CADDY_BIN", &["/usr/bin", "/usr/local/bin"]).ok()
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
        let log = caddy.dir.path().join("caddy.log");
        program::wait_listening(&mut caddy.child, port, "caddy", &log);
        caddy
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
