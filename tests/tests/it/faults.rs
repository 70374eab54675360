//! The reliability suite: whatever breaks, no acknowledged revocation is
//! accepted by an in-sync replica, none is lost, and no good token is rejected.
//!
//! Each scenario runs the checker of `revocast_tests::fault` while it breaks something,
//! then prints a row of RELIABILITY.md (`RELIABILITY | ... |`) and asserts the counts
//! that must be 0. CI runs the short version; the long one:
//!
//! ```sh
//! REVOCAST_FAULTS_LONG=1 cargo test -p revocast-tests --test it faults -- --nocapture --test-threads 1
//! REVOCAST_CHAOS_SECS=600 cargo test -p revocast-tests --test it s9_seeded_chaos -- --nocapture
//! ```
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use revocast_core::{Message, Namespace, Verifier};
use revocast_publisher::{Clock, Config, Publisher, SystemClock};
use revocast_subscriber::{Policy, Subscriber, SubscriberOptions, TokenClaims};
use revocast_testkit::{NatsCluster, NatsServer, Proxy};
use revocast_testkit::{Stack, eventually_within, init_logs, now_secs};
use revocast_tests::fault::{Checker, PublisherApi, Report, converge};
use revocast_tests::process::PublisherProcess;

const CONVERGE: Duration = Duration::from_secs(30);

/// Sizes of a run: (revocations, fault duration).
fn scale(short: (u64, Duration), long: (u64, Duration)) -> (u64, Duration) {
    if std::env::var_os("REVOCAST_FAULTS_LONG").is_some() {
        long
    } else {
        short
    }
}

async fn replicas(options: &SubscriberOptions, url: &str, n: usize) -> Vec<Subscriber> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = options.clone().connect(url).await.unwrap();
        tokio::time::timeout(Duration::from_secs(30), r.ready())
            .await
            .expect("replica ready");
        out.push(r);
    }
    out
}

fn options(key: revocast_core::PublicKey) -> SubscriberOptions {
    SubscriberOptions::new(key)
        .max_staleness(Duration::from_secs(2))
        .confirm_timeout(Duration::from_millis(500))
}

/// How long after the fault every replica of `checker` holds the publisher's latest
/// heartbeat at `version` or later (namespace `default`), within [`CONVERGE`].
async fn converged(
    nats_url: &str,
    key: revocast_core::PublicKey,
    checker: &Checker,
    version: u64,
) -> Option<Duration> {
    let ns = Namespace::default();
    converge(nats_url, &ns, key, checker.replicas(), version, CONVERGE).await
}

