//! What every runner of a real program (nats-server, nginx, caddy, prometheus) does
//! the same way: find the program, and wait until it listens.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// How long a program may take to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Where a program was looked for.
#[derive(Debug)]
pub(crate) enum Found {
    /// There.
    At(PathBuf),
    /// The environment variable names something that is not a file.
    NotAFile(PathBuf),
    /// Neither the variable, nor `PATH`, nor the extra directories have it.
    Nowhere,
}

impl Found {
    /// The path, if found.
    pub(crate) fn ok(self) -> Option<PathBuf> {
        match self {
            Found::At(path) => Some(path),
            _ => None,
        }
    }
}

/// Finds `name`: the file the environment variable `var` names, else the first in
/// `PATH`, else in `extra` directories.
pub(crate) fn find(name: &str, var: &str, extra: &[&str]) -> Found {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Found::At(path)
        } else {
            Found::NotAFile(path)
        };
    }
    let from_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .iter()
        .map(PathBuf::as_path)
        .chain(extra.iter().map(Path::new))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .map_or(Found::Nowhere, Found::At)
}

/// Waits until `port` on loopback accepts connections; panics with the program's
/// `log` if `child` exits first or it does not listen in time.
pub(crate) fn wait_listening(child: &mut Child, port: u16, what: &str, log: &Path) {
    let log = || std::fs::read_to_string(log).unwrap_or_default();
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited ({status}): {}", log());
        }
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if start.elapsed() > READY_TIMEOUT {
            panic!("{what} not listening on {port}: {}", log());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
