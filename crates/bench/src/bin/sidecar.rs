//! `revocast-bench-sidecar`: parses the command line and measures the sidecar's
//! `/check` (see `revocast_bench::sidecar` and BENCHMARKS.md).

use clap::Parser as _;
use revocast_bench::sidecar::{SidecarOptions, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    revocast_daemon::init_logging(revocast_daemon::LogFormat::Text, "error");
    match run(SidecarOptions::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revocast-bench-sidecar: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
