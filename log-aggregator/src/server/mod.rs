//! An aggregator node: stateless in front of the store. It takes logs in (HTTP pushes from
//! agents and shippers, the Loki push API, syslog over TCP and UDP), stores them (a push is
//! answered only once the store has it), indexes what every aggregator stored (following the
//! journal), and answers queries, histograms and live tails over HTTP, with its page,
//! `/health` and `/metrics`.
//!
//! Errors are typed JSON (`{"error":{"code":…,"message":…}}`): 400 for a push or query that
//! is not valid (saying what), 401 for a push without the ingest token, 413 for a push over
//! its limit, 429 (with `Retry-After`) when the pushes in flight are at their limit or the
//! `logs` keyspace is over its rate limit in the store, 507 when the keyspace is at its byte
//! limit (`kvstore keyspace limit logs --max-bytes`: retention or a raised limit makes
//! room), and 503 when the store cannot take the push now; the sender keeps the push and
//! retries.

// Helpers return `Result<_, Response>`: the error is the handler's whole answer.
#![allow(clippy::result_large_err)]

pub mod metrics;
pub mod page;
pub mod run;
pub mod syslog;

use std::convert::Infallible;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Query as UrlQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::json;
use tokio::sync::{broadcast, watch, Semaphore};

use crate::index::{Bins, Indexes};
use crate::ingest::{self, Arrival, IngestError, PUSH_BYTES_MAX};
use crate::query::{parse_duration_ms, Line, Query, QueryError, BINS_MAX};
use crate::record::Record;
use crate::store::{LogStore, StoreError};

/// HTTP pushes being stored at once, by default; more are refused with 429.
pub const PUSHES_IN_FLIGHT_DEFAULT: usize = 64;
/// The largest push body on the wire (compressed or not).
pub const BODY_BYTES_MAX: usize = PUSH_BYTES_MAX;
/// Records the live tail's channel holds for a slow reader before it skips ahead.
pub const TAIL_BUFFER: usize = 4_096;
/// Live tails open at once.
pub const TAILS_MAX: u64 = 256;
/// What a refused push is told to wait.
pub const RETRY_AFTER_S: u64 = 1;
/// The wait a push refused for a full keyspace asks for (retention frees room by minutes).
pub const OVER_QUOTA_RETRY_AFTER_S: u64 = 30;

