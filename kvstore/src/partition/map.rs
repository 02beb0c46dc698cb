//! The cluster map: the nodes, the keyspaces, and for every Raft group (each partition, and
//! the `meta` group) its replicas, leader hint and epoch. Its encoding, and the placement a
//! cluster starts with.
//!
//! The map is a value in the `meta` group's store (key [`MAP_KEY`] of keyspace
//! [`META_KEYSPACE`]): the meta leader changes it with a compare-and-set on its version, so
//! changes are totally ordered, and every node and client caches a copy. `version` counts the
//! changes (the map a cluster is founded with has version 1); a node answers a redirect with
//! the version it has, so a client knows when to fetch a newer one.
//!
//! Groups of a keyspace are numbered consecutively: partition `p` of keyspace `ks` is group
//! `ks.first_group + p`. Group 0 is `meta`.
//!
//! Encoding: a format byte ([`MAP_FORMAT`]) and then fields of the wire protocol's field
//! encoding (`docs/wire-protocol.md`, "Fields"), with nested messages for nodes, keyspaces and
//! groups; unknown fields are skipped, so a newer map can add some.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use crate::wire::field::{FieldReader, FieldWriter, Value};
use crate::wire::Consistency;

pub type NodeId = u64;
pub type GroupId = u64;

/// The group that holds the cluster map.
pub const META_GROUP: GroupId = 0;
/// Most replicas of the meta group (it needs a quorum for every map change, not for data).
pub const META_REPLICAS_MAX: usize = 5;
/// The keyspace of the meta group that stores the map.
pub const META_KEYSPACE: &str = "__meta";
/// The key of the map in [`META_KEYSPACE`].
pub const MAP_KEY: &[u8] = b"cluster-map";
/// Partitions of a keyspace when its creator names none (as Riak's and Elasticsearch's defaults).
pub const DEFAULT_PARTITIONS: u32 = 64;
/// Replicas of each partition when its creator names none (fewer on a smaller cluster).
pub const DEFAULT_REPLICAS: u32 = 3;
/// Most partitions of one keyspace: one slot each.
pub const PARTITIONS_MAX: u32 = super::SLOTS as u32;
/// Most replicas of one partition.
pub const REPLICAS_MAX: u32 = 7;
/// The format byte an encoded map starts with.
pub const MAP_FORMAT: u8 = 1;

/// What the cluster thinks of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum NodeState {
    /// Serving.
    #[default]
    Up = 0,
    /// Not heard from for longer than the down delay: its replicas are re-created elsewhere.
    Down = 1,
    /// Being emptied (`kvstore cluster drain`): it receives no replicas and gives its away.
    Draining = 2,
    /// Retired (`kvstore cluster remove-node`): it holds nothing and is no longer a peer.
    Removed = 3,
}

impl NodeState {
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Up => "up",
            NodeState::Down => "down",
            NodeState::Draining => "draining",
            NodeState::Removed => "removed",
        }
    }

    pub(super) fn from_code(code: u64) -> Result<NodeState, MapError> {
        Ok(match code {
            0 => NodeState::Up,
            1 => NodeState::Down,
            2 => NodeState::Draining,
            3 => NodeState::Removed,
            _ => return Err(MapError::Malformed(format!("node state {code}"))),
        })
    }
}

/// A node and where to reach it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeInfo {
    pub id: NodeId,
    /// Where its peers connect (the Raft transport).
    pub peer: String,
    /// Its binary-protocol address.
    pub client: String,
    /// Its RESP address, if it serves one.
    pub resp: Option<String>,
    /// Its HTTP admin address, if it serves one.
    pub http: Option<String>,
    pub state: NodeState,
}

