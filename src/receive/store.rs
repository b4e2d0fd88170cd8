//! Where accepted events are recorded: SQLite, in a file (`--store`) or in memory.
//!
//! Writes: one thread owns the writing connection. Requests hand it their events and wait until
//! they are durable before their sender hears `1`. Whatever requests are waiting when the
//! thread becomes free are committed together in one transaction (group commit). Within a
//! group, each cluster's row is updated once, however many of its events the group holds.
//!
//! Durability (a file store): an acknowledged event is on disk, across a power loss too, not
//! only across a crash of the process. SQLite's `synchronous = FULL` would sync the WAL inside
//! every commit, with the writer waiting; instead the writer commits with `NORMAL` (which in WAL
//! mode differs from `FULL` only by that one sync; checkpoints still sync the WAL before and the
//! database after) and a second thread syncs the WAL and only then answers. One sync answers
//! every group committed before it began, and the writer commits the next group meanwhile, so
//! the disk's latency and the writer's work overlap instead of adding up.
//!
//! Reads (`/events`, `/metrics`) never go through that thread: each opens its own read
//! connection (WAL for a file, a shared cache read uncommitted in memory), so a slow reader
//! never holds a commit up.
//!
//! Bounded by construction: at most `max_clusters` clusters are tracked (events of others are
//! counted as dropped), and in memory the events and the `$insert_id`s remembered for
//! deduplication form a ring of `memory_events` (and at most [`MEMORY_EVENT_BYTES`] of events).

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};

use super::decode::ValidEvent;
use crate::metrics::EXTENSION_PREFIX;

/// The layout below; a store written by a newer layout is refused rather than misread.
const SCHEMA_VERSION: i64 = 2;

const SCHEMA: &str = "
    -- Per cluster (distinct_id): how many events, their time span, and the tracked metrics and
    -- the extensions of the latest event as JSON objects. The extensions (up to 255 strings of
    -- 1 KiB) come last, so /metrics, which reads the columns before them, never loads them.
    CREATE TABLE IF NOT EXISTS clusters (
        distinct_id TEXT PRIMARY KEY,
        events INTEGER NOT NULL,
        first_time INTEGER NOT NULL,
        last_time INTEGER NOT NULL,
        metrics TEXT NOT NULL,
        extensions TEXT NOT NULL DEFAULT '{}'
    ) WITHOUT ROWID;
    -- Whole events, with --record all. No index on insert_id: `seen` already keeps each one
    -- once, and a second random B-tree leaf per event would double the pages, so the bytes
    -- synced, of every commit. (Stores made before this still have the index; it does no harm.)
    CREATE TABLE IF NOT EXISTS events (
        seq INTEGER PRIMARY KEY,
        insert_id TEXT NOT NULL,
        distinct_id TEXT NOT NULL,
        time INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        json TEXT NOT NULL
    );
";

/// The `$insert_id`s recorded lately, so a retried event is recognised, across restarts too:
/// a window bounded by count and by age (the rowid orders them, so the oldest go first).
const SEEN: &str = "CREATE TABLE IF NOT EXISTS seen (
    insert_id TEXT PRIMARY KEY,
    at INTEGER NOT NULL DEFAULT 0
);";

/// Metrics follow the event with the latest `time`, not the last to arrive: a retried old event
/// must not overwrite newer values. Metrics the latest event left out (unknown to its sender)
/// are gone from the row, as they should be from a graph. (In an UPDATE every column read is
/// the old value, so `last_time` below is the row's before this group.)
const UPDATE_CLUSTER: &str = "
    UPDATE clusters SET
        events = events + ?2,
        first_time = min(first_time, ?3),
        last_time = max(last_time, ?4),
        metrics = CASE WHEN ?4 >= last_time THEN ?5 ELSE metrics END,
        extensions = CASE WHEN ?4 >= last_time THEN ?6 ELSE extensions END
    WHERE distinct_id = ?1
";
const INSERT_CLUSTER: &str = "
    INSERT INTO clusters (distinct_id, events, first_time, last_time, metrics, extensions)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6)
";

/// How many waiting requests one transaction may take.
const MAX_GROUP: usize = 512;
/// Requests that may wait for the writer before senders are held back.
const QUEUE: usize = 1024;
/// The most bytes of whole events the in-memory ring keeps, whatever its event count.
pub const MEMORY_EVENT_BYTES: u64 = 64 * 1024 * 1024;
/// `/events` pages are sent in pieces of about this size; a few pieces at most wait for a
/// client that reads slowly, so such a client pins little memory.
pub const CHUNK_BYTES: usize = 16 * 1024;
const CHUNKS_IN_FLIGHT: usize = 2;
/// Reads (`/events`, `/metrics`) at once; more wait for a turn. Each holds a read connection
/// with a page cache of at most [`READER_CACHE_KIB`], a few pieces and the rows of one read, so
/// readers take a fixed amount of memory whatever `--max-connections` allows.
pub const MAX_READERS: usize = 16;
pub const READER_CACHE_KIB: i64 = 512;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use {path} as the store: {reason}")]
    Open { path: String, reason: String },
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

/// What the store keeps and how much of it.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// SQLite file; `None` keeps everything in memory.
    pub path: Option<PathBuf>,
    /// Whole events as well as the per-cluster summary (`--record all`).
    pub keep_events: bool,
    /// Clusters tracked; events of further clusters are recorded but their metrics dropped.
    pub max_clusters: usize,
    /// In memory only: events, and `$insert_id`s remembered, before the oldest are forgotten.
    pub memory_events: usize,
    /// A file store's deduplication window: at most this many `$insert_id`s, each remembered
    /// for at most `dedup_seconds`; a retry of an event older than that is recorded again.
    pub dedup_ids: usize,
    pub dedup_seconds: u64,
}

/// What happened to the events of one request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordOutcome {
    pub recorded: u64,
    /// Events whose `$insert_id` was already recorded; they are not recorded again.
    pub duplicates: u64,
}

/// The counts `--record summary` keeps, as `/events` shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    /// Distinct events recorded from tracked clusters.
    pub events: u64,
    /// Clusters tracked; `clusters` lists at most the cap of them, latest reports first.
    pub clusters_tracked: u64,
    pub clusters: Vec<ClusterSummary>,
}

#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ClusterSummary {
    /// The events' `distinct_id`.
    pub cluster_id: String,
    pub events: u64,
    /// Earliest and latest event `time`, Unix seconds.
    pub first_time: i64,
    pub last_time: i64,
    /// The numeric usage metrics and version strings of the latest event.
    pub metrics: Map<String, Value>,
    /// The operator-supplied extensions of the latest event, by key (without `ext.`); left out
    /// of the JSON when there are none.
    #[serde(skip_serializing_if = "Map::is_empty", default)]
    pub extensions: Map<String, Value>,
}

/// The totals over every tracked cluster, read before the clusters are walked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub events: u64,
    pub clusters_tracked: u64,
}

