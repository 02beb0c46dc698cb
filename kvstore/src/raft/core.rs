//! The Raft state machine of one node in one group: deterministic, with no IO.
//!
//! The runtime feeds it inputs: [`Raft::step`] (a message from a peer), [`Raft::tick`] (one
//! unit of logical time), [`Raft::propose`], [`Raft::propose_config`], [`Raft::read_index`],
//! [`Raft::transfer_leader`], [`Raft::compact`]. It drains the outputs with [`Raft::ready`]
//! and, once it has done what they ask, calls [`Raft::advance`]:
//!
//! 1. keep `snapshot_chunks` (a file), persist `hard_state`, `snapshot` and `entries` (and
//!    fsync);
//! 2. send `messages` (only now: a vote or an acknowledgement must not outlive a crash that
//!    forgets it);
//! 3. apply `committed` entries (and install `snapshot`) in order, serve `read_states` once
//!    the applied index reaches theirs;
//! 4. call `advance`, then [`Raft::snapshot_received`] if it kept a snapshot's last piece, or
//!    [`Raft::snapshot_lost`] if it could not keep a piece.
//!
//! Time comes in two forms, both inputs: ticks (elections and heartbeats count them) and
//! readings of the runtime's monotonic clock, given with every tick and lease read. Leases are
//! dated on the clock, never on ticks: a runtime that stalls (SIGSTOP, a long fsync) wakes
//! having missed ticks, but not time. Randomness comes from a seeded [`Rng`], so a run replays
//! from its seed.
//! Invariants are asserted where they can break: terms and commit indexes never go back, a
//! node votes once per term, a leader never overwrites its log, a committed entry is never
//! truncated, and a leader commits by counting replicas only for entries of its own term.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::log::RaftLog;
use super::message::{
    AppendResult, Body, Entry, HardState, Index, Membership, Message, NodeId, Payload, Snapshot,
    SnapshotMeta, Term,
};
use super::progress::{Progress, State};
use super::rng::Rng;

/// A reading of the runtime's monotonic clock, in microseconds from an origin of its choice
/// (only differences between readings of one node matter).
pub type Micros = u64;

/// A node's settings. Times are in ticks; the runtime decides how long a tick is and says so
/// in `tick_us`.
#[derive(Debug, Clone)]
pub struct Config {
    pub id: NodeId,
    /// Election timeouts are drawn from `election_ticks_min..election_ticks_max`. A leader
    /// that has not heard from a quorum for `election_ticks_min` steps down (check-quorum).
    pub election_ticks_min: u32,
    pub election_ticks_max: u32,
    /// A leader sends heartbeats this often; well under `election_ticks_min`.
    pub heartbeat_ticks: u32,
    /// Most entries, and bytes of entries, in one `Append`.
    pub append_entries_max: usize,
    pub append_bytes_max: usize,
    /// Most unacknowledged `Append`s to one follower.
    pub inflight_appends_max: usize,
    /// Most bytes of snapshot in one `InstallSnapshot`.
    pub snapshot_chunk_bytes_max: usize,
    /// Most unacknowledged `InstallSnapshot` chunks to one follower: a window, so that a
    /// transfer is not one round trip per chunk.
    pub snapshot_chunks_inflight_max: usize,
    /// A follower that needs a snapshot while the log after the leader's latest holds more
    /// than this many entries, or bytes (0: no bound), is not sent that one: it would have to
    /// catch up on that long log afterwards, and the log would likely be compacted under it
    /// meanwhile, so that it needed a second snapshot. The leader waits instead for the
    /// runtime to build a fresh one ([`Raft::wants_snapshot`]) and sends that.
    pub snapshot_stale_entries: u64,
    pub snapshot_stale_bytes: usize,
    /// Most ticks a follower waits for that fresh snapshot before the stale one is sent
    /// after all (a runtime that cannot build one must not hold the follower back for ever).
    pub snapshot_wait_ticks_max: u32,
    /// A leader compacting its log without a snapshot ([`Raft::compact_log`]) keeps the
    /// entries a follower at most this far behind still needs (in entries, and in bytes of
    /// them), so that a follower a round or two late is sent entries, not a snapshot built
    /// for it; one further behind gets one.
    pub compaction_catch_up_entries: u64,
    pub compaction_catch_up_bytes: usize,
    /// Most reads waiting for a quorum's confirmation at the leader.
    pub pending_reads_max: usize,
    /// Ask "would you vote for me?" before starting a real election.
    pub pre_vote: bool,
    /// Leaders step down without a quorum; followers that hear from a leader ignore votes.
    pub check_quorum: bool,
    /// How long a quorum's answer to a heartbeat lets the leader serve reads without asking
    /// again (leader lease), counted on the leader's clock from when the heartbeat was sent:
    /// `lease_ticks × tick_us` microseconds; 0 turns leases off. Voters that answered refuse
    /// other candidates for `election_ticks_min` of their ticks, and a runtime never ticks
    /// faster than `tick_us` (it may tick slower), so a lease shorter than that by two ticks
    /// (one for each side's tick rounding) and by the drift margin is safe.
    pub lease_ticks: u32,
    /// The length of one of the runtime's ticks on its clock. Every node of a group must use
    /// the same (peers compare it when they connect).
    pub tick_us: Micros,
    /// How much faster one node's clock may run than another's, in percent: the margin the
    /// lease leaves for it.
    pub clock_drift_percent_max: u32,
    /// Let an idle group fall quiet (see [`Raft::quiesced`]): the runtime must then wake a
    /// quiesced follower whose leader's node has gone silent ([`Raft::unquiesce`]).
    pub quiesce: bool,
}

impl Config {
    pub fn new(id: NodeId) -> Config {
        Config {
            id,
            election_ticks_min: 10,
            election_ticks_max: 20,
            heartbeat_ticks: 2,
            append_entries_max: 512,
            append_bytes_max: 1024 * 1024,
            inflight_appends_max: 64,
            snapshot_chunk_bytes_max: 1024 * 1024,
            snapshot_chunks_inflight_max: 8,
            snapshot_stale_entries: 0,
            snapshot_stale_bytes: 0,
            snapshot_wait_ticks_max: 100,
            compaction_catch_up_entries: 1_000,
            compaction_catch_up_bytes: 4 * 1024 * 1024,
            pending_reads_max: 4096,
            pre_vote: true,
            check_quorum: true,
            lease_ticks: 7,
            tick_us: 50_000,
            clock_drift_percent_max: 10,
            quiesce: false,
        }
    }

    fn validate(&self) {
        assert!(self.id != 0, "node id 0 is reserved");
        assert!(
            self.heartbeat_ticks >= 1 && self.heartbeat_ticks < self.election_ticks_min,
            "heartbeats must be more frequent than elections"
        );
        assert!(self.election_ticks_min < self.election_ticks_max);
        assert!(self.append_entries_max >= 1 && self.inflight_appends_max >= 1);
        assert!(self.snapshot_chunk_bytes_max >= 1);
        assert!(self.snapshot_chunks_inflight_max >= 1);
        assert!(self.tick_us >= 1, "a tick takes time");
        let lease_with_margin =
            u64::from(self.lease_ticks + 2) * u64::from(100 + self.clock_drift_percent_max);
        assert!(
            self.lease_ticks == 0 || lease_with_margin <= u64::from(self.election_ticks_min) * 100,
            "a lease must end two ticks and the drift margin before voters stop ignoring \
             other candidates"
        );
    }

    /// How long a lease lasts on the leader's clock.
    pub fn lease_us(&self) -> Micros {
        u64::from(self.lease_ticks) * self.tick_us
    }
}

/// What the node believes it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Follower,
    /// Asking for pre-votes: the term has not been raised yet.
    PreCandidate,
    Candidate,
    Leader,
}

/// Why a proposal was refused. Nothing was appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("not the leader (the leader is {leader:?})")]
    NotLeader { leader: Option<NodeId> },
    #[error("leadership is being transferred to node {to}")]
    Transferring { to: NodeId },
    #[error("a membership change is already in progress (at index {index})")]
    ConfigChangePending { index: Index },
    #[error("the new leader has not committed an entry of its term yet; retry shortly")]
    NotReady,
    #[error("a membership change must add or remove exactly one voter")]
    NotSingleStep,
}

/// A read that may be served once the state machine has applied `index`. `index` is `None`
/// when this node could not get a read index (no leader known, leadership lost): retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    pub context: Bytes,
    pub index: Option<Index>,
}

