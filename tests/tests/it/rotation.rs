//! Key rotation with replicas running: a rotation under load that every replica
//! follows (live, cut off during it, started after it), a publisher restarted with the
//! old key or mid-rotation, and the procedure for a stolen key (services pin the new
//! key first, pin-only; a thief's rollover is refused).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use revocast_core::http::{KeyRotated, RotateKeyRequest};
use revocast_core::{
    Change, Delta, Digest, Heartbeat, KeyRing, Message, Namespace, PublicKey, Signer, Verifier,
};
use revocast_publisher::keys::{self, KeySource};
use revocast_publisher::{Config, Publisher, Revocation};
use revocast_subscriber::{Subscriber, SubscriberOptions, TokenClaims};
use revocast_testkit::{
    DEADLINE, NatsServer, Proxy, Stack, eventually, init_logs, now_ms, now_secs,
    try_connect_subscriber, within,
};

/// A test configuration whose key lives in a file (a rotation rewrites it).
fn with_key_file(nats: &NatsServer) -> (tempfile::TempDir, PathBuf, Config) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signing.key");
    let mut config = Config::for_tests(nats.url()).unwrap();
    config.signing_key = KeySource::File(path.clone());
    (dir, path, config)
}

async fn rotate(stack: &Stack, key_file: Option<&Path>, overlap_secs: u64) -> KeyRotated {
    stack
        .api
        .rotate_key(&RotateKeyRequest {
            key_file: key_file.map(|p| p.display().to_string()),
            overlap_secs: Some(overlap_secs),
        })
        .await
        .unwrap()
}

async fn epoch(stack: &Stack) -> u64 {
    let stats = stack.api.stats().await.unwrap();
    u64::from_str_radix(stats["epoch"].as_str().unwrap(), 16).unwrap()
}

async fn ready(options: SubscriberOptions, url: &str) -> Subscriber {
    try_connect_subscriber(options, url, DEADLINE)
        .await
        .unwrap()
}

fn options(key: PublicKey, ns: &Namespace) -> SubscriberOptions {
    SubscriberOptions::new(key)
        .namespace(ns.clone())
        .max_staleness(Duration::from_secs(3))
}

fn rejected(replica: &Subscriber, reason: &str) -> u64 {
    replica
        .stats()
        .rejected_messages
        .get(reason)
        .copied()
        .unwrap_or(0)
}