/// What a keyspace may use of the cluster, so that one application (a runaway crawler, a
/// log flood) cannot take it all from the others. Each is off when `None`. The store
/// enforces both at the nodes' front doors (`server::limits`): a write that would add data to
/// a keyspace at or over `bytes_max` is refused with `OverQuota` (deletes still go, to make
/// room), and requests past `ops_max` a second with `RateLimited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    /// Live bytes (keys and values, on one replica) the keyspace may hold.
    pub bytes_max: Option<u64>,
    /// Requests a second across the cluster (each operation of a batch counts).
    pub ops_max: Option<u32>,
}

/// A keyspace: a name, a fixed partition count, a replication factor, a default read
/// consistency, its limits, and where its groups' numbers start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceInfo {
    pub name: String,
    pub partitions: u32,
    pub replicas: u32,
    pub read_consistency: Consistency,
    pub limits: Limits,
    pub first_group: GroupId,
}

impl KeyspaceInfo {
    /// The group of partition `p`.
    pub fn group(&self, p: u32) -> GroupId {
        self.first_group + u64::from(p)
    }

    /// The group that holds `slot`.
    pub fn group_of_slot(&self, slot: u16) -> GroupId {
        self.group(super::partition_of_slot(slot, self.partitions))
    }

    /// The groups of this keyspace, in partition (and so slot) order.
    pub fn groups(&self) -> std::ops::Range<GroupId> {
        self.first_group..self.first_group + u64::from(self.partitions)
    }
}

/// A Raft group as the map records it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionInfo {
    pub group: GroupId,
    /// Its voters.
    pub replicas: Vec<NodeId>,
    /// Non-voting replicas catching up (a move's target before it is promoted).
    pub learners: Vec<NodeId>,
    /// The last leader the meta leader heard of: a hint, never a promise.
    pub leader: Option<NodeId>,
    /// The index of the group's membership in force when the map was written (0: the founding
    /// one). A node refuses a request that names an older epoch than its own.
    pub epoch: u64,
    /// The voters the placement wants, while a move is in flight (empty: none is). The group's
    /// leader changes the membership towards it one step at a time (see
    /// [`super::change::leader_step`]); `replicas` and `learners` are what it last reported.
    pub want: Vec<NodeId>,
    /// The replica the placement wants to lead (leader balance); cleared once it does.
    pub preferred: Option<NodeId>,
    /// The Raft term of the last report: reports are ordered by (term, epoch), since a
    /// replica restored from a snapshot counts its membership from the snapshot's index.
    pub term: u64,
}

impl PartitionInfo {
    /// Whether `node` has, or is to get, a replica of this group: a voter, a learner, or one
    /// of the voters a move wants. A node deletes its replica of a group once this is false.
    pub fn places(&self, node: NodeId) -> bool {
        self.replicas.contains(&node) || self.learners.contains(&node) || self.want.contains(&node)
    }
}

/// Why a map could not be decoded or changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("malformed cluster map: {0}")]
    Malformed(String),
    #[error("cluster map format {0} is not known to this build (it knows {MAP_FORMAT})")]
    UnknownFormat(u8),
    #[error("no keyspace {0:?}")]
    UnknownKeyspace(String),
    #[error("the keyspace {0:?} exists already")]
    KeyspaceExists(String),
    #[error("invalid keyspace: {0}")]
    InvalidKeyspace(String),
    #[error("no node {0} in the cluster map")]
    UnknownNode(NodeId),
    #[error("no group {0} in the cluster map")]
    UnknownGroup(GroupId),
    /// A change that would break an invariant of the map, with the reason.
    #[error("{0}")]
    Refused(String),
}

/// The cluster map (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterMap {
    /// Counts the changes: 1 for the founding map.
    pub version: u64,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    pub keyspaces: BTreeMap<String, KeyspaceInfo>,
    /// Every group: [`META_GROUP`] and each keyspace's partitions.
    pub groups: BTreeMap<GroupId, PartitionInfo>,
    /// The number the next keyspace's first group gets.
    pub next_group: GroupId,
    /// The meta leader is rebalancing: a node joined, was drained, went down, or an operator
    /// asked. It plans again every second until a plan is empty and no move is in flight (the
    /// planner runs on events, not all the time: a manually placed replica stays put).
    pub rebalancing: bool,
}

