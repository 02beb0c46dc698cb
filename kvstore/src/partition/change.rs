//! Changes to the cluster map, and the two decisions that move a cluster towards the map:
//! what the meta leader writes, and what a group's leader does next.
//!
//! Every change to the map is a [`MapChange`]: a client (`kvstore keyspace create`, `kvstore
//! cluster drain`), a node (registering its addresses, a group's leader reporting its
//! membership) or the meta leader itself (rebalancing) sends one to the meta group's leader,
//! which applies it with [`apply`] to the map it holds and writes the result with a
//! compare-and-set on its version. A change that changes nothing writes nothing.
//!
//! The map says what the placement **wants** ([`PartitionInfo::want`], the voters a move is
//! heading for, and [`PartitionInfo::preferred`], the leader) next to what each group's leader
//! last **reported** (`replicas`, `learners`, `leader`, `epoch`). A move is then a control
//! loop, not a script: the group's leader compares its own membership with the map and takes
//! one step ([`leader_step`]): add the new replica as a learner, promote it once it has caught
//! up, remove the replica it replaces (handing leadership away first if that is itself); after
//! each committed step it reports ([`report_due`]), and once the report matches the want, the
//! move is done. Any of them can crash at any point: the map still says where the group is
//! heading, the Raft log says where it is, and whoever leads next picks up from there. A node
//! deletes its replica only once the map no longer places the group on it, and the map drops
//! a replica only on a leader's report of a *committed* membership without it.
//!
//! The encoding of a change: fields of the wire protocol's field encoding, field 1 the kind
//! and the others by kind (see [`MapChange::encode`]).

use std::collections::BTreeMap;
#[cfg(feature = "server")]
use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};

#[cfg(feature = "server")]
use super::map::ClusterMap;
use super::map::{
    consistency, fields, nested, put_limits, put_node, read_limit, read_node, small, text, varint,
    GroupId, KeyspaceSpec, Limits, MapError, NodeId, NodeInfo, NodeState, PartitionInfo,
};
use crate::wire::field::FieldWriter;

/// A learner within this many entries of the leader's last index counts as caught up: it is
/// promoted to voter (a voter far behind would slow every commit while it catches up).
pub const CAUGHT_UP_ENTRIES: u64 = 64;
/// Replica moves in flight at once, cluster-wide (each streams a partition's snapshot).
pub const MOVES_IN_FLIGHT_MAX: usize = 8;
/// Leader transfers one rebalancing plans.
pub const TRANSFERS_PER_PLAN_MAX: usize = 16;

/// One change to the cluster map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapChange {
    /// Creates a keyspace, placing its partitions on the nodes that are up.
    CreateKeyspace(KeyspaceSpec),
    /// Drops a keyspace: its groups leave the map, and the nodes delete their replicas.
    DropKeyspace(String),
    /// A node says where it is: a node joining, or one whose addresses changed.
    Register(NodeInfo),
    /// Marks a node draining (its replicas move off), up again, or removed (only once it
    /// holds nothing).
    SetState { node: NodeId, state: NodeState },
    /// A group's leader reports its committed membership.
    Report(Report),
    /// Runs the placement planner and records the moves it plans.
    Rebalance,
    /// Sets a keyspace's limits (all of them: one not given is lifted).
    SetLimits { keyspace: String, limits: Limits },
}

/// What a group's leader reports: its membership as of a committed configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub group: GroupId,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    pub leader: NodeId,
    /// The leader's term.
    pub term: u64,
    /// The index of the membership. Reports are ordered by (term, epoch): an older one is
    /// ignored.
    pub epoch: u64,
}

const KIND_CREATE: u64 = 1;
const KIND_DROP: u64 = 2;
const KIND_REGISTER: u64 = 3;
const KIND_SET_STATE: u64 = 4;
const KIND_REPORT: u64 = 5;
const KIND_REBALANCE: u64 = 6;
const KIND_SET_LIMITS: u64 = 7;

