//! The Redis Cluster face of a cluster node's RESP port: `CLUSTER SLOTS`, `SHARDS`, `NODES`,
//! `KEYSLOT`, `INFO`, `MYID`, and `ASKING`, answered from the node's cluster map and the
//! leaders it knows, so that `redis-cli -c`, `redis-benchmark --cluster` and redis-py's
//! `RedisCluster` find every slot's node by themselves.
//!
//! Redis Cluster has one master per slot range and calls a node either a master or a
//! replica; here every partition (a contiguous slot range) has its own Raft leader, and one
//! node leads some partitions and follows in others. So each partition is a "shard" whose
//! master is its current leader, and `CLUSTER NODES` lists every node as a master of the
//! slots it leads: what a Redis client needs to send each key to the node that can write it.
//! Node ids are the store's node numbers as 40 hex digits.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::node::Node;
use crate::partition::map::{GroupId, NodeId};
use crate::partition::{self, ClusterMap};
use crate::resp::codec::Reply;

/// The 40-character id Redis Cluster clients expect for node `id`.
pub fn node_id(id: NodeId) -> String {
    format!("{id:040x}")
}

/// Each group's leader as this node knows it: from its own replica when it hosts one, else
/// the map's hint.
fn leaders(node: &Node, map: &ClusterMap) -> BTreeMap<GroupId, NodeId> {
    let mut leaders: BTreeMap<GroupId, NodeId> = map
        .groups
        .values()
        .filter_map(|g| Some((g.group, g.leader.or_else(|| g.replicas.first().copied())?)))
        .collect();
    for g in node.status().groups {
        if let Some(leader) = g.leader {
            leaders.insert(g.group, leader);
        }
    }
    leaders
}

/// `host` and `port` of a RESP address.
fn host_port(address: &str) -> (String, i64) {
    match address.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(0)),
        None => (address.to_string(), 0),
    }
}

fn bulk(text: impl Into<String>) -> Reply {
    Reply::Bulk(Bytes::from(text.into()))
}

/// A `CLUSTER …` command (`args[0]` is `CLUSTER`).
pub fn cluster(node: &Node, args: &[&[u8]]) -> Reply {
    let sub = args
        .get(1)
        .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase())
        .unwrap_or_default();
    let map = node.map_for_clients();
    let resp_of = |id: NodeId| node.address_of(id).and_then(|a| a.resp);
    match (sub.as_str(), &args[2.min(args.len())..]) {
        ("keyslot", [key]) => Reply::Integer(i64::from(partition::slot(key))),
        ("myid", []) => bulk(node_id(node.id())),
        ("info", []) => {
            let known = map.nodes.len();
            let info = format!(
                "cluster_enabled:1\r\ncluster_state:ok\r\ncluster_slots_assigned:{slots}\r\n\
                 cluster_slots_ok:{slots}\r\ncluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n\
                 cluster_known_nodes:{known}\r\ncluster_size:{known}\r\n\
                 cluster_current_epoch:{v}\r\ncluster_my_epoch:{v}\r\n",
                slots = partition::SLOTS,
                v = map.version,
            );
            bulk(info)
        }
        ("slots", []) => {
            let leaders = leaders(node, &map);
            let mut rows = Vec::new();
            for (ks, group, range) in default_ranges(&map) {
                let _ = ks;
                let Some(g) = map.groups.get(&group) else {
                    continue;
                };
                let Some(&leader) = leaders.get(&group) else {
                    continue;
                };
                let mut row = vec![
                    Reply::Integer(i64::from(range.start)),
                    Reply::Integer(i64::from(range.end) - 1),
                ];
                let order = std::iter::once(leader)
                    .chain(g.replicas.iter().copied().filter(|&r| r != leader));
                for id in order {
                    let Some(resp) = resp_of(id) else { continue };
                    let (host, port) = host_port(&resp);
                    row.push(Reply::Array(vec![
                        bulk(host),
                        Reply::Integer(port),
                        bulk(node_id(id)),
                    ]));
                }
                if row.len() > 2 {
                    rows.push(Reply::Array(row));
                }
            }
            Reply::Array(rows)
        }
        ("shards", []) => {
            let leaders = leaders(node, &map);
            let mut shards = Vec::new();
            for (_, group, range) in default_ranges(&map) {
                let Some(g) = map.groups.get(&group) else {
                    continue;
                };
                let leader = leaders.get(&group).copied();
                let nodes = g
                    .replicas
                    .iter()
                    .filter_map(|&id| {
                        let resp = resp_of(id)?;
                        let (host, port) = host_port(&resp);
                        let role = if Some(id) == leader {
                            "master"
                        } else {
                            "replica"
                        };
                        Some(Reply::Array(vec![
                            bulk("id"),
                            bulk(node_id(id)),
                            bulk("port"),
                            Reply::Integer(port),
                            bulk("ip"),
                            bulk(host.clone()),
                            bulk("endpoint"),
                            bulk(host),
                            bulk("role"),
                            bulk(role),
                            bulk("replication-offset"),
                            Reply::Integer(0),
                            bulk("health"),
                            bulk("online"),
                        ]))
                    })
                    .collect();
                shards.push(Reply::Array(vec![
                    bulk("slots"),
                    Reply::Array(vec![
                        Reply::Integer(i64::from(range.start)),
                        Reply::Integer(i64::from(range.end) - 1),
                    ]),
                    bulk("nodes"),
                    Reply::Array(nodes),
                ]));
            }
            Reply::Array(shards)
        }
        ("nodes", []) => {
            let leaders = leaders(node, &map);
            let mut slots: BTreeMap<NodeId, Vec<std::ops::Range<u16>>> = BTreeMap::new();
            for (_, group, range) in default_ranges(&map) {
                if let Some(&leader) = leaders.get(&group) {
                    let ranges = slots.entry(leader).or_default();
                    // Adjacent partitions with one leader make one range, as Redis prints.
                    match ranges.last_mut() {
                        Some(last) if last.end == range.start => last.end = range.end,
                        _ => ranges.push(range),
                    }
                }
            }
            let mut text = String::new();
            for id in map.nodes.keys() {
                let Some(resp) = resp_of(*id) else { continue };
                let (host, port) = host_port(&resp);
                let flags = if *id == node.id() {
                    "myself,master"
                } else {
                    "master"
                };
                text.push_str(&format!(
                    "{} {host}:{port}@{} {flags} - 0 0 {} connected",
                    node_id(*id),
                    port + 10000,
                    map.version
                ));
                for r in slots.get(id).into_iter().flatten() {
                    if r.end - r.start == 1 {
                        text.push_str(&format!(" {}", r.start));
                    } else {
                        text.push_str(&format!(" {}-{}", r.start, r.end - 1));
                    }
                }
                text.push('\n');
            }
            bulk(text)
        }
        (other, _) => Reply::Error(
            format!(
                "ERR unknown or malformed CLUSTER subcommand '{other}' (this node knows \
                 KEYSLOT, SLOTS, SHARDS, NODES, INFO and MYID)"
            )
            .into(),
        ),
    }
}

/// The keyspace `default`'s partitions (the RESP port serves it): their groups and slot
/// ranges, in slot order.
fn default_ranges(map: &ClusterMap) -> Vec<(u32, GroupId, std::ops::Range<u16>)> {
    let Ok(ks) = map.keyspace(crate::wire::DEFAULT_KEYSPACE) else {
        return Vec::new();
    };
    (0..ks.partitions)
        .map(|p| (p, ks.group(p), partition::slot_range(p, ks.partitions)))
        .collect()
}
