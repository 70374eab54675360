//! The figures that depend on how many revocations are live, measured on one fresh
//! stack per size: bulk ingest (loading the size), publisher restart and replica cold
//! start, memory per replica, checks per second and authority load.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use revocast_subscriber::{LocalCheck, Subscriber, TokenClaims};

use crate::alloc;
use crate::error::BenchError;
use crate::fleet::Fleet;
use crate::measure::{Spread, Tally, timed_loop};
use crate::options::{Options, Scenario};
use crate::redis::{self, RedisServer};
use crate::report::{AuthorityRow, BucketRow, BulkIngest, CheckRow, MemoryRow, SizeResults};
use crate::stack::{BULK, Stack};
use crate::workload::{self, Family};

/// Where the authority-load tokens start, far from the check pool's.
const AUTHORITY_OFFSET: u64 = 1 << 40;

/// Runs every selected per-size figure at `live` revocations.
pub async fn run(
    options: &Options,
    live: u64,
    redis_bin: Option<&std::path::Path>,
) -> Result<SizeResults, BenchError> {
    let mut stack = Stack::start().await?;
    let result = measure(options, live, redis_bin, &mut stack).await;
    stack.stop().await;
    result
}

async fn measure(
    options: &Options,
    live: u64,
    redis_bin: Option<&std::path::Path>,
    stack: &mut Stack,
) -> Result<SizeResults, BenchError> {
    let mut out = SizeResults {
        live_entries: live,
        ..SizeResults::default()
    };

    eprintln!("[{live}] loading {live} revocations through the HTTP API");
    let loaded = stack
        .load(Family::Revoked, live, options.bulk_concurrency)
        .await?;
    let took = loaded.took;
    out.bulk_ingest = Some(BulkIngest {
        retried_calls: loaded.retries,
        per_call: BULK,
        concurrency: options.bulk_concurrency,
        seconds: took.as_secs_f64(),
        per_second: live as f64 / took.as_secs_f64(),
    });

    // A graceful restart writes the final snapshot: replicas then start the way they
    // do in steady state, from a snapshot at the current version.
    let restart = stack.restart_publisher().await?;
    out.publisher_restart_ms = Some(restart.as_secs_f64() * 1e3);
    let stats = stack.publisher().stats();
    out.snapshot_bytes = Some(stack.snapshot_bytes().await?);
    if stats.snapshots.last_version != stats.version {
        eprintln!(
            "[{live}] note: snapshot at version {} of {}: replicas also replay the stream",
            stats.snapshots.last_version, stats.version
        );
    }

    if options.wants(Scenario::ColdStart) {
        let mut runs = Vec::new();
        for _ in 0..options.runs {
            let (replica, took) = stack.replica().await?;
            check_loaded(&replica, live)?;
            runs.push(took.as_secs_f64() * 1e3);
            drop(replica);
        }
        eprintln!("[{live}] cold start runs (ms): {runs:.0?}");
        out.cold_start_ms = Some(Spread::of(runs));
    }

    let want_checks = options.wants(Scenario::Checks);
    let want_memory = options.wants(Scenario::Memory);
    let want_authority = options.wants(Scenario::Authority);
    if !(want_checks || want_memory || want_authority) {
        return Ok(out);
    }

    let (replica, _) = stack.replica().await?;
    check_loaded(&replica, live)?;
    // The heap a replica keeps from connect to ready, counted in a process of its own
    // (in this one the publisher allocates and frees at the same time).
    let replica_heap = if want_memory {
        let publisher = stack.publisher();
        let fleet = Fleet::start(
            &stack.nats().url(),
            &publisher.public_key(),
            publisher.namespace(),
            1,
            1,
        )
        .await?;
        let heap = fleet.heap_bytes();
        fleet.stop().await;
        heap
    } else {
        0
    };

    let (set, set_heap) = if want_checks || want_memory {
        let region = alloc::Region::start();
        let set: HashSet<String> = (0..live)
            .map(|i| workload::jti(Family::Revoked, i))
            .collect();
        (Some(Arc::new(set)), Some(region.net_bytes()))
    } else {
        (None, None)
    };

    let redis = match (redis_bin, want_checks || want_memory) {
        (Some(bin), true) => {
            let server = RedisServer::start(bin)?;
            let empty = server.used_memory()?;
            load_redis(&server, stack.start, live)?;
            let loaded = server.used_memory()?;
            Some((server, loaded.saturating_sub(empty)))
        }
        _ => None,
    };

    if want_memory {
        let filter = stack.publisher().stats().filter;
        let stats = replica.stats();
        out.memory = Some(MemoryRow {
            target_fpr: filter.target_fpr,
            revocast_filter_bytes: stats.filter_bytes,
            revocast_replica_heap_bytes: replica_heap,
            revocast_bits_per_entry: stats.filter_bytes as f64 * 8.0 / live.max(1) as f64,
            optimal_bits_per_entry: revocast_core::optimal_bits_per_entry(filter.target_fpr),
            buckets: filter
                .buckets
                .iter()
                .map(|b| BucketRow {
                    entries: b.entries,
                    layers: b.layers.len(),
                    bits_per_entry: b.bits as f64 / b.entries.max(1) as f64,
                })
                .collect(),
            hashset_heap_bytes: set_heap,
            redis_used_memory_bytes: redis.as_ref().map(|(_, bytes)| *bytes),
        });
    }

    out.load_average = crate::machine::load_average();
    if want_checks {
        out.checks = checks(
            options,
            stack,
            &replica,
            set.clone(),
            redis.as_ref().map(|(s, _)| s),
            live,
        )
        .await?;
    }
    drop(set);
    drop(redis);

    if want_authority {
        out.authority = Some(authority(options, stack, &replica).await?);
    }
    Ok(out)
}

