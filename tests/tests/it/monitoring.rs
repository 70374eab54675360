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

use revocast_testkit::{promtool, try_promtool_bin};

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
}

#[test]
fn every_alert_has_a_summary_and_a_runbook_section() {
    let rules = read(&rules_dir().join("alerts.yml"));
    let alerts = yaml_values(&rules, "alert");
    let summaries = yaml_values(&rules, "summary");
    let runbooks = yaml_values(&rules, "runbook");
    assert!(alerts.len() >= 10, "{alerts:?}");
    assert_eq!(summaries.len(), alerts.len(), "one summary per alert");
    assert_eq!(runbooks.len(), alerts.len(), "one runbook per alert");
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
