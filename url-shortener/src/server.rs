//! The HTTP service: create links, redirect, count clicks.
//!
//! - `POST /api/links` with `{"url": …, "alias": …?}`: 201 `{"code", "url", "short_url"}`;
//!   400 for a URL that is not http(s) or an alias that is not one, 409 for an alias taken.
//! - `GET /{code}`: 302 to the link's URL (not 301: a browser caches a 301 for good and its
//!   later clicks would never be counted), 404 if there is no such link.
//! - `GET /api/links/{code}`: the link and its clicks.
//! - `/` (the page, served by the binary), `/health`, `/metrics`.
//!
//! Every other answer is JSON `{"error": {"code", "message"}}`: 400 fix the request, 404
//! nothing there, 409 taken, 413 too large, 429 or 503 retry (with `Retry-After`), 507 the
//! keyspace is full.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kvstore::client::cluster::ClusterClient;
use serde::Deserialize;
use serde_json::json;

use crate::cache::Cache;
use crate::clicks::Pending;
use crate::code::{self, Block};
use crate::keys;
use crate::store::{self, Link, Served, StoreError};

/// The page, compiled into the binary.
pub const PAGE: &str = include_str!("page.html");
/// The largest request body taken (a URL and an alias, as JSON).
pub const BODY_BYTES_MAX: usize = 4 * 1024;
/// Ids a process reserves at once.
pub const ID_BLOCK_DEFAULT: u64 = 1000;
/// How often clicks are added to the store's counters.
pub const FLUSH_EVERY_DEFAULT: Duration = Duration::from_millis(250);
/// Counter increments in flight at once during a flush.
pub const FLUSH_IN_FLIGHT: usize = 64;

/// How the service runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The base of short links, `http://host:port`.
    pub public_url: String,
    pub id_block: u64,
    pub flush_every: Duration,
    pub cache_entries: usize,
    pub pending_codes: usize,
}

/// What the handlers share.
pub struct App {
    pub client: Arc<ClusterClient>,
    pub settings: Settings,
    /// Set once the keyspace exists: `/health` answers 200 from then on.
    pub ready: AtomicBool,
    /// Set at SIGTERM: `/health` answers 503 while requests in flight finish.
    pub stopping: AtomicBool,
    pub metrics: Metrics,
    ids: tokio::sync::Mutex<Block>,
    cache: Mutex<Cache>,
    pending: Mutex<Pending>,
}

impl App {
    pub fn new(client: Arc<ClusterClient>, settings: Settings) -> Arc<App> {
        Arc::new(App {
            client,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            metrics: Metrics::default(),
            ids: tokio::sync::Mutex::new(Block::default()),
            cache: Mutex::new(Cache::new(settings.cache_entries)),
            pending: Mutex::new(Pending::new(settings.pending_codes)),
            settings,
        })
    }

    /// The next id this process may use: from its block, or from a new block.
    async fn next_id(&self) -> Result<u64, StoreError> {
        let mut block = self.ids.lock().await;
        if let Some(id) = block.take() {
            return Ok(id);
        }
        *block = store::reserve_block(&self.client, self.settings.id_block).await?;
        self.metrics.id_blocks.fetch_add(1, Ordering::Relaxed);
        Ok(block.take().expect("a new block has ids"))
    }

