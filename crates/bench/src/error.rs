//! [`BenchError`]: why a run stopped.

/// Why a scenario could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Starting a server or a replica failed.
    #[error("setup: {0}")]
    Setup(String),
    /// No `nats-server` to run the scenarios against.
    #[error("nats-server is required: {0}")]
    NoNatsServer(#[from] revocast_testkit::NatsServerMissing),
    /// A NATS request of the bench itself failed.
    #[error("NATS: {what}: {source}")]
    Nats {
        /// What was asked.
        what: &'static str,
        /// The client's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A task of the bench panicked.
    #[error("{what}: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// How it ended.
        source: tokio::task::JoinError,
    },
    /// The NATS server and publisher the scenarios run against failed.
    #[error("stack: {0}")]
    Stack(#[from] revocast_testkit::StackError),
    /// The publisher library failed.
    #[error("publisher: {0}")]
    Publisher(#[from] revocast_publisher::Error),
    /// A call to the publisher's HTTP API failed.
    #[error("publisher API: {0}")]
    Api(#[from] revocast_publisher::client::ClientError),
    /// A subscriber failed to connect.
    #[error("subscriber: {0}")]
    Connect(#[from] revocast_subscriber::ConnectError),
    /// A check failed.
    #[error("check: {0}")]
    Check(#[from] revocast_subscriber::Error),
    /// Redis answered something unexpected.
    #[error("redis: {0}")]
    Redis(String),
    /// HTTP introspection failed.
    #[error("introspection: {0}")]
    Http(#[from] reqwest::Error),
    /// Writing results failed.
    #[error("writing results: {0}")]
    Json(#[from] serde_json::Error),
    /// Drawing a chart failed.
    #[error("chart: {0}")]
    Chart(String),
    /// I/O.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl BenchError {
    /// A failed NATS request.
    pub fn nats(
        what: &'static str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> BenchError {
        BenchError::Nats {
            what,
            source: Box::new(source),
        }
    }
}
