//! A publisher on a 3-node NATS cluster with R3 stream and bucket: it starts once the
//! JetStream meta leader is elected and keeps committing when one node dies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use revocast_publisher::{Config, Publisher};
use revocast_testkit::NatsCluster;
use serde_json::json;

use crate::common::{Http, eventually, now, try_stream_deltas};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r3_on_a_cluster_survives_a_node() {
    let mut cluster = NatsCluster::start("revocast-pub", 3);
    let urls = cluster.urls();
    let mut config = Config::for_tests(urls.clone()).unwrap();
    config.admin_token = Some("tok".into());
    config.stream_replicas = 3;
    let publisher = Publisher::start(config).await.unwrap();
    // Start-up retries until the cluster has a JetStream meta leader.
    if let Err(e) = publisher
        .wait_ready(std::time::Duration::from_secs(60))
        .await
    {
        panic!("not ready ({e}): {:?}", publisher.shutdown().await);
    }
    let http = Http::new(publisher.url());
    assert_eq!(http.revoke("r3-a").await, 1);
    let ns = publisher.namespace().clone();
    let js = async_nats::jetstream::new(
        async_nats::connect(urls.split(',').collect::<Vec<_>>())
            .await
            .unwrap(),
    );
    let info = js
        .get_stream(ns.stream_name())
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap();
    assert_eq!(info.config.num_replicas, 3);

    // One node dies; R3 keeps a quorum and the publisher carries on.
    tokio::task::block_in_place(|| cluster.nodes[2].stop());
    let version = eventually("a commit with one node down", || async {
        let (status, body) = http
            .post(
                "/v1/revocations",
                json!({"jti": "r3-b", "exp": now() + 600}),
            )
            .await;
        (status == 200).then(|| body["version"].as_u64().unwrap())
    })
    .await;
    assert_eq!(version, 2);
    let first = cluster.nodes[0].url();
    let key = publisher.public_key();
    eventually("both deltas readable from a live node", || async {
        try_stream_deltas(&first, &ns, key)
            .await
            .ok()
            .filter(|d| d.len() == 2)
    })
    .await;
    publisher.shutdown().await.unwrap();
}

/// Shutdown stays bounded when the snapshot bucket has no quorum. The final snapshot
/// is a convenience (every committed delta is in the stream, and the next start
/// replays it), so a bucket that cannot take it must not hold the publisher: it stops
/// within its bound and reports success. It used to wait for the snapshot's JetStream
/// acks past the bound and fail with a timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stays_bounded_when_the_snapshot_bucket_has_no_quorum() {
    let mut cluster = NatsCluster::start("revocast-quorum", 3);
    let mut config = Config::for_tests(cluster.urls()).unwrap();
    config.admin_token = Some("tok".into());
    config.stream_replicas = 3;
    // Shorter than one JetStream ack timeout (5 s): a shutdown that waits for the
    // snapshot's acks cannot finish within it.
    config.shutdown_timeout = std::time::Duration::from_secs(2);
    let publisher = Publisher::start(config).await.unwrap();
    if let Err(e) = publisher
        .wait_ready(std::time::Duration::from_secs(60))
        .await
    {
        panic!("not ready ({e}): {:?}", publisher.shutdown().await);
    }
    // Version 1 is newer than the last snapshot (0): shutdown has one to write.
    assert_eq!(Http::new(publisher.url()).revoke("q-a").await, 1);
    // Two of three nodes down: neither the stream nor the bucket has a quorum.
    tokio::task::block_in_place(|| {
        cluster.nodes[1].stop();
        cluster.nodes[2].stop();
    });
    let result = publisher.shutdown().await;
    assert!(result.is_ok(), "shutdown: {result:?}");
}
