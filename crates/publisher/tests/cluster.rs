//! A publisher on a 3-node NATS cluster with R3 stream and bucket: it starts once the
//! JetStream meta leader is elected and keeps committing when one node dies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Http, eventually, now, try_stream_deltas};
use revocast_publisher::{Config, Publisher};
use revocast_testkit::NatsCluster;
use serde_json::json;

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
