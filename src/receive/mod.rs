//! `hodometer receive`: an endpoint for published events (SPEC 8), so operators can point
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

use clap::Args;
use tokio::net::TcpListener;

use crate::validate::{Checker, ConfigErrors, parse_duration, parse_socket_addr};
pub use http::{DEFAULT_PAGE, MAX_BODY_BYTES, MAX_PAGE};
use store::{Store, StoreConfig, StoreError};

#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// Address to listen on (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub listen: String,
    /// What to keep: none (validate and answer only), summary (counts and each cluster's latest
    /// metrics) or all (every event as well).
    #[arg(long, default_value = "summary")]
    pub record: String,
    /// SQLite file that keeps what is recorded across restarts (created if missing)
    /// [default: in memory].
    #[arg(long, value_name = "FILE")]
    pub store: Option<PathBuf>,
    /// Connections open at once; a further one is answered 503 at once and closed.
    #[arg(long, value_name = "N", default_value = "512")]
    pub max_connections: String,
    /// Time a client has to send a request's headers; also how long a kept-alive connection
    /// may wait idle for its next request.
    #[arg(long, value_name = "DURATION", default_value = "10s")]
    pub header_timeout: String,
    /// Time a client has to send a request's body (answered 408 after it).
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub body_timeout: String,
    /// A connection whose client takes none of its answer for this long is closed.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub write_timeout: String,
    /// Clusters (distinct_id) tracked and exported in /metrics; events of further clusters are
    /// recorded, counted as dropped, and not graphed.
    #[arg(long, value_name = "N", default_value = "10000")]
    pub max_clusters: String,
    /// Without --store: the events (with --record all) and $insert_ids kept in memory, a ring
    /// that forgets the oldest (events also at most 64 MiB).
    #[arg(long, value_name = "N", default_value = "10000")]
    pub memory_events: String,
}

/// How much the receiver takes on; every field is a flag of `hodometer receive`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub write_timeout: Duration,
    pub max_clusters: usize,
    pub memory_events: usize,
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

impl ReceiveArgs {
    pub fn validate(&self) -> Result<ReceiveConfig, ConfigErrors> {
        let mut c = Checker::default();
        let listen = c.check("--listen", &self.listen, parse_socket_addr);
        let record = c.check("--record", &self.record, Record::parse);
        if let Some(path) = &self.store {
            c.check("--store", &path.display().to_string(), |_| {
                check_store_path(path, record)
            });
        }
        let max_connections = c.check("--max-connections", &self.max_connections, parse_count);
        let header_timeout = c.check("--header-timeout", &self.header_timeout, parse_duration);
        let body_timeout = c.check("--body-timeout", &self.body_timeout, parse_duration);
        let write_timeout = c.check("--write-timeout", &self.write_timeout, parse_duration);
        let max_clusters = c.check("--max-clusters", &self.max_clusters, parse_count);
        let memory_events = c.check("--memory-events", &self.memory_events, parse_count);
        c.finish()?;
        let limits = (|| {
            Some(Limits {
                max_connections: max_connections?,
                header_timeout: header_timeout?,
                body_timeout: body_timeout?,
                write_timeout: write_timeout?,
                max_clusters: max_clusters?,
                memory_events: memory_events?,
            })
        })();
        match (listen, record, limits) {
            (Some(listen), Some(record), Some(limits)) => Ok(ReceiveConfig {
                listen,
                record,
                store: self.store.clone(),
                limits,
            }),
            _ => Err(ConfigErrors::default()),
        }
    }
}

/// A count of at least one, at most a million (beyond any sensible cap, below overflow).
fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 1000000".into()),
    }
}

fn check_store_path(path: &std::path::Path, record: Option<Record>) -> Result<(), String> {
    if record == Some(Record::None) {
        return Err("--record none keeps nothing, so there is nothing to store".into());
    }
    if path.is_dir() {
        return Err("is a directory; expected a file".into());
    }
    let parent = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        return Err(format!("directory {} does not exist", parent.display()));
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(listen: &str, record: &str, store: Option<&str>) -> ReceiveArgs {
        ReceiveArgs {
            listen: listen.into(),
            record: record.into(),
            store: store.map(PathBuf::from),
            max_connections: "512".into(),
            header_timeout: "10s".into(),
            body_timeout: "30s".into(),
            write_timeout: "30s".into(),
            max_clusters: "10000".into(),
            memory_events: "10000".into(),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = args("127.0.0.1:8001", "summary", None)
            .validate()
            .expect("valid");
        assert_eq!(config.record, Record::Summary);
        assert_eq!(config.listen.port(), 8001);
        assert_eq!(config.limits, Limits::default(), "the flags' defaults");
    }

    #[test]
    fn bad_limits_are_reported_together() {
        let mut bad = args("127.0.0.1:0", "all", None);
        bad.max_connections = "0".into();
        bad.header_timeout = "soon".into();
        bad.max_clusters = "-1".into();
        let errors = bad.validate().expect_err("three problems");
        let settings: Vec<&str> = errors.0.iter().map(|invalid| invalid.setting).collect();
        assert_eq!(
            settings,
            ["--max-connections", "--header-timeout", "--max-clusters"]
        );
    }

    #[test]
    fn every_bad_setting_is_reported_together() {
        let errors = args("localhost", "most", Some("/no/such/dir/events.db"))
            .validate()
            .expect_err("three problems");
        let settings: Vec<&str> = errors.0.iter().map(|invalid| invalid.setting).collect();
        assert_eq!(settings, ["--listen", "--record", "--store"]);
    }

    #[test]
    fn a_store_with_record_none_is_refused() {
        let errors = args("127.0.0.1:0", "none", Some("events.db"))
            .validate()
            .expect_err("nothing to store");
        assert_eq!(errors.0[0].setting, "--store");
    }
}
