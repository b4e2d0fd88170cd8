//! `hodometer receive`: an endpoint for published events (SPEC 8), so operators can point
//! `EXTRA_PUBLISH_URLS` at their own machine and watch their own usage.
//!
//! `decode` reads every encoding Mixpanel senders use and validates events, `store` records them
//! in SQLite, `exposition` renders `/metrics`, and `http` ties them to routes. [`Receiver`] runs
//! it all, in `hodometer receive` or inside another command.

pub mod decode;
pub mod exposition;
mod http;
pub mod store;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use tokio::net::TcpListener;

use crate::validate::{Checker, ConfigErrors, parse_socket_addr};
pub use http::MAX_BODY_BYTES;
use store::{Store, StoreError};

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
    #[error("receiver failed: {0}")]
    Serve(std::io::Error),
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
        c.finish()?;
        match (listen, record) {
            (Some(listen), Some(record)) => Ok(ReceiveConfig {
                listen,
                record,
                store: self.store.clone(),
            }),
            _ => Err(ConfigErrors::default()),
        }
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
}

impl Receiver {
    /// Opens the store (so a bad one is reported before anything listens) and binds.
    pub async fn bind(config: ReceiveConfig) -> Result<Receiver, ReceiveError> {
        let store = match config.record {
            Record::None => None,
            Record::Summary | Record::All => Some(Store::open(
                config.store.as_deref(),
                config.record == Record::All,
            )?),
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
        use axum::serve::ListenerExt;
        use futures::FutureExt;

        let state = Arc::new(http::AppState {
            record: self.record,
            store: self.store.as_ref().map(Store::handle),
            counters: http::Counters::default(),
        });
        // Answers are small and senders wait for each one: do not let Nagle hold them back.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let shutdown = shutdown.shared();
        let server = axum::serve(listener, http::router(state))
            .with_graceful_shutdown(shutdown.clone())
            .into_future();
        // A client that stalls mid-request must not hold the receiver up for ever.
        let grace_over = async {
            shutdown.await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let served = tokio::select! {
            served = server => served.map_err(ReceiveError::Serve),
            () = grace_over => {
                tracing::warn!(
                    "requests still open {} s after shutdown began; stopping without them",
                    SHUTDOWN_GRACE.as_secs()
                );
                Ok(())
            }
        };
        if let Some(store) = self.store {
            store.close().await;
        }
        served
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
        }
    }

    #[test]
    fn defaults_are_valid() {
        let config = args("127.0.0.1:8001", "summary", None)
            .validate()
            .expect("valid");
        assert_eq!(config.record, Record::Summary);
        assert_eq!(config.listen.port(), 8001);
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
