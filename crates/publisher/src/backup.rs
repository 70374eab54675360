//! Backup and restore of a namespace: `revocast-publisher export` reads the
//! authoritative records straight from NATS (the snapshot and the stream, verified
//! with the publisher's public key, the way a starting publisher rebuilds them) and
//! writes them as JSON lines; `revocast-publisher import` reads such a file back
//! through the API of a running publisher.
//!
//! The file, one JSON object per line:
//!
//! ```text
//! {"revocast_export":1,"namespace":"default","version":42,"exported_at":1767225600,"revocations":2,"cutoffs":1}
//! {"jti":"a","exp":1767229200,"sub":"alice","reason":"stolen laptop","revoked_at":1767225000}
//! {"jti":"b","exp":1767232800,"revoked_at":1767225100}
//! {"cutoff":{"sub":"mallory","not_before":1767220000}}
//! ```
//!
//! The header comes first; revocations are sorted by `jti`; a cutoff without `sub`
//! is the global one. Revocations of tokens that already expired, and cutoffs that
//! no longer match a live token, are left out. A revocation line is the API's
//! [`Revocation`] plus `revoked_at` (kept for the record; a restore revokes anew), so
//! any importer of revocations reads it.

use std::io::Write;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::context::GetStreamErrorKind;
use revocast_core::http::{CutoffRequest, Revocation};
use revocast_core::{Filter, Namespace, PublicKey, Verifier};
use revocast_nats::Store;
use serde::{Deserialize, Serialize};

use crate::config::NatsOptions;
use crate::error::Error;
use crate::nats;

/// The version of the export file format, in its header.
pub const EXPORT_FORMAT: u32 = 1;

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportHeader {
    /// [`EXPORT_FORMAT`] of the build that wrote it.
    pub revocast_export: u32,
    /// The namespace it was read from.
    pub namespace: String,
    /// The filter version it reflects (the stream's last delta).
    pub version: u64,
    /// When it was taken, unix seconds.
    pub exported_at: u64,
    /// Revocation lines that follow.
    pub revocations: u64,
    /// Cutoff lines that follow.
    pub cutoffs: u64,
}

/// One revoked token in an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedRevocation {
    /// `jti`, `exp`, `sub`, `reason`: what a restore revokes.
    #[serde(flatten)]
    pub revocation: Revocation,
    /// When it was first committed, unix seconds.
    pub revoked_at: u64,
}

/// A cutoff line: `{"cutoff": {"sub"?, "not_before"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CutoffLine {
    /// The cutoff, as `POST /v1/cutoffs` takes it.
    pub cutoff: CutoffRequest,
}

/// The authoritative state of a namespace, as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    /// The header line.
    pub header: ExportHeader,
    /// Live revocations, by `jti`.
    pub revocations: Vec<ExportedRevocation>,
    /// Live subject cutoffs by subject, then the global cutoff.
    pub cutoffs: Vec<CutoffRequest>,
}

impl Export {
    /// Writes the JSON lines.
    pub fn write_jsonl(&self, mut out: impl Write) -> std::io::Result<()> {
        write_line(&mut out, &self.header)?;
        for r in &self.revocations {
            write_line(&mut out, r)?;
        }
        for c in &self.cutoffs {
            write_line(&mut out, &CutoffLine { cutoff: c.clone() })?;
        }
        out.flush()
    }
}

