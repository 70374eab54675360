//! A fleet of replicas spread over several processes, as services run them, and an
//! observer that each replica *tells* when it applies a version. A fleet of one also
//! gives the heap a replica keeps, counted in a process where nothing else runs.
//!
//! The benchmark binary starts `--replica-processes` copies of itself with
//! `--replica-worker <spec>`. Each worker connects its share of the replicas (one NATS
//! connection each), prints `ready <n> <heap bytes>`, then prints `applied <replica> <version>
//! <unix ns>` whenever a replica's [`Subscriber::versions`] says its checks now see a
//! new version. The parent reads those lines: nothing polls. Both sides stamp with the
//! same system clock (one machine). A worker exits when its stdin closes, after a last
//! line `synced <deltas read from the log> <gaps repaired> <resyncs>`: how often its
//! replicas had to read the log instead of the live subject after they were ready.
//!
//! The parent also reads each worker's CPU time (`/proc/<pid>/task/*/schedstat`), to
//! give the CPU cost of one delta per replica: receive, verify, decode, apply.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use revocast_core::{Namespace, PublicKey};
use revocast_subscriber::{Subscriber, SubscriberOptions};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, mpsc};

use crate::error::BenchError;

/// Replicas bootstrapping at once, per worker.
const CONNECT_CONCURRENCY: usize = 32;
/// Bound on a worker's replicas becoming ready.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// What a worker process runs: passed as JSON on its command line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// NATS server.
    pub nats_url: String,
    /// The publisher key the replicas pin.
    pub public_key: String,
    /// Namespace.
    pub namespace: String,
    /// How many replicas this worker runs.
    pub replicas: usize,
    /// The id of its first replica (ids are unique across the fleet).
    pub first: usize,
}

/// Unix nanoseconds now.
pub fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The worker side: runs until stdin closes.
pub async fn worker(spec: WorkerSpec) -> Result<(), BenchError> {
    let key: PublicKey = spec
        .public_key
        .parse()
        .map_err(|e| BenchError::Setup(format!("worker key: {e}")))?;
    let namespace: Namespace = spec
        .namespace
        .parse()
        .map_err(|e| BenchError::Setup(format!("worker namespace: {e}")))?;
    let options = SubscriberOptions::new(key)
        .namespace(namespace)
        .max_staleness(Duration::from_secs(30));
    // Nothing else runs in this process: what the replicas keep is what it allocated.
    let heap = crate::alloc::Region::start();
    let mut replicas: Vec<(usize, Subscriber)> = Vec::with_capacity(spec.replicas);
    let mut pending = tokio::task::JoinSet::new();
    for i in 0..spec.replicas {
        if pending.len() >= CONNECT_CONCURRENCY
            && let Some(done) = pending.join_next().await
        {
            replicas.push(joined(done)?);
        }
        let (options, url) = (options.clone(), spec.nats_url.clone());
        pending.spawn(async move {
            let replica = options.connect(&url).await?;
            tokio::time::timeout(READY_TIMEOUT, replica.ready())
                .await
                .map_err(|_| BenchError::Setup("replica not ready".into()))?;
            Ok::<_, BenchError>((spec.first + i, replica))
        });
    }
    while let Some(done) = pending.join_next().await {
        replicas.push(joined(done)?);
    }

    // The bootstrap reads the log; what counts is what the replicas read after it.
    let at_ready = log_reads(&replicas);
    let (tx, mut rx) = mpsc::unbounded_channel::<Told>();
    for (id, replica) in &replicas {
        let (id, tx, mut versions) = (*id, tx.clone(), replica.versions());
        tokio::spawn(async move {
            while versions.changed().await.is_ok() {
                let version = *versions.borrow_and_update();
                if tx.send(Told::Applied(id, version, unix_ns())).is_err() {
                    break;
                }
            }
        });
    }
    // Blocking standard I/O on threads of its own: the replicas keep the runtime.
    let ready = format!("ready {} {}\n", replicas.len(), heap.net_bytes());
    let writer = std::thread::spawn(move || {
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(ready.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return;
        }
        let mut lines = String::new();
        while let Some(told) = rx.blocking_recv() {
            lines.clear();
            let mut last = told.line(&mut lines);
            while !last && let Ok(told) = rx.try_recv() {
                last = told.line(&mut lines);
            }
            if stdout
                .write_all(lines.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
                || last
            {
                return;
            }
        }
    });
    // Until the parent closes our stdin (or goes away).
    let _ = tokio::task::spawn_blocking(|| {
        use std::io::Read as _;
        let mut sink = Vec::new();
        std::io::stdin().read_to_end(&mut sink)
    })
    .await;
    let synced = log_reads(&replicas).since(&at_ready);
    // The last line: the writer thread writes it and ends.
    if tx.send(Told::Synced(synced)).is_ok() {
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }
    drop(replicas);
    Ok(())
}

/// A line a worker writes to its parent.
enum Told {
    /// Replica `id` applied `version` at unix nanoseconds.
    Applied(usize, u64, u128),
    /// The worker's replicas' log reads, at exit: the last line.
    Synced(Synced),
}

impl Told {
    /// Appends this line to `out`; true for the last line.
    fn line(&self, out: &mut String) -> bool {
        use std::fmt::Write as _;
        match self {
            Told::Applied(id, version, ns) => {
                let _ = writeln!(out, "applied {id} {version} {ns}");
                false
            }
            Told::Synced(s) => {
                let _ = writeln!(
                    out,
                    "synced {} {} {}",
                    s.deltas_from_log, s.gaps_repaired, s.resyncs
                );
                true
            }
        }
    }
}

/// How often a fleet's replicas read the log instead of the live subject, summed over
/// its replicas for their whole life: a replica in sync reads nothing there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Synced {
    /// Deltas applied from the log (a catch-up or a resync), not from the live subject.
    pub deltas_from_log: u64,
    /// Catch-ups that applied deltas from the log.
    pub gaps_repaired: u64,
    /// Full reloads from the snapshot.
    pub resyncs: u64,
}