/// How a keyspace is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceSpec {
    pub name: String,
    pub partitions: u32,
    /// Asked-for replicas; the cluster gives fewer if it has fewer nodes that are up.
    pub replicas: u32,
    pub read_consistency: Consistency,
    pub limits: Limits,
}

impl KeyspaceSpec {
    pub fn new(name: &str) -> KeyspaceSpec {
        KeyspaceSpec {
            name: name.to_string(),
            partitions: DEFAULT_PARTITIONS,
            replicas: DEFAULT_REPLICAS,
            read_consistency: Consistency::Linearizable,
            limits: Limits::default(),
        }
    }

    /// Checks the name (as the data model does: 1 to 64 bytes of ASCII letters, digits, `_`,
    /// `-`, `.`, and not starting with `__`, which the store keeps for itself) and the counts.
    pub fn validate(&self) -> Result<(), MapError> {
        let name = &self.name;
        let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if name.is_empty() || name.len() > 64 || !name.chars().all(fine) {
            return Err(MapError::InvalidKeyspace(format!(
                "name {name:?}: 1 to 64 bytes of ASCII letters, digits, '_', '-' and '.'"
            )));
        }
        if name.starts_with("__") {
            return Err(MapError::InvalidKeyspace(format!(
                "name {name:?}: names starting with \"__\" are the store's own"
            )));
        }
        if !(1..=PARTITIONS_MAX).contains(&self.partitions) {
            return Err(MapError::InvalidKeyspace(format!(
                "{} partitions: 1 to {PARTITIONS_MAX}",
                self.partitions
            )));
        }
        if !(1..=REPLICAS_MAX).contains(&self.replicas) {
            return Err(MapError::InvalidKeyspace(format!(
                "{} replicas: 1 to {REPLICAS_MAX}",
                self.replicas
            )));
        }
        Ok(())
    }
}

impl ClusterMap {
    /// The map a cluster is founded with: `nodes` (all up), the meta group on the first
    /// [`META_REPLICAS_MAX`] of them by id, and the keyspace `default` with `partitions`
    /// partitions of `min(replicas, nodes)` replicas, placed round-robin: partition `p` on
    /// nodes `p, p+1, …` (mod n), its first replica the preferred leader. Every founding node
    /// computes the same map from the same `--peers`.
    pub fn bootstrap(nodes: Vec<NodeInfo>, partitions: u32, replicas: u32) -> ClusterMap {
        let mut map = ClusterMap {
            version: 1,
            nodes: nodes.into_iter().map(|n| (n.id, n)).collect(),
            next_group: META_GROUP + 1,
            ..ClusterMap::default()
        };
        let ids: Vec<NodeId> = map.nodes.keys().copied().collect();
        let meta: Vec<NodeId> = ids.iter().copied().take(META_REPLICAS_MAX).collect();
        map.groups.insert(
            META_GROUP,
            PartitionInfo {
                group: META_GROUP,
                leader: meta.first().copied(),
                replicas: meta,
                ..PartitionInfo::default()
            },
        );
        let spec = KeyspaceSpec {
            partitions,
            replicas,
            ..KeyspaceSpec::new(crate::wire::DEFAULT_KEYSPACE)
        };
        let r = (replicas as usize).min(ids.len()).max(1);
        let placed: Vec<Vec<NodeId>> = (0..partitions as usize)
            .map(|p| (0..r).map(|i| ids[(p + i) % ids.len()]).collect())
            .collect();
        map.insert_keyspace(&spec, placed)
            .expect("the founding keyspace is valid");
        // The first replicas campaign at once, but a node that starts before its peers loses
        // its elections to them: the meta leader balances the leaders once everyone is up.
        // A keyspace in one partition (part 2's single group) keeps the leader it elects.
        map.rebalancing = partitions > 1;
        map
    }