fn write_line(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// Reads namespace `namespace` from NATS, verified with `public_key`, and returns
/// its live records and cutoffs at `now` (unix seconds). Nothing is written to NATS.
pub async fn export(
    options: &NatsOptions,
    namespace: &Namespace,
    public_key: PublicKey,
    now: u64,
) -> Result<Export, Error> {
    let client = nats::connect(options).await?;
    let js = nats::jetstream(client);
    let stream = namespace.stream_name();
    match js.get_stream(&stream).await {
        Ok(_) => {}
        Err(e)
            if matches!(
                e.kind(),
                GetStreamErrorKind::JetStream(ref js) if js.error_code() == ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            return Err(Error::inconsistent(format!(
                "namespace {namespace} has no stream {stream} on this NATS: no publisher \
                 ever ran in it here, or its data was deleted"
            )));
        }
        // NATS unreachable or refusing: say so, not that the namespace is empty.
        Err(e) => return Err(Error::nats(format!("open stream {stream}"), e)),
    }
    let store = Store::new(js, Verifier::new(public_key, namespace.clone()));
    let Some(snapshot) = nats::read_snapshot(&store, namespace, public_key).await? else {
        return Err(Error::inconsistent(format!(
            "namespace {namespace} has no snapshot in bucket {}: no publisher ever ran \
             in it on this NATS, or its data was deleted",
            namespace.snapshot_bucket()
        )));
    };
    let filter = Filter::from_state(snapshot.state)
        .map_err(|e| Error::inconsistent_by("the snapshot's filter state", e))?;
    // Skipped log messages are counted by the publisher; an export only reads.
    let counters = crate::stats::Counters::default();
    let mut ledger =
        nats::rebuild(&store, namespace, filter, Some(snapshot.log_seq), &counters).await?;
    let params = ledger.filter.params().clone();
    ledger.forget_expired(&params, now);

    let mut revocations: Vec<ExportedRevocation> = ledger
        .records
        .iter()
        .map(|(jti, record)| ExportedRevocation {
            revocation: Revocation {
                jti: jti.clone(),
                // Stored in several buckets (revoked without exp, or again with
                // another exp): restored into every live bucket, never into one.
                exp: (params.bucket_of(record.first_exp) == params.bucket_of(record.exp))
                    .then_some(record.exp),
                sub: record.sub.clone(),
                reason: record.reason.clone(),
            },
            revoked_at: record.revoked_at,
        })
        .collect();
    revocations.sort_by(|a, b| a.revocation.jti.cmp(&b.revocation.jti));
    let mut cutoffs: Vec<CutoffRequest> = ledger
        .filter
        .subject_cutoffs()
        .iter()
        .filter(|(_, nb)| params.cutoff_is_live(**nb, now))
        .map(|(sub, nb)| CutoffRequest {
            sub: Some(sub.clone()),
            sid: None,
            not_before: *nb,
        })
        .chain(
            ledger
                .filter
                .session_cutoffs()
                .iter()
                .filter(|(_, nb)| params.cutoff_is_live(**nb, now))
                .map(|(sid, nb)| CutoffRequest {
                    sub: None,
                    sid: Some(sid.clone()),
                    not_before: *nb,
                }),
        )
        .collect();
    if let Some(nb) = ledger.filter.global_cutoff()
        && params.cutoff_is_live(nb, now)
    {
        cutoffs.push(CutoffRequest {
            sub: None,
            sid: None,
            not_before: nb,
        });
    }
    Ok(Export {
        header: ExportHeader {
            revocast_export: EXPORT_FORMAT,
            namespace: namespace.to_string(),
            version: ledger.filter.version(),
            exported_at: now,
            revocations: revocations.len() as u64,
            cutoffs: cutoffs.len() as u64,
        },
        revocations,
        cutoffs,
    })
}

/// Whether `text` is an export: its first line is an export header (even a bad one).
pub fn is_export(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .is_some_and(|v| v.get("revocast_export").is_some())
}

/// What one line of an import file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupLine {
    /// The header of an export.
    Header(ExportHeader),
    /// A revocation (an export's, or any `{"jti", "exp", "sub"?, "reason"?}`).
    Revocation(Revocation),
    /// A cutoff.
    Cutoff(CutoffRequest),
}

/// Parses one JSON line of an import file: a header, a cutoff or a revocation (by
/// its keys), with the error of the type it looks like.
pub fn parse_line(line: &str) -> Result<BackupLine, String> {
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("bad JSON line: {e}"))?;
    let Some(object) = value.as_object() else {
        return Err("bad JSON line: not an object".to_owned());
    };
    if object.contains_key("revocast_export") {
        let header: ExportHeader =
            serde_json::from_value(value).map_err(|e| format!("bad export header: {e}"))?;
        if header.revocast_export != EXPORT_FORMAT {
            return Err(format!(
                "export format {} is not the one this build reads ({EXPORT_FORMAT}): \
                 import it with the release that wrote it",
                header.revocast_export
            ));
        }
        return Ok(BackupLine::Header(header));
    }
    if object.contains_key("cutoff") {
        let line: CutoffLine =
            serde_json::from_value(value).map_err(|e| format!("bad cutoff line: {e}"))?;
        return Ok(BackupLine::Cutoff(line.cutoff));
    }
    serde_json::from_value::<Revocation>(value)
        .map(BackupLine::Revocation)
        .map_err(|e| format!("bad revocation line: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_bad_lines_say_why() {
        let export = Export {
            header: ExportHeader {
                revocast_export: EXPORT_FORMAT,
                namespace: "default".into(),
                version: 7,
                exported_at: 100,
                revocations: 1,
                cutoffs: 3,
            },
            revocations: vec![ExportedRevocation {
                revocation: Revocation {
                    jti: "a".into(),
                    exp: Some(5_000),
                    sub: Some("alice".into()),
                    reason: Some("stolen, \"really\"".into()),
                },
                revoked_at: 90,
            }],
            cutoffs: vec![
                CutoffRequest {
                    sub: Some("bob".into()),
                    sid: None,
                    not_before: 50,
                },
                CutoffRequest {
                    sub: None,
                    sid: Some("s-1".into()),
                    not_before: 55,
                },
                CutoffRequest {
                    sub: None,
                    sid: None,
                    not_before: 60,
                },
            ],
        };
        let mut out = Vec::new();
        export.write_jsonl(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<BackupLine> = text.lines().map(|l| parse_line(l).unwrap()).collect();
        assert_eq!(
            lines,
            vec![
                BackupLine::Header(export.header.clone()),
                BackupLine::Revocation(export.revocations[0].revocation.clone()),
                BackupLine::Cutoff(export.cutoffs[0].clone()),
                BackupLine::Cutoff(export.cutoffs[1].clone()),
                BackupLine::Cutoff(export.cutoffs[2].clone()),
            ]
        );
        for (bad, why) in [
            ("nope", "bad JSON line"),
            ("[1]", "not an object"),
            ("{\"jti\":5}", "bad revocation line: invalid type"),
            ("{\"cutoff\":{\"sub\":\"x\"}}", "bad cutoff line"),
            ("{\"revocast_export\":1}", "bad export header"),
            (
                "{\"revocast_export\":9,\"namespace\":\"d\",\"version\":1,\"exported_at\":1,\"revocations\":0,\"cutoffs\":0}",
                "export format 9",
            ),
        ] {
            let err = parse_line(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