impl Synced {
    fn add(&mut self, other: &Synced) {
        self.deltas_from_log += other.deltas_from_log;
        self.gaps_repaired += other.gaps_repaired;
        self.resyncs += other.resyncs;
    }

    fn since(&self, earlier: &Synced) -> Synced {
        Synced {
            deltas_from_log: self.deltas_from_log.saturating_sub(earlier.deltas_from_log),
            gaps_repaired: self.gaps_repaired.saturating_sub(earlier.gaps_repaired),
            resyncs: self.resyncs.saturating_sub(earlier.resyncs),
        }
    }
}

/// The log reads of `replicas` so far.
fn log_reads(replicas: &[(usize, Subscriber)]) -> Synced {
    let mut total = Synced::default();
    for (_, replica) in replicas {
        let stats = replica.stats();
        total.add(&Synced {
            deltas_from_log: stats.deltas_from_stream,
            gaps_repaired: stats.gaps_repaired,
            resyncs: stats.resyncs,
        });
    }
    total
}

fn joined(
    done: Result<Result<(usize, Subscriber), BenchError>, tokio::task::JoinError>,
) -> Result<(usize, Subscriber), BenchError> {
    done.map_err(|e| BenchError::Setup(format!("replica task: {e}")))?
}

/// What the observer knows of each replica: the last version it told, and when.
#[derive(Debug, Default)]
struct Observed {
    ready: usize,
    /// Heap bytes the workers' replicas kept from connect to ready.
    heap: i64,
    applied: HashMap<usize, (u64, u128)>,
    /// The workers' last lines.
    synced: Synced,
    failed: Option<String>,
}

/// The parent's side: the worker processes and what they told.
#[derive(Debug)]
pub struct Fleet {
    children: Vec<Child>,
    /// The tasks reading each worker's lines.
    readers: Vec<tokio::task::JoinHandle<()>>,
    observed: Arc<Mutex<Observed>>,
    told: Arc<Notify>,
    replicas: usize,
}

