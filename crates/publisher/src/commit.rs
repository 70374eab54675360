//! What the API hands the writer ([`Command`]) and what it hears back: a
//! [`Committed`] answer (the HTTP contract's) or a [`CommitError`].

use revocast_core::http::{Committed, KeyRotated, Revocation};
use revocast_core::{FilterError, SigningKey, check_sid, check_sub};
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

/// Why a key rotation did not happen (or, for `KeyFileNotInstalled`, happened without
/// its key file in place).
#[derive(Clone, Debug, thiserror::Error)]
pub enum RotateError {
    /// The new key is the current one or one the chain used before.
    #[error("the new key is the current key or was used before in this namespace's key chain")]
    KeyReused,
    /// The publisher's key is held in memory: a new key would not survive a restart.
    #[error("the signing key is held in memory, not in a key file: rotation needs a key file")]
    NoKeyFile,
    /// The file for the new key could not be written; nothing changed.
    #[error("writing the new key file failed (nothing changed): {0}")]
    KeyFile(Cause),
    /// The delta carrying the rollover was not stored; nothing changed.
    #[error("{0}")]
    Commit(#[from] CommitError),
}

/// A key rotation for the writer.
pub(crate) struct Rotate {
    /// The key to sign with from now on.
    pub(crate) key: SigningKey,
    /// How long replicas keep accepting the old key, milliseconds.
    pub(crate) overlap_ms: u64,
    pub(crate) reply: oneshot::Sender<Result<KeyRotated, RotateError>>,
}

impl std::fmt::Debug for Rotate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        f.debug_struct("Rotate")
            .field("overlap_ms", &self.overlap_ms)
            .finish_non_exhaustive()
    }
}

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
    /// Sign with a new key: never batched with other commands.
    Rotate(Box<Rotate>),
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
            Command::Rotate(_) => (1, 256),
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
            Command::Rotate(_) => Ok(()),
        }
    }

    /// Answers the caller. A rotation is answered here only when it fails (the writer
    /// answers a done rotation itself).
    pub(crate) fn answer(self, result: Result<Committed, CommitError>) {
        // The caller may have given up (timeout); nothing to do then.
        match self {
            Command::Revoke { reply, .. } | Command::Cutoff { reply, .. } => {
                let _ = reply.send(result);
            }
            Command::Rotate(rotate) => {
                let error = result.err().unwrap_or(CommitError::Stopped);
                let _ = rotate.reply.send(Err(RotateError::Commit(error)));
            }
        }
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
