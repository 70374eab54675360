//! # revocast-bench
//!
//! revocast side by side with what a service owner would pick instead, measured on
//! the same machine in one run: a Redis blocklist checked per request (plain and
//! pipelined), token introspection per request over HTTP, and an exact in-memory
//! `HashSet` replica. Every scenario starts what it needs: its own `nats-server`,
//! an in-process publisher and subscribers, and a `redis-server` when one is
//! installed. Results go to stdout as Markdown tables and to `--out` as JSON plus
//! PNG charts.
//!
//! # Layout
//! - [`options`]: the command line ([`Options`], [`Scenario`]).
//! - [`stack`]: NATS plus publisher, loading revocations, starting replicas.
//! - [`fleet`]: replicas in worker processes that tell an observer what they apply.
//! - [`redis`]: our own `redis-server` and a tiny blocking RESP client.
//! - [`workload`]: the tokens (UUID-shaped `jti`s, one-hour `exp`s).
//! - [`scenario`]: the scenarios.
//! - [`measure`]: medians, percentiles, bounded timing loops.
//! - [`alloc`]: the counting global allocator behind the memory figures.
//! - [`report`]: [`report::Results`] (the JSON) and the tables.
//! - [`charts`]: the PNG charts.
//! - [`machine`]: CPU, memory, kernel and versions.
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alloc;
pub mod charts;
pub mod error;
pub mod fleet;
pub mod machine;
pub mod measure;
pub mod options;
pub mod redis;
pub mod report;
pub mod scenario;
pub mod sidecar;
pub mod stack;
pub mod workload;

pub use error::BenchError;
pub use options::{Options, Scenario};

use report::Results;

/// Runs the selected scenarios, prints the tables and writes `results.json`,
/// `tables.md` and the charts into `options.out`.
pub async fn run(options: Options) -> Result<(), BenchError> {
    let options = options.effective();
    let nats = stack::nats_server_bin()?;
    let redis_bin = redis::server_bin();
    let mut results = Results {
        machine: machine::Machine::describe(&nats, redis_bin.as_deref()),
        options: options.clone(),
        notes: Vec::new(),
        sizes: Vec::new(),
        propagation: Vec::new(),
        singles: None,
    };
    if redis_bin.is_none() {
        let note = "redis-server not found (PATH, /usr/bin, /usr/local/bin or REDIS_SERVER_BIN): \
                    the Redis rows are skipped; install it with `sudo apt-get install -y redis-server`";
        eprintln!("WARNING: {note}");
        results.notes.push(note.to_owned());
    }
    std::fs::create_dir_all(&options.out)?;
    eprintln!("machine: {}", results.machine.summary());

    if options.wants(Scenario::Ingest) {
        results.singles = Some(scenario::ingest::run(&options).await?);
        write(&results, &options)?;
    }
    if options.wants(Scenario::Propagation) {
        let mut notes = Vec::new();
        results.propagation = scenario::propagation::run(&options, &mut notes).await?;
        results.notes.extend(notes);
        write(&results, &options)?;
    }
    // The largest sizes last: the figures above survive if one of them fails.
    let per_size = [
        Scenario::Checks,
        Scenario::Authority,
        Scenario::Memory,
        Scenario::ColdStart,
        Scenario::Ingest,
    ];
    if per_size.iter().any(|s| options.wants(*s)) {
        for &live in &options.sizes {
            match scenario::sized::run(&options, live, redis_bin.as_deref()).await {
                Ok(size) => results.sizes.push(size),
                Err(e) => {
                    eprintln!("WARNING: {live} live entries not measured: {e}");
                    results
                        .notes
                        .push(format!("{live} live entries: not measured: {e}"));
                }
            }
            // Partial results survive a later failure.
            write(&results, &options)?;
        }
    }
    write(&results, &options)?;

    match charts::load_font(options.font.as_deref()) {
        Ok(_) => {
            for path in charts::draw(&results, &options.out)? {
                eprintln!("wrote {}", path.display());
            }
        }
        Err(e) => {
            eprintln!("WARNING: charts skipped: {e}");
            results.notes.push(format!("charts skipped: {e}"));
            write(&results, &options)?;
        }
    }
    println!("{}", results.tables());
    eprintln!(
        "wrote {} and {}",
        options.out.join("results.json").display(),
        options.out.join("tables.md").display()
    );
    Ok(())
}

fn write(results: &Results, options: &Options) -> Result<(), BenchError> {
    std::fs::write(
        options.out.join("results.json"),
        serde_json::to_vec_pretty(results)?,
    )?;
    std::fs::write(options.out.join("tables.md"), results.tables())?;
    Ok(())
}
