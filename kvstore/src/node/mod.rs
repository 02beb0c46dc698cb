//! The node runtime: drives the Raft groups a process hosts, persists their logs in one WAL,
//! sends their messages, applies their committed entries, and serves reads at the consistency
//! each request asks for.
//!
//! One thread (the *Raft thread*) owns every group. It waits for events on a bounded inbox
//! (peer messages, client proposals and reads, admin requests) or for the next tick, handles
//! everything queued, then runs a **round**: it takes a `Ready` from every group that has one,
//! writes all their entries and hard states to the WAL and syncs it **once** (group commit
//! across groups and proposals), only then sends their messages (a vote or an acknowledgement
//! must never outlive a crash that forgets it), applies the committed entries to each group's
//! state machine, answers the proposals and reads waiting on them, and calls `advance`. A
//! group whose log has grown past [`NodeConfig::compact_entries`] asks the node's snapshot
//! worker to sync its engine (off this thread); when that is done, the log is compacted up to
//! the index the engine holds and the WAL purged. A snapshot is built (from a view of the
//! engine, also on the worker) only for a follower that needs one.
//!
//! Everything else talks to the Raft thread through [`Node`], a cheap handle: `propose` and
//! `read` return immediately with a receiver for the answer, so a connection can have many in
//! flight. Nothing blocks the Raft thread: a full inbox refuses the request (`Busy`), a full
//! peer queue drops the message.
//!
//! **Many groups.** A node hosts a replica of every group the cluster map
//! ([`crate::partition::ClusterMap`]) places on it: the `meta` group (0) on up to five nodes,
//! and one group per partition of every keyspace. They share everything above: the one Raft
//! thread, the one WAL and its fsync per round, one connection per peer, the snapshot worker
//! and the engines' background thread. A founding node (one of `--peers`) computes the
//! founding map from its peers, saves it in its data directory, and creates the groups it
//! places here with the founding membership; a node that receives a leader's message for a
//! group it does not host, and that its map places here (a replica being added), creates
//! an empty replica, which the leader fills with a snapshot and the log. Groups of new
//! keyspaces are founded, and replicas moved away deleted, on the control loop's request
//! ([`Node::create_group`], [`Node::remove_group`]; see `server::control`).

pub mod clock;
pub mod command;
pub mod io;
mod runner;
#[cfg(test)]
mod sim;
pub mod state;
pub mod transport;
pub mod wal;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self as stdmpsc, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::db::Db;
use crate::partition::ClusterMap;
use crate::raft::GroupId;
use crate::raft::{self, ConfigChange, Index, Message, NodeId, ProposeError, Raft, Restored, Term};
use crate::storage::{self, FsyncPolicy};
use runner::{snapshot_worker, Group, Runner};
use state::{Reply, StateMachine};
use transport::{Advertised, Inbox, Transport};
use wal::{Wal, WalOptions};

/// The first partition of the keyspace `default` (the whole keyspace when it has one
/// partition, as in a single-group cluster).
pub const DEFAULT_GROUP: GroupId = 1;
/// Most group replicas one node hosts; a message for a group beyond it creates none.
pub const GROUPS_MAX: usize = 16_384;
/// The file in a node's data directory that holds the cluster map it knows.
pub const MAP_FILE: &str = "cluster-map";
/// Events waiting for the Raft thread: peer messages beyond this are dropped.
pub const INBOX_EVENTS_MAX: usize = 65_536;
/// Client requests waiting for the Raft thread before new ones are refused with `Busy`. Kept
/// well under [`INBOX_EVENTS_MAX`], so that a burst of clients cannot crowd out the peers'
/// heartbeats and votes (which would start needless elections).
pub const CLIENT_EVENTS_MAX: usize = INBOX_EVENTS_MAX / 2;
/// Events the Raft thread handles before it runs a round, so a flood of requests cannot
/// starve persistence and replies.
const EVENTS_PER_ROUND_MAX: usize = 4096;
/// The most bytes of applied records a group's engine holds in memory before writing them to
/// its segment (`storage::Config::write_buffer_bytes`): a node's groups hold at most this
/// much each, and no more than a second of writes (the engines are synced, what they hold
/// written and its memory given back, once a second).
pub const ENGINE_WRITE_BUFFER_BYTES: usize = 64 * 1024;
/// Snapshots waiting for the snapshot worker; a group whose job does not fit tries again at
/// a later round.
const SNAPSHOT_JOBS_MAX: usize = 64;
/// After a snapshot build failed (a full disk), the group waits this long before the next.
const SNAPSHOT_RETRY_DELAY: Duration = Duration::from_secs(5);
/// After a compaction dropped nothing (a follower close behind still needed every entry it
/// could drop), the group waits this long before syncing its engine for the next.
const COMPACTION_RETRY_DELAY: Duration = Duration::from_secs(1);

/// A group's Raft log is compacted once its entries take this many bytes in memory, whatever
/// their count: with 4 KiB values, `compact_entries` alone let one group hold 400 MB.
pub const COMPACT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// Settings of a node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    /// The founding members and their peer addresses (this node included). A node not among
    /// them starts empty and waits to be added (`kvstore cluster add-node`).
    pub peers: BTreeMap<NodeId, String>,
    pub data_dir: PathBuf,
    /// Length of a Raft tick. Elections time out after 10 to 20 ticks, heartbeats every 2.
    pub tick: Duration,
    /// Compact a group's log once it holds this many applied entries past its snapshot...
    pub compact_entries: u64,
    /// ... or once its entries take this many bytes in memory ([`COMPACT_BYTES_DEFAULT`]).
    pub compact_bytes: u64,
    /// Most bytes of snapshot in one message to a follower (the Raft core's
    /// `snapshot_chunk_bytes_max`).
    pub snapshot_chunk_bytes_max: usize,
    pub engine: storage::Config,
    pub wal: WalOptions,
    /// Where this node's clients connect, told to peers for redirects.
    pub advertise: Advertised,
    /// Seeds the Raft core's randomness (election timeouts); `None` derives it from the id and
    /// the data directory. The simulator sets it, so that one seed replays a run.
    pub raft_seed: Option<u64>,
    /// Partitions of the keyspace `default` in the map a founding node computes (ignored once
    /// the data directory holds a map).
    pub default_partitions: u32,
    /// Replicas of each of them (fewer if the cluster has fewer nodes).
    pub default_replicas: u32,
    /// Let idle groups quiesce (see `docs/raft.md`, "Quiescence"): with a thousand groups on
    /// a node, their heartbeats would cost a core. Woken by peer liveness.
    pub quiesce: bool,
}

impl NodeConfig {
    pub fn new(id: NodeId, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            id,
            peers: BTreeMap::new(),
            data_dir,
            tick: Duration::from_millis(50),
            compact_entries: 100_000,
            compact_bytes: COMPACT_BYTES_DEFAULT,
            snapshot_chunk_bytes_max: 1024 * 1024,
            engine: storage::Config {
                // The WAL makes writes durable; the engine is synced before the log is
                // compacted, and otherwise once a second to keep restarts short.
                fsync: FsyncPolicy::Interval { ms: 1000 },
                // For the same reason a group's applies may be held in memory and written
                // in pieces: with many groups a round applies an entry or two to each, and
                // a write per group per round would cost more than the entries.
                write_buffer_bytes: ENGINE_WRITE_BUFFER_BYTES,
                ..storage::Config::default()
            },
            wal: WalOptions::default(),
            advertise: Advertised::default(),
            raft_seed: None,
            default_partitions: crate::partition::map::DEFAULT_PARTITIONS,
            default_replicas: crate::partition::map::DEFAULT_REPLICAS,
            quiesce: true,
        }
    }
}