impl MapChange {
    /// Field 1: the kind. Create: 2 name, 3 partitions, 4 replicas, 5 read consistency, 6
    /// bytes limit, 7 ops limit. Set limits: 2 name, 6, 7. Drop: 2 name. Register: 2 the node (nested, as in the map). Set state: 2 node, 3 state.
    /// Report: 2 group, 3 voter (repeated), 4 learner (repeated), 5 leader, 6 epoch, 7 term.
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        let mut w = FieldWriter::new(&mut out);
        match self {
            MapChange::CreateKeyspace(spec) => {
                w.varint(1, KIND_CREATE);
                w.str(2, &spec.name);
                w.varint(3, u64::from(spec.partitions));
                w.varint(4, u64::from(spec.replicas));
                w.varint(5, spec.read_consistency as u64);
                put_limits(&mut w, &spec.limits);
            }
            MapChange::SetLimits { keyspace, limits } => {
                w.varint(1, KIND_SET_LIMITS);
                w.str(2, keyspace);
                put_limits(&mut w, limits);
            }
            MapChange::DropKeyspace(name) => {
                w.varint(1, KIND_DROP);
                w.str(2, name);
            }
            MapChange::Register(node) => {
                w.varint(1, KIND_REGISTER);
                w.message(2, |w| put_node(w, node));
            }
            MapChange::SetState { node, state } => {
                w.varint(1, KIND_SET_STATE);
                w.varint(2, *node);
                w.varint(3, *state as u64);
            }
            MapChange::Report(r) => {
                w.varint(1, KIND_REPORT);
                w.varint(2, r.group);
                for &v in &r.voters {
                    w.varint(3, v);
                }
                for &l in &r.learners {
                    w.varint(4, l);
                }
                w.varint(5, r.leader);
                w.varint(6, r.epoch);
                w.varint(7, r.term);
            }
            MapChange::Rebalance => w.varint(1, KIND_REBALANCE),
        }
        out.freeze()
    }

    pub fn decode(bytes: &[u8]) -> Result<MapChange, MapError> {
        let all = fields(Bytes::copy_from_slice(bytes))?;
        let kind = all
            .iter()
            .find(|(f, _)| *f == 1)
            .map(|(_, v)| varint(v, "change kind"))
            .transpose()?
            .ok_or_else(|| MapError::Malformed("a map change without a kind".into()))?;
        let mut spec = KeyspaceSpec::new("");
        let (mut node, mut state, mut info) = (None, None, None);
        let mut report = Report {
            group: 0,
            voters: Vec::new(),
            learners: Vec::new(),
            leader: 0,
            term: 0,
            epoch: 0,
        };
        for (field, value) in all {
            match (kind, field) {
                (_, 1) => {}
                (KIND_CREATE | KIND_DROP | KIND_SET_LIMITS, 2) => {
                    spec.name = text(value, "keyspace name")?
                }
                (KIND_CREATE | KIND_SET_LIMITS, 6 | 7) => {
                    read_limit(&mut spec.limits, field, &value)?
                }
                (KIND_CREATE, 3) => spec.partitions = small(&value, "partitions")?,
                (KIND_CREATE, 4) => spec.replicas = small(&value, "replicas")?,
                (KIND_CREATE, 5) => spec.read_consistency = consistency(&value)?,
                (KIND_REGISTER, 2) => info = Some(read_node(nested(value, "node")?)?),
                (KIND_SET_STATE, 2) => node = Some(varint(&value, "node")?),
                (KIND_SET_STATE, 3) => {
                    state = Some(NodeState::from_code(varint(&value, "state")?)?)
                }
                (KIND_REPORT, 2) => report.group = varint(&value, "group")?,
                (KIND_REPORT, 3) => report.voters.push(varint(&value, "voter")?),
                (KIND_REPORT, 4) => report.learners.push(varint(&value, "learner")?),
                (KIND_REPORT, 5) => report.leader = varint(&value, "leader")?,
                (KIND_REPORT, 6) => report.epoch = varint(&value, "epoch")?,
                (KIND_REPORT, 7) => report.term = varint(&value, "term")?,
                _ => {}
            }
        }
        let missing = |what: &str| MapError::Malformed(format!("a map change without its {what}"));
        Ok(match kind {
            KIND_CREATE => MapChange::CreateKeyspace(spec),
            KIND_DROP => MapChange::DropKeyspace(spec.name),
            KIND_REGISTER => MapChange::Register(info.ok_or_else(|| missing("node"))?),
            KIND_SET_STATE => MapChange::SetState {
                node: node.ok_or_else(|| missing("node"))?,
                state: state.ok_or_else(|| missing("state"))?,
            },
            KIND_REPORT => MapChange::Report(report),
            KIND_REBALANCE => MapChange::Rebalance,
            KIND_SET_LIMITS => MapChange::SetLimits {
                keyspace: spec.name,
                limits: spec.limits,
            },
            other => return Err(MapError::Malformed(format!("map change kind {other}"))),
        })
    }
}

