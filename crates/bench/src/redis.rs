//! The Redis blocklist that revocast is compared with: a `redis-server` of our own on
//! a random loopback port, and a tiny blocking RESP client (what a service's Redis
//! client does per request: write one command, wait for its answer).

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::BenchError;

/// Key prefix of the blocklist (`revoked:<jti>`), as a service would name it.
pub const PREFIX: &str = "revoked:";

/// Where `redis-server` is: `REDIS_SERVER_BIN`, then `PATH`, then `/usr/bin`,
/// `/usr/local/bin`. `None` when it is not installed.
pub fn server_bin() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("REDIS_SERVER_BIN") {
        let path = PathBuf::from(path);
        return path.is_file().then_some(path);
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/bin".into());
    dirs.push("/usr/local/bin".into());
    dirs.into_iter()
        .map(|d| d.join("redis-server"))
        .find(|p| p.is_file())
}

/// A `redis-server` without persistence, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts `bin` on a free loopback port and waits (10 s at most) for `PING`.
    pub fn start(bin: &Path) -> Result<RedisServer, BenchError> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = tempfile::Builder::new()
            .prefix("revocast-bench-redis-")
            .tempdir()?;
        let child = Command::new(bin)
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "yes", "--daemonize", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut client) = server.connect()
                && let Ok(Reply::Simple(pong)) = client.command(&[b"PING"])
                && pong == "PONG"
            {
                return Ok(server);
            }
            if Instant::now() > deadline {
                return Err(BenchError::Setup(format!(
                    "redis-server did not answer PING on port {port} within 10 s"
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection.
    pub fn connect(&self) -> Result<Resp, BenchError> {
        Resp::connect(self.port)
    }

    /// `used_memory` from `INFO memory`, in bytes.
    pub fn used_memory(&self) -> Result<u64, BenchError> {
        let mut client = self.connect()?;
        let info = match client.command(&[b"INFO", b"memory"])? {
            Reply::Bulk(Some(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
            other => return Err(BenchError::Redis(format!("INFO answered {other:?}"))),
        };
        info.lines()
            .find_map(|l| l.strip_prefix("used_memory:"))
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| BenchError::Redis("no used_memory in INFO".into()))
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One RESP reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Simple(String),
    /// `-ERR ...`
    Error(String),
    /// `:1`
    Int(i64),
    /// `$5 hello`, `$-1`
    Bulk(Option<Vec<u8>>),
    /// `*2 ...`
    Array(Vec<Reply>),
}

/// A blocking RESP2 connection.
#[derive(Debug)]
pub struct Resp {
    reader: BufReader<TcpStream>,
    writer: BufWriter<TcpStream>,
}

impl Resp {
    fn connect(port: u16) -> Result<Resp, BenchError> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Resp {
            reader: BufReader::new(stream.try_clone()?),
            writer: BufWriter::new(stream),
        })
    }

    /// Queues a command without sending it (pipelining).
    pub fn queue(&mut self, args: &[&[u8]]) -> Result<(), BenchError> {
        write!(self.writer, "*{}\r\n", args.len())?;
        for arg in args {
            write!(self.writer, "${}\r\n", arg.len())?;
            self.writer.write_all(arg)?;
            self.writer.write_all(b"\r\n")?;
        }
        Ok(())
    }

    /// Sends what is queued.
    pub fn flush(&mut self) -> Result<(), BenchError> {
        Ok(self.writer.flush()?)
    }

    /// Sends one command and waits for its answer.
    pub fn command(&mut self, args: &[&[u8]]) -> Result<Reply, BenchError> {
        self.queue(args)?;
        self.flush()?;
        self.read_reply()
    }

    /// Reads the next answer.
    pub fn read_reply(&mut self) -> Result<Reply, BenchError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(BenchError::Redis("connection closed".into()));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        let (kind, rest) = line.split_at(line.len().min(1));
        let number = || {
            rest.parse::<i64>()
                .map_err(|_| BenchError::Redis(format!("bad reply line {line:?}")))
        };
        Ok(match kind {
            "+" => Reply::Simple(rest.to_owned()),
            "-" => Reply::Error(rest.to_owned()),
            ":" => Reply::Int(number()?),
            "$" => {
                let n = number()?;
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut buf = vec![0; usize::try_from(n).unwrap_or(0) + 2];
                    self.reader.read_exact(&mut buf)?;
                    buf.truncate(buf.len() - 2);
                    Reply::Bulk(Some(buf))
                }
            }
            "*" => {
                let n = number()?;
                let mut items = Vec::new();
                for _ in 0..n.max(0) {
                    items.push(self.read_reply()?);
                }
                Reply::Array(items)
            }
            _ => return Err(BenchError::Redis(format!("bad reply line {line:?}"))),
        })
    }

    /// Reads an integer answer (`EXISTS`).
    pub fn read_int(&mut self) -> Result<i64, BenchError> {
        match self.read_reply()? {
            Reply::Int(n) => Ok(n),
            other => Err(BenchError::Redis(format!(
                "expected an integer, got {other:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-shot fake server: reads one command, answers `reply` bytes.
    fn fake(reply: &'static [u8]) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut stream, _)) = listener.accept() {
                let mut buf = [0u8; 256];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(reply);
            }
        });
        port
    }

    #[test]
    fn parses_every_reply_kind() {
        let port = fake(b"*4\r\n:1\r\n$5\r\nhello\r\n$-1\r\n-ERR no\r\n");
        let mut client = Resp::connect(port).unwrap();
        let reply = client.command(&[b"EXISTS", b"revoked:x"]).unwrap();
        assert_eq!(
            reply,
            Reply::Array(vec![
                Reply::Int(1),
                Reply::Bulk(Some(b"hello".to_vec())),
                Reply::Bulk(None),
                Reply::Error("ERR no".into()),
            ])
        );
    }

    #[test]
    fn a_closed_connection_is_an_error() {
        let port = fake(b"");
        let mut client = Resp::connect(port).unwrap();
        assert!(client.command(&[b"PING"]).is_err());
    }
}