/// How fresh a read must be (the wire protocol's enum; see `docs/raft.md`, "Reads").
pub use crate::wire::Consistency;

/// How stale a read may be: what the replica knew when it served it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Staleness {
    /// Entries of the highest commit index a leader told it that it had not applied yet.
    pub entries_behind: u64,
    /// Milliseconds since it last heard that commit index: from a leader's message, or,
    /// leading, from a quorum's answer. `None`: not since it started (unknown).
    pub since_leader_ms: Option<u64>,
}

/// Why a request was not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// Another node leads `group` (or none is known): ask it. `epoch` is the index of the
    /// group's membership in force here, so that a router can tell a newer answer from an
    /// older one.
    #[error("{}", not_leader_message(*.group, *.leader, .address.as_ref()))]
    NotLeader {
        group: GroupId,
        epoch: Index,
        leader: Option<NodeId>,
        address: Option<Advertised>,
    },
    /// This node hosts no replica of the group.
    #[error("this node hosts no replica of group {group}")]
    UnknownGroup { group: GroupId },
    /// The request was refused before it reached the log; safe to retry.
    #[error("{0}")]
    Unavailable(Unavailable),
    /// The request may or may not have been applied.
    #[error("no answer within {0:?}: the outcome is unknown (the write may still be applied)")]
    Timeout(Duration),
    /// The write may or may not have been applied, for the reason given.
    #[error("the outcome is unknown: {0}")]
    Unknown(UnknownOutcome),
    /// The proposal was replaced in the log by another leader's entry: it was not applied.
    #[error("leadership changed before the write committed; it was not applied")]
    Dropped,
    #[error("the node is overloaded (its inbox is full); retry shortly")]
    Busy,
    /// The node stopped (the reason is what stopped it) before the request reached it.
    #[error("the node has stopped: {0}")]
    Stopped(String),
}

/// Why a request was refused before it reached the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The Raft core refused the proposal (a transfer or a membership change under way, a new
    /// leader that has not committed yet).
    #[error("{0}")]
    Proposal(ProposeError),
    #[error("node {node} is not a voter of the group")]
    NotVoter { node: NodeId },
    #[error("could not confirm leadership for the read (leader: {leader:?}); retry")]
    ReadNotConfirmed { leader: Option<NodeId> },
    #[error("this node hosts {hosted} groups, the most it may (GROUPS_MAX)")]
    TooManyGroups { hosted: usize },
}

/// Why a write's outcome is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownOutcome {
    #[error(
        "the node stopped before answering the write; it may have been logged, replicated and \
         applied before it stopped"
    )]
    NodeStopped,
    #[error("this node fell behind and installed a snapshot that covers the write")]
    CoveredBySnapshot,
    #[error("the entry applied without a reply")]
    NoReply,
}

fn not_leader_message(
    group: GroupId,
    leader: Option<NodeId>,
    address: Option<&Advertised>,
) -> String {
    match (leader, address) {
        (Some(id), Some(a)) => {
            format!(
                "not the leader of group {group}; the leader is node {id} at {}",
                a.client
            )
        }
        (Some(id), None) => {
            format!("not the leader of group {group}; the leader is node {id} (address unknown)")
        }
        _ => format!(
            "not the leader of group {group}, and no leader is known (an election is under \
             way); retry shortly"
        ),
    }
}

/// A proposal's answer.
pub type ProposalResult = Result<Reply, NodeError>;

/// What one group looks like from outside, for `status` and redirects.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GroupStatus {
    pub group: GroupId,
    pub role: String,
    pub term: Term,
    pub leader: Option<NodeId>,
    pub commit: Index,
    pub applied: Index,
    pub last_index: Index,
    pub snapshot_index: Index,
    pub voters: Vec<NodeId>,
    pub learners: Vec<NodeId>,
    /// The leader's view of each member's log (leader only).
    pub match_index: BTreeMap<NodeId, Index>,
    /// The highest commit index this node knows a leader reached.
    pub leader_commit: Index,
    /// The index of the membership in force (see [`Raft::membership_index`]), and whether
    /// this node knows it committed.
    pub epoch: Index,
    pub config_committed: bool,
    /// Idle and quiet: no heartbeats, no election timer (see [`raft::Raft::quiesced`]).
    pub quiesced: bool,
    /// When (on [`clock::monotonic_us`]) it last heard that: a leader's message, or a
    /// quorum's answer while it led. `None`: not since it started.
    #[serde(skip)]
    pub heard_at_us: Option<raft::Micros>,
}

/// The node's state as last published by the Raft thread.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeStatus {
    pub id: NodeId,
    /// Sorted by group.
    pub groups: Vec<GroupStatus>,
    pub peers: BTreeMap<NodeId, String>,
    pub advertised: BTreeMap<NodeId, Advertised>,
    pub wal_syncs: u64,
    pub wal_segments: usize,
    /// When (on [`clock::monotonic_us`]) each peer node's Raft thread was last heard from.
    #[serde(skip)]
    pub peers_heard_us: BTreeMap<NodeId, raft::Micros>,
}

impl NodeStatus {
    /// The status of `group`, if this node hosts it.
    pub fn group(&self, group: GroupId) -> Option<&GroupStatus> {
        let i = self.groups.binary_search_by_key(&group, |g| g.group).ok()?;
        Some(&self.groups[i])
    }
}

enum Event {
    Step(GroupId, Message),
    Propose(GroupId, Bytes, oneshot::Sender<ProposalResult>),
    Read(
        GroupId,
        Consistency,
        oneshot::Sender<Result<Staleness, NodeError>>,
    ),
    Transfer(GroupId, NodeId, oneshot::Sender<Result<(), NodeError>>),
    Membership(
        GroupId,
        ConfigChange,
        Option<String>,
        oneshot::Sender<Result<Index, NodeError>>,
    ),
    /// Found a new group (of a keyspace just created) with these voters; campaign at once if
    /// told (this node is its preferred leader). Answers whether it was created.
    CreateGroup(
        GroupId,
        Vec<NodeId>,
        bool,
        oneshot::Sender<Result<bool, NodeError>>,
    ),
    /// Stop hosting a group and delete its data (the map no longer places it here). Answers
    /// whether the node hosted it.
    RemoveGroup(GroupId, oneshot::Sender<Result<bool, NodeError>>),
    /// The snapshot worker built a group's snapshot (its index and bytes), or failed to.
    SnapshotBuilt(GroupId, Built),
    /// The snapshot worker installed a snapshot from a group's leader, or failed to.
    SnapshotInstalled(GroupId, runner::InstallResult),
    /// A frame from peer `NodeId` arrived: its Raft thread was alive a moment ago; `true`
    /// if this node may have missed messages it sent (see [`transport::Inbox::heard`]).
    /// Quiesced groups watch their peers by this.
    Heard(NodeId, bool),
    Shutdown,
}