/// The map after `change`, with its version bumped; `None` if the change changes nothing
/// (then nothing is written). An invalid change is refused with the reason.
#[cfg(feature = "server")]
pub fn apply(map: &ClusterMap, change: &MapChange) -> Result<Option<ClusterMap>, MapError> {
    let mut next = map.clone();
    match change {
        MapChange::CreateKeyspace(spec) => {
            create_keyspace(&mut next, spec)?;
            // Its first replicas campaign at once; if another wins somewhere, leader balance
            // moves it.
            next.rebalancing = true;
        }
        MapChange::DropKeyspace(name) => {
            if name == crate::wire::DEFAULT_KEYSPACE {
                return Err(MapError::Refused(
                    "the keyspace default is the Redis port's: it cannot be dropped".into(),
                ));
            }
            next.remove_keyspace(name)?;
            // The nodes that held most of it are now the emptiest.
            next.rebalancing = true;
        }
        MapChange::Register(info) => {
            let known = map
                .nodes
                .get(&info.id)
                .is_some_and(|n| n.state != NodeState::Down);
            register(&mut next, info)?;
            // A new node (or one back from down) is an event the placement reacts to.
            next.rebalancing |= !known;
        }
        MapChange::SetState { node, state } => {
            set_state(&mut next, *node, *state)?;
            next.rebalancing = true;
        }
        MapChange::Report(report) => take_report(&mut next, report)?,
        MapChange::Rebalance => next.rebalancing = rebalance(&mut next),
        MapChange::SetLimits { keyspace, limits } => {
            let ks = next
                .keyspaces
                .get_mut(keyspace)
                .ok_or_else(|| MapError::UnknownKeyspace(keyspace.clone()))?;
            ks.limits = *limits;
        }
    }
    next.version = map.version;
    if next == *map {
        return Ok(None);
    }
    next.version = map.version + 1;
    Ok(Some(next))
}

#[cfg(feature = "server")]
fn create_keyspace(map: &mut ClusterMap, spec: &KeyspaceSpec) -> Result<(), MapError> {
    use super::placement;
    spec.validate()?;
    if map.keyspaces.contains_key(&spec.name) {
        return Err(MapError::KeyspaceExists(spec.name.clone()));
    }
    let nodes = node_views(map);
    let up = nodes
        .iter()
        .filter(|n| n.state == placement::NodeState::Up)
        .count();
    if up == 0 {
        return Err(MapError::Refused("no node is up to place it on".into()));
    }
    let mut existing = partition_views(map);
    let mut leads: BTreeMap<NodeId, usize> = BTreeMap::new();
    for g in map.groups.values() {
        if let Some(l) = g.preferred.or(g.leader) {
            *leads.entry(l).or_default() += 1;
        }
    }
    let replication = (spec.replicas as usize).min(up);
    let mut placed = Vec::with_capacity(spec.partitions as usize);
    for p in 0..spec.partitions {
        let mut replicas = placement::place_new(&nodes, &existing, replication);
        // The first replica campaigns first: the one leading the fewest so far.
        let (at, _) = replicas
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| (leads.get(n).copied().unwrap_or(0), **n))
            .expect("place_new gives at least one replica when a node is up");
        replicas.swap(0, at);
        *leads.entry(replicas[0]).or_default() += 1;
        existing.push(placement::PartitionView {
            group: map.next_group + u64::from(p),
            replicas: replicas.clone(),
            leader: Some(replicas[0]),
            replication,
        });
        placed.push(replicas);
    }
    map.insert_keyspace(spec, placed)?;
    Ok(())
}

#[cfg(feature = "server")]
fn register(map: &mut ClusterMap, info: &NodeInfo) -> Result<(), MapError> {
    if info.id == 0 {
        return Err(MapError::Refused("node id 0 is not a valid id".into()));
    }
    match map.nodes.get_mut(&info.id) {
        Some(n) if n.state == NodeState::Removed => Err(MapError::Refused(format!(
            "node {} was removed from the cluster; start it under a new id",
            info.id
        ))),
        Some(n) => {
            let state = n.state;
            *n = NodeInfo {
                state: if state == NodeState::Down {
                    NodeState::Up
                } else {
                    state
                },
                ..info.clone()
            };
            Ok(())
        }
        None => {
            map.nodes.insert(
                info.id,
                NodeInfo {
                    state: NodeState::Up,
                    ..info.clone()
                },
            );
            Ok(())
        }
    }
}

