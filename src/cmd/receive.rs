//! `hodometer receive`: an endpoint for published events.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::logging::{self, LogSettings};
use crate::receive::{Limits, ReceiveConfig, Receiver, Record};
use crate::validate::{Checker, ConfigErrors, parse_duration, parse_socket_addr};

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
    /// Bytes of request bodies held at once over all connections (a suffix Ki or Mi is
    /// allowed); a body beyond it is answered 503 with Retry-After, so memory does not grow
    /// with --max-connections.
    #[arg(long, value_name = "BYTES", default_value = "16Mi")]
    pub body_memory: String,
    /// With --store: the $insert_ids remembered for deduplication; the oldest are forgotten
    /// beyond it (a retry of an event that old is recorded again).
    #[arg(long, value_name = "N", default_value = "250000")]
    pub dedup_ids: String,
    /// With --store: how long an $insert_id is remembered for deduplication.
    #[arg(long, value_name = "DURATION", default_value = "7d")]
    pub dedup_window: String,
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
        let body_memory = c.check("--body-memory", &self.body_memory, parse_body_memory);
        let dedup_ids = c.check("--dedup-ids", &self.dedup_ids, parse_dedup_ids);
        let dedup_window = c.check("--dedup-window", &self.dedup_window, parse_duration);
        c.finish_with(|| {
            Some(ReceiveConfig {
                listen: listen?,
                record: record?,
                store: self.store.clone(),
                limits: Limits {
                    max_connections: max_connections?,
                    header_timeout: header_timeout?,
                    body_timeout: body_timeout?,
                    write_timeout: write_timeout?,
                    max_clusters: max_clusters?,
                    memory_events: memory_events?,
                    body_memory: body_memory?,
                    dedup_ids: dedup_ids?,
                    dedup_window: dedup_window?,
                },
            })
        })
    }
}

/// A count of at least one, at most a million (beyond any sensible cap, below overflow).
fn parse_count(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 1000000".into()),
    }
}

/// Bytes, with an optional `Ki` or `Mi` suffix: at least one largest body (1 MiB), at most
/// 4 GiB.
fn parse_body_memory(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let (number, unit) = match text.strip_suffix("Mi") {
        Some(number) => (number, 1024 * 1024),
        None => match text.strip_suffix("Ki") {
            Some(number) => (number, 1024),
            None => (text, 1),
        },
    };
    let max = crate::receive::MAX_BODY_BYTES;
    match number
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
    {
        Some(bytes) if (max..=4 << 30).contains(&bytes) => Ok(bytes),
        _ => Err(
            "expected a size from 1Mi (the largest body) to 4096Mi, in bytes or with Ki or Mi"
                .into(),
        ),
    }
}

/// At least one id, at most a hundred million.
fn parse_dedup_ids(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=100_000_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 100000000".into()),
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

pub async fn run(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let config = args.validate()?;
    logging::init(&LogSettings::INFO);
    let (record, store) = (config.record, config.store.clone());
    let receiver = Receiver::bind(config).await?;
    let shutdown = super::shutdown_signal();
    super::announce(format_args!(
        "hodometer receive: listening on {}",
        receiver.local_addr()?
    ))?;
    tracing::info!(
        %record,
        store = %store.map_or_else(|| "memory".into(), |path| path.display().to_string()),
        "receiver ready"
    );
    receiver.serve(shutdown).await?;
    tracing::info!("receiver stopped");
    Ok(ExitCode::SUCCESS)
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
            body_memory: "16Mi".into(),
            dedup_ids: "250000".into(),
            dedup_window: "7d".into(),
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