/// What a walk over the clusters writes: a head, then one or more passes over the clusters
/// (the Prometheus text format lists each family's samples together), then a tail. The store
/// reads the clusters a few at a time, in short read transactions, and sends the text in
/// pieces as fast as the client takes them: however many clusters there are, a walk holds a
/// piece and the clusters of one read.
pub trait ClusterWriter: Send + 'static {
    /// Whether the clusters' extensions are needed (they are the bulk of a row).
    const EXTENSIONS: bool;
    fn head(&mut self, totals: Totals, out: &mut Vec<u8>);
    fn passes(&self) -> usize;
    /// Before each pass.
    fn start_pass(&mut self, pass: usize, out: &mut Vec<u8>) {
        let _ = (pass, out);
    }
    fn cluster(&mut self, pass: usize, cluster: &ClusterSummary, out: &mut Vec<u8>);
    fn tail(&mut self, out: &mut Vec<u8>);
}

/// `--record summary`'s `/events`: the [`Summary`] as JSON.
struct SummaryJson {
    first: bool,
}

impl ClusterWriter for SummaryJson {
    const EXTENSIONS: bool = true;

    fn head(&mut self, totals: Totals, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "{{\"events\":{},\"clusters_tracked\":{},\"clusters\":[",
                totals.events, totals.clusters_tracked
            )
            .as_bytes(),
        );
    }

    fn passes(&self) -> usize {
        1
    }

    fn cluster(&mut self, _: usize, cluster: &ClusterSummary, out: &mut Vec<u8>) {
        if !std::mem::take(&mut self.first) {
            out.push(b',');
        }
        // Serialising plain maps and strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, cluster);
    }

    fn tail(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"]}");
    }
}

/// Counts the writer keeps for `/metrics`, readable without asking it.
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Events of clusters beyond the cap, whose metrics were not tracked.
    pub cluster_events_dropped: AtomicU64,
    pub clusters_tracked: AtomicU64,
    /// Events the in-memory ring forgot to make room.
    pub ring_events_forgotten: AtomicU64,
    /// `$insert_id`s forgotten beyond the deduplication window.
    pub dedup_ids_forgotten: AtomicU64,
    /// Syncs of a file store to disk; each makes every group committed before it durable.
    pub syncs: AtomicU64,
    /// Time spent in those syncs, in nanoseconds: a sender waits for one of them.
    pub sync_nanos: AtomicU64,
    /// Group commits (transactions), and the time the writer spent in them, in nanoseconds.
    pub commits: AtomicU64,
    pub commit_nanos: AtomicU64,
}

