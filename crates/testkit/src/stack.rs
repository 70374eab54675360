//! [`Stack`]: a `nats-server` and a ready publisher in front of it, with the typed
//! API client and subscribers pinned to its key (feature `stack`).

use std::time::Duration;

use revocast_publisher::client::{ApiClient, ClientError};
use revocast_publisher::{Committed, Config, Publisher, Revocation};
use revocast_subscriber::{Subscriber, SubscriberOptions};

use crate::{DEADLINE, NatsServer, within};

/// Starts a publisher in this process and waits until it is ready.
pub async fn start_publisher(config: Config) -> Publisher {
    let publisher = Publisher::start(config)
        .await
        .expect("the publisher starts");
    publisher
        .wait_ready(DEADLINE)
        .await
        .expect("the publisher is ready");
    publisher
}

/// A NATS server, a ready publisher in front of it and a client of its API.
#[derive(Debug)]
pub struct Stack {
    /// The server (killed with its store on drop).
    pub nats: NatsServer,
    /// The publisher, in this process.
    pub publisher: Publisher,
    /// The publisher's HTTP API, with the admin token of its configuration.
    pub api: ApiClient,
}

impl Stack {
    /// A new server and a publisher with test settings ([`Config::for_tests`]).
    pub async fn start() -> Stack {
        crate::init_logs();
        let nats = NatsServer::start();
        let config = Config::for_tests(nats.url()).expect("a test configuration");
        Stack::start_with(nats, config).await
    }

    /// A publisher with `config` in front of `nats`.
    pub async fn start_with(nats: NatsServer, config: Config) -> Stack {
        let token = config.admin_token.clone();
        let publisher = start_publisher(config).await;
        let api = ApiClient::builder(publisher.url())
            .admin_token_opt(token)
            .timeout(DEADLINE)
            .build()
            .expect("an API client");
        Stack {
            nats,
            publisher,
            api,
        }
    }

    /// Shuts the publisher down gracefully and starts one with `config` in front of
    /// the same server.
    pub async fn restart_publisher(self, config: Config) -> Stack {
        let Stack {
            nats, publisher, ..
        } = self;
        publisher
            .shutdown()
            .await
            .expect("a clean publisher shutdown");
        Stack::start_with(nats, config).await
    }

    /// Options for a subscriber pinned to this publisher's key and namespace.
    pub fn subscriber_options(&self) -> SubscriberOptions {
        SubscriberOptions::new(self.publisher.public_key())
            .namespace(self.publisher.namespace().clone())
            .max_staleness(Duration::from_secs(3))
    }

    /// A ready subscriber connected straight to the server.
    pub async fn subscriber(&self) -> Subscriber {
        self.subscriber_at(&self.nats.url()).await
    }

    /// A ready subscriber connected to `url` (through a [`crate::Proxy`], say).
    pub async fn subscriber_at(&self, url: &str) -> Subscriber {
        let subscriber = self
            .subscriber_options()
            .connect(url)
            .await
            .expect("the subscriber connects");
        within("the subscriber to be ready", subscriber.ready()).await;
        subscriber
    }

    /// `POST /v1/revocations` with one revocation; returns the version.
    pub async fn revoke(&self, jti: &str, exp: u64) -> u64 {
        version(self.api.revoke(&Revocation::new(jti, exp)).await)
    }

    /// `POST /v1/revocations` in bulk; returns the version.
    pub async fn revoke_many(&self, items: &[(String, u64)]) -> u64 {
        let items: Vec<Revocation> = items
            .iter()
            .map(|(jti, exp)| Revocation::new(jti.clone(), *exp))
            .collect();
        version(self.api.revoke_bulk(&items).await)
    }

    /// `POST /v1/cutoffs`; returns the version.
    pub async fn cutoff(&self, sub: Option<&str>, not_before: u64) -> u64 {
        version(self.api.cutoff(sub, not_before).await)
    }
}

fn version(done: Result<Committed, ClientError>) -> u64 {
    match done {
        Ok(c) => c.version,
        Err(e) => panic!("the publisher refused: {e}"),
    }
}