pub struct App {
    /// This aggregator's name: its journal writer and its syslog records' origin.
    pub name: String,
    pub store: Arc<LogStore>,
    pub indexes: Arc<Indexes>,
    pub metrics: metrics::Metrics,
    /// The token a push must carry (`Authorization: Bearer …` or Basic's password).
    pub token: String,
    /// When this process started (names its syslog sources, so a restart's numbering is new).
    pub boot_ms: i64,
    pushes: Semaphore,
    pub tail: broadcast::Sender<Arc<Record>>,
    /// The index has been rebuilt from the store (queries before that would miss lines).
    pub ready: AtomicBool,
    pub stopping: AtomicBool,
    /// Turns true when the aggregator stops: listeners, tails and tasks end.
    pub stop: watch::Sender<bool>,
    push_seq: AtomicU64,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl App {
    pub fn new(
        name: String,
        store: Arc<LogStore>,
        indexes: Arc<Indexes>,
        token: String,
        pushes_in_flight: usize,
    ) -> App {
        App {
            name,
            store,
            indexes,
            metrics: metrics::Metrics::default(),
            token,
            boot_ms: now_ms(),
            pushes: Semaphore::new(pushes_in_flight.max(1)),
            tail: broadcast::channel(TAIL_BUFFER).0,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            stop: watch::channel(false).0,
            push_seq: AtomicU64::new(0),
        }
    }

    pub fn now_ms(&self) -> i64 {
        now_ms()
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/v1/push", post(push_ndjson))
        .route("/loki/api/v1/push", post(push_loki))
        .route("/api/query", get(api_query))
        .route("/api/histogram", get(api_histogram))
        .route("/api/tail", get(api_tail))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/", get(|| async { Html(page::PAGE) }))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(app)
}

/// The answer to a push the store did not take: 507 when the `logs` keyspace is at its byte
/// limit, 429 when it is over its rate limit (with the store's wait as `Retry-After`), 503
/// otherwise. Each keeps the sender retrying: nothing was stored.
fn store_refusal(error: &StoreError) -> Response {
    use kvstore::client::ClientError;
    use kvstore::wire::ErrorCode;
    let (status, code, retry_s, text) = match error {
        StoreError::Client(ClientError::Server {
            code: ErrorCode::OverQuota,
            message,
        }) => (
            StatusCode::INSUFFICIENT_STORAGE,
            "over_quota",
            OVER_QUOTA_RETRY_AFTER_S,
            format!("the store's logs keyspace is full ({message}); retry later"),
        ),
        StoreError::Client(ClientError::Server {
            code: ErrorCode::RateLimited,
            message,
        }) => {
            let ms = error.retry_after().as_millis() as u64;
            (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                ms.div_ceil(1000).max(1),
                format!("the store's logs keyspace is over its rate ({message}); retry"),
            )
        }
        other => (
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            RETRY_AFTER_S,
            format!("the store did not take the push ({other}); retry it"),
        ),
    };
    let mut r = json_error(status, code, &text);
    r.headers_mut().insert(header::RETRY_AFTER, retry_s.into());
    r
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Whether the request carries the ingest token.
fn authorised(app: &App, headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(token) = value.strip_prefix("Bearer ") {
        return constant_time_eq(token.trim().as_bytes(), app.token.as_bytes());
    }
    if let Some(basic) = value.strip_prefix("Basic ") {
        if let Some(decoded) = base64_decode(basic.trim()) {
            if let Some((_, password)) = decoded.split_once(':') {
                return constant_time_eq(password.as_bytes(), app.token.as_bytes());
            }
        }
    }
    false
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn base64_decode(s: &str) -> Option<String> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    String::from_utf8(out).ok()
}

/// The body, gunzipped if its `Content-Encoding` says gzip, within [`PUSH_BYTES_MAX`].
fn body_bytes(headers: &HeaderMap, body: &Bytes) -> Result<Vec<u8>, Response> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match encoding {
        "" | "identity" => Ok(body.to_vec()),
        "gzip" => {
            let mut out = Vec::new();
            let mut reader =
                flate2::read::GzDecoder::new(&body[..]).take(PUSH_BYTES_MAX as u64 + 1);
            reader.read_to_end(&mut out).map_err(|e| {
                json_error(
                    StatusCode::BAD_REQUEST,
                    "bad_gzip",
                    &format!("the body is not valid gzip: {e}"),
                )
            })?;
            if out.len() > PUSH_BYTES_MAX {
                return Err(json_error(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    &format!("the push is more than {PUSH_BYTES_MAX} bytes uncompressed"),
                ));
            }
            Ok(out)
        }
        other => Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_encoding",
            &format!("Content-Encoding {other:?} is not supported (gzip or none)"),
        )),
    }
}