/// Adds the time since `start` to a nanosecond counter.
fn add_elapsed(counter: &AtomicU64, start: std::time::Instant) {
    let nanos = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
    counter.fetch_add(nanos, Ordering::Relaxed);
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Job {
    Record {
        events: Vec<ValidEvent>,
        reply: Reply<RecordOutcome>,
    },
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
    /// Turns for readers: see [`MAX_READERS`].
    readers: Arc<tokio::sync::Semaphore>,
    location: Arc<Location>,
    stats: Arc<StoreStats>,
    max_clusters: usize,
}

/// Where the database is, so readers can open their own connections to it.
#[derive(Debug)]
enum Location {
    File(PathBuf),
    /// A shared-cache in-memory database: it lives while the writer's connection is open.
    Memory(String),
}

impl Location {
    fn open_writer(&self) -> Result<Connection, StoreError> {
        match self {
            Location::File(path) => open_file(path),
            Location::Memory(uri) => {
                let connection = Connection::open_with_flags(
                    uri,
                    OpenFlags::SQLITE_OPEN_READ_WRITE
                        | OpenFlags::SQLITE_OPEN_CREATE
                        | OpenFlags::SQLITE_OPEN_URI
                        | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                prepare(&connection)?;
                Ok(connection)
            }
        }
    }

    fn open_reader(&self) -> rusqlite::Result<Connection> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        match self {
            Location::File(path) => {
                let connection = Connection::open_with_flags(path, flags)?;
                connection.busy_timeout(std::time::Duration::from_secs(5))?;
                connection.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                Ok(connection)
            }
            Location::Memory(uri) => {
                let connection =
                    Connection::open_with_flags(uri, flags | OpenFlags::SQLITE_OPEN_URI)?;
                // Shared-cache readers take table locks that would block the writer; reading
                // uncommitted rows avoids them (a row may show a moment before its commit).
                connection.pragma_update(None, "read_uncommitted", true)?;
                Ok(connection)
            }
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        let location = match &config.path {
            Some(path) => Location::File(path.clone()),
            // A random name: the shared cache is per process, but nothing else may guess it.
            None => Location::Memory(format!(
                "file:hodometer-receive-{}?mode=memory&cache=shared",
                uuid::Uuid::new_v4().simple()
            )),
        };
        let connection = location.open_writer()?;
        let stats = Arc::new(StoreStats::default());
        let syncer = match &location {
            Location::File(path) => Syncer::start(&connection, path, stats.clone())?,
            Location::Memory(_) => None,
        };
        let tracked: i64 =
            connection.query_row("SELECT count(*) FROM clusters", [], |row| row.get(0))?;
        let tracked = usize::try_from(tracked).unwrap_or(0);
        stats
            .clusters_tracked
            .store(tracked as u64, Ordering::Relaxed);
        let writer = Writer {
            connection,
            keep_events: config.keep_events,
            // In memory the ids are bounded with the events.
            dedup_ids: match location {
                Location::File(_) => config.dedup_ids,
                Location::Memory(_) => config.memory_events,
            },
            dedup_seconds: config.dedup_seconds,
            max_clusters: config.max_clusters,
            tracked_clusters: tracked,
            ring: matches!(location, Location::Memory(_)).then_some(Ring {
                max_events: config.memory_events,
                events: 0,
                bytes: 0,
            }),
            stats: stats.clone(),
            syncer,
        };
        let (jobs, queue) = mpsc::channel(QUEUE);
        let writer = std::thread::Builder::new()
            .name("receive-store".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::Write(format!("cannot start the store thread: {e}")))?;
        Ok(Store {
            handle: StoreHandle {
                jobs,
                readers: Arc::new(tokio::sync::Semaphore::new(MAX_READERS)),
                location: Arc::new(location),
                stats,
                max_clusters: config.max_clusters,
            },
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
    /// Records the events of one request; returns once they are durable.
    pub async fn record(&self, events: Vec<ValidEvent>) -> Result<RecordOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job::Record { events, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    pub fn stats(&self) -> &StoreStats {
        &self.stats
    }

    /// The summary as JSON, with at most `max_clusters` clusters (those that reported last),
    /// streamed in pieces (see [`ClusterWriter`]).
    pub async fn summary_json(&self) -> Result<Pieces, StoreError> {
        self.walk_clusters(SummaryJson { first: true }).await
    }

    /// The summary, whole: for tests and small stores.
    pub async fn summary(&self) -> Result<Summary, StoreError> {
        let mut pieces = self.summary_json().await?;
        let mut text = Vec::new();
        while let Some(piece) = pieces.recv().await {
            text.extend(piece?);
        }
        serde_json::from_slice(&text).map_err(|e| StoreError::Write(e.to_string()))
    }

    /// Walks the clusters (at most `max_clusters`, those that reported last, in the order of
    /// their ids) from a read connection of its own, writing with `writer`.
    pub async fn walk_clusters<W: ClusterWriter>(&self, writer: W) -> Result<Pieces, StoreError> {
        let turn = self.turn().await?;
        let (pieces, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let location = self.location.clone();
        let max_clusters = self.max_clusters;
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let walked = location
                .open_reader()
                .map_err(StoreError::from)
                .and_then(|c| write_clusters(&c, max_clusters, writer, &mut Sink::new(&pieces)));
            if let Err(error) = walked {
                let _ = pieces.blocking_send(Err(error));
            }
        });
        Ok(receiver)
    }

    /// Waits for a reader's turn (see [`MAX_READERS`]).
    async fn turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        self.readers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)
    }

    /// One page of recorded events after the cursor `after` (a sequence number; 0 for the
    /// first page), oldest first: the cursor of the next page (none on the last) and the
    /// pieces of the page as a JSON array. The pieces are produced only as fast as the
    /// receiving end takes them, and producing stops when it is dropped. No read transaction
    /// stays open while a piece waits for the client, so a stalled client holds no snapshot
    /// (which would keep the WAL from being checkpointed).
    pub async fn events_page(&self, after: i64, limit: usize) -> Result<EventsPage, StoreError> {
        let turn = self.turn().await?;
        let (pieces, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let (cursor, next) = oneshot::channel();
        let location = self.location.clone();
        tokio::task::spawn_blocking(move || {
            let _turn = turn;
            let mut cursor = Some(cursor);
            let sent = location
                .open_reader()
                .map_err(StoreError::from)
                .and_then(|connection| {
                    write_page(
                        &connection,
                        after,
                        limit,
                        &mut cursor,
                        &mut Sink::new(&pieces),
                    )
                });
            if let Err(error) = sent {
                match cursor.take() {
                    Some(cursor) => {
                        let _ = cursor.send(Err(error));
                    }
                    None => {
                        let _ = pieces.blocking_send(Err(error));
                    }
                }
            }
        });
        let next = next.await.map_err(|_| StoreError::Closed)??;
        Ok(EventsPage {
            next,
            pieces: receiver,
        })
    }
}

/// A streamed body: pieces of about [`CHUNK_BYTES`], or the error that stopped it.
pub type Pieces = mpsc::Receiver<Result<Vec<u8>, StoreError>>;

/// A page of `/events` on its way: the next cursor is known before the first piece.
pub struct EventsPage {
    pub next: Option<i64>,
    pub pieces: mpsc::Receiver<Result<Vec<u8>, StoreError>>,
}

/// The receiving end went away: stop producing, quietly.
struct Gone;

/// Where a producer writes: a piece that is sent once it is large enough.
struct Sink<'a> {
    piece: Vec<u8>,
    pieces: &'a mpsc::Sender<Result<Vec<u8>, StoreError>>,
}

impl<'a> Sink<'a> {
    fn new(pieces: &'a mpsc::Sender<Result<Vec<u8>, StoreError>>) -> Sink<'a> {
        Sink {
            piece: Vec::new(),
            pieces,
        }
    }

    /// Sends the piece when it is large enough (or `always`); waits while the client is slow.
    /// Call it only with no statement running, so no snapshot is held while waiting.
    fn flush(&mut self, always: bool) -> Result<(), Gone> {
        if self.piece.len() < CHUNK_BYTES && !always {
            return Ok(());
        }
        self.pieces
            .blocking_send(Ok(std::mem::take(&mut self.piece)))
            .map_err(|_| Gone)
    }
}

fn write_page(
    connection: &Connection,
    after: i64,
    limit: usize,
    cursor: &mut Option<oneshot::Sender<Result<Option<i64>, StoreError>>>,
    sink: &mut Sink<'_>,
) -> Result<(), StoreError> {
    // One short snapshot for the page's bounds and the next cursor, so they agree; the events
    // are then read up to that bound in short reads of their own.
    connection.execute_batch("BEGIN")?;
    let nth = |n: usize| -> rusqlite::Result<Option<i64>> {
        connection
            .prepare_cached("SELECT seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT 1 OFFSET ?2")?
            .query_row(params![after, n as i64], |row| row.get(0))
            .optional()
    };
    let last: Option<i64> = connection
        .prepare_cached(
            "SELECT max(seq) FROM (SELECT seq FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2)",
        )?
        .query_row(params![after, limit as i64], |row| row.get(0))?;
    // Another page follows when there is an event beyond this one's last.
    let next = match nth(limit)? {
        Some(_) => last,
        None => None,
    };
    connection.execute_batch("COMMIT")?;
    if let Some(cursor) = cursor.take()
        && cursor.send(Ok(next)).is_err()
    {
        return Ok(());
    }
    sink.piece.push(b'[');
    // An empty page reads nothing.
    let last = last.unwrap_or(after);
    let mut first = true;
    let read = read_in_pieces(
        connection,
        "SELECT seq, json FROM events WHERE seq > ?1 AND seq <= ?2 ORDER BY seq",
        after,
        |from| vec![(*from).into(), last.into()],
        |row, piece| {
            if !std::mem::take(&mut first) {
                piece.push(b',');
            }
            // The stored texts are already JSON: copy them rather than parse and print again.
            let json = row.get_ref(1)?;
            piece.extend_from_slice(json.as_bytes().map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(1, json.data_type(), Box::new(e))
            })?);
            Ok(row.get(0)?)
        },
        sink,
    )?;
    if read.is_err() {
        return Ok(());
    }
    sink.piece.push(b']');
    let _ = sink.flush(true);
    Ok(())
}

/// Reads the rows of `query` after `cursor` (its parameters from `params`) in short reads: each
/// read writes rows with `row` (which returns the cursor after its row) until a piece's worth
/// is written, then its statement is reset, ending its read transaction, before the piece waits
/// for the client. `Err(Gone)` inside when the client went away.
fn read_in_pieces<C>(
    connection: &Connection,
    query: &str,
    mut cursor: C,
    params: impl Fn(&C) -> Vec<rusqlite::types::Value>,
    mut row: impl FnMut(&rusqlite::Row<'_>, &mut Vec<u8>) -> Result<C, StoreError>,
    sink: &mut Sink<'_>,
) -> Result<Result<(), Gone>, StoreError> {
    loop {
        let mut read_any = false;
        {
            let mut statement = connection.prepare_cached(query)?;
            let mut rows = statement.query(rusqlite::params_from_iter(params(&cursor)))?;
            while let Some(found) = rows.next()? {
                read_any = true;
                cursor = row(found, &mut sink.piece)?;
                if sink.piece.len() >= CHUNK_BYTES {
                    break;
                }
            }
        }
        if !read_any {
            return Ok(Ok(()));
        }
        if let Err(gone) = sink.flush(false) {
            return Ok(Err(gone));
        }
    }
}

/// Walks the clusters with `writer`, a few at a time: see [`ClusterWriter`].
fn write_clusters<W: ClusterWriter>(
    connection: &Connection,
    max_clusters: usize,
    mut writer: W,
    sink: &mut Sink<'_>,
) -> Result<(), StoreError> {
    let (totals, cap) = {
        connection.execute_batch("BEGIN")?;
        let (events, clusters_tracked) = connection.query_row(
            "SELECT coalesce(sum(events), 0), count(*) FROM clusters",
            [],
            |row| Ok((row.get::<_, u64>(0)?, row.get::<_, u64>(1)?)),
        )?;
        // Beyond the cap (a store kept from a run with a higher --max-clusters), only those
        // that reported last: at or above the cap-th in (last_time desc, id) order.
        let cap: Option<(i64, String)> = if clusters_tracked > max_clusters as u64 {
            connection
                .query_row(
                    "SELECT last_time, distinct_id FROM clusters
                     ORDER BY last_time DESC, distinct_id LIMIT 1 OFFSET ?1",
                    [max_clusters as i64 - 1],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?
        } else {
            None
        };
        connection.execute_batch("COMMIT")?;
        (
            Totals {
                events,
                clusters_tracked,
            },
            cap,
        )
    };
    writer.head(totals, &mut sink.piece);
    let capped = cap.is_some();
    let (cap_time, cap_id) = cap.unwrap_or_default();
    let columns = if W::EXTENSIONS {
        "distinct_id, events, first_time, last_time, metrics, extensions"
    } else {
        // The extensions column is last and not named: SQLite never reads its pages.
        "distinct_id, events, first_time, last_time, metrics"
    };
    let query = format!(
        "SELECT {columns} FROM clusters WHERE distinct_id > ?1
           AND (?4 = 0 OR last_time > ?2 OR (last_time = ?2 AND distinct_id <= ?3))
         ORDER BY distinct_id"
    );
    for pass in 0..writer.passes() {
        writer.start_pass(pass, &mut sink.piece);
        let read = read_in_pieces(
            connection,
            &query,
            String::new(),
            |from| {
                vec![
                    from.clone().into(),
                    cap_time.into(),
                    cap_id.clone().into(),
                    capped.into(),
                ]
            },
            |row, piece| {
                let object = |i: usize| -> rusqlite::Result<Map<String, Value>> {
                    let text: String = row.get(i)?;
                    // Written by this module from a JSON object; anything else reads as none.
                    Ok(serde_json::from_str(&text).unwrap_or_default())
                };
                let cluster = ClusterSummary {
                    cluster_id: row.get(0)?,
                    events: row.get(1)?,
                    first_time: row.get(2)?,
                    last_time: row.get(3)?,
                    metrics: object(4)?,
                    extensions: if W::EXTENSIONS {
                        object(5)?
                    } else {
                        Map::new()
                    },
                };
                writer.cluster(pass, &cluster, piece);
                Ok(cluster.cluster_id)
            },
            sink,
        )?;
        if read.is_err() {
            return Ok(());
        }
    }
    writer.tail(&mut sink.piece);
    let _ = sink.flush(true);
    Ok(())
}

/// Creates the file owner-only whatever the umask, refusing a symbolic link planted at the
/// path (another user could aim it at a file of ours), then opens it in SQLite. The store and
/// its `-wal` and `-shm` companions must be regular files of this user: another user's file
/// (planted in a shared directory, say) is refused with its owner and mode, and group or other
/// bits on a file of ours (a pod's `fsGroup` adds them at mount) are removed.
fn open_file(path: &Path) -> Result<Connection, StoreError> {
    let open_error = |reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        claim_own_file(Path::new(&file)).map_err(|reason| match suffix {
            "" => open_error(reason),
            _ => open_error(format!("{}: {reason}", Path::new(&file).display())),
        })?;
    }
    let sqlite_error = |e: rusqlite::Error| open_error(e.to_string());
    // SQLite creates the -wal and -shm files with the main file's permissions.
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_NOFOLLOW,
    )
    .map_err(sqlite_error)?;
    // WAL, so readers never block the writer; FULL sync (a commit is on disk when it returns)
    // until the syncer takes the sync over.
    let _mode: String = connection
        .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    connection
        .execute_batch("PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;")
        .map_err(sqlite_error)?;
    let found: i64 = connection
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(sqlite_error)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::Version {
            path: path.display().to_string(),
            found,
        });
    }
    prepare(&connection).map_err(|e| match e {
        StoreError::Sqlite(source) => sqlite_error(source),
        other => other,
    })?;
    Ok(connection)
}

