//! Per-keyspace limits at a node's front door: the applications of the suite share one
//! cluster, and a runaway crawler or a log flood must not take it from the others. A
//! keyspace's [`Limits`] (in the cluster map, set with `kvstore keyspace create|limit`) cap
//! its live bytes and its requests a second; this module enforces them where requests come
//! in, before anything is proposed to Raft, with an error that names the keyspace and the
//! limit (`OverQuota`, `RateLimited` on the binary protocol; `-OOM` and `-RATELIMITED` on
//! RESP).
//!
//! **Bytes.** Each node knows the live bytes of the partitions it leads exactly (its
//! engines' statistics) and learns the others' from their HTTP admin `/keyspaces/usage`
//! every [`USAGE_GATHER_EVERY`]; [`refresh`] sums them, every [`USAGE_REFRESH`]. A write that
//! adds data (put, incr, a batch with a put) to a keyspace at or over its `bytes_max` is
//! refused; deletes always go, so an application can make room. The usage is a moment old,
//! so a keyspace can go past its limit by what its writers add in that moment (as with the
//! storage quotas of CockroachDB's tenants: enforced from reported usage, not on every
//! byte); it is never more than that.
//!
//! **Requests a second.** Each node has a token bucket per limited keyspace, filled at the
//! node's share of `ops_max`: the fraction of the keyspace's partitions it leads (requests go
//! to leaders, so the shares add up to the whole when the load is spread over the
//! partitions), with a second's worth of burst. A request takes one token per operation (a
//! batch, one per operation in it); a request that finds too few is refused, with how long
//! to wait. Redirected requests take none.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::node::Node;
use crate::partition::map::{ClusterMap, Limits, NodeId};
use crate::partition::NodeState;
use crate::wire::message::{ErrorCode, Response};

/// How often a node recomputes the usage it enforces (its own part, exactly).
pub const USAGE_REFRESH: Duration = Duration::from_millis(250);
/// How often it asks the other nodes for theirs.
pub const USAGE_GATHER_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for another node's usage.
pub const USAGE_ASK_TIMEOUT: Duration = Duration::from_millis(800);
/// Keyspaces with a rate limit a node keeps a bucket for (the map holds at most this many
/// anyway in practice; a bound all the same).
pub const RATE_BUCKETS_MAX: usize = 4096;

/// What a node enforces, shared by its connections.
#[derive(Default, Debug)]
pub struct KeyspaceLimits {
    /// Live bytes per keyspace across the cluster, as of the last refresh.
    usage: RwLock<HashMap<String, u64>>,
    /// The other nodes' last answers, by node (kept between their gathers).
    remote: Mutex<BTreeMap<NodeId, HashMap<String, u64>>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    /// Tokens a second: this node's share of the keyspace's limit.
    rate: f64,
    at: Instant,
}

impl KeyspaceLimits {
    /// Whether a request on `keyspace` of `ops` operations may go, given its limits; `adds`:
    /// whether it can add data (a delete cannot). The refusal names the keyspace and limit.
    pub fn check(
        &self,
        map: &ClusterMap,
        node: NodeId,
        keyspace: &str,
        ops: u32,
        adds: bool,
    ) -> Result<(), Response> {
        let Some(ks) = map.keyspaces.get(keyspace) else {
            return Ok(());
        };
        let Limits { bytes_max, ops_max } = ks.limits;
        if let (Some(max), true) = (bytes_max, adds) {
            let used = self.usage(keyspace);
            if used >= max {
                return Err(Response::error(
                    ErrorCode::OverQuota,
                    format!(
                        "keyspace {keyspace} holds {used} bytes, at its limit of {max}: \
                         writes that add data are refused until deletes make room"
                    ),
                ));
            }
        }
        if let Some(max) = ops_max {
            let share = leader_share(map, node, keyspace);
            let rate = (f64::from(max) * share).max(1.0);
            let now = Instant::now();
            let mut buckets = self.buckets.lock().expect("rate buckets");
            if !buckets.contains_key(keyspace) && buckets.len() >= RATE_BUCKETS_MAX {
                buckets.clear(); // keyspaces dropped and made again, over and over
            }
            let b = buckets.entry(keyspace.to_string()).or_insert(Bucket {
                tokens: rate,
                rate,
                at: now,
            });
            b.rate = rate;
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
            b.at = now;
            let need = f64::from(ops.max(1));
            if b.tokens < need {
                let wait_ms = ((need - b.tokens) / rate * 1000.0).ceil() as u64;
                return Err(Response::error(
                    ErrorCode::RateLimited,
                    crate::wire::message::rate_limited_message(keyspace, max, wait_ms),
                ));
            }
            b.tokens -= need;
        }
        Ok(())
    }

