//! The Prometheus metrics of replicas, scraped through a real registry from replicas
//! kept by real nats-servers.
#![cfg(feature = "metrics")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::future::ready;
use std::time::Duration;

use crate::common::{FakePublisher, eventually, jtis, now_secs};
use prometheus_client::registry::Registry;
use revocast_subscriber::{Policy, TokenClaims};
use revocast_testkit::NatsServer;

const LONG: Duration = Duration::from_secs(60);

/// Every sample of the exposition, keyed by `name{labels}`.
fn scrape(registry: &Registry) -> BTreeMap<String, f64> {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_owned(), value.parse().unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_stats_of_each_namespace() {
    let server = NatsServer::start();
    let mut alpha = FakePublisher::start(&server.url(), "alpha").await;
    let beta = FakePublisher::start(&server.url(), "beta").await;
    let exp = now_secs() + 3600;
    alpha.revoke(&jtis("gone", 3), exp).await;
    let a = alpha.replica(&server.url(), Policy::FailClosed, LONG).await;
    let b = beta.replica(&server.url(), Policy::FailClosed, LONG).await;

    let mut registry = Registry::default();
    revocast_subscriber::metrics::register_all(&mut registry, &[a.clone(), b.clone()]);

    for jti in ["gone-000001", "fresh-1", "fresh-2"] {
        a.check(&TokenClaims::new(jti, exp)).await.unwrap();
    }
    beta.send_raw(beta.namespace.heartbeat_subject(), b"\x00\x01".to_vec())
        .await;
    eventually("the bad heartbeat is counted", || {
        ready(!b.stats().rejected_messages.is_empty())
    })
    .await;

    let samples = scrape(&registry);
    let get = |key: &str| {
        *samples
            .get(key)
            .unwrap_or_else(|| panic!("no sample {key} in {samples:#?}"))
    };
    assert_eq!(get(r#"revocast_replica_ready{namespace="alpha"}"#), 1.0);
    assert_eq!(get(r#"revocast_replica_stale{namespace="beta"}"#), 0.0);
    assert_eq!(
        get(r#"revocast_replica_version{namespace="alpha"}"#),
        a.version() as f64
    );
    assert!(get(r#"revocast_replica_version{namespace="alpha"}"#) >= 1.0);
    assert_eq!(
        get(r#"revocast_replica_live_entries{namespace="alpha"}"#),
        3.0
    );
    assert!(get(r#"revocast_replica_filter_bytes{namespace="alpha"}"#) > 0.0);
    assert!(get(r#"revocast_replica_staleness_seconds{namespace="beta"}"#) >= 0.0);
    assert_eq!(
        get(r#"revocast_replica_checks_total{namespace="alpha"}"#),
        3.0
    );
    assert_eq!(
        get(r#"revocast_replica_checks_total{namespace="beta"}"#),
        0.0
    );
    assert_eq!(
        get(r#"revocast_replica_filter_hits_total{namespace="alpha"}"#),
        1.0
    );
    assert_eq!(
        get(r#"revocast_replica_confirms_total{namespace="alpha"}"#),
        1.0
    );
    for name in [
        "confirm_errors",
        "stale_checks",
        "digest_mismatches",
        "resyncs",
        "gaps_repaired",
    ] {
        get(&format!(
            r#"revocast_replica_{name}_total{{namespace="beta"}}"#
        ));
    }
    let rejected: f64 = samples
        .iter()
        .filter(|(k, _)| {
            k.starts_with(r#"revocast_replica_rejected_messages_total{namespace="beta",reason="#)
        })
        .map(|(_, v)| v)
        .sum();
    assert_eq!(rejected, b.stats().rejected_total() as f64);
    assert!(rejected >= 1.0);

    // Values are read at scrape time: a later check shows in the next scrape.
    b.check(&TokenClaims::new("late", exp)).await.unwrap();
    assert_eq!(
        scrape(&registry)[r#"revocast_replica_checks_total{namespace="beta"}"#],
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_registers_each_family_once() {
    let server = NatsServer::start();
    let publisher = FakePublisher::start(&server.url(), "solo").await;
    let sub = publisher
        .replica(&server.url(), Policy::FailOpen, LONG)
        .await;
    let mut registry = Registry::default();
    revocast_subscriber::metrics::register(&mut registry, &sub);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE")).collect();
    assert_eq!(types.len(), 18, "{text}");
    assert!(
        text.contains("# TYPE revocast_replica_resyncs counter"),
        "{text}"
    );
    assert!(
        text.contains(r#"revocast_replica_resyncs_total{namespace="solo"} 0"#),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}
