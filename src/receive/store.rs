//! Where accepted events are recorded: SQLite, in a file (`--store`) or in memory.
//!
//! One thread owns the connection. Requests hand it their events and wait for the commit, so an
//! event is durable before its sender hears `1`. Whatever requests are waiting when the thread
//! becomes free are committed together in one transaction (group commit): each commit costs a
//! disk sync, so concurrent senders share that cost instead of queueing behind one another.

use std::path::Path;
use std::thread::JoinHandle;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::decode::ValidEvent;

/// The layout below; a store written by a newer layout is refused rather than misread.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
    -- Every $insert_id ever recorded, so a retried event is recognised, across restarts too.
    CREATE TABLE IF NOT EXISTS seen (insert_id TEXT PRIMARY KEY) WITHOUT ROWID;
    -- Per cluster (distinct_id): how many events, their time span, and the numeric metrics of
    -- the latest event as a JSON object.
    CREATE TABLE IF NOT EXISTS clusters (
        distinct_id TEXT PRIMARY KEY,
        events INTEGER NOT NULL,
        first_time INTEGER NOT NULL,
        last_time INTEGER NOT NULL,
        metrics TEXT NOT NULL
    ) WITHOUT ROWID;
    -- Whole events, with --record all.
    CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        insert_id TEXT NOT NULL UNIQUE,
        distinct_id TEXT NOT NULL,
        time INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        json TEXT NOT NULL
    );
";

/// Metrics follow the event with the latest `time`, not the last to arrive: a retried old event
/// must not overwrite newer values. Metrics the latest event left out (unknown to its sender)
/// are gone from the row, as they should be from a graph.
const UPSERT_CLUSTER: &str = "
    INSERT INTO clusters (distinct_id, events, first_time, last_time, metrics)
    VALUES (?1, 1, ?2, ?2, ?3)
    ON CONFLICT (distinct_id) DO UPDATE SET
        events = events + 1,
        first_time = min(first_time, excluded.first_time),
        last_time = max(last_time, excluded.last_time),
        metrics = CASE WHEN excluded.last_time >= last_time THEN excluded.metrics ELSE metrics END
";

/// How many waiting requests one transaction may take.
const MAX_GROUP: usize = 512;
/// Requests that may wait for the writer before senders are held back.
const QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use {path} as the store: {source}")]
    Open {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "{path} was written by a newer hodometer (store version {found}, this one reads {SCHEMA_VERSION})"
    )]
    Version { path: String, found: i64 },
    #[error("store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A failed group commit fails every request in the group; each gets the same reason.
    #[error("writing to the store failed: {0}")]
    Write(String),
    #[error("the store has shut down")]
    Closed,
}

/// What happened to the events of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    pub recorded: u64,
    /// Events whose `$insert_id` was already recorded; they are not recorded again.
    pub duplicates: u64,
}

/// The counts `--record summary` keeps, as `/events` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Distinct events recorded.
    pub events: u64,
    pub clusters: Vec<ClusterSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterSummary {
    /// The events' `distinct_id`.
    pub cluster_id: String,
    pub events: u64,
    /// Earliest and latest event `time`, Unix seconds.
    pub first_time: i64,
    pub last_time: i64,
    /// The numeric usage metrics of the latest event.
    pub metrics: Map<String, Value>,
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Record {
        events: Vec<ValidEvent>,
        reply: Reply<RecordOutcome>,
    },
    EventsJson(Reply<String>),
    Summary(Reply<Summary>),
    Close,
}

/// The open store and its writer thread.
pub struct Store {
    handle: StoreHandle,
    writer: JoinHandle<()>,
}

/// A cheap, cloneable way to reach the store from request handlers.
#[derive(Clone)]
pub struct StoreHandle {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (creating if needed) the store at `path`, or an in-memory one; `keep_events` also
    /// keeps whole events, not just the summary.
    pub fn open(path: Option<&Path>, keep_events: bool) -> Result<Store, StoreError> {
        let connection = match path {
            Some(path) => open_file(path)?,
            None => {
                let connection = Connection::open_in_memory()?;
                prepare(&connection)?;
                connection
            }
        };
        let (jobs, queue) = mpsc::channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("receive-store".into())
            .spawn(move || Writer::new(connection, keep_events).run(queue))
            .map_err(|e| StoreError::Write(format!("cannot start the store thread: {e}")))?;
        Ok(Store {
            handle: StoreHandle { jobs },
            writer,
        })
    }

    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// Finishes the requests already queued, then closes the database.
    pub async fn close(self) {
        let _ = self.handle.jobs.send(Job::Close).await;
        let writer = self.writer;
        if tokio::task::spawn_blocking(move || writer.join())
            .await
            .is_err()
        {
            tracing::warn!("the store thread did not finish cleanly");
        }
    }
}

