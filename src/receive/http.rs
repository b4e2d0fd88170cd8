//! The receiver's HTTP routes: `/track`, `/events`, `/metrics` and `/healthz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::json;
use tokio_stream::wrappers::ReceiverStream;

use super::Record;
use super::decode::{self, TrackRequest};
use super::exposition::{self, Counts, MetricsText};
use super::store::{EventsPage, Pieces, StoreError, StoreHandle};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Largest `/track` body accepted (1 MiB); a larger one is refused before it is read whole.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `/events` pages hold this many events unless `limit` asks for fewer (or more, up to
/// [`MAX_PAGE`]).
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

pub(super) struct AppState {
    pub record: Record,
    /// `None` with `--record none`.
    pub store: Option<StoreHandle>,
    pub counters: Arc<Counters>,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    pub body_budget: BodyBudget,
}

/// The bytes of request bodies buffered at once, over every connection (`--body-memory`): a
/// body is admitted only while it fits, so the memory bodies take is fixed, whatever
/// `--max-connections` allows.
#[derive(Clone)]
pub(super) struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub fn new(bytes: usize) -> BodyBudget {
        BodyBudget(Arc::new(Semaphore::new(bytes.min(Semaphore::MAX_PERMITS))))
    }

    /// Takes `bytes` more for `held`, or says the budget is spent.
    fn take(&self, held: &mut Option<OwnedSemaphorePermit>, bytes: usize) -> Result<(), BodyError> {
        if bytes == 0 {
            return Ok(());
        }
        let more = u32::try_from(bytes)
            .ok()
            .and_then(|n| self.0.clone().try_acquire_many_owned(n).ok())
            .ok_or(BodyError::Busy)?;
        match held {
            Some(permit) => permit.merge(more),
            None => *held = Some(more),
        }
        Ok(())
    }
}

#[derive(Default)]
pub(super) struct Counters {
    received: AtomicU64,
    duplicates: AtomicU64,
    rejected_invalid: AtomicU64,
    rejected_too_large: AtomicU64,
    rejected_store: AtomicU64,
    rejected_body_timeout: AtomicU64,
    rejected_body_memory: AtomicU64,
    /// Connections refused at once because `--max-connections` were open.
    pub connections_refused: AtomicU64,
    pub connections_open: AtomicU64,
}

impl Counters {
    fn counts(&self, store: Option<&StoreHandle>) -> Counts {
        let stats = store.map(StoreHandle::stats);
        let stat = |read: fn(&super::store::StoreStats) -> &AtomicU64| {
            stats.map_or(0, |stats| read(stats).load(Ordering::Relaxed))
        };
        Counts {
            received: self.received.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            rejected_invalid: self.rejected_invalid.load(Ordering::Relaxed),
            rejected_too_large: self.rejected_too_large.load(Ordering::Relaxed),
            rejected_store: self.rejected_store.load(Ordering::Relaxed),
            rejected_body_timeout: self.rejected_body_timeout.load(Ordering::Relaxed),
            rejected_body_memory: self.rejected_body_memory.load(Ordering::Relaxed),
            dedup_ids_forgotten: stat(|s| &s.dedup_ids_forgotten),
            connections_refused: self.connections_refused.load(Ordering::Relaxed),
            connections_open: self.connections_open.load(Ordering::Relaxed),
            clusters_tracked: stat(|s| &s.clusters_tracked),
            cluster_events_dropped: stat(|s| &s.cluster_events_dropped),
            ring_events_forgotten: stat(|s| &s.ring_events_forgotten),
            store_syncs: stat(|s| &s.syncs),
            store_sync_nanos: stat(|s| &s.sync_nanos),
            store_commits: stat(|s| &s.commits),
            store_commit_nanos: stat(|s| &s.commit_nanos),
        }
    }
}

pub(super) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        // JavaScript senders post to `/track/`, the others to `/track`.
        .route("/track", get(track).post(track))
        .route("/track/", get(track).post(track))
        .route("/events", get(events))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state)
}

