//! A publisher against a real nats-server: deltas, authority, snapshots, heartbeats,
//! stats, restart from snapshot plus stream.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures::StreamExt as _;
use revocast_core::http::{REVOCATIONS, RevocationStatus, revocation_path};
use revocast_core::{
    Change, ConfirmRequest, Filter, Namespace, Verifier, encode_request, subjects,
};
use revocast_publisher::{Config, KeySource, Revocation};
use revocast_testkit::NatsServer;
use serde_json::json;

use crate::common::{DEADLINE, Http, config, eventually, now, start, stream_deltas, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_become_contiguous_signed_deltas() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let ns = publisher.namespace().clone();
    let mut deltas =
        crate::common::delta_subscription(&server.url(), &ns, publisher.public_key()).await;
    let http = Http::new(publisher.url());

    let exp = now() + 600;
    let (status, body) = http
        .post("/v1/revocations", json!({"jti": "jti-1", "exp": exp}))
        .await;
    assert_eq!((status, body["version"].clone()), (200, json!(1)), "{body}");
    let (status, body) = http
        .post(
            "/v1/revocations",
            json!({"revocations": [
                {"jti": "jti-2", "exp": exp, "sub": "alice"},
                {"jti": "jti-3", "exp": exp},
                {"jti": "jti-1", "exp": exp},
                {"jti": "jti-old", "exp": 1000},
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"version": 2, "revoked": 2, "buckets": 2, "duplicates": 1, "expired": 1, "noop": false})
    );
    // Revoking the same jti again is a success without a new delta.
    let (status, body) = http
        .post("/v1/revocations", json!({"jti": "jti-2", "exp": exp}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["noop"], true);
    assert_eq!(body["duplicates"], 1);
    assert_eq!(body["version"], 2);
    // An already expired token: documented no-op, nothing published.
    let (status, body) = http
        .post(
            "/v1/revocations",
            json!({"jti": "gone", "exp": now() - 3600}),
        )
        .await;
    assert_eq!(
        (status, body["noop"].clone(), body["expired"].clone()),
        (200, json!(true), json!(1))
    );
    let (status, body) = http
        .post(
            "/v1/cutoffs",
            json!({"sub": "mallory", "not_before": now()}),
        )
        .await;
    assert_eq!((status, body["version"].clone()), (200, json!(3)), "{body}");

    // Subscribers see versions 1, 2, 3 in order, with the entries.
    let mut filter = Filter::new(Default::default())
        .unwrap()
        .with_epoch(publisher.epoch());
    for want in 1..=3u64 {
        let delta = within("a delta on the delta subject", deltas.next())
            .await
            .unwrap();
        assert_eq!(delta.version, want);
        filter.apply(&delta).unwrap();
    }
    assert!(filter.contains("jti-1", None));
    assert!(filter.contains("jti-3", Some(exp)));
    assert!(!filter.contains("gone", None));
    assert_eq!(
        filter.subject_cutoffs().get("mallory").copied().map(|_| ()),
        Some(())
    );

    let stored = stream_deltas(&server.url(), &ns, publisher.public_key()).await;
    assert_eq!(stored.len(), 3);
    let adds = |d: &revocast_core::Delta| {
        d.changes
            .iter()
            .filter(|c| matches!(c, Change::Add { .. }))
            .count()
    };
    assert_eq!(stored.iter().map(adds).collect::<Vec<_>>(), vec![1, 2, 0]);

    // Stats reflect it.
    let (status, stats) = http.get("/v1/stats").await;
    assert_eq!(status, 200);
    assert_eq!(stats["version"], 3);
    assert_eq!(stats["records"], 3);
    assert_eq!(stats["filter"]["live_entries"], 3);
    assert_eq!(stats["revocations"]["added"], 3);
    assert_eq!(stats["revocations"]["duplicates"], 2);
    assert_eq!(stats["revocations"]["expired"], 2);
    assert_eq!(stats["revocations"]["cutoffs"], 1);
    assert_eq!(stats["deltas"]["count"], 3);
    assert_eq!(stats["filter"]["subject_cutoffs"], 1);
    assert_eq!(stats["nats"]["state"], "connected");
    assert_eq!(stats["public_key"], publisher.public_key().to_string());
    let (status, metrics) = http.get("/metrics").await;
    assert_eq!(status, 200);
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("revocast_deltas_published_total 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("revocast_revocations_total{outcome=\"added\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("revocast_commit_seconds_bucket"),
        "{metrics}"
    );
    // What the alert rules compare: the filter's rates, the snapshot's size against
    // the limit, the namespace and format of this publisher.
    let info = format!(
        "revocast_publisher_info{{namespace=\"{}\",format_version=\"{}\"}} 1",
        publisher.namespace(),
        revocast_core::wire::FORMAT_VERSION
    );
    let limit = format!(
        "revocast_snapshot_limit_bytes {}",
        revocast_nats::store::MAX_SNAPSHOT_BYTES
    );
    for expected in [
        info.as_str(),
        limit.as_str(),
        "revocast_filter_target_fpr 0.001",
        "revocast_filter_estimated_fpr ",
        "revocast_bucket_entries{bucket=\"",
        "revocast_bucket_estimated_fpr{bucket=\"",
        "revocast_nats_connected 1",
        "revocast_commits_failed_total 0",
    ] {
        assert!(metrics.contains(expected), "{expected}: {metrics}");
    }

    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authority_answers_over_nats_and_http() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let ns = publisher.namespace().clone();
    let http = Http::new(publisher.url());
    let exp = now() + 900;
    let (status, _) = http
        .post(
            "/v1/revocations",
            json!({"jti": "stolen", "exp": exp, "sub": "bob", "reason": "device lost"}),
        )
        .await;
    assert_eq!(status, 200);

    // HTTP: without the admin token, only what the authority's clients need.
    let (status, body) = http.get("/v1/revocations/stolen").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "jti": "stolen",
            "revoked": true,
            "version": 1,
            "epoch": format!("{:016x}", publisher.epoch()),
        }),
        "sub, reason and times need the admin token"
    );
    let (status, body) = http.get_admin("/v1/revocations/stolen").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["revoked"], true);
    assert_eq!(body["exp"], exp);
    assert_eq!(body["sub"], "bob");
    assert_eq!(body["reason"], "device lost");
    assert!(body["revoked_at"].as_u64().unwrap() >= now() - 60);
    let (status, body) = http.get("/v1/revocations/fine").await;
    assert_eq!(
        (status, body),
        (
            404,
            json!({
                "jti": "fine",
                "revoked": false,
                "version": 1,
                "epoch": format!("{:016x}", publisher.epoch()),
            })
        )
    );

    // NATS: signed, nonce echoed.
    let client = async_nats::connect(server.url()).await.unwrap();
    let verifier = Verifier::new(publisher.public_key(), ns.clone());
    for (jti, revoked, nonce) in [("stolen", true, 42u64), ("fine", false, 7)] {
        let request = encode_request(
            &ns,
            &ConfirmRequest {
                jti: jti.into(),
                exp: Some(exp),
                nonce,
                sub: None,
                iat: None,
                sid: None,
            },
        );
        let reply = within(
            "confirm",
            client.request(ns.confirm_subject(), request.into()),
        )
        .await
        .unwrap();
        let answer = verifier.decode_confirm_response(&reply.payload).unwrap();
        assert_eq!(
            (answer.jti.as_str(), answer.revoked, answer.nonce),
            (jti, revoked, nonce)
        );
        assert_eq!(answer.version, 1);
        if revoked {
            // Anyone may ask over NATS: no reason in the answer.
            assert_eq!(answer.reason, None);
            assert_eq!(answer.exp, Some(exp));
        }
    }
    // A malformed request gets a service error, and the service keeps serving.
    let reply = within(
        "bad confirm",
        client.request(ns.confirm_subject(), "garbage".into()),
    )
    .await
    .unwrap();
    let code = reply
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.to_string());
    assert_eq!(code.as_deref(), Some("400"));
    let wrong_ns = Namespace::new("other").unwrap();
    let request = encode_request(
        &wrong_ns,
        &ConfirmRequest {
            jti: "x".into(),
            exp: None,
            nonce: 1,
            sub: None,
            iat: None,
            sid: None,
        },
    );
    let reply = within(
        "confirm",
        client.request(ns.confirm_subject(), request.into()),
    )
    .await
    .unwrap();
    assert!(
        reply.headers.is_some(),
        "a request for another namespace is an error"
    );

    // Discoverable as a NATS micro service.
    let ping = within(
        "$SRV.PING",
        client.request(
            format!("$SRV.PING.{}", subjects::AUTHORITY_SERVICE),
            "".into(),
        ),
    )
    .await
    .unwrap();
    let ping: serde_json::Value = serde_json::from_slice(&ping.payload).unwrap();
    assert_eq!(ping["name"], subjects::AUTHORITY_SERVICE);
    let stats = within(
        "$SRV.STATS",
        client.request(
            format!("$SRV.STATS.{}", subjects::AUTHORITY_SERVICE),
            "".into(),
        ),
    )
    .await
    .unwrap();
    let stats: serde_json::Value = serde_json::from_slice(&stats.payload).unwrap();
    let endpoint = &stats["endpoints"][0];
    assert_eq!(endpoint["name"], subjects::CONFIRM_ENDPOINT);
    assert_eq!(endpoint["num_requests"], 4, "{stats}");
    assert_eq!(endpoint["num_errors"], 2, "{stats}");
    assert_eq!(endpoint["data"]["malformed"], 2, "{stats}");

    // Confirms are counted by answer (HTTP, with and without the token, and NATS).
    let stats = publisher.stats();
    assert_eq!(stats.confirms.revoked, 3);
    assert_eq!(stats.confirms.not_revoked, 2);
    assert_eq!(stats.confirms.malformed, 2);
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_carry_version_and_digest() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let ns = publisher.namespace().clone();
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut beats = client.subscribe(ns.heartbeat_subject()).await.unwrap();
    let http = Http::new(publisher.url());
    http.revoke("a").await;
    let verifier = Verifier::new(publisher.public_key(), ns.clone());
    let mut replica = Filter::new(Default::default())
        .unwrap()
        .with_epoch(publisher.epoch());
    for delta in stream_deltas(&server.url(), &ns, publisher.public_key()).await {
        replica.apply(&delta).unwrap();
    }
    let beat = within("a heartbeat at version 1", async {
        loop {
            let m = beats.next().await.unwrap();
            let beat = verifier.decode_heartbeat(&m.payload).unwrap();
            if beat.version == 1 {
                return beat;
            }
        }
    })
    .await;
    assert_eq!(beat.digest, replica.digest());
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_rebuilds_from_snapshot_and_stream() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("signing.key");
    let mut cfg = Config::for_tests(server.url()).unwrap();
    cfg.signing_key = KeySource::File(key_path.clone());
    cfg.admin_token = Some("tok".into());
    cfg.snapshot_every_deltas = 3;
    let publisher = start(cfg.clone()).await;
    assert!(key_path.exists(), "the key file is created on first start");
    let key = publisher.public_key();
    let http = Http::new(publisher.url());
    for i in 0..5 {
        http.revoke(&format!("before-{i}")).await;
    }
    // Snapshots after every 3 deltas, in the background.
    eventually("a snapshot at version >= 3", || async {
        (publisher.stats().snapshots.last_version >= 3).then_some(())
    })
    .await;
    // The snapshot object verifies with the publisher's key.
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let store = js
        .get_object_store(publisher.namespace().snapshot_bucket())
        .await
        .unwrap();
    let mut object = store.get(subjects::SNAPSHOT_OBJECT).await.unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
        .await
        .unwrap();
    let verifier = Verifier::new(key, publisher.namespace().clone());
    let snapshot = verifier.decode_snapshot(&bytes).unwrap();
    assert!(snapshot.state.version >= 3);
    publisher.shutdown().await.unwrap();

    let publisher = start(cfg).await;
    assert_eq!(publisher.public_key(), key, "same key file");
    // Five revocations, and the delta of the restarted publisher's take-over.
    assert_eq!(publisher.version(), 6);
    let http = Http::new(publisher.url());
    for i in 0..5 {
        let (status, body) = http.get_admin(&format!("/v1/revocations/before-{i}")).await;
        assert_eq!(status, 200, "before-{i}: {body}");
        assert_eq!(body["reason"], "test");
    }
    assert_eq!(http.revoke("after").await, 7);
    assert_eq!(
        stream_deltas(&server.url(), publisher.namespace(), key)
            .await
            .len(),
        7
    );
    let (status, ready) = http.get("/readyz").await;
    assert_eq!((status, ready["ready"].clone()), (200, json!(true)));
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_with_another_key_refuses_the_namespace() {
    let server = NatsServer::start();
    let first = start(config(&server)).await;
    Http::new(first.url()).revoke("x").await;
    first.shutdown().await.unwrap();
    // Same namespace, fresh random key: the snapshot does not verify.
    let second = revocast_publisher::Publisher::start(config(&server))
        .await
        .unwrap();
    let err = second.wait_ready(DEADLINE).await.unwrap_err();
    assert!(
        matches!(err, revocast_publisher::Error::Stopped(_)),
        "{err}"
    );
    let err = second.shutdown().await.unwrap_err();
    assert!(
        matches!(err, revocast_publisher::Error::Inconsistent { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("does not verify"), "{err}");
    // The cause is kept: the snapshot's decode error.
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_share_deltas_and_all_get_durable_versions() {
    let server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.batch.max_wait = Duration::from_millis(5);
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    let calls = (0..200).map(|i| {
        let http = http.clone();
        async move { http.revoke(&format!("c-{i}")).await }
    });
    let versions = within(
        "200 concurrent revocations",
        futures::future::join_all(calls),
    )
    .await;
    let last = publisher.version();
    assert!(versions.iter().all(|v| (1..=last).contains(v)));
    assert!(last < 200, "group commit: {last} deltas for 200 calls");
    let deltas = stream_deltas(&server.url(), publisher.namespace(), publisher.public_key()).await;
    let total: usize = deltas
        .iter()
        .map(|d| {
            d.changes
                .iter()
                .filter(|c| matches!(c, Change::Add { .. }))
                .count()
        })
        .sum();
    assert_eq!(total, 200);
    // Each caller's entry is in the delta whose version it was told (or earlier).
    for (i, v) in versions.iter().enumerate() {
        let jti = format!("c-{i}");
        let holder = deltas
            .iter()
            .find(|d| {
                d.changes
                    .iter()
                    .any(|c| matches!(c, Change::Add { jti: j, .. } if *j == jti))
            })
            .unwrap();
        assert!(holder.version <= *v);
    }
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_buckets_are_dropped_and_announced() {
    let server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.filter.bucket_width = 1;
    cfg.filter.max_token_lifetime = 30;
    cfg.filter.leeway = 0;
    cfg.expiry_interval = Duration::from_millis(100);
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    let (status, body) = http
        .post("/v1/revocations", json!({"jti": "short", "exp": now() + 1}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = http
        .post("/v1/revocations", json!({"jti": "long", "exp": now() + 25}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("the short-lived entry to expire", || async {
        let (status, _) = http.get("/v1/revocations/short").await;
        (status == 404).then_some(())
    })
    .await;
    let (status, _) = http.get("/v1/revocations/long").await;
    assert_eq!(status, 200, "live entries stay");
    let deltas = stream_deltas(&server.url(), publisher.namespace(), publisher.public_key()).await;
    let expire = deltas
        .iter()
        .find(|d| d.changes.iter().any(|c| matches!(c, Change::Expire { .. })))
        .expect("an Expire delta in the stream");
    assert!(expire.version >= 3);
    assert_eq!(publisher.stats().filter.live_entries, 1);
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_and_writes_a_final_snapshot() {
    let server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.snapshot_interval = Duration::from_secs(3600);
    cfg.snapshot_every_deltas = 1_000_000;
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    let calls = (0..20).map(|i| {
        let http = http.clone();
        async move { http.revoke(&format!("s-{i}")).await }
    });
    futures::future::join_all(calls).await;
    let version = publisher.version();
    let key = publisher.public_key();
    let ns = publisher.namespace().clone();
    assert_eq!(publisher.stats().snapshots.last_version, 0);
    within("shutdown", publisher.shutdown()).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let store = js.get_object_store(ns.snapshot_bucket()).await.unwrap();
    let mut object = store.get(subjects::SNAPSHOT_OBJECT).await.unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
        .await
        .unwrap();
    let snapshot = Verifier::new(key, ns).decode_snapshot(&bytes).unwrap();
    assert_eq!(snapshot.state.version, version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_jti_with_an_exp_in_another_bucket_is_added_again() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let http = Http::new(publisher.url());
    let first = now() + 60;
    let later = now() + 5 * 3600;
    let (_, body) = http
        .post("/v1/revocations", json!({"jti": "twice", "exp": first}))
        .await;
    assert_eq!(body["revoked"], 1);
    let (_, body) = http
        .post("/v1/revocations", json!({"jti": "twice", "exp": first + 1}))
        .await;
    assert_eq!(body["duplicates"], 1, "same bucket: {body}");
    let (_, body) = http
        .post("/v1/revocations", json!({"jti": "twice", "exp": later}))
        .await;
    assert_eq!(body["revoked"], 1, "another bucket: {body}");
    let mut replica = Filter::new(Default::default())
        .unwrap()
        .with_epoch(publisher.epoch());
    for d in stream_deltas(&server.url(), publisher.namespace(), publisher.public_key()).await {
        replica.apply(&d).unwrap();
    }
    assert!(replica.contains("twice", Some(first)));
    assert!(replica.contains("twice", Some(later)));
    let (_, body) = http.get_admin("/v1/revocations/twice").await;
    assert_eq!(body["exp"], later);
    publisher.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_user_and_password() {
    let server = NatsServer::builder()
        .config("authorization {\n  user: revocast\n  password: hunter2\n}")
        .start();
    let mut cfg = config(&server);
    cfg.nats.user = Some("revocast".into());
    cfg.nats.password = Some("hunter2".into());
    let publisher = start(cfg.clone()).await;
    assert_eq!(Http::new(publisher.url()).revoke("authed").await, 1);
    publisher.shutdown().await.unwrap();

    // Wrong password: the publisher keeps trying and never reports ready.
    cfg.nats.password = Some("wrong".into());
    let refused = revocast_publisher::Publisher::start(cfg).await.unwrap();
    let err = refused
        .wait_ready(Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(
        matches!(err, revocast_publisher::Error::Timeout { .. }),
        "{err}"
    );
    within("shutdown", refused.shutdown()).await.unwrap();
}

/// The auth team often knows only a `jti` (from a log line): a revocation without
/// `exp` goes into every bucket a live token's `exp` can fall in, and says how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_without_exp_goes_into_every_live_bucket() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let http = Http::new(publisher.url());
    let params = revocast_core::FilterParams::default();
    let t = now();
    let (status, body) = http
        .post("/v1/revocations", json!({"jti": "from-a-log-line"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let last = params.bucket_of(now() + params.max_token_lifetime + params.leeway);
    let first = params.first_live_bucket(t);
    let buckets = body["buckets"].as_u64().unwrap();
    // The hour may turn between the two readings of the clock.
    assert!(
        (last - first..=last - first + 2).contains(&buckets),
        "{buckets} buckets for {first}..={last}: {body}"
    );
    assert_eq!(body["revoked"], 1, "{body}");
    let mut replica = Filter::new(params.clone())
        .unwrap()
        .with_epoch(publisher.epoch());
    for d in stream_deltas(&server.url(), publisher.namespace(), publisher.public_key()).await {
        replica.apply(&d).unwrap();
    }
    for exp in [t, t + 60, t + 3_600, t + params.max_token_lifetime] {
        assert!(replica.contains("from-a-log-line", Some(exp)), "exp {exp}");
    }
    // Again: nothing new.
    let (status, body) = http
        .post("/v1/revocations", json!({"jti": "from-a-log-line"}))
        .await;
    assert_eq!((status, body["noop"].clone()), (200, json!(true)), "{body}");
    let (status, body) = http.get("/v1/revocations/from-a-log-line").await;
    assert_eq!((status, body["revoked"].clone()), (200, json!(true)));
    publisher.shutdown().await.unwrap();
}

/// A replica that cannot vouch for a token (stale, bootstrapping) sends it to the
/// authority, which must apply the cutoffs too, not only the `jti` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_applies_subject_and_global_cutoffs() {
    let server = NatsServer::start();
    let publisher = start(config(&server)).await;
    let http = Http::new(publisher.url());
    let t = now();
    let (status, body) = http
        .post("/v1/cutoffs", json!({"sub": "mallory", "not_before": t}))
        .await;
    assert_eq!(status, 200, "{body}");
    let ask = |query: String| {
        let http = http.clone();
        async move {
            http.get(&format!("/v1/revocations/any-token?{query}"))
                .await
        }
    };
    let (status, body) = ask(format!("sub=mallory&iat={}", t - 10)).await;
    assert_eq!(
        (status, body["revoked"].clone()),
        (200, json!(true)),
        "{body}"
    );
    // Issued after the cutoff, or another subject: not revoked.
    let (status, _) = ask(format!("sub=mallory&iat={}", t + 10)).await;
    assert_eq!(status, 404);
    let (status, _) = ask(format!("sub=alice&iat={}", t - 10)).await;
    assert_eq!(status, 404);

    // Over NATS, the same.
    let client = async_nats::connect(server.url()).await.unwrap();
    let ns = publisher.namespace().clone();
    let verifier = Verifier::new(publisher.public_key(), ns.clone());
    let ask_nats = |sub: &str, iat: u64| {
        let request = ConfirmRequest {
            jti: "any-token".into(),
            exp: Some(t + 600),
            nonce: 7,
            sub: Some(sub.into()),
            iat: Some(iat),
            sid: None,
        };
        let payload = encode_request(&ns, &request);
        let client = client.clone();
        let subject = ns.confirm_subject();
        let verifier = verifier.clone();
        async move {
            let reply = client.request(subject, payload.into()).await.unwrap();
            verifier.decode_confirm_response(&reply.payload).unwrap()
        }
    };
    assert!(ask_nats("mallory", t - 10).await.revoked);
    assert!(!ask_nats("mallory", t + 10).await.revoked);

    // A global cutoff: every token issued before it.
    let (status, body) = http.post("/v1/cutoffs", json!({"not_before": t})).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = ask(format!("sub=alice&iat={}", t - 10)).await;
    assert_eq!(status, 200);
    assert!(ask_nats("alice", t - 10).await.revoked);
    publisher.shutdown().await.unwrap();
}

/// A snapshot over the limit is not written (a replica could not read it); the
/// previous one stays, commits go on, and a restart rebuilds from it and the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_over_the_limit_is_refused_and_nothing_else_stops() {
    let server = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&server);
    cfg.signing_key = KeySource::File(dir.path().join("signing.key"));
    cfg.snapshot_every_deltas = 1;
    cfg.max_snapshot_bytes = 2048;
    let publisher = start(cfg.clone()).await;
    let http = Http::new(publisher.url());
    let exp = now() + 3600;
    let items: Vec<_> = (0..1000)
        .map(|i| json!({"jti": format!("many-{i}"), "exp": exp}))
        .collect();
    let (status, body) = http
        .post("/v1/revocations", json!({"revocations": items}))
        .await;
    assert_eq!(status, 200, "{body}");
    eventually("a refused snapshot", || async {
        (publisher.stats().snapshots.refused >= 1).then_some(())
    })
    .await;
    let stats = publisher.stats();
    assert_eq!(stats.snapshots.limit_bytes, 2048);
    assert_eq!(stats.snapshots.last_version, 0, "{stats:?}");
    assert!(stats.snapshots.last_bytes <= 2048);
    assert_eq!(http.revoke("after").await, 2);
    publisher.shutdown().await.unwrap();

    let publisher = start(cfg).await;
    // Two commits, and the take-over delta.
    assert_eq!(publisher.version(), 3);
    let (status, _) = http_of(&publisher).get("/v1/revocations/many-999").await;
    assert_eq!(status, 200);
    publisher.shutdown().await.unwrap();
}

fn http_of(publisher: &revocast_publisher::Publisher) -> Http {
    Http::new(publisher.url())
}

/// Credentials written into the NATS URL never show in the unauthenticated stats.
/// (The server here requires none, so the connection works either way.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_nats_url_are_redacted_from_stats() {
    let server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.nats.url = format!("nats://revocast:hunter2@127.0.0.1:{}", server.port());
    let publisher = start(cfg).await;
    let (status, stats) = Http::new(publisher.url()).get("/v1/stats").await;
    assert_eq!(status, 200);
    assert_eq!(
        stats["nats"]["url"],
        format!("nats://***@127.0.0.1:{}", server.port()),
        "{stats}"
    );
    assert!(!stats.to_string().contains("hunter2"), "{stats}");
    publisher.shutdown().await.unwrap();
}

/// The clock in the configuration is the one the publisher signs with: a publisher
/// an hour ahead of the machine stamps its deltas and heartbeats an hour ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_clock_is_the_publishers_time() {
    #[derive(Debug)]
    struct HourAhead;
    impl revocast_publisher::Clock for HourAhead {
        fn now_ms(&self) -> u64 {
            revocast_publisher::Clock::now_ms(&revocast_publisher::SystemClock) + 3_600_000
        }
    }
    let server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.clock = std::sync::Arc::new(HourAhead);
    let publisher = start(cfg).await;
    let ns = publisher.namespace().clone();
    let mut deltas =
        crate::common::delta_subscription(&server.url(), &ns, publisher.public_key()).await;
    let before = now();
    let body = serde_json::to_value(Revocation::new("ahead", before + 7200)).unwrap();
    let (status, body) = Http::new(publisher.url()).post(REVOCATIONS, body).await;
    assert_eq!(status, 200, "{body}");
    let delta = within("the live delta", deltas.next()).await.unwrap();
    assert!(
        delta.committed_at_ms / 1000 >= before + 3_600,
        "committed at {} by a clock an hour ahead of {before}",
        delta.committed_at_ms / 1000
    );
    let (_, body) = Http::new(publisher.url())
        .get_admin(&revocation_path("ahead"))
        .await;
    let answer: RevocationStatus = serde_json::from_value(body).unwrap();
    assert!(answer.revoked_at.unwrap() >= before + 3_600, "{answer:?}");
    publisher.shutdown().await.unwrap();
}

/// A publisher clock that jumps days ahead must not sign an `Expire` that drops every
/// bucket on every replica: expiry follows the time the publisher has seen pass, and
/// the jump is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_jumping_ahead_does_not_expire_live_revocations() {
    #[derive(Debug, Default)]
    struct Jumpy(std::sync::atomic::AtomicU64);
    impl revocast_publisher::Clock for Jumpy {
        fn now_ms(&self) -> u64 {
            revocast_publisher::Clock::now_ms(&revocast_publisher::SystemClock)
                + self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }
    let clock = std::sync::Arc::new(Jumpy::default());
    let server = NatsServer::start();
    let mut cfg = config(&server);
    cfg.clock = clock.clone();
    cfg.expiry_interval = Duration::from_millis(100);
    let publisher = start(cfg).await;
    let http = Http::new(publisher.url());
    assert_eq!(http.revoke("still-live").await, 1);

    clock
        .0
        .store(3 * 86_400_000, std::sync::atomic::Ordering::SeqCst);
    // Either the jump is noticed, or (the old behaviour) the revocation is dropped.
    let (status, body) = eventually("the jump to be noticed", || async {
        let answer = http.get("/v1/revocations/still-live").await;
        (publisher.stats().expiries_clamped >= 1 || answer.0 != 200).then_some(answer)
    })
    .await;
    assert_eq!(
        status, 200,
        "dropped by an expiry at the jumped time: {body}"
    );
    let deltas = stream_deltas(&server.url(), publisher.namespace(), publisher.public_key()).await;
    for d in &deltas {
        for c in &d.changes {
            if let Change::Expire { now } = c {
                assert!(*now < crate::common::now() + 3_600, "expired at {now}");
            }
        }
    }
    publisher.shutdown().await.unwrap();
}
