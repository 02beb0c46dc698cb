//! The control plane of a cluster node: how the cluster map in the meta group is changed,
//! and the loop that moves this node towards it.
//!
//! [`change_map`] is the meta leader's side of a [`MapChange`]: under the node's map lock it
//! reads the map from the meta group (after a linearizable read), applies the change
//! ([`change::apply`]) and writes the result back with a compare-and-set on the stored
//! version, so changes are totally ordered even across a change of meta leader. The first
//! change after a cluster is founded stores the founding map.
//!
//! [`Controller::run`] is a loop every node runs, every [`CONTROL_TICK`] and whenever one of
//! its membership steps ends:
//! 1. **Follow the map.** A node hosting a meta replica reads the map from its own replica;
//!    the others ask a meta node (binary protocol) every [`MAP_POLL`]. A node started with
//!    `--join PEER_ADDRESS` and no map asks that address first (peer protocol, `PEER_MAP`).
//! 2. **Register.** A node whose addresses the map lacks (a joining node, or one that moved)
//!    sends `Register`.
//! 3. **Found and delete replicas.** A group of a new keyspace placed here is founded; a
//!    replica the map no longer places here (the keyspace was dropped, or a move took it
//!    away and the map says so at a newer epoch than this replica's) is deleted.
//! 4. **Lead.** For every group it leads, the node takes the next membership step the map
//!    asks for ([`change::leader_step`]) and reports its committed membership when the map's
//!    record differs ([`change::report_due`]).
//! 5. **Rebalance.** The meta leader, while the map says it is rebalancing, plans again every
//!    [`REBALANCE_EVERY`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::client::cluster::{ClusterClient, ClusterConfig};
use crate::node::command::Command;
use crate::node::state::Reply;
use crate::node::{Consistency, GroupStatus, Node, NodeError};
use crate::op::Op;
use crate::partition::change::{self, GroupFacts, LeaderStep, MapChange};
use crate::partition::map::{GroupId, MapError, NodeInfo, MAP_KEY, META_GROUP, META_KEYSPACE};
use crate::partition::ClusterMap;
use crate::raft::ConfigChange;
use crate::wire::{Condition, ErrorCode, Request, Response};

/// How often the control loop runs.
pub const CONTROL_TICK: Duration = Duration::from_millis(200);
/// How often a node that hosts no meta replica asks for a newer map.
pub const MAP_POLL: Duration = Duration::from_millis(500);
/// How often the meta leader plans again while rebalancing.
pub const REBALANCE_EVERY: Duration = Duration::from_secs(1);
/// Longest a map change, or one membership step, may take.
pub const CHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// A leadership transfer to a node is not tried again for this long: one that did not take
/// (the target is slow or dead) blocks the group's proposals while it lasts.
pub const TRANSFER_RETRY: Duration = Duration::from_secs(5);
/// Redirects followed to reach the meta leader.
const REDIRECTS_MAX: usize = 2;
/// A node refreshes its map on demand at most this often.
pub const REFRESH_MIN: Duration = Duration::from_millis(100);
/// How often the meta leader pings every node (binary protocol `PING`).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A ping not answered within this long failed.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(800);
/// A node that answered no ping for this long is marked down and its replicas are re-created
/// on the others (`kvstore serve --down-after-ms`). Long enough that a restart, or a pause
/// of a few seconds, moves nothing: re-replicating copies whole partitions.
pub const DOWN_AFTER_DEFAULT: Duration = Duration::from_secs(60);

/// What a node's control loop is told at start.
#[derive(Debug, Clone)]
pub struct ControlOptions {
    /// A member's peer address, for a node joining a running cluster (`--join`).
    pub join: Option<String>,
    /// See [`DOWN_AFTER_DEFAULT`].
    pub down_after: Duration,
}

impl Default for ControlOptions {
    fn default() -> ControlOptions {
        ControlOptions {
            join: None,
            down_after: DOWN_AFTER_DEFAULT,
        }
    }
}