/// What the runtime must do, in order; see the module documentation.
#[derive(Debug, Default)]
pub struct Ready {
    pub hard_state: Option<HardState>,
    /// Pieces of a snapshot coming from the leader, in order, for the runtime to keep (a
    /// file): the core does not gather them, so a snapshot as large as a partition never sits
    /// in its memory. A piece at offset 0 starts a snapshot afresh.
    pub snapshot_chunks: Vec<SnapshotChunk>,
    /// A snapshot received from the leader (its last piece is in `snapshot_chunks`), to
    /// persist and install in the state machine. Its `data` is empty: the runtime holds the
    /// bytes, and hands them back with [`Raft::supply_snapshot_data`] before `advance`.
    pub snapshot: Option<Snapshot>,
    /// Entries to persist. They replace any persisted entries at or after `entries[0].index`.
    pub entries: Vec<Entry>,
    pub messages: Vec<Message>,
    pub committed: Vec<Entry>,
    pub read_states: Vec<ReadState>,
}

impl Ready {
    pub fn is_empty(&self) -> bool {
        self.hard_state.is_none()
            && self.snapshot_chunks.is_empty()
            && self.snapshot.is_none()
            && self.entries.is_empty()
            && self.messages.is_empty()
            && self.committed.is_empty()
            && self.read_states.is_empty()
    }
}

/// A piece of a snapshot a follower received, at `offset` of the snapshot `meta` describes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotChunk {
    pub meta: SnapshotMeta,
    pub offset: u64,
    pub data: Bytes,
    /// The snapshot's last piece: once the runtime holds them all durably, it calls
    /// [`Raft::snapshot_received`] (or [`Raft::snapshot_lost`] if it could not keep them).
    pub last: bool,
}

/// What the node had persisted when it (re)started.
#[derive(Debug, Clone, Default)]
pub struct Restored {
    pub hard_state: HardState,
    /// The last snapshot (index 0 and empty membership for a node with none).
    pub snapshot: SnapshotMeta,
    /// The snapshot's bytes, to send to followers that need it; `None` when the log was
    /// compacted without building them ([`Raft::compact_log`]: the state machine holds that
    /// state durably, and a snapshot is built when a follower needs one).
    pub snapshot_data: Option<Bytes>,
    /// The entries after the snapshot.
    pub entries: Vec<Entry>,
}

impl Restored {
    /// The state every founding member of a new group starts from: entry 1, committed,
    /// holds the initial membership, so a node added later learns it from the log.
    pub fn bootstrap(voters: impl IntoIterator<Item = NodeId>) -> Restored {
        Restored {
            hard_state: HardState {
                term: 1,
                vote: None,
                commit: 1,
            },
            entries: vec![Entry {
                index: 1,
                term: 1,
                payload: Payload::Config(Membership::new(voters)),
            }],
            ..Restored::default()
        }
    }
}

/// A read waiting for a heartbeat round to prove the leader still leads.
#[derive(Debug)]
struct PendingRead {
    context: Bytes,
    /// The commit index when the read arrived: serving at it or later is linearizable.
    index: Index,
    /// The heartbeat round that must be acknowledged by a quorum.
    round: u64,
    /// The follower that asked, or `None` for this node's own client.
    from: Option<NodeId>,
}

/// While a leader sends a snapshot, its log may grow this many times past the runtime's
/// compaction threshold before it is compacted anyway (see [`Raft::compaction_due`]).
pub const COMPACTION_HOLD_FACTOR: u64 = 4;

/// Heartbeat rounds whose send time a leader remembers, for leases. A round older than the
/// last confirmed one is forgotten anyway; this bounds the list if followers stop answering.
const ROUNDS_REMEMBERED_MAX: usize = 64;

/// One node of one Raft group.
pub struct Raft {
    cfg: Config,
    rng: Rng,
    term: Term,
    vote: Option<NodeId>,
    role: Role,
    leader: Option<NodeId>,
    log: RaftLog,
    /// The membership as of the snapshot, then every `Config` entry in the log, in order. The
    /// last one is in force.
    configs: Vec<(Index, Membership)>,
    /// Votes received in the current (pre-)election.
    votes: BTreeMap<NodeId, bool>,
    /// The leader's view of every other member.
    progress: BTreeMap<NodeId, Progress>,
    election_elapsed: u32,
    election_timeout: u32,
    heartbeat_elapsed: u32,
    /// The leader's heartbeat round counter; answers carry it back.
    round: u64,
    /// Reads are waiting for round `round`: send it at the next `ready`.
    round_due: bool,
    /// This leader appended entries of its own since the last `ready`: the followers get them
    /// then, all of a round's proposals in one `Append` each, not one `Append` per proposal.
    append_due: bool,
    reads: VecDeque<PendingRead>,
    /// Reads that arrived before this leader committed an entry of its term.
    reads_unindexed: Vec<(Bytes, Option<NodeId>)>,
    read_states: Vec<ReadState>,
    transferee: Option<(NodeId, u32)>,
    /// Ticks since this node started (a restarted voter's guard counts them).
    ticks: u64,
    /// The latest reading of the runtime's clock.
    clock: Micros,
    /// When (on the clock) each recent heartbeat round was sent (leader), oldest first.
    round_sent: VecDeque<(u64, Micros)>,
    /// The leader may serve lease reads while the clock reads below this.
    lease_until: Micros,
    /// This leader told a follower to campaign (`TimeoutNow`): voters may now follow the
    /// transferee without waiting, so no lease holds for the rest of the term.
    lease_void: bool,
    /// When (on the clock) this node last knew it led: it won its election, or a quorum
    /// answered a heartbeat round sent then. How fresh its knowledge is, as a leader.
    quorum_heard_at: Option<Micros>,
    /// The highest commit index a leader has told this node (as a follower).
    leader_commit: Index,
    /// The latest local snapshot, for followers that need it: `None` once the log is
    /// compacted without one ([`Raft::compact_log`]); the runtime then builds one when a
    /// follower needs it ([`Raft::wants_snapshot`]).
    snapshot: Option<Snapshot>,
    /// A snapshot being received: its description and the bytes so far.
    /// A snapshot being received: which one, and how many of its bytes the runtime holds.
    incoming: Option<(SnapshotMeta, u64)>,
    /// Pieces of it accepted since the last `ready`.
    incoming_chunks: Vec<SnapshotChunk>,
    /// A snapshot whose last piece is with the runtime, from the leader that sent it: it is
    /// installed once the runtime says it holds every piece durably.
    received: Option<(SnapshotMeta, NodeId)>,
    /// The runtime could not keep a piece (a full disk): pieces are ignored until this time
    /// on the clock, so the leader retries after its stall timeout rather than at once.
    pieces_ignored_until: Micros,
    /// A received snapshot to hand to the runtime.
    installed: Option<Snapshot>,
    msgs: Vec<Message>,
    /// The hard state last handed out (to see what changed).
    persisted_hard_state: HardState,
    /// What the last `ready` handed out, for `advance`.
    handed_out: Option<HandedOut>,
    /// The group is idle and quiet: no heartbeats, no election timer (see [`Raft::quiesced`]).
    quiesced: bool,
    /// A read was asked of this leader since its last heartbeat: it stays awake. A quiesced
    /// leader holds no lease, so a group read steadily but never written would otherwise
    /// fall quiet every heartbeat and pay a round for the next read (with 64 partitions, a
    /// read-only load cost 0.7 of one group's).
    read_lately: bool,
}

#[derive(Debug)]
struct HandedOut {
    stable: Option<(Index, Term)>,
    applied: Option<Index>,
}

impl Raft {
    /// A node starting from what it had persisted, with its RNG seeded by `seed`.
    pub fn new(cfg: Config, restored: Restored, seed: u64) -> Raft {
        cfg.validate();
        let Restored {
            hard_state,
            snapshot,
            snapshot_data,
            entries,
        } = restored;
        let mut configs = vec![(snapshot.index, snapshot.membership.clone())];
        configs.extend(entries.iter().filter_map(|e| match &e.payload {
            Payload::Config(m) => Some((e.index, m.clone())),
            _ => None,
        }));
        let log = RaftLog::restore(snapshot.clone(), entries, hard_state.commit);
        let mut raft = Raft {
            rng: Rng::new(seed ^ cfg.id.wrapping_mul(0x9E37_79B9)),
            term: hard_state.term,
            vote: hard_state.vote,
            role: Role::Follower,
            leader: None,
            log,
            configs,
            votes: BTreeMap::new(),
            progress: BTreeMap::new(),
            election_elapsed: 0,
            election_timeout: 0,
            heartbeat_elapsed: 0,
            round: 0,
            round_due: false,
            append_due: false,
            reads: VecDeque::new(),
            reads_unindexed: Vec::new(),
            read_states: Vec::new(),
            transferee: None,
            quiesced: false,
            read_lately: false,
            ticks: 0,
            clock: 0,
            round_sent: VecDeque::new(),
            lease_until: 0,
            lease_void: false,
            quorum_heard_at: None,
            leader_commit: hard_state.commit,
            // No snapshot at all (index 0) is an empty one: there is nothing to build.
            snapshot: (snapshot_data.or_else(|| (snapshot.index == 0).then(Bytes::new))).map(
                |data| Snapshot {
                    meta: snapshot,
                    data,
                },
            ),
            incoming: None,
            received: None,
            pieces_ignored_until: 0,
            incoming_chunks: Vec::new(),
            installed: None,
            msgs: Vec::new(),
            persisted_hard_state: HardState::default(),
            handed_out: None,
            cfg,
        };
        raft.persisted_hard_state = raft.hard_state();
        raft.reset_election_timer();
        raft
    }

