//! A fault-injecting TCP proxy for tests: clients connect to the proxy, the proxy
//! forwards to an upstream port, and a test can cut every connection (and refuse new
//! ones) until it restores the link.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

#[derive(Debug, Default)]
struct Inner {
    cut: AtomicBool,
    stopped: AtomicBool,
    accepted: AtomicU64,
    live: Mutex<Vec<TcpStream>>,
}

/// A running proxy on a random loopback port; stops on drop.
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    upstream: u16,
    inner: Arc<Inner>,
}

impl Proxy {
    /// Starts forwarding `127.0.0.1:<random>` to `127.0.0.1:<upstream>`.
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let inner = Arc::new(Inner::default());
        let accept = Arc::clone(&inner);
        thread::spawn(move || accept_loop(listener, upstream, accept));
        Proxy {
            port,
            upstream,
            inner,
        }
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `nats://127.0.0.1:<proxy port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The upstream port.
    pub fn upstream(&self) -> u16 {
        self.upstream
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    /// Closes every connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.inner.cut.store(true, Ordering::SeqCst);
        close_all(&self.inner);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.inner.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        close_all(&self.inner);
        // Wake the accept loop so it sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn close_all(inner: &Inner) {
    let mut live = inner.live.lock().unwrap_or_else(|e| e.into_inner());
    for stream in live.drain(..) {
        let _ = stream.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, upstream: u16, inner: Arc<Inner>) {
    for client in listener.incoming() {
        if inner.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if inner.cut.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(server) = TcpStream::connect_timeout(
            &std::net::SocketAddr::from(([127, 0, 0, 1], upstream)),
            Duration::from_secs(2),
        ) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        inner.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
            client.try_clone(),
            server.try_clone(),
            client.try_clone(),
            server.try_clone(),
        ) else {
            continue;
        };
        {
            let mut live = inner.live.lock().unwrap_or_else(|e| e.into_inner());
            live.push(c3);
            live.push(s3);
        }
        thread::spawn(move || pump(client, server));
        thread::spawn(move || pump(s2, c2));
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NatsServer, ping};

    #[test]
    fn forwards_cuts_and_restores() {
        let server = NatsServer::start();
        let proxy = Proxy::start(server.port());
        ping(proxy.port()).unwrap();
        proxy.cut();
        assert!(ping(proxy.port()).is_err());
        proxy.restore();
        ping(proxy.port()).unwrap();
        assert_eq!(proxy.accepted(), 2);
    }
}