#[cfg(feature = "server")]
fn set_state(map: &mut ClusterMap, node: NodeId, state: NodeState) -> Result<(), MapError> {
    let hosted = map.groups_on(node).count();
    let n = map
        .nodes
        .get_mut(&node)
        .ok_or(MapError::UnknownNode(node))?;
    if n.state == NodeState::Removed && state != NodeState::Removed {
        return Err(MapError::Refused(format!("node {node} was removed")));
    }
    if state == NodeState::Removed && hosted > 0 {
        return Err(MapError::Refused(format!(
            "node {node} still holds {hosted} replicas: drain it first (`kvstore cluster drain \
             {node}`) and wait until it holds none"
        )));
    }
    n.state = state;
    Ok(())
}

#[cfg(feature = "server")]
fn take_report(map: &mut ClusterMap, r: &Report) -> Result<(), MapError> {
    let g = map
        .groups
        .get_mut(&r.group)
        .ok_or(MapError::UnknownGroup(r.group))?;
    if (r.term, r.epoch) < (g.term, g.epoch) {
        // Older than the one recorded: a deposed leader's late report.
        return Ok(());
    }
    // A leader that an election moved, not the planner: the leader counts changed behind the
    // planner's back, so it looks again (and stops at once if they are still even).
    let unplanned = g.leader.is_some_and(|l| l != r.leader) && g.preferred != Some(r.leader);
    map.rebalancing |= unplanned;
    let g = map.groups.get_mut(&r.group).expect("looked up above");
    g.replicas = r.voters.clone();
    g.learners = r.learners.clone();
    g.leader = Some(r.leader);
    g.term = r.term;
    g.epoch = r.epoch;
    if !g.want.is_empty() && same_set(&g.want, &g.replicas) && g.learners.is_empty() {
        g.want.clear();
    }
    if g.preferred == Some(r.leader) || g.preferred.is_some_and(|p| !g.replicas.contains(&p)) {
        g.preferred = None;
    }
    Ok(())
}

fn same_set(a: &[NodeId], b: &[NodeId]) -> bool {
    a.len() == b.len() && a.iter().all(|x| b.contains(x))
}

#[cfg(feature = "server")]
fn node_views(map: &ClusterMap) -> Vec<super::placement::NodeView> {
    use super::placement::{NodeState as P, NodeView};
    map.nodes
        .values()
        .filter_map(|n| {
            let state = match n.state {
                NodeState::Up => P::Up,
                NodeState::Down => P::Down,
                NodeState::Draining => P::Draining,
                NodeState::Removed => return None,
            };
            Some(NodeView { id: n.id, state })
        })
        .collect()
}

#[cfg(feature = "server")]
fn partition_views(map: &ClusterMap) -> Vec<super::placement::PartitionView> {
    map.groups
        .values()
        .map(|g| {
            let replication = match map.keyspace_of(g.group) {
                Some((ks, _)) => ks.replicas as usize,
                None => super::map::META_REPLICAS_MAX,
            };
            // A group in flight counts as where it is heading, so that the loads the planner
            // balances include the moves already planned.
            let replicas = if g.want.is_empty() {
                g.replicas.clone()
            } else {
                g.want.clone()
            };
            super::placement::PartitionView {
                group: g.group,
                // A leader no report has confirmed yet (the founding map's first replica) is
                // a guess: the planner does not balance guesses.
                leader: g.leader.filter(|l| g.term > 0 && replicas.contains(l)),
                replicas,
                replication,
            }
        })
        .collect()
}

/// Records the moves the placement planner plans for `map` as wants and preferred leaders,
/// and says whether rebalancing goes on (something was planned or is in flight). A move
/// heading for a node that is no longer up is abandoned first: its want becomes the current
/// voters, so the leader drops the learner, and it can be planned again elsewhere.
#[cfg(feature = "server")]
fn rebalance(map: &mut ClusterMap) -> bool {
    use super::placement::{self, Limits, Move};
    let up = |map: &ClusterMap, n: &NodeId| {
        map.nodes
            .get(n)
            .is_some_and(|n| matches!(n.state, NodeState::Up | NodeState::Draining))
    };
    let stuck: Vec<GroupId> = map
        .groups
        .values()
        .filter(|g| {
            g.want
                .iter()
                .any(|n| !g.replicas.contains(n) && !up(map, n))
        })
        .map(|g| g.group)
        .collect();
    for group in stuck {
        let g = map.groups.get_mut(&group).expect("listed");
        g.want = g.replicas.clone();
    }
    let up_nodes: BTreeSet<NodeId> = map
        .nodes
        .values()
        .filter(|n| n.state == NodeState::Up)
        .map(|n| n.id)
        .collect();
    for g in map.groups.values_mut() {
        // Reached, or aimed at a node that is no longer up.
        if g.preferred == g.leader || g.preferred.is_some_and(|p| !up_nodes.contains(&p)) {
            g.preferred = None;
        }
        if !g.want.is_empty() && same_set(&g.want, &g.replicas) && g.learners.is_empty() {
            g.want.clear();
        }
    }
    let in_flight = map
        .groups
        .values()
        .filter(|g| !g.want.is_empty())
        .map(|g| g.group)
        .collect();
    let limits = Limits {
        moves_max: MOVES_IN_FLIGHT_MAX,
        transfers_max: TRANSFERS_PER_PLAN_MAX,
    };
    let moves = placement::plan(&node_views(map), &partition_views(map), &in_flight, &limits);
    let planned = !moves.is_empty();
    for m in moves {
        let Some(g) = map.groups.get_mut(&m.group()) else {
            continue;
        };
        let mut want = g.replicas.clone();
        match m {
            Move::AddReplica { to, .. } => want.push(to),
            Move::Replace { from, to, .. } => {
                want.retain(|&r| r != from);
                want.push(to);
            }
            Move::RemoveReplica { from, .. } => want.retain(|&r| r != from),
            Move::TransferLeader { to, .. } => {
                g.preferred = Some(to);
                continue;
            }
        }
        g.want = want;
    }
    // Going on while a move is in flight, or while some group has not reported its leader
    // yet (the leaders are balanced once they are known).
    planned
        || map
            .groups
            .values()
            .any(|g| !g.want.is_empty() || g.term == 0)
}