fn check_loaded(replica: &Subscriber, live: u64) -> Result<(), BenchError> {
    let entries = replica.stats().live_entries;
    if entries == live {
        Ok(())
    } else {
        Err(BenchError::Setup(format!(
            "replica holds {entries} live entries, expected {live}"
        )))
    }
}

/// `SET revoked:<jti> 1 EX <seconds to exp>` for the same set, pipelined.
fn load_redis(server: &RedisServer, start: u64, live: u64) -> Result<(), BenchError> {
    let mut client = server.connect()?;
    let now = workload::now();
    let mut from = 0;
    while from < live {
        let to = (from + 1_000).min(live);
        for i in from..to {
            let key = format!("{}{}", redis::PREFIX, workload::jti(Family::Revoked, i));
            let ttl = workload::exp(start, i)
                .saturating_sub(now)
                .max(1)
                .to_string();
            client.queue(&[b"SET", key.as_bytes(), b"1", b"EX", ttl.as_bytes()])?;
        }
        client.flush()?;
        for _ in from..to {
            match client.read_reply()? {
                redis::Reply::Simple(ok) if ok == "OK" => {}
                other => return Err(BenchError::Redis(format!("SET answered {other:?}"))),
            }
        }
        from = to;
    }
    Ok(())
}

/// The tokens the checks cycle through: `share` of them revoked.
fn pool(options: &Options, start: u64, live: u64) -> Vec<TokenClaims> {
    (0..options.token_pool as u64)
        .map(|i| {
            if workload::is_revoked_pick(i, options.revoked_share) {
                let k = i % live.max(1);
                TokenClaims::new(workload::jti(Family::Revoked, k), workload::exp(start, k))
            } else {
                TokenClaims::new(workload::jti(Family::Valid, i), workload::exp(start, i))
            }
        })
        .collect()
}