fn ingest_error(e: IngestError) -> Response {
    let (status, code) = match e {
        IngestError::TooLarge { .. } | IngestError::TooManyLines { .. } => {
            (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
        }
        IngestError::BadLoki(_) => (StatusCode::BAD_REQUEST, "bad_push"),
    };
    json_error(status, code, &e.to_string())
}

/// What every push does: the token, the limit in flight, the body, the records, the store.
async fn push(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
    peer_hint: &str,
    parse: impl FnOnce(&[u8], &Arrival<'_>) -> Result<Vec<Record>, IngestError>,
) -> Result<usize, Response> {
    if !authorised(app, headers) {
        app.metrics.refused_token.fetch_add(1, Ordering::Relaxed);
        return Err(json_error(
            StatusCode::UNAUTHORIZED,
            "no_token",
            "a push needs the ingest token: Authorization: Bearer <token>",
        ));
    }
    let Ok(_slot) = app.pushes.try_acquire() else {
        app.metrics.refused_busy.fetch_add(1, Ordering::Relaxed);
        let mut r = json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "the aggregator is storing as many pushes as it may; retry shortly",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, RETRY_AFTER_S.into());
        return Err(r);
    };
    let bytes = body_bytes(headers, body).inspect_err(|_| {
        app.metrics.refused_bad.fetch_add(1, Ordering::Relaxed);
    })?;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let agent = header("x-log-agent");
    let push_name = match header("idempotency-key") {
        Some(key) => format!("http/{key}"),
        None => format!(
            "http/{}/{}/{}",
            app.name,
            app.boot_ms,
            app.push_seq.fetch_add(1, Ordering::Relaxed)
        ),
    };
    let host = header("x-log-host").unwrap_or(peer_hint).to_string();
    let arrival = Arrival {
        now_ms: app.now_ms(),
        peer: &host,
        agent,
        push: &push_name,
    };
    let records = parse(&bytes, &arrival).map_err(|e| {
        app.metrics.refused_bad.fetch_add(1, Ordering::Relaxed);
        ingest_error(e)
    })?;
    match app.store.write(&records, arrival.now_ms).await {
        Ok(w) => {
            app.metrics
                .bytes
                .fetch_add(w.bytes as u64, Ordering::Relaxed);
            app.metrics
                .batches
                .fetch_add(w.batches as u64, Ordering::Relaxed);
            Ok(records.len())
        }
        Err(error) => {
            app.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%error, records = records.len(), "a push could not be stored");
            Err(store_refusal(&error))
        }
    }
}

/// `POST /api/v1/push`: NDJSON (the agents' protocol). Answers `{"accepted": N}`.
async fn push_ndjson(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let peer = peer.ip().to_string();
    match push(&app, &headers, &body, &peer, ingest::ndjson).await {
        Ok(n) => {
            app.metrics
                .lines_http
                .fetch_add(n as u64, Ordering::Relaxed);
            axum::Json(json!({ "accepted": n })).into_response()
        }
        Err(r) => r,
    }
}

/// `POST /loki/api/v1/push`: Loki's JSON push. Answers 204, as Loki does.
async fn push_loki(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-protobuf"));
    if protobuf {
        return json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "only Loki's JSON push is taken (Content-Type: application/json), not protobuf",
        );
    }
    let peer = peer.ip().to_string();
    match push(&app, &headers, &body, &peer, ingest::loki).await {
        Ok(n) => {
            app.metrics
                .lines_loki
                .fetch_add(n as u64, Ordering::Relaxed);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(r) => r,
    }
}

fn query_error(e: QueryError) -> Response {
    json_error(StatusCode::BAD_REQUEST, "bad_query", &e.to_string())
}

fn not_ready(app: &App) -> Option<Response> {
    (!app.ready.load(Ordering::SeqCst)).then(|| {
        json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the index is being rebuilt from the store; try again shortly",
        )
    })
}

fn search(
    app: &App,
    bins: Option<Bins>,
    q: &Query,
) -> Result<(crate::query::Answer, Vec<u64>), Response> {
    app.metrics.queries.fetch_add(1, Ordering::Relaxed);
    app.indexes.search(q, bins).map_err(|e| {
        tracing::error!(error = %e, "a query failed");
        json_error(StatusCode::INTERNAL_SERVER_ERROR, "index", &e.to_string())
    })
}

/// The query of a request, once the index is ready: or the answer that says why not.
fn ready_query(app: &App, params: &[(String, String)]) -> Result<Query, Response> {
    if let Some(r) = not_ready(app) {
        return Err(r);
    }
    Query::from_params(params, app.now_ms()).map_err(query_error)
}

/// `GET /api/query`: see [`crate::query`].
async fn api_query(
    State(app): State<Arc<App>>,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    let q = match ready_query(&app, &params) {
        Ok(q) => q,
        Err(r) => return r,
    };
    match search(&app, None, &q) {
        Ok((answer, _)) => axum::Json(answer).into_response(),
        Err(r) => r,
    }
}

