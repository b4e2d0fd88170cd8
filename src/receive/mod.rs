//! `hodometer receive`: an endpoint for published events, so operators can point
//! `EXTRA_PUBLISH_URLS` at their own machine and watch their own usage.
//!
//! `decode` reads every encoding Mixpanel senders use and validates events, `store` records them
//! in SQLite, `exposition` renders `/metrics`, `http` ties them to routes and `conn` serves
//! connections within their limits. [`Receiver`] runs it all, in `hodometer receive` or inside
//! another command.

mod conn;
pub mod decode;
pub mod exposition;
mod http;
pub mod store;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::validate::ConfigErrors;
pub use http::{DEFAULT_PAGE, MAX_BODY_BYTES, MAX_PAGE};
use store::{Store, StoreConfig, StoreError};

/// The default budget of buffered request bodies: sixteen 1 MiB bodies.
pub const DEFAULT_BODY_MEMORY: usize = 16 * 1024 * 1024;

/// How much the receiver takes on; every field is a flag of `hodometer receive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    pub max_clusters: usize,
    pub memory_events: usize,
    /// Bytes of request bodies buffered at once, over all connections; a body that does not
    /// fit is answered 503 with `Retry-After`.
    pub body_memory: usize,
    /// A file store's deduplication window: ids remembered, and for how long.
    pub dedup_ids: usize,
    pub dedup_window: Duration,
}

impl Default for Limits {
    /// The flags' defaults.
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_clusters: 10_000,
            memory_events: 10_000,
            body_memory: DEFAULT_BODY_MEMORY,
            dedup_ids: 250_000,
            dedup_window: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// How much of each accepted event is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    /// Nothing: events are validated and answered, and only counted in `/metrics`.
    None,
    /// Counts per cluster and each cluster's latest numeric metrics.
    Summary,
    /// The summary and every event whole.
    All,
}

impl Record {
    pub fn parse(text: &str) -> Result<Record, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Ok(Record::None),
            "summary" => Ok(Record::Summary),
            "all" => Ok(Record::All),
            _ => Err("expected one of none, summary, all".into()),
        }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Record::None => "none",
            Record::Summary => "summary",
            Record::All => "all",
        })
    }
}

/// A validated receiver configuration.
#[derive(Clone, Debug)]
pub struct ReceiveConfig {
    pub listen: SocketAddr,
    pub record: Record,
    /// SQLite file; `None` keeps records in memory.
    pub store: Option<PathBuf>,
    pub limits: Limits,
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How long requests in flight may take to finish once shutdown begins (the original daemon's
/// grace period).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// A bound, not yet serving receiver: binding first lets callers learn the port before serving.
pub struct Receiver {
    listener: TcpListener,
    record: Record,
    store: Option<Store>,
    limits: Limits,
}

impl Receiver {
    /// Opens the store (so a bad one is reported before anything listens) and binds.
    pub async fn bind(config: ReceiveConfig) -> Result<Receiver, ReceiveError> {
        let store = match config.record {
            Record::None => None,
            Record::Summary | Record::All => Some(Store::open(&StoreConfig {
                path: config.store.clone(),
                keep_events: config.record == Record::All,
                max_clusters: config.limits.max_clusters,
                memory_events: config.limits.memory_events,
                dedup_ids: config.limits.dedup_ids,
                dedup_seconds: config.limits.dedup_window.as_secs(),
            })?),
        };
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ReceiveError::Listen {
                    addr: config.listen,
                    source,
                })?;
        Ok(Receiver {
            listener,
            record: config.record,
            store,
            limits: config.limits,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish (for at most
    /// [`SHUTDOWN_GRACE`]) and closes the store, so everything a sender was told is recorded is
    /// on disk.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ReceiveError> {
        let counters = Arc::new(http::Counters::default());
        let state = Arc::new(http::AppState {
            record: self.record,
            store: self.store.as_ref().map(Store::handle),
            counters: counters.clone(),
            body_timeout: self.limits.body_timeout,
            body_budget: http::BodyBudget::new(self.limits.body_memory),
        });
        conn::serve(
            self.listener,
            http::router(state),
            self.limits,
            counters,
            shutdown,
        )
        .await;
        if let Some(store) = self.store {
            store.close().await;
        }
        Ok(())
    }
}