    /// Adds the clicks counted since the last flush to the store's counters. Clicks whose
    /// increment surely failed are kept for the next flush; those whose outcome is unknown
    /// are not retried (never counted twice) and show in `clicks_unknown_total`.
    pub async fn flush(&self) {
        let taken = self.pending.lock().expect("pending lock").take();
        let mut tasks = tokio::task::JoinSet::new();
        let mut items = taken.into_iter();
        loop {
            while tasks.len() < FLUSH_IN_FLIGHT {
                let Some((code, n)) = items.next() else { break };
                let client = self.client.clone();
                tasks.spawn(async move {
                    let result = store::add_clicks(&client, &code, n).await;
                    (code, n, result)
                });
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            let Ok((code, n, result)) = done else {
                continue;
            };
            match result {
                Ok(_) => {
                    self.metrics.clicks_flushed.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) if e.outcome_unknown() => {
                    tracing::warn!(%code, clicks = n, error = %e, "clicks may not be counted");
                    self.metrics.clicks_unknown.fetch_add(n, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!(%code, clicks = n, error = %e, "clicks kept for the next flush");
                    self.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                    if !self.pending.lock().expect("pending lock").add(&code, n) {
                        self.metrics.clicks_dropped.fetch_add(n, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Flushes every `flush_every` until `stop` is set, then once more.
    pub async fn flush_until_stopped(self: Arc<App>) {
        while !self.stopping.load(Ordering::SeqCst) {
            tokio::time::sleep(self.settings.flush_every).await;
            self.flush().await;
        }
    }
}

/// The counters `/metrics` shows.
#[derive(Default)]
pub struct Metrics {
    pub links_created: AtomicU64,
    pub redirects: AtomicU64,
    pub not_found: AtomicU64,
    pub cache_hits: AtomicU64,
    pub leader_lookups: AtomicU64,
    pub clicks_flushed: AtomicU64,
    pub clicks_dropped: AtomicU64,
    pub clicks_unknown: AtomicU64,
    pub code_collisions: AtomicU64,
    pub id_blocks: AtomicU64,
    pub store_errors: AtomicU64,
}

impl Metrics {
    pub fn render(&self, pending: u64, cached: usize) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            ("links_created", "Links created.", &self.links_created),
            ("redirects", "Redirects answered.", &self.redirects),
            (
                "not_found",
                "Lookups of codes that name no link.",
                &self.not_found,
            ),
            (
                "cache_hits",
                "Redirects answered from the cache.",
                &self.cache_hits,
            ),
            (
                "leader_lookups",
                "Lookups a replica could not answer, asked again of the leader.",
                &self.leader_lookups,
            ),
            (
                "clicks_flushed",
                "Clicks added to the store.",
                &self.clicks_flushed,
            ),
            (
                "clicks_dropped",
                "Clicks not counted: too many codes pending.",
                &self.clicks_dropped,
            ),
            (
                "clicks_unknown",
                "Clicks whose increment may or may not have been applied.",
                &self.clicks_unknown,
            ),
            (
                "code_collisions",
                "Generated codes skipped because an alias had taken them.",
                &self.code_collisions,
            ),
            ("id_blocks", "Blocks of ids reserved.", &self.id_blocks),
            (
                "store_errors",
                "Store requests that failed.",
                &self.store_errors,
            ),
        ] {
            out.push_str(&format!(
                "# HELP shortener_{name}_total {help}\n# TYPE shortener_{name}_total counter\n\
                 shortener_{name}_total {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out.push_str(&format!(
            "# HELP shortener_clicks_pending Clicks counted here, not yet flushed.\n\
             # TYPE shortener_clicks_pending gauge\nshortener_clicks_pending {pending}\n\
             # HELP shortener_cache_entries Links in the redirect cache.\n\
             # TYPE shortener_cache_entries gauge\nshortener_cache_entries {cached}\n"
        ));
        out
    }
}

/// The routes, on `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/links", post(create))
        .route("/api/links/{code}", get(stats))
        .route("/{code}", get(redirect))
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .with_state(app)
}

/// Serves `router(app)` on `listener` until `shutdown` resolves, lets requests in flight
/// finish, and flushes the clicks counted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let flusher = tokio::spawn(app.clone().flush_until_stopped());
    let stopping = app.clone();
    axum::serve(listener, router(app.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.stopping.store(true, Ordering::SeqCst);
        })
        .await?;
    // The flusher sees `stopping` after its current flush and returns; then the last one.
    let _ = flusher.await;
    app.flush().await;
    Ok(())
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    let body = Json(json!({"error": {"code": code, "message": message.to_string()}}));
    (status, body).into_response()
}

fn store_error(app: &App, e: StoreError) -> Response {
    app.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
    let (status, code) = match &e {
        StoreError::Full(_) => (StatusCode::INSUFFICIENT_STORAGE, "over_quota"),
        StoreError::Busy(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
        StoreError::BadLink { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "bad_link"),
        StoreError::Client(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
    };
    tracing::warn!(error = %e, "a store request failed");
    let mut r = error(status, code, e);
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// Checks a URL to shorten: http or https, with a host, at most `URL_BYTES_MAX` bytes.
pub fn check_url(text: &str) -> Result<String, String> {
    if text.len() > keys::URL_BYTES_MAX {
        return Err(format!("the URL is over {} bytes", keys::URL_BYTES_MAX));
    }
    let url = url::Url::parse(text.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("only http and https URLs, not {}:", url.scheme()));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL has no host".into());
    }
    Ok(url.to_string())
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let ready = app.ready.load(Ordering::SeqCst);
    let stopping = app.stopping.load(Ordering::SeqCst);
    let (code, status) = match (ready, stopping) {
        (_, true) => (StatusCode::SERVICE_UNAVAILABLE, "stopping"),
        (true, false) => (StatusCode::OK, "ok"),
        (false, false) => (StatusCode::SERVICE_UNAVAILABLE, "starting"),
    };
    (code, Json(json!({"status": status}))).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let pending = app.pending.lock().expect("pending lock").clicks();
    let cached = app.cache.lock().expect("cache lock").len();
    let text = app.metrics.render(pending, cached);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize)]
struct CreateRequest {
    url: String,
    #[serde(default)]
    alias: Option<String>,
}

async fn create(State(app): State<Arc<App>>, body: axum::body::Bytes) -> Response {
    let request: CreateRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body must be JSON {{\"url\": …, \"alias\": …}}: {e}"),
            )
        }
    };
    let url = match check_url(&request.url) {
        Ok(u) => u,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_url", e),
    };
    let link = Link {
        url: url.clone(),
        created_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
    };
    let code = match request.alias.filter(|a| !a.is_empty()) {
        Some(alias) => {
            if let Err(e) = code::check_alias(&alias) {
                return error(StatusCode::BAD_REQUEST, "bad_alias", e);
            }
            match store::create(&app.client, &alias, &link).await {
                Ok(true) => alias,
                Ok(false) => {
                    return error(
                        StatusCode::CONFLICT,
                        "alias_taken",
                        format!("{alias:?} is taken"),
                    )
                }
                Err(e) => return store_error(&app, e),
            }
        }
        None => loop {
            let id = match app.next_id().await {
                Ok(id) => id,
                Err(e) => return store_error(&app, e),
            };
            let code = code::encode(id);
            if code::RESERVED.contains(&code.as_str()) {
                continue;
            }
            match store::create(&app.client, &code, &link).await {
                Ok(true) => break code,
                // An alias took this code first: the next id.
                Ok(false) => {
                    app.metrics.code_collisions.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return store_error(&app, e),
            }
        },
    };
    app.metrics.links_created.fetch_add(1, Ordering::Relaxed);
    app.cache
        .lock()
        .expect("cache lock")
        .insert(code.clone(), url.clone());
    let short_url = format!("{}/{code}", app.settings.public_url.trim_end_matches('/'));
    let body = Json(json!({"code": code, "url": url, "short_url": short_url}));
    (StatusCode::CREATED, body).into_response()
}

async fn redirect(State(app): State<Arc<App>>, Path(code): Path<String>) -> Response {
    if !code::plausible(&code) {
        app.metrics.not_found.fetch_add(1, Ordering::Relaxed);
        return error(StatusCode::NOT_FOUND, "not_found", "no such link");
    }
    let cached = app.cache.lock().expect("cache lock").get(&code);
    let url = match cached {
        Some(url) => {
            app.metrics.cache_hits.fetch_add(1, Ordering::Relaxed);
            url
        }
        None => match store::lookup(&app.client, &code).await {
            Ok(Some((link, served))) => {
                if served == Served::Leader {
                    app.metrics.leader_lookups.fetch_add(1, Ordering::Relaxed);
                }
                app.cache
                    .lock()
                    .expect("cache lock")
                    .insert(code.clone(), link.url.clone());
                link.url
            }
            Ok(None) => {
                app.metrics.not_found.fetch_add(1, Ordering::Relaxed);
                return error(StatusCode::NOT_FOUND, "not_found", "no such link");
            }
            Err(e) => return store_error(&app, e),
        },
    };
    if !app.pending.lock().expect("pending lock").add(&code, 1) {
        app.metrics.clicks_dropped.fetch_add(1, Ordering::Relaxed);
    }
    app.metrics.redirects.fetch_add(1, Ordering::Relaxed);
    let Ok(location) = HeaderValue::from_str(&url) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "bad_link",
            "a stored URL",
        );
    };
    (
        StatusCode::FOUND,
        [
            (header::LOCATION, location),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=0"),
            ),
        ],
    )
        .into_response()
}

async fn stats(State(app): State<Arc<App>>, Path(code): Path<String>) -> Response {
    if !code::plausible(&code) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such link");
    }
    let link = match store::lookup(&app.client, &code).await {
        Ok(Some((link, _))) => link,
        Ok(None) => return error(StatusCode::NOT_FOUND, "not_found", "no such link"),
        Err(e) => return store_error(&app, e),
    };
    let clicks = match store::clicks(&app.client, &code).await {
        Ok(n) => n,
        Err(e) => return store_error(&app, e),
    };
    let pending = app.pending.lock().expect("pending lock").of(&code);
    Json(json!({
        "code": code,
        "url": link.url,
        "created_ms": link.created_ms,
        "clicks": clicks,
        "clicks_pending_here": pending,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host_are_shortened() {
        assert!(check_url("https://example.com/a?b=c").is_ok());
        assert!(check_url("http://127.0.0.1:8080/").is_ok());
        assert!(check_url("javascript:alert(1)").is_err());
        assert!(check_url("ftp://example.com/").is_err());
        assert!(check_url("not a url").is_err());
        assert!(check_url(&format!("https://e.com/{}", "a".repeat(3000))).is_err());
    }
}