/// What a group's leader knows of its group.
#[derive(Debug, Clone)]
pub struct GroupFacts {
    /// The leader itself.
    pub me: NodeId,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// How far each replica's log matches the leader's.
    pub match_index: BTreeMap<NodeId, u64>,
    pub last_index: u64,
    pub term: u64,
    /// The index of the membership in force, and whether it is committed.
    pub epoch: u64,
    pub config_committed: bool,
}

impl GroupFacts {
    fn caught_up(&self, n: NodeId) -> bool {
        n == self.me
            || self
                .match_index
                .get(&n)
                // Index 0 is no entry: a replica that has answered holds at least the
                // first (or a snapshot past it).
                .is_some_and(|&m| m > 0 && m + CAUGHT_UP_ENTRIES >= self.last_index)
    }
}

/// The next step a group's leader takes towards what the map wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaderStep {
    /// Add this node as a learner (it receives a snapshot, then the log).
    AddLearner(NodeId),
    /// Make this caught-up learner a voter.
    Promote(NodeId),
    /// Remove this replica (voter or learner).
    Remove(NodeId),
    /// Hand leadership to this voter (before removing itself, or to the preferred leader).
    Transfer(NodeId),
}

/// The one membership step the leader of `p` takes now, if any: adds before removes (the
/// group never has fewer voters than it wants), one change at a time (the Raft core allows
/// one uncommitted change), a learner promoted only once caught up, and the leader never
/// removes itself: it hands leadership to a caught-up voter that stays.
pub fn leader_step(p: &PartitionInfo, f: &GroupFacts) -> Option<LeaderStep> {
    if !f.config_committed {
        return None;
    }
    if !p.want.is_empty() {
        if let Some(&t) = p.want.iter().find(|t| !f.voters.contains(t)) {
            return if !f.learners.contains(&t) {
                Some(LeaderStep::AddLearner(t))
            } else if f.caught_up(t) {
                Some(LeaderStep::Promote(t))
            } else {
                None
            };
        }
        if let Some(&s) = f.voters.iter().find(|s| !p.want.contains(s)) {
            if s != f.me {
                return Some(LeaderStep::Remove(s));
            }
            let heir = f
                .voters
                .iter()
                .copied()
                .filter(|&v| v != f.me && p.want.contains(&v) && f.caught_up(v))
                .max_by_key(|v| f.match_index.get(v).copied().unwrap_or(0));
            return heir.map(LeaderStep::Transfer);
        }
        // Learners the move does not want (one that was abandoned). Without a move in
        // flight, learners are left alone: an operator may have added one by hand.
        if let Some(&l) = f.learners.iter().find(|l| !p.want.contains(l)) {
            return Some(LeaderStep::Remove(l));
        }
    }
    match p.preferred {
        Some(x) if x != f.me && f.voters.contains(&x) && f.caught_up(x) => {
            Some(LeaderStep::Transfer(x))
        }
        _ => None,
    }
}

