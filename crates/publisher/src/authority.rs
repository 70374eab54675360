//! The authority: the exact answer to "is this `jti` revoked?", over NATS (a micro
//! service that `$SRV.PING` / `$SRV.INFO` / `$SRV.STATS` discover) and over HTTP.

use std::sync::Arc;
use std::time::Duration;

use async_nats::service::ServiceExt as _;
use bytes::Bytes;
use futures::StreamExt as _;
use revocast_core::{ConfirmResponse, Lookup, Message, Probe, decode_request, subjects};
use revocast_nats::Backoff;
use tokio::sync::watch;

use crate::error::Error;
use crate::ledger::Record;
use crate::state::Shared;
use crate::stats;

/// Largest confirm request accepted (a `jti` is at most 256 bytes).
const MAX_REQUEST_BYTES: usize = 4096;
/// Confirm requests answered at once by one publisher.
const CONFIRM_WORKERS: usize = 64;

/// The authority's answer about one token.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The ledger's epoch and version when it answered.
    pub(crate) epoch: u64,
    pub(crate) version: u64,
    /// The `jti`'s record, if revoked by `jti`.
    pub(crate) record: Option<Record>,
    /// Whether a subject or the global cutoff revokes the token.
    pub(crate) cut_off: bool,
}

impl Answer {
    pub(crate) fn revoked(&self) -> bool {
        self.record.is_some() || self.cut_off
    }
}

/// Looks a token up: the exact `jti` records, then the subject and global cutoffs
/// (a replica that cannot vouch for a token sends it here with its `sub` and `iat`).
/// Counts the answer.
pub(crate) fn lookup(shared: &Shared, probe: &Probe<'_>) -> Answer {
    let ledger = shared.ledger();
    let record = ledger.records.get(probe.jti).cloned();
    // Cutoff maps are exact and small; a filter hit on the jti is irrelevant here
    // (the records answer for it).
    let cut_off = matches!(
        ledger.filter.lookup(probe),
        Lookup::SubjectCutoff | Lookup::SessionCutoff | Lookup::GlobalCutoff
    );
    let (epoch, version) = (ledger.filter.epoch(), ledger.filter.version());
    drop(ledger);
    let answer = Answer {
        epoch,
        version,
        record,
        cut_off,
    };
    let counter = if answer.revoked() {
        &shared.counters.confirms_revoked
    } else {
        &shared.counters.confirms_not_revoked
    };
    stats::add(counter, 1);
    answer
}

/// Answers one encoded confirm request: a signed response, or a service error.
pub(crate) fn answer(
    shared: &Shared,
    payload: &[u8],
) -> Result<Bytes, async_nats::service::error::Error> {
    let request =
        decode_request(payload, &shared.config.namespace, MAX_REQUEST_BYTES).map_err(|e| {
            stats::add(&shared.counters.confirms_malformed, 1);
            async_nats::service::error::Error {
                status: format!("bad confirm request: {e}"),
                code: 400,
            }
        })?;
    let answer = lookup(
        shared,
        &Probe {
            jti: &request.jti,
            exp: request.exp,
            sub: request.sub.as_deref(),
            iat: request.iat,
            sid: request.sid.as_deref(),
        },
    );
    let revoked = answer.revoked();
    let (epoch, version, record) = (answer.epoch, answer.version, answer.record);
    let response = ConfirmResponse {
        jti: request.jti,
        nonce: request.nonce,
        revoked,
        epoch,
        version,
        exp: record.as_ref().map(|r| r.exp),
        revoked_at: record.as_ref().map(|r| r.revoked_at),
        // Anyone may ask over NATS: the reason is for the admin API only.
        reason: None,
    };
    Ok(Bytes::from(
        shared.signer().encode(&Message::ConfirmResponse(response)),
    ))
}

async fn start_service(
    shared: &Arc<Shared>,
    client: &async_nats::Client,
) -> Result<
    (
        async_nats::service::Service,
        async_nats::service::endpoint::Endpoint,
    ),
    Error,
> {
    let service = client
        .service_builder()
        .description("revocast authority: confirms Bloom filter hits")
        .stats_handler({
            // `$SRV.STATS` shows the answers by kind next to the request counts.
            let shared = shared.clone();
            move |_endpoint, _stats| {
                let c = shared.counters.confirms();
                serde_json::json!({
                    "revoked": c.revoked,
                    "not_revoked": c.not_revoked,
                    "malformed": c.malformed,
                    "version": shared.ledger().filter.version(),
                })
            }
        })
        .start(subjects::AUTHORITY_SERVICE, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| Error::nats("start the authority service", e))?;
    let endpoint = service
        .endpoint_builder()
        .name(subjects::CONFIRM_ENDPOINT)
        .add(shared.config.namespace.confirm_subject())
        .await
        .map_err(|e| Error::nats("add the confirm endpoint", e))?;
    Ok((service, endpoint))
}

/// Serves the confirm endpoint until `stop` turns true. Starting the service is
/// retried until it works (NATS may be away for a moment).
pub(crate) async fn serve(
    shared: Arc<Shared>,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let (service, mut endpoint) = loop {
        match start_service(&shared, &client).await {
            Ok(started) => break started,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff.peek(), "authority not started; retrying");
                let stopped = tokio::select! {
                    _ = stop.wait_for(|s| *s) => true,
                    _ = backoff.wait() => false,
                };
                if stopped {
                    return;
                }
            }
        }
    };
    tracing::info!(subject = %shared.config.namespace.confirm_subject(), "authority serving over NATS");
    // Several requests in the air at once: a slow reply path never holds up the
    // next answer. Across publisher instances, the service's queue group spreads
    // the requests.
    let serving = (&mut endpoint).for_each_concurrent(CONFIRM_WORKERS, |request| {
        let shared = shared.clone();
        async move {
            let response = answer(&shared, &request.message.payload);
            if let Err(e) = request.respond(response).await {
                tracing::debug!(error = %e, "could not send a confirm response");
            }
        }
    });
    tokio::select! {
        _ = stop.wait_for(|s| *s) => {}
        () = serving => {}
    }
    let _ = endpoint.stop().await;
    let _ = service.stop().await;
}