/// Runs the checker's load, calls `fault` once `target / 3` revocations are
/// acknowledged, lets the load finish, converges and reports.
async fn run_scenario<F, Fut>(
    name: &str,
    checker: Arc<Checker>,
    target: u64,
    convergence: impl AsyncFnOnce() -> Option<Duration>,
    fault: F,
) -> Report
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let start = Instant::now();
    let load = tokio::spawn({
        let c = Arc::clone(&checker);
        async move { c.revoke_load(target, 8).await }
    });
    let checks = tokio::spawn({
        let c = Arc::clone(&checker);
        async move { c.check_load().await }
    });
    eventually_within(
        "a third of the load acknowledged",
        Duration::from_secs(60),
        || {
            let c = Arc::clone(&checker);
            async move { c.counts.revocations_acked.load(Ordering::SeqCst) >= target / 3 }
        },
    )
    .await;
    fault().await;
    tokio::time::timeout(Duration::from_secs(300), load)
        .await
        .expect("the load finishes after the fault")
        .unwrap();
    let converged = convergence().await;
    checker.stop();
    checks.await.unwrap();
    let report = checker.report(name, start.elapsed(), converged).await;
    report.assert_invariants();
    report
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s1_publisher_killed_with_sigkill_mid_stream() {
    init_logs();
    let (target, outage) = scale(
        (600, Duration::from_secs(1)),
        (5_000, Duration::from_secs(5)),
    );
    let nats = NatsServer::start();
    let mut publisher = PublisherProcess::start(&nats.url()).await;
    let key = publisher.public_key();
    let replicas = replicas(&options(key), &nats.url(), 3).await;
    let checker = Checker::new(PublisherApi::new(publisher.url()), replicas, "s1");
    let c = Arc::clone(&checker);
    let nats_url = nats.url();
    run_scenario(
        "1. publisher `kill -9` mid-stream, restarted",
        Arc::clone(&checker),
        target,
        async move || {
            let version = c
                .replicas()
                .iter()
                .map(Subscriber::version)
                .max()
                .unwrap_or(0);
            converged(&nats_url, key, &c, version).await
        },
        async || {
            publisher.kill9();
            tokio::time::sleep(outage).await; // the outage itself
            publisher.restart().await;
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s2_nats_restarted_under_load() {
    init_logs();
    let (target, outage) = scale(
        (600, Duration::from_secs(1)),
        (5_000, Duration::from_secs(10)),
    );
    let mut stack = Stack::start().await;
    let key = stack.publisher.public_key();
    let replicas = replicas(&options(key), &stack.nats.url(), 3).await;
    let checker = Checker::new(PublisherApi::new(stack.publisher.url()), replicas, "s2");
    let c = Arc::clone(&checker);
    let nats_url = stack.nats.url();
    let publisher_version = {
        let p = &stack.publisher;
        move || p.version()
    };
    let nats = &mut stack.nats;
    run_scenario(
        "2. nats-server stopped and restarted (file storage)",
        Arc::clone(&checker),
        target,
        async move || converged(&nats_url, key, &c, publisher_version()).await,
        async || {
            nats.stop();
            tokio::time::sleep(outage).await; // the outage itself
            nats.restart();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_cluster_node_killed_and_restored() {
    init_logs();
    let (target, outage) = scale(
        (600, Duration::from_secs(2)),
        (5_000, Duration::from_secs(15)),
    );
    let mut cluster = NatsCluster::start("revocast", 3);
    let urls = cluster.urls();
    let mut config = Config::for_tests(urls.clone()).unwrap();
    config.stream_replicas = 3;
    // The JetStream meta leader takes a moment to be elected: retry the start.
    let deadline = Instant::now() + Duration::from_secs(60);
    let publisher = loop {
        match Publisher::start(config.clone()).await {
            Ok(p) => match p.wait_ready(Duration::from_secs(20)).await {
                Ok(()) => break p,
                Err(e) => {
                    eprintln!("publisher on the cluster not ready, retrying: {e}");
                    assert!(Instant::now() < deadline, "publisher on the cluster: {e}");
                    let _ = p.shutdown().await;
                }
            },
            Err(e) => {
                eprintln!("publisher on the cluster, retrying: {e}");
                assert!(Instant::now() < deadline, "publisher on the cluster: {e}");
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let key = publisher.public_key();
    let replicas = replicas(&options(key), &urls, 3).await;
    let checker = Checker::new(PublisherApi::new(publisher.url()), replicas, "s3");
    let c = Arc::clone(&checker);
    let p = &publisher;
    let first_url = cluster.nodes[1].url();
    let victim = &mut cluster.nodes[0];
    run_scenario(
        "3. 3-node cluster (R3): one node killed, then restored",
        Arc::clone(&checker),
        target,
        async move || converged(&first_url, key, &c, p.version()).await,
        async || {
            victim.stop();
            tokio::time::sleep(outage).await; // the outage itself
            victim.restart();
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s4_replica_cut_off_from_nats() {
    init_logs();
    let (target, outage) = scale(
        (1_000, Duration::from_secs(3)),
        (5_000, Duration::from_secs(30)),
    );
    let stack = Stack::start().await;
    let key = stack.publisher.public_key();
    let proxy = Proxy::start(stack.nats.port());
    let mut all = replicas(&options(key), &stack.nats.url(), 2).await;
    all.extend(replicas(&options(key), &proxy.url(), 1).await);
    let checker = Checker::new(PublisherApi::new(stack.publisher.url()), all, "s4");
    let c = Arc::clone(&checker);
    let nats_url = stack.nats.url();
    let p = &stack.publisher;
    let report = run_scenario(
        "4. one replica cut off from NATS (TCP proxy), restored",
        Arc::clone(&checker),
        target,
        async move || converged(&nats_url, key, &c, p.version()).await,
        async || {
            proxy.cut();
            tokio::time::sleep(outage).await; // the outage itself
            proxy.restore();
        },
    )
    .await;
    // The cut-off replica missed live deltas and caught up from the stream.
    let stats = checker.replicas()[2].stats();
    assert!(
        stats.deltas_from_stream + stats.resyncs > 0,
        "the cut-off replica repaired its gap: {stats:?} ({report:?})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s5_hostile_messages_on_every_subject() {
    init_logs();
    let (target, _) = scale((600, Duration::ZERO), (5_000, Duration::ZERO));
    let stack = Stack::start().await;
    let key = stack.publisher.public_key();
    let ns = Namespace::default();
    let replicas = replicas(&options(key), &stack.nats.url(), 3).await;
    let checker = Checker::new(PublisherApi::new(stack.publisher.url()), replicas, "s5");
    let client = async_nats::connect(stack.nats.url()).await.unwrap();
    let verifier = Verifier::new(key, ns.clone());

    // Capture real heartbeats to replay, duplicate and tamper with.
    let mut heartbeats = client.subscribe(ns.heartbeat_subject()).await.unwrap();
    let mut captured = Vec::new();
    while captured.len() < 3 {
        use futures::StreamExt as _;
        let message = tokio::time::timeout(Duration::from_secs(10), heartbeats.next())
            .await
            .unwrap()
            .unwrap();
        assert!(verifier.decode_heartbeat(&message.payload).is_ok());
        captured.push(message.payload.to_vec());
    }
    let forger =
        revocast_core::Signer::new(revocast_core::signing_key_from_seed([9; 32]), ns.clone());
    let c = Arc::clone(&checker);
    let nats_url = stack.nats.url();
    let p = &stack.publisher;
    run_scenario(
        "5. hostile messages (forged, replayed, truncated, bit-flipped, garbage) on every subject",
        Arc::clone(&checker),
        target,
        async move || converge(&nats_url, &ns, key, c.replicas(), p.version(), CONVERGE).await,
        async || {
            let ns = Namespace::default();
            // Forged messages of every kind, signed with the wrong key.
            let forged_delta = forger.encode(&Message::Delta(revocast_core::Delta {
                epoch: 0,
                version: p.version() + 1,
                committed_at_ms: 0,
                changes: vec![revocast_core::Change::Expire { now: u64::MAX }],
            }));
            let forged_heartbeat = forger.encode(&Message::Heartbeat(revocast_core::Heartbeat {
                epoch: 0,
                beat: 1,
                version: p.version() + 1_000,
                time_ms: 0,
                digest: revocast_core::Digest([0; 32]),
            }));
            let forged_snapshot = forger.encode(&Message::Snapshot(revocast_core::Snapshot {
                log_seq: 0,
                taken_at_ms: 0,
                state: revocast_core::Filter::new(revocast_core::FilterParams::default())
                    .unwrap()
                    .to_state(),
            }));
            let mut hostile: Vec<Vec<u8>> = vec![
                forged_heartbeat.clone(),
                forged_snapshot.clone(),
                b"garbage".to_vec(),
                Vec::new(),
            ];
            for original in &captured {
                hostile.push(original.clone()); // replayed (old) and duplicated
                hostile.push(original[..original.len() / 2].to_vec()); // truncated
                let mut flipped = original.clone();
                let i = flipped.len() / 3;
                flipped[i] ^= 0x10; // bit-flipped
                hostile.push(flipped);
            }
            hostile.push(forged_delta.clone());
            // Reordered: the captured heartbeats in reverse.
            hostile.extend(captured.iter().rev().cloned());
            for _ in 0..20 {
                for bytes in &hostile {
                    client
                        .publish(ns.heartbeat_subject(), bytes.clone().into())
                        .await
                        .unwrap();
                    // The live delta subject (not captured by the stream) and the
                    // authority's subject. The log subject itself is the stream's:
                    // only the publisher may write it (SECURITY.md, deploy/).
                    client
                        .publish(ns.delta_subject(), bytes.clone().into())
                        .await
                        .unwrap();
                    client
                        .publish(ns.confirm_subject(), bytes.clone().into())
                        .await
                        .unwrap();
                }
            }
            client.flush().await.unwrap();
        },
    )
    .await;
    for replica in checker.replicas() {
        let stats = replica.stats();
        assert!(
            stats.rejected_total() > 0,
            "hostile messages were counted: {stats:?}"
        );
        assert_eq!(stats.resyncs, 0, "no hostile message forced a resync");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s7_authority_unreachable_both_policies() {
    init_logs();
    let stack = Stack::start().await;
    let key = stack.publisher.public_key();
    let url = stack.nats.url();
    let closed = options(key)
        .policy(Policy::FailClosed)
        .connect(&url)
        .await
        .unwrap();
    let open = options(key)
        .policy(Policy::FailOpen)
        .connect(&url)
        .await
        .unwrap();
    for r in [&closed, &open] {
        tokio::time::timeout(Duration::from_secs(20), r.ready())
            .await
            .unwrap();
    }
    let exp = now_secs() + 600;
    let version = stack.revoke("s7-revoked", exp).await;
    for r in [&closed, &open] {
        eventually_within("applied", Duration::from_secs(10), || async {
            r.version() >= version
        })
        .await;
    }

    // The publisher (the authority and the heartbeats) goes away.
    let Stack {
        nats: _nats,
        publisher,
        ..
    } = stack;
    publisher.shutdown().await.unwrap();
    let started = Instant::now();
    let revoked = TokenClaims::new("s7-revoked", exp);
    let good = TokenClaims::new("s7-good", exp);
    let mut checks = 0u64;

    // Before staleness: a filter miss is still answered locally by both.
    assert!(closed.check(&good).await.unwrap().is_accepted());
    assert!(open.check(&good).await.unwrap().is_accepted());
    // A filter hit needs the authority: fail-closed cannot decide, fail-open accepts.
    assert!(closed.check(&revoked).await.unwrap_err().is_unavailable());
    assert!(open.check(&revoked).await.unwrap().is_accepted());

    eventually_within(
        "both replicas go stale",
        Duration::from_secs(10),
        || async { closed.is_stale() && open.is_stale() },
    )
    .await;
    while started.elapsed() < Duration::from_secs(3) {
        checks += 1;
        // Stale, fail-closed: every token needs the authority, which is gone.
        assert!(closed.check(&good).await.unwrap_err().is_unavailable());
        // Stale, fail-open: accepted and counted.
        assert!(open.check(&good).await.unwrap().is_accepted());
    }
    assert!(open.stats().fail_open_accepts > 0);
    assert!(closed.stats().fail_closed_rejects > 0);
    println!(
        "RELIABILITY | 7. authority unreachable (fail-closed and fail-open) | {:.1} s | 1 | {checks} | 0 | 0 | 0 | {} | 0 | n/a |",
        started.elapsed().as_secs_f64(),
        closed.stats().fail_closed_rejects,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s8_publisher_restarted_with_another_key_is_refused_loudly() {
    init_logs();
    let nats = NatsServer::start();
    let config = Config::for_tests(nats.url()).unwrap();
    let stack = Stack::start_with(nats, config.clone()).await;
    let key = stack.publisher.public_key();
    let replica = replicas(&options(key), &stack.nats.url(), 1)
        .await
        .remove(0);
    let exp = now_secs() + 600;
    let version = stack.revoke("s8-revoked", exp).await;
    eventually_within("applied", Duration::from_secs(10), || async {
        replica.version() >= version
    })
    .await;

    let Stack {
        nats, publisher, ..
    } = stack;
    publisher.shutdown().await.unwrap();

    // The same namespace with a new key: the publisher itself refuses to start, since
    // what NATS holds does not verify with its key.
    let wrong = Config::for_tests(nats.url()).unwrap();
    let err = match Publisher::start(wrong.clone()).await {
        Ok(p) => {
            assert!(p.wait_ready(Duration::from_secs(10)).await.is_err());
            p.shutdown().await.unwrap_err()
        }
        Err(e) => e,
    };
    let text = err.to_string();
    assert!(text.contains("key"), "the error names the key: {text}");

    // Messages signed with the other key reach the replica anyway (say, a second
    // publisher by mistake): refused, counted, and the replica goes stale.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let other = revocast_core::Signer::new(
        revocast_core::signing_key_from_seed([7; 32]),
        Namespace::default(),
    );
    let heartbeat = other.encode(&Message::Heartbeat(revocast_core::Heartbeat {
        epoch: 0,
        beat: 1,
        version: version + 5,
        time_ms: now_secs() * 1000,
        digest: revocast_core::Digest([1; 32]),
    }));
    let deadline = Instant::now() + Duration::from_secs(4);
    while Instant::now() < deadline {
        client
            .publish(
                Namespace::default().heartbeat_subject(),
                heartbeat.clone().into(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await; // a heartbeat's pace
    }
    let stats = replica.stats();
    assert!(
        stats.stale,
        "no valid heartbeat: the replica says it is stale"
    );
    assert!(
        stats
            .rejected_messages
            .get("bad_signature")
            .copied()
            .unwrap_or(0)
            > 0,
        "refusals counted by reason: {stats:?}"
    );
    assert_eq!(
        replica.version(),
        version,
        "nothing from the other key applied"
    );
    let verdict = replica.check(&TokenClaims::new("s8-revoked", exp)).await;
    assert!(
        !matches!(&verdict, Ok(v) if v.is_accepted()),
        "a revoked token is never accepted: {verdict:?}"
    );

    // The right key again: the replica recovers.
    let publisher = Publisher::start(config).await.unwrap();
    publisher.wait_ready(Duration::from_secs(20)).await.unwrap();
    eventually_within("fresh again", Duration::from_secs(10), || async {
        !replica.is_stale()
    })
    .await;
    println!(
        "RELIABILITY | 8. publisher restarted with another signing key | refused at start: {text} |"
    );
}

/// A publisher clock that many seconds ahead of the machine's (behind when
/// negative), injected through `Config::clock`.
#[derive(Debug)]
struct Skewed(i64);

impl Clock for Skewed {
    fn now_ms(&self) -> u64 {
        SystemClock
            .now_ms()
            .saturating_add_signed(self.0.saturating_mul(1000))
    }
}

/// Scenario 6. A service accepts a token until `exp + its own leeway` by its own clock;
/// the publisher drops a bucket once `exp + leeway < now` by its clock. With clocks
/// `skew` apart, nothing revoked may be dropped while any service still accepts the
/// token: the publisher's leeway covers the services' leeway plus the skew (5 min by
/// default: 60 s of jsonwebtoken leeway and up to 4 min of skew). The short run scales
/// seconds down (skew 1 s, service leeway 1 s, publisher leeway 3 s, 1 s buckets) so
/// that expiry happens within the test; the long run uses 60 s / 60 s / 300 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s6_clock_skew_between_publisher_and_replicas() {
    init_logs();
    let long = std::env::var_os("REVOCAST_FAULTS_LONG").is_some();
    let (skew, service_leeway, leeway, width) = if long {
        (60i64, 60u64, 300u64, 60u64)
    } else {
        (1, 1, 3, 1)
    };
    let started = Instant::now();
    let mut checks = 0u64;
    let mut acked = 0u64;
    for publisher_ahead_by in [skew, -skew] {
        let nats = NatsServer::start();
        let mut config = Config::for_tests(nats.url()).unwrap();
        config.filter.bucket_width = width;
        config.filter.leeway = leeway;
        config.expiry_interval = Duration::from_millis(200);
        config.clock = Arc::new(Skewed(publisher_ahead_by));
        let stack = Stack::start_with(nats, config).await;
        let (nats, publisher) = (&stack.nats, &stack.publisher);
        let key = publisher.public_key();
        let replicas = replicas(&options(key), &nats.url(), 2).await;
        let api = PublisherApi::new(publisher.url());
        let exp = now_secs() + 2 * width;
        let mut tokens = Vec::new();
        for i in 0..20 {
            let jti = format!("s6-{publisher_ahead_by}-{i}");
            let version = api
                .revoke(&jti, exp)
                .await
                .expect("revocation acknowledged");
            acked += 1;
            tokens.push((jti, version));
        }
        let version = tokens.iter().map(|t| t.1).max().unwrap_or(0);
        for r in &replicas {
            eventually_within("applied", Duration::from_secs(10), || async {
                r.version() >= version
            })
            .await;
        }
        // Until the slowest service clock (`skew` behind) sees the tokens expire, every
        // replica must reject them.
        let last_valid = exp + service_leeway + skew.unsigned_abs();
        while now_secs() <= last_valid {
            for (jti, _) in &tokens {
                for r in &replicas {
                    checks += 1;
                    let verdict = r.check(&TokenClaims::new(jti.clone(), exp)).await;
                    assert!(
                        !matches!(&verdict, Ok(v) if v.is_accepted()),
                        "false negative under {publisher_ahead_by:+} s of skew: {jti} accepted \
                         at {} (exp {exp}): {verdict:?}",
                        now_secs()
                    );
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await; // pace the checks
        }
        // And memory stays bounded: the bucket goes once no clock accepts the tokens.
        let drop_by = Duration::from_secs(leeway + 2 * width + skew.unsigned_abs() + 10);
        for r in &replicas {
            eventually_within("the expired bucket is dropped", drop_by, || async {
                r.stats().live_entries == 0
            })
            .await;
        }
    }
    println!(
        "RELIABILITY | 6. clock skew: publisher {skew} s ahead, then {skew} s behind | {:.1} s | {acked} | {checks} | 0 | 0 | 0 | 0 | 0 | n/a |",
        started.elapsed().as_secs_f64()
    );
}

/// The version of the snapshot object stored for `ns`.
async fn stored_snapshot_version(
    nats_url: &str,
    ns: &Namespace,
    key: revocast_core::PublicKey,
) -> u64 {
    use tokio::io::AsyncReadExt as _;
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let bucket = js.get_object_store(ns.snapshot_bucket()).await.unwrap();
    let mut object = bucket
        .get(revocast_core::subjects::SNAPSHOT_OBJECT)
        .await
        .unwrap();
    let mut bytes = Vec::new();
    object.read_to_end(&mut bytes).await.unwrap();
    let snapshot = Verifier::new(key, ns.clone())
        .decode_snapshot(&bytes)
        .unwrap();
    snapshot.state.version
}

/// The publisher crash of the chaos schedule: `Stack::kill_publisher` stops the
/// in-process publisher the way SIGKILL stops a process. A graceful shutdown writes a
/// final snapshot; a kill writes nothing more (the stored snapshot stays behind) and
/// closes its port, and the publisher started again holds every acknowledged
/// revocation and takes the namespace over with one delta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_killed_in_process_writes_nothing_more_and_loses_nothing() {
    init_logs();
    let nats = NatsServer::start();
    let config = Config::for_tests(nats.url()).unwrap();
    let stack = Stack::start_killable(nats, config.clone()).await;
    let (key, ns) = (stack.publisher.public_key(), Namespace::default());
    let exp = now_secs() + 3600;
    stack.revoke("graceful", exp).await;
    let version = stack.publisher.version();
    let stack = stack.restart_publisher(config.clone()).await;
    assert_eq!(
        stored_snapshot_version(&stack.nats.url(), &ns, key).await,
        version,
        "a graceful shutdown writes a final snapshot"
    );

    for i in 0..3 {
        stack.revoke(&format!("killed-{i}"), exp).await;
    }
    let version = stack.publisher.version();
    let url = stack.publisher.url();
    let nats = stack.kill_publisher().await.unwrap();
    assert!(
        PublisherApi::new(url.clone())
            .is_revoked("killed-0")
            .await
            .is_none(),
        "the killed publisher's port answers nothing"
    );
    assert!(
        stored_snapshot_version(&nats.url(), &ns, key).await < version,
        "a killed publisher writes no final snapshot"
    );

    let stack = Stack::start_killable(nats, config).await;
    assert_eq!(
        stack.publisher.version(),
        version + 1,
        "one take-over delta"
    );
    for jti in ["graceful", "killed-0", "killed-1", "killed-2"] {
        assert!(stack.api.lookup(jti).await.unwrap().revoked, "{jti} lost");
    }
}

/// A small deterministic generator (splitmix64): the schedule of a seed is the same on
/// every run, so a failing seed replays.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// Deletes `ns`'s stream and snapshot bucket (what an operator starting afresh does),
/// retrying while NATS is not ready.
async fn delete_namespace(nats_url: &str, ns: &Namespace) {
    let js = async_nats::jetstream::new(async_nats::connect(nats_url).await.unwrap());
    let gone = |e: &dyn std::fmt::Display| e.to_string().contains("not found");
    eventually_within(
        "the namespace's stream and snapshot bucket deleted",
        Duration::from_secs(30),
        || async {
            let stream = match js.delete_stream(ns.stream_name()).await {
                Ok(_) => true,
                Err(e) => gone(&e),
            };
            let bucket = match js.delete_object_store(ns.snapshot_bucket()).await {
                Ok(()) => true,
                Err(e) => gone(&e),
            };
            stream && bucket
        },
    )
    .await;
}

/// A seeded random schedule of faults under load: a replica cut off and restored by
/// the proxy, NATS stopped and restarted, garbage on the live subjects, garbage,
/// another key's deltas and copies of old messages stored on the log, the publisher
/// restarted with its clock stepped back or ahead (up to two days), the publisher
/// killed (as SIGKILL does) and started again, the namespace deleted and created
/// again under the replicas, a rogue confirm responder that answers first. The load
/// revokes tokens and cuts subjects and sessions off. The checker counts the
/// invariants after every check (no false negative by an in-sync replica, no wrongful
/// rejection), and after recovery nothing acknowledged since the last reset is lost.
/// `REVOCAST_CHAOS_SECS` (default 12) sets the length, `REVOCAST_CHAOS_SEED` replays a
/// schedule; the seed is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s9_seeded_chaos() {
    init_logs();
    let secs = env_u64("REVOCAST_CHAOS_SECS").unwrap_or(12);
    let seed = env_u64("REVOCAST_CHAOS_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "CHAOS seed {seed}, {secs} s: replay with REVOCAST_CHAOS_SEED={seed} REVOCAST_CHAOS_SECS={secs}"
    );
    let mut schedule = Schedule(seed);
    let nats = NatsServer::start();
    let mut config = Config::for_tests(nats.url()).unwrap();
    // Expiries looked for every second: one at a clock far ahead would drop everything.
    config.expiry_interval = Duration::from_secs(1);
    let mut stack = Stack::start_killable(nats, config.clone()).await;
    // Restarts keep the address the checker calls.
    config.listen = stack.publisher.local_addr();
    let key = stack.publisher.public_key();
    let ns = Namespace::default();
    let proxy = Proxy::start(stack.nats.port());
    let mut all = replicas(&options(key), &stack.nats.url(), 2).await;
    all.extend(replicas(&options(key), &proxy.url(), 1).await);
    let checker = Checker::new(PublisherApi::new(stack.publisher.url()), all, "s9");

    // The rogue responder: garbage answers on the confirm subject while enabled.
    let rogue_on = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let rogue = {
        let client = async_nats::connect(stack.nats.url()).await.unwrap();
        let mut requests = client.subscribe(ns.confirm_subject()).await.unwrap();
        let on = Arc::clone(&rogue_on);
        tokio::spawn(async move {
            use futures::StreamExt as _;
            while let Some(request) = requests.next().await {
                if on.load(Ordering::SeqCst)
                    && let Some(reply) = request.reply
                {
                    let _ = client.publish(reply, "rogue".into()).await;
                }
            }
        })
    };

    let start = Instant::now();
    let load = tokio::spawn({
        let c = Arc::clone(&checker);
        async move { c.revoke_load(u64::MAX, 4).await }
    });
    let checks = tokio::spawn({
        let c = Arc::clone(&checker);
        async move { c.check_load().await }
    });
    let garbage = async_nats::connect(stack.nats.url()).await.unwrap();
    let js = async_nats::jetstream::new(garbage.clone());
    let forger =
        revocast_core::Signer::new(revocast_core::signing_key_from_seed([0xAB; 32]), ns.clone());
    let mut steps = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        let step = match schedule.below(20) / 2 {
            0 => {
                proxy.cut();
                "cut the proxied replica"
            }
            1 => {
                proxy.restore();
                "restore the proxied replica"
            }
            2 => {
                let outage = Duration::from_millis(100 + schedule.below(900));
                tokio::task::block_in_place(|| stack.nats.stop());
                tokio::time::sleep(outage).await;
                tokio::task::block_in_place(|| stack.nats.restart());
                "restart NATS"
            }
            3 => {
                let bytes: Vec<u8> = (0..1 + schedule.below(300))
                    .map(|_| schedule.next() as u8)
                    .collect();
                let subject = if schedule.below(2) == 0 {
                    ns.delta_subject()
                } else {
                    ns.heartbeat_subject()
                };
                let _ = garbage.publish(subject, bytes.into()).await;
                "garbage on a live subject"
            }
            4 => {
                let on = !rogue_on.load(Ordering::SeqCst);
                rogue_on.store(on, Ordering::SeqCst);
                if on {
                    "rogue confirm responder on"
                } else {
                    "rogue confirm responder off"
                }
            }
            5 => {
                // Stored on the log, where anyone allowed to publish there can store
                // anything: none of it may stop the writer or a replica.
                let (bytes, what) = match schedule.below(3) {
                    0 => (
                        (0..1 + schedule.below(300))
                            .map(|_| schedule.next() as u8)
                            .collect::<Vec<u8>>(),
                        "garbage stored on the log",
                    ),
                    1 => (
                        forger.encode(&Message::Delta(revocast_core::Delta {
                            epoch: stack.publisher.epoch(),
                            version: stack.publisher.version() + 1,
                            committed_at_ms: 0,
                            changes: Vec::new(),
                        })),
                        "another key's next delta stored on the log",
                    ),
                    _ => {
                        let stream = js.get_stream(ns.stream_name()).await;
                        let last = stack.publisher.stats().log_seq.max(1);
                        let old = match stream {
                            Ok(stream) => stream
                                .get_raw_message(1 + schedule.below(last))
                                .await
                                .map(|m| m.payload.to_vec())
                                .unwrap_or_default(),
                            Err(_) => Vec::new(),
                        };
                        (old, "an old log message stored again")
                    }
                };
                if let Ok(ack) = js.publish(ns.log_subject(), bytes.into()).await {
                    let _ = ack.await;
                }
                what
            }
            6 => {
                // A graceful restart with the clock stepped up to 10 minutes either
                // way (heartbeats order by (version, beat), not by time), or one to
                // two days ahead (expiries are bounded by NATS's time).
                let far = schedule.below(4) == 0;
                let step = if far {
                    86_400 + i64::try_from(schedule.below(86_400)).unwrap_or(0)
                } else {
                    i64::try_from(schedule.below(1_201)).unwrap_or(0) - 600
                };
                let mut restarted = config.clone();
                restarted.clock = Arc::new(Skewed(step));
                stack = stack.restart_publisher(restarted).await;
                if far {
                    "restart the publisher with its clock a day or more ahead"
                } else if step < 0 {
                    "restart the publisher with its clock stepped back"
                } else {
                    "restart the publisher with its clock stepped ahead"
                }
            }
            7 => {
                // SIGKILL: no queued commit, no final snapshot, no flush; callers in
                // flight get errors.
                let outage = Duration::from_millis(schedule.below(1_000));
                let nats = stack.kill_publisher().await.unwrap();
                tokio::time::sleep(outage).await;
                stack = Stack::start_killable(nats, config.clone()).await;
                "kill the publisher, start it again"
            }
            8 if schedule.below(2) == 0 => {
                // An operator starting afresh: every revocation goes, by design. The
                // checker forgets what was acknowledged before; what is acknowledged
                // after must hold.
                let killed = schedule.below(2) == 0;
                let reset = checker.begin_reset().await;
                let nats = if killed {
                    stack.kill_publisher().await.unwrap()
                } else {
                    stack.shutdown_publisher().await.unwrap()
                };
                delete_namespace(&nats.url(), &ns).await;
                stack = Stack::start_killable(nats, config.clone()).await;
                reset.done(stack.publisher.epoch());
                if killed {
                    "reset the namespace (publisher killed)"
                } else {
                    "reset the namespace (publisher stopped)"
                }
            }
            _ => "nothing",
        };
        steps.push(format!("{:>6} ms: {step}", start.elapsed().as_millis()));
        tokio::time::sleep(Duration::from_millis(200 + schedule.below(1300))).await;
    }
    proxy.restore();
    rogue_on.store(false, Ordering::SeqCst);
    checker.stop();
    load.await.unwrap();
    checks.await.unwrap();
    let converged = converged(&stack.nats.url(), key, &checker, stack.publisher.version()).await;
    let report = checker
        .report("9. seeded chaos", start.elapsed(), converged)
        .await;
    rogue.abort();
    eprintln!(
        "CHAOS seed {seed}: {} steps\n{}",
        steps.len(),
        steps.join("\n")
    );
    let mut mix = std::collections::BTreeMap::<&str, usize>::new();
    for step in &steps {
        let name = step
            .split_once(": ")
            .map_or(step.as_str(), |(_, name)| name);
        *mix.entry(name).or_default() += 1;
    }
    let mix: Vec<String> = mix
        .iter()
        .map(|(name, n)| format!("{n} x {name}"))
        .collect();
    eprintln!("CHAOS step mix: {}", mix.join(", "));
    eprintln!("{}", report.row());
    eprintln!(
        "CHAOS row: | {seed} | {} steps | {:.1} s | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        steps.len(),
        report.duration.as_secs_f64(),
        report.revocations_acked,
        report.cutoffs_acked,
        report.forgotten_by_reset,
        report.checks,
        report.false_negatives,
        report.lost,
        report.wrongful_rejections,
        report.policy_rejections,
        report.in_flight_accepts,
        report.convergence_text(),
    );
    assert!(
        converged.is_some(),
        "seed {seed}: replicas did not converge: {report:?}"
    );
    report.assert_invariants();
}