/// Opens (creating, 0600) one of the store's files and makes sure it is a regular file of this
/// user with no group or other access; the reason when it is not.
fn claim_own_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => "it is a symbolic link; refusing to follow it".to_string(),
            Some(libc::ENXIO) => "it is a FIFO; refusing to use it".to_string(),
            _ => e.to_string(),
        })?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    let mode = meta.mode() & 0o7777;
    if !meta.file_type().is_file() {
        return Err(format!(
            "it is not a regular file (mode {:o}); refusing to use it",
            meta.mode()
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if meta.uid() != me {
        return Err(format!(
            "it belongs to uid {} (mode {mode:04o}), not to this user (uid {me}); refusing to \
             use another user's file",
            meta.uid()
        ));
    }
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(|e| format!("cannot remove group and other access (mode {mode:04o}): {e}"))?;
    }
    Ok(())
}

fn prepare(connection: &Connection) -> Result<(), StoreError> {
    connection.execute_batch(SCHEMA)?;
    let has_column = |table: &str, column: &str| -> rusqlite::Result<bool> {
        connection.query_row(
            "SELECT count(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            [table, column],
            |row| row.get(0),
        )
    };
    // Version 1 kept every id forever, in a table without a rowid (so without an order): the
    // ids it holds start their window now.
    if has_column("seen", "insert_id")? && !has_column("seen", "at")? {
        let now = i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX);
        connection.execute_batch("BEGIN IMMEDIATE")?;
        connection.execute_batch(
            "CREATE TABLE seen_v2 (insert_id TEXT PRIMARY KEY, at INTEGER NOT NULL DEFAULT 0);",
        )?;
        connection.execute(
            "INSERT INTO seen_v2 (insert_id, at) SELECT insert_id, ?1 FROM seen",
            [now],
        )?;
        connection.execute_batch("DROP TABLE seen; ALTER TABLE seen_v2 RENAME TO seen; COMMIT;")?;
    }
    connection.execute_batch(SEEN)?;
    // Version 1 kept the extensions inside `metrics`: move them to their own column, one row
    // at a time, so not even this loads every cluster at once.
    if !has_column("clusters", "extensions")? {
        connection.execute_batch("BEGIN IMMEDIATE")?;
        connection.execute_batch(
            "ALTER TABLE clusters ADD COLUMN extensions TEXT NOT NULL DEFAULT '{}';",
        )?;
        let mut cursor = String::new();
        loop {
            let row: Option<(String, String)> = connection
                .query_row(
                    "SELECT distinct_id, metrics FROM clusters
                     WHERE distinct_id > ?1 AND instr(metrics, '\"ext.') > 0
                     ORDER BY distinct_id LIMIT 1",
                    [&cursor],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()?;
            let Some((id, tracked)) = row else { break };
            let tracked: Map<String, Value> = serde_json::from_str(&tracked).unwrap_or_default();
            let (metrics, extensions) = split_tracked(&tracked);
            connection.execute(
                "UPDATE clusters SET metrics = ?2, extensions = ?3 WHERE distinct_id = ?1",
                params![id, metrics, extensions],
            )?;
            cursor = id;
        }
        connection.execute_batch("COMMIT")?;
    }
    connection.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// What the writer tracks for a cluster, as the two JSON objects of its row: the metrics, and
/// the extensions by key (without `ext.`).
fn split_tracked(tracked: &Map<String, Value>) -> (String, String) {
    let (mut metrics, mut extensions) = (Map::new(), Map::new());
    for (name, value) in tracked {
        match name.strip_prefix(EXTENSION_PREFIX) {
            Some(key) => extensions.insert(key.to_string(), value.clone()),
            None => metrics.insert(name.clone(), value.clone()),
        };
    }
    (
        Value::Object(metrics).to_string(),
        Value::Object(extensions).to_string(),
    )
}

/// The in-memory ring's bounds and what it holds now.
struct Ring {
    max_events: usize,
    events: usize,
    bytes: u64,
}

struct Writer {
    connection: Connection,
    keep_events: bool,
    /// The deduplication window, by count and by age.
    dedup_ids: usize,
    dedup_seconds: u64,
    max_clusters: usize,
    tracked_clusters: usize,
    ring: Option<Ring>,
    stats: Arc<StoreStats>,
    /// A file store's durability; `None` in memory, or when SQLite syncs in each commit.
    syncer: Option<Syncer>,
}

struct Pending {
    events: Vec<ValidEvent>,
    reply: Reply<RecordOutcome>,
}

/// One cluster's share of a group: its row is written once.
struct ClusterDelta<'a> {
    events: i64,
    first_time: i64,
    last_time: i64,
    metrics: &'a Map<String, Value>,
}

/// What a group changes besides the requests' outcomes, applied once it is committed.
#[derive(Default)]
struct GroupEffects {
    new_clusters: usize,
    dropped: u64,
    ring_events: usize,
    ring_bytes: u64,
    forgotten: (usize, u64),
    ids_forgotten: u64,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Job>) {
        let mut closing = false;
        while !closing {
            let Some(first) = queue.blocking_recv() else {
                break;
            };
            // Take whatever else is already waiting: they share one commit.
            let mut writes = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match job {
                    Job::Record { events, reply } => writes.push(Pending { events, reply }),
                    Job::Close => closing = true,
                }
                if !closing && writes.len() < MAX_GROUP {
                    next = queue.try_recv().ok();
                }
            }
            self.commit_group(writes);
        }
        // Every group committed is answered before the connection closes.
        if let Some(syncer) = self.syncer.take() {
            syncer.finish();
        }
    }

    fn commit_group(&mut self, group: Vec<Pending>) {
        if group.is_empty() {
            return;
        }
        let start = std::time::Instant::now();
        let written = self.write(&group);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        add_elapsed(&self.stats.commit_nanos, start);
        match written {
            Ok((outcomes, effects)) => {
                self.apply(effects);
                let answers = group
                    .into_iter()
                    .zip(outcomes)
                    .map(|(pending, outcome)| (pending.reply, outcome))
                    .collect();
                match &self.syncer {
                    Some(syncer) => syncer.submit(answers),
                    None => {
                        // A file store without a syncer: SQLite synced within the commit.
                        if self.ring.is_none() {
                            self.stats.syncs.fetch_add(1, Ordering::Relaxed);
                        }
                        answer_all(answers, &Ok(()));
                    }
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

    fn apply(&mut self, effects: GroupEffects) {
        self.tracked_clusters += effects.new_clusters;
        let stats = &self.stats;
        stats
            .clusters_tracked
            .store(self.tracked_clusters as u64, Ordering::Relaxed);
        stats
            .cluster_events_dropped
            .fetch_add(effects.dropped, Ordering::Relaxed);
        stats
            .dedup_ids_forgotten
            .fetch_add(effects.ids_forgotten, Ordering::Relaxed);
        if let Some(ring) = &mut self.ring {
            ring.events = ring.events + effects.ring_events - effects.forgotten.0;
            ring.bytes = ring.bytes + effects.ring_bytes - effects.forgotten.1;
            stats
                .ring_events_forgotten
                .fetch_add(effects.forgotten.0 as u64, Ordering::Relaxed);
        }
    }

    /// All of the group or none of it: a failed commit records nothing, and every sender in
    /// the group is told so and can retry.
    fn write(&mut self, group: &[Pending]) -> rusqlite::Result<(Vec<RecordOutcome>, GroupEffects)> {
        let received_at = i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX);
        let transaction = self.connection.transaction()?;
        let mut outcomes = Vec::with_capacity(group.len());
        let mut effects = GroupEffects::default();
        let mut clusters: HashMap<&str, ClusterDelta> = HashMap::new();
        let mut arrival: Vec<&str> = Vec::new();
        {
            let mut seen = transaction
                .prepare_cached("INSERT OR IGNORE INTO seen (insert_id, at) VALUES (?1, ?2)")?;
            let mut event = transaction.prepare_cached(
                "INSERT INTO events (insert_id, distinct_id, time, received_at, json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for pending in group {
                let mut outcome = RecordOutcome::default();
                for e in &pending.events {
                    if seen.execute(params![e.insert_id, received_at])? == 0 {
                        outcome.duplicates += 1;
                        continue;
                    }
                    outcome.recorded += 1;
                    // Clusters are counted only from events that name theirs.
                    if e.identifies_cluster {
                        if !clusters.contains_key(e.distinct_id.as_str()) {
                            arrival.push(e.distinct_id.as_str());
                        }
                        clusters
                            .entry(&e.distinct_id)
                            .and_modify(|delta| {
                                delta.events += 1;
                                delta.first_time = delta.first_time.min(e.time);
                                // On equal times the later arrival wins, as across groups.
                                if e.time >= delta.last_time {
                                    delta.last_time = e.time;
                                    delta.metrics = &e.metrics;
                                }
                            })
                            .or_insert(ClusterDelta {
                                events: 1,
                                first_time: e.time,
                                last_time: e.time,
                                metrics: &e.metrics,
                            });
                    }
                    if self.keep_events {
                        event.execute(params![
                            e.insert_id,
                            e.distinct_id,
                            e.time,
                            received_at,
                            e.json
                        ])?;
                        effects.ring_events += 1;
                        effects.ring_bytes += e.json.len() as u64;
                    }
                }
                outcomes.push(outcome);
            }
            let mut update = transaction.prepare_cached(UPDATE_CLUSTER)?;
            let mut insert = transaction.prepare_cached(INSERT_CLUSTER)?;
            // In order of first arrival: which clusters the cap admits must not depend on a
            // hash map's iteration order.
            for id in &arrival {
                let delta = &clusters[id];
                let (metrics, extensions) = split_tracked(delta.metrics);
                let values = params![
                    id,
                    delta.events,
                    delta.first_time,
                    delta.last_time,
                    metrics,
                    extensions
                ];
                if update.execute(values)? > 0 {
                    continue;
                }
                if self.tracked_clusters + effects.new_clusters < self.max_clusters {
                    insert.execute(values)?;
                    effects.new_clusters += 1;
                } else {
                    effects.dropped += delta.events as u64;
                }
            }
        }
        if let Some(ring) = &self.ring {
            effects.forgotten = trim_ring(&transaction, ring, &effects)?;
        }
        let cutoff =
            received_at.saturating_sub(i64::try_from(self.dedup_seconds).unwrap_or(i64::MAX));
        effects.ids_forgotten = trim_seen(&transaction, self.dedup_ids, cutoff)?;
        transaction.commit()?;
        Ok((outcomes, effects))
    }
}

/// A committed request's answer, sent once the commit is durable.
type Answer = (Reply<RecordOutcome>, RecordOutcome);

/// Sends each request its outcome, or the reason its group is not durable.
fn answer_all(answers: Vec<Answer>, synced: &Result<(), String>) {
    for (reply, outcome) in answers {
        let _ = reply.send(match synced {
            Ok(()) => Ok(outcome),
            Err(reason) => Err(StoreError::Write(reason.clone())),
        });
    }
}

/// The thread that syncs a file store's WAL and then answers the groups it made durable.
struct Syncer {
    committed: std_mpsc::Sender<Vec<Answer>>,
    thread: JoinHandle<()>,
}

impl Syncer {
    /// Takes over the sync of each commit from SQLite; `None` (and SQLite keeps syncing in
    /// each commit, `FULL`) when the WAL cannot be opened.
    fn start(
        connection: &Connection,
        path: &Path,
        stats: Arc<StoreStats>,
    ) -> Result<Option<Syncer>, StoreError> {
        // Only a WAL commit is made durable by syncing the WAL; in any other journal mode
        // (a file system without shared memory, say) SQLite keeps syncing as it does.
        let mode: String = connection.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Ok(None);
        }
        // SQLite keeps the WAL (this name, this file) while the writer's connection is open:
        // it is removed only when the last connection closes, after the syncer has finished.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&wal)
        {
            Ok(wal) => wal,
            Err(error) => {
                tracing::warn!(%error, "cannot open the store's WAL; SQLite syncs each commit itself");
                return Ok(None);
            }
        };
        let (committed, groups) = std_mpsc::channel::<Vec<Answer>>();
        let thread = std::thread::Builder::new()
            .name("receive-sync".into())
            .spawn(move || {
                // After a failed sync the kernel may have dropped the unwritten pages and a
                // later sync would succeed without them, so nothing is acknowledged again until
                // a restart has SQLite recover what is really on disk.
                let mut durable = Ok(());
                while let Ok(mut answers) = groups.recv() {
                    // Every group committed by now is made durable by the same sync.
                    while let Ok(more) = groups.try_recv() {
                        answers.extend(more);
                    }
                    if durable.is_ok() {
                        let start = std::time::Instant::now();
                        let synced = wal.sync_all();
                        add_elapsed(&stats.sync_nanos, start);
                        durable = synced.map_err(|error| {
                            tracing::error!(
                                %error,
                                "cannot sync the store to disk; no event is acknowledged until the receiver restarts"
                            );
                            format!("cannot sync the store to disk: {error}")
                        });
                        stats.syncs.fetch_add(1, Ordering::Relaxed);
                    }
                    answer_all(answers, &durable);
                }
            })
            .map_err(|e| StoreError::Write(format!("cannot start the sync thread: {e}")))?;
        // Only now that the syncer runs may commits leave the sync to it.
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        Ok(Some(Syncer { committed, thread }))
    }

    fn submit(&self, answers: Vec<Answer>) {
        if let Err(std_mpsc::SendError(answers)) = self.committed.send(answers) {
            answer_all(answers, &Err("the store's sync thread has stopped".into()));
        }
    }

    /// Answers what was submitted, then stops.
    fn finish(self) {
        drop(self.committed);
        if self.thread.join().is_err() {
            tracing::warn!("the store's sync thread did not finish cleanly");
        }
    }
}

/// Forgets the `$insert_id`s beyond the deduplication window: more than `max_ids`, or
/// remembered since before `cutoff` (Unix seconds). Returns how many were forgotten. The rowid
/// orders the ids by arrival, so both bounds cut from the oldest end, and the age bound reads
/// only the rows it deletes and one more.
fn trim_seen(
    transaction: &rusqlite::Transaction<'_>,
    max_ids: usize,
    cutoff: i64,
) -> rusqlite::Result<u64> {
    let by_count = transaction
        .prepare_cached("DELETE FROM seen WHERE rowid <= (SELECT max(rowid) FROM seen) - ?1")?
        .execute([max_ids as i64])?;
    let by_age = transaction
        .prepare_cached(
            "DELETE FROM seen WHERE rowid < coalesce(
                 (SELECT rowid FROM seen WHERE at >= ?1 ORDER BY rowid LIMIT 1),
                 (SELECT max(rowid) + 1 FROM seen))",
        )?
        .execute([cutoff])?;
    Ok((by_count + by_age) as u64)
}