/// `GET /api/histogram?…&step=1m`: matching lines per interval over the query's range
/// (`step` defaults to a sixtieth of the range, at most [`BINS_MAX`] intervals).
async fn api_histogram(
    State(app): State<Arc<App>>,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    let q = match ready_query(&app, &params) {
        Ok(q) => q,
        Err(r) => return r,
    };
    let span = q.to_ms - q.from_ms;
    let step = match params.iter().find(|(k, _)| k == "step") {
        Some((_, s)) => match parse_duration_ms(s) {
            Some(ms) if ms > 0 => ms,
            _ => {
                return query_error(QueryError::Bad {
                    name: "step".into(),
                    why: format!("{s:?} is not a duration (90s, 5m, 1h)"),
                })
            }
        },
        None => (span / 60).max(1000),
    };
    let count = ((span + step - 1) / step) as usize;
    if count > BINS_MAX {
        return query_error(QueryError::Bad {
            name: "step".into(),
            why: format!("{count} intervals; at most {BINS_MAX}: make the step longer"),
        });
    }
    let bins = Bins {
        from_ms: q.from_ms,
        step_ms: step,
        count,
    };
    match search(
        &app,
        Some(bins),
        &Query {
            limit: 1,
            ..q.clone()
        },
    ) {
        Ok((answer, counts)) => axum::Json(json!({
            "from": q.from_ms,
            "to": q.to_ms,
            "step": step,
            "total": answer.total,
            "counts": counts,
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// `GET /api/tail?…`: Server-Sent Events, one `line` event per new matching record as it
/// is indexed (from any aggregator), with the query's selectors; a reader too slow for
/// the flow gets a `skipped` event saying how many it missed.
async fn api_tail(
    State(app): State<Arc<App>>,
    UrlQuery(params): UrlQuery<Vec<(String, String)>>,
) -> Response {
    let q = match Query::from_params(&params, app.now_ms()) {
        Ok(q) => q,
        Err(e) => return query_error(e),
    };
    if app.metrics.tails.load(Ordering::Relaxed) >= TAILS_MAX {
        return json_error(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            &format!("{TAILS_MAX} live tails are open already"),
        );
    }
    struct Open(Arc<App>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.metrics.tails.fetch_sub(1, Ordering::Relaxed);
        }
    }
    app.metrics.tails.fetch_add(1, Ordering::Relaxed);
    let open = Open(app.clone());
    let rx = app.tail.subscribe();
    let stop = app.stop.subscribe();
    let state = (rx, q, open, stop);
    let stream = futures_util::stream::unfold(state, |(mut rx, q, open, mut stop)| async move {
        loop {
            if *stop.borrow() {
                return None;
            }
            let received = tokio::select! {
                r = rx.recv() => r,
                _ = stop.changed() => return None,
            };
            match received {
                Ok(r) if q.matches(&r) => {
                    let line = Line::from((*r).clone());
                    let event = Event::default()
                        .event("line")
                        .json_data(&line)
                        .unwrap_or_else(|_| Event::default().event("line"));
                    return Some((Ok::<_, Infallible>(event), (rx, q, open, stop)));
                }
                Ok(_) => continue,
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let event = Event::default().event("skipped").data(n.to_string());
                    return Some((Ok(event), (rx, q, open, stop)));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let ready = app.ready.load(Ordering::SeqCst);
    let stopping = app.stopping.load(Ordering::SeqCst);
    let status = if stopping {
        "stopping"
    } else if ready {
        "ok"
    } else {
        "starting"
    };
    let code = if ready && !stopping {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": status,
        "name": app.name,
        "buckets": app.indexes.sizes().len(),
        "lag_seconds": app.metrics.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        "queued": app.metrics.queued.load(Ordering::Relaxed),
    });
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let sizes = app.indexes.sizes();
    let lines = sizes.iter().map(|(_, n)| n).sum();
    let mut text = app.metrics.render(sizes.len(), lines);
    text.push_str(&format!(
        "# HELP logs_labels_capped_total Label values not indexed: their name has too many.
         # TYPE logs_labels_capped_total counter
logs_labels_capped_total {}
",
        app.indexes.labels_capped.load(Ordering::Relaxed)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