impl StoreHandle {
    /// Records the events of one request in one commit; returns once they are durable.
    pub async fn record(&self, events: Vec<ValidEvent>) -> Result<RecordOutcome, StoreError> {
        self.ask(|reply| Job::Record { events, reply }).await
    }

    /// Every recorded event, oldest first, as one JSON array.
    pub async fn events_json(&self) -> Result<String, StoreError> {
        self.ask(Job::EventsJson).await
    }

    pub async fn summary(&self) -> Result<Summary, StoreError> {
        self.ask(Job::Summary).await
    }

    async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(job(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

fn open_file(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let connection = Connection::open(path).map_err(open_error)?;
    // WAL with FULL sync: a commit is on disk when it returns, and readers never block it.
    let _mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(open_error)?;
    connection
        .execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
        .map_err(open_error)?;
    let found: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(open_error)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Version {
            path: path.display().to_string(),
            found,
        });
    }
    prepare(&connection).map_err(|e| match e {
        StoreError::Sqlite(source) => open_error(source),
        other => other,
    })?;
    Ok(connection)
}

fn prepare(connection: &Connection) -> Result<(), StoreError> {
    connection.execute_batch(SCHEMA)?;
    connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

struct Writer {
    connection: Connection,
    keep_events: bool,
}

struct Pending {
    events: Vec<ValidEvent>,
    reply: Reply<RecordOutcome>,
}

impl Writer {
    fn new(connection: Connection, keep_events: bool) -> Writer {
        Writer {
            connection,
            keep_events,
        }
    }

    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut closing = false;
        while !closing {
            let Some(first) = queue.blocking_recv() else {
                break;
            };
            // Take whatever else is already waiting: writes share one commit, reads follow it.
            let mut writes = Vec::new();
            let mut reads = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Record { events, reply } => writes.push(Pending { events, reply }),
                    Job::Close => closing = true,
                    read => reads.push(read),
                }
                if !closing && writes.len() < MAX_GROUP {
                    next = queue.try_recv().ok();
                }
            }
            self.commit_group(writes);
            for read in reads {
                self.answer(read);
            }
        }
    }

    fn commit_group(&mut self, group: Vec<Pending>) {
        if group.is_empty() {
            return;
        }
        match self.write(&group) {
            Ok(outcomes) => {
                for (pending, outcome) in group.into_iter().zip(outcomes) {
                    let _ = pending.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, requests = group.len(), "cannot record events");
                let reason = error.to_string();
                for pending in group {
                    let _ = pending.reply.send(Err(StoreError::Write(reason.clone())));
                }
            }
        }
    }

    /// All of the group or none of it: a failed commit records nothing, and every sender in
    /// the group is told so and can retry.
    fn write(&mut self, group: &[Pending]) -> rusqlite::Result<Vec<RecordOutcome>> {
        let received_at = i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX);
        let transaction = self.connection.transaction()?;
        let mut outcomes = Vec::with_capacity(group.len());
        {
            let mut seen =
                transaction.prepare_cached("INSERT OR IGNORE INTO seen (insert_id) VALUES (?1)")?;
            let mut cluster = transaction.prepare_cached(UPSERT_CLUSTER)?;
            let mut event = transaction.prepare_cached(
                "INSERT INTO events (insert_id, distinct_id, time, received_at, json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for pending in group {
                let mut outcome = RecordOutcome::default();
                for e in &pending.events {
                    if seen.execute([&e.insert_id])? == 0 {
                        outcome.duplicates += 1;
                        continue;
                    }
                    outcome.recorded += 1;
                    let metrics = Value::Object(e.metrics.clone()).to_string();
                    cluster.execute(params![e.distinct_id, e.time, metrics])?;
                    if self.keep_events {
                        event.execute(params![
                            e.insert_id,
                            e.distinct_id,
                            e.time,
                            received_at,
                            e.json
                        ])?;
                    }
                }
                outcomes.push(outcome);
            }
        }
        transaction.commit()?;
        Ok(outcomes)
    }

    fn answer(&self, read: Job) {
        match read {
            Job::EventsJson(reply) => {
                let _ = reply.send(self.events_json().map_err(StoreError::from));
            }
            Job::Summary(reply) => {
                let _ = reply.send(self.summary().map_err(StoreError::from));
            }
            Job::Record { .. } | Job::Close => {}
        }
    }

    fn events_json(&self) -> rusqlite::Result<String> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT json FROM events ORDER BY seq")?;
        let mut rows = statement.query([])?;
        // The stored texts are already JSON: join them rather than parse and print again.
        let mut out = String::from("[");
        while let Some(row) = rows.next()? {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(row.get_ref(0)?.as_str()?);
        }
        out.push(']');
        Ok(out)
    }

    fn summary(&self) -> rusqlite::Result<Summary> {
        let mut statement = self.connection.prepare_cached(
            "SELECT distinct_id, events, first_time, last_time, metrics
             FROM clusters ORDER BY distinct_id",
        )?;
        let clusters = statement
            .query_map([], |row| {
                let metrics: String = row.get(4)?;
                Ok(ClusterSummary {
                    cluster_id: row.get(0)?,
                    events: row.get(1)?,
                    first_time: row.get(2)?,
                    last_time: row.get(3)?,
                    // Written by this module from a JSON object; anything else reads as none.
                    metrics: serde_json::from_str(&metrics).unwrap_or_default(),
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let events = self
            .connection
            .query_row("SELECT sum(events) FROM clusters", [], |row| {
                row.get::<_, Option<u64>>(0)
            })
            .optional()?
            .flatten()
            .unwrap_or(0);
        Ok(Summary { events, clusters })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(insert_id: &str, cluster: &str, time: i64, models: i64) -> ValidEvent {
        let mut metrics = Map::new();
        metrics.insert("model_count".into(), json!(models));
        ValidEvent {
            insert_id: insert_id.into(),
            distinct_id: cluster.into(),
            time,
            metrics,
            json: json!({"event": "e", "properties": {"$insert_id": insert_id}}).to_string(),
        }
    }

    #[tokio::test]
    async fn duplicates_are_recognised_within_a_request_and_across_requests() {
        let store = Store::open(None, true).expect("open");
        let handle = store.handle();
        let outcome = handle
            .record(vec![event("a", "c", 1, 1), event("a", "c", 1, 1)])
            .await
            .expect("record");
        assert_eq!(
            outcome,
            RecordOutcome {
                recorded: 1,
                duplicates: 1
            }
        );
        let again = handle
            .record(vec![event("a", "c", 1, 1), event("b", "c", 2, 2)])
            .await
            .expect("record");
        assert_eq!(
            again,
            RecordOutcome {
                recorded: 1,
                duplicates: 1
            }
        );
        let all: Value = serde_json::from_str(&handle.events_json().await.expect("events"))
            .expect("a JSON array");
        assert_eq!(all.as_array().map(Vec::len), Some(2));
        store.close().await;
    }

    #[tokio::test]
    async fn metrics_follow_the_latest_event_time_not_arrival() {
        let store = Store::open(None, false).expect("open");
        let handle = store.handle();
        handle
            .record(vec![event("new", "c", 200, 20)])
            .await
            .expect("record");
        handle
            .record(vec![event("old", "c", 100, 10)])
            .await
            .expect("record");
        let summary = handle.summary().await.expect("summary");
        assert_eq!(summary.events, 2);
        let cluster = &summary.clusters[0];
        assert_eq!((cluster.first_time, cluster.last_time), (100, 200));
        assert_eq!(cluster.metrics.get("model_count"), Some(&json!(20)));
        assert_eq!(
            handle.events_json().await.expect("events"),
            "[]",
            "summary keeps no whole events"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_file_store_keeps_everything_across_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        let store = Store::open(Some(&path), true).expect("open");
        store
            .handle()
            .record(vec![event("a", "c", 1, 1)])
            .await
            .expect("record");
        store.close().await;

        let reopened = Store::open(Some(&path), true).expect("reopen");
        let handle = reopened.handle();
        let outcome = handle
            .record(vec![event("a", "c", 1, 1)])
            .await
            .expect("record");
        assert_eq!(outcome.duplicates, 1, "dedup survives a restart");
        assert_eq!(handle.summary().await.expect("summary").events, 1);
        reopened.close().await;
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("not-a-db");
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let error = Store::open(Some(&path), false)
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("not-a-db"), "{error}");
    }
}
