//! [`Options`]: what to run and how big. Every flag can also be set from the
//! environment variable shown by `--help`.

use revocast_core::duration::HumanDuration;
use std::path::PathBuf;

/// A scenario of the benchmark (`--scenario`, repeatable or comma separated).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Every scenario below.
    All,
    /// Checks per second, one caller: revocast, Redis EXISTS (plain and pipelined),
    /// HTTP introspection and an exact `HashSet`, at each size.
    Checks,
    /// Revoke call answered -> every one of N replicas rejects, for each N, with the
    /// replicas spread over several processes; and the CPU one delta costs.
    Propagation,
    /// Confirming calls per million checks of tokens that are not revoked.
    Authority,
    /// Memory per replica: revocast, `HashSet<String>`, Redis `used_memory`.
    Memory,
    /// A new replica from connect to ready, and a publisher restart, at each size.
    ColdStart,
    /// Durable revocations per second: bulk calls (at each size) and concurrent
    /// single calls.
    Ingest,
}

/// The command line of `revocast-bench`.
#[derive(Clone, Debug, clap::Parser, serde::Serialize)]
#[command(
    name = "revocast-bench",
    about = "revocast side by side with a Redis blocklist, per-request introspection and an \
             exact in-memory set, on this machine, in one run",
    after_help = "Starts its own nats-server (and redis-server when installed) on random \
                  loopback ports; never touches servers already running."
)]
pub struct Options {
    /// Scenarios to run.
    #[arg(
        long,
        env = "BENCH_SCENARIO",
        value_enum,
        value_delimiter = ',',
        default_value = "all"
    )]
    pub scenario: Vec<Scenario>,
    /// Live revocations at which the per-size scenarios (checks, authority, memory,
    /// cold start, bulk ingest) run; one fresh stack per size.
    #[arg(
        long,
        env = "BENCH_SIZES",
        value_delimiter = ',',
        default_value = "100000,1000000"
    )]
    pub sizes: Vec<u64>,
    /// Numbers of replicas (each with its own NATS connection) for the propagation
    /// scenario.
    #[arg(
        long,
        env = "BENCH_REPLICAS",
        value_delimiter = ',',
        default_value = "1,10,100,1000"
    )]
    pub replicas: Vec<usize>,
    /// Small and fast: sizes 100000, replicas 1,10,100, one run, short timings.
    /// Explicit `--sizes` and `--replicas` still win.
    #[arg(long, env = "BENCH_QUICK")]
    pub quick: bool,
    /// Repetitions of every timed figure; tables quote the median.
    #[arg(long, env = "BENCH_RUNS", default_value_t = 3)]
    pub runs: usize,
    /// Seconds per throughput run of one check method.
    #[arg(long, env = "BENCH_CHECK_SECS", default_value_t = 2.0)]
    pub check_secs: f64,
    /// Share of checks on revoked tokens in the checks scenario.
    #[arg(long, env = "BENCH_REVOKED_SHARE", default_value_t = 0.01)]
    pub revoked_share: f64,
    /// Distinct tokens the checks scenario cycles through.
    #[arg(long, env = "BENCH_TOKEN_POOL", default_value_t = 100_000)]
    pub token_pool: usize,
    /// Checks of distinct, non-revoked tokens in the authority-load scenario.
    #[arg(long, env = "BENCH_AUTHORITY_CHECKS", default_value_t = 1_000_000)]
    pub authority_checks: u64,
    /// Revocations timed per replica count in the propagation scenario.
    #[arg(long, env = "BENCH_PROPAGATION_REVOCATIONS", default_value_t = 100)]
    pub propagation_revocations: usize,
    /// Processes the propagation scenario spreads its replicas over (a fleet runs
    /// them in many; fewer when there are fewer replicas).
    #[arg(long, env = "BENCH_REPLICA_PROCESSES", default_value_t = 4)]
    pub replica_processes: usize,
    /// The publisher's heartbeat period in the propagation scenario (the production
    /// default). Every replica verifies every heartbeat: a longer period shows what
    /// the heartbeats add to the fleet's tail.
    #[arg(long, env = "BENCH_HEARTBEAT_INTERVAL", default_value_t = HumanDuration::from_secs(1))]
    #[serde(serialize_with = "as_text")]
    pub heartbeat_interval: HumanDuration,
    /// Internal: run as a worker process of the propagation scenario (the JSON spec
    /// of its replicas).
    #[arg(long, hide = true)]
    #[serde(skip)]
    pub replica_worker: Option<String>,
    /// Single revocations in the concurrent-singles ingest run.
    #[arg(long, env = "BENCH_SINGLES", default_value_t = 20_000)]
    pub singles: u64,
    /// Concurrent callers of single revocations.
    #[arg(long, env = "BENCH_SINGLES_CONCURRENCY", default_value_t = 64)]
    pub singles_concurrency: usize,
    /// Concurrent bulk calls (1,000 revocations each) while loading a size.
    #[arg(long, env = "BENCH_BULK_CONCURRENCY", default_value_t = 4)]
    pub bulk_concurrency: usize,
    /// Tokio worker threads of the benchmark process.
    #[arg(long, env = "BENCH_THREADS", default_value_t = 2)]
    pub threads: usize,
    /// Where JSON, tables and PNG charts go.
    #[arg(long, env = "BENCH_OUT", default_value = "bench-results")]
    pub out: PathBuf,
    /// A TrueType font for chart text (default: DejaVu Sans or Liberation Sans from
    /// the usual system paths).
    #[arg(long, env = "BENCH_FONT")]
    pub font: Option<PathBuf>,
}

