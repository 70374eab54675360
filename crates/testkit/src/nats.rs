//! Real `nats-server` processes: one JetStream server per test on a random loopback
//! port with its own store directory (killed, and its store removed, on drop), and
//! clusters of them.

use crate::program::Found;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// Why no `nats-server` binary was found.
#[derive(Debug, thiserror::Error)]
pub enum NatsServerMissing {
    /// `NATS_SERVER_BIN` is set but names no file.
    #[error("NATS_SERVER_BIN={} does not name a file", .0.display())]
    NotAFile(PathBuf),
    /// Not in `PATH`, `/usr/sbin` or `/usr/local/bin`.
    #[error(
        "nats-server not found in PATH, /usr/sbin or /usr/local/bin. Install it \
         (Debian/Ubuntu: `sudo apt-get install -y nats-server`; others: \
         https://docs.nats.io/running-a-nats-service/introduction/installation) \
         or set NATS_SERVER_BIN to its path."
    )]
    NotFound,
}

/// Where `nats-server` is: `NATS_SERVER_BIN`, then `PATH`, then `/usr/sbin` and
/// `/usr/local/bin`. For tools that report a missing server as an error (the
/// bench); tests use [`nats_server_bin`].
pub fn try_nats_server_bin() -> Result<PathBuf, NatsServerMissing> {
    match crate::program::find(
        "nats-server",
        "NATS_SERVER_BIN",
        &["/usr/sbin", "/usr/local/bin"],
    ) {
        Found::At(path) => Ok(path),
        Found::NotAFile(path) => Err(NatsServerMissing::NotAFile(path)),
        Found::Nowhere => Err(NatsServerMissing::NotFound),
    }
}

/// Where `nats-server` is, or a panic that says how to install it: a test cannot run
/// without it.
pub fn nats_server_bin() -> PathBuf {
    try_nats_server_bin().unwrap_or_else(|e| panic!("{e}"))
}

/// Options for a server; [`NatsServer::start`] uses the defaults.
#[derive(Debug, Default, Clone)]
pub struct NatsServerBuilder {
    port: Option<u16>,
    config: Option<String>,
    cluster: Option<ClusterOpts>,
    args: Vec<String>,
}

/// Cluster membership of one node.
#[derive(Debug, Clone)]
struct ClusterOpts {
    name: String,
    node: String,
    port: u16,
    routes: Vec<u16>,
}

impl NatsServerBuilder {
    /// Listen on this client port instead of a random one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Extra configuration file text (accounts, authorization, ...). The JetStream
    /// store directory and the listen address are set by the helper.
    pub fn config(mut self, text: impl Into<String>) -> Self {
        self.config = Some(text.into());
        self
    }

    /// Makes this node part of cluster `name`, listening for routes on `cluster_port`
    /// and connecting to the other nodes' `routes`.
    pub fn cluster(mut self, name: &str, node: &str, cluster_port: u16, routes: &[u16]) -> Self {
        self.cluster = Some(ClusterOpts {
            name: name.to_owned(),
            node: node.to_owned(),
            port: cluster_port,
            routes: routes.to_vec(),
        });
        self
    }

    /// Extra command-line arguments.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Starts the server and waits until it accepts clients.
    pub fn start(self) -> NatsServer {
        let dir = tempfile::Builder::new()
            .prefix("revocast-nats-")
            .tempdir()
            .expect("create a temp dir for nats-server");
        let mut server = NatsServer {
            child: None,
            port: self.port.unwrap_or(0),
            opts: self,
            dir,
        };
        server.spawn();
        server
    }
}