impl Fleet {
    /// Starts `replicas` replicas over `processes` worker processes and waits until
    /// every one is ready.
    pub async fn start(
        nats_url: &str,
        public_key: &PublicKey,
        namespace: &Namespace,
        replicas: usize,
        processes: usize,
    ) -> Result<Fleet, BenchError> {
        let exe = std::env::current_exe()?;
        let processes = processes.clamp(1, replicas.max(1));
        let observed = Arc::new(Mutex::new(Observed::default()));
        let told = Arc::new(Notify::new());
        let mut children = Vec::with_capacity(processes);
        let mut readers = Vec::with_capacity(processes);
        let mut first = 0;
        for p in 0..processes {
            let count = replicas / processes + usize::from(p < replicas % processes);
            let spec = WorkerSpec {
                nats_url: nats_url.to_owned(),
                public_key: public_key.to_string(),
                namespace: namespace.to_string(),
                replicas: count,
                first,
            };
            first += count;
            let mut child = Command::new(&exe)
                .arg("--replica-worker")
                .arg(serde_json::to_string(&spec)?)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .spawn()?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| BenchError::Setup("worker without stdout".into()))?;
            let (observed, told) = (observed.clone(), told.clone());
            let reader = tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                loop {
                    let line = match lines.next_line().await {
                        Ok(Some(line)) => line,
                        Ok(None) | Err(_) => {
                            let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
                            o.failed.get_or_insert_with(|| "a worker exited".into());
                            told.notify_waiters();
                            return;
                        }
                    };
                    let mut o = observed.lock().unwrap_or_else(|e| e.into_inner());
                    let mut words = line.split(' ');
                    match (words.next(), words.next(), words.next(), words.next()) {
                        (Some("ready"), Some(n), Some(heap), None) => {
                            o.ready += n.parse::<usize>().unwrap_or(0);
                            o.heap += heap.parse::<i64>().unwrap_or(0);
                        }
                        (Some("applied"), Some(id), Some(version), Some(ns)) => {
                            if let (Ok(id), Ok(version), Ok(ns)) =
                                (id.parse(), version.parse(), ns.parse())
                            {
                                o.applied.insert(id, (version, ns));
                            }
                        }
                        (Some("synced"), Some(log), Some(gaps), Some(resyncs)) => {
                            if let (Ok(log), Ok(gaps), Ok(resyncs)) =
                                (log.parse(), gaps.parse(), resyncs.parse())
                            {
                                o.synced.add(&Synced {
                                    deltas_from_log: log,
                                    gaps_repaired: gaps,
                                    resyncs,
                                });
                            }
                        }
                        _ => {
                            o.failed = Some(format!("a worker said {line:?}"));
                        }
                    }
                    drop(o);
                    told.notify_waiters();
                }
            });
            children.push(child);
            readers.push(reader);
        }
        let fleet = Fleet {
            children,
            readers,
            observed,
            told,
            replicas,
        };
        fleet
            .wait_for("every replica ready", READY_TIMEOUT, |o| {
                o.ready >= replicas
            })
            .await?;
        Ok(fleet)
    }

    /// Waits until `done` holds (re-checked each time a worker tells something).
    async fn wait_for(
        &self,
        what: &str,
        bound: Duration,
        mut done: impl FnMut(&Observed) -> bool,
    ) -> Result<(), BenchError> {
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            let told = self.told.notified();
            tokio::pin!(told);
            // Registered before the state is read: nothing told in between is missed.
            told.as_mut().enable();
            {
                let o = self.observed.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(why) = &o.failed {
                    return Err(BenchError::Setup(format!("fleet: {why}")));
                }
                if done(&o) {
                    return Ok(());
                }
            }
            if tokio::time::timeout_at(deadline, told).await.is_err() {
                return Err(BenchError::Setup(format!("fleet: {what}: timed out")));
            }
        }
    }

    /// When the last replica told it holds `version` (unix ns), or `None` if not
    /// every replica did within `bound`.
    pub async fn last_to_hold(&self, version: u64, bound: Duration) -> Option<u128> {
        let replicas = self.replicas;
        let all = |o: &Observed| {
            o.applied.len() >= replicas && o.applied.values().all(|(v, _)| *v >= version)
        };
        self.wait_for("a version", bound, all).await.ok()?;
        let o = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        o.applied.values().map(|(_, ns)| *ns).max()
    }

    /// Heap bytes the replicas kept from connect to ready, counted by each worker
    /// process's allocator (nothing else runs there).
    pub fn heap_bytes(&self) -> i64 {
        self.observed.lock().unwrap_or_else(|e| e.into_inner()).heap
    }

    /// CPU time the worker processes used so far, in nanoseconds.
    pub fn cpu_ns(&self) -> u64 {
        self.children
            .iter()
            .filter_map(Child::id)
            .map(process_cpu_ns)
            .sum()
    }

    /// Closes the workers' stdin and waits for them to exit; returns their replicas'
    /// log reads (zero from a worker that did not say).
    pub async fn stop(mut self) -> Synced {
        for child in &mut self.children {
            drop(child.stdin.take());
        }
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        // Each reader ends at its worker's end of output, past its last line.
        for reader in self.readers.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(10), reader).await;
        }
        self.observed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .synced
    }
}

/// CPU time process `pid` used so far, in nanoseconds: the sum over its threads of
/// the first field of `/proc/<pid>/task/<tid>/schedstat` (time on a CPU, in ns). A
/// worker's threads (the runtime's, its stdin reader and its stdout writer) live as
/// long as it does, so no thread's time goes missing. 0 where `/proc` does not have it.
fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}
