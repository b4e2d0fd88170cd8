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
use super::exposition::{self, Counts};
use super::store::{EventsPage, StoreHandle};

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
}

#[derive(Default)]
pub(super) struct Counters {
    received: AtomicU64,
    duplicates: AtomicU64,
    rejected_invalid: AtomicU64,
    rejected_too_large: AtomicU64,
    rejected_store: AtomicU64,
    rejected_body_timeout: AtomicU64,
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
    let read = tokio::time::timeout(state.body_timeout, read_capped(&headers, body)).await;
    let body = match read.unwrap_or(Err(BodyError::TimedOut)) {
        Ok(body) => body,
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
    TimedOut,
    Read(axum::Error),
}

/// Reads the body, refusing it as soon as it is known to exceed [`MAX_BODY_BYTES`]: at once
/// from `Content-Length`, else as soon as the streamed bytes pass the limit.
async fn read_capped(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, BodyError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY_BYTES as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut bytes = Vec::with_capacity(declared.map_or(0, |length| length as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(BodyError::Read)?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(BodyError::TooLarge);
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
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
        return match store.summary().await {
            Ok(summary) => {
                (StatusCode::OK, json_headers(), json!(summary).to_string()).into_response()
            }
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
    let EventsPage { next, mut pieces } =
        match store.events_page(page.after.unwrap_or(0), limit).await {
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
    // A page that fits in its first piece goes out whole, with a length; a larger one streams.
    let first = pieces.recv().await;
    let second = pieces.recv().await;
    let body = match (first, second) {
        (Some(Ok(whole)), None) => Body::from(whole),
        (Some(Err(error)), _) => return store_failure(error),
        (first, second) => {
            let head = futures::stream::iter(first.into_iter().chain(second));
            Body::from_stream(head.chain(ReceiverStream::new(pieces)))
        }
    };
    (StatusCode::OK, headers, body).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let summary = match &state.store {
        Some(store) => match store.summary().await {
            Ok(summary) => summary,
            Err(error) => return store_failure(error),
        },
        None => Default::default(),
    };
    let counts = state.counters.counts(state.store.as_ref());
    let text = exposition::render(&counts, &summary.clusters);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, exposition::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

fn store_failure(error: super::store::StoreError) -> Response {
    tracing::warn!(%error, "cannot read the store");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("cannot read the store: {error}\n"),
    )
        .into_response()
}
