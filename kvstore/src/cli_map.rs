//! The commands that read or change the cluster map: `kvstore keyspace create|limit|list|
//! describe|drop` and `kvstore cluster status|drain|undrain|remove-node|rebalance|map`. They talk the binary
//! protocol to any node (`--addr`), through [`ClusterClient`], which takes a change to the
//! meta group's leader.

use std::fmt::Write as _;

use crate::cli::exit;
use crate::client::cluster::{ClusterClient, ClusterConfig};
use crate::client::ClientError;
use crate::partition::change::MapChange;
use crate::partition::map::{KeyspaceSpec, Limits, NodeId, NodeState, META_GROUP};
use crate::partition::{slot_range, ClusterMap};
use crate::wire::Consistency;

/// A command on the map.
#[derive(Debug, Clone)]
pub enum MapCommand {
    Create(KeyspaceSpec),
    /// Changes a keyspace's limits: `Some(None)` lifts one, `None` leaves it.
    Limit {
        name: String,
        bytes_max: Option<Option<u64>>,
        ops_max: Option<Option<u32>>,
    },
    List,
    Describe(String),
    Drop(String),
    SetState(NodeId, NodeState),
    Rebalance,
    /// The whole map, as JSON.
    Show,
    /// The cluster per node (`server::overview`), as a table or JSON.
    Status {
        json: bool,
    },
}

/// Runs `command` against the nodes at `addrs` (comma-separated); returns the exit code.
pub async fn run(addrs: &str, timeout_ms: u64, command: MapCommand) -> i32 {
    let addresses: Vec<String> = addrs.split(',').map(|a| a.trim().to_string()).collect();
    let client = ClusterClient::new(
        addresses,
        ClusterConfig {
            deadline_ms: timeout_ms,
            ..ClusterConfig::default()
        },
    );
    let change = match &command {
        MapCommand::Create(spec) => Some(MapChange::CreateKeyspace(spec.clone())),
        MapCommand::Drop(name) => Some(MapChange::DropKeyspace(name.clone())),
        MapCommand::SetState(node, state) => Some(MapChange::SetState {
            node: *node,
            state: *state,
        }),
        MapCommand::Rebalance => Some(MapChange::Rebalance),
        MapCommand::Limit {
            name,
            bytes_max,
            ops_max,
        } => {
            // The limits as they are, with what is given changed.
            let current = match client.current_map().await {
                Ok(map) => map,
                Err(error) => {
                    eprintln!("kvstore: {error}");
                    return exit::UNAVAILABLE;
                }
            };
            let Some(ks) = current.keyspaces.get(name) else {
                eprintln!("kvstore: no keyspace {name:?}");
                return exit::NOT_FOUND;
            };
            let mut limits = ks.limits;
            if let Some(b) = bytes_max {
                limits.bytes_max = *b;
            }
            if let Some(o) = ops_max {
                limits.ops_max = *o;
            }
            Some(MapChange::SetLimits {
                keyspace: name.clone(),
                limits,
            })
        }
        MapCommand::List
        | MapCommand::Describe(_)
        | MapCommand::Show
        | MapCommand::Status { .. } => None,
    };
    let map = match change {
        Some(change) => client.change_map(&change).await,
        None => client.current_map().await,
    };
    let map = match map {
        Ok(map) => map,
        Err(error) => {
            eprintln!("kvstore: {error}");
            return match error {
                ClientError::Server { .. } | ClientError::Protocol(_) => exit::SERVER_ERROR,
                _ => exit::UNAVAILABLE,
            };
        }
    };
    match command {
        MapCommand::Create(spec) => {
            println!(
                "created keyspace {} ({} partitions; map version {})",
                spec.name, spec.partitions, map.version
            );
            print!("{}", describe(&map, &spec.name));
        }
        MapCommand::List => print!("{}", list(&map)),
        MapCommand::Describe(name) => {
            if !map.keyspaces.contains_key(&name) {
                eprintln!("kvstore: no keyspace {name:?}");
                return exit::NOT_FOUND;
            }
            print!("{}", describe(&map, &name));
        }
        MapCommand::Drop(name) => println!("dropped keyspace {name} (map version {})", map.version),
        MapCommand::Limit { name, .. } => println!(
            "keyspace {name}: limits {} (map version {})",
            map.keyspaces
                .get(&name)
                .map_or("?".into(), |ks| limits_text(&ks.limits)),
            map.version
        ),
        MapCommand::SetState(node, state) => println!(
            "node {node} is {} (map version {}){}",
            state.name(),
            map.version,
            if map.rebalancing {
                "; the placement is rebalancing (watch `kvstore cluster map`)"
            } else {
                ""
            }
        ),
        MapCommand::Rebalance => println!(
            "map version {}: {}",
            map.version,
            if map.rebalancing {
                "moves planned"
            } else {
                "balanced, nothing to move"
            }
        ),
        MapCommand::Show => println!("{}", to_json(&map)),
        MapCommand::Status { json } => {
            let overview = crate::server::overview::gather(&map, Default::default()).await;
            if json {
                println!("{overview}");
            } else {
                print!("{}", crate::server::overview::table(&overview));
            }
        }
    }
    exit::OK
}

