//! A fleet of replicas spread over several processes, as services run them, and an
//! observer that each replica *tells* when it applies a version. A fleet of one also
//! gives the heap a replica keeps, counted in a process where nothing else runs.
//!
//! The benchmark binary starts `--replica-processes` copies of itself with
//! `--replica-worker <spec>`. Each worker connects its share of the replicas (one NATS
//! connection each), prints `ready <n> <heap bytes>`, then prints `applied <replica> <version>
//! <unix ns>` whenever a replica's [`Subscriber::versions`] says its checks now see a
//! new version. The parent reads those lines: nothing polls. Both sides stamp with the
//! same system clock (one machine). A worker exits when its stdin closes.
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

    let (tx, mut rx) = mpsc::unbounded_channel::<(usize, u64, u128)>();
    for (id, replica) in &replicas {
        let (id, tx, mut versions) = (*id, tx.clone(), replica.versions());
        tokio::spawn(async move {
            while versions.changed().await.is_ok() {
                let version = *versions.borrow_and_update();
                if tx.send((id, version, unix_ns())).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
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
        while let Some((id, version, ns)) = rx.blocking_recv() {
            lines.clear();
            lines.push_str(&format!("applied {id} {version} {ns}\n"));
            while let Ok((id, version, ns)) = rx.try_recv() {
                lines.push_str(&format!("applied {id} {version} {ns}\n"));
            }
            if stdout
                .write_all(lines.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
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
    drop(replicas);
    // The writer thread ends with the process.
    drop(writer);
    Ok(())
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
    failed: Option<String>,
}

/// The parent's side: the worker processes and what they told.
#[derive(Debug)]
pub struct Fleet {
    children: Vec<Child>,
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
            tokio::spawn(async move {
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
                        _ => {
                            o.failed = Some(format!("a worker said {line:?}"));
                        }
                    }
                    drop(o);
                    told.notify_waiters();
                }
            });
            children.push(child);
        }
        let fleet = Fleet {
            children,
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

    /// Closes the workers' stdin and waits for them to exit.
    pub async fn stop(mut self) {
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
