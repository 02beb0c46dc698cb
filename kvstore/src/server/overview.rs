//! The whole cluster at a glance: the map joined with what every node says of its own
//! groups. One JSON document ([`gather`]) feeds `kvstore cluster status` (a table per node,
//! or `--json`) and the live cluster page each node serves at its HTTP admin `/`
//! (`cluster_page.html`, which polls `/cluster/overview`).
//!
//! Each node is asked for its `/cluster` status over HTTP (at most [`ASK_TIMEOUT`] each, all
//! at once); a node that does not answer is shown unreachable, with what the map says of it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::partition::map::{GroupId, NodeId, META_GROUP};
use crate::partition::{slot_range, ClusterMap, NodeState};

/// Longest wait for one node's status.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(1500);

/// The overview of the cluster `map` describes. `known` holds statuses already at hand (the
/// asking node's own), by node id; the others are fetched from each node's `/cluster`.
pub async fn gather(map: &ClusterMap, known: BTreeMap<NodeId, Value>) -> Value {
    let asks = map
        .nodes
        .values()
        .filter(|n| n.state != NodeState::Removed && !known.contains_key(&n.id))
        .filter_map(|n| Some((n.id, n.http.clone()?)))
        .map(|(id, http)| async move {
            let answer = tokio::time::timeout(
                ASK_TIMEOUT,
                crate::cli::http_request(&http, "GET", "/cluster"),
            )
            .await;
            let status = match answer {
                Ok(Ok((200, body))) => serde_json::from_str::<Value>(&body).ok(),
                _ => None,
            };
            (id, status)
        })
        .collect();
    let mut statuses = known;
    for (id, status) in crate::client::cluster::join_all(asks).await {
        if let Some(status) = status {
            statuses.insert(id, status);
        }
    }
    build(map, &statuses)
}

/// What node `n` says of group `g`, if it answered and hosts it.
fn group_status(statuses: &BTreeMap<NodeId, Value>, n: NodeId, g: GroupId) -> Option<&Value> {
    statuses
        .get(&n)?
        .get("groups")?
        .as_array()?
        .iter()
        .find(|s| s["group"].as_u64() == Some(g))
}

/// The overview from the map and the statuses (pure: the tests call it directly).
pub fn build(map: &ClusterMap, statuses: &BTreeMap<NodeId, Value>) -> Value {
    let mut per_node: BTreeMap<NodeId, (u64, u64, u64, u64, u64, u64)> = BTreeMap::new();
    let mut groups = Vec::new();
    let mut leaderless = Vec::new();
    let mut moves = Vec::new();
    for g in map.groups.values() {
        let (keyspace, partition, slots) = match map.keyspace_of(g.group) {
            Some((ks, p)) => {
                let r = slot_range(p, ks.partitions);
                (ks.name.clone(), Some(p), Some([r.start, r.end - 1]))
            }
            None if g.group == META_GROUP => ("__meta".to_string(), None, None),
            None => ("?".to_string(), None, None),
        };
        // The leader as the replicas see it (the map's hint may be a moment old).
        let members: Vec<NodeId> = g.replicas.iter().chain(&g.learners).copied().collect();
        let leader = members
            .iter()
            .copied()
            .find(|&n| group_status(statuses, n, g.group).is_some_and(|s| s["role"] == "leader"));
        let lead = leader.and_then(|l| group_status(statuses, l, g.group));
        let replicas: Vec<Value> = members
            .iter()
            .map(|&n| {
                let s = group_status(statuses, n, g.group);
                json!({
                    "node": n,
                    "voter": g.replicas.contains(&n),
                    "role": s.map(|s| s["role"].clone()).unwrap_or(Value::Null),
                    "applied": s.map(|s| s["applied"].clone()).unwrap_or(Value::Null),
                    "keys": s.map(|s| s["keys"].clone()).unwrap_or(Value::Null),
                    "bytes": s.map(|s| s["bytes"].clone()).unwrap_or(Value::Null),
                })
            })
            .collect();
        for &n in &members {
            let entry = per_node.entry(n).or_default();
            entry.0 += 1;
            if let Some(s) = group_status(statuses, n, g.group) {
                entry.2 += s["keys"].as_u64().unwrap_or(0);
                entry.3 += s["bytes"].as_u64().unwrap_or(0);
            }
        }
        if let Some(l) = leader {
            per_node.entry(l).or_default().1 += 1;
        } else {
            leaderless.push(g.group);
        }
        let last = lead.and_then(|s| s["last_index"].as_u64());
        for &to in g.want.iter().filter(|n| !g.replicas.contains(n)) {
            let matched = lead.and_then(|s| s["match_index"][to.to_string()].as_u64());
            let from: Vec<NodeId> = g
                .replicas
                .iter()
                .copied()
                .filter(|r| !g.want.contains(r))
                .collect();
            per_node.entry(to).or_default().4 += 1;
            for f in &from {
                per_node.entry(*f).or_default().5 += 1;
            }
            moves.push(json!({
                "group": g.group,
                "keyspace": keyspace,
                "to": to,
                "from": from,
                "step": if g.learners.contains(&to) { "catching up" } else { "adding" },
                "matched": matched,
                "last_index": last,
            }));
        }
        groups.push(json!({
            "group": g.group,
            "keyspace": keyspace,
            "partition": partition,
            "slots": slots,
            "leader": leader,
            "term": lead.map(|s| s["term"].clone()).unwrap_or(Value::Null),
            "commit": lead.map(|s| s["commit"].clone()).unwrap_or(Value::Null),
            "epoch": g.epoch,
            "replicas": replicas,
            "want": g.want,
            "preferred": g.preferred,
        }));
    }
    let nodes: Vec<Value> = map
        .nodes
        .values()
        .filter(|n| n.state != NodeState::Removed)
        .map(|n| {
            let (replicas, leaders, keys, bytes, moving_in, moving_out) =
                per_node.get(&n.id).copied().unwrap_or_default();
            json!({
                "id": n.id,
                "state": n.state.name(),
                "reachable": statuses.contains_key(&n.id),
                "client": n.client,
                "resp": n.resp,
                "http": n.http,
                "replicas": replicas,
                "leaders": leaders,
                "keys": keys,
                "bytes": bytes,
                "moving_in": moving_in,
                "moving_out": moving_out,
            })
        })
        .collect();
    json!({
        "version": map.version,
        "rebalancing": map.rebalancing,
        "nodes": nodes,
        "keyspaces": map.keyspaces.values().map(|ks| json!({
            "name": ks.name,
            "partitions": ks.partitions,
            "replicas": ks.replicas,
            "first_group": ks.first_group,
        })).collect::<Vec<_>>(),
        "groups": groups,
        "moves": moves,
        "leaderless": leaderless,
    })
}

