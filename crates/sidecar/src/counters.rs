//! The sidecar's own counters: answers of `/check` and `/introspect`. `/stats` and
//! `/metrics` read the same atomics, and `/metrics` adds the verifier's key status.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use revocast_verifier::Verifier;
use serde::Serialize;

/// Counters of answers, by result.
#[derive(Debug, Default)]
pub struct Counters {
    /// `/check` answered 200.
    pub allowed: AtomicU64,
    /// `/check` answered 401.
    pub unauthorized: AtomicU64,
    /// `/check` answered 503.
    pub unavailable: AtomicU64,
    /// `/introspect`: active.
    pub active: AtomicU64,
    /// `/introspect`: inactive.
    pub inactive: AtomicU64,
    /// `/introspect`: 503.
    pub introspect_unavailable: AtomicU64,
    /// `/introspect`: client authentication failed, or a bad request.
    pub introspect_refused: AtomicU64,
}

/// A copy of [`Counters`], as `/stats` serves it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CounterValues {
    /// `/check` 200s.
    pub allowed: u64,
    /// `/check` 401s.
    pub unauthorized: u64,
    /// `/check` 503s.
    pub unavailable: u64,
    /// `/introspect` active answers.
    pub introspect_active: u64,
    /// `/introspect` inactive answers.
    pub introspect_inactive: u64,
    /// `/introspect` 503s.
    pub introspect_unavailable: u64,
    /// `/introspect` refused (401 client, 400 request).
    pub introspect_refused: u64,
}

impl Counters {
    /// Adds one.
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    /// The current values.
    pub fn values(&self) -> CounterValues {
        CounterValues {
            allowed: self.allowed.load(Relaxed),
            unauthorized: self.unauthorized.load(Relaxed),
            unavailable: self.unavailable.load(Relaxed),
            introspect_active: self.active.load(Relaxed),
            introspect_inactive: self.inactive.load(Relaxed),
            introspect_unavailable: self.introspect_unavailable.load(Relaxed),
            introspect_refused: self.introspect_refused.load(Relaxed),
        }
    }
}

/// Reads [`Counters`] and the verifier's status at scrape time.
#[derive(Debug)]
pub struct SidecarCollector {
    /// The counters.
    pub counters: Arc<Counters>,
    /// The verifier.
    pub verifier: Verifier,
}

impl Collector for SidecarCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let v = self.counters.values();
        let mut checks = encoder.encode_descriptor(
            "revocast_sidecar_checks",
            "Answers of /check, by result (allowed 200, unauthorized 401, unavailable 503).",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("allowed", v.allowed),
            ("unauthorized", v.unauthorized),
            ("unavailable", v.unavailable),
        ] {
            ConstCounter::new(n).encode(checks.encode_family(&[("result", result)])?)?;
        }
        let mut introspections = encoder.encode_descriptor(
            "revocast_sidecar_introspections",
            "Answers of /introspect, by result.",
            None,
            MetricType::Counter,
        )?;
        for (result, n) in [
            ("active", v.introspect_active),
            ("inactive", v.introspect_inactive),
            ("unavailable", v.introspect_unavailable),
            ("refused", v.introspect_refused),
        ] {
            ConstCounter::new(n).encode(introspections.encode_family(&[("result", result)])?)?;
        }
        let status = self.verifier.status();
        let mut ready = encoder.encode_descriptor(
            "revocast_verifier_ready",
            "1 once the issuer's keys are loaded.",
            None,
            MetricType::Gauge,
        )?;
        for s in &status {
            ConstGauge::new(i64::from(s.ready))
                .encode(ready.encode_family(&[("issuer", s.issuer.as_str())])?)?;
        }
        let mut failing = encoder.encode_descriptor(
            "revocast_verifier_fetch_failing",
            "1 while the last key fetch of the issuer failed (the last good keys stay in use).",
            None,
            MetricType::Gauge,
        )?;
        for s in &status {
            ConstGauge::new(i64::from(s.last_error.is_some()))
                .encode(failing.encode_family(&[("issuer", s.issuer.as_str())])?)?;
        }
        let mut keys = encoder.encode_descriptor(
            "revocast_verifier_keys",
            "Keys in the issuer's current key set.",
            None,
            MetricType::Gauge,
        )?;
        for s in &status {
            ConstGauge::new(s.keys as i64)
                .encode(keys.encode_family(&[("issuer", s.issuer.as_str())])?)?;
        }
        Ok(())
    }
}