    /// The keyspace's live bytes across the cluster, as last refreshed.
    pub fn usage(&self, keyspace: &str) -> u64 {
        let usage = self.usage.read().expect("usage");
        usage.get(keyspace).copied().unwrap_or(0)
    }
}

/// The keyspace, the operations and whether it can add data, of a request that has them.
pub fn shape(request: &crate::wire::message::Request) -> Option<(&str, u32, bool)> {
    use crate::wire::message::{BatchOp, Request};
    Some(match request {
        Request::Get { keyspace, .. } | Request::Scan { keyspace, .. } => (keyspace, 1, false),
        Request::Put { keyspace, .. } | Request::Incr { keyspace, .. } => (keyspace, 1, true),
        Request::Delete { keyspace, .. } => (keyspace, 1, false),
        Request::Batch { keyspace, ops } => {
            let adds = ops.iter().any(|op| matches!(op, BatchOp::Put { .. }));
            (keyspace, u32::try_from(ops.len()).unwrap_or(u32::MAX), adds)
        }
        _ => return None,
    })
}

/// The operations and whether it can add data, of an operation of the RESP port.
pub fn op_shape(op: &crate::op::Op) -> (u32, bool) {
    use crate::op::Op;
    match op {
        Op::Request(request) => shape(request).map_or((1, false), |(_, n, adds)| (n, adds)),
        Op::DeleteKeys { keys, .. } => (u32::try_from(keys.len()).unwrap_or(u32::MAX), false),
        Op::SetExpiry { .. } | Op::Flush { .. } => (1, false),
    }
}

/// The RESP answer to a refusal of [`KeyspaceLimits::check`]: `-OOM …` for bytes (as Redis
/// answers a write past its `maxmemory`), `-RATELIMITED …` for requests.
pub fn resp_refusal(refusal: Response) -> crate::resp::codec::Reply {
    let text = match refusal {
        Response::Error {
            code: ErrorCode::OverQuota,
            message,
        } => format!("OOM {message}"),
        Response::Error {
            code: ErrorCode::RateLimited,
            message,
        } => format!("RATELIMITED {message}"),
        Response::Error { message, .. } => format!("ERR {message}"),
        _ => "ERR refused".to_string(),
    };
    crate::resp::codec::Reply::Error(text.into())
}

/// The fraction of `keyspace`'s partitions the map says `node` leads (at least one
/// partition's worth: a node whose hint is stale still serves at some rate).
fn leader_share(map: &ClusterMap, node: NodeId, keyspace: &str) -> f64 {
    let Some(ks) = map.keyspaces.get(keyspace) else {
        return 1.0;
    };
    let led = ks
        .groups()
        .filter(|g| map.groups.get(g).and_then(|p| p.leader) == Some(node))
        .count()
        .max(1);
    led as f64 / f64::from(ks.partitions.max(1))
}

/// The live bytes of each keyspace's partitions this node leads (what `/keyspaces/usage`
/// answers, and this node's part of the sum).
pub fn local_usage(node: &Node) -> HashMap<String, u64> {
    let map = node.map();
    let mut usage: HashMap<String, u64> = HashMap::new();
    for g in node.status().groups {
        if g.role != "leader" {
            continue;
        }
        let Some((ks, _)) = map.keyspace_of(g.group) else {
            continue;
        };
        if let Some(db) = node.db(g.group) {
            *usage.entry(ks.name.clone()).or_default() += db.engine().stats().live_bytes;
        }
    }
    usage
}