impl Event {
    /// The group the event is for, if one.
    fn group(&self) -> Option<GroupId> {
        match self {
            Event::Step(group, _)
            | Event::Propose(group, ..)
            | Event::Read(group, ..)
            | Event::Transfer(group, ..)
            | Event::Membership(group, ..)
            | Event::CreateGroup(group, ..)
            | Event::RemoveGroup(group, _)
            | Event::SnapshotBuilt(group, _)
            | Event::SnapshotInstalled(group, _) => Some(*group),
            Event::Heard(..) | Event::Shutdown => None,
        }
    }
}

/// What the snapshot worker made durable for a group's log to be compacted: the index the
/// engine holds synced and, if one was asked for, a snapshot's bytes at it; or why it failed.
type Built = Result<(Index, Option<Bytes>), String>;

struct Shared {
    id: NodeId,
    inbox: SyncSender<Event>,
    /// Client requests in the inbox (see [`CLIENT_EVENTS_MAX`]).
    client_events: std::sync::atomic::AtomicUsize,
    status: Mutex<NodeStatus>,
    advertised: Mutex<BTreeMap<NodeId, Advertised>>,
    /// Each group's engine, for reads (a snapshot install swaps the engine inside); the Raft
    /// thread adds a group's when it creates the group.
    dbs: RwLock<BTreeMap<GroupId, Arc<RwLock<Db>>>>,
    /// The newest cluster map this node knows.
    map: tokio::sync::watch::Sender<Arc<ClusterMap>>,
    map_lock: tokio::sync::Mutex<()>,
    map_refreshed: tokio::sync::Mutex<Option<Instant>>,
    data_dir: PathBuf,
    /// Set when the Raft thread ends: `Ok` after a shutdown, `Err` with the reason if it failed.
    stopped: Mutex<Option<Result<(), String>>>,
    transport: Arc<Transport>,
    timing: transport::Timing,
    /// The state machine's clock (see [`Node::now_ms`]).
    clock: Arc<storage::FloorClock>,
}

/// A handle to a running node; cheap to clone.
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.shared.id).finish()
    }
}

impl Inbox for Shared {
    fn deliver(&self, group: GroupId, m: Message) -> bool {
        if m.to != self.id {
            tracing::warn!(
                to = m.to,
                from = m.from,
                "dropping a message for another node"
            );
            return false;
        }
        self.inbox.try_send(Event::Step(group, m)).is_ok()
    }
    fn heard(&self, id: NodeId, gap: bool) -> bool {
        self.inbox.try_send(Event::Heard(id, gap)).is_ok()
    }
    fn hello(&self, id: NodeId, advertised: Advertised) {
        if !self.transport.knows(id) && !advertised.peer.is_empty() {
            // A peer this node was not configured with (it joined, or this node did).
            self.transport.set_peer(id, advertised.peer.clone());
        }
        self.advertised
            .lock()
            .expect("advertised lock")
            .insert(id, advertised);
    }
    fn map(&self) -> Bytes {
        let map = self.map.borrow().clone();
        if map.version == 0 {
            Bytes::new()
        } else {
            map.encode()
        }
    }
}