impl Options {
    /// Applies `--quick` to what was left at its default.
    pub fn effective(mut self) -> Options {
        if self.quick {
            let explicit = |name: &str| {
                std::env::args()
                    .any(|a| a == format!("--{name}") || a.starts_with(&format!("--{name}=")))
                    || std::env::var_os(format!("BENCH_{}", name.to_uppercase().replace('-', "_")))
                        .is_some()
            };
            if !explicit("sizes") {
                self.sizes = vec![100_000];
            }
            if !explicit("replicas") {
                self.replicas = vec![1, 10, 100];
            }
            if !explicit("runs") {
                self.runs = 1;
            }
            if !explicit("check-secs") {
                self.check_secs = 1.0;
            }
            if !explicit("propagation-revocations") {
                self.propagation_revocations = 20;
            }
            if !explicit("singles") {
                self.singles = 5_000;
            }
        }
        self.runs = self.runs.max(1);
        self.sizes.sort_unstable();
        self.sizes.dedup();
        self.replicas.sort_unstable();
        self.replicas.dedup();
        self
    }

    /// Whether `scenario` is selected.
    pub fn wants(&self, scenario: Scenario) -> bool {
        self.scenario.contains(&Scenario::All) || self.scenario.contains(&scenario)
    }
}

/// A duration in the results as the flag takes it ("1s", "30s").
fn as_text<S: serde::Serializer>(d: &HumanDuration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(d)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    use super::*;

    fn parse(args: &[&str]) -> Result<Options, clap::Error> {
        Options::try_parse_from(std::iter::once("revocast-bench").chain(args.iter().copied()))
    }

    #[test]
    fn the_heartbeat_interval_defaults_to_production_and_takes_a_duration() {
        let options = parse(&[]).unwrap();
        assert_eq!(
            Duration::from(options.heartbeat_interval),
            Duration::from_secs(1)
        );
        let options = parse(&["--heartbeat-interval", "30s"]).unwrap();
        assert_eq!(
            Duration::from(options.heartbeat_interval),
            Duration::from_secs(30)
        );
        let json = serde_json::to_value(&options).unwrap();
        assert_eq!(json["heartbeat_interval"], "30s");
    }

    #[test]
    fn malformed_values_are_refused_with_the_flag_named() {
        for args in [
            &["--heartbeat-interval", "banana"][..],
            &["--heartbeat-interval=-1s"],
            &["--replicas", "10,ten"],
            &["--sizes", "1e6"],
            &["--replica-processes=-4"],
            &["--scenario", "everything"],
        ] {
            let error = parse(args).unwrap_err();
            let flag = args[0].split('=').next().unwrap_or_default();
            assert!(
                matches!(
                    error.kind(),
                    clap::error::ErrorKind::ValueValidation | clap::error::ErrorKind::InvalidValue
                ),
                "{args:?}: {:?}",
                error.kind()
            );
            assert!(error.to_string().contains(flag), "{args:?}: {error}");
        }
    }
}