/// A size as `--max-bytes` takes it: a number of bytes with an optional K, M, G or T
/// (powers of 1024; `KiB`, `MB`… read the same).
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(digits);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 1048576, 512M, 2G)"))?;
    let shift = match unit.trim().to_ascii_uppercase().trim_end_matches('B') {
        "" => 0,
        "K" | "KI" => 10,
        "M" | "MI" => 20,
        "G" | "GI" => 30,
        "T" | "TI" => 40,
        _ => return Err(format!("{text:?}: the unit must be K, M, G or T")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// A limit as `keyspace limit` takes it: a value, or `none` to lift it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitArg<T>(pub Option<T>);

/// `--max-bytes` of `keyspace limit`: a size, or `none`.
pub fn parse_limit_bytes(text: &str) -> Result<LimitArg<u64>, String> {
    match text {
        "none" => Ok(LimitArg(None)),
        _ => parse_bytes(text).map(|b| LimitArg(Some(b))),
    }
}

/// `--max-ops` of `keyspace limit`: a number, or `none`.
pub fn parse_limit_ops(text: &str) -> Result<LimitArg<u32>, String> {
    match text {
        "none" => Ok(LimitArg(None)),
        _ => text
            .parse()
            .map(|n| LimitArg(Some(n)))
            .map_err(|_| format!("{text:?} is not a number of requests a second")),
    }
}

/// A keyspace's limits, as `list` and `describe` show them.
pub fn limits_text(l: &Limits) -> String {
    let bytes = l.bytes_max.map(|b| format!("{} bytes", b));
    let ops = l.ops_max.map(|o| format!("{o} ops/s"));
    match (bytes, ops) {
        (None, None) => "none".into(),
        (Some(b), None) => b,
        (None, Some(o)) => o,
        (Some(b), Some(o)) => format!("{b}, {o}"),
    }
}

fn consistency_name(c: Consistency) -> &'static str {
    match c {
        Consistency::Linearizable => "linearizable",
        Consistency::Lease => "lease",
        Consistency::Follower => "follower",
    }
}

/// One line per keyspace.
pub fn list(map: &ClusterMap) -> String {
    let mut out = format!(
        "{:<24} {:>10} {:>8} {:<13} {:>9} {}\n",
        "KEYSPACE", "PARTITIONS", "REPLICAS", "READS", "GROUPS", "LIMITS"
    );
    for ks in map.keyspaces.values() {
        let groups = ks.groups();
        let _ = writeln!(
            out,
            "{:<24} {:>10} {:>8} {:<13} {:>9} {}",
            ks.name,
            ks.partitions,
            ks.replicas,
            consistency_name(ks.read_consistency),
            format!("{}-{}", groups.start, groups.end - 1),
            limits_text(&ks.limits)
        );
    }
    out
}

/// One line per partition: its group, slots, replicas, leader and any move in flight.
pub fn describe(map: &ClusterMap, name: &str) -> String {
    let Some(ks) = map.keyspaces.get(name) else {
        return String::new();
    };
    let mut out = format!(
        "keyspace {}: {} partitions, {} replicas, {} reads, limits {}\n{:>9} {:>6} {:<13} {:<16} {:>6} {}\n",
        ks.name,
        ks.partitions,
        ks.replicas,
        consistency_name(ks.read_consistency),
        limits_text(&ks.limits),
        "PARTITION",
        "GROUP",
        "SLOTS",
        "REPLICAS",
        "LEADER",
        "MOVING TO"
    );
    for p in 0..ks.partitions {
        let g = ks.group(p);
        let Some(info) = map.groups.get(&g) else {
            continue;
        };
        let (lo, hi) = {
            let r = slot_range(p, ks.partitions);
            (r.start, r.end - 1)
        };
        let ids = |v: &[NodeId]| {
            v.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let _ = writeln!(
            out,
            "{:>9} {:>6} {:<13} {:<16} {:>6} {}",
            p,
            g,
            format!("{lo}-{hi}"),
            ids(&info.replicas),
            info.leader.map_or("-".to_string(), |l| l.to_string()),
            if info.want.is_empty() {
                String::new()
            } else {
                ids(&info.want)
            }
        );
    }
    out
}

/// The map as JSON, for scripts and the cluster page.
pub fn to_json(map: &ClusterMap) -> serde_json::Value {
    serde_json::json!({
        "version": map.version,
        "rebalancing": map.rebalancing,
        "nodes": map.nodes.values().map(|n| serde_json::json!({
            "id": n.id,
            "state": n.state.name(),
            "peer": n.peer,
            "client": n.client,
            "resp": n.resp,
            "http": n.http,
            "replicas": map.groups_on(n.id).count(),
            "leaders": map.groups.values().filter(|g| g.leader == Some(n.id)).count(),
        })).collect::<Vec<_>>(),
        "keyspaces": map.keyspaces.values().map(|ks| serde_json::json!({
            "name": ks.name,
            "partitions": ks.partitions,
            "replicas": ks.replicas,
            "read_consistency": consistency_name(ks.read_consistency),
            "first_group": ks.first_group,
            "limits": {"bytes_max": ks.limits.bytes_max, "ops_max": ks.limits.ops_max},
        })).collect::<Vec<_>>(),
        "groups": map.groups.values().map(|g| serde_json::json!({
            "group": g.group,
            "keyspace": if g.group == META_GROUP {
                Some("__meta".to_string())
            } else {
                map.keyspace_of(g.group).map(|(ks, _)| ks.name.clone())
            },
            "replicas": g.replicas,
            "learners": g.learners,
            "leader": g.leader,
            "epoch": g.epoch,
            "want": g.want,
            "preferred": g.preferred,
        })).collect::<Vec<_>>(),
    })
}