/// Two rotations while revocations flow: the replica connected throughout never goes
/// stale and rejects every acknowledged revocation; one cut off during both catches up
/// through the log; one started afterwards pinning the first key walks the snapshot's
/// chain. Past the overlaps the old keys are refused (a thief's heartbeat, a replayed
/// rollover), and the publisher restarts with the key file the rotation wrote.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_key_rotates_twice_under_load_and_every_replica_follows() {
    init_logs();
    let nats = NatsServer::start();
    let (_dir, path, config) = with_key_file(&nats);
    let stack = Stack::start_with(nats, config.clone()).await;
    let ns = stack.publisher.namespace().clone();
    let first = keys::read_key_file(&path).unwrap();
    let k1 = first.public_key();
    let proxy = Proxy::start(stack.nats.port());
    let live = stack.subscriber().await;
    let offline = stack.subscriber_at(&proxy.url()).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<(String, u64, u64)>>> = Arc::default();
    let load = {
        let (api, stop, acked) = (stack.api.clone(), stop.clone(), acked.clone());
        tokio::spawn(async move {
            let exp = now_secs() + 3600;
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let jti = format!("load-{i}");
                if let Ok(done) = api.revoke(&Revocation::new(jti.clone(), exp)).await {
                    acked.lock().unwrap().push((jti, exp, done.version));
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let went_stale = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (live, stop, went_stale) = (live.clone(), stop.clone(), went_stale.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if live.is_stale() {
                    went_stale.store(true, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut();
    let r1 = rotate(&stack, None, 1).await;
    assert_eq!(
        (r1.rollover, r1.previous_public_key.clone()),
        (1, k1.to_string())
    );
    assert_eq!(stack.publisher.public_key().to_string(), r1.public_key);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r2 = rotate(&stack, None, 1).await;
    assert_eq!((r2.rollover, &r2.previous_public_key), (2, &r1.public_key));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last_acked = {
        let acked = acked.lock().unwrap();
        acked.last().map_or(0, |a| a.2)
    };
    eventually(
        "a revocation acknowledged after the second rotation",
        || async {
            acked
                .lock()
                .unwrap()
                .last()
                .is_some_and(|a| a.2 > last_acked)
        },
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    within("the load to stop", load).await.unwrap();
    within("the watcher to stop", watcher).await.unwrap();
    // Past both overlaps before the cut-off replica comes back.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    proxy.restore();

    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 20,
        "only {} revocations under load",
        acked.len()
    );
    let newest = acked.iter().map(|a| a.2).max().unwrap();
    for replica in [&live, &offline] {
        eventually("the replica to hold every acknowledged version", || async {
            replica.version() >= newest && !replica.is_stale()
        })
        .await;
        for (jti, exp, version) in &acked {
            let verdict = replica.check(&TokenClaims::new(jti, *exp)).await.unwrap();
            assert!(
                verdict.is_revoked(),
                "{jti} (version {version}): {verdict:?}"
            );
        }
        let stats = replica.stats();
        assert_eq!(stats.signing_keys, vec![r2.public_key.clone()]);
        assert_eq!((stats.key_rollovers, stats.rollovers_followed), (2, 2));
    }
    assert!(
        !went_stale.load(Ordering::Relaxed),
        "the connected replica went stale during the rotations"
    );

    // Started after the rotations, pinning the first key: the snapshot's chain leads
    // it to the key that signs today.
    let late = ready(options(k1, &ns), &stack.nats.url()).await;
    assert_eq!(late.stats().signing_keys, vec![r2.public_key.clone()]);
    let (jti, exp, _) = &acked[0];
    assert!(
        late.check(&TokenClaims::new(jti, *exp))
            .await
            .unwrap()
            .is_revoked()
    );

    // The first key is retired everywhere: a thief holding it cannot make replicas
    // think they are behind, and a replayed rollover it signed is old history (a
    // duplicate) that changes nothing.
    let thief = Signer::new(first.signing.clone(), ns.clone());
    let forged = Heartbeat {
        epoch: epoch(&stack).await,
        version: newest + 1000,
        beat: u64::MAX,
        time_ms: now_ms(),
        digest: Digest([0; 32]),
    };
    let client = async_nats::connect(stack.nats.url()).await.unwrap();
    let before = rejected(&live, "bad_signature");
    let duplicates = live.stats().duplicates;
    client
        .publish(
            ns.heartbeat_subject(),
            thief.encode(&Message::Heartbeat(forged)).into(),
        )
        .await
        .unwrap();
    let replay = first_rollover_delta(&stack, &ns, k1).await;
    client
        .publish(ns.delta_subject(), replay.clone().into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    eventually("the thief's messages to be refused", || async {
        rejected(&live, "bad_signature") > before && live.stats().duplicates > duplicates
    })
    .await;
    assert!(live.stats().publisher_version < newest + 1000);
    assert_eq!(live.stats().signing_keys, vec![r2.public_key.clone()]);

    // The key file holds the newest key and lists the two it retired.
    let file = keys::read_key_file(&path).unwrap();
    assert_eq!(file.public_key().to_string(), r2.public_key);
    let retired: Vec<String> = file.retired.iter().map(ToString::to_string).collect();
    assert_eq!(retired, vec![r1.public_key.clone(), k1.to_string()]);
    assert!(!keys::next_key_path(&path).exists());

    // Restarted with that file, the publisher signs with the newest key.
    let stack = stack.restart_publisher(config).await;
    assert_eq!(stack.publisher.public_key().to_string(), r2.public_key);
    let exp = now_secs() + 3600;
    let v = stack.revoke("after-restart", exp).await;
    for replica in [&live, &offline, &late] {
        eventually(
            "the replica to apply the delta after the restart",
            || async { replica.version() >= v && !replica.is_stale() },
        )
        .await;
        let verdict = replica
            .check(&TokenClaims::new("after-restart", exp))
            .await
            .unwrap();
        assert!(verdict.is_revoked(), "{verdict:?}");
    }
}

/// The bytes of the delta that carried the namespace's first rollover, read back from
/// the log.
async fn first_rollover_delta(stack: &Stack, ns: &Namespace, k1: PublicKey) -> Vec<u8> {
    let js = async_nats::jetstream::new(async_nats::connect(stack.nats.url()).await.unwrap());
    let mut stream = js.get_stream(ns.stream_name()).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    // It is signed by the first key (a fresh ring has retired nothing).
    let verifier = Verifier::with_ring(KeyRing::new([k1], true), ns.clone());
    for seq in 1..=last {
        let Ok(message) = stream.get_raw_message(seq).await else {
            continue;
        };
        if let Ok(delta) = verifier.decode_delta(&message.payload)
            && delta
                .changes
                .iter()
                .any(|c| matches!(c, Change::Rollover(r) if r.rollover.index == 1))
        {
            return message.payload.to_vec();
        }
    }
    panic!("no delta with the first rollover in the log");
}

/// A publisher started with the key the namespace rotated away from refuses to start
/// and says which key to use; one that stopped between storing a rollover and putting
/// the new key file in place finishes the rotation at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_with_the_old_key_refuses_and_an_interrupted_rotation_is_finished() {
    init_logs();
    let nats = NatsServer::start();
    let (_dir, path, config) = with_key_file(&nats);
    let stack = Stack::start_with(nats, config.clone()).await;
    let old_text = std::fs::read_to_string(&path).unwrap();
    let exp = now_secs() + 3600;
    stack.revoke("before", exp).await;
    let rotated = rotate(&stack, None, 60).await;
    let new_text = std::fs::read_to_string(&path).unwrap();
    let nats = stack.shutdown_publisher().await.unwrap();

    std::fs::write(&path, &old_text).unwrap();
    let publisher = Publisher::start(config.clone()).await.unwrap();
    assert!(publisher.wait_ready(DEADLINE).await.is_err());
    let error = publisher.shutdown().await.unwrap_err().to_string();
    assert!(
        error.contains("rotated to") && error.contains(&rotated.public_key),
        "{error}"
    );

    // What a rotation that stopped before its rename leaves: the old file in place
    // and the new one beside it.
    std::fs::write(keys::next_key_path(&path), &new_text).unwrap();
    let stack = Stack::start_with(nats, config).await;
    assert_eq!(stack.publisher.public_key().to_string(), rotated.public_key);
    assert_eq!(
        keys::read_key_file(&path).unwrap().public_key().to_string(),
        rotated.public_key
    );
    assert!(!keys::next_key_path(&path).exists());
    let replica = stack.subscriber().await;
    assert!(
        replica
            .check(&TokenClaims::new("before", exp))
            .await
            .unwrap()
            .is_revoked()
    );
}

/// The procedure for a stolen key: services pin the new key beside the old one,
/// pin-only, then the publisher switches to it, then services pin the new key alone.
/// A rollover the thief signs is refused by pin-only replicas (a following one trusts
/// the thief's key: why a compromise calls for pin-only); the prepared replica stays
/// with the publisher, the unprepared one goes stale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_key_is_replaced_with_services_pinning_the_new_key_first() {
    init_logs();
    let nats = NatsServer::start();
    let (dir, path, config) = with_key_file(&nats);
    let stack = Stack::start_with(nats, config).await;
    let ns = stack.publisher.namespace().clone();
    let url = stack.nats.url();
    let stolen = keys::read_key_file(&path).unwrap();
    let new_path = dir.path().join("new.key");
    let new = PublicKey(keys::generate_key_file(&new_path).unwrap().verifying_key());

    let prepared = ready(
        stack.subscriber_options().trust_key(new).pin_only(true),
        &url,
    )
    .await;
    let unprepared = ready(stack.subscriber_options().pin_only(true), &url).await;
    let following = stack.subscriber().await;
    let exp = now_secs() + 3600;
    let v0 = stack.revoke("before", exp).await;
    for replica in [&prepared, &unprepared, &following] {
        eventually("the replica to apply the first revocation", || async {
            replica.version() >= v0
        })
        .await;
    }

    // The thief hands the namespace over to a key of their own.
    let thief_key = revocast_core::signing_key_from_seed([66; 32]);
    let thief = PublicKey(thief_key.verifying_key());
    let signer = Signer::new(stolen.signing.clone(), ns.clone());
    let epoch = epoch(&stack).await;
    let forged = Delta {
        epoch,
        version: v0 + 1,
        committed_at_ms: now_ms(),
        changes: vec![Change::Rollover(signer.rollover(
            thief,
            epoch,
            (1, v0 + 1),
            now_ms(),
            0,
        ))],
    };
    let client = async_nats::connect(url.clone()).await.unwrap();
    client
        .publish(
            ns.delta_subject(),
            signer.encode(&Message::Delta(forged)).into(),
        )
        .await
        .unwrap();
    client.flush().await.unwrap();
    eventually(
        "pin-only replicas to refuse the thief's rollover",
        || async {
            prepared.stats().rollovers_refused == 1 && unprepared.stats().rollovers_refused == 1
        },
    )
    .await;
    eventually("the following replica to follow it", || async {
        following.stats().rollovers_followed == 1
    })
    .await;
    assert!(following.stats().signing_keys.contains(&thief.to_string()));
    assert!(!prepared.stats().signing_keys.contains(&thief.to_string()));

    // The publisher switches to the key the services pinned.
    let rotated = rotate(&stack, Some(&new_path), 0).await;
    assert_eq!(rotated.public_key, new.to_string());
    let v = stack.revoke("after", exp).await;
    let followed = tokio::time::timeout(DEADLINE, async {
        while prepared.version() < v || prepared.is_stale() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        followed.is_ok(),
        "the prepared replica did not follow the publisher to version {v}: {:#?}",
        prepared.stats()
    );
    for jti in ["before", "after"] {
        let verdict = prepared.check(&TokenClaims::new(jti, exp)).await.unwrap();
        assert!(verdict.is_revoked(), "{jti}: {verdict:?}");
    }
    eventually("the unprepared replica to go stale", || async {
        unprepared.is_stale()
    })
    .await;
    assert!(unprepared.version() < v);

    // Services then pin the new key alone.
    let pinned = ready(options(new, &ns).pin_only(true), &url).await;
    let verdict = pinned.check(&TokenClaims::new("after", exp)).await.unwrap();
    assert!(verdict.is_revoked(), "{verdict:?}");
    assert_eq!(pinned.stats().signing_keys, vec![new.to_string()]);
}

/// A publisher restarted after the overlap still knows every revocation committed
/// before the rotation: it reads deltas signed by a key it rotated away from at the
/// places in the log where that key was current.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_signed_before_a_rotation_survive_a_restart_after_the_overlap() {
    init_logs();
    let nats = NatsServer::start();
    let (_dir, _path, config) = with_key_file(&nats);
    let stack = Stack::start_with(nats, config.clone()).await;
    let exp = now_secs() + 3600;
    stack.revoke("signed-by-the-first-key", exp).await;
    rotate(&stack, None, 0).await;
    stack.revoke("signed-by-the-second-key", exp).await;
    let stack = stack.restart_publisher(config).await;
    for jti in ["signed-by-the-first-key", "signed-by-the-second-key"] {
        let answer = stack.api.lookup(jti).await.unwrap();
        assert!(answer.revoked, "{jti}: {answer:?}");
    }
    let replica = stack.subscriber().await;
    let verdict = replica
        .check(&TokenClaims::new("signed-by-the-first-key", exp))
        .await
        .unwrap();
    assert!(verdict.is_revoked(), "{verdict:?}");
}