/// Forgets the oldest events beyond the ring's bounds; returns the events and bytes
/// forgotten.
fn trim_ring(
    transaction: &rusqlite::Transaction<'_>,
    ring: &Ring,
    effects: &GroupEffects,
) -> rusqlite::Result<(usize, u64)> {
    let mut events = ring.events + effects.ring_events;
    let mut bytes = ring.bytes + effects.ring_bytes;
    if events <= ring.max_events && bytes <= MEMORY_EVENT_BYTES {
        return Ok((0, 0));
    }
    let (mut forgotten, mut freed, mut last) = (0, 0, None);
    {
        let mut oldest = transaction
            .prepare_cached("SELECT seq, length(CAST(json AS BLOB)) FROM events ORDER BY seq")?;
        let mut rows = oldest.query([])?;
        while events > ring.max_events || bytes > MEMORY_EVENT_BYTES {
            let Some(row) = rows.next()? else { break };
            let size = row.get::<_, i64>(1)? as u64;
            last = Some(row.get::<_, i64>(0)?);
            events -= 1;
            bytes -= size;
            forgotten += 1;
            freed += size;
        }
    }
    if let Some(seq) = last {
        transaction.execute("DELETE FROM events WHERE seq <= ?1", [seq])?;
    }
    Ok((forgotten, freed))
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
            identifies_cluster: true,
            time,
            metrics,
            json: json!({"event": "e", "properties": {"$insert_id": insert_id}}).to_string(),
        }
    }

    fn config(path: Option<&Path>, keep_events: bool) -> StoreConfig {
        StoreConfig {
            path: path.map(Path::to_path_buf),
            keep_events,
            max_clusters: 100,
            memory_events: 1000,
            dedup_ids: 1000,
            dedup_seconds: 86_400,
        }
    }

    /// A file store with whole events in a fresh directory, and its path.
    fn file_store() -> (tempfile::TempDir, PathBuf, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        let store = Store::open(&config(Some(&path), true)).expect("open");
        (dir, path, store)
    }

    /// Every page, joined, and how many pages there were.
    async fn all_events(handle: &StoreHandle, limit: usize) -> (Vec<Value>, usize) {
        let (mut events, mut pages, mut after) = (Vec::new(), 0, 0);
        loop {
            let mut page = handle.events_page(after, limit).await.expect("a page");
            let mut text = Vec::new();
            while let Some(piece) = page.pieces.recv().await {
                text.extend(piece.expect("a piece"));
            }
            let got: Vec<Value> = serde_json::from_slice(&text).expect("a JSON array");
            pages += 1;
            events.extend(got);
            match page.next {
                Some(next) => after = next,
                None => return (events, pages),
            }
        }
    }

    #[tokio::test]
    async fn duplicates_are_recognised_within_a_request_and_across_requests() {
        let store = Store::open(&config(None, true)).expect("open");
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
        assert_eq!(all_events(&handle, 10).await.0.len(), 2);
        store.close().await;
    }

    #[tokio::test]
    async fn only_events_that_name_their_cluster_count_as_a_cluster() {
        let store = Store::open(&config(None, true)).expect("open");
        let handle = store.handle();
        let anonymous = |id: &str| ValidEvent {
            identifies_cluster: false,
            ..event(id, id, 100, 1)
        };
        let outcome = handle
            .record(vec![
                event("named", "c", 100, 7),
                anonymous("a1"),
                anonymous("a2"),
            ])
            .await
            .expect("record");
        assert_eq!(outcome.recorded, 3, "every event is recorded");
        let summary = handle.summary().await.expect("summary");
        assert_eq!(summary.clusters_tracked, 1, "{summary:?}");
        assert_eq!(summary.clusters[0].cluster_id, "c");
        assert_eq!(all_events(&handle, 10).await.0.len(), 3);
        store.close().await;
    }

    #[tokio::test]
    async fn metrics_follow_the_latest_event_time_not_arrival() {
        let store = Store::open(&config(None, false)).expect("open");
        let handle = store.handle();
        handle
            .record(vec![event("new", "c", 200, 20)])
            .await
            .expect("record");
        handle
            .record(vec![event("old", "c", 100, 10), event("older", "c", 50, 5)])
            .await
            .expect("record");
        let summary = handle.summary().await.expect("summary");
        assert_eq!(summary.events, 3);
        let cluster = &summary.clusters[0];
        assert_eq!((cluster.first_time, cluster.last_time), (50, 200));
        assert_eq!(cluster.metrics.get("model_count"), Some(&json!(20)));
        assert!(
            all_events(&handle, 10).await.0.is_empty(),
            "summary keeps no whole events"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn pages_return_every_event_once_in_order() {
        let store = Store::open(&config(None, true)).expect("open");
        let handle = store.handle();
        let ids: Vec<String> = (0..25).map(|i| format!("e{i}")).collect();
        for chunk in ids.chunks(7) {
            let events = chunk.iter().map(|id| event(id, "c", 1, 1)).collect();
            handle.record(events).await.expect("record");
        }
        let (events, pages) = all_events(&handle, 10).await;
        let got: Vec<&str> = events
            .iter()
            .map(|e| e["properties"]["$insert_id"].as_str().expect("id"))
            .collect();
        assert_eq!(got, ids);
        assert_eq!(pages, 3);
        store.close().await;
    }

    #[tokio::test]
    async fn clusters_beyond_the_cap_are_dropped_and_counted() {
        let mut capped = config(None, false);
        capped.max_clusters = 2;
        let store = Store::open(&capped).expect("open");
        let handle = store.handle();
        handle
            .record(vec![
                event("1", "a", 1, 1),
                event("2", "b", 1, 1),
                event("3", "c", 1, 1),
                event("4", "c", 2, 1),
            ])
            .await
            .expect("record");
        handle
            .record(vec![event("5", "a", 2, 1), event("6", "d", 1, 1)])
            .await
            .expect("record");
        let summary = handle.summary().await.expect("summary");
        let ids: Vec<&str> = summary
            .clusters
            .iter()
            .map(|c| c.cluster_id.as_str())
            .collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&"a"), "a tracked cluster keeps being updated");
        assert_eq!(summary.clusters_tracked, 2);
        let stats = handle.stats();
        assert_eq!(stats.cluster_events_dropped.load(Ordering::Relaxed), 3);
        store.close().await;
    }

    #[tokio::test]
    async fn in_memory_the_ring_forgets_the_oldest_events_and_ids() {
        let mut small = config(None, true);
        small.memory_events = 5;
        let store = Store::open(&small).expect("open");
        let handle = store.handle();
        for i in 0..12 {
            handle
                .record(vec![event(&format!("e{i}"), "c", i, 1)])
                .await
                .expect("record");
        }
        let (events, _) = all_events(&handle, 100).await;
        let got: Vec<&str> = events
            .iter()
            .map(|e| e["properties"]["$insert_id"].as_str().expect("id"))
            .collect();
        assert_eq!(got, ["e7", "e8", "e9", "e10", "e11"]);
        assert_eq!(
            handle.stats().ring_events_forgotten.load(Ordering::Relaxed),
            7
        );
        let again = handle
            .record(vec![event("e11", "c", 11, 1), event("e0", "c", 0, 1)])
            .await
            .expect("record");
        assert_eq!(
            (again.duplicates, again.recorded),
            (1, 1),
            "a recent id is still known, a forgotten one is not"
        );
        store.close().await;
    }

    #[tokio::test]
    async fn a_file_store_keeps_everything_across_reopening() {
        let (_dir, path, store) = file_store();
        store
            .handle()
            .record(vec![event("a", "c", 1, 1)])
            .await
            .expect("record");
        store.close().await;

        let reopened = Store::open(&config(Some(&path), true)).expect("reopen");
        let handle = reopened.handle();
        let outcome = handle
            .record(vec![event("a", "c", 1, 1)])
            .await
            .expect("record");
        assert_eq!(outcome.duplicates, 1, "dedup survives a restart");
        assert_eq!(handle.summary().await.expect("summary").events, 1);
        assert_eq!(all_events(&handle, 10).await.0.len(), 1);
        reopened.close().await;
    }

    #[tokio::test]
    async fn a_file_store_answers_each_request_only_after_a_sync() {
        let (_dir, _, store) = file_store();
        let handle = store.handle();
        for i in 0..5 {
            handle
                .record(vec![event(&format!("e{i}"), "c", i, 1)])
                .await
                .expect("record");
            // One request at a time: each answer waited for a commit and a sync of its own.
            let stats = handle.stats();
            assert_eq!(stats.syncs.load(Ordering::Relaxed), i as u64 + 1);
            assert_eq!(stats.commits.load(Ordering::Relaxed), i as u64 + 1);
        }
        // Each sync and each commit took some time, and the time was counted.
        let stats = handle.stats();
        assert!(stats.sync_nanos.load(Ordering::Relaxed) >= 5);
        assert!(stats.commit_nanos.load(Ordering::Relaxed) >= 5);
        store.close().await;
    }

    #[tokio::test]
    async fn requests_waiting_together_share_one_sync() {
        let (_dir, path, store) = file_store();
        let handle = store.handle();
        // Another connection holds the write lock, so the writer cannot commit until every
        // request below is waiting for it.
        let blocker = Connection::open(&path).expect("a second connection");
        blocker
            .execute_batch("BEGIN IMMEDIATE")
            .expect("write lock");
        let requests: Vec<_> = (0..20)
            .map(|i| {
                let handle = handle.clone();
                tokio::spawn(async move {
                    handle
                        .record(vec![event(&format!("e{i}"), "c", i, 1)])
                        .await
                })
            })
            .collect();
        // On this single-threaded runtime each yield lets every spawned request run up to
        // waiting for its answer, that is, past handing its events to the writer.
        for _ in 0..requests.len() {
            tokio::task::yield_now().await;
        }
        blocker.execute_batch("ROLLBACK").expect("release");
        for request in requests {
            let outcome = request.await.expect("task").expect("recorded");
            assert_eq!(outcome.recorded, 1);
        }
        // The writer took whatever was queued when it woke (and then waited on the lock), then
        // all the rest: two groups at most, each made durable by one sync or both by one.
        let syncs = handle.stats().syncs.load(Ordering::Relaxed);
        assert!((1..=2).contains(&syncs), "{syncs} syncs for 20 requests");
        store.close().await;
    }

    #[tokio::test]
    async fn a_store_made_with_the_unique_index_on_insert_id_is_still_written_and_deduplicated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        {
            // Version 1 before the index was dropped, with one event recorded: extensions
            // inside `metrics`, every id kept forever.
            let old = Connection::open(&path).expect("create");
            old.execute_batch(
                &SCHEMA
                    .replace(
                        "insert_id TEXT NOT NULL,",
                        "insert_id TEXT NOT NULL UNIQUE,",
                    )
                    .replace(",\n        extensions TEXT NOT NULL DEFAULT '{}'", ""),
            )
            .expect("old schema");
            old.execute_batch("CREATE TABLE seen (insert_id TEXT PRIMARY KEY) WITHOUT ROWID;")
                .expect("seen");
            old.execute_batch(
                "INSERT INTO seen VALUES ('a');
                 INSERT INTO events (insert_id, distinct_id, time, received_at, json)
                 VALUES ('a', 'c', 1, 1, '{}');
                 INSERT INTO clusters VALUES ('c', 1, 1, 1, '{\"model_count\":3,\"ext.team\":\"a\"}');
                 PRAGMA user_version = 1;",
            )
            .expect("an old event");
            let unique: i64 = old
                .query_row(
                    "SELECT count(*) FROM pragma_index_list('events') WHERE \"unique\"",
                    [],
                    |row| row.get(0),
                )
                .expect("indexes");
            assert_eq!(unique, 1, "the old layout has the index");
        }
        let store = Store::open(&config(Some(&path), true)).expect("open");
        let handle = store.handle();
        let summary = handle.summary().await.expect("summary");
        let cluster = &summary.clusters[0];
        assert_eq!(
            Value::Object(cluster.metrics.clone()),
            json!({"model_count": 3})
        );
        assert_eq!(
            Value::Object(cluster.extensions.clone()),
            json!({"team": "a"})
        );
        let outcome = handle
            .record(vec![event("a", "c", 1, 1), event("b", "c", 2, 1)])
            .await
            .expect("record");
        assert_eq!((outcome.recorded, outcome.duplicates), (1, 1));
        assert_eq!(all_events(&handle, 10).await.0.len(), 2);
        store.close().await;
    }

    #[tokio::test]
    async fn a_file_store_remembers_ids_within_its_window_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        let mut small = config(Some(&path), false);
        small.dedup_ids = 3;
        let store = Store::open(&small).expect("open");
        let handle = store.handle();
        for i in 0..5 {
            handle
                .record(vec![event(&format!("e{i}"), "c", i, 1)])
                .await
                .expect("record");
        }
        let again = handle
            .record(vec![event("e4", "c", 4, 1), event("e0", "c", 0, 1)])
            .await
            .expect("record");
        assert_eq!((again.duplicates, again.recorded), (1, 1));
        store.close().await;
        let ids: i64 = Connection::open(&path)
            .expect("open")
            .query_row("SELECT count(*) FROM seen", [], |row| row.get(0))
            .expect("count");
        assert_eq!(ids, 3);
    }

    #[test]
    fn a_file_that_is_not_a_store_is_refused_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("not-a-db");
        std::fs::write(&path, vec![b'x'; 4096]).expect("write");
        let error = Store::open(&config(Some(&path), false))
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("not-a-db"), "{error}");
    }

    #[test]
    fn group_and_other_bits_on_our_own_store_files_are_removed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.db");
        let store = Store::open(&config(Some(&path), false)).expect("open");
        drop(store);
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            if file.exists() {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o660))
                    .expect("chmod");
            }
        }
        let store = Store::open(&config(Some(&path), false)).expect("reopen");
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        drop(store);
    }

    #[test]
    fn a_symbolic_link_at_the_store_path_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("target");
        std::fs::write(&target, b"precious").expect("write");
        let path = dir.path().join("events.db");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let error = Store::open(&config(Some(&path), false))
            .err()
            .expect("refused")
            .to_string();
        assert!(error.contains("symbolic link"), "{error}");
        assert_eq!(std::fs::read(&target).expect("read"), b"precious");
    }
}