impl Node {
    /// Opens the node's data (WAL and state machines), starts its Raft thread and its
    /// outgoing peer links on `runtime`. Serve incoming peer links with [`Node::serve_peers`].
    pub fn start(config: NodeConfig, runtime: tokio::runtime::Handle) -> anyhow::Result<Node> {
        std::fs::create_dir_all(&config.data_dir)?;
        let (wal, logs) = Wal::open(config.data_dir.join("wal"), config.wal.clone())?;
        let timing = transport::Timing::of(&raft_config(&config));
        let transport = Arc::new(Transport::new(
            config.id,
            config.advertise.clone(),
            timing,
            runtime,
        ));
        let network: Arc<dyn io::Network> = transport.clone();
        let Parts {
            mut runner,
            shared,
            events,
            jobs,
        } = assemble(
            config,
            Box::new(wal),
            logs,
            network,
            transport,
            Arc::new(io::BootClock),
        )?;
        let worker_inbox = shared.inbox.clone();
        std::thread::Builder::new()
            .name("snapshot".into())
            .spawn(move || snapshot_worker(jobs, worker_inbox))?;
        runner.publish_status();
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || {
                // A panic (a broken invariant) must stop the node too, not leave a process
                // that accepts requests it can never answer.
                let run = std::panic::AssertUnwindSafe(|| runner.run(events));
                let ended = match std::panic::catch_unwind(run) {
                    Ok(result) => result.map_err(|error| format!("{error:#}")),
                    Err(panic) => Err(format!(
                        "the Raft thread panicked: {}",
                        panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("(no message)")
                    )),
                };
                if let Err(reason) = &ended {
                    tracing::error!(%reason, "the Raft thread stopped");
                }
                *thread_shared.stopped.lock().expect("stopped lock") = Some(ended);
            })?;
        Ok(Node { shared })
    }

    pub fn id(&self) -> NodeId {
        self.shared.id
    }

    /// "Now" for a command this node proposes, in Unix milliseconds: the wall clock, never
    /// behind the log's time and never going back. Reads judge expiry by the same clock, so a
    /// read and the writes this node proposes after it agree on what has expired.
    pub fn now_ms(&self) -> u64 {
        use storage::Clock;
        self.shared.clock.now_ms()
    }

    /// Accepts connections from peers on `listener` until `shutdown` resolves.
    pub async fn serve_peers(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let inbox: Arc<dyn Inbox> = self.shared.clone();
        let stats = self.shared.transport.stats.clone();
        transport::serve(listener, inbox, self.shared.timing, stats, shutdown).await
    }

    /// A group's engine, for reads (after [`Node::read`] said when); `None` if this node
    /// hosts no replica of it.
    pub fn db(&self, group: GroupId) -> Option<Db> {
        let db = self
            .shared
            .dbs
            .read()
            .expect("dbs lock")
            .get(&group)?
            .clone();
        let db = db.read().expect("db lock").clone();
        Some(db)
    }

    /// The groups this node hosts a replica of.
    pub fn groups(&self) -> Vec<GroupId> {
        let dbs = self.shared.dbs.read().expect("dbs lock");
        dbs.keys().copied().collect()
    }

    /// The newest cluster map this node knows (version 0, empty: none yet, a node waiting to
    /// be added).
    pub fn map(&self) -> Arc<ClusterMap> {
        self.shared.map.borrow().clone()
    }

    /// Whether this node hosts a replica of `group`.
    pub fn hosts(&self, group: GroupId) -> bool {
        self.shared
            .dbs
            .read()
            .expect("dbs lock")
            .contains_key(&group)
    }

    /// The answer for a request for `group`, which this node does not host: a redirect to the
    /// replica the map names (its leader hint, else its first replica), or `UnknownGroup`.
    pub fn redirect(&self, group: GroupId) -> NodeError {
        let map = self.map();
        let Some(g) = map.groups.get(&group) else {
            return NodeError::UnknownGroup { group };
        };
        let leader = g.leader.or_else(|| g.replicas.first().copied());
        NodeError::NotLeader {
            group,
            epoch: g.epoch,
            leader,
            address: leader.and_then(|id| self.address_of(id)),
        }
    }

    /// Where clients reach node `id`: what it said in its hello, else what the map says.
    pub fn address_of(&self, id: NodeId) -> Option<Advertised> {
        if let Some(a) = self
            .shared
            .advertised
            .lock()
            .expect("advertised lock")
            .get(&id)
        {
            return Some(a.clone());
        }
        let map = self.map();
        let n = map.nodes.get(&id).filter(|n| !n.client.is_empty())?;
        Some(Advertised {
            client: n.client.clone(),
            resp: n.resp.clone(),
            peer: n.peer.clone(),
        })
    }

    /// The map as clients get it: with every node's client addresses filled in from what it
    /// advertised to this node, where the map does not have them yet.
    pub fn map_for_clients(&self) -> ClusterMap {
        let mut map = (*self.map()).clone();
        let advertised = self.shared.advertised.lock().expect("advertised lock");
        for (id, n) in map.nodes.iter_mut() {
            if let Some(a) = advertised.get(id) {
                if n.client.is_empty() {
                    n.client = a.client.clone();
                }
                if n.resp.is_none() {
                    n.resp = a.resp.clone();
                }
            }
        }
        map
    }

    /// Watches the cluster map: changes as newer versions arrive.
    pub fn watch_map(&self) -> tokio::sync::watch::Receiver<Arc<ClusterMap>> {
        self.shared.map.subscribe()
    }

    /// Adopts `map` if it is newer than the one this node knows, and saves it; returns whether
    /// it was.
    pub fn learn_map(&self, map: ClusterMap) -> anyhow::Result<bool> {
        for n in map.nodes.values() {
            if n.id != self.shared.id
                && !n.peer.is_empty()
                && n.state != crate::partition::NodeState::Removed
                && !self.shared.transport.knows(n.id)
            {
                self.shared.transport.set_peer(n.id, n.peer.clone());
            }
        }
        learn_map(&self.shared.map, &self.shared.data_dir, map)
    }

    /// Serializes the changes this node makes to the cluster map as the meta leader (see
    /// `server::control`): each reads the map, changes it and writes it back.
    pub fn map_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.shared.map_lock
    }

    /// When this node last refreshed its map on demand (`server::control::refresh_map`), so
    /// that a flood of requests for an unknown keyspace costs one refresh per interval.
    pub fn map_refreshed(&self) -> &tokio::sync::Mutex<Option<Instant>> {
        &self.shared.map_refreshed
    }

    /// Whether this node led `group` when the Raft thread last published its status (without
    /// copying the status of every group, as [`Node::status`] does).
    pub fn leads(&self, group: GroupId) -> bool {
        let status = self.shared.status.lock().expect("status lock");
        status.group(group).is_some_and(|g| g.role == "leader")
    }

    /// The epoch of this node's replica of `group` (the index of the membership in force
    /// there), if it hosts one.
    pub fn epoch(&self, group: GroupId) -> Option<Index> {
        let status = self.shared.status.lock().expect("status lock");
        status.group(group).map(|g| g.epoch)
    }

    /// Whether the status the Raft thread last published shows `group`'s membership at
    /// `index` or later, committed: a membership change answered is then visible to
    /// whoever plans the next from the status.
    pub fn membership_published(&self, group: GroupId, index: Index) -> bool {
        let status = self.shared.status.lock().expect("status lock");
        status
            .group(group)
            .is_some_and(|g| g.epoch >= index && g.config_committed)
    }

    /// The status the Raft thread last published.
    pub fn status(&self) -> NodeStatus {
        let mut status = self.shared.status.lock().expect("status lock").clone();
        status.peers = self.shared.transport.peers();
        status.advertised = self
            .shared
            .advertised
            .lock()
            .expect("advertised lock")
            .clone();
        status
    }

    /// For every group this node leads, hands leadership to the most up-to-date other voter,
    /// and waits (at most `patience`) until they have taken over: a node stopped on purpose
    /// should not make the others wait an election timeout. A group this node comes to lead
    /// meanwhile (an election that ends just then) is handed over too, and a transfer that
    /// did not take is asked again after a second.
    pub async fn hand_over_leadership(&self, patience: Duration) {
        const ASK_AGAIN: Duration = Duration::from_secs(1);
        let deadline = Instant::now() + patience;
        let mut asked: BTreeMap<GroupId, Instant> = BTreeMap::new();
        loop {
            let targets = self.handover_targets();
            if targets.is_empty() {
                if !asked.is_empty() {
                    tracing::info!("leadership handed over");
                }
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!("leadership not handed over in time; stopping anyway");
                return;
            }
            for (group, to) in targets {
                if asked.get(&group).is_some_and(|at| at.elapsed() < ASK_AGAIN) {
                    continue;
                }
                asked.insert(group, Instant::now());
                tracing::info!(group, to, "handing leadership over before stopping");
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(error) = Node::wait(self.transfer_leader(group, to), left).await {
                    tracing::warn!(group, %error, "leadership transfer refused");
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The groups this node leads, each with the most up-to-date other voter to hand it to.
    fn handover_targets(&self) -> Vec<(GroupId, NodeId)> {
        let me = self.shared.id;
        let status = self.shared.status.lock().expect("status lock");
        status
            .groups
            .iter()
            .filter(|g| g.role == "leader")
            .filter_map(|g| {
                let to = g
                    .voters
                    .iter()
                    .filter(|&&v| v != me)
                    .max_by_key(|&&v| g.match_index.get(&v).copied().unwrap_or(0))?;
                Some((g.group, *to))
            })
            .collect()
    }

    /// Transport counters.
    pub fn transport_stats(&self) -> Arc<transport::TransportStats> {
        self.shared.transport.stats.clone()
    }

    /// The node's figures in Prometheus text, for `/metrics`: per group its role, term,
    /// commit, applied and snapshot indexes; the WAL's syncs; the transport's messages.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write;
        use std::sync::atomic::Ordering::Relaxed;
        let status = self.status();
        let mut out = String::new();
        let mut gauge = |name: &str, help: &str, rows: Vec<(String, u64)>| {
            // Names ending in `_total` are counters, the rest gauges.
            let kind = if name.ends_with("_total") {
                "counter"
            } else {
                "gauge"
            };
            let _ = writeln!(out, "# HELP kvstore_raft_{name} {help}");
            let _ = writeln!(out, "# TYPE kvstore_raft_{name} {kind}");
            for (labels, value) in rows {
                let _ = writeln!(out, "kvstore_raft_{name}{{{labels}}} {value}");
            }
        };
        let per_group = |f: &dyn Fn(&GroupStatus) -> u64| {
            status
                .groups
                .iter()
                .map(|g| (format!("group=\"{}\"", g.group), f(g)))
                .collect::<Vec<_>>()
        };
        gauge(
            "is_leader",
            "1 if this node leads the group.",
            per_group(&|g| u64::from(g.role == "leader")),
        );
        gauge("term", "The node's current term.", per_group(&|g| g.term));
        gauge(
            "commit_index",
            "Highest index known committed.",
            per_group(&|g| g.commit),
        );
        gauge(
            "applied_index",
            "Highest index applied to the engine.",
            per_group(&|g| g.applied),
        );
        gauge(
            "last_index",
            "Last index in the node's log.",
            per_group(&|g| g.last_index),
        );
        gauge(
            "snapshot_index",
            "Index of the latest snapshot.",
            per_group(&|g| g.snapshot_index),
        );
        gauge(
            "wal_syncs_total",
            "fsyncs of the Raft log since start.",
            vec![(String::new(), status.wal_syncs)],
        );
        let t = self.transport_stats();
        gauge(
            "messages_total",
            "Raft messages since start, by outcome.",
            vec![
                ("outcome=\"sent\"".into(), t.messages_sent.load(Relaxed)),
                (
                    "outcome=\"dropped\"".into(),
                    t.messages_dropped.load(Relaxed),
                ),
                (
                    "outcome=\"received\"".into(),
                    t.messages_received.load(Relaxed),
                ),
            ],
        );
        gauge(
            "peer_connect_failures_total",
            "Failed attempts to connect to a peer.",
            vec![(String::new(), t.connect_failures.load(Relaxed))],
        );
        gauge(
            "peer_write_timeouts_total",
            "Writes to a peer that did not finish in time (the link was dropped and made again).",
            vec![(String::new(), t.write_timeouts.load(Relaxed))],
        );
        gauge(
            "peer_timing_mismatches_total",
            "Peer connections refused because the peer's tick length or lease differs.",
            vec![(String::new(), t.timing_mismatches.load(Relaxed))],
        );
        out
    }

    fn submit<T>(
        &self,
        kind: AnswerKind,
        make: impl FnOnce(oneshot::Sender<Result<T, NodeError>>) -> Event,
    ) -> Answer<T> {
        use std::sync::atomic::Ordering;
        let (tx, rx) = oneshot::channel();
        let (reply_tx, reply_rx) = oneshot::channel();
        let queued = self.shared.client_events.fetch_add(1, Ordering::Relaxed);
        // The event owns `tx`; if it cannot be queued, answer through a fresh channel.
        let error = if queued >= CLIENT_EVENTS_MAX {
            NodeError::Busy
        } else {
            match self.shared.inbox.try_send(make(tx)) {
                Ok(()) => return Answer { rx, kind },
                Err(TrySendError::Full(_)) => NodeError::Busy,
                Err(TrySendError::Disconnected(_)) => NodeError::Stopped(self.stop_reason()),
            }
        };
        self.shared.client_events.fetch_sub(1, Ordering::Relaxed);
        let _ = reply_tx.send(Err(error));
        Answer { rx: reply_rx, kind }
    }

    /// Why the Raft thread failed, once it has (`None` while it runs or after a shutdown).
    pub fn failure(&self) -> Option<String> {
        match &*self.shared.stopped.lock().expect("stopped lock") {
            Some(Err(reason)) => Some(reason.clone()),
            _ => None,
        }
    }

    fn stop_reason(&self) -> String {
        match &*self.shared.stopped.lock().expect("stopped lock") {
            Some(Err(reason)) => reason.clone(),
            Some(Ok(())) => "shut down".into(),
            None => "stopping".into(),
        }
    }

    /// Proposes a command (see [`command::Command`]); the answer is its reply once it has
    /// been applied here, or an error.
    pub fn propose(&self, group: GroupId, command: Bytes) -> Answer<Reply> {
        self.submit(AnswerKind::Write, |tx| Event::Propose(group, command, tx))
    }

    /// Asks when a read at `consistency` may be served from [`Node::db`]: the receiver gets
    /// `Ok` once this replica has applied everything the read must see.
    pub fn read(&self, group: GroupId, consistency: Consistency) -> Answer<Staleness> {
        if consistency == Consistency::Follower {
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(self.staleness(group));
            return Answer {
                rx,
                kind: AnswerKind::Other,
            };
        }
        self.submit(AnswerKind::Other, |tx| Event::Read(group, consistency, tx))
    }

    fn staleness(&self, group: GroupId) -> Result<Staleness, NodeError> {
        let status = self.shared.status.lock().expect("status lock");
        let Some(g) = status.group(group) else {
            return Err(NodeError::UnknownGroup { group });
        };
        let now = clock::monotonic_us();
        // A quiesced group has nothing in flight and has heard nothing since it fell quiet:
        // it is as fresh as the liveness of the node it would hear from. Its leader's node
        // pinged without a gap, so any message of the group from it has arrived (and would
        // have woken it); a quiesced leader, as the last of its voters' nodes heard.
        let heard_at_us = if g.quiesced {
            let heard = |node: NodeId| status.peers_heard_us.get(&node).copied();
            if g.role == "leader" {
                let others = g.voters.iter().filter(|&&v| v != self.shared.id);
                others.map(|&v| heard(v)).min().unwrap_or(Some(now))
            } else {
                g.leader.and_then(heard)
            }
        } else {
            g.heard_at_us
        };
        Ok(Staleness {
            entries_behind: g.leader_commit.saturating_sub(g.applied),
            since_leader_ms: heard_at_us.map(|t| now.saturating_sub(t) / 1000),
        })
    }

    /// Hands leadership of `group` to `to`.
    pub fn transfer_leader(&self, group: GroupId, to: NodeId) -> Answer<()> {
        self.submit(AnswerKind::Other, |tx| Event::Transfer(group, to, tx))
    }

    /// Proposes a membership change; `address` is the peer address of a node being added.
    pub fn change_membership(
        &self,
        group: GroupId,
        change: ConfigChange,
        address: Option<String>,
    ) -> Answer<Index> {
        self.submit(AnswerKind::Write, |tx| {
            Event::Membership(group, change, address, tx)
        })
    }

    /// Founds `group` here with `voters` (a group of a keyspace just created), campaigning at
    /// once if `campaign`; `Ok(false)` if the node hosts it already.
    pub fn create_group(
        &self,
        group: GroupId,
        voters: Vec<NodeId>,
        campaign: bool,
    ) -> Answer<bool> {
        self.submit(AnswerKind::Other, |tx| {
            Event::CreateGroup(group, voters, campaign, tx)
        })
    }

    /// Stops hosting `group` and deletes its data; `Ok(false)` if the node did not host it.
    pub fn remove_group(&self, group: GroupId) -> Answer<bool> {
        self.submit(AnswerKind::Other, |tx| Event::RemoveGroup(group, tx))
    }

    /// Stops the Raft thread after its current round.
    pub fn shutdown(&self) {
        let _ = self.shared.inbox.send(Event::Shutdown);
    }

    /// Waits for an answer, for at most `timeout`. A write the node dropped unanswered (its
    /// Raft thread stopped) has an unknown outcome: the entry may have been logged, and sent
    /// to the others, before it stopped.
    pub async fn wait<T>(answer: Answer<T>, timeout: Duration) -> Result<T, NodeError> {
        match tokio::time::timeout(timeout, answer.rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(match answer.kind {
                AnswerKind::Write => NodeError::Unknown(UnknownOutcome::NodeStopped),
                AnswerKind::Other => NodeError::Stopped("the node dropped the request".into()),
            }),
            Err(_) => Err(NodeError::Timeout(timeout)),
        }
    }
}

/// A node before its threads run: the Raft thread's state, the handle's shared state, and
/// the receiving ends of its inbox and of its snapshot jobs. [`Node::start`] gives them
/// threads; the simulator (`node::sim`) drives them itself, turn by turn.
struct Parts {
    runner: Runner,
    shared: Arc<Shared>,
    events: stdmpsc::Receiver<Event>,
    jobs: stdmpsc::Receiver<(GroupId, runner::Job)>,
}

/// Opens the node's state machine, restores its Raft group from `logs` (what `log` replayed),
/// persists a founding entry, and wires the pieces: the Raft thread's IO (`log`, `network`,
/// `clock`) and the handle's (`transport`, for peer addresses and hellos).
fn assemble(
    mut config: NodeConfig,
    mut log: Box<dyn io::LogStore>,
    mut logs: BTreeMap<GroupId, wal::GroupLog>,
    network: Arc<dyn io::Network>,
    transport: Arc<Transport>,
    clock: Arc<dyn io::MonoClock>,
) -> anyhow::Result<Parts> {
    let started = Instant::now();
    // Every group's engine shares one background thread (periodic fsync, maintenance): a
    // node hosting many groups must not run two threads per group.
    if config.engine.background.is_none() {
        config.engine.background = Some(storage::Background::start());
    }
    let founding = config.peers.contains_key(&config.id);
    // One clock for every group's proposals and reads (see `Node::now_ms`).
    let clock_floor = Arc::new(storage::FloorClock::new(Arc::new(storage::SystemClock)));
    let map = open_map(&config, !logs.is_empty())?;
    remove_leftovers(&config.data_dir);
    // The groups this node hosts: those it has a log of, and those the map places here.
    let mut ids: std::collections::BTreeSet<GroupId> = logs.keys().copied().collect();
    ids.extend(map.groups_on(config.id).map(|g| g.group));
    let mut groups = BTreeMap::new();
    let mut seeded = 0;
    for id in ids {
        let group_log = logs.remove(&id).unwrap_or_default();
        // A group of the founding map that has no log yet starts with its founding
        // membership (persisted below, before anything else happens).
        let founding_voters = map
            .groups
            .get(&id)
            .filter(|g| founding && g.epoch == 0 && g.replicas.contains(&config.id))
            .map(|g| g.replicas.clone());
        let preferred = map.groups.get(&id).and_then(|g| g.leader) == Some(config.id);
        let (group, new) = open_group(
            &config,
            id,
            &mut *log,
            group_log,
            founding_voters,
            &clock_floor,
        )?;
        let mut group = group;
        if new && preferred {
            // The replica placement chose to lead campaigns at once: a new cluster's leaders
            // land where the map spread them, instead of wherever a timeout fired first.
            group.raft.campaign();
        }
        seeded += usize::from(new);
        groups.insert(id, group);
    }
    if seeded > 0 {
        log.sync()?;
    }
    tracing::info!(
        id = config.id,
        groups = groups.len(),
        created = seeded,
        map_version = map.version,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "node opened"
    );
    let raft_cfg = raft_config(&config);
    let timing = transport::Timing::of(&raft_cfg);
    for (id, address) in &config.peers {
        transport.set_peer(*id, address.clone());
        network.set_peer(*id, address.clone());
    }
    for n in map.nodes.values() {
        if n.id != config.id && !config.peers.contains_key(&n.id) && !n.peer.is_empty() {
            transport.set_peer(n.id, n.peer.clone());
            network.set_peer(n.id, n.peer.clone());
        }
    }
    // Nodes added since the cluster was founded, from the address books in the logs.
    for g in groups.values() {
        for (id, address) in g.machine.peers()? {
            if !config.peers.contains_key(&id) {
                transport.set_peer(id, address.clone());
                network.set_peer(id, address);
            }
        }
    }
    let (inbox, events) = stdmpsc::sync_channel(INBOX_EVENTS_MAX);
    let mut advertised = BTreeMap::new();
    advertised.insert(config.id, config.advertise.clone());
    let shared = Arc::new(Shared {
        id: config.id,
        inbox,
        client_events: Default::default(),
        status: Mutex::new(NodeStatus::default()),
        advertised: Mutex::new(advertised),
        dbs: RwLock::new(
            groups
                .iter()
                .map(|(id, g)| (*id, g.machine.shared_db()))
                .collect(),
        ),
        map: tokio::sync::watch::Sender::new(Arc::new(map)),
        map_lock: tokio::sync::Mutex::new(()),
        map_refreshed: tokio::sync::Mutex::new(None),
        data_dir: config.data_dir.clone(),
        stopped: Mutex::new(None),
        transport,
        timing,
        clock: clock_floor,
    });
    let (snapshots, jobs) = stdmpsc::sync_channel(SNAPSHOT_JOBS_MAX);
    let next_tick_us = clock.now_us() + config.tick.as_micros() as u64;
    // The first round looks at every group (a founding entry to persist, a log to apply).
    let dirty = groups.keys().copied().collect();
    let runner = Runner {
        config,
        wal: log,
        groups,
        transport: network,
        clock: clock.clone(),
        next_tick_us,
        shared: shared.clone(),
        // Read contexts of an earlier run of this node could still be in flight.
        next_read: (u64::from(std::process::id()) << 40) ^ now_ms().wrapping_mul(1 << 20),
        shutdown: false,
        snapshots,
        built: Vec::new(),
        installed: Vec::new(),
        last_loop_us: clock.now_us(),
        woke_at_us: None,
        doomed: Vec::new(),
        unsynced: false,
        dirty,
        heard_nodes: BTreeMap::new(),
        ticks: 0,
    };
    Ok(Parts {
        runner,
        shared,
        events,
        jobs,
    })
}

/// Opens (or creates) the state machine of `group` in its directory and restores its Raft
/// core from `group_log`; a group with no log starts with `founding_voters` (persisted to
/// `log`, unsynced) if given, else empty, waiting for a leader. Returns the group and whether
/// it is new.
fn open_group(
    config: &NodeConfig,
    id: GroupId,
    log: &mut dyn io::LogStore,
    group_log: wal::GroupLog,
    founding_voters: Option<Vec<NodeId>>,
    clock: &Arc<storage::FloorClock>,
) -> anyhow::Result<(Group, bool)> {
    let dir = config.data_dir.join(format!("group-{id}"));
    let mut machine = StateMachine::open_with_clock(&dir, config.engine.clone(), clock.clone())?;
    // A transfer a crash cut short: its leader starts it again from the first piece.
    let incoming = state::incoming_snapshot_path(&dir);
    if incoming.exists() {
        std::fs::remove_file(&incoming)
            .map_err(|e| anyhow::anyhow!("removing {}: {e}", incoming.display()))?;
    }
    let path = state::snapshot_path(&dir, group_log.snapshot.index);
    let snapshot_data = if group_log.snapshot.index == 0 || !path.exists() {
        // No snapshot, or the log was compacted without one (`Raft::compact_log`) after the
        // engine was synced at or past its index: the engine holds it, and a snapshot is
        // built when a follower needs one.
        anyhow::ensure!(
            machine.applied() >= group_log.snapshot.index,
            "group {id}: the log was compacted to index {} but its engine holds only {} and \
             {} is missing",
            group_log.snapshot.index,
            machine.applied(),
            path.display()
        );
        None
    } else {
        let (index, data) = state::load_snapshot_file(&path)?;
        anyhow::ensure!(
            index == group_log.snapshot.index,
            "group {id}: the snapshot file holds index {index}, the log expects {}",
            group_log.snapshot.index
        );
        if machine.applied() < index {
            tracing::info!(
                group = id,
                index,
                "finishing a snapshot install that a crash interrupted"
            );
            machine.install(&data)?;
        }
        Some(data)
    };
    let log_is_new = group_log.hard_state.term == 0 && group_log.snapshot.index == 0;
    let (restored, new) = match (log_is_new, founding_voters) {
        (true, Some(voters)) => {
            let restored = Restored::bootstrap(voters);
            // Persist the founding entry, so that a restart finds the same log.
            log.append(id, &restored.entries);
            log.set_hard_state(id, restored.hard_state);
            (restored, true)
        }
        (true, None) => (Restored::default(), true),
        (false, _) => (
            Restored {
                hard_state: group_log.hard_state,
                snapshot: group_log.snapshot,
                snapshot_data,
                entries: group_log.entries,
            },
            false,
        ),
    };
    let hard_state = restored.hard_state;
    let seed = config
        .raft_seed
        .unwrap_or_else(|| seed(config.id, &config.data_dir))
        ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let raft = Raft::new(raft_config(config), restored, seed);
    Ok((
        Group {
            raft,
            machine,
            dir,
            proposals: BTreeMap::new(),
            reads: HashMap::new(),
            waiting_reads: Vec::new(),
            heard_at_us: None,
            term_vote: (hard_state.term, hard_state.vote),
            snapshotting: false,
            snapshot_not_before: None,
            compaction_not_before: None,
            incoming: None,
            installing: None,
        },
        new,
    ))
}

/// The map this node starts with: the one saved in its data directory; else, for a founding
/// node, the founding map of its peers (saved now); else none (version 0), until it learns one.
fn open_map(config: &NodeConfig, has_logs: bool) -> anyhow::Result<ClusterMap> {
    let path = config.data_dir.join(MAP_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => {
            return ClusterMap::decode(&bytes)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(anyhow::anyhow!("reading {}: {e}", path.display())),
    }
    anyhow::ensure!(
        !has_logs || !config.peers.contains_key(&config.id),
        "{} holds Raft logs but no cluster map: it was written by a build before partitioning \
         (one group for the whole keyspace); start from an empty data directory",
        config.data_dir.display()
    );
    if !config.peers.contains_key(&config.id) {
        return Ok(ClusterMap::default());
    }
    let nodes = config
        .peers
        .iter()
        .map(|(id, peer)| crate::partition::NodeInfo {
            id: *id,
            peer: peer.clone(),
            ..Default::default()
        })
        .collect();
    let map = ClusterMap::bootstrap(nodes, config.default_partitions, config.default_replicas);
    save_map(&config.data_dir, &map)?;
    Ok(map)
}

/// Deletes what a crash left of removed groups' directories (renamed `*.removed-*` before
/// they are deleted).
fn remove_leftovers(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().contains(".removed-") {
            if let Err(error) = std::fs::remove_dir_all(entry.path()) {
                tracing::warn!(dir = %entry.path().display(), %error, "could not delete a removed group");
            }
        }
    }
}

fn save_map(dir: &std::path::Path, map: &ClusterMap) -> anyhow::Result<()> {
    let path = dir.join(MAP_FILE);
    let tmp = dir.join(format!("{MAP_FILE}.tmp"));
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&map.encode())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn learn_map(
    current: &tokio::sync::watch::Sender<Arc<ClusterMap>>,
    dir: &std::path::Path,
    map: ClusterMap,
) -> anyhow::Result<bool> {
    if map.version <= current.borrow().version {
        return Ok(false);
    }
    save_map(dir, &map)?;
    let version = map.version;
    current.send_if_modified(|held| {
        let newer = version > held.version;
        if newer {
            *held = Arc::new(map);
        }
        newer
    });
    Ok(true)
}

/// An answer the node owes a caller: wait for it with [`Node::wait`].
#[derive(Debug)]
pub struct Answer<T> {
    rx: oneshot::Receiver<Result<T, NodeError>>,
    kind: AnswerKind,
}

/// What a dropped answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnswerKind {
    /// A proposal: dropped, its outcome is unknown.
    Write,
    /// A read or an admin request: dropped, it did nothing.
    Other,
}

/// The Raft core's settings for this node: its tick length, and the defaults otherwise.
pub fn raft_config(config: &NodeConfig) -> raft::Config {
    raft::Config {
        tick_us: config.tick.as_micros().max(1) as u64,
        snapshot_chunk_bytes_max: config.snapshot_chunk_bytes_max.max(1),
        // A follower needing a snapshot gets a fresh one once a quarter of the way to the
        // next compaction: it then catches up on a short log, and the compaction that would
        // otherwise come during its transfer (and make it need a second) has just happened.
        snapshot_stale_entries: (config.compact_entries / 4).max(1),
        snapshot_stale_bytes: usize::try_from(config.compact_bytes / 4)
            .unwrap_or(usize::MAX)
            .max(1),
        // A follower this far behind when the log is compacted without a snapshot keeps its
        // entries: at most a tenth of the way to the next compaction (and 1,000 entries and
        // 4 MiB).
        compaction_catch_up_entries: (config.compact_entries / 10)
            .min(raft::Config::new(config.id).compaction_catch_up_entries),
        compaction_catch_up_bytes: usize::try_from(config.compact_bytes / 10)
            .unwrap_or(usize::MAX)
            .min(raft::Config::new(config.id).compaction_catch_up_bytes),
        quiesce: config.quiesce,
        ..raft::Config::new(config.id)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A deterministic seed per node and data directory: elections differ between nodes, and a
/// run can be replayed.
fn seed(id: NodeId, dir: &std::path::Path) -> u64 {
    let text = format!("{id}:{}", dir.display());
    crc32fast::hash(text.as_bytes()) as u64 ^ id.rotate_left(32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fault::{FaultInjector, IoOp};
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A WAL disk that fails every fsync once it is broken.
    #[derive(Debug, Default)]
    struct BreakingDisk(AtomicBool);

    impl FaultInjector for BreakingDisk {
        fn before(&self, op: IoOp, _path: &std::path::Path) -> std::io::Result<()> {
            match op {
                IoOp::Sync if self.0.load(Ordering::SeqCst) => {
                    Err(std::io::Error::other("injected: the disk failed"))
                }
                _ => Ok(()),
            }
        }
    }

    /// A node of one, with `tune` applied to its settings, once it leads.
    fn single_node(
        dir: &std::path::Path,
        rt: &tokio::runtime::Runtime,
        tune: impl FnOnce(&mut NodeConfig),
    ) -> Node {
        let mut config = NodeConfig::new(1, dir.to_path_buf());
        config.peers.insert(1, "127.0.0.1:1".into());
        config.tick = Duration::from_millis(2);
        config.default_partitions = 1;
        tune(&mut config);
        let node = Node::start(config, rt.handle().clone()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !node
            .status()
            .groups
            .iter()
            .find(|g| g.group == DEFAULT_GROUP)
            .is_some_and(|g| g.role == "leader" && g.applied >= 2)
        {
            assert!(Instant::now() < deadline, "the node of one elected itself");
            std::thread::sleep(Duration::from_millis(5));
        }
        node
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    }

    /// A slow disk, once `0` is set: engine reads of values on disk take that many ms each,
    /// and engine fsyncs a hundred times as long.
    #[derive(Debug, Default)]
    struct SlowDisk(std::sync::atomic::AtomicU64);

    impl FaultInjector for SlowDisk {
        fn before(&self, op: IoOp, _path: &std::path::Path) -> std::io::Result<()> {
            let ms = self.0.load(Ordering::SeqCst);
            let ms = match op {
                IoOp::Read => ms,
                IoOp::Sync => ms * 100,
                _ => 0,
            };
            if ms > 0 {
                std::thread::sleep(Duration::from_millis(ms));
            }
            Ok(())
        }
    }

    fn put(node: &Node, key: String, value: &[u8]) -> Bytes {
        let put = crate::wire::Request::Put {
            keyspace: "default".into(),
            key: Bytes::from(key),
            value: Bytes::copy_from_slice(value),
            ttl_ms: None,
            condition: crate::wire::Condition::None,
        };
        command::Command::wire(None, node.now_ms(), &put, 1).unwrap()
    }

    /// Compacting the log syncs the engine (and building a snapshot, for a follower that
    /// needs one, reads every value); on a slow disk either takes seconds. Writes must go on
    /// meanwhile: the Raft thread that answers them (and sends heartbeats) does neither.
    #[test]
    fn writes_go_on_while_the_log_is_compacted() {
        let dir = crate::test_dir::TestDir::new("node-compact");
        let rt = runtime();
        let slow = Arc::new(SlowDisk::default());
        let node = single_node(&dir, &rt, |config| {
            config.compact_entries = 100;
            config.engine.faults = Some(slow.clone());
        });
        let big = [b'v'; 300]; // past the inline limit: read from disk for a snapshot
        let write = |i: usize| {
            let started = Instant::now();
            let reply = rt.block_on(Node::wait(
                node.propose(DEFAULT_GROUP, put(&node, format!("k{i}"), &big)),
                Duration::from_secs(30),
            ));
            assert!(reply.is_ok(), "{reply:?}");
            started.elapsed()
        };
        for i in 0..50 {
            write(i);
        }
        // An engine fsync takes 2 s now; 100+ values read for a snapshot take over 2 s too.
        slow.0.store(20, Ordering::SeqCst);
        let mut slowest = Duration::ZERO;
        let started = Instant::now();
        let mut i = 50;
        let snapshot_index = || {
            let status = node.status();
            let g = status.groups.iter().find(|g| g.group == DEFAULT_GROUP);
            g.map_or(0, |g| g.snapshot_index)
        };
        while snapshot_index() == 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "no compaction");
            slowest = slowest.max(write(i));
            i += 1;
        }
        assert!(
            i >= 90,
            "the compaction came near the threshold, not at once"
        );
        assert!(
            slowest < Duration::from_millis(1_000),
            "a write waited {slowest:?} while the log was compacted"
        );
    }

    /// A log compacted without a snapshot leaves no snapshot file: the WAL's mark names an
    /// index the engine holds, and a restart starts from the engine with every write.
    #[test]
    fn a_log_compacted_without_a_snapshot_restarts_from_its_engine() {
        let dir = crate::test_dir::TestDir::new("node-lazy-compact");
        let rt = runtime();
        let tune = |config: &mut NodeConfig| config.compact_entries = 100;
        let node = single_node(&dir, &rt, tune);
        let group = |node: &Node| {
            let status = node.status();
            let g = status.groups.iter().find(|g| g.group == DEFAULT_GROUP);
            g.map(|g| (g.snapshot_index, g.applied)).unwrap()
        };
        let mut i = 0;
        while group(&node).0 == 0 || i < 250 {
            assert!(i < 10_000, "no compaction");
            let reply = rt.block_on(Node::wait(
                node.propose(DEFAULT_GROUP, put(&node, format!("k{i}"), b"v")),
                Duration::from_secs(30),
            ));
            assert!(reply.is_ok(), "{reply:?}");
            i += 1;
        }
        let group_dir = dir.join(format!("group-{DEFAULT_GROUP}"));
        let snapshots = || {
            (std::fs::read_dir(&group_dir).unwrap())
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|name| name.starts_with("snapshot"))
                .collect::<Vec<_>>()
        };
        assert_eq!(snapshots(), Vec::<String>::new(), "no snapshot was built");
        let (compacted, applied) = group(&node);
        assert!(compacted >= 100, "compacted to {compacted}");
        node.shutdown();
        drop(node);

        let node = single_node(&dir, &rt, tune);
        assert!(group(&node).1 >= applied, "restarted at {:?}", group(&node));
        let db = node.db(DEFAULT_GROUP).unwrap();
        let ks = crate::db::Keyspace::new("default").unwrap();
        assert_eq!(db.count(&ks), i as u64, "every write is there");
        assert_eq!(snapshots(), Vec::<String>::new());
    }

    #[test]
    fn requests_name_their_group_and_a_group_not_hosted_here_is_refused_as_such() {
        let dir = crate::test_dir::TestDir::new("node-groups");
        let rt = runtime();
        let node = single_node(&dir, &rt, |_| {});
        fn wait<T>(rt: &tokio::runtime::Runtime, answer: Answer<T>) -> Result<T, NodeError> {
            rt.block_on(Node::wait(answer, Duration::from_secs(10)))
        }
        let other = DEFAULT_GROUP + 41;
        let proposed = wait(&rt, node.propose(other, put(&node, "k".into(), b"v")));
        assert_eq!(
            proposed.err(),
            Some(NodeError::UnknownGroup { group: other })
        );
        for consistency in [Consistency::Linearizable, Consistency::Follower] {
            let read = wait(&rt, node.read(other, consistency));
            assert_eq!(read.err(), Some(NodeError::UnknownGroup { group: other }));
        }
        assert!(node.db(other).is_none());
        // The group it hosts answers.
        assert!(wait(
            &rt,
            node.propose(DEFAULT_GROUP, put(&node, "k".into(), b"v"))
        )
        .is_ok());
        assert!(wait(&rt, node.read(DEFAULT_GROUP, Consistency::Linearizable)).is_ok());
        assert!(node.db(DEFAULT_GROUP).is_some());
    }

    #[test]
    fn a_write_whose_node_stops_after_logging_it_has_an_unknown_outcome() {
        let dir = crate::test_dir::TestDir::new("node-unknown");
        let rt = runtime();
        let disk = Arc::new(BreakingDisk::default());
        let node = single_node(&dir, &rt, |config| config.wal.faults = Some(disk.clone()));
        disk.0.store(true, Ordering::SeqCst);
        let put = crate::wire::Request::Put {
            keyspace: "default".into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            ttl_ms: None,
            condition: crate::wire::Condition::None,
        };
        let command = command::Command::wire(None, node.now_ms(), &put, 1).unwrap();
        // The entry is in the log's buffer, perhaps written, when the sync fails and the node
        // stops: whether it survives is not known, so neither is the write's outcome.
        let outcome = rt.block_on(Node::wait(
            node.propose(DEFAULT_GROUP, command),
            Duration::from_secs(10),
        ));
        assert!(matches!(outcome, Err(NodeError::Unknown(_))), "{outcome:?}");
        assert!(node.failure().is_some_and(|r| r.contains("injected")));
        // A request that never reached the log is refused definitely.
        let refused = rt.block_on(Node::wait(
            node.propose(DEFAULT_GROUP, Bytes::from_static(b"x")),
            Duration::from_secs(10),
        ));
        assert!(matches!(refused, Err(NodeError::Stopped(_))), "{refused:?}");
    }
}