async fn track(
    State(state): State<Arc<AppState>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let counters = &state.counters;
    let read = tokio::time::timeout(
        state.body_timeout,
        read_capped(&headers, body, &state.body_budget),
    )
    .await;
    // The budget taken stays held until the request is answered: its events are in memory until
    // then.
    let (body, _budget) = match read.unwrap_or(Err(BodyError::TimedOut)) {
        Ok(body) => body,
        Err(BodyError::Busy) => {
            counters
                .rejected_body_memory
                .fetch_add(1, Ordering::Relaxed);
            let mut response = answer(
                decode::query_asks_verbose(query.as_deref()),
                StatusCode::SERVICE_UNAVAILABLE,
                Some("too many request bodies are being received at once; retry in a second"),
            );
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            // The body was not read: the connection is not reusable.
            headers.insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return response;
        }
        Err(BodyError::TimedOut) => {
            counters
                .rejected_body_timeout
                .fetch_add(1, Ordering::Relaxed);
            let reason = format!(
                "the body did not arrive within {} s",
                state.body_timeout.as_secs_f64()
            );
            let mut response = answer(
                decode::query_asks_verbose(query.as_deref()),
                StatusCode::REQUEST_TIMEOUT,
                Some(&reason),
            );
            // The rest of the body may still trickle in: the connection is not reusable.
            response.headers_mut().insert(
                header::CONNECTION,
                header::HeaderValue::from_static("close"),
            );
            return response;
        }
        Err(BodyError::TooLarge) => {
            counters.rejected_too_large.fetch_add(1, Ordering::Relaxed);
            tracing::debug!("refused a /track body over {MAX_BODY_BYTES} bytes");
            let reason = format!("the body is larger than {MAX_BODY_BYTES} bytes");
            return answer(
                decode::query_asks_verbose(query.as_deref()),
                StatusCode::PAYLOAD_TOO_LARGE,
                Some(&reason),
            );
        }
        Err(BodyError::Read(error)) => {
            counters.rejected_invalid.fetch_add(1, Ordering::Relaxed);
            let reason = format!("cannot read the body: {error}");
            return answer(
                decode::query_asks_verbose(query.as_deref()),
                StatusCode::BAD_REQUEST,
                Some(&reason),
            );
        }
    };

    let now = i64::try_from(crate::clock::unix_now()).unwrap_or(i64::MAX);
    let TrackRequest { verbose, events } = decode::read_track(query.as_deref(), &body, now);
    let events = match events {
        Ok(events) => events,
        Err(invalid) => {
            counters.rejected_invalid.fetch_add(1, Ordering::Relaxed);
            // The reason names fields and JSON types, never values, so it is safe to log.
            tracing::debug!(reason = %invalid, "refused a /track request");
            return answer(verbose, StatusCode::BAD_REQUEST, Some(&invalid.0));
        }
    };
    let count = events.len() as u64;
    let duplicates = match &state.store {
        None => 0,
        Some(store) => match store.record(events).await {
            Ok(outcome) => outcome.duplicates,
            Err(error) => {
                counters.rejected_store.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "could not record events; the sender may retry");
                return answer(
                    verbose,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    Some("the events could not be recorded; try again"),
                );
            }
        },
    };
    counters.received.fetch_add(count, Ordering::Relaxed);
    counters.duplicates.fetch_add(duplicates, Ordering::Relaxed);
    tracing::debug!(events = count, duplicates, "accepted a /track request");
    answer(verbose, StatusCode::OK, None)
}

/// The answer Mixpanel senders understand: `{"status":1,"error":null}` (or `status` 0 with the
/// reason) when they asked for `verbose=1`, else a bare `1` or `0`.
fn answer(verbose: bool, status: StatusCode, error: Option<&str>) -> Response {
    match (verbose, error) {
        // Every accepted request gets this one: no need to build it each time.
        (true, None) => (status, json_headers(), r#"{"status":1,"error":null}"#).into_response(),
        (true, Some(error)) => {
            let body = json!({ "status": 0, "error": error });
            (status, json_headers(), body.to_string()).into_response()
        }
        (false, None) => (status, "1").into_response(),
        (false, Some(_)) => (status, "0").into_response(),
    }
}

fn json_headers() -> [(header::HeaderName, &'static str); 1] {
    [(header::CONTENT_TYPE, "application/json")]
}

enum BodyError {
    TooLarge,
    /// The body does not fit in what is left of the budget.
    Busy,
    TimedOut,
    Read(axum::Error),
}

/// Reads the body, refusing it as soon as it is known to exceed [`MAX_BODY_BYTES`]: at once
/// from `Content-Length`, else as soon as the streamed bytes pass the limit. Its bytes are taken
/// from `budget` before they are buffered (all of `Content-Length` at once, else as they
/// arrive); the budget taken is returned with the body.
async fn read_capped(
    headers: &HeaderMap,
    body: Body,
    budget: &BodyBudget,
) -> Result<(Vec<u8>, Option<OwnedSemaphorePermit>), BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let declared = declared.map_or(0, |length| length as usize);
    let mut held = None;
    budget.take(&mut held, declared)?;
    let mut bytes = Vec::with_capacity(declared);
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        let length = bytes.len() + chunk.len();
        if length > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        budget.take(&mut held, length.saturating_sub(declared.max(bytes.len())))?;
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, held))
}

