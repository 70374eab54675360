//! Every NATS name revocast uses, defined once. A namespace keeps several revocation
//! sets (tenants, environments) apart on one NATS deployment.

use crate::error::NamespaceError;

/// Object name of the latest snapshot inside a namespace's object store bucket.
pub const SNAPSHOT_OBJECT: &str = "snapshot";
/// Name of the authority's NATS micro service (`$SRV.PING.revocast-authority`).
pub const AUTHORITY_SERVICE: &str = "revocast-authority";
/// Name of the authority's confirm endpoint within the service.
pub const CONFIRM_ENDPOINT: &str = "confirm";

/// Splits a comma-separated list of NATS URLs (`nats://a:4222,nats://b:4222`), as
/// operators write them in one flag, into the list the client takes.
pub fn server_urls(urls: &str) -> Vec<&str> {
    urls.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .collect()
}

/// `urls` (one URL or a comma-separated list) with any credentials replaced by
/// `***`: `nats://user:pass@host:4222` becomes `nats://***@host:4222`. For stats and
/// logs, which must never show a password or a token.
///
/// ```
/// use revocast_core::subjects::redact_urls;
/// assert_eq!(
///     redact_urls("nats://u:p@a:4222, tls://token@b:4222,nats://c:4222"),
///     "nats://***@a:4222,tls://***@b:4222,nats://c:4222"
/// );
/// ```
pub fn redact_urls(urls: &str) -> String {
    server_urls(urls)
        .into_iter()
        .map(redact_url)
        .collect::<Vec<_>>()
        .join(",")
}

fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    // The authority ends at the first '/', '?' or '#'; its user info at the last '@'.
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = match authority.rfind('@') {
        Some(at) => format!("***@{}", &authority[at + 1..]),
        None => authority.to_owned(),
    };
    match scheme {
        Some(scheme) => format!("{scheme}://{host}{tail}"),
        None => format!("{host}{tail}"),
    }
}

/// A validated namespace: 1 to 64 characters from `a-z A-Z 0-9 - _`, so it fits in
/// subjects, stream names and object store bucket names alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    /// Validates a namespace.
    pub fn new(name: impl Into<String>) -> Result<Namespace, NamespaceError> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Namespace(name))
        } else {
            Err(NamespaceError(name))
        }
    }

    /// The namespace as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Subject of live deltas: `revocast.<ns>.delta` (core NATS). The publisher sends
    /// a delta here only after JetStream acknowledged it on [`Namespace::log_subject`],
    /// so a replica never applies a delta that the stream does not hold.
    pub fn delta_subject(&self) -> String {
        format!("revocast.{}.delta", self.0)
    }

    /// Subject the stream captures: `revocast.<ns>.log`. Only the publisher writes it
    /// (with expected-last-sequence); replicas read it by sequence to repair gaps.
    pub fn log_subject(&self) -> String {
        format!("revocast.{}.log", self.0)
    }

    /// Subject of heartbeats: `revocast.<ns>.heartbeat` (core NATS, not stored).
    pub fn heartbeat_subject(&self) -> String {
        format!("revocast.{}.heartbeat", self.0)
    }

    /// Subject of the authority's confirm endpoint: `revocast.<ns>.confirm`.
    pub fn confirm_subject(&self) -> String {
        format!("revocast.{}.confirm", self.0)
    }

    /// Wildcard for every revocast subject of this namespace.
    pub fn all_subjects(&self) -> String {
        format!("revocast.{}.>", self.0)
    }

    /// JetStream stream holding the deltas: `REVOCAST_<ns>`. Its sequence numbers are
    /// the filter versions.
    pub fn stream_name(&self) -> String {
        format!("REVOCAST_{}", self.0)
    }

    /// Object store bucket holding snapshots: `revocast_<ns>`.
    pub fn snapshot_bucket(&self) -> String {
        format!("revocast_{}", self.0)
    }
}

impl Default for Namespace {
    fn default() -> Self {
        Namespace("default".to_owned())
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Namespace {
    type Err = NamespaceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Namespace::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_redacted_from_urls() {
        for (url, shown) in [
            ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
            ("nats://user:pa%40ss@host:4222", "nats://***@host:4222"),
            ("nats://user:p@ss@host:4222", "nats://***@host:4222"),
            ("tls://s3cret-token@host", "tls://***@host"),
            ("user:pass@host:4222", "***@host:4222"),
            (
                "ws://u:p@host:80/path@x?q=a@b",
                "ws://***@host:80/path@x?q=a@b",
            ),
            ("nats://a:1, nats://u:p@b:2", "nats://a:1,nats://***@b:2"),
            ("", ""),
        ] {
            assert_eq!(redact_urls(url), shown, "{url}");
        }
    }

    #[test]
    fn names() {
        let ns = Namespace::new("prod-eu_1").unwrap();
        assert_eq!(ns.delta_subject(), "revocast.prod-eu_1.delta");
        assert_eq!(ns.log_subject(), "revocast.prod-eu_1.log");
        assert_eq!(ns.heartbeat_subject(), "revocast.prod-eu_1.heartbeat");
        assert_eq!(ns.confirm_subject(), "revocast.prod-eu_1.confirm");
        assert_eq!(ns.stream_name(), "REVOCAST_prod-eu_1");
        assert_eq!(ns.snapshot_bucket(), "revocast_prod-eu_1");
    }

    #[test]
    fn server_lists() {
        assert_eq!(
            server_urls("nats://a:1, nats://b:2,,"),
            vec!["nats://a:1", "nats://b:2"]
        );
        assert!(server_urls("").is_empty());
    }

    #[test]
    fn bad_namespaces_are_rejected() {
        for bad in ["", "a.b", "a b", "a*", ">", "ü", &"x".repeat(65)] {
            assert!(Namespace::new(bad).is_err(), "{bad:?}");
        }
    }
}
