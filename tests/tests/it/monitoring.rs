//! What ships for Prometheus and Grafana, checked against the real things: the alert
//! rules pass `promtool check rules` and their unit tests, every alert has its runbook
//! section, every metric the rules and the dashboard name is served, and a real
//! Prometheus scraping a publisher and a service fires the staleness alert when the
//! service's replica is cut off from NATS, then resolves it.
//!
//! The tests that need `prometheus` or `promtool` skip with the reason printed where
//! they are missing (Debian package `prometheus`; `.ci/run` installs it).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use revocast_testkit::{
    Prometheus, Proxy, Stack, eventually_within, promtool, try_prometheus_bin, try_promtool_bin,
};

/// How long a step waits (Prometheus scrapes and evaluates every second).
const WAIT: Duration = Duration::from_secs(20);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn rules_dir() -> PathBuf {
    repo_root().join("deploy/prometheus")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The value after `key:` on each line that has it (YAML scalars, quotes removed).
fn yaml_values(text: &str, key: &str) -> Vec<String> {
    let prefix = format!("{key}:");
    text.lines()
        .filter_map(|l| {
            let l = l.trim().trim_start_matches("- ");
            l.strip_prefix(&prefix)
        })
        .map(|v| v.trim().trim_matches('"').to_owned())
        .collect()
}

/// GitHub's anchor of a Markdown heading: lower case, spaces to dashes, punctuation
/// dropped.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    if let Err(missing) = try_promtool_bin() {
        eprintln!("SKIPPED the_alert_rules_pass_promtool_and_their_unit_tests: {missing}");
        return;
    }
    let dir = rules_dir();
    let checked = promtool(&dir, &["check", "rules", "alerts.yml"])
        .unwrap_or_else(|out| panic!("promtool check rules alerts.yml:\n{out}"));
    let alerts = yaml_values(&read(&dir.join("alerts.yml")), "alert").len();
    assert!(
        checked.contains(&format!("SUCCESS: {alerts} rules found")),
        "{checked}"
    );
    promtool(&dir, &["test", "rules", "alerts_test.yml"])
        .unwrap_or_else(|out| panic!("promtool test rules alerts_test.yml:\n{out}"));
    // The example configuration (docker-compose) loads the same rules.
    promtool(&dir, &["check", "config", "prometheus.yml"])
        .unwrap_or_else(|out| panic!("promtool check config prometheus.yml:\n{out}"));
}

#[test]
fn every_alert_has_a_summary_a_runbook_section_and_a_unit_test() {
    let rules = read(&rules_dir().join("alerts.yml"));
    let alerts = yaml_values(&rules, "alert");
    let summaries = yaml_values(&rules, "summary");
    let runbooks = yaml_values(&rules, "runbook");
    assert!(alerts.len() >= 10, "{alerts:?}");
    assert_eq!(summaries.len(), alerts.len(), "one summary per alert");
    assert_eq!(runbooks.len(), alerts.len(), "one runbook per alert");
    // Every alert has a unit test in alerts_test.yml (run by promtool above).
    let tested: BTreeSet<String> =
        yaml_values(&read(&rules_dir().join("alerts_test.yml")), "alertname")
            .into_iter()
            .collect();
    for alert in &alerts {
        assert!(
            tested.contains(alert),
            "{alert} has no test in alerts_test.yml"
        );
    }
    let operations = read(&repo_root().join("docs/OPERATIONS.md"));
    let sections: BTreeSet<String> = operations
        .lines()
        .filter_map(|l| l.strip_prefix("### "))
        .map(anchor)
        .collect();
    for (alert, runbook) in alerts.iter().zip(&runbooks) {
        let section = runbook
            .strip_prefix("docs/OPERATIONS.md#")
            .unwrap_or_else(|| panic!("{alert}: runbook {runbook:?} is not in OPERATIONS.md"));
        assert_eq!(section, anchor(alert), "{alert}: runbook {runbook:?}");
        assert!(
            sections.contains(section),
            "{alert}: docs/OPERATIONS.md has no section `### {alert}`"
        );
    }
}

/// The names of every metric in a text exposition: sample names, and the names a
/// family's samples take (`_total` of a counter; `_bucket`, `_sum`, `_count` of a
/// histogram) even when it has no sample yet.
fn served_names(exposition: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in exposition.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            let (Some(name), Some(kind)) = (parts.next(), parts.next()) else {
                continue;
            };
            names.insert(name.to_owned());
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[],
            };
            names.extend(suffixes.iter().map(|s| format!("{name}{s}")));
        } else if !line.starts_with('#') && !line.is_empty() {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            names.insert(line[..end].to_owned());
        }
    }
    names
}

/// Every `revocast_*` metric name a text names (comments left out).
fn named_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut rest = line;
        while let Some(at) = rest.find("revocast_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            names.insert(tail[..end].to_owned());
            rest = &tail[end..];
        }
    }
    names
}

