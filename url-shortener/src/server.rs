//! The HTTP service: the API (`GET` and `PUT /api/items/{name}`, the example to replace),
//! the page (`/`, `page.html`, served by the binary: no build step), `/health` (200 once the
//! keyspace is ready, 503 while starting or stopping) and `/metrics` (Prometheus text).
//!
//! Every answer that is not a success is JSON `{"error": {"code", "message"}}` with a status
//! that tells the client what to do: 400 fix the request, 404 nothing there, 413 too large,
//! 429 or 503 retry later (with `Retry-After`), 507 the keyspace is full.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use kvstore::client::cluster::ClusterClient;
use serde_json::json;

use crate::keys;
use crate::store::{self, StoreError};

/// The page, compiled into the binary.
pub const PAGE: &str = include_str!("page.html");

/// What the handlers share.
pub struct App {
    pub client: Arc<ClusterClient>,
    /// Set once the keyspace exists: `/health` answers 200 from then on.
    pub ready: AtomicBool,
    /// Set at SIGTERM: `/health` answers 503 while requests in flight finish.
    pub stopping: AtomicBool,
    pub metrics: Metrics,
}

impl App {
    pub fn new(client: Arc<ClusterClient>) -> Arc<App> {
        Arc::new(App {
            client,
            ready: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            metrics: Metrics::default(),
        })
    }
}

/// The counters `/metrics` shows.
#[derive(Default)]
pub struct Metrics {
    pub reads: AtomicU64,
    pub writes: AtomicU64,
    pub store_errors: AtomicU64,
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            ("reads", "Items read.", &self.reads),
            ("writes", "Items written.", &self.writes),
            (
                "store_errors",
                "Store requests that failed.",
                &self.store_errors,
            ),
        ] {
            out.push_str(&format!(
                "# HELP url_shortener_{name}_total {help}\n# TYPE url_shortener_{name}_total counter\n\
                 url_shortener_{name}_total {}\n",
                value.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

/// The routes, on `app`.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/api/items/{name}", get(get_item).put(put_item))
        .layer(DefaultBodyLimit::max(keys::VALUE_BYTES_MAX))
        .with_state(app)
}

/// Serves `router(app)` on `listener` until `shutdown` resolves, then lets requests in
/// flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let stopping = app.clone();
    axum::serve(listener, router(app))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.stopping.store(true, Ordering::SeqCst);
        })
        .await
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
        StoreError::Client(_) => (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable"),
    };
    let mut r = error(status, code, e);
    if status != StatusCode::INSUFFICIENT_STORAGE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    }
    r
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
    let text = app.metrics.render();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn get_item(State(app): State<Arc<App>>, Path(name): Path<String>) -> Response {
    if let Err(e) = keys::check_name(&name) {
        return error(StatusCode::BAD_REQUEST, "bad_name", e);
    }
    match store::get_item(&app.client, &name).await {
        Ok(Some(value)) => {
            app.metrics.reads.fetch_add(1, Ordering::Relaxed);
            ([(header::CONTENT_TYPE, "application/octet-stream")], value).into_response()
        }
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no item {name:?}"),
        ),
        Err(e) => store_error(&app, e),
    }
}

async fn put_item(State(app): State<Arc<App>>, Path(name): Path<String>, body: Bytes) -> Response {
    if let Err(e) = keys::check_name(&name) {
        return error(StatusCode::BAD_REQUEST, "bad_name", e);
    }
    match store::put_item(&app.client, &name, &body).await {
        Ok(()) => {
            app.metrics.writes.fetch_add(1, Ordering::Relaxed);
            Json(json!({"stored": name})).into_response()
        }
        Err(e) => store_error(&app, e),
    }
}