    /// Adds a keyspace whose partition `p` has the replicas `placed[p]` (first: the preferred
    /// leader). Does not bump the version (the caller does, once per change).
    pub fn insert_keyspace(
        &mut self,
        spec: &KeyspaceSpec,
        placed: Vec<Vec<NodeId>>,
    ) -> Result<&KeyspaceInfo, MapError> {
        if spec.name != crate::wire::DEFAULT_KEYSPACE {
            spec.validate()?;
        }
        if self.keyspaces.contains_key(&spec.name) {
            return Err(MapError::KeyspaceExists(spec.name.clone()));
        }
        if placed.len() != spec.partitions as usize || placed.iter().any(|r| r.is_empty()) {
            return Err(MapError::InvalidKeyspace(format!(
                "{} placements for {} partitions",
                placed.len(),
                spec.partitions
            )));
        }
        let first_group = self.next_group.max(META_GROUP + 1);
        for (p, replicas) in placed.into_iter().enumerate() {
            let group = first_group + p as u64;
            self.groups.insert(
                group,
                PartitionInfo {
                    group,
                    leader: replicas.first().copied(),
                    replicas,
                    ..PartitionInfo::default()
                },
            );
        }
        self.next_group = first_group + u64::from(spec.partitions);
        let info = KeyspaceInfo {
            name: spec.name.clone(),
            partitions: spec.partitions,
            replicas: spec.replicas,
            read_consistency: spec.read_consistency,
            limits: spec.limits,
            first_group,
        };
        Ok(self.keyspaces.entry(spec.name.clone()).or_insert(info))
    }

    /// Removes a keyspace and its groups.
    pub fn remove_keyspace(&mut self, name: &str) -> Result<KeyspaceInfo, MapError> {
        let info = self
            .keyspaces
            .remove(name)
            .ok_or_else(|| MapError::UnknownKeyspace(name.to_string()))?;
        for group in info.groups() {
            self.groups.remove(&group);
        }
        Ok(info)
    }

    pub fn keyspace(&self, name: &str) -> Result<&KeyspaceInfo, MapError> {
        self.keyspaces
            .get(name)
            .ok_or_else(|| MapError::UnknownKeyspace(name.to_string()))
    }

    /// The group that holds `key` of `keyspace`, and the key's slot.
    pub fn route(&self, keyspace: &str, key: &[u8]) -> Result<(GroupId, u16), MapError> {
        let slot = super::slot(key);
        Ok((self.keyspace(keyspace)?.group_of_slot(slot), slot))
    }

    /// The keyspace a group belongs to and its partition number (`None` for meta or an
    /// unknown group).
    pub fn keyspace_of(&self, group: GroupId) -> Option<(&KeyspaceInfo, u32)> {
        self.keyspaces
            .values()
            .find(|ks| ks.groups().contains(&group))
            .map(|ks| (ks, (group - ks.first_group) as u32))
    }

    /// The groups that have a replica on `node`, or are to get one (see
    /// [`PartitionInfo::places`]).
    pub fn groups_on(&self, node: NodeId) -> impl Iterator<Item = &PartitionInfo> {
        self.groups.values().filter(move |g| g.places(node))
    }

    /// The node a client should try first for `group`: its leader hint, else its first replica.
    pub fn leader_hint(&self, group: GroupId) -> Option<&NodeInfo> {
        let g = self.groups.get(&group)?;
        let id = g.leader.or_else(|| g.replicas.first().copied())?;
        self.nodes.get(&id)
    }