/// Every PromQL `expr` of the dashboard, panels in rows included.
fn dashboard_exprs() -> Vec<String> {
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr", serde_json::Value::String(expr)) => out.push(expr.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let path = repo_root().join("deploy/grafana/revocast.json");
    let dashboard: serde_json::Value = serde_json::from_str(&read(&path))
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
    let mut exprs = Vec::new();
    walk(&dashboard, &mut exprs);
    exprs
}

/// A service that embeds a replica and serves its metrics on `/metrics`, as a
/// service owner wires `revocast_subscriber::metrics::register`. Returns `host:port`.
async fn service_with_metrics(subscriber: revocast_subscriber::Subscriber) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    revocast_subscriber::metrics::register(&mut registry, &subscriber);
    let registry = std::sync::Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
                text
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

async fn get_text(url: &str) -> String {
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rules_and_the_dashboard_name_only_served_metrics() {
    let stack = Stack::start().await;
    // One revocation, so that the filter has a bucket (per-bucket families have no
    // sample without one).
    stack
        .revoke("monitoring-1", revocast_testkit::now_secs() + 3600)
        .await;
    let service = service_with_metrics(stack.subscriber().await).await;
    let mut served = served_names(&get_text(&format!("{}/metrics", stack.publisher.url())).await);
    served.extend(served_names(
        &get_text(&format!("http://{service}/metrics")).await,
    ));
    // The fixed replica names, every one of them served.
    for name in [
        "revocast_replica_ready",
        "revocast_replica_stale",
        "revocast_replica_staleness_seconds",
        "revocast_replica_version",
        "revocast_replica_publisher_version",
        "revocast_replica_live_entries",
        "revocast_replica_filter_bytes",
        "revocast_replica_checks_total",
        "revocast_replica_filter_hits_total",
        "revocast_replica_confirms_total",
        "revocast_replica_confirm_errors_total",
        "revocast_replica_stale_checks_total",
        "revocast_replica_digest_mismatches_total",
        "revocast_replica_resyncs_total",
        "revocast_replica_gaps_repaired_total",
        "revocast_replica_rejected_messages_total",
    ] {
        assert!(served.contains(name), "{name} not served: {served:?}");
    }
    let rules = named_metrics(&read(&rules_dir().join("alerts.yml")));
    let dashboard = named_metrics(&dashboard_exprs().join("\n"));
    assert!(rules.len() >= 12, "{rules:?}");
    assert!(dashboard.len() >= 25, "{dashboard:?}");
    for (what, names) in [("alerts.yml", &rules), ("revocast.json", &dashboard)] {
        let unknown: Vec<&String> = names.difference(&served).collect();
        assert!(
            unknown.is_empty(),
            "{what} names metrics nobody serves: {unknown:?}"
        );
    }
}

/// alerts.yml with every `for:` at 0s, so that the test waits for the replica and
/// the scrapes, not for the production hold times.
fn rules_without_hold_times(dir: &Path) -> PathBuf {
    let text: String = read(&rules_dir().join("alerts.yml"))
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for:") {
            Some(_) => format!("{}for: 0s\n", &line[..line.len() - line.trim_start().len()]),
            None => format!("{line}\n"),
        })
        .collect();
    let path = dir.join("alerts.yml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The alerts Prometheus holds as pending or firing: (name, state, labels).
async fn alerts(prometheus: &Prometheus) -> Vec<(String, String, serde_json::Value)> {
    let url = format!("{}/api/v1/alerts", prometheus.url());
    let body: serde_json::Value = serde_json::from_str(&get_text(&url).await).unwrap();
    assert_eq!(body["status"], "success", "{body}");
    body["data"]["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["labels"]["alertname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                a["state"].as_str().unwrap_or_default().to_owned(),
                a["labels"].clone(),
            )
        })
        .collect()
}

