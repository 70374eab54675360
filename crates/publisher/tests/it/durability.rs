//! Durability (invariant 5 of docs/DESIGN.md): revocations survive a publisher crash
//! (`kill -9` of the real binary) and a NATS restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use revocast_core::{Namespace, PublicKey, signing_key_from_file};
use revocast_publisher::Revocation;
use revocast_publisher::client::ApiClient;
use revocast_testkit::NatsServer;
use serde_json::json;

use crate::common::{Http, config, eventually, now, start, stream_deltas, within};

/// The real binary, on a port of its choosing (read from its log, so that no other
/// test can take it first), with the key in `dir`.
fn spawn_publisher(nats_url: &str, dir: &std::path::Path) -> (Child, Http) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_revocast-publisher"))
        .args([
            "--log-json",
            "serve",
            "--nats",
            nats_url,
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--namespace",
            "crash",
            "--admin-token",
            "tok",
            "--snapshot-every-deltas",
            "7",
        ])
        .env("REVOCAST_LOG", "warn,revocast_publisher::server=info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn revocast-publisher");
    let lines = crate::common::stderr_lines(&mut child);
    // The JSON start line carries the bound address.
    let address = |line: String| {
        let log = serde_json::from_str::<serde_json::Value>(&line).ok()?;
        log["fields"]["addr"].as_str().map(str::to_owned)
    };
    let addr = tokio::task::block_in_place(|| {
        std::iter::from_fn(|| lines.recv_timeout(crate::common::DEADLINE).ok()).find_map(address)
    })
    .expect("the publisher logs its address");
    (child, Http::new(format!("http://{addr}")))
}