    /// The map as bytes (see the module documentation for the layout).
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64 + 24 * self.groups.len());
        out.extend_from_slice(&[MAP_FORMAT]);
        let mut w = FieldWriter::new(&mut out);
        w.varint(1, self.version);
        w.varint(2, self.next_group);
        if self.rebalancing {
            w.varint(6, 1);
        }
        for n in self.nodes.values() {
            w.message(3, |w| put_node(w, n));
        }
        for ks in self.keyspaces.values() {
            w.message(4, |w| {
                w.str(1, &ks.name);
                w.varint(2, u64::from(ks.partitions));
                w.varint(3, u64::from(ks.replicas));
                w.varint(4, ks.read_consistency as u64);
                w.varint(5, ks.first_group);
                put_limits(w, &ks.limits);
            });
        }
        for g in self.groups.values() {
            w.message(5, |w| {
                w.varint(1, g.group);
                for &r in &g.replicas {
                    w.varint(2, r);
                }
                for &l in &g.learners {
                    w.varint(3, l);
                }
                if let Some(leader) = g.leader {
                    w.varint(4, leader);
                }
                w.varint(5, g.epoch);
                for &n in &g.want {
                    w.varint(6, n);
                }
                if let Some(p) = g.preferred {
                    w.varint(7, p);
                }
                if g.term != 0 {
                    w.varint(8, g.term);
                }
            });
        }
        out.freeze()
    }

    /// Reads a map that [`ClusterMap::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<ClusterMap, MapError> {
        let (&format, body) = bytes
            .split_first()
            .ok_or_else(|| MapError::Malformed("empty".into()))?;
        if format != MAP_FORMAT {
            return Err(MapError::UnknownFormat(format));
        }
        let mut map = ClusterMap::default();
        for (field, value) in fields(Bytes::copy_from_slice(body))? {
            match field {
                1 => map.version = varint(&value, "version")?,
                2 => map.next_group = varint(&value, "next_group")?,
                6 => map.rebalancing = varint(&value, "rebalancing")? != 0,
                3 => {
                    let n = read_node(nested(value, "node")?)?;
                    map.nodes.insert(n.id, n);
                }
                4 => {
                    let mut ks = KeyspaceInfo {
                        name: String::new(),
                        partitions: 0,
                        replicas: 0,
                        read_consistency: Consistency::Linearizable,
                        limits: Limits::default(),
                        first_group: 0,
                    };
                    for (field, value) in fields(nested(value, "keyspace")?)? {
                        match field {
                            1 => ks.name = text(value, "keyspace name")?,
                            2 => ks.partitions = small(&value, "partitions")?,
                            3 => ks.replicas = small(&value, "replicas")?,
                            4 => ks.read_consistency = consistency(&value)?,
                            5 => ks.first_group = varint(&value, "first group")?,
                            6 | 7 => read_limit(&mut ks.limits, field, &value)?,
                            _ => {}
                        }
                    }
                    if !(1..=PARTITIONS_MAX).contains(&ks.partitions) {
                        return Err(MapError::Malformed(format!(
                            "keyspace {:?} has {} partitions",
                            ks.name, ks.partitions
                        )));
                    }
                    map.keyspaces.insert(ks.name.clone(), ks);
                }
                5 => {
                    let mut g = PartitionInfo::default();
                    for (field, value) in fields(nested(value, "group")?)? {
                        match field {
                            1 => g.group = varint(&value, "group")?,
                            2 => g.replicas.push(varint(&value, "replica")?),
                            3 => g.learners.push(varint(&value, "learner")?),
                            4 => g.leader = Some(varint(&value, "leader")?),
                            5 => g.epoch = varint(&value, "epoch")?,
                            6 => g.want.push(varint(&value, "wanted replica")?),
                            7 => g.preferred = Some(varint(&value, "preferred leader")?),
                            8 => g.term = varint(&value, "term")?,
                            _ => {}
                        }
                    }
                    map.groups.insert(g.group, g);
                }
                _ => {}
            }
        }
        Ok(map)
    }
}

/// A node's fields (nested in a map, or in a `Register` change).
pub(super) fn put_node(w: &mut FieldWriter<'_>, n: &NodeInfo) {
    w.varint(1, n.id);
    w.str(2, &n.peer);
    w.str(3, &n.client);
    if let Some(resp) = &n.resp {
        w.str(4, resp);
    }
    if let Some(http) = &n.http {
        w.str(5, http);
    }
    w.varint(6, n.state as u64);
}