/// The result of an instant query, or the error Prometheus gives.
async fn query(prometheus: &Prometheus, expr: &str) -> Result<Vec<serde_json::Value>, String> {
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/query", prometheus.url()))
        .query(&[("query", expr)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(body.to_string());
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Whether alert `name` is firing (for `namespace`, when given).
fn firing(
    alerts: &[(String, String, serde_json::Value)],
    name: &str,
    namespace: Option<&str>,
) -> bool {
    alerts.iter().any(|(alert, state, labels)| {
        alert == name && state == "firing" && namespace.is_none_or(|ns| labels["namespace"] == ns)
    })
}

/// Whether alert `name` is neither pending nor firing.
fn resolved(alerts: &[(String, String, serde_json::Value)], name: &str) -> bool {
    !alerts.iter().any(|(alert, ..)| alert == name)
}

/// A Prometheus with the rules (hold times at 0s) scraping the publisher and the
/// service, once it has scraped both and evaluated the rules.
async fn watch(
    publisher: &revocast_publisher::Publisher,
    service: String,
    dir: &Path,
) -> Prometheus {
    let prometheus = Prometheus::builder()
        .rule_file(rules_without_hold_times(dir))
        .scrape(
            "revocast-publisher",
            &[publisher.url().trim_start_matches("http://").to_owned()],
        )
        .scrape("service", &[service])
        .start();
    eventually_within("Prometheus scrapes both targets", WAIT, || async {
        let up = query(&prometheus, "up == 1").await.unwrap_or_default();
        let fresh = query(&prometheus, "revocast_replica_stale == 0")
            .await
            .unwrap_or_default();
        let connected = query(&prometheus, "revocast_nats_connected == 1")
            .await
            .unwrap_or_default();
        up.len() == 2 && fresh.len() == 1 && connected.len() == 1
    })
    .await;
    // Rules are evaluated every second: wait for an evaluation after those scrapes.
    eventually_within("the rules are evaluated", WAIT, || async {
        let rules = get_text(&format!("{}/api/v1/rules", prometheus.url())).await;
        rules.contains("\"RevocastReplicaStale\"") && rules.contains("\"health\":\"ok\"")
    })
    .await;
    prometheus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_fires_the_staleness_alert_and_resolves_it() {
    if let Err(missing) = try_prometheus_bin() {
        eprintln!("SKIPPED prometheus_fires_the_staleness_alert_and_resolves_it: {missing}");
        return;
    }
    let stack = Stack::start().await;
    let proxy = Proxy::start(stack.nats.port());
    // max_staleness 3 s (the stack's subscriber options).
    let subscriber = stack.subscriber_at(&proxy.url()).await;
    let service = service_with_metrics(subscriber.clone()).await;
    let namespace = stack.publisher.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = watch(&stack.publisher, service, dir.path()).await;
    let stale = |alerts: &[(String, String, serde_json::Value)]| {
        firing(alerts, "RevocastReplicaStale", Some(&namespace))
    };
    assert!(!stale(&alerts(&prometheus).await));

    // The rules' join from the publisher's metrics to its namespace works on what
    // Prometheus really scraped.
    let joined = query(
        &prometheus,
        "revocast_filter_target_fpr * on (instance, job) group_left (namespace) revocast_publisher_info",
    )
    .await
    .unwrap();
    assert_eq!(joined.len(), 1, "{joined:?}");
    assert_eq!(
        joined[0]["metric"]["namespace"],
        namespace.as_str(),
        "{joined:?}"
    );

    // Every expression of the dashboard is valid PromQL that Prometheus evaluates.
    for expr in dashboard_exprs() {
        let expr = expr
            .replace("$__rate_interval", "1m")
            .replace("$namespace", ".*");
        if let Err(e) = query(&prometheus, &expr).await {
            panic!("dashboard expression {expr:?} fails: {e}");
        }
    }

    // Cut the replica off NATS: no heartbeat, stale after 3 s, the alert fires.
    let cut = std::time::Instant::now();
    proxy.cut();
    eventually_within("the staleness alert fires", WAIT * 3, || async {
        stale(&alerts(&prometheus).await)
    })
    .await;
    let fired_after = cut.elapsed();
    assert!(subscriber.stats().stale);

    // NATS back: the replica catches up, the alert resolves.
    let restored = std::time::Instant::now();
    proxy.restore();
    eventually_within("the staleness alert resolves", WAIT * 3, || async {
        resolved(&alerts(&prometheus).await, "RevocastReplicaStale")
    })
    .await;
    assert!(!subscriber.stats().stale);
    eprintln!(
        "staleness alert: firing {fired_after:?} after the cut (max_staleness 3 s), \
         resolved {:?} after NATS came back",
        restored.elapsed()
    );
    if std::env::var_os("REVOCAST_SHOW_PROMETHEUS_LOG").is_some() {
        eprintln!("{}", prometheus.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_pages_when_the_publisher_loses_nats() {
    if let Err(missing) = try_prometheus_bin() {
        eprintln!("SKIPPED prometheus_pages_when_the_publisher_loses_nats: {missing}");
        return;
    }
    // The publisher reaches NATS through a proxy; the service directly.
    let nats = revocast_testkit::NatsServer::start();
    let proxy = Proxy::start(nats.port());
    let config = revocast_publisher::Config::for_tests(proxy.url()).unwrap();
    let stack = Stack::start_with(nats, config).await;
    let subscriber = stack.subscriber().await;
    let service = service_with_metrics(subscriber.clone()).await;
    let namespace = stack.publisher.namespace().to_string();
    let dir = tempfile::tempdir().unwrap();
    let prometheus = watch(&stack.publisher, service, dir.path()).await;
    let now = alerts(&prometheus).await;
    assert!(
        resolved(&now, "RevocastPublisherNatsDisconnected"),
        "{now:?}"
    );

    // The publisher loses NATS: it pages for itself, and its replicas go stale for
    // want of heartbeats.
    proxy.cut();
    eventually_within("the publisher's NATS alert fires", WAIT * 3, || async {
        let now = alerts(&prometheus).await;
        firing(&now, "RevocastPublisherNatsDisconnected", None)
            && firing(&now, "RevocastReplicaStale", Some(&namespace))
    })
    .await;

    proxy.restore();
    eventually_within("both alerts resolve", WAIT * 3, || async {
        let now = alerts(&prometheus).await;
        resolved(&now, "RevocastPublisherNatsDisconnected")
            && resolved(&now, "RevocastReplicaStale")
    })
    .await;
    assert!(!subscriber.stats().stale);
}