/// The report the leader of `p` owes the meta group: when its committed membership (or its
/// leadership) differs from what the map records.
pub fn report_due(p: &PartitionInfo, f: &GroupFacts) -> Option<Report> {
    if !f.config_committed || (f.term, f.epoch) < (p.term, p.epoch) {
        return None;
    }
    let current = p.leader == Some(f.me)
        && p.term == f.term
        && p.epoch == f.epoch
        && same_set(&p.replicas, &f.voters)
        && same_set(&p.learners, &f.learners);
    (!current).then(|| Report {
        group: p.group,
        voters: f.voters.clone(),
        learners: f.learners.clone(),
        leader: f.me,
        term: f.term,
        epoch: f.epoch,
    })
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;
    use crate::wire::Consistency;

    use crate::partition::map::tests::nodes;

    #[test]
    fn every_change_survives_its_encoding() {
        let changes = [
            MapChange::CreateKeyspace(KeyspaceSpec {
                name: "logs".into(),
                partitions: 16,
                replicas: 2,
                read_consistency: Consistency::Follower,
                limits: Limits {
                    bytes_max: Some(1 << 30),
                    ops_max: Some(5_000),
                },
            }),
            MapChange::SetLimits {
                keyspace: "logs".into(),
                limits: Limits {
                    bytes_max: None,
                    ops_max: Some(100),
                },
            },
            MapChange::DropKeyspace("logs".into()),
            MapChange::Register(nodes(4).pop().unwrap()),
            MapChange::SetState {
                node: 3,
                state: NodeState::Draining,
            },
            MapChange::Report(Report {
                group: 7,
                voters: vec![1, 2, 4],
                learners: vec![5],
                leader: 2,
                term: 4,
                epoch: 99,
            }),
            MapChange::Rebalance,
        ];
        for c in changes {
            assert_eq!(MapChange::decode(&c.encode()).unwrap(), c);
        }
        assert!(MapChange::decode(&[]).is_err());
        assert!(MapChange::decode(&[8, 77]).is_err(), "unknown kind 77");
    }

    #[test]
    fn a_new_keyspace_is_spread_over_the_nodes_that_are_up() {
        let mut map = ClusterMap::bootstrap(nodes(4), 8, 3);
        map.nodes.get_mut(&4).unwrap().state = NodeState::Draining;
        let spec = KeyspaceSpec {
            partitions: 30,
            replicas: 2,
            ..KeyspaceSpec::new("logs")
        };
        let next = apply(&map, &MapChange::CreateKeyspace(spec.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(next.version, map.version + 1);
        let ks = next.keyspace("logs").unwrap();
        let mut per_node = BTreeMap::new();
        let mut leads = BTreeMap::new();
        for group in ks.groups() {
            let g = &next.groups[&group];
            assert_eq!(g.replicas.len(), 2);
            assert!(!g.replicas.contains(&4), "nothing on a draining node");
            assert_eq!(
                g.leader,
                Some(g.replicas[0]),
                "the first replica campaigns first"
            );
            for r in &g.replicas {
                *per_node.entry(*r).or_insert(0) += 1;
            }
            *leads.entry(g.replicas[0]).or_insert(0) += 1;
        }
        assert!(per_node.values().all(|&c| c == 20), "{per_node:?}");
        assert!(leads.values().all(|&c| (9..=11).contains(&c)), "{leads:?}");
        assert_eq!(
            apply(&next, &MapChange::CreateKeyspace(spec)),
            Err(MapError::KeyspaceExists("logs".into()))
        );
        let dropped = apply(&next, &MapChange::DropKeyspace("logs".into()))
            .unwrap()
            .unwrap();
        assert!(!dropped.keyspaces.contains_key("logs"));
        assert!(apply(&dropped, &MapChange::DropKeyspace("default".into())).is_err());
    }

    #[test]
    fn registering_twice_changes_nothing_and_a_removed_node_stays_removed() {
        let map = ClusterMap::bootstrap(nodes(3), 8, 3);
        let five = nodes(5).pop().unwrap();
        let joined = apply(&map, &MapChange::Register(five.clone()))
            .unwrap()
            .unwrap();
        assert_eq!(joined.nodes[&5].state, NodeState::Up);
        assert_eq!(apply(&joined, &MapChange::Register(five.clone())), Ok(None));
        let gone = apply(
            &joined,
            &MapChange::SetState {
                node: 5,
                state: NodeState::Removed,
            },
        )
        .unwrap()
        .unwrap();
        assert!(apply(&gone, &MapChange::Register(five)).is_err());
        let busy = MapChange::SetState {
            node: 1,
            state: NodeState::Removed,
        };
        assert!(matches!(apply(&gone, &busy), Err(MapError::Refused(_))));
    }

    /// Plays the leaders and the meta leader against each other until the map settles: every
    /// group's membership follows its leader's steps, and every step is reported.
    fn settle(map: &mut ClusterMap) -> usize {
        let mut steps = 0;
        for _ in 0..10_000 {
            if let Some(next) = apply(map, &MapChange::Rebalance).unwrap() {
                *map = next;
            }
            let mut moved = false;
            for g in map.groups.values().cloned().collect::<Vec<_>>() {
                let me = g.leader.unwrap_or(g.replicas[0]);
                let mut f = GroupFacts {
                    me,
                    voters: g.replicas.clone(),
                    learners: g.learners.clone(),
                    match_index: g
                        .replicas
                        .iter()
                        .chain(&g.learners)
                        .map(|&n| (n, 10))
                        .collect(),
                    last_index: 10,
                    // Every elected leader has a term, and reports it once.
                    term: g.term.max(1),
                    epoch: g.epoch,
                    config_committed: true,
                };
                if let Some(step) = leader_step(&g, &f) {
                    moved = true;
                    steps += 1;
                    match step {
                        LeaderStep::AddLearner(n) => f.learners.push(n),
                        LeaderStep::Promote(n) => {
                            f.learners.retain(|&l| l != n);
                            f.voters.push(n);
                        }
                        LeaderStep::Remove(n) => {
                            f.voters.retain(|&v| v != n);
                            f.learners.retain(|&l| l != n);
                        }
                        LeaderStep::Transfer(n) => f.me = n,
                    }
                    f.epoch += 1;
                }
                if let Some(r) = report_due(&g, &f) {
                    *map = apply(map, &MapChange::Report(r)).unwrap().unwrap();
                }
            }
            if !moved && map.groups.values().all(|g| g.want.is_empty()) {
                return steps;
            }
        }
        let busy: Vec<_> = map
            .groups
            .values()
            .filter(|g| !g.want.is_empty() || g.preferred.is_some())
            .collect();
        panic!("the map did not settle: {busy:?}");
    }

    #[test]
    fn joins_and_drains_settle_balanced_with_no_replica_on_a_drained_node() {
        let mut map = ClusterMap::bootstrap(nodes(3), 64, 3);
        for n in nodes(5).into_iter().skip(3) {
            map = apply(&map, &MapChange::Register(n)).unwrap().unwrap();
        }
        assert!(settle(&mut map) > 0);
        let count = |map: &ClusterMap, node: NodeId| map.groups_on(node).count();
        let leads = |map: &ClusterMap, node: NodeId| {
            map.groups
                .values()
                .filter(|g| g.leader == Some(node))
                .count()
        };
        // 64 partitions × 3 + meta × 5 = 197 replicas over 5 nodes: 39 or 40 each.
        for n in 1..=5 {
            assert!(
                (39..=40).contains(&count(&map, n)),
                "node {n}: {}",
                count(&map, n)
            );
            assert!(
                (12..=14).contains(&leads(&map, n)),
                "node {n} leads {}",
                leads(&map, n)
            );
        }
        for g in map.groups.values() {
            let mut r = g.replicas.clone();
            r.sort();
            r.dedup();
            assert_eq!(r.len(), g.replicas.len(), "group {}", g.group);
        }
        map = apply(
            &map,
            &MapChange::SetState {
                node: 2,
                state: NodeState::Draining,
            },
        )
        .unwrap()
        .unwrap();
        settle(&mut map);
        assert_eq!(count(&map, 2), 0);
        assert_eq!(leads(&map, 2), 0);
        let removed = apply(
            &map,
            &MapChange::SetState {
                node: 2,
                state: NodeState::Removed,
            },
        )
        .unwrap()
        .unwrap();
        assert_eq!(removed.nodes[&2].state, NodeState::Removed);
        for g in removed.groups.values() {
            let want = if g.group == 0 { 4 } else { 3 };
            assert_eq!(g.replicas.len(), want, "group {}", g.group);
        }
    }

    /// A leader lost to an election (a node restarted, a leader paused) moves the leader
    /// counts without any move of the planner's: the report of it wakes the planner, which
    /// hands the leaderships back out. A planned transfer's own report does not.
    #[test]
    fn an_unplanned_change_of_leader_wakes_the_planner() {
        let mut map = ClusterMap::bootstrap(nodes(3), 8, 3);
        for g in map.groups.values_mut() {
            g.term = 2;
            g.leader = Some(g.replicas[0]);
        }
        map.rebalancing = false;
        let g = map.groups[&1].clone();
        let other = *g.replicas.iter().find(|&&r| Some(r) != g.leader).unwrap();
        let report = |leader| Report {
            group: 1,
            voters: g.replicas.clone(),
            learners: vec![],
            leader,
            term: 3,
            epoch: g.epoch,
        };
        let next = apply(&map, &MapChange::Report(report(other)))
            .unwrap()
            .unwrap();
        assert!(next.rebalancing, "an election moved a leader");
        let mut planned = map.clone();
        planned.groups.get_mut(&1).unwrap().preferred = Some(other);
        let next = apply(&planned, &MapChange::Report(report(other)))
            .unwrap()
            .unwrap();
        assert!(!next.rebalancing, "the planner's own transfer");
        let same = apply(&map, &MapChange::Report(report(g.leader.unwrap())))
            .unwrap()
            .unwrap();
        assert!(!same.rebalancing, "a new term, the same leader");
    }

    /// A learner that has answered nothing yet (its node has no replica, or is down) is not
    /// caught up however short the log is: promoting it would count a voter that holds
    /// nothing, and with one more replica down the group could elect no leader again.
    #[test]
    fn a_learner_that_never_answered_is_not_promoted_on_a_short_log() {
        let p = PartitionInfo {
            group: 8,
            replicas: vec![1, 3, 5],
            learners: vec![4],
            leader: Some(1),
            want: vec![1, 3, 4],
            ..PartitionInfo::default()
        };
        let mut f = GroupFacts {
            me: 1,
            voters: vec![1, 3, 5],
            learners: vec![4],
            match_index: [(1, 9), (3, 9), (4, 0)].into(),
            last_index: 9,
            term: 2,
            epoch: 8,
            config_committed: true,
        };
        assert_eq!(leader_step(&p, &f), None, "4 holds nothing yet");
        f.match_index.remove(&4);
        assert_eq!(leader_step(&p, &f), None, "4 never answered");
        f.match_index.insert(4, 9);
        assert_eq!(leader_step(&p, &f), Some(LeaderStep::Promote(4)));
    }

    #[test]
    fn a_leader_adds_before_it_removes_and_never_removes_itself() {
        let p = PartitionInfo {
            group: 9,
            replicas: vec![1, 2, 3],
            leader: Some(1),
            want: vec![2, 3, 4],
            ..PartitionInfo::default()
        };
        let mut f = GroupFacts {
            me: 1,
            voters: vec![1, 2, 3],
            learners: vec![],
            match_index: [(1, 500), (2, 500), (3, 490)].into(),
            last_index: 500,
            term: 2,
            epoch: 3,
            config_committed: true,
        };
        assert_eq!(leader_step(&p, &f), Some(LeaderStep::AddLearner(4)));
        f.learners = vec![4];
        f.match_index.insert(4, 10);
        assert_eq!(leader_step(&p, &f), None, "4 is still catching up");
        f.config_committed = false;
        f.match_index.insert(4, 499);
        assert_eq!(leader_step(&p, &f), None, "one change at a time");
        f.config_committed = true;
        assert_eq!(leader_step(&p, &f), Some(LeaderStep::Promote(4)));
        f.learners.clear();
        f.voters.push(4);
        assert_eq!(
            leader_step(&p, &f),
            Some(LeaderStep::Transfer(2)),
            "the leader leaves last, handing over to the most caught-up voter that stays"
        );
        f.me = 2;
        assert_eq!(leader_step(&p, &f), Some(LeaderStep::Remove(1)));
        // Without a move in flight, a learner added by hand stays.
        let settled = PartitionInfo {
            want: vec![],
            ..p.clone()
        };
        f.learners = vec![5];
        assert_eq!(leader_step(&settled, &f), None);
        // An old report never overwrites a newer one.
        let mut map = ClusterMap::bootstrap(nodes(4), 8, 3);
        map.groups.insert(
            9,
            PartitionInfo {
                epoch: 5,
                term: 2,
                ..p
            },
        );
        let old = Report {
            group: 9,
            voters: vec![1, 2, 3],
            learners: vec![],
            leader: 1,
            term: 2,
            epoch: 4,
        };
        assert_eq!(apply(&map, &MapChange::Report(old)), Ok(None));
        // A newer term wins even with a smaller epoch: a replica restored from a snapshot
        // counts its membership from the snapshot's index, so epochs of one membership differ
        // between replicas.
        let newer = Report {
            group: 9,
            voters: vec![2, 3, 4],
            learners: vec![],
            leader: 3,
            term: 3,
            epoch: 2,
        };
        let next = apply(&map, &MapChange::Report(newer)).unwrap().unwrap();
        assert_eq!((next.groups[&9].leader, next.groups[&9].term), (Some(3), 3));
    }
}