pub(super) fn read_node(body: Bytes) -> Result<NodeInfo, MapError> {
    let mut n = NodeInfo::default();
    for (field, value) in fields(body)? {
        match field {
            1 => n.id = varint(&value, "node id")?,
            2 => n.peer = text(value, "peer address")?,
            3 => n.client = text(value, "client address")?,
            4 => n.resp = Some(text(value, "resp address")?),
            5 => n.http = Some(text(value, "http address")?),
            6 => n.state = NodeState::from_code(varint(&value, "node state")?)?,
            _ => {}
        }
    }
    Ok(n)
}

pub(super) fn fields(body: Bytes) -> Result<Vec<(u32, Value)>, MapError> {
    FieldReader::new(body)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| MapError::Malformed(e.to_string()))
}

pub(super) fn varint(value: &Value, what: &str) -> Result<u64, MapError> {
    match value {
        Value::Varint(v) => Ok(*v),
        Value::Bytes(_) => Err(MapError::Malformed(format!("{what}: bytes, not a number"))),
    }
}

pub(super) fn consistency(value: &Value) -> Result<Consistency, MapError> {
    Ok(match varint(value, "read consistency")? {
        0 => Consistency::Linearizable,
        1 => Consistency::Lease,
        2 => Consistency::Follower,
        other => return Err(MapError::Malformed(format!("read consistency {other}"))),
    })
}

pub(super) fn small(value: &Value, what: &str) -> Result<u32, MapError> {
    u32::try_from(varint(value, what)?)
        .map_err(|_| MapError::Malformed(format!("{what}: too large")))
}

pub(super) fn nested(value: Value, what: &str) -> Result<Bytes, MapError> {
    match value {
        Value::Bytes(b) => Ok(b),
        Value::Varint(_) => Err(MapError::Malformed(format!(
            "{what}: a number, not a message"
        ))),
    }
}

pub(super) fn text(value: Value, what: &str) -> Result<String, MapError> {
    String::from_utf8(nested(value, what)?.to_vec())
        .map_err(|_| MapError::Malformed(format!("{what}: not UTF-8")))
}

/// Writes a keyspace's limits as fields 6 (bytes) and 7 (ops a second), each only if set
/// (the same numbers in the map and in a map change).
pub(crate) fn put_limits(w: &mut FieldWriter<'_>, limits: &Limits) {
    if let Some(bytes) = limits.bytes_max {
        w.varint(6, bytes);
    }
    if let Some(ops) = limits.ops_max {
        w.varint(7, u64::from(ops));
    }
}

