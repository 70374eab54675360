//! # revocast-daemon
//!
//! What every revocast binary shares at its edge, so that the publisher, the example
//! service and any new daemon stop and log the same way:
//! - [`shutdown_signal`]: resolves on ctrl-c or SIGTERM, for axum's
//!   `with_graceful_shutdown` and the publisher's `run`.
//! - [`init_logging`]: tracing to stderr, text or JSON lines, filtered by
//!   `REVOCAST_LOG` (or `RUST_LOG`), with ANSI colours only when stderr is a terminal.
//!
//! Libraries never call these: a service that embeds the subscriber sets up its own
//! logging and signals.
//!
//! ```no_run
//! # async fn example() {
//! revocast_daemon::init_logging(revocast_daemon::LogFormat::Text, "info");
//! revocast_daemon::shutdown_signal().await;
//! # }
//! ```

use std::io::IsTerminal as _;

/// Resolves on ctrl-c or, on Unix, SIGTERM (what `docker stop` and Kubernetes send).
/// If a handler cannot be installed, that signal is simply never seen.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable text.
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

impl LogFormat {
    /// JSON when `json` is set (the usual `--log-json` flag), else text.
    pub fn json_if(json: bool) -> LogFormat {
        if json {
            LogFormat::Json
        } else {
            LogFormat::Text
        }
    }
}

/// Sends tracing events to stderr. The filter comes from `REVOCAST_LOG`, then
/// `RUST_LOG`, then `default_filter` (for example `info` or
/// `warn,revocast_publisher=info`). Text has ANSI colours only when stderr is a
/// terminal, so that files, pipes and log collectors get plain text. Does nothing if
/// a global subscriber is already set.
pub fn init_logging(format: LogFormat, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REVOCAST_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