async fn checks(
    options: &Options,
    stack: &Stack,
    replica: &Subscriber,
    set: Option<Arc<HashSet<String>>>,
    redis: Option<&RedisServer>,
    live: u64,
) -> Result<Vec<CheckRow>, BenchError> {
    let budget = Duration::from_secs_f64(options.check_secs.max(0.05));
    let pool = Arc::new(pool(options, stack.start, live));
    let n = pool.len() as u64;
    let revoked: Vec<bool> = (0..n)
        .map(|i| workload::is_revoked_pick(i, options.revoked_share))
        .collect();
    let per_pass = revoked.iter().filter(|r| **r).count() as u64;
    // How many of the first `ops` checks were on revoked tokens.
    let revoked_in = |ops: u64| {
        let part = (ops % n) as usize;
        ops / n * per_pass + revoked[..part].iter().filter(|r| **r).count() as u64
    };
    let mut rows: Vec<(String, Vec<Tally>)> = Vec::new();

    // revocast, warm: one pass first so that the answers about revoked tokens are in
    // the confirm cache, as in a service that has been running.
    for c in pool.iter() {
        // An authority timeout here only leaves that answer out of the cache.
        let _ = replica.check(c).await;
    }
    let mut tallies = Vec::new();
    for _ in 0..options.runs {
        tallies.push(revocast_loop(replica, &pool, budget).await?);
    }
    rows.push(("revocast `check` (confirm cache warm)".into(), tallies));

    // revocast, every filter hit confirmed with the authority over NATS.
    let (cold, _) = stack
        .replica_with(stack.options().cache_ttl(Duration::ZERO))
        .await?;
    let mut tallies = Vec::new();
    for _ in 0..options.runs {
        tallies.push(revocast_loop(&cold, &pool, budget).await?);
    }
    rows.push(("revocast `check` (every hit confirmed)".into(), tallies));
    drop(cold);

    // The filter alone: a hit counts as "revoked" without asking anyone.
    let mut tallies = Vec::new();
    for _ in 0..options.runs {
        let replica = replica.clone();
        let pool = pool.clone();
        tallies.push(
            blocking(move || {
                timed_loop::<BenchError>(budget, |i| {
                    let c = &pool[(i % n) as usize];
                    Ok(matches!(
                        std::hint::black_box(replica.check_local(c)),
                        LocalCheck::NeedsConfirm(_)
                    ))
                })
            })
            .await?,
        );
    }
    rows.push((
        "revocast `check_local` (filter only, hits not confirmed)".into(),
        tallies,
    ));

    // The same, 16 tokens per call (a service that verifies several at once).
    const BATCH: usize = 16;
    let mut tallies = Vec::new();
    for _ in 0..options.runs {
        let replica = replica.clone();
        let pool = pool.clone();
        tallies.push(
            blocking(move || {
                let started = std::time::Instant::now();
                let mut tally = Tally::default();
                let mut out = Vec::with_capacity(BATCH);
                let batches: Vec<&[TokenClaims]> = pool.chunks(BATCH).collect();
                'outer: while tally.ops < crate::measure::MAX_OPS {
                    for batch in &batches {
                        replica.check_local_many(batch, &mut out);
                        tally.ops += batch.len() as u64;
                        tally.revoked += out
                            .iter()
                            .filter(|c| matches!(c, LocalCheck::NeedsConfirm(_)))
                            .count() as u64;
                        if tally.ops % 4096 < BATCH as u64 && started.elapsed() >= budget {
                            break 'outer;
                        }
                    }
                }
                tally.elapsed = started.elapsed();
                Ok(tally)
            })
            .await?,
        );
    }
    rows.push((
        format!("revocast `check_local_many` ({BATCH} tokens per call)"),
        tallies,
    ));

    if let Some(set) = set {
        let mut tallies = Vec::new();
        for _ in 0..options.runs {
            let set = set.clone();
            let pool = pool.clone();
            tallies.push(
                blocking(move || {
                    timed_loop::<BenchError>(budget, |i| {
                        Ok(std::hint::black_box(
                            set.contains(&pool[(i % n) as usize].jti),
                        ))
                    })
                })
                .await?,
            );
        }
        rows.push(("exact `HashSet<String>` replica".into(), tallies));
    }

    if let Some(server) = redis {
        let keys: Arc<Vec<Vec<u8>>> = Arc::new(
            pool.iter()
                .map(|c| format!("{}{}", redis::PREFIX, c.jti).into_bytes())
                .collect(),
        );
        let mut tallies = Vec::new();
        for _ in 0..options.runs {
            let mut client = server.connect()?;
            let keys = keys.clone();
            tallies.push(
                blocking(move || {
                    timed_loop(budget, |i| {
                        let key = &keys[(i % n) as usize];
                        client.command(&[b"EXISTS", key]).and_then(|r| match r {
                            redis::Reply::Int(x) => Ok(x == 1),
                            other => Err(BenchError::Redis(format!("EXISTS answered {other:?}"))),
                        })
                    })
                })
                .await?,
            );
        }
        rows.push(("Redis `EXISTS` per check (one connection)".into(), tallies));

        const DEPTH: u64 = 100;
        let mut tallies = Vec::new();
        for _ in 0..options.runs {
            let mut client = server.connect()?;
            let keys = keys.clone();
            tallies.push(
                blocking(move || {
                    let mut answers = std::collections::VecDeque::new();
                    timed_loop(budget, |i| {
                        if answers.is_empty() {
                            for k in 0..DEPTH {
                                client.queue(&[b"EXISTS", &keys[((i + k) % n) as usize]])?;
                            }
                            client.flush()?;
                            for _ in 0..DEPTH {
                                answers.push_back(client.read_int()? == 1);
                            }
                        }
                        Ok::<bool, BenchError>(answers.pop_front().unwrap_or(false))
                    })
                })
                .await?,
            );
        }
        rows.push((
            format!("Redis `EXISTS`, pipelined {DEPTH} deep (best case)"),
            tallies,
        ));
    }

    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(10))
        .build()?;
    let urls: Vec<String> = pool
        .iter()
        .map(|c| {
            let path = revocast_core::http::revocation_path(&c.jti);
            format!("{}{path}", stack.publisher().url())
        })
        .collect();
    let mut tallies = Vec::new();
    for _ in 0..options.runs {
        let started = std::time::Instant::now();
        let mut tally = Tally::default();
        while started.elapsed() < budget && tally.ops < crate::measure::MAX_OPS {
            let url = &urls[(tally.ops % n) as usize];
            let status = http.get(url).send().await?.status().as_u16();
            match status {
                200 => tally.revoked += 1,
                404 => {}
                other => {
                    return Err(BenchError::Setup(format!(
                        "introspection answered HTTP {other}"
                    )));
                }
            }
            tally.ops += 1;
        }
        tally.elapsed = started.elapsed();
        tallies.push(tally);
    }
    rows.push((
        "HTTP introspection per check (`GET /v1/revocations/{jti}`, keep-alive)".into(),
        tallies,
    ));

    let reference = rows
        .first()
        .map(|(_, t)| Spread::of(t.iter().map(Tally::rate).collect()).median)
        .unwrap_or(1.0);
    Ok(rows
        .into_iter()
        .map(|(method, tallies)| {
            let spread = Spread::of(tallies.iter().map(Tally::rate).collect());
            let last = tallies.last().copied().unwrap_or_default();
            CheckRow {
                method,
                ratio_to_revocast: spread.median / reference,
                per_second: spread,
                checks: last.ops,
                revoked: last.revoked,
                errors: tallies.iter().map(|t| t.errors).sum(),
                expected_revoked: revoked_in(last.ops),
            }
        })
        .collect())
}