/// The meta leader applies `change` to the stored map and writes it back; returns the map
/// after it (the same map if the change changed nothing). A node that does not lead the meta
/// group answers with a redirect to the one that does.
pub async fn change_map(node: &Node, change: &MapChange) -> Result<Arc<ClusterMap>, Response> {
    let refuse = |e: NodeError| super::replicated::error_response(&e);
    if !node.hosts(META_GROUP) {
        return Err(refuse(node.redirect(META_GROUP)));
    }
    let _turn = node.map_lock().lock().await;
    Node::wait(
        node.read(META_GROUP, Consistency::Linearizable),
        CHANGE_TIMEOUT,
    )
    .await
    .map_err(refuse)?;
    let (stored, version) = stored_map(node)?;
    let current = match stored {
        Some(map) => map,
        None => {
            // The first change of a new cluster: the founding map every founder computed.
            let founding = node.map();
            if founding.version == 0 {
                return Err(Response::error(
                    ErrorCode::Unavailable,
                    "the meta group holds no map yet",
                ));
            }
            (*founding).clone()
        }
    };
    let next = match change::apply(&current, change) {
        Ok(Some(next)) => next,
        Ok(None) if version > 0 => return Ok(Arc::new(current)),
        Ok(None) => current,
        Err(error) => {
            let code = match error {
                MapError::UnknownKeyspace(_) => ErrorCode::UnknownKeyspace,
                _ => ErrorCode::InvalidArgument,
            };
            return Err(Response::error(code, error.to_string()));
        }
    };
    let put = Op::Request(Request::Put {
        keyspace: META_KEYSPACE.to_string(),
        key: Bytes::from_static(MAP_KEY),
        value: next.encode(),
        ttl_ms: None,
        condition: Condition::IfVersion(version),
    });
    let proposed = node.propose(META_GROUP, Command::op(None, node.now_ms(), &put));
    match Node::wait(proposed, CHANGE_TIMEOUT).await.map_err(refuse)? {
        Reply::Wire(Response::PutOk { applied: true, .. }) => {}
        Reply::Wire(Response::PutOk { applied: false, .. }) => {
            return Err(Response::error(
                ErrorCode::Unavailable,
                "the cluster map changed under this change (a new meta leader); retry",
            ))
        }
        other => {
            return Err(Response::error(
                ErrorCode::Internal,
                format!("writing the cluster map answered {other:?}"),
            ))
        }
    }
    tracing::info!(version = next.version, ?change, "changed the cluster map");
    if let Err(error) = node.learn_map(next.clone()) {
        tracing::warn!(%error, "could not save the cluster map");
    }
    Ok(Arc::new(next))
}

/// The map in this node's meta replica and the version of its key (0: none stored yet).
fn stored_map(node: &Node) -> Result<(Option<ClusterMap>, u64), Response> {
    stored_map_unless(node, 0)
}

/// [`stored_map`], without decoding the map if its key is still at version `known`
/// (`None` then): the control loop looks every tick, and the map of a thousand groups is
/// worth decoding only when it changed.
fn stored_map_unless(node: &Node, known: u64) -> Result<(Option<ClusterMap>, u64), Response> {
    let db = node
        .db(META_GROUP)
        .ok_or_else(|| super::replicated::error_response(&node.redirect(META_GROUP)))?;
    let get = Request::Get {
        keyspace: META_KEYSPACE.to_string(),
        key: Bytes::from_static(MAP_KEY),
        consistency: Some(Consistency::Follower),
    };
    match super::binary::respond(&db, &db, get) {
        Response::GetOk { found: None, .. } => Ok((None, 0)),
        Response::GetOk { found: Some(v), .. } if known != 0 && v.version == known => {
            Ok((None, v.version))
        }
        Response::GetOk { found: Some(v), .. } => {
            let map = ClusterMap::decode(&v.value).map_err(|e| {
                Response::error(ErrorCode::Internal, format!("the stored cluster map: {e}"))
            })?;
            Ok((Some(map), v.version))
        }
        other => Err(other),
    }
}