/// The `kvstore cluster status` table of an overview.
pub fn table(overview: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "map version {}{}; {} keyspaces, {} groups, {} moves in flight\n",
        overview["version"],
        if overview["rebalancing"] == true {
            ", rebalancing"
        } else {
            ""
        },
        overview["keyspaces"].as_array().map_or(0, Vec::len),
        overview["groups"].as_array().map_or(0, Vec::len),
        overview["moves"].as_array().map_or(0, Vec::len),
    );
    let _ = writeln!(
        out,
        "{:>5}  {:<9}  {:>8}  {:>7}  {:>9}  {:>12}  {:>6}  {:<21}  HTTP",
        "NODE", "STATE", "REPLICAS", "LEADERS", "KEYS", "BYTES", "MOVES", "CLIENT"
    );
    for n in overview["nodes"].as_array().into_iter().flatten() {
        let state = if n["reachable"] == true {
            n["state"].as_str().unwrap_or("?").to_string()
        } else {
            format!("{}?", n["state"].as_str().unwrap_or("?"))
        };
        let _ = writeln!(
            out,
            "{:>5}  {:<9}  {:>8}  {:>7}  {:>9}  {:>12}  {:>6}  {:<21}  {}",
            n["id"].to_string(),
            state,
            n["replicas"].to_string(),
            n["leaders"].to_string(),
            n["keys"].to_string(),
            n["bytes"].to_string(),
            format!("+{}-{}", n["moving_in"], n["moving_out"]),
            n["client"].as_str().unwrap_or(""),
            n["http"].as_str().unwrap_or("-"),
        );
    }
    for m in overview["moves"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "moving group {} ({}) to node {} from {}: {} ({} of {} entries)",
            m["group"],
            m["keyspace"].as_str().unwrap_or("?"),
            m["to"],
            m["from"],
            m["step"].as_str().unwrap_or("?"),
            m["matched"],
            m["last_index"],
        );
    }
    let leaderless: Vec<String> = overview["leaderless"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| g.to_string())
        .collect();
    if !leaderless.is_empty() {
        let _ = writeln!(out, "groups with no leader seen: {}", leaderless.join(", "));
    }
    out.push_str("(state?: the node did not answer; MOVES: +replicas coming, -replicas leaving)\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_overview_counts_what_each_node_says_and_shows_moves() {
        let nodes = crate::partition::map::tests::nodes(3);
        let mut map = ClusterMap::bootstrap(nodes, 2, 2);
        // Group 1 moves from node 1 to node 3; node 3 is catching up.
        let g = map.groups.get_mut(&1).unwrap();
        g.replicas = vec![1, 2];
        g.learners = vec![3];
        g.want = vec![2, 3];
        let statuses: BTreeMap<NodeId, Value> = [
            (
                1,
                json!({"groups": [
                    {"group": 0, "role": "leader", "keys": 1, "bytes": 100},
                    {"group": 1, "role": "leader", "last_index": 50, "match_index": {"3": 20},
                     "keys": 10, "bytes": 1000},
                ]}),
            ),
            (
                2,
                json!({"groups": [
                    {"group": 0, "role": "follower", "keys": 1, "bytes": 100},
                    {"group": 1, "role": "follower", "keys": 10, "bytes": 1000},
                    {"group": 2, "role": "follower", "keys": 5, "bytes": 500},
                ]}),
            ),
        ]
        .into();
        let o = build(&map, &statuses);
        let node = |id: u64| {
            o["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["id"] == id)
                .unwrap()
                .clone()
        };
        assert_eq!(node(1)["leaders"], 2);
        assert_eq!(node(1)["moving_out"], 1);
        assert_eq!(node(3)["moving_in"], 1);
        assert_eq!(node(3)["reachable"], false);
        assert_eq!(node(2)["bytes"], 1600);
        assert_eq!(o["moves"][0]["matched"], 20);
        assert_eq!(o["moves"][0]["step"], "catching up");
        assert_eq!(
            o["leaderless"],
            json!([2]),
            "nobody reports leading group 2"
        );
        let table = table(&o);
        assert!(
            table.contains("moving group 1 (default) to node 3"),
            "{table}"
        );
        assert!(table.contains("groups with no leader seen: 2"), "{table}");
    }
}
