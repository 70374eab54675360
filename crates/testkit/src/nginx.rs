//! [`Nginx`]: a real `nginx` on a loopback port for tests: a generated `nginx.conf`
//! in a temporary prefix (`-p`, `-c`), logs and temp files inside it, `daemon off`
//! and one process (`master_process off`), killed on drop.
//!
//! Unlike `nats-server`, nginx is optional: [`nginx_bin`] gives `None` when it is
//! missing and the test prints why it skips (CI installs the Debian package `nginx`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::program;

/// Where `nginx` is: `NGINX_BIN`, then `PATH`, then `/usr/sbin`; `None` if missing.
pub fn nginx_bin() -> Option<PathBuf> {
    program::find("nginx", "NGINX_BIN", &["/usr/sbin", "/usr/local/sbin"]).ok()
}

/// A running nginx; killed, and its prefix removed, on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    port: u16,
    prefix: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Nginx {
    /// Starts `bin` with `http_block` (what goes inside `http { }`: upstreams and
    /// servers) and waits until `port` accepts connections. Panics, with nginx's
    /// error log, if it exits or does not listen in time.
    pub fn start(bin: &Path, http_block: &str, port: u16) -> Nginx {
        let prefix = tempfile::tempdir().expect("a temporary directory");
        let dir = prefix.path().display().to_string();
        let conf = format!(
            "daemon off;\n\
             master_process off;\n\
             pid {dir}/nginx.pid;\n\
             error_log {dir}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             access_log {dir}/access.log;\n\
             client_body_temp_path {dir}/client_body;\n\
             proxy_temp_path {dir}/proxy;\n\
             fastcgi_temp_path {dir}/fastcgi;\n\
             uwsgi_temp_path {dir}/uwsgi;\n\
             scgi_temp_path {dir}/scgi;\n\
             {http_block}\n\
             }}\n"
        );
        let conf_path = prefix.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("writing nginx.conf");
        let child = Command::new(bin)
            .arg("-p")
            .arg(prefix.path())
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(prefix.path().join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let mut nginx = Nginx {
            child,
            port,
            prefix,
        };
        let log = nginx.prefix.path().join("error.log");
        program::wait_listening(&mut nginx.child, port, "nginx", &log);
        nginx
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The error log so far.
    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("error.log")).unwrap_or_default()
    }
}