async fn wait_ready(http: &Http) {
    let api = ApiClient::builder(&http.base)
        .timeout(crate::common::DEADLINE)
        .build()
        .unwrap();
    eventually("the publisher to be ready", || async {
        api.readiness().await.is_ok_and(|r| r.ready)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, http) = spawn_publisher(&server.url(), dir.path());
    wait_ready(&http).await;
    let key_text = std::fs::read_to_string(dir.path().join("signing.key")).unwrap();
    let key = PublicKey(signing_key_from_file(&key_text).unwrap().verifying_key());

    // 8 writers revoke as fast as they can; every 200 is recorded.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let exp = now() + 3600;
    let mut writers = Vec::new();
    let api = ApiClient::builder(&http.base)
        .admin_token("tok")
        .timeout(crate::common::DEADLINE)
        .build()
        .unwrap();
    for w in 0..8 {
        let api = api.clone();
        let acknowledged = acknowledged.clone();
        writers.push(tokio::spawn(async move {
            for i in 0.. {
                let jti = format!("w{w}-{i}");
                match api.revoke(&Revocation::new(jti.clone(), exp)).await {
                    Ok(_) => {
                        acknowledged.lock().unwrap().insert(jti);
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill right after a success answer, with writes in flight.
    eventually("some revocations acknowledged", || async {
        (acknowledged.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    for w in writers {
        within("writers to notice", w).await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();

    let (mut child, http) = spawn_publisher(&server.url(), dir.path());
    wait_ready(&http).await;
    let ns = Namespace::new("crash").unwrap();
    let deltas = stream_deltas(&server.url(), &ns, key).await;
    let last = deltas.last().map_or(0, |d| d.version);
    let (_, stats) = http.get("/v1/stats").await;
    assert_eq!(
        stats["version"], last,
        "the restarted publisher is at the stream's end"
    );
    for jti in &acknowledged {
        let (status, body) = http.get(&format!("/v1/revocations/{jti}")).await;
        assert_eq!(status, 200, "acknowledged {jti} was lost: {body}");
    }
    // Versions continue without a gap.
    assert_eq!(http.revoke("after-crash").await, last + 1);
    assert_eq!(
        stream_deltas(&server.url(), &ns, key).await.len() as u64,
        last + 1
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_under_the_publisher() {
    let mut server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.commit_timeout = Duration::from_secs(15);
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    assert_eq!(http.revoke("before").await, 1);

    tokio::task::block_in_place(|| server.restart());

    // The publisher reconnects and carries on from version 2.
    let version = eventually("a revocation after the NATS restart", || async {
        let (status, body) = http
            .post(
                "/v1/revocations",
                json!({"jti": "after", "exp": now() + 3600}),
            )
            .await;
        (status == 200).then(|| body["version"].as_u64().unwrap())
    })
    .await;
    assert_eq!(version, 2);
    let (status, _) = http.get("/v1/revocations/before").await;
    assert_eq!(status, 200);
    eventually("ready again", || async {
        let (status, _) = http.get("/readyz").await;
        (status == 200).then_some(())
    })
    .await;
    let deltas = stream_deltas(&server.url(), publisher.namespace(), publisher.public_key()).await;
    assert_eq!(deltas.len(), 2);
    // And the authority answers over NATS again.
    let ns = publisher.namespace().clone();
    let client = async_nats::connect(server.url()).await.unwrap();
    let request = revocast_core::encode_request(
        &ns,
        &revocast_core::ConfirmRequest {
            jti: "after".into(),
            exp: None,
            nonce: 9,
            sub: None,
            iat: None,
            sid: None,
        },
    );
    let answer = eventually("the authority over NATS", || {
        let client = client.clone();
        let request = request.clone();
        let subject = ns.confirm_subject();
        async move { client.request(subject, request.into()).await.ok() }
    })
    .await;
    let answer = revocast_core::Verifier::new(publisher.public_key(), ns)
        .decode_confirm_response(&answer.payload)
        .unwrap();
    assert!(answer.revoked);
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_wait_out_a_nats_outage() {
    // The outage is a cut link (a proxy), so that NATS keeps its port meanwhile.
    let server = NatsServer::start();
    let proxy = revocast_testkit::Proxy::start(server.port());
    let mut cfg = config(&server);
    cfg.nats.url = proxy.url();
    cfg.commit_timeout = Duration::from_secs(20);
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    http.revoke("first").await;
    proxy.cut();
    // Sent while NATS is unreachable: answered once NATS is back, or with a 503;
    // never a success that is not stored.
    let pending = {
        let http = http.clone();
        tokio::spawn(async move {
            http.post(
                "/v1/revocations",
                json!({"jti": "during", "exp": now() + 3600}),
            )
            .await
        })
    };
    // The writer has tried to publish it and is now reading the stream back.
    eventually("the commit to hit the outage", || async {
        (publisher.stats().deltas.reconciled >= 1).then_some(())
    })
    .await;
    proxy.restore();
    let (status, body) = within("the call made during the outage", pending)
        .await
        .unwrap();
    let deltas = stream_deltas(&server.url(), publisher.namespace(), publisher.public_key()).await;
    let stored = deltas.iter().any(|d| {
        d.changes
            .iter()
            .any(|c| matches!(c, revocast_core::Change::Add { jti, .. } if jti == "during"))
    });
    eprintln!("the call made during the outage got {status}: {body}");
    match status {
        200 => assert!(stored, "acknowledged but not stored: {body}"),
        503 => {}
        other => panic!("unexpected {other}: {body}"),
    }
    // Either way the publisher goes on, without a gap.
    let next = eventually("a revocation after the outage", || async {
        let (status, body) = http
            .post(
                "/v1/revocations",
                json!({"jti": "later", "exp": now() + 3600}),
            )
            .await;
        (status == 200).then(|| body["version"].as_u64().unwrap())
    })
    .await;
    let deltas = stream_deltas(&server.url(), publisher.namespace(), publisher.public_key()).await;
    assert_eq!(deltas.len() as u64, next);
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_commits_snapshots_and_exits_promptly() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut child, http) = spawn_publisher(&server.url(), dir.path());
    wait_ready(&http).await;
    for i in 0..5 {
        http.revoke(&format!("t{i}")).await;
    }
    let started = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = eventually("the publisher to exit after SIGTERM", || {
        let exit = child.try_wait().unwrap();
        async move { exit }
    })
    .await;
    assert!(exit.success(), "clean exit: {exit}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The final snapshot holds version 5 (snapshots every 7 deltas would not).
    let key_text = std::fs::read_to_string(dir.path().join("signing.key")).unwrap();
    let key = PublicKey(signing_key_from_file(&key_text).unwrap().verifying_key());
    let ns = Namespace::new("crash").unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let store = js.get_object_store(ns.snapshot_bucket()).await.unwrap();
    let mut object = store
        .get(revocast_core::subjects::SNAPSHOT_OBJECT)
        .await
        .unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
        .await
        .unwrap();
    let snapshot = revocast_core::Verifier::new(key, ns)
        .decode_snapshot(&bytes)
        .unwrap();
    assert_eq!(snapshot.state.version, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_stored_behind_the_writers_back_is_read_back_and_adopted() {
    let server = NatsServer::start();
    let key = revocast_core::signing_key_from_seed([9; 32]);
    let mut cfg = config(&server);
    cfg.signing_key = revocast_publisher::KeySource::Key(key.clone());
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    // Everything sent live, to compare with what the stream holds.
    let live_client = async_nats::connect(server.url()).await.unwrap();
    let mut live = live_client
        .subscribe(publisher.namespace().delta_subject())
        .await
        .unwrap();
    live_client.flush().await.unwrap();
    assert_eq!(http.revoke("mine").await, 1);

    // Another writer with the same key stores version 2 first.
    let ns = publisher.namespace().clone();
    let mut replica = revocast_core::Filter::new(Default::default())
        .unwrap()
        .with_epoch(publisher.epoch());
    for d in stream_deltas(&server.url(), &ns, publisher.public_key()).await {
        replica.apply(&d).unwrap();
    }
    let mut staging = replica.stage();
    staging
        .revoke_with("foreign", now() + 600, None, Some("elsewhere"), || 0x5eed)
        .unwrap();
    let delta = revocast_core::Delta {
        epoch: publisher.epoch(),
        version: 2,
        committed_at_ms: now() * 1000,
        changes: staging.finish(),
    };
    let bytes =
        revocast_core::Signer::new(key, ns.clone()).encode(&revocast_core::Message::Delta(delta));
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let ack = js
        .send_publish(
            ns.log_subject(),
            async_nats::jetstream::message::PublishMessage::build()
                .payload(bytes.into())
                .expected_last_sequence(1),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.sequence, 2);

    // The publisher's next commit loses the race: it is told "not durable", and the
    // stored delta is adopted (filter and records).
    let (status, body) = http
        .post(
            "/v1/revocations",
            json!({"jti": "late", "exp": now() + 600}),
        )
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (503, json!("not_durable")),
        "{body}"
    );
    let (status, body) = http.get_admin("/v1/revocations/foreign").await;
    assert_eq!(
        (status, body["reason"].clone()),
        (200, json!("elsewhere")),
        "{body}"
    );
    assert_eq!(publisher.version(), 2);
    assert_eq!(publisher.stats().deltas.reconciled, 1);
    // Retrying is safe and lands on version 3.
    assert_eq!(http.revoke("late").await, 3);
    let stored = stream_deltas(&server.url(), &ns, publisher.public_key()).await;
    assert_eq!(stored.len(), 3);

    // Regression: the refused version-2 delta (holding "late") never went out live.
    // Core subscribers of the stream's own subject used to receive publishes that
    // JetStream then refused, and a replica applied a version 2 the stream never held.
    let verifier = revocast_core::Verifier::new(publisher.public_key(), ns.clone());
    let mut seen = Vec::new();
    while let Ok(Some(message)) = tokio::time::timeout(
        Duration::from_millis(500),
        futures::StreamExt::next(&mut live),
    )
    .await
    {
        seen.push(verifier.decode_delta(&message.payload).unwrap());
    }
    assert!(!seen.is_empty(), "stored deltas are sent live");
    for delta in &seen {
        let index = usize::try_from(delta.version - 1).unwrap();
        assert_eq!(delta, &stored[index], "a live delta is the stored one");
    }
    publisher.shutdown().await.unwrap();
}
