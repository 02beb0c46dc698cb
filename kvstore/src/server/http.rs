//! The HTTP admin port: `/health`, `/metrics` (Prometheus text), `/status` (JSON), and
//! `POST /admin/compact`. On a cluster node also `/` (the live cluster page),
//! `/cluster/overview` (the whole cluster as JSON, `server::overview`), `/cluster` (the Raft
//! groups as this node sees them, with each one's keys and bytes) and `POST /cluster/transfer-leader?to=N`, `POST /cluster/add-node?id=N&peer=HOST:PORT`
//! (as a learner; `&voter=true` promotes), `POST /cluster/remove-node?id=N`, which
//! `kvstore cluster` calls. No data is served here.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::net::TcpListener;

use super::Context;
use crate::metrics::Listener;
use crate::raft::ConfigChange;

/// Serves the admin routes until shutdown.
pub async fn serve(ctx: Arc<Context>, listener: TcpListener) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .route("/admin/compact", post(compact))
        .route("/", get(cluster_page))
        .route("/cluster", get(cluster_status))
        .route("/cluster/overview", get(cluster_overview))
        .route("/keyspaces/usage", get(keyspaces_usage))
        .route("/suite", get(suite_page))
        .route("/suite/api", get(suite_api))
        .route("/cluster/transfer-leader", post(transfer_leader))
        .route("/cluster/add-node", post(add_node))
        .route("/cluster/remove-node", post(remove_node))
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
    let mut text = ctx.metrics.render(&ctx.current_db().engine().stats());
    if let Some(node) = &ctx.node {
        text.push_str(&node.render_metrics());
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

async fn status(State(ctx): State<Arc<Context>>) -> Json<serde_json::Value> {
    let db = ctx.current_db();
    let engine = db.engine();
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
        "role": if ctx.node.is_some() { "cluster-node" } else { "single-node" },
        "cluster": ctx.node.as_ref().map(|n| n.status()),
    }))
}

fn no_node() -> Response {
    (
        StatusCode::NOT_FOUND,
        "this server is a single node, not part of a cluster\n",
    )
        .into_response()
}

async fn cluster_status(State(ctx): State<Arc<Context>>) -> Response {
    match &ctx.node {
        Some(node) => Json(node_status(node)).into_response(),
        None => no_node(),
    }
}

/// The node's status, each group with its keys and bytes.
fn node_status(node: &crate::node::Node) -> serde_json::Value {
    let mut status = serde_json::to_value(node.status()).unwrap_or_default();
    if let Some(groups) = status["groups"].as_array_mut() {
        for g in groups {
            let Some(db) = g["group"].as_u64().and_then(|id| node.db(id)) else {
                continue;
            };
            let stats = db.engine().stats();
            g["keys"] = stats.keys.into();
            g["bytes"] = stats.live_bytes.into();
        }
    }
    status
}

/// The live cluster page: static HTML that polls `/cluster/overview` (no build step).
async fn cluster_page(State(ctx): State<Arc<Context>>) -> Response {
    if ctx.node.is_none() {
        return (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "a single node: no cluster to show (see /status and /metrics)\n",
        )
            .into_response();
    }
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("cluster_page.html"),
    )
        .into_response()
}

/// The cluster as `kvstore cluster status --json` shows it (see `server::overview`).
async fn cluster_overview(State(ctx): State<Arc<Context>>) -> Response {
    let Some(node) = &ctx.node else {
        return no_node();
    };
    let known = [(node.id(), node_status(node))].into();
    Json(super::overview::gather(&node.map_for_clients(), known).await).into_response()
}

/// The suite's landing page: static HTML that polls `/suite/api` (see `server::suite`).
async fn suite_page(State(ctx): State<Arc<Context>>) -> Response {
    if ctx.node.is_none() {
        return no_node();
    }
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        include_str!("suite_page.html"),
    )
        .into_response()
}

/// The landing page's document: services with their health, nodes, keyspaces.
async fn suite_api(State(ctx): State<Arc<Context>>) -> Response {
    match &ctx.node {
        Some(node) => Json(super::suite::gather(&ctx, node).await).into_response(),
        None => no_node(),
    }
}

/// The live bytes of each keyspace's partitions this node leads, as JSON (`{"logs": 123}`):
/// what the other nodes sum to enforce the keyspaces' byte limits (`super::limits`).
async fn keyspaces_usage(State(ctx): State<Arc<Context>>) -> Response {
    match &ctx.node {
        Some(node) => Json(super::limits::local_usage(node)).into_response(),
        None => no_node(),
    }
}

/// The value of `name` in a query string such as `id=4&peer=127.0.0.1:7001` (no escapes:
/// ids and addresses need none).
fn param<'q>(query: &'q Option<String>, name: &str) -> Option<&'q str> {
    query
        .as_deref()?
        .split('&')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
}

/// A node id from the query, or the response explaining what is missing.
fn id_param(query: &Option<String>, name: &str) -> Result<u64, Box<Response>> {
    param(query, name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            let text = format!("the query must name a node: ?{name}=N\n");
            Box::new((StatusCode::BAD_REQUEST, text).into_response())
        })
}

fn node_error(error: crate::node::NodeError) -> Response {
    let status = match error {
        crate::node::NodeError::NotLeader { .. } => StatusCode::MISDIRECTED_REQUEST,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, format!("{error}\n")).into_response()
}

const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The cluster node and the node id the query names under `name`, or the response saying
/// what is missing.
fn node_and_id<'c>(
    ctx: &'c Context,
    query: &Option<String>,
    name: &str,
) -> Result<(&'c crate::node::Node, u64), Box<Response>> {
    let node = ctx.node.as_ref().ok_or_else(|| Box::new(no_node()))?;
    Ok((node, id_param(query, name)?))
}

async fn transfer_leader(
    State(ctx): State<Arc<Context>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let (node, to) = match node_and_id(&ctx, &query, "to") {
        Ok(found) => found,
        Err(response) => return *response,
    };
    match crate::node::Node::wait(
        node.transfer_leader(crate::node::DEFAULT_GROUP, to),
        ADMIN_TIMEOUT,
    )
    .await
    {
        Ok(()) => format!("transferring leadership to node {to}\n").into_response(),
        Err(error) => node_error(error),
    }
}

async fn add_node(
    State(ctx): State<Arc<Context>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let (node, id) = match node_and_id(&ctx, &query, "id") {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let change = if param(&query, "voter") == Some("true") {
        ConfigChange::AddVoter(id)
    } else {
        ConfigChange::AddLearner(id)
    };
    let peer = param(&query, "peer").map(str::to_string);
    propose_change(node, change, peer).await
}

async fn remove_node(
    State(ctx): State<Arc<Context>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    match node_and_id(&ctx, &query, "id") {
        Ok((node, id)) => propose_change(node, ConfigChange::Remove(id), None).await,
        Err(response) => *response,
    }
}

async fn propose_change(
    node: &crate::node::Node,
    change: ConfigChange,
    peer: Option<String>,
) -> Response {
    match crate::node::Node::wait(
        node.change_membership(crate::node::DEFAULT_GROUP, change, peer),
        ADMIN_TIMEOUT,
    )
    .await
    {
        Ok(index) => format!("{change:?} proposed at index {index}\n").into_response(),
        Err(error) => node_error(error),
    }
}

async fn compact(State(ctx): State<Arc<Context>>) -> Response {
    let engine = ctx.current_db().engine().clone();
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
