//! The HTTP admin port: `/health`, `/metrics` (Prometheus text), `/status` (JSON), and
//! `POST /admin/compact`. Read-only except for the compaction trigger; no data is served here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use super::Context;
use crate::metrics::Listener;

/// Serves the admin routes until shutdown.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/admin/compact", post(compact))
        .with_state(ctx.clone());
    let shutdown = {
        let ctx = ctx.clone();
        async move { ctx.shutdown_signal().await }
    };
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%error, "HTTP admin server failed");
    }
}

async fn health(State(ctx): State<Arc<Context>>) -> Response {
    if ctx.shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        "ok\n".into_response()
    }
}

async fn metrics(State(ctx): State<Arc<Context>>) -> Response {
    let text = ctx.metrics.render(&ctx.db.engine().stats());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn status(State(ctx): State<Arc<Context>>) -> Json<serde_json::Value> {
    let engine = ctx.db.engine();
    Json(serde_json::json!({
        "server": ctx.config.server_name,
        "uptime_seconds": ctx.started.elapsed().as_secs(),
        "data_dir": engine.dir().display().to_string(),
        "fsync": engine.config().fsync.to_string(),
        "storage": engine.stats(),
        "connections": {
            "binary": ctx.metrics.connections_active(Listener::Binary),
            "resp": ctx.metrics.connections_active(Listener::Resp),
            "max": ctx.config.connections_max,
        },
        "ops_total": ctx.metrics.total_ops(),
        "role": "single-node",
    }))
}

async fn compact(State(ctx): State<Arc<Context>>) -> Response {
    let engine = ctx.db.engine().clone();
    match tokio::task::spawn_blocking(move || engine.compact()).await {
        Ok(Ok(r)) => Json(serde_json::json!({
            "segments_in": r.segments_in,
            "segments_out": r.segments_out,
            "bytes_before": r.bytes_before,
            "bytes_after": r.bytes_after,
            "records_kept": r.records_kept,
        }))
        .into_response(),
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response(),
    }
}