/// The control loop of one node (see the module documentation).
pub struct Controller {
    node: Node,
    /// This node as the map should record it.
    me: NodeInfo,
    /// A member's peer address to learn the map from, for a node joining a running cluster.
    join: Option<String>,
    /// Whether this node registers in the map (so that the placement gives it replicas): a
    /// founding member or one that joined with `--join`. A node added to one group by hand
    /// (`kvstore cluster add-replica`) follows the map but stays out of the placement.
    registers: bool,
    client: Option<Arc<ClusterClient>>,
    last_poll: Option<Instant>,
    last_rebalance: Option<Instant>,
    /// Membership steps in flight, by group: not repeated until they answer.
    stepping: BTreeSet<GroupId>,
    /// Last report sent per group (epoch, leader), so that a slow meta leader is not flooded.
    reported: BTreeMap<GroupId, (u64, Instant)>,
    down_after: Duration,
    /// The last leadership transfer tried per group: its target and when.
    transfers: BTreeMap<GroupId, (crate::partition::map::NodeId, Instant)>,
    /// As meta leader: when each node last answered a ping (cleared when it stops leading).
    seen: BTreeMap<crate::partition::map::NodeId, Instant>,
    last_probe: Option<Instant>,
    /// The version of the stored map's key this node last read from its meta replica.
    stored_version: u64,
}

impl Controller {
    pub fn new(node: Node, me: NodeInfo, options: ControlOptions, registers: bool) -> Controller {
        Controller {
            node,
            me,
            join: options.join,
            down_after: options.down_after,
            transfers: BTreeMap::new(),
            seen: BTreeMap::new(),
            last_probe: None,
            stored_version: 0,
            registers,
            client: None,
            last_poll: None,
            last_rebalance: None,
            stepping: BTreeSet::new(),
            reported: BTreeMap::new(),
        }
    }

