//! `revocast-bench`: parses the command line, sets up logging and runs the chosen
//! scenarios (see the crate's `RESULTS.md` for the command and the figures).

use clap::Parser as _;
use revocast_bench::Options;

fn main() -> std::process::ExitCode {
    let options = Options::parse();
    revocast_daemon::init_logging(revocast_daemon::LogFormat::Text, "error");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("revocast-bench: cannot start the tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let outcome = match options.replica_worker.as_deref() {
        Some(spec) => match serde_json::from_str(spec) {
            Ok(spec) => runtime.block_on(revocast_bench::fleet::worker(spec)),
            Err(e) => {
                eprintln!("revocast-bench: bad worker spec: {e}");
                return std::process::ExitCode::FAILURE;
            }
        },
        None => runtime.block_on(revocast_bench::run(options)),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("revocast-bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