#[derive(Deserialize)]
struct PageQuery {
    /// The `next` cursor of the previous page; none for the first.
    after: Option<i64>,
    limit: Option<usize>,
}

/// `--record all`: one page of the recorded events, oldest first, as a JSON array streamed as
/// it is read, with the next page in a `Link` header; `summary`: the counts.
async fn events(
    State(state): State<Arc<AppState>>,
    page: Result<Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(store) = &state.store else {
        let body = json!({ "error": "nothing is recorded: the receiver runs with --record none" });
        return (StatusCode::NOT_FOUND, json_headers(), body.to_string()).into_response();
    };
    if state.record != Record::All {
        let pieces = match store.summary_json().await {
            Ok(pieces) => pieces,
            Err(error) => return store_failure(error),
        };
        return match streamed(pieces).await {
            Ok(body) => (StatusCode::OK, json_headers(), body).into_response(),
            Err(error) => store_failure(error),
        };
    }
    let page = match page {
        Ok(Query(page))
            if page
                .limit
                .is_none_or(|limit| (1..=MAX_PAGE).contains(&limit)) =>
        {
            page
        }
        _ => {
            let error = format!(
                "expected ?after=CURSOR (the next of the previous page) and limit=1..{MAX_PAGE}"
            );
            let body = json!({ "error": error });
            return (StatusCode::BAD_REQUEST, json_headers(), body.to_string()).into_response();
        }
    };
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    let EventsPage { next, pieces } = match store.events_page(page.after.unwrap_or(0), limit).await
    {
        Ok(page) => page,
        Err(error) => return store_failure(error),
    };
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    if let Some(next) = next {
        // The cursor goes in a header, so the body stays a plain array of events.
        let link = format!("</events?after={next}&limit={limit}>; rel=\"next\"");
        if let Ok(link) = header::HeaderValue::from_str(&link) {
            headers.insert(header::LINK, link);
        }
    }
    match streamed(pieces).await {
        Ok(body) => (StatusCode::OK, headers, body).into_response(),
        Err(error) => store_failure(error),
    }
}

/// A body made of the store's pieces: one that fits in its first piece goes out whole, with a
/// length; a larger one streams, as fast as the client reads. An error before the first piece
/// is returned, so it can be answered as one.
async fn streamed(mut pieces: Pieces) -> Result<Body, StoreError> {
    let first = pieces.recv().await;
    let second = pieces.recv().await;
    match (first, second) {
        (Some(Ok(whole)), None) => Ok(Body::from(whole)),
        (Some(Err(error)), _) => Err(error),
        (first, second) => {
            let head = futures::stream::iter(first.into_iter().chain(second));
            Ok(Body::from_stream(head.chain(ReceiverStream::new(pieces))))
        }
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let counts = state.counters.counts(state.store.as_ref());
    let body = match &state.store {
        // Streamed cluster by cluster: a scrape holds a piece, whatever the clusters weigh.
        Some(store) => {
            let streamed = match store.walk_clusters(MetricsText::new(counts)).await {
                Ok(pieces) => streamed(pieces).await,
                Err(error) => Err(error),
            };
            match streamed {
                Ok(body) => body,
                Err(error) => return store_failure(error),
            }
        }
        None => Body::from(exposition::render(&counts, &[])),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

fn store_failure(error: StoreError) -> Response {
    tracing::warn!(%error, "cannot read the store");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot read the store: {error}\n"),
    )
        .into_response()
}