    /// Runs until `stop` resolves.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        tokio::pin!(stop);
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<GroupId>();
        loop {
            // A membership step that ends wakes the loop at once for the next one: a move is
            // three or four steps, and waiting out a tick after each made up a third of a
            // 100 MB move's duration.
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(CONTROL_TICK) => {}
                Some(group) = done_rx.recv() => {
                    self.stepping.remove(&group);
                }
            }
            while let Ok(group) = done_rx.try_recv() {
                self.stepping.remove(&group);
            }
            self.follow_map().await;
            let map = self.node.map();
            if map.version == 0 {
                continue;
            }
            self.register(&map).await;
            self.found_and_delete(&map).await;
            self.lead(&map, &done_tx);
            self.watch_nodes(&map).await;
            self.rebalance(&map).await;
        }
    }

    fn client(&mut self) -> Option<&Arc<ClusterClient>> {
        if self.client.is_none() {
            let map = self.node.map_for_clients();
            let addresses: Vec<String> = map
                .nodes
                .values()
                .filter(|n| !n.client.is_empty())
                .map(|n| n.client.clone())
                .collect();
            if addresses.is_empty() {
                return None;
            }
            let config = ClusterConfig {
                deadline_ms: CHANGE_TIMEOUT.as_millis() as u64,
                ..ClusterConfig::default()
            };
            self.client = Some(Arc::new(ClusterClient::new(addresses, config)));
        }
        self.client.as_ref()
    }

    /// Sends `change` to the meta leader: itself, or through the cluster client.
    async fn send(&mut self, change: MapChange) -> Result<Arc<ClusterMap>, String> {
        if self.leads(META_GROUP) {
            return change_map(&self.node, &change)
                .await
                .map_err(|r| format!("{r:?}"));
        }
        let client = self.client().ok_or("no node address to send it to")?;
        let map = client
            .change_map(&change)
            .await
            .map_err(|e| e.to_string())?;
        let _ = self.node.learn_map((*map).clone());
        Ok(map)
    }

    fn leads(&self, group: GroupId) -> bool {
        self.node.leads(group)
    }

    async fn follow_map(&mut self) {
        if self.node.hosts(META_GROUP) {
            if let Ok((map, version)) = stored_map_unless(&self.node, self.stored_version) {
                self.stored_version = version;
                if let Some(map) = map {
                    let _ = self.node.learn_map(map);
                }
            }
        }
        if self.last_poll.is_some_and(|t| t.elapsed() < MAP_POLL) {
            return;
        }
        self.last_poll = Some(Instant::now());
        let known = self.node.map().version;
        if known == 0 {
            // No map yet: ask the node to join, else any peer this node has heard of (one
            // added to a group by hand knows its group's members).
            let mut asked: Vec<String> = self.join.iter().cloned().collect();
            asked.extend(self.node.status().peers.into_values());
            for addr in asked {
                match crate::node::transport::fetch_map(&addr).await {
                    Ok(bytes) if bytes.is_empty() => {
                        tracing::info!(%addr, "that node has no cluster map yet")
                    }
                    Ok(bytes) => match ClusterMap::decode(&bytes) {
                        Ok(map) => {
                            tracing::info!(%addr, version = map.version, "learnt the cluster map");
                            let _ = self.node.learn_map(map);
                            return;
                        }
                        Err(error) => tracing::warn!(%addr, %error, "a bad cluster map"),
                    },
                    Err(error) => tracing::info!(%error, "could not ask for the cluster map"),
                }
            }
            return;
        }
        ask_meta_leader(&self.node).await;
    }

    async fn register(&mut self, map: &ClusterMap) {
        if !self.registers {
            return;
        }
        let recorded = map.nodes.get(&self.me.id);
        let current = recorded.is_some_and(|n| {
            n.peer == self.me.peer
                && n.client == self.me.client
                && n.resp == self.me.resp
                && n.http == self.me.http
        });
        if current || recorded.is_some_and(|n| n.state == crate::partition::NodeState::Removed) {
            return;
        }
        match self.send(MapChange::Register(self.me.clone())).await {
            Ok(map) => tracing::info!(version = map.version, "registered in the cluster map"),
            Err(error) => tracing::info!(%error, "could not register yet"),
        }
    }

    async fn found_and_delete(&mut self, map: &ClusterMap) {
        let me = self.me.id;
        let status = self.node.status();
        let hosted: BTreeMap<GroupId, &GroupStatus> =
            status.groups.iter().map(|g| (g.group, g)).collect();
        for g in map.groups.values() {
            if g.epoch == 0 && g.replicas.contains(&me) && !hosted.contains_key(&g.group) {
                let campaign = g.preferred.or(g.leader) == Some(me);
                let created = self
                    .node
                    .create_group(g.group, g.replicas.clone(), campaign);
                if let Err(error) = Node::wait(created, CHANGE_TIMEOUT).await {
                    tracing::warn!(group = g.group, %error, "could not found a group");
                }
            }
        }
        for (&group, st) in &hosted {
            let gone = match map.groups.get(&group) {
                // Dropped with its keyspace (a group beyond `next_group` is newer than the
                // map: keep it).
                None => group < map.next_group,
                // Moved away, as a report at a newer epoch than this replica's shows (or at
                // the same one, if this replica has the membership that removed it).
                Some(p) => {
                    let excluded = !st.voters.contains(&me) && !st.learners.contains(&me);
                    !p.places(me) && (p.epoch > st.epoch || (p.epoch == st.epoch && excluded))
                }
            };
            if gone {
                let removed = self.node.remove_group(group);
                if let Err(error) = Node::wait(removed, CHANGE_TIMEOUT).await {
                    tracing::warn!(group, %error, "could not remove a group");
                }
            }
        }
    }

    /// Membership steps and reports of the groups this node leads. Steps run in the
    /// background (a promotion waits for its commit); `done` hears when each ends.
    fn lead(&mut self, map: &ClusterMap, done: &tokio::sync::mpsc::UnboundedSender<GroupId>) {
        let status = self.node.status();
        let mut reports = Vec::new();
        for st in status.groups.iter().filter(|g| g.role == "leader") {
            let Some(p) = map.groups.get(&st.group) else {
                continue;
            };
            let facts = GroupFacts {
                me: self.me.id,
                voters: st.voters.clone(),
                learners: st.learners.clone(),
                match_index: st.match_index.clone(),
                last_index: st.last_index,
                term: st.term,
                epoch: st.epoch,
                config_committed: st.config_committed,
            };
            if let Some(report) = change::report_due(p, &facts) {
                let recent = self
                    .reported
                    .get(&st.group)
                    .is_some_and(|(e, at)| *e == st.epoch && at.elapsed() < REBALANCE_EVERY);
                if !recent {
                    self.reported.insert(st.group, (st.epoch, Instant::now()));
                    reports.push(report);
                }
            }
            if self.stepping.contains(&st.group) {
                continue;
            }
            let Some(step) = change::leader_step(p, &facts) else {
                continue;
            };
            if let LeaderStep::Transfer(to) = step {
                let tried = self.transfers.get(&st.group);
                if tried.is_some_and(|&(t, at)| t == to && at.elapsed() < TRANSFER_RETRY) {
                    continue;
                }
                self.transfers.insert(st.group, (to, Instant::now()));
            }
            self.stepping.insert(st.group);
            let node = self.node.clone();
            let group = st.group;
            let peer = |id| map.nodes.get(&id).map(|n| n.peer.clone());
            let done = done.clone();
            let answer = match step {
                LeaderStep::AddLearner(id) => Step::Index(node.change_membership(
                    group,
                    ConfigChange::AddLearner(id),
                    peer(id),
                )),
                LeaderStep::Promote(id) => {
                    Step::Index(node.change_membership(group, ConfigChange::AddVoter(id), None))
                }
                LeaderStep::Remove(id) => {
                    Step::Index(node.change_membership(group, ConfigChange::Remove(id), None))
                }
                LeaderStep::Transfer(id) => Step::Unit(node.transfer_leader(group, id)),
            };
            tracing::info!(group, ?step, "membership step");
            tokio::spawn(async move {
                let result = match answer {
                    Step::Index(a) => match Node::wait(a, CHANGE_TIMEOUT).await {
                        Ok(index) => {
                            // The answer comes when the entry is proposed, and the next
                            // step is planned from the published status: wait (at most a
                            // tick) until that shows this change committed, or the same step
                            // would be planned again.
                            let started = Instant::now();
                            while !node.membership_published(group, index)
                                && started.elapsed() < CONTROL_TICK
                            {
                                tokio::time::sleep(Duration::from_millis(2)).await;
                            }
                            Ok(())
                        }
                        Err(error) => Err(error),
                    },
                    Step::Unit(a) => Node::wait(a, CHANGE_TIMEOUT).await,
                };
                // A failed step waits a tick before it is tried again, and so does the next
                // step after a transfer (the new leader's node takes the group's steps over).
                let transfer = matches!(step, LeaderStep::Transfer(_));
                if let Err(error) = &result {
                    tracing::info!(group, ?step, %error, "a membership step failed; it will be retried");
                }
                if result.is_err() || transfer {
                    tokio::time::sleep(CONTROL_TICK).await;
                }
                let _ = done.send(group);
            });
        }
        if !reports.is_empty() {
            let node = self.node.clone();
            let leads_meta = self.leads(META_GROUP);
            let client = if leads_meta {
                None
            } else {
                self.client().cloned()
            };
            tokio::spawn(async move {
                for report in reports {
                    let change = MapChange::Report(report);
                    let result = match &client {
                        None => change_map(&node, &change)
                            .await
                            .map(|_| ())
                            .map_err(|r| format!("{r:?}")),
                        Some(client) => client
                            .change_map(&change)
                            .await
                            .map(|map| {
                                let _ = node.learn_map((*map).clone());
                            })
                            .map_err(|e| e.to_string()),
                    };
                    if let Err(error) = result {
                        tracing::info!(%error, "could not report a group's membership");
                    }
                }
            });
        }
    }

    /// As meta leader: pings every node, marks down one that answered none for
    /// `down_after` (its replicas are then re-created elsewhere) and up again one that
    /// answers. A new meta leader gives every node the full delay from when it took over.
    async fn watch_nodes(&mut self, map: &ClusterMap) {
        use crate::partition::NodeState;
        if !self.leads(META_GROUP) {
            self.seen.clear();
            return;
        }
        if self.last_probe.is_some_and(|t| t.elapsed() < PROBE_EVERY) {
            return;
        }
        self.last_probe = Some(Instant::now());
        let watched: Vec<&NodeInfo> = map
            .nodes
            .values()
            .filter(|n| n.id != self.me.id && n.state != NodeState::Removed && !n.client.is_empty())
            .collect();
        let probes = watched
            .iter()
            .map(|n| {
                let (id, addr) = (n.id, n.client.clone());
                async move { (id, ping(&addr).await) }
            })
            .collect();
        let now = Instant::now();
        let mut answered = BTreeSet::new();
        for (id, ok) in crate::client::cluster::join_all(probes).await {
            if ok {
                self.seen.insert(id, now);
                answered.insert(id);
            } else {
                self.seen.entry(id).or_insert(now);
            }
        }
        for n in watched {
            let silent = self.seen.get(&n.id).map_or(Duration::ZERO, |t| t.elapsed());
            let state = match n.state {
                NodeState::Up | NodeState::Draining if silent >= self.down_after => NodeState::Down,
                NodeState::Down if answered.contains(&n.id) => NodeState::Up,
                _ => continue,
            };
            tracing::warn!(
                node = n.id,
                silent_ms = silent.as_millis() as u64,
                state = state.name(),
                "a node's state changed"
            );
            let change = MapChange::SetState { node: n.id, state };
            if let Err(error) = change_map(&self.node, &change).await {
                tracing::info!(?error, "could not record a node's state");
            }
        }
    }

    async fn rebalance(&mut self, map: &ClusterMap) {
        if !map.rebalancing || !self.leads(META_GROUP) {
            return;
        }
        if self
            .last_rebalance
            .is_some_and(|t| t.elapsed() < REBALANCE_EVERY)
        {
            return;
        }
        self.last_rebalance = Some(Instant::now());
        if let Err(error) = change_map(&self.node, &MapChange::Rebalance).await {
            tracing::info!(?error, "rebalancing failed; trying again");
        }
    }
}