    // ----- Inspection ---------------------------------------------------------------------

    pub fn id(&self) -> NodeId {
        self.cfg.id
    }
    pub fn config(&self) -> &Config {
        &self.cfg
    }
    pub fn role(&self) -> Role {
        self.role
    }
    pub fn term(&self) -> Term {
        self.term
    }
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }
    pub fn log(&self) -> &RaftLog {
        &self.log
    }
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.log.committed(),
        }
    }
    /// The highest commit index this node knows of: its own as leader, otherwise the highest a
    /// leader has sent it (which may be past what it holds: it is behind by the difference).
    pub fn leader_commit(&self) -> Index {
        match self.role {
            Role::Leader => self.log.committed(),
            _ => self.leader_commit.max(self.log.committed()),
        }
    }

    /// When (on the runtime's clock) this node last knew it led: when it won its election, or
    /// the send time of the latest heartbeat round a quorum answered (now, for a leader that
    /// is the only voter). `None` if it never led. A deposed leader that has not noticed yet is as stale as this says.
    pub fn heard_from_quorum_at(&self) -> Option<Micros> {
        let alone = self.membership().voters.len() == 1 && self.is_voter();
        if self.role == Role::Leader && alone {
            return Some(self.clock);
        }
        self.quorum_heard_at
    }

    /// The index of the membership in force (0: the one the group was founded with, or a
    /// snapshot's): it grows with every change, so it orders memberships (an epoch).
    pub fn membership_index(&self) -> Index {
        self.configs.last().expect("there is always a membership").0
    }

    /// The membership in force (the last one in the log, committed or not).
    pub fn membership(&self) -> &Membership {
        &self.configs.last().expect("there is always a membership").1
    }
    /// Each follower's match index, as the leader knows it (empty on other nodes).
    pub fn match_indexes(&self) -> BTreeMap<NodeId, Index> {
        self.progress
            .iter()
            .map(|(&id, p)| (id, p.match_index))
            .collect()
    }

    fn is_voter(&self) -> bool {
        self.membership().voters.contains(&self.cfg.id)
    }

    // ----- Inputs -------------------------------------------------------------------------

    /// One unit of time; `now` is the runtime's clock as it ticks.
    pub fn tick(&mut self, now: Micros) {
        self.observe_clock(now);
        self.ticks += 1;
        if self.quiesced {
            return; // nothing to send, nothing to time out: see `quiesced`
        }
        self.election_elapsed += 1;
        if self.role == Role::Leader {
            self.tick_leader();
        } else if self.election_elapsed >= self.election_timeout && self.is_voter() {
            self.start_election(false);
        }
    }

    /// Starts an election now instead of after a timeout (with a pre-vote first, so it
    /// disturbs no working leader): a new group's preferred leader calls it, so a new
    /// keyspace's leaders land where placement spread them.
    pub fn campaign(&mut self) {
        if self.role != Role::Leader && self.is_voter() {
            self.start_election(false);
        }
    }

    fn tick_leader(&mut self) {
        self.heartbeat_elapsed += 1;
        self.tick_snapshot_waits();
        if self.election_elapsed >= self.cfg.election_ticks_min {
            self.election_elapsed = 0;
            if self.cfg.check_quorum && !self.quorum_recently_active() {
                tracing::debug!(
                    id = self.cfg.id,
                    term = self.term,
                    "no quorum heard; stepping down"
                );
                self.become_follower(self.term, None);
                return;
            }
            for p in self.progress.values_mut() {
                p.recent_active = false;
            }
            if let Some((to, _)) = self.transferee.take() {
                tracing::debug!(id = self.cfg.id, to, "leader transfer timed out");
            }
        }
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks {
            self.heartbeat_elapsed = 0;
            if !std::mem::take(&mut self.read_lately) && self.may_quiesce() {
                self.quiesce();
            } else {
                self.broadcast_heartbeat();
                self.resend_stalled_snapshots();
            }
        }
    }

    // ----- Quiescence ---------------------------------------------------------------------
    //
    // A node hosting a thousand groups cannot afford a heartbeat per group per interval when
    // almost all of them are idle (CockroachDB's and TiKV's answer, simplified). A leader
    // whose group has nothing in flight tells its followers `Quiesce` instead of its next
    // heartbeat, and all of them stop counting ticks: the leader sends no heartbeats and does
    // not check its quorum, the followers run no election timer. Any other message wakes a
    // quiesced node (a proposal, a read or a transfer at the leader; an append, a heartbeat or
    // a vote request anywhere), as does the runtime when the node of the leader (or of a
    // voter, at the leader) goes silent: it watches its peers' liveness, one ping per peer
    // rather than one heartbeat per group. Quiescence costs nothing in safety: terms, votes
    // and commits are untouched, a woken follower waits a whole election timeout before it
    // campaigns (so a lease granted before still holds), and a quiesced leader earns no lease
    // (the clock keeps running out the one it had).

    /// Whether this node's group is quiesced: idle, sending no heartbeats and timing nothing.
    pub fn quiesced(&self) -> bool {
        self.quiesced
    }

    /// Wakes a quiesced node: the runtime calls it when the node it would hear from has gone
    /// silent. A leader heartbeats at once; a follower starts its election timer afresh.
    pub fn unquiesce(&mut self) {
        if !self.quiesced {
            return;
        }
        self.quiesced = false;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        if self.role == Role::Leader {
            // A fresh check-quorum period: only answers from now on count.
            for p in self.progress.values_mut() {
                p.recent_active = false;
            }
            self.broadcast_heartbeat();
        }
    }

    /// A leader may quiesce when nothing is in flight: every member holds every entry, all
    /// of it committed and applied here, the membership committed, every member heard from
    /// in this check-quorum period, and no read or transfer waiting.
    fn may_quiesce(&self) -> bool {
        let last = self.log.last_index();
        self.cfg.quiesce
            && self.role == Role::Leader
            && self.transferee.is_none()
            && self.reads.is_empty()
            && self.reads_unindexed.is_empty()
            && !self.round_due
            && self.log.committed() == last
            && self.log.to_apply().next().is_none()
            && self.log.unstable().next().is_none()
            && self.membership_index() <= self.log.committed()
            && self
                .progress
                .values()
                .all(|p| p.match_index == last && p.recent_active)
    }

    fn quiesce(&mut self) {
        tracing::trace!(id = self.cfg.id, term = self.term, "quiescing");
        self.quiesced = true;
        let commit = self.log.committed();
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for to in peers {
            self.send(to, Body::Quiesce { commit });
        }
    }

    /// A follower told to quiesce does so only if it holds and has committed everything the
    /// leader has (otherwise it stays awake, and times out if nothing more comes).
    fn handle_quiesce(&mut self, from: NodeId, commit: Index) {
        // The leader quiesces only once this follower matched its whole log in this term, and
        // within a term the leader's entries never change: the commit index applies to this
        // log as far as it reaches (a late Quiesce of an older term never gets here).
        self.follow(from);
        self.leader_commit = self.leader_commit.max(commit);
        self.log.commit_to(commit.min(self.log.last_index()));
        if self.cfg.quiesce
            && self.log.last_index() == commit
            && self.log.committed() == commit
            && self.role == Role::Follower
        {
            self.quiesced = true;
        }
    }

    fn quorum_recently_active(&self) -> bool {
        let m = self.membership();
        let active = m
            .voters
            .iter()
            .filter(|&&id| {
                id == self.cfg.id || self.progress.get(&id).is_some_and(|p| p.recent_active)
            })
            .count();
        active >= m.quorum()
    }

    /// Proposes a command. Returns the index it will have if it commits.
    pub fn propose(&mut self, data: Bytes) -> Result<Index, ProposeError> {
        self.check_can_propose()?;
        self.unquiesce();
        Ok(self.append_own(Payload::Command(data)))
    }

    /// Proposes a membership change (one voter at a time). Refused while an earlier change is
    /// uncommitted, and until this leader has committed an entry of its own term: otherwise
    /// a change from a deposed leader's term could commit after a conflicting one (the bug
    /// found in single-server changes, Ongaro's raft-dev post of 2015).
    pub fn propose_config(&mut self, next: Membership) -> Result<Index, ProposeError> {
        self.check_can_propose()?;
        self.unquiesce();
        let (last_config, current) = self.configs.last().expect("a membership");
        if *last_config > self.log.committed() {
            return Err(ProposeError::ConfigChangePending {
                index: *last_config,
            });
        }
        if !self.committed_in_term() {
            return Err(ProposeError::NotReady);
        }
        if !current.is_single_step_to(&next) || next.voters.is_empty() {
            return Err(ProposeError::NotSingleStep);
        }
        Ok(self.append_own(Payload::Config(next)))
    }

    fn check_can_propose(&self) -> Result<(), ProposeError> {
        if self.role != Role::Leader {
            return Err(ProposeError::NotLeader {
                leader: self.leader,
            });
        }
        if let Some((to, _)) = self.transferee {
            return Err(ProposeError::Transferring { to });
        }
        Ok(())
    }

    /// Asks for a linearizable read: a [`ReadState`] comes out of a later `ready` once a
    /// quorum has confirmed this node's leadership (ReadIndex, §6.4 of the dissertation). A
    /// follower forwards the request to the leader.
    pub fn read_index(&mut self, context: Bytes) {
        self.unquiesce();
        match self.role {
            Role::Leader => self.leader_read(context, None),
            _ => match self.leader {
                Some(leader) => self.send(leader, Body::ReadIndex { context }),
                None => self.read_states.push(ReadState {
                    context,
                    index: None,
                }),
            },
        }
    }

    fn leader_read(&mut self, context: Bytes, from: Option<NodeId>) {
        self.read_lately = true;
        if self.reads.len() + self.reads_unindexed.len() >= self.cfg.pending_reads_max {
            self.answer_read(context, from, None);
        } else if !self.committed_in_term() {
            // Until then the commit index may lag what earlier leaders committed.
            self.reads_unindexed.push((context, from));
        } else if self.membership().voters.len() == 1 && self.is_voter() {
            let index = self.log.committed();
            self.answer_read(context, from, Some(index));
        } else {
            self.reads.push_back(PendingRead {
                context,
                index: self.log.committed(),
                round: self.round + 1,
                from,
            });
            self.round_due = true;
        }
    }

    fn answer_read(&mut self, context: Bytes, from: Option<NodeId>, index: Option<Index>) {
        match from {
            None => self.read_states.push(ReadState { context, index }),
            Some(to) => self.send(
                to,
                Body::ReadIndexResponse {
                    context,
                    index: index.unwrap_or(0),
                },
            ),
        }
    }

    /// Asks for a read under the leader's lease: a leader that heard from a quorum less than
    /// a lease ago answers at once with its commit index, without a heartbeat round.
    /// Anywhere else, or without a lease, this is [`Raft::read_index`]. `now` must be read
    /// after the request arrived (a lease valid before a stall says nothing after it). Correct
    /// only while the nodes' clocks run at about the same rate (see [`Config::lease_ticks`]).
    pub fn read_lease(&mut self, context: Bytes, now: Micros) {
        self.observe_clock(now);
        if self.has_lease(now) {
            self.read_lately = true;
            let index = self.log.committed();
            self.read_states.push(ReadState {
                context,
                index: Some(index),
            });
        } else {
            self.read_index(context);
        }
    }

    /// Hands leadership to `to`: once its log is up to date, it is told to start an election
    /// at once. Proposals are refused meanwhile; gives up after an election timeout.
    pub fn transfer_leader(&mut self, to: NodeId) {
        if self.role != Role::Leader || to == self.cfg.id || !self.membership().voters.contains(&to)
        {
            return;
        }
        self.unquiesce();
        self.transferee = Some((to, 0));
        self.election_elapsed = 0;
        if self
            .progress
            .get(&to)
            .is_some_and(|p| p.match_index == self.log.last_index())
        {
            self.send_timeout_now(to);
        } else {
            self.send_append(to, true);
        }
    }

    fn send_timeout_now(&mut self, to: NodeId) {
        self.lease_void = true;
        self.send(to, Body::TimeoutNow);
    }

    /// The state machine has taken a snapshot covering every entry up to `index` (applied):
    /// forget those entries and keep the snapshot for followers that need it. Says whether
    /// the snapshot was taken: not when the log is compacted past `index` already (a snapshot
    /// built at the index the log was compacted to without one is taken: it is the one a
    /// follower waits for).
    pub fn compact(&mut self, index: Index, data: Bytes) -> bool {
        let at = self.log.snapshot().index;
        if index < at || (index == at && self.snapshot.is_some()) {
            return false;
        }
        self.compact_to(index);
        self.snapshot = Some(Snapshot {
            meta: self.log.snapshot().clone(),
            data,
        });
        self.send_waiting_snapshots();
        true
    }

    /// The state machine holds every entry up to `index` durably (applied, and synced where
    /// it keeps its state): forget the entries a follower will not need, without building a
    /// snapshot's bytes. Building one means writing out the whole state machine, which for a
    /// large partition under a steady write rate costs far more than the log it replaces;
    /// here it is built only when a follower needs one ([`Raft::wants_snapshot`]), as etcd
    /// and TiKV do. A leader keeps the entries a follower close behind still needs (up to
    /// `Config::compaction_catch_up_entries` and `compaction_catch_up_bytes` behind
    /// `index`), so that a follower one round late is sent entries, not a snapshot. Returns
    /// the index the log is compacted to now.
    pub fn compact_log(&mut self, index: Index) -> Index {
        let mut to = index.min(self.log.applied());
        if self.role == Role::Leader {
            let floor = self.catch_up_floor(to);
            let slowest = (self.progress.values())
                .map(|p| p.match_index)
                .filter(|&m| m >= floor)
                .min();
            to = to.min(slowest.unwrap_or(to));
        }
        if to > self.log.snapshot().index {
            self.compact_to(to);
            self.snapshot = None;
        }
        self.log.snapshot().index
    }

    /// The lowest match index of a follower whose missing entries up to `to` a leader keeps
    /// at a compaction: within `compaction_catch_up_entries` of `to` and
    /// `compaction_catch_up_bytes` of entries.
    fn catch_up_floor(&self, to: Index) -> Index {
        let (entries_max, bytes_max) = (
            self.cfg.compaction_catch_up_entries,
            self.cfg.compaction_catch_up_bytes,
        );
        let start = to
            .saturating_sub(entries_max)
            .max(self.log.snapshot().index);
        let missing = || {
            self.log
                .entries_from(start + 1)
                .take_while(|e| e.index <= to)
        };
        let mut bytes: usize = missing().map(Entry::size).sum();
        let mut floor = start;
        // Past the bytes bound, the floor moves up until what a follower at it misses fits.
        for e in missing() {
            if bytes <= bytes_max {
                break;
            }
            bytes -= e.size();
            floor = e.index;
        }
        floor
    }

    /// Drops the log's entries up to `index` and the memberships before it.
    fn compact_to(&mut self, index: Index) {
        let membership = self.membership_at(index);
        self.log.compact(index, membership);
        let first = self.configs.partition_point(|(i, _)| *i <= index);
        self.configs.drain(..first - 1);
    }

    /// Sends the fresh snapshot to the followers waiting for one.
    fn send_waiting_snapshots(&mut self) {
        if self.role == Role::Leader {
            // The fresh snapshot the waiting followers wanted.
            let waiting: Vec<NodeId> = (self.progress.iter())
                .filter(|(_, p)| p.awaits_snapshot())
                .map(|(&id, _)| id)
                .collect();
            for to in waiting {
                self.send_snapshot(to);
            }
        }
    }

    fn membership_at(&self, index: Index) -> Membership {
        let n = self.configs.partition_point(|(i, _)| *i <= index);
        self.configs[n - 1].1.clone()
    }

    /// A message from a peer.
    pub fn step(&mut self, m: Message) {
        assert!(self.handed_out.is_none(), "step between ready and advance");
        // A message of an older term is a deposed leader's or candidate's, late: no news
        // for this group (it is answered, if at all, without waking).
        let keeps_quiet = m.term < self.term
            || matches!(
                m.body,
                Body::Quiesce { .. } | Body::HeartbeatResponse { .. }
            );
        if self.quiesced && !keeps_quiet {
            self.unquiesce();
        }
        if m.term > self.term {
            if self.in_lease(&m.body) {
                return; // a leader we heard from recently still leads: ignore the disruption
            }
            match m.body {
                Body::PreVote { .. } => {}
                Body::PreVoteResponse { granted: true } => {}
                ref body if body.is_from_leader() => self.become_follower(m.term, Some(m.from)),
                _ => self.become_follower(m.term, None),
            }
        } else if m.term < self.term {
            match m.body {
                // A stale leader (cut off, then back) learns the new term from the answer and
                // steps down; without this, with check-quorum it could wait forever.
                Body::Append { .. } | Body::Heartbeat { .. } | Body::Quiesce { .. } => {
                    self.send(m.from, Body::HeartbeatResponse { round: 0 })
                }
                Body::PreVote { .. } => self.send(m.from, Body::PreVoteResponse { granted: false }),
                _ => {}
            }
            return;
        }
        let from = m.from;
        match m.body {
            Body::PreVote {
                last_index,
                last_term,
            } => self.handle_vote_request(from, m.term, last_index, last_term, true),
            Body::Vote {
                last_index,
                last_term,
                ..
            } => self.handle_vote_request(from, m.term, last_index, last_term, false),
            Body::PreVoteResponse { granted } => {
                if self.role == Role::PreCandidate {
                    self.count_vote(from, granted)
                }
            }
            Body::VoteResponse { granted } => {
                if self.role == Role::Candidate {
                    self.count_vote(from, granted)
                }
            }
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            } => {
                self.follow(from);
                self.leader_commit = self.leader_commit.max(commit);
                self.handle_append(from, prev_index, prev_term, entries, commit);
            }
            Body::Quiesce { commit } => self.handle_quiesce(from, commit),
            Body::Heartbeat { commit, round } => {
                self.follow(from);
                self.leader_commit = self.leader_commit.max(commit);
                self.log.commit_to(commit.min(self.log.last_index()));
                self.send(from, Body::HeartbeatResponse { round });
            }
            Body::InstallSnapshot {
                meta,
                offset,
                data,
                done,
            } => {
                self.follow(from);
                self.handle_snapshot_chunk(from, meta, offset, data, done);
            }
            Body::AppendResponse(result) => self.handle_append_response(from, result),
            Body::HeartbeatResponse { round } => self.handle_heartbeat_response(from, round),
            Body::SnapshotResponse { index, received } => {
                self.handle_snapshot_response(from, index, received)
            }
            Body::TimeoutNow => {
                if self.is_voter() && self.role != Role::Leader {
                    tracing::debug!(id = self.cfg.id, from, "told to start an election");
                    self.start_election(true);
                }
            }
            Body::ReadIndex { context } => {
                if self.role == Role::Leader {
                    self.leader_read(context, Some(from));
                } else {
                    self.send(from, Body::ReadIndexResponse { context, index: 0 });
                }
            }
            Body::ReadIndexResponse { context, index } => self.read_states.push(ReadState {
                context,
                index: (index != 0).then_some(index),
            }),
        }
    }

    /// Whether `body` is a (pre-)vote request that a node which heard from its leader less
    /// than an election timeout ago must ignore (the leader is probably fine; the candidate
    /// was probably cut off). This is what lets check-quorum and leader leases be safe.
    fn in_lease(&self, body: &Body) -> bool {
        let asks_vote = matches!(
            body,
            Body::PreVote { .. }
                | Body::Vote {
                    transfer: false,
                    ..
                }
        );
        // A node that has just started may have answered a leader's heartbeat before it went
        // down, and does not remember it: it waits an election timeout as if it had.
        let heard_recently =
            self.leader.is_some() || self.ticks < self.cfg.election_ticks_min.into();
        asks_vote
            && self.cfg.check_quorum
            && heard_recently
            && self.election_elapsed < self.cfg.election_ticks_min
    }

    fn follow(&mut self, leader: NodeId) {
        assert!(
            self.role != Role::Leader,
            "election safety: node {} and node {leader} both lead term {}",
            self.cfg.id,
            self.term
        );
        if self.role != Role::Follower || self.leader != Some(leader) {
            self.become_follower(self.term, Some(leader));
        }
        self.election_elapsed = 0;
    }

    // ----- Elections ----------------------------------------------------------------------

    fn start_election(&mut self, transfer: bool) {
        if self.cfg.pre_vote && !transfer {
            self.become_pre_candidate();
        } else {
            self.become_candidate(transfer);
        }
    }

    fn become_pre_candidate(&mut self) {
        self.role = Role::PreCandidate;
        self.leader = None;
        self.reset_election_timer();
        self.votes = BTreeMap::from([(self.cfg.id, true)]);
        tracing::debug!(id = self.cfg.id, term = self.term, "pre-campaigning");
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for to in self.other_voters() {
            self.msgs.push(Message {
                from: self.cfg.id,
                to,
                term: self.term + 1,
                body: Body::PreVote {
                    last_index,
                    last_term,
                },
            });
        }
        self.tally();
    }

    fn become_candidate(&mut self, transfer: bool) {
        self.quiesced = false;
        self.set_term(self.term + 1);
        self.vote = Some(self.cfg.id);
        self.role = Role::Candidate;
        self.leader = None;
        self.reset_election_timer();
        self.votes = BTreeMap::from([(self.cfg.id, true)]);
        tracing::debug!(id = self.cfg.id, term = self.term, "campaigning");
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        for to in self.other_voters() {
            self.send(
                to,
                Body::Vote {
                    last_index,
                    last_term,
                    transfer,
                },
            );
        }
        self.tally();
    }

    fn other_voters(&self) -> Vec<NodeId> {
        let id = self.cfg.id;
        self.membership()
            .voters
            .iter()
            .copied()
            .filter(|&v| v != id)
            .collect()
    }

    fn handle_vote_request(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: Index,
        last_term: Term,
        pre: bool,
    ) {
        // A real vote at most once per term; a pre-vote for any later term, since it binds
        // nothing. Both only for a log at least as up to date as ours (election restriction).
        let free = self.vote == Some(from) || (self.vote.is_none() && self.leader.is_none());
        let granted =
            (free || (pre && term > self.term)) && self.log.is_up_to_date(last_index, last_term);
        if pre {
            let term = if granted { term } else { self.term };
            self.msgs.push(Message {
                from: self.cfg.id,
                to: from,
                term,
                body: Body::PreVoteResponse { granted },
            });
            return;
        }
        if granted {
            assert!(
                self.vote.is_none() || self.vote == Some(from),
                "voting twice in term {}",
                self.term
            );
            self.vote = Some(from);
            self.election_elapsed = 0;
        }
        self.send(from, Body::VoteResponse { granted });
    }

    fn count_vote(&mut self, from: NodeId, granted: bool) {
        self.votes.entry(from).or_insert(granted);
        self.tally();
    }

    fn tally(&mut self) {
        let m = self.membership();
        let count = |want: bool| {
            m.voters
                .iter()
                .filter(|v| self.votes.get(v) == Some(&want))
                .count()
        };
        let (yes, no) = (count(true), count(false));
        if yes >= m.quorum() {
            match self.role {
                Role::PreCandidate => self.become_candidate(false),
                Role::Candidate => self.become_leader(),
                _ => {}
            }
        } else if no >= m.quorum() {
            self.become_follower(self.term, None);
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>) {
        self.quiesced = false;
        if term > self.term {
            self.set_term(term);
            self.vote = None;
        }
        if self.role == Role::Leader {
            self.fail_pending_reads();
        }
        self.role = Role::Follower;
        self.leader = leader;
        self.progress.clear();
        self.transferee = None;
        self.votes.clear();
        self.reset_election_timer();
    }

    fn become_leader(&mut self) {
        assert_eq!(self.role, Role::Candidate);
        tracing::debug!(id = self.cfg.id, term = self.term, "elected leader");
        self.role = Role::Leader;
        self.leader = Some(self.cfg.id);
        // A quorum has just voted for it: its knowledge is fresh as of now.
        self.quorum_heard_at = self.quorum_heard_at.max(Some(self.clock));
        self.heartbeat_elapsed = 0;
        self.election_elapsed = 0;
        let next = self.log.last_index() + 1;
        let id = self.cfg.id;
        self.progress = self
            .membership()
            .members()
            .filter(|&m| m != id)
            .map(|m| (m, Progress::new(next)))
            .collect();
        for p in self.progress.values_mut() {
            p.recent_active = true;
        }
        self.round_sent.clear();
        self.lease_until = 0;
        self.lease_void = false;
        // Committing an entry of the new term commits everything before it (figure 8).
        self.append_own(Payload::Noop);
    }

    fn set_term(&mut self, term: Term) {
        assert!(
            term >= self.term,
            "terms never go back: {} -> {term}",
            self.term
        );
        self.term = term;
    }

    fn reset_election_timer(&mut self) {
        self.election_elapsed = 0;
        let (min, max) = (self.cfg.election_ticks_min, self.cfg.election_ticks_max);
        self.election_timeout = self.rng.range(u64::from(min)..u64::from(max)) as u32;
    }

    // ----- Replication --------------------------------------------------------------------

    fn append_own(&mut self, payload: Payload) -> Index {
        let index = self.log.last_index() + 1;
        if let Payload::Config(m) = &payload {
            self.configs.push((index, m.clone()));
            self.sync_progress();
        }
        self.log.append([Entry {
            index,
            term: self.term,
            payload,
        }]);
        self.append_due = true;
        self.maybe_commit();
        index
    }

    /// Keeps one `Progress` per other member as the membership changes.
    fn sync_progress(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let members: BTreeSet<NodeId> = self.membership().members().collect();
        self.progress.retain(|id, _| members.contains(id));
        let next = self.log.last_index() + 1;
        for id in members {
            if id != self.cfg.id {
                self.progress
                    .entry(id)
                    .or_insert_with(|| Progress::new(next));
            }
        }
    }

    /// [`Raft::send_append`] to every other member.
    fn broadcast_append(&mut self, even_empty: bool) {
        let peers: Vec<NodeId> = self.progress.keys().copied().collect();
        for to in peers {
            self.send_append(to, even_empty);
        }
    }

    /// Sends `to` the entries it needs next, unless it is paused. An empty `Append` only if
    /// `even_empty` (a probe or a commit update). Falls back to a snapshot when the entries
    /// are compacted.
    fn send_append(&mut self, to: NodeId, even_empty: bool) {
        let Some(p) = self.progress.get(&to) else {
            return;
        };
        if p.is_paused(self.cfg.inflight_appends_max) {
            return;
        }
        let prev_index = p.next_index - 1;
        let Some(prev_term) = self.log.term(prev_index) else {
            self.start_snapshot(to);
            return;
        };
        let entries = self.log.slice(
            p.next_index,
            self.cfg.append_entries_max,
            self.cfg.append_bytes_max,
        );
        if entries.is_empty() && !even_empty {
            return;
        }
        let last = entries.last().map_or(prev_index, |e| e.index);
        self.progress.get_mut(&to).expect("checked").sent(last);
        let commit = self.log.committed();
        self.send(
            to,
            Body::Append {
                prev_index,
                prev_term,
                entries,
                commit,
            },
        );
    }

    fn handle_append(
        &mut self,
        from: NodeId,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    ) {
        let configs: Vec<(Index, Membership)> = entries
            .iter()
            .filter_map(|e| match &e.payload {
                Payload::Config(m) => Some((e.index, m.clone())),
                _ => None,
            })
            .collect();
        let result = match self.log.try_append(prev_index, prev_term, entries) {
            Ok(match_index) => {
                self.log.commit_to(commit.min(match_index));
                self.resync_configs(configs);
                AppendResult::Accepted { match_index }
            }
            Err(mismatch) => AppendResult::Rejected {
                prev_index,
                conflict_term: mismatch.conflict_term,
                first_index: mismatch.first_index,
            },
        };
        self.send(from, Body::AppendResponse(result));
    }

    /// After an append that may have truncated the log: drop configurations whose entries are
    /// gone, add the ones just appended.
    fn resync_configs(&mut self, appended: Vec<(Index, Membership)>) {
        let log = &self.log;
        let base = log.snapshot().index;
        self.configs.retain(|(i, m)| {
            *i <= base
                || log
                    .entry(*i)
                    .is_some_and(|e| e.payload == Payload::Config(m.clone()))
        });
        for (index, m) in appended {
            if index > self.configs.last().map_or(0, |(i, _)| *i)
                && log
                    .entry(index)
                    .is_some_and(|e| e.payload == Payload::Config(m.clone()))
            {
                self.configs.push((index, m));
            }
        }
    }

    fn handle_append_response(&mut self, from: NodeId, result: AppendResult) {
        if self.role != Role::Leader {
            return;
        }
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.recent_active = true;
        match result {
            AppendResult::Accepted { match_index } => {
                let snapshot = matches!(
                    p.state,
                    State::Snapshot { .. } | State::AwaitSnapshot { .. }
                );
                if snapshot && match_index >= p.match_index {
                    p.state = State::Probe { waiting: false };
                }
                let moved = p.acknowledge(match_index);
                if moved {
                    self.maybe_commit();
                }
                self.send_append(from, false);
                if let Some((to, _)) = self.transferee {
                    if to == from && match_index == self.log.last_index() {
                        self.send_timeout_now(to);
                    }
                }
            }
            AppendResult::Rejected {
                prev_index,
                conflict_term,
                first_index,
            } => {
                // A late answer to an append that later ones superseded changes nothing.
                let stale = prev_index <= p.match_index
                    || matches!(
                        p.state,
                        State::Snapshot { .. } | State::AwaitSnapshot { .. }
                    )
                    || matches!(p.state, State::Probe { .. }) && prev_index + 1 != p.next_index;
                if stale {
                    return;
                }
                // Fast backtracking: skip the follower's whole conflicting term, or to the end
                // of our own entries of that term if we have some.
                let next = conflict_term
                    .and_then(|t| self.log.last_index_of_term(t).map(|i| i + 1))
                    .unwrap_or(first_index)
                    .min(prev_index);
                p.back_off(next.max(1));
                self.send_append(from, true);
            }
        }
    }

    /// Advances the commit index to the highest index a quorum of voters holds durably, if
    /// that entry is of this leader's term (§5.4.2: counting replicas of an older term's
    /// entry is not enough; it commits when one of the current term does).
    fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let m = self.membership();
        let mut matched: Vec<Index> = m
            .voters
            .iter()
            .map(|&v| {
                if v == self.cfg.id {
                    self.log.stable()
                } else {
                    self.progress.get(&v).map_or(0, |p| p.match_index)
                }
            })
            .collect();
        if matched.is_empty() {
            return;
        }
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let candidate = matched[m.quorum() - 1];
        if candidate > self.log.committed() && self.log.term(candidate) == Some(self.term) {
            let was_unready = !self.committed_in_term();
            self.log.commit_to(candidate);
            if was_unready {
                self.index_waiting_reads();
            }
            self.after_commit();
            // Followers learn the new commit index with the next append or heartbeat.
        }
    }

    /// A removed leader steps down once its removal commits.
    fn after_commit(&mut self) {
        let (index, _) = self.configs.last().expect("a membership");
        if *index <= self.log.committed() && !self.is_voter() && self.role == Role::Leader {
            tracing::debug!(id = self.cfg.id, "removed from the group; stepping down");
            self.broadcast_append(true);
            self.become_follower(self.term, None);
        }
    }

    fn committed_in_term(&self) -> bool {
        self.log.term(self.log.committed()) == Some(self.term)
    }

    // ----- Heartbeats and reads -----------------------------------------------------------

    fn broadcast_heartbeat(&mut self) {
        self.round += 1;
        self.round_due = false;
        if self.round_sent.len() == ROUNDS_REMEMBERED_MAX {
            self.round_sent.pop_front();
        }
        // The clock's latest reading is at or before the real send: a lease dated from it
        // ends no later than one dated from the send.
        self.round_sent.push_back((self.round, self.clock));
        let peers: Vec<(NodeId, Index)> = self
            .progress
            .iter()
            .map(|(&id, p)| (id, p.match_index))
            .collect();
        for (to, matched) in peers {
            // Capped at what the follower is known to hold: its log may still diverge after.
            let commit = matched.min(self.log.committed());
            let round = self.round;
            self.send(to, Body::Heartbeat { commit, round });
        }
    }

    fn handle_heartbeat_response(&mut self, from: NodeId, round: u64) {
        if self.role != Role::Leader {
            return;
        }
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.recent_active = true;
        p.acked_round = p.acked_round.max(round);
        if p.match_index < self.log.last_index() {
            p.resume();
            self.send_append(from, true);
        }
        let confirmed = self.quorum_round();
        self.release_reads(confirmed);
        self.extend_lease(confirmed);
    }

    /// A quorum has answered round `confirmed`: none of them will vote for another candidate until an
    /// election timeout after they got it, which is after it was sent.
    fn extend_lease(&mut self, confirmed: u64) {
        while self.round_sent.front().is_some_and(|&(r, _)| r < confirmed) {
            self.round_sent.pop_front();
        }
        if let Some(&(round, sent)) = self.round_sent.front() {
            if round == confirmed {
                self.quorum_heard_at = self.quorum_heard_at.max(Some(sent));
                let until = sent + self.cfg.lease_us();
                self.lease_until = self.lease_until.max(until);
            }
        }
    }

    /// A new reading of the runtime's clock. One that went back, or jumped forward by more
    /// than an election timeout (the runtime stalled), voids the lease and the rounds it could
    /// be dated from: a lease holds again only after a heartbeat sent from now on is answered.
    fn observe_clock(&mut self, now: Micros) {
        // A gap past a lease voids it anyway (it has expired); the threshold is the election
        // timeout so that it means "the runtime stalled" even with leases off.
        let stall_us = u64::from(self.cfg.election_ticks_min) * self.cfg.tick_us;
        let jumped = now < self.clock || now - self.clock > stall_us.max(self.cfg.lease_us());
        if jumped && self.clock != 0 {
            if self.role == Role::Leader {
                tracing::debug!(
                    id = self.cfg.id,
                    from = self.clock,
                    to = now,
                    "the clock jumped; the lease is void until a quorum answers again"
                );
            }
            self.lease_until = 0;
            self.round_sent.clear();
        }
        self.clock = now;
    }

    /// Whether this node may serve a read from its own state at `now` (the runtime's clock,
    /// read after the request arrived), as the leader holding a lease (see
    /// [`Raft::read_lease`]).
    pub fn has_lease(&self, now: Micros) -> bool {
        self.role == Role::Leader
            && self.cfg.check_quorum
            && self.cfg.lease_ticks > 0
            && !self.lease_void
            && self.transferee.is_none()
            && self.committed_in_term()
            && now >= self.clock
            && now < self.lease_until
    }

    /// The highest round a quorum of voters (this leader included) has acknowledged.
    fn quorum_round(&self) -> u64 {
        let m = self.membership();
        let mut rounds: Vec<u64> = m
            .voters
            .iter()
            .map(|&v| {
                if v == self.cfg.id {
                    self.round
                } else {
                    self.progress.get(&v).map_or(0, |p| p.acked_round)
                }
            })
            .collect();
        rounds.sort_unstable_by(|a, b| b.cmp(a));
        rounds.get(m.quorum() - 1).copied().unwrap_or(0)
    }

    /// Answers the reads waiting for heartbeat rounds up to `confirmed`.
    fn release_reads(&mut self, confirmed: u64) {
        while self.reads.front().is_some_and(|r| r.round <= confirmed) {
            let r = self.reads.pop_front().expect("checked");
            self.answer_read(r.context, r.from, Some(r.index));
        }
    }

    fn index_waiting_reads(&mut self) {
        for (context, from) in std::mem::take(&mut self.reads_unindexed) {
            self.leader_read(context, from);
        }
    }

    fn fail_pending_reads(&mut self) {
        let reads: Vec<(Bytes, Option<NodeId>)> = self
            .reads
            .drain(..)
            .map(|r| (r.context, r.from))
            .chain(self.reads_unindexed.drain(..))
            .collect();
        for (context, from) in reads {
            self.answer_read(context, from, None);
        }
        self.round_due = false;
    }

    // ----- Snapshots ----------------------------------------------------------------------

    /// Follower `to` needs a snapshot: the latest, or a fresh one if that is stale or none
    /// is built.
    fn start_snapshot(&mut self, to: NodeId) {
        if self.snapshot_stale() {
            let p = self.progress.get_mut(&to).expect("a member");
            if !p.awaits_snapshot() {
                tracing::debug!(
                    id = self.cfg.id,
                    to,
                    index = self.log.snapshot().index,
                    built = self.snapshot.is_some(),
                    "follower needs a snapshot; the latest is stale or not built: waiting for a fresh one"
                );
                p.await_snapshot();
            }
            return;
        }
        self.send_snapshot(to);
    }

    /// Starts sending follower `to` the latest snapshot (one is built).
    fn send_snapshot(&mut self, to: NodeId) {
        let snapshot = self.snapshot.clone().expect("a snapshot is built");
        let p = self.progress.get_mut(&to).expect("a member");
        tracing::debug!(
            id = self.cfg.id,
            to,
            index = snapshot.meta.index,
            "follower needs a snapshot"
        );
        p.send_snapshot(snapshot);
        self.send_snapshot_chunks(to);
    }

    /// Sends the chunks of the snapshot being sent to `to` (the one the transfer started
    /// with, even if the log was compacted again since) that the window allows: from where
    /// the last one ended, while fewer than `snapshot_chunks_inflight_max` chunks' bytes are
    /// unacknowledged. The follower takes chunks only in order; a lost one stalls the
    /// transfer until `resend_stalled_snapshots` goes back to what it acknowledged.
    fn send_snapshot_chunks(&mut self, to: NodeId) {
        let chunk_max = self.cfg.snapshot_chunk_bytes_max as u64;
        let window = chunk_max * self.cfg.snapshot_chunks_inflight_max as u64;
        loop {
            let Some(Progress {
                state:
                    State::Snapshot {
                        snapshot,
                        acked,
                        sent,
                        idle_ticks,
                    },
                ..
            }) = self.progress.get_mut(&to)
            else {
                return;
            };
            let total = snapshot.data.len() as u64;
            let start = sent.unwrap_or(0).min(total);
            // The first chunk always goes (an empty snapshot is one empty chunk).
            if sent.is_some() && (start >= total || start >= *acked + window) {
                return;
            }
            let end = (start + chunk_max).min(total);
            *sent = Some(end);
            *idle_ticks = 0;
            let body = Body::InstallSnapshot {
                meta: snapshot.meta.clone(),
                offset: start,
                data: snapshot.data.slice(start as usize..end as usize),
                done: end == total,
            };
            self.send(to, body);
        }
    }

    /// Hands the core the bytes of a snapshot it installed from the leader (which the runtime
    /// gathered from `Ready::snapshot_chunks`), for it to send on to others if it leads one
    /// day. Must come before the `advance` of the `Ready` that carried the snapshot.
    pub fn supply_snapshot_data(&mut self, index: Index, data: Bytes) {
        if let Some(snapshot) = self.snapshot.as_mut().filter(|s| s.meta.index == index) {
            assert!(
                snapshot.data.is_empty() || snapshot.data.len() == data.len(),
                "the same snapshot, from elsewhere"
            );
            snapshot.data = data;
        }
    }

    /// Whether a log holding `applied` applied entries should be compacted, when the runtime
    /// compacts every `every` entries or once the log holds `bytes_max` bytes in memory
    /// ([`RaftLog::bytes`]: a log of large values must not grow to gigabytes before its
    /// entry count says so): yes once either is passed, but while this leader sends a
    /// follower a snapshot, not before [`COMPACTION_HOLD_FACTOR`] times as much (the follower
    /// needs the entries after its snapshot once it has installed it; the bound keeps the log
    /// from growing without end if the transfer never finishes).
    pub fn compaction_due(&self, applied: Index, every: u64, bytes_max: usize) -> bool {
        let past = applied.saturating_sub(self.log.snapshot().index);
        let hold = if self.sending_snapshot() {
            COMPACTION_HOLD_FACTOR
        } else {
            1
        };
        // Only the applied entries count: compacting cannot drop the others.
        let applied_bytes = self.applied_bytes(applied);
        past > 0
            && (past >= every.saturating_mul(hold)
                || applied_bytes >= bytes_max.saturating_mul(hold as usize))
    }

    /// Whether this leader waits for a fresh snapshot to send a follower: the runtime should
    /// build one now (and hand it over with [`Raft::compact`]), due for compaction or not,
    /// and whether the log was compacted without one or not.
    pub fn wants_snapshot(&self) -> bool {
        self.role == Role::Leader && self.progress.values().any(Progress::awaits_snapshot)
    }

    /// Whether the latest snapshot is followed by so long a log that a follower needing a
    /// snapshot is better sent a fresh one (see `Config::snapshot_stale_entries`), or none is
    /// built at all.
    /// Only applied entries count, as for compaction: a fresh snapshot can cover no others (a
    /// leader with a long tail it cannot commit must not ask for snapshot after snapshot).
    fn snapshot_stale(&self) -> bool {
        if self.snapshot.is_none() {
            return true;
        }
        let applied = self.log.applied();
        let after = applied.saturating_sub(self.log.snapshot().index);
        let (entries, bytes) = (
            self.cfg.snapshot_stale_entries,
            self.cfg.snapshot_stale_bytes,
        );
        (entries > 0 && after > entries) || (bytes > 0 && self.applied_bytes(applied) > bytes)
    }

    /// Bytes of the log's entries up to `applied`.
    fn applied_bytes(&self, applied: Index) -> usize {
        let unapplied: usize = self.log.entries_from(applied + 1).map(Entry::size).sum();
        self.log.bytes().saturating_sub(unapplied)
    }

    /// Counts a tick for every follower waiting for a fresh snapshot; those that have waited
    /// `snapshot_wait_ticks_max` are sent the latest after all, if one is built (if none is,
    /// they wait for the runtime's).
    fn tick_snapshot_waits(&mut self) {
        if self.snapshot.is_none() {
            return;
        }
        let max = self.cfg.snapshot_wait_ticks_max;
        let mut done = Vec::new();
        for (&id, p) in self.progress.iter_mut() {
            if let State::AwaitSnapshot { ticks } = &mut p.state {
                *ticks += 1;
                if *ticks >= max {
                    done.push(id);
                }
            }
        }
        for to in done {
            tracing::debug!(
                id = self.cfg.id,
                to,
                "no fresh snapshot came: sending the latest"
            );
            self.send_snapshot(to);
        }
    }

    /// Whether this leader is sending a snapshot to a follower. The runtime holds back
    /// compaction meanwhile (within a bound), so that the entries after the snapshot are
    /// still in the log when the follower has installed it.
    pub fn sending_snapshot(&self) -> bool {
        self.role == Role::Leader
            && self
                .progress
                .values()
                .any(|p| matches!(p.state, State::Snapshot { .. }))
    }

    fn resend_stalled_snapshots(&mut self) {
        let stalled: Vec<NodeId> = self
            .progress
            .iter_mut()
            .filter_map(|(&id, p)| match &mut p.state {
                State::Snapshot {
                    acked,
                    sent,
                    idle_ticks,
                    ..
                } => {
                    *idle_ticks += self.cfg.heartbeat_ticks;
                    let stalled = *idle_ticks >= self.cfg.election_ticks_min;
                    if stalled {
                        // A chunk was lost: go back to what the follower holds.
                        *sent = (*acked > 0).then_some(*acked);
                    }
                    stalled.then_some(id)
                }
                _ => None,
            })
            .collect();
        for to in stalled {
            self.send_snapshot_chunks(to);
        }
    }

    fn handle_snapshot_response(&mut self, from: NodeId, index: Index, received: u64) {
        if self.role != Role::Leader {
            return;
        }
        let Some(p) = self.progress.get_mut(&from) else {
            return;
        };
        p.recent_active = true;
        match &mut p.state {
            State::Snapshot {
                snapshot,
                acked,
                sent,
                ..
            } if snapshot.meta.index == index => {
                if received < *acked {
                    // It holds less than it said (it restarted, or this answer is late):
                    // go on from what it holds now.
                    *sent = (received > 0).then_some(received);
                }
                *acked = received;
                self.send_snapshot_chunks(from);
            }
            _ => {}
        }
    }

    fn handle_snapshot_chunk(
        &mut self,
        from: NodeId,
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    ) {
        let index = meta.index;
        if self.holds_snapshot(index, from) {
            return;
        }
        if self.installed.is_some() || self.received.is_some() {
            // A snapshot just received is not yet installed by the runtime, whose file for it
            // the pieces of another would overwrite: hold nothing of this one for now (the
            // leader goes back to the start of it when it sees no progress).
            self.send(from, Body::SnapshotResponse { index, received: 0 });
            return;
        }
        if self.clock < self.pieces_ignored_until {
            return; // the runtime lost a piece just now: see `snapshot_lost`
        }
        if offset == 0 {
            self.incoming = Some((meta.clone(), 0));
        }
        let received = match &mut self.incoming {
            Some((m, held)) if *m == meta && *held == offset => {
                *held += data.len() as u64;
                self.incoming_chunks.push(SnapshotChunk {
                    meta: meta.clone(),
                    offset,
                    data: data.clone(),
                    last: done,
                });
                *held
            }
            Some((m, held)) if *m == meta => *held,
            _ => 0, // we hold nothing of it (restarted mid-install): start over
        };
        if !(done && received == offset + data.len() as u64) {
            self.send(from, Body::SnapshotResponse { index, received });
            return;
        }
        // The last piece goes to the runtime with the others; the snapshot is installed when
        // the runtime holds them all (`snapshot_received`), not before: a runtime that could
        // not keep them must be able to drop the transfer, which an install cannot undo.
        let (meta, _) = self.incoming.take().expect("a snapshot in progress");
        self.received = Some((meta, from));
    }

    /// Whether this node has committed all that the snapshot at `index` covers (a duplicate,
    /// or it caught up by log meanwhile); if so, it tells the leader `from` how far it is.
    fn holds_snapshot(&mut self, index: Index, from: NodeId) -> bool {
        let match_index = self.log.committed();
        if index > match_index {
            return false;
        }
        self.send(
            from,
            Body::AppendResponse(AppendResult::Accepted { match_index }),
        );
        true
    }

    /// The runtime holds every piece of the snapshot at `index` durably (the last one came in
    /// `Ready::snapshot_chunks`): it is installed, and comes back in `Ready::snapshot`.
    pub fn snapshot_received(&mut self, index: Index) {
        let Some((meta, from)) = self.received.take_if(|(m, _)| m.index == index) else {
            return;
        };
        if self.holds_snapshot(index, from) {
            return;
        }
        tracing::debug!(id = self.cfg.id, index, "installing snapshot");
        self.log.install(meta.clone());
        self.configs = vec![(meta.index, meta.membership.clone())];
        // The bytes are the runtime's (the pieces it was handed); it supplies them before
        // `advance` (`supply_snapshot_data`), so that this node can send the snapshot on.
        let snapshot = Snapshot {
            meta,
            data: Bytes::new(),
        };
        self.snapshot = Some(snapshot.clone());
        self.installed = Some(snapshot);
        self.send(
            from,
            Body::AppendResponse(AppendResult::Accepted { match_index: index }),
        );
    }

    /// The runtime could not keep a piece of the snapshot at `index` (a full disk): the
    /// transfer is dropped, as if this node had restarted, and pieces are ignored for an
    /// election timeout, after which the leader starts it over (this node keeps serving its
    /// log meanwhile; only the snapshot waits).
    pub fn snapshot_lost(&mut self, index: Index) {
        self.incoming.take_if(|(m, _)| m.index == index);
        self.received.take_if(|(m, _)| m.index == index);
        self.incoming_chunks.retain(|c| c.meta.index != index);
        let timeout_us = u64::from(self.cfg.election_ticks_min) * self.cfg.tick_us;
        self.pieces_ignored_until = self.clock + timeout_us;
    }

    // ----- Output -------------------------------------------------------------------------

    fn send(&mut self, to: NodeId, body: Body) {
        self.msgs.push(Message {
            from: self.cfg.id,
            to,
            term: self.term,
            body,
        });
    }

    /// Whether `ready` would return anything.
    pub fn has_ready(&self) -> bool {
        !self.msgs.is_empty()
            || self.round_due
            || self.append_due
            || self.hard_state() != self.persisted_hard_state
            || self.installed.is_some()
            || !self.incoming_chunks.is_empty()
            || self.log.unstable().next().is_some()
            || self.log.to_apply().next().is_some()
            || !self.read_states.is_empty()
    }

    /// Everything the runtime must do now; see the module documentation. Must be followed by
    /// [`Raft::advance`] before the next input.
    pub fn ready(&mut self) -> Ready {
        assert!(
            self.handed_out.is_none(),
            "ready called twice without advance"
        );
        if self.round_due && self.role == Role::Leader {
            self.broadcast_heartbeat();
        }
        if std::mem::take(&mut self.append_due) && self.role == Role::Leader {
            self.broadcast_append(false);
        }
        let hard_state = self.hard_state();
        let entries: Vec<Entry> = self.log.unstable().cloned().collect();
        let committed: Vec<Entry> = self.log.to_apply().cloned().collect();
        self.handed_out = Some(HandedOut {
            stable: entries.last().map(|e| (e.index, e.term)),
            applied: committed.last().map(|e| e.index),
        });
        let ready = Ready {
            hard_state: (hard_state != self.persisted_hard_state).then_some(hard_state),
            snapshot_chunks: std::mem::take(&mut self.incoming_chunks),
            snapshot: self.installed.take(),
            entries,
            messages: std::mem::take(&mut self.msgs),
            committed,
            read_states: std::mem::take(&mut self.read_states),
        };
        self.persisted_hard_state = hard_state;
        ready
    }

    /// The runtime has done what the last [`Raft::ready`] asked.
    pub fn advance(&mut self) {
        let handed = self.handed_out.take().expect("advance without ready");
        if let Some((index, term)) = handed.stable {
            self.log.stable_to(index, term);
            // The leader counts itself only for entries it has persisted.
            self.maybe_commit();
        }
        if let Some(index) = handed.applied {
            self.log.applied_to(index);
        }
    }
}