/// Keeps `limits`' usage current until the process ends: its own part every
/// [`USAGE_REFRESH`], the other nodes' every [`USAGE_GATHER_EVERY`].
pub async fn refresh(limits: std::sync::Arc<KeyspaceLimits>, node: Node) {
    let mut tick = tokio::time::interval(USAGE_REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_gather: Option<Instant> = None;
    loop {
        tick.tick().await;
        let map = node.map();
        if !map.keyspaces.values().any(|k| k.limits.bytes_max.is_some()) {
            continue; // nothing to enforce: ask no one
        }
        if last_gather.is_none_or(|t| t.elapsed() >= USAGE_GATHER_EVERY) {
            last_gather = Some(Instant::now());
            let answers = gather(&map, node.id()).await;
            let mut remote = limits.remote.lock().expect("remote usage");
            remote.retain(|id, _| {
                map.nodes
                    .get(id)
                    .is_some_and(|n| n.state != NodeState::Removed)
            });
            for (id, usage) in answers {
                remote.insert(id, usage);
            }
        }
        let mut total = local_usage(&node);
        for usage in limits.remote.lock().expect("remote usage").values() {
            for (ks, bytes) in usage {
                *total.entry(ks.clone()).or_default() += bytes;
            }
        }
        *limits.usage.write().expect("usage") = total;
    }
}

/// Every other node's `/keyspaces/usage` (those that answer in time).
pub(crate) async fn gather(map: &ClusterMap, me: NodeId) -> Vec<(NodeId, HashMap<String, u64>)> {
    let asks = map
        .nodes
        .values()
        .filter(|n| n.id != me && n.state != NodeState::Removed)
        .filter_map(|n| Some((n.id, n.http.clone()?)))
        .map(|(id, http)| async move {
            let answer = tokio::time::timeout(
                USAGE_ASK_TIMEOUT,
                crate::cli::http_request(&http, "GET", "/keyspaces/usage"),
            )
            .await;
            match answer {
                Ok(Ok((200, body))) => serde_json::from_str(&body).ok().map(|u| (id, u)),
                _ => None,
            }
        })
        .collect();
    crate::client::cluster::join_all(asks)
        .await
        .into_iter()
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::map::tests::nodes;

    fn map(limits: Limits) -> ClusterMap {
        let mut map = ClusterMap::bootstrap(nodes(3), 8, 3);
        map.keyspaces.get_mut("default").unwrap().limits = limits;
        map
    }

    fn code(r: Result<(), Response>) -> Option<ErrorCode> {
        match r {
            Ok(()) => None,
            Err(Response::Error { code, .. }) => Some(code),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn at_its_byte_limit_a_keyspace_refuses_what_adds_data_and_takes_deletes() {
        let map = map(Limits {
            bytes_max: Some(1000),
            ops_max: None,
        });
        let limits = KeyspaceLimits::default();
        assert_eq!(code(limits.check(&map, 1, "default", 1, true)), None);
        limits.usage.write().unwrap().insert("default".into(), 1000);
        assert_eq!(
            code(limits.check(&map, 1, "default", 1, true)),
            Some(ErrorCode::OverQuota)
        );
        assert_eq!(
            code(limits.check(&map, 1, "default", 1, false)),
            None,
            "a delete"
        );
        assert_eq!(
            code(limits.check(&map, 1, "other", 1, true)),
            None,
            "not in the map"
        );
    }

    #[test]
    fn a_node_serves_its_share_of_the_rate_and_the_bucket_fills_again() {
        let map = map(Limits {
            bytes_max: None,
            ops_max: Some(800),
        });
        // The founding map spreads the 8 leaders: node 1 leads some share of them.
        let share = leader_share(&map, 1, "default");
        let rate = (800.0 * share) as u64;
        assert!(rate >= 100, "{rate}");
        let limits = KeyspaceLimits::default();
        let mut served = 0;
        while code(limits.check(&map, 1, "default", 1, false)).is_none() {
            served += 1;
            assert!(served <= rate + 1, "more than a second's burst");
        }
        assert!(served + 1 >= rate, "{served} of a burst of {rate}");
        let refused = limits.check(&map, 1, "default", 1, false).unwrap_err();
        let Response::Error {
            code: refused_code,
            message,
        } = refused
        else {
            panic!()
        };
        assert_eq!(refused_code, ErrorCode::RateLimited);
        assert!(message.contains("retry after"), "{message}");
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            code(limits.check(&map, 1, "default", 1, false)),
            None,
            "refilled"
        );
        // A batch takes a token per operation.
        assert_eq!(
            code(limits.check(&map, 1, "default", 10_000, false)),
            Some(ErrorCode::RateLimited)
        );
    }
}