/// Reads the map from the meta group's leader, linearizably (a `Get` of the stored map,
/// following up to [`REDIRECTS_MAX`] redirects from the leader as far as this node knows).
async fn ask_meta_leader(node: &Node) {
    let map = node.map_for_clients();
    let me = node.id();
    let mut asked: Vec<String> = Vec::new();
    if let Some(leader) = map.leader_hint(META_GROUP).filter(|n| n.id != me) {
        asked.push(leader.client.clone());
    }
    if let Some(meta) = map.groups.get(&META_GROUP) {
        for n in meta.replicas.iter().filter(|&&n| n != me) {
            if let Some(info) = map.nodes.get(n) {
                asked.push(info.client.clone());
            }
        }
    }
    asked.retain(|a| !a.is_empty());
    let Some(mut addr) = asked.first().cloned() else {
        return;
    };
    let config = crate::client::ClientConfig {
        connect_timeout_ms: 500,
        request_timeout_ms: 1_000,
        ..Default::default()
    };
    let get = Request::Get {
        keyspace: META_KEYSPACE.to_string(),
        key: Bytes::from_static(MAP_KEY),
        consistency: Some(Consistency::Linearizable),
    };
    for _ in 0..=REDIRECTS_MAX {
        let Ok(client) = crate::client::Client::connect(addr.as_str(), config.clone()).await else {
            return;
        };
        match client.call(get.clone()).await {
            Ok(Response::GetOk { found: Some(v), .. }) => {
                if let Ok(map) = ClusterMap::decode(&v.value) {
                    let _ = node.learn_map(map);
                }
                return;
            }
            Err(crate::client::ClientError::Server {
                code: ErrorCode::NotLeader,
                message,
            }) => match message.rsplit_once(" at ") {
                Some((_, leader)) if leader != addr => addr = leader.to_string(),
                _ => return,
            },
            _ => return,
        }
    }
}

