//! # revocast-subscriber
//!
//! The replica that services embed. It keeps a copy of the publisher's revocation
//! filter in memory, in sync over NATS, so a token check is local: a filter miss
//! answers in tens of nanoseconds with no I/O; only a filter hit asks the authority.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use revocast_subscriber::{SubscriberOptions, TokenClaims};
//!
//! let subscriber = SubscriberOptions::new("O2onvM62pC1io6jQKm8Nc2UyFXcd4kOmOsBIoYtZ2ik".parse()?)
//!     .namespace("prod".parse()?)
//!     .connect("nats://127.0.0.1:4222")
//!     .await?;
//! subscriber.ready().await;
//! let verdict = subscriber.check(&TokenClaims::new("9f1c2d", 1_767_225_600)).await?;
//! assert!(verdict.is_accepted());
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`options`]: [`SubscriberOptions`] (the builder) and [`Policy`].
//! - [`subscriber`]: [`Subscriber`], the cheap handle, and its checks
//!   (`check_local`, `check`, `check_jwt`).
//! - `sync`: the background task: bootstrap, live deltas, heartbeats, gap repair,
//!   resync, staleness.
//! - [`authority`]: the [`Authority`] trait and [`NatsAuthority`] (HTTP and RFC 7662
//!   authorities with the `http-authority` feature).
//! - `cache`: the single-flight confirm cache.
//! - `view`: each thread's view of the filter, read by checks without atomic
//!   read-modify-writes.
//! - [`claims`]: [`TokenClaims`] in, [`Verdict`] out.
//! - [`stats`]: [`Stats`], the counters.
//! - [`metrics`] (feature `metrics`, on by default): the counters as Prometheus metrics.
//! - [`gate`] (feature `tower`): [`Gate`], from a bearer token to admitted or a
//!   [`Rejection`] (401/503), with static keys or the issuers of a
//!   `revocast_verifier::Verifier`, one replica per issuer if need be.
//! - [`layer`] (feature `tower`, on by default): [`RevocastLayer`] for axum and hyper.
//! - [`error`]: typed errors.

pub mod authority;
mod cache;
pub mod claims;
pub mod error;
#[cfg(feature = "tower")]
pub mod gate;
#[cfg(feature = "tower")]
pub mod layer;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod options;
pub mod stats;
pub mod subscriber;
mod sync;
mod view;

pub use authority::{Authority, ConfirmQuery, Confirmation, NatsAuthority};
#[cfg(feature = "http-authority")]
pub use authority::{HttpAuthority, IntrospectionAuthority};
pub use claims::{ConfirmReason, LocalCheck, RevokedBy, Source, TokenClaims, Verdict};
pub use error::{AuthorityError, ConnectError, Error};
#[cfg(feature = "tower")]
pub use gate::{Admitted, Gate, Rejection};
#[cfg(feature = "tower")]
pub use layer::{Revocast, RevocastLayer};
pub use options::{Policy, SubscriberOptions};
pub use stats::Stats;
pub use subscriber::Subscriber;

/// Re-exported so that callers name the key and policy types without extra imports.
pub use revocast_core::{Namespace, PublicKey};