/// A running `nats-server -js`, killed (and its store removed) on drop.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    opts: NatsServerBuilder,
    dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a JetStream server on a random loopback port.
    pub fn start() -> NatsServer {
        NatsServerBuilder::default().start()
    }

    /// A builder for servers with a fixed port, a cluster or extra configuration.
    pub fn builder() -> NatsServerBuilder {
        NatsServerBuilder::default()
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory (kept across [`NatsServer::restart`]).
    pub fn store_dir(&self) -> PathBuf {
        self.dir.path().join("jetstream")
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills the server (SIGKILL) and waits for it to exit. The store is kept.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a stopped server again on the same port with the same store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("nats-server.log")
    }

    fn spawn(&mut self) {
        let log = self.log_path();
        let _ = std::fs::remove_file(&log);
        let config = self.dir.path().join("nats-server.conf");
        std::fs::write(&config, self.config_text()).expect("write nats-server config");
        let mut cmd = Command::new(nats_server_bin());
        cmd.arg("-c").arg(&config);
        cmd.args(&self.opts.args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("spawn nats-server");
        self.child = Some(child);
        let port = wait_for_port(&log, &mut self.child);
        self.port = port;
        self.opts.port = Some(port);
    }

    fn config_text(&self) -> String {
        let mut text = format!(
            "listen: \"127.0.0.1:{port}\"\nlog_file: \"{log}\"\n\
             jetstream {{\n  store_dir: \"{store}\"\n}}\n",
            port = if self.port == 0 {
                -1
            } else {
                i32::from(self.port)
            },
            log = self.log_path().display(),
            store = self.store_dir().display(),
        );
        if let Some(c) = &self.opts.cluster {
            text.push_str(&format!("server_name: \"{}\"\n", c.node));
            let routes: Vec<String> = c
                .routes
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            text.push_str(&format!(
                "cluster {{\n  name: \"{}\"\n  listen: \"127.0.0.1:{}\"\n  routes: [{}]\n}}\n",
                c.name,
                c.port,
                routes.join(", ")
            ));
        }
        if let Some(extra) = &self.opts.config {
            text.push_str(extra);
            text.push('\n');
        }
        text
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free loopback port: bound, then released (fine for tests; the OS does not hand
/// it out again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A cluster of JetStream nodes on loopback ports, each routed to all the others.
#[derive(Debug)]
pub struct NatsCluster {
    /// The nodes; stop and restart them to break the cluster.
    pub nodes: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `size` nodes of cluster `name` (nodes `<name>-0`, `<name>-1`, ...).
    pub fn start(name: &str, size: usize) -> NatsCluster {
        let clients: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect();
        let nodes = (0..size)
            .map(|i| {
                let others: Vec<u16> = (0..size).filter(|j| *j != i).map(|j| routes[j]).collect();
                NatsServer::builder()
                    .port(clients[i])
                    .cluster(name, &format!("{name}-{i}"), routes[i], &others)
                    .start()
            })
            .collect();
        NatsCluster { nodes }
    }

    /// Every node's URL, comma-separated (what `--nats` takes).
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(NatsServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Reads the server log until it says where it listens and that it is ready.
fn wait_for_port(log: &Path, child: &mut Option<Child>) -> u16 {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut port = None;
    loop {
        if let Ok(file) = std::fs::File::open(log) {
            let mut ready = false;
            for line in BufReader::new(file).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                    port = rest.trim().rsplit(':').next().and_then(|p| p.parse().ok());
                }
                if line.contains("Server is ready") {
                    ready = true;
                }
            }
            if let (Some(p), true) = (port, ready) {
                return p;
            }
        }
        if let Some(c) = child.as_mut()
            && let Ok(Some(status)) = c.try_wait()
        {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            panic!("nats-server exited with {status} before it was ready:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "nats-server was not ready within {READY_TIMEOUT:?}; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Connects with plain TCP, reads the server's `INFO` and answers a `PING`: a check
/// that needs no client library.
pub fn ping(url_port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", url_port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut info = String::new();
    reader.read_line(&mut info)?;
    stream.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")?;
    let mut pong = [0u8; 6];
    reader.read_exact(&mut pong)?;
    if &pong != b"PONG\r\n" {
        return Err(std::io::Error::other(format!(
            "expected PONG, got {:?}",
            String::from_utf8_lossy(&pong)
        )));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_servers_side_by_side_each_answer() {
        let a = NatsServer::start();
        let b = NatsServer::start();
        assert_ne!(a.port(), b.port());
        let info_a = ping(a.port()).unwrap();
        let info_b = ping(b.port()).unwrap();
        assert!(info_a.starts_with("INFO "), "{info_a}");
        assert!(info_a.contains("\"jetstream\":true"), "{info_a}");
        assert!(
            info_b.contains(&format!("\"port\":{}", b.port())),
            "{info_b}"
        );
    }

    #[test]
    fn restart_keeps_port_and_store() {
        let mut s = NatsServer::start();
        let port = s.port();
        s.stop();
        assert!(ping(port).is_err());
        s.restart();
        assert_eq!(s.port(), port);
        ping(port).unwrap();
    }

    #[test]
    fn dropping_stops_the_server() {
        let s = NatsServer::start();
        let port = s.port();
        let dir = s.dir.path().to_path_buf();
        drop(s);
        assert!(ping(port).is_err());
        assert!(!dir.exists());
    }
}