/// Brings this node's map up to date now (a request named a keyspace it does not know): from
/// its own meta replica, else from the meta leader; at most once per [`REFRESH_MIN`] (a
/// request arriving meanwhile waits for the refresh in progress, then uses its result).
pub async fn refresh_map(node: &Node) {
    let mut last = node.map_refreshed().lock().await;
    if last.is_some_and(|t| t.elapsed() < REFRESH_MIN) {
        return;
    }
    *last = Some(Instant::now());
    if node.hosts(META_GROUP) {
        if let Ok((Some(map), _)) = stored_map(node) {
            let _ = node.learn_map(map);
        }
    }
    if node.leads(META_GROUP) {
        return;
    }
    ask_meta_leader(node).await;
}

/// Whether the node at `addr` answers a `PING` within [`PROBE_TIMEOUT`].
async fn ping(addr: &str) -> bool {
    let config = crate::client::ClientConfig {
        connect_timeout_ms: PROBE_TIMEOUT.as_millis() as u64,
        request_timeout_ms: PROBE_TIMEOUT.as_millis() as u64,
        ..Default::default()
    };
    let attempt = async {
        let client = crate::client::Client::connect(addr, config).await.ok()?;
        client.ping().await.ok()
    };
    matches!(
        tokio::time::timeout(PROBE_TIMEOUT, attempt).await,
        Ok(Some(()))
    )
}

enum Step {
    Index(crate::node::Answer<crate::raft::Index>),
    Unit(crate::node::Answer<()>),
}