/// Reads field 6 or 7 of [`put_limits`] into `limits`.
pub(crate) fn read_limit(limits: &mut Limits, field: u32, value: &Value) -> Result<(), MapError> {
    match field {
        6 => limits.bytes_max = Some(varint(value, "bytes limit")?),
        _ => limits.ops_max = Some(small(value, "ops limit")?),
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` nodes with addresses (RESP on the odd ones).
    pub(crate) fn nodes(n: u64) -> Vec<NodeInfo> {
        (1..=n)
            .map(|id| NodeInfo {
                id,
                peer: format!("127.0.0.1:{}", 7000 + id),
                client: format!("127.0.0.1:{}", 8000 + id),
                resp: (id % 2 == 1).then(|| format!("127.0.0.1:{}", 9000 + id)),
                http: None,
                state: NodeState::Up,
            })
            .collect()
    }

    #[test]
    fn the_founding_map_spreads_partitions_and_preferred_leaders_evenly() {
        let map = ClusterMap::bootstrap(nodes(3), 64, 3);
        assert_eq!(map.version, 1);
        assert_eq!(map.groups[&META_GROUP].replicas, [1, 2, 3]);
        let ks = map.keyspace("default").unwrap();
        assert_eq!((ks.partitions, ks.first_group), (64, 1));
        assert_eq!(map.next_group, 65);
        for node in 1..=3 {
            let hosted = map
                .groups_on(node)
                .filter(|g| g.group != META_GROUP)
                .count();
            assert_eq!(
                hosted, 64,
                "three replicas on three nodes: every node has every partition"
            );
            let leads = ks
                .groups()
                .filter(|g| map.groups[g].leader == Some(node))
                .count();
            assert!((21..=22).contains(&leads), "node {node} leads {leads}");
        }
        let five = ClusterMap::bootstrap(nodes(7), 64, 3);
        assert_eq!(five.groups[&META_GROUP].replicas, [1, 2, 3, 4, 5]);
        for node in 1..=7 {
            let hosted = five
                .groups_on(node)
                .filter(|g| g.group != META_GROUP)
                .count();
            assert!((27..=28).contains(&hosted), "node {node} hosts {hosted}");
        }
        let one = ClusterMap::bootstrap(nodes(1), 64, 3);
        assert!(one.groups.values().all(|g| g.replicas == [1]));
    }

    #[test]
    fn a_key_routes_to_the_partition_that_owns_its_slot() {
        let map = ClusterMap::bootstrap(nodes(3), 64, 3);
        let (group, slot) = map.route("default", b"123456789").unwrap();
        assert_eq!(slot, 12739);
        assert_eq!(group, 1 + 12739 / 256);
        assert_eq!(
            map.route("default", b"{user1000}.following").unwrap(),
            map.route("default", b"{user1000}.followers").unwrap()
        );
        assert_eq!(
            map.route("nope", b"k"),
            Err(MapError::UnknownKeyspace("nope".into()))
        );
        assert_eq!(
            map.keyspace_of(group).map(|(ks, p)| (ks.name.as_str(), p)),
            Some(("default", 49))
        );
        assert_eq!(map.keyspace_of(META_GROUP), None);
    }

    #[test]
    fn keyspaces_take_the_next_groups_and_give_them_back() {
        let mut map = ClusterMap::bootstrap(nodes(3), 64, 3);
        let spec = KeyspaceSpec {
            partitions: 8,
            ..KeyspaceSpec::new("logs")
        };
        let placed = (0..8).map(|p| vec![1 + p % 3]).collect();
        let ks = map.insert_keyspace(&spec, placed).unwrap().clone();
        assert_eq!(ks.groups(), 65..73);
        assert_eq!(map.next_group, 73);
        assert_eq!(
            map.insert_keyspace(&spec, vec![vec![1]; 8]).unwrap_err(),
            MapError::KeyspaceExists("logs".into())
        );
        map.remove_keyspace("logs").unwrap();
        assert!(!map.groups.contains_key(&65));
        assert_eq!(map.next_group, 73, "group numbers are never reused");
        for bad in ["", "__x", "a b", &"x".repeat(65)] {
            let spec = KeyspaceSpec::new(bad);
            assert!(
                matches!(spec.validate(), Err(MapError::InvalidKeyspace(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_map_survives_its_encoding_and_bad_bytes_get_an_error() {
        let mut map = ClusterMap::bootstrap(nodes(5), 16, 3);
        map.version = 42;
        map.rebalancing = true;
        map.nodes.get_mut(&2).unwrap().state = NodeState::Draining;
        let g = map.groups.get_mut(&3).unwrap();
        g.learners.push(4);
        g.leader = None;
        g.epoch = 17;
        g.want = vec![1, 4, 5];
        g.preferred = Some(4);
        g.term = 9;
        let bytes = map.encode();
        assert_eq!(ClusterMap::decode(&bytes).unwrap(), map);
        assert_eq!(
            ClusterMap::decode(&[]),
            Err(MapError::Malformed("empty".into()))
        );
        assert_eq!(
            ClusterMap::decode(&[9, 1, 2]),
            Err(MapError::UnknownFormat(9))
        );
        for cut in 1..bytes.len() {
            // A cut map is an error or (cut at a field boundary) a smaller map; never a panic.
            let _ = ClusterMap::decode(&bytes[..cut]);
        }
    }
}
