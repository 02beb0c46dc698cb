//! The suite's landing page, served by every store node at its HTTP admin `/suite` (no build
//! step): every service of the suite that registered in the store
//! ([`crate::client::registry`]) with its link and its health as this node sees it now, the
//! store's nodes with their cluster pages, and every keyspace with its partitions, replicas,
//! limits, live bytes and the services that use it. `/suite/api` is the same as JSON, which
//! the page polls.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::Context;
use crate::client::cluster::{ClusterClient, ClusterConfig};
use crate::client::registry::{Service, KEYSPACE};
use crate::client::ScanOptions;
use crate::node::Node;
use crate::partition::NodeState;
use crate::wire::{Consistency, ScanRange};

/// Longest wait for a service's health.
pub const HEALTH_TIMEOUT: Duration = Duration::from_millis(1000);
/// Most registrations listed.
pub const SERVICES_MAX: u32 = 1000;

/// The landing page's document: services, nodes and keyspaces (see the module's comment).
pub async fn gather(ctx: &Context, node: &Node) -> Value {
    let map = node.map();
    let services = match registered(ctx, node).await {
        Ok(services) => services,
        Err(error) => {
            tracing::debug!(%error, "reading the registry");
            Vec::new()
        }
    };
    let checks = services.iter().map(|s| async move {
        let started = Instant::now();
        let addr = s
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let answer = tokio::time::timeout(
            HEALTH_TIMEOUT,
            crate::cli::http_request(&addr, "GET", &s.health),
        )
        .await;
        let (status, detail) = match answer {
            Ok(Ok((code, body))) => (code, body.chars().take(200).collect::<String>()),
            Ok(Err(error)) => (0, error.to_string()),
            Err(_) => (0, "no answer in time".to_string()),
        };
        json!({
            "name": s.name,
            "url": s.url,
            "about": s.about,
            "keyspaces": s.keyspaces,
            "healthy": status == 200,
            "status": status,
            "detail": detail.trim(),
            "ms": started.elapsed().as_millis() as u64,
        })
    });
    let services: Vec<Value> = crate::client::cluster::join_all(checks.collect()).await;
    // Live bytes per keyspace: this node's part and every other node's, now.
    let mut usage: HashMap<String, u64> = super::limits::local_usage(node);
    for (_, theirs) in super::limits::gather(&map, node.id()).await {
        for (ks, bytes) in theirs {
            *usage.entry(ks).or_default() += bytes;
        }
    }
    let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for s in &services {
        let name = s["name"].as_str().unwrap_or("");
        for ks in s["keyspaces"].as_array().into_iter().flatten() {
            let list = users.entry(ks.as_str().unwrap_or("")).or_default();
            if !list.contains(&name) {
                list.push(name);
            }
        }
    }
    let keyspaces: Vec<Value> = map
        .keyspaces
        .values()
        .map(|ks| {
            json!({
                "name": ks.name,
                "partitions": ks.partitions,
                "replicas": ks.replicas,
                "bytes": usage.get(&ks.name).copied().unwrap_or(0),
                "bytes_max": ks.limits.bytes_max,
                "ops_max": ks.limits.ops_max,
                "used_by": users.get(ks.name.as_str()).cloned().unwrap_or_default(),
            })
        })
        .collect();
    let nodes: Vec<Value> = map
        .nodes
        .values()
        .filter(|n| n.state != NodeState::Removed)
        .map(|n| {
            json!({
                "id": n.id,
                "state": n.state.name(),
                "client": n.client,
                "resp": n.resp,
                "page": n.http.as_ref().map(|h| format!("http://{h}/")),
            })
        })
        .collect();
    json!({
        "node": node.id(),
        "map_version": map.version,
        "services": services,
        "nodes": nodes,
        "keyspaces": keyspaces,
    })
}

/// The registrations in the store, read through a client of this node's own (the registry
/// may be led by another node).
async fn registered(
    ctx: &Context,
    node: &Node,
) -> Result<Vec<Service>, crate::client::ClientError> {
    let client = match ctx.suite_client.get() {
        Some(c) => c.clone(),
        None => {
            let map = node.map();
            let me = map.nodes.get(&node.id()).map(|n| n.client.clone());
            let addresses: Vec<String> = me
                .into_iter()
                .chain(map.nodes.values().map(|n| n.client.clone()))
                .collect();
            let config = ClusterConfig {
                deadline_ms: 2_000,
                ..ClusterConfig::default()
            };
            let client = Arc::new(ClusterClient::new(addresses, config));
            ctx.suite_client.get_or_init(|| client).clone()
        }
    };
    if node.map().keyspace(KEYSPACE).is_err() {
        return Ok(Vec::new()); // no service registered yet
    }
    let page = client
        .scan(
            KEYSPACE,
            ScanOptions {
                range: ScanRange {
                    prefix: Some(bytes::Bytes::from_static(b"service:")),
                    ..ScanRange::default()
                },
                limit: SERVICES_MAX,
                continuation: None,
                keys_only: false,
                consistency: Some(Consistency::Linearizable),
            },
        )
        .await?;
    Ok(page
        .entries
        .iter()
        .filter_map(|e| Service::decode(e.value.as_deref()?))
        .collect())
}
