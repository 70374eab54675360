//! What the API hands the writer ([`Command`]) and what it hears back: a
//! [`Committed`] answer (the HTTP contract's) or a [`CommitError`].

use revocast_core::http::{Committed, Revocation};
use revocast_core::{FilterError, check_sid, check_sub};
use tokio::sync::oneshot;

use crate::error::{Cause, and_cause};

/// Why a call was not committed. Retrying the call is always safe.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CommitError {
    /// NATS did not store the delta (unreachable, refused, or another delta won).
    #[error("not stored: {reason}{}", and_cause(.source))]
    NotStored {
        /// Why, in words.
        reason: &'static str,
        /// The error behind it, if one.
        source: Option<Cause>,
    },
    /// The command was malformed (the API validates first, so this is a bug).
    #[error("invalid: {0}")]
    Invalid(#[source] FilterError),
    /// The command alone would make a delta larger than NATS accepts.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The writer has stopped.
    #[error("the publisher is shutting down")]
    Stopped,
}

pub(crate) type Reply = oneshot::Sender<Result<Committed, CommitError>>;

/// Whose tokens a cutoff rejects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum CutoffOf {
    /// Every token of a subject (`sub`).
    Subject(String),
    /// Every token of a session (`sid`).
    Session(String),
    /// Every token.
    Everyone,
}

impl CutoffOf {
    fn id_len(&self) -> usize {
        match self {
            CutoffOf::Subject(id) | CutoffOf::Session(id) => id.len(),
            CutoffOf::Everyone => 0,
        }
    }
}

/// A request to the writer.
#[derive(Debug)]
pub(crate) enum Command {
    Revoke {
        items: Vec<Revocation>,
        reply: Reply,
    },
    Cutoff {
        of: CutoffOf,
        not_before: u64,
        reply: Reply,
    },
}

impl Command {
    /// (adds, rough encoded bytes) this command puts in a delta.
    pub(crate) fn cost(&self) -> (usize, usize) {
        match self {
            Command::Revoke { items, .. } => {
                let adds = items
                    .iter()
                    .map(|r| if r.exp.is_some() { 1 } else { UNKNOWN_EXP_ADDS })
                    .sum();
                let bytes = items
                    .iter()
                    .map(|r| cost(r) * if r.exp.is_some() { 1 } else { UNKNOWN_EXP_ADDS })
                    .sum::<usize>();
                (adds, bytes + 64)
            }
            Command::Cutoff { of, .. } => (1, of.id_len() + 24),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), CommitError> {
        let invalid = CommitError::Invalid;
        match self {
            Command::Revoke { items, .. } => items
                .iter()
                .try_for_each(Revocation::validate)
                .map_err(invalid),
            Command::Cutoff { of, .. } => match of {
                CutoffOf::Subject(sub) => check_sub(sub),
                CutoffOf::Session(sid) => check_sid(sid),
                CutoffOf::Everyone => Ok(()),
            }
            .map_err(invalid),
        }
    }

    pub(crate) fn answer(self, result: Result<Committed, CommitError>) {
        let reply = match self {
            Command::Revoke { reply, .. } | Command::Cutoff { reply, .. } => reply,
        };
        // The caller may have given up (timeout); nothing to do then.
        let _ = reply.send(result);
    }
}

/// What a revocation without `exp` is counted as in the batch limits: a day of
/// one-hour buckets, the default lifetime (the real count depends on the filter's
/// parameters; the byte budget is checked again when the delta is planned).
const UNKNOWN_EXP_ADDS: usize = 26;

/// Rough encoded bytes of one revocation in a delta.
fn cost(r: &Revocation) -> usize {
    r.jti.len()
        + r.sub.as_ref().map_or(0, String::len)
        + r.reason.as_ref().map_or(0, String::len)
        + 24
}