/// Sequential `check` calls from one task.
async fn revocast_loop(
    replica: &Subscriber,
    pool: &[TokenClaims],
    budget: Duration,
) -> Result<Tally, BenchError> {
    let n = pool.len() as u64;
    let started = std::time::Instant::now();
    let mut tally = Tally::default();
    'outer: while tally.ops < crate::measure::MAX_OPS {
        for _ in 0..256 {
            match replica.check(&pool[(tally.ops % n) as usize]).await {
                Ok(verdict) => tally.revoked += u64::from(verdict.is_revoked()),
                Err(_) => tally.errors += 1,
            }
            tally.ops += 1;
        }
        if started.elapsed() >= budget {
            break 'outer;
        }
    }
    tally.elapsed = started.elapsed();
    Ok(tally)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BenchError> + Send + 'static,
) -> Result<T, BenchError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BenchError::Setup(format!("benchmark thread: {e}")))?
}

/// Checks of distinct tokens that are not revoked: every filter hit is a false
/// positive and costs one call to the authority.
async fn authority(
    options: &Options,
    stack: &Stack,
    replica: &Subscriber,
) -> Result<AuthorityRow, BenchError> {
    let before = replica.stats();
    let started = std::time::Instant::now();
    let mut accepted = 0;
    let mut errors = 0;
    for i in 0..options.authority_checks {
        let k = AUTHORITY_OFFSET + i;
        let claims = TokenClaims::new(
            workload::jti(Family::Valid, k),
            workload::exp(stack.start, k),
        );
        match replica.check(&claims).await {
            Ok(verdict) => accepted += u64::from(verdict.is_accepted()),
            Err(_) => errors += 1,
        }
    }
    let elapsed = started.elapsed();
    let after = replica.stats();
    let filter = stack.publisher().stats().filter;
    let checks = options.authority_checks;
    let confirms = after.confirms - before.confirms;
    Ok(AuthorityRow {
        checks,
        filter_hits: after.filter_hits - before.filter_hits,
        confirms,
        confirms_per_million: confirms as f64 * 1e6 / checks.max(1) as f64,
        target_per_million: filter.target_fpr * 1e6,
        estimated_fpr: filter.estimated_fpr,
        checks_per_second: checks as f64 / elapsed.as_secs_f64(),
        accepted,
        errors,
    })
}
