//! A deterministic simulator for the Raft core: a whole group and an unreliable network in
//! one thread, driven by one seed (FoundationDB- and VOPR-style simulation testing).
//!
//! Each simulated tick, every running node ticks, due messages are delivered, clients propose
//! commands and ask for reads, and every node's `Ready` is handled as the real runtime would:
//! persisted to its simulated disk, messages put on the network, committed entries applied.
//! The network drops, delays (and so reorders), duplicates and partitions messages; nodes
//! crash (losing everything not persisted) and restart from their disk. After every tick
//! the safety invariants are checked:
//!
//! - election safety: at most one leader per term, over the whole run;
//! - log matching: two logs that hold an entry with the same index and term agree on every
//!   entry up to it;
//! - leader completeness: a leader's log holds every committed entry;
//! - state machine safety: every node applies the same entries in the same order (each node's
//!   state is a hash chained over what it applied, compared index by index);
//! - linearizable reads: a read served at a ReadIndex sees every write acknowledged before
//!   the read was asked.
//!
//! At the end the network heals, crashed nodes restart, and the group must elect a leader,
//! commit a new entry and bring every node to the same applied index (liveness).
//!
//! A violated invariant panics with the seed; [`SimOptions`] with that seed replays the run.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::core::{Config, ProposeError, Raft, Restored, Role};
use super::message::{
    AppendResult, Body, ConfigChange, Entry, HardState, Index, Message, NodeId, Payload,
    SnapshotMeta, Term,
};
use super::rng::Rng;

/// Every knob of one simulated run. Probabilities are per tick (per node where it says so).
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub seed: u64,
    pub nodes: usize,
    /// Ticks with faults, before the final healing phase.
    pub ticks: u64,
    pub drop: f64,
    pub duplicate: f64,
    /// Each message is delivered 1 to `delay_ticks_max` ticks after it is sent.
    pub delay_ticks_max: u64,
    /// Chance that the network is re-partitioned (or healed) this tick.
    pub partition: f64,
    /// Chance, per running node, that it crashes this tick.
    pub crash: f64,
    /// A crashed node restarts after 1 to this many ticks.
    pub restart_ticks_max: u64,
    /// Chance that a client proposes a command this tick.
    pub propose: f64,
    /// Chance that a client asks a random node for a linearizable read this tick.
    pub read: f64,
    /// Compact a node's log once it has applied this many entries past its snapshot.
    pub compact_after: Option<u64>,
    /// Pre-vote and check-quorum on every node.
    pub pre_vote: bool,
    /// Nodes 1 to `members` found the group as voters; the rest start empty, outside it.
    pub members: usize,
    /// Chance that the leader proposes a membership change this tick: add a learner,
    /// promote a learner to voter, or remove a member (the leader too), keeping 3 to 5 voters.
    pub reconfigure: f64,
    /// Chance, per running node, that its runtime stalls this tick (SIGSTOP, a long fsync):
    /// for 1 to `stall_ticks_max` ticks it neither ticks nor handles messages, while time
    /// goes on for everyone else. Messages to it wait, as in its socket buffers.
    pub stall: f64,
    pub stall_ticks_max: u64,
    /// Idle groups quiesce, and the simulator plays the runtime's part (as `node::runner`
    /// does): every live node pings the others each tick (pings are lost like messages), a
    /// quiesced node wakes when the node it depends on (its leader's, or at a leader any
    /// voter's) has been silent for an election timeout, or when a link from a member lost
    /// a message (a drop, a partition, a restart: the transport's numbered links show it).
    pub quiesce: bool,
    /// Chance, per piece of a snapshot a follower receives, that its runtime cannot keep it
    /// (a full disk): the runtime drops the transfer (`Raft::snapshot_lost`).
    pub lose_piece: f64,
}

impl SimOptions {
    /// A fault-free run of `nodes` nodes.
    pub fn reliable(seed: u64, nodes: usize) -> SimOptions {
        SimOptions {
            seed,
            nodes,
            ticks: 400,
            drop: 0.0,
            duplicate: 0.0,
            delay_ticks_max: 1,
            partition: 0.0,
            crash: 0.0,
            restart_ticks_max: 30,
            propose: 0.3,
            read: 0.1,
            compact_after: None,
            pre_vote: true,
            members: nodes,
            reconfigure: 0.0,
            stall: 0.0,
            stall_ticks_max: 40,
            quiesce: false,
            lose_piece: 0.0,
        }
    }

    /// The named scenarios that CI runs with many seeds (after the 6.5840 test matrix).
    pub const SCENARIOS: &'static [&'static str] = &[
        "reliable",
        "lossy",
        "partitions",
        "crashes",
        "figure8_unreliable",
        "churn",
        "snapshots",
        "no_pre_vote",
        "membership",
        "stalls",
        "quiescence",
    ];

    /// The options of a named scenario.
    pub fn scenario(name: &str, seed: u64) -> Option<SimOptions> {
        let base = SimOptions::reliable(seed, 5);
        Some(match name {
            "reliable" => SimOptions::reliable(seed, 3),
            "lossy" => SimOptions {
                drop: 0.1,
                duplicate: 0.05,
                delay_ticks_max: 5,
                ..base
            },
            "partitions" => SimOptions {
                partition: 0.02,
                delay_ticks_max: 3,
                ..base
            },
            // Leaders crash with entries of their term half replicated: figure 8.
            "crashes" => SimOptions {
                crash: 0.01,
                delay_ticks_max: 3,
                ..base
            },
            "figure8_unreliable" => SimOptions {
                crash: 0.01,
                drop: 0.1,
                duplicate: 0.05,
                delay_ticks_max: 10,
                partition: 0.01,
                ..base
            },
            "churn" => SimOptions {
                crash: 0.005,
                drop: 0.05,
                duplicate: 0.02,
                delay_ticks_max: 4,
                partition: 0.01,
                propose: 0.6,
                read: 0.3,
                ..base
            },
            "snapshots" => SimOptions {
                crash: 0.005,
                drop: 0.05,
                delay_ticks_max: 4,
                partition: 0.01,
                propose: 0.6,
                compact_after: Some(8),
                lose_piece: 0.05,
                ..base
            },
            "no_pre_vote" => SimOptions {
                crash: 0.005,
                drop: 0.05,
                delay_ticks_max: 4,
                partition: 0.01,
                pre_vote: false,
                ..base
            },
            // Three of six nodes found the group; the leader keeps adding, promoting and
            // removing members (itself too) while nodes crash and links fail.
            "membership" => SimOptions {
                nodes: 6,
                members: 3,
                reconfigure: 0.05,
                crash: 0.003,
                drop: 0.05,
                delay_ticks_max: 4,
                partition: 0.005,
                compact_after: Some(12),
                lose_piece: 0.02,
                ticks: 600,
                ..base
            },
            // Leaders (and followers) freeze for up to two election timeouts and wake to
            // serve reads at once: a lease must not outlive the stall.
            "stalls" => SimOptions {
                nodes: 3,
                members: 3,
                stall: 0.01,
                drop: 0.02,
                delay_ticks_max: 2,
                propose: 0.5,
                read: 0.5,
                ..base
            },
            // Idle most of the time, so groups quiesce, and then every fault at once: a
            // quiesced group must wake for each and never serve a stale read.
            "quiescence" => SimOptions {
                quiesce: true,
                crash: 0.001,
                drop: 0.02,
                duplicate: 0.02,
                delay_ticks_max: 3,
                partition: 0.005,
                stall: 0.001,
                propose: 0.06,
                read: 0.08,
                ticks: 1000,
                ..base
            },
            _ => return None,
        })
    }

    /// The command that replays this run (printed when a run fails).
    pub fn replay_command(&self, scenario: &str) -> String {
        format!(
            "RAFT_SIM_SCENARIO={scenario} RAFT_SIM_SEED={} cargo test -p kvstore --test raft_sim \
             replay -- --nocapture",
            self.seed
        )
    }
}

/// What a node has on disk.
#[derive(Debug, Clone, Default)]
struct Disk {
    hard_state: HardState,
    snapshot: SnapshotMeta,
    /// The snapshot's bytes; `None` when the log was compacted without building them.
    snapshot_data: Option<Bytes>,
    entries: Vec<Entry>,
    /// The state machine as last synced (at a compaction or a snapshot install), as a real
    /// node's engine is: at or past the snapshot's index. A restart starts from it.
    machine: Machine,
}

/// The state machine: a hash chained over every applied entry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Machine {
    applied: Index,
    hash: u64,
}

impl Machine {
    fn apply(&mut self, e: &Entry) {
        assert_eq!(
            e.index,
            self.applied + 1,
            "entries are applied in order, without gaps"
        );
        let mut h = self.hash ^ e.index.wrapping_mul(0x100_0000_01B3) ^ e.term.rotate_left(17);
        if let Payload::Command(data) = &e.payload {
            for &b in data.iter() {
                h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3);
            }
        }
        self.hash = h.rotate_left(5);
        self.applied = e.index;
    }

    /// A snapshot's bytes: the machine, padded so that it takes several chunks to send.
    fn encode(&self) -> Bytes {
        let mut v = Vec::with_capacity(64);
        v.extend_from_slice(&self.applied.to_le_bytes());
        v.extend_from_slice(&self.hash.to_le_bytes());
        v.resize(64, 0xAB);
        Bytes::from(v)
    }

    fn decode(data: &[u8]) -> Machine {
        assert_eq!(data.len(), 64, "snapshot bytes arrive whole");
        Machine {
            applied: u64::from_le_bytes(data[..8].try_into().expect("8 bytes")),
            hash: u64::from_le_bytes(data[8..16].try_into().expect("8 bytes")),
        }
    }
}

struct Node {
    raft: Option<Raft>,
    disk: Disk,
    machine: Machine,
    restart_at: u64,
    /// The node's runtime is stalled until this tick.
    stalled_until: u64,
    clock: Clock,
    /// Reads asked here: context -> the highest acknowledged index when they were asked.
    reads: BTreeMap<u64, Index>,
    /// Reads with a read index, waiting for the machine to reach it.
    ready_reads: Vec<(u64, Index)>,
    /// Commands proposed here, waiting to be applied: (index, term) -> proposal number.
    proposed: BTreeMap<(Index, Term), u64>,
    /// The pieces of a snapshot from the leader, gathered (the runtime's part; lost in a
    /// crash, like an unsynced file).
    incoming: Vec<u8>,
}

/// A node's monotonic clock: its own origin, and a rate up to 5% off true time (within the
/// drift margin the lease leaves). Time goes on while a node is stalled or down.
#[derive(Debug, Clone, Copy)]
struct Clock {
    origin: u64,
    rate_permille: u64,
}

impl Clock {
    fn new(rng: &mut Rng) -> Clock {
        Clock {
            origin: 1 + rng.range(0..1 << 40),
            rate_permille: 950 + rng.range(0..101),
        }
    }

    /// The reading at simulated tick `now`.
    fn read(&self, now: u64) -> u64 {
        let tick_us = Config::new(1).tick_us;
        self.origin + now * tick_us * self.rate_permille / 1000
    }
}

/// Counts of what happened, for tests that check progress was made.
#[derive(Debug, Clone, Default)]
pub struct SimStats {
    pub leaders_elected: u64,
    pub proposals: u64,
    pub acknowledged: u64,
    pub reads_served: u64,
    pub reads_failed: u64,
    /// Reads a leader answered from its lease, without a heartbeat round.
    pub lease_reads: u64,
    pub crashes: u64,
    /// Stalls of a node's runtime.
    pub stalls: u64,
    pub snapshots_installed: u64,
    /// Pieces of snapshots the runtime could not keep (`SimOptions::lose_piece`).
    pub snapshot_pieces_lost: u64,
    /// Membership changes that committed.
    pub config_changes: u64,
    pub messages_sent: u64,
    pub append_rejections: u64,
    /// The highest term reached.
    pub max_term: Term,
    /// Ticks that nodes spent quiesced (summed over the nodes).
    pub quiesced_ticks: u64,
    /// Times the runtime woke a quiesced node: its leader or a voter silent, a link's gap.
    pub quiesce_wakes: u64,
}

impl SimStats {
    /// Adds another run's counts (the maximum, for `max_term`).
    pub fn add(&mut self, other: &SimStats) {
        self.leaders_elected += other.leaders_elected;
        self.proposals += other.proposals;
        self.acknowledged += other.acknowledged;
        self.reads_served += other.reads_served;
        self.reads_failed += other.reads_failed;
        self.lease_reads += other.lease_reads;
        self.crashes += other.crashes;
        self.stalls += other.stalls;
        self.snapshots_installed += other.snapshots_installed;
        self.snapshot_pieces_lost += other.snapshot_pieces_lost;
        self.config_changes += other.config_changes;
        self.messages_sent += other.messages_sent;
        self.append_rejections += other.append_rejections;
        self.max_term = self.max_term.max(other.max_term);
        self.quiesced_ticks += other.quiesced_ticks;
        self.quiesce_wakes += other.quiesce_wakes;
    }
}

pub struct Sim {
    opts: SimOptions,
    rng: Rng,
    /// Whether a compaction builds a snapshot: a stream of its own, so that it does not shift
    /// the network's and the clients' choices of a seed.
    compaction_rng: Rng,
    now: u64,
    nodes: Vec<Node>,
    /// (deliver at, sequence, message)
    network: Vec<(u64, u64, Message)>,
    /// With `quiesce`: when (tick) node `to` last heard node `from`, by `(to, from)` index.
    heard: BTreeMap<(usize, usize), u64>,
    /// With `quiesce`: links `(from, to)` that lost a message since `to` last heard `from`.
    lost: std::collections::BTreeSet<(usize, usize)>,
    seq: u64,
    /// Partition group of each node; messages cross only within a group.
    groups: Vec<u8>,
    /// The leader of every term seen (election safety).
    leaders: BTreeMap<Term, NodeId>,
    /// The state machine after each index, as the first node to apply it saw it.
    chain: BTreeMap<Index, u64>,
    /// Committed entries' terms (leader completeness).
    committed: BTreeMap<Index, Term>,
    /// The highest commit index each term's leader was seen with.
    leader_commits: BTreeMap<Term, Index>,
    /// The highest index acknowledged to a client.
    acknowledged: Index,
    next_proposal: u64,
    next_read: u64,
    pub stats: SimStats,
}

impl Sim {
    pub fn new(opts: SimOptions) -> Sim {
        assert!(opts.nodes >= 1 && opts.nodes <= 9);
        assert!(opts.members >= 1 && opts.members <= opts.nodes);
        let ids: Vec<NodeId> = (1..=opts.nodes as NodeId).collect();
        let founders: Vec<NodeId> = (1..=opts.members as NodeId).collect();
        let mut rng = Rng::new(opts.seed);
        let nodes = ids
            .iter()
            .map(|&id| {
                let restored = if founders.contains(&id) {
                    Restored::bootstrap(founders.clone())
                } else {
                    Restored::default()
                };
                let disk = Disk {
                    hard_state: restored.hard_state,
                    entries: restored.entries.clone(),
                    ..Disk::default()
                };
                Node {
                    raft: Some(Raft::new(node_config(id, &opts), restored, opts.seed)),
                    disk,
                    machine: Machine::default(),
                    restart_at: 0,
                    stalled_until: 0,
                    clock: Clock::new(&mut rng),
                    reads: BTreeMap::new(),
                    ready_reads: Vec::new(),
                    proposed: BTreeMap::new(),
                    incoming: Vec::new(),
                }
            })
            .collect();
        Sim {
            rng,
            compaction_rng: Rng::new(opts.seed ^ 0xC0C0_A5A5),
            groups: vec![0; opts.nodes],
            opts,
            now: 0,
            nodes,
            network: Vec::new(),
            heard: BTreeMap::new(),
            lost: Default::default(),
            seq: 0,
            leaders: BTreeMap::new(),
            chain: BTreeMap::new(),
            committed: BTreeMap::new(),
            leader_commits: BTreeMap::new(),
            acknowledged: 0,
            next_proposal: 0,
            next_read: 0,
            stats: SimStats::default(),
        }
    }

    /// Runs the faulty phase, then heals everything and checks the group recovers.
    pub fn run(&mut self) -> SimStats {
        for _ in 0..self.opts.ticks {
            self.step_faults();
            self.tick();
        }
        self.heal_and_converge();
        self.stats.clone()
    }

    fn step_faults(&mut self) {
        let o = self.opts.clone();
        if self.rng.chance(o.partition) {
            if self.rng.chance(0.4) {
                self.groups.iter_mut().for_each(|g| *g = 0);
            } else {
                for g in self.groups.iter_mut() {
                    *g = self.rng.range(0..2) as u8;
                }
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].raft.is_some() && self.rng.chance(o.crash) {
                self.crash(i);
            } else if self.nodes[i].raft.is_none() && self.now >= self.nodes[i].restart_at {
                self.restart(i);
            }
        }
        for i in 0..self.nodes.len() {
            if self.is_live(i) && self.rng.chance(o.stall) {
                let ticks = 1 + self.rng.range(0..o.stall_ticks_max.max(1));
                self.nodes[i].stalled_until = self.now + ticks;
                self.stats.stalls += 1;
            }
        }
        if self.rng.chance(o.propose) {
            self.propose_somewhere();
        }
        if self.rng.chance(o.reconfigure) {
            self.reconfigure();
        }
        if self.rng.chance(o.read) {
            let i = self.rng.range(0..self.nodes.len() as u64) as usize;
            self.read_at(i);
        }
    }

    /// Whether node `i` runs and is not stalled.
    fn is_live(&self, i: usize) -> bool {
        self.nodes[i].raft.is_some() && self.now >= self.nodes[i].stalled_until
    }

    /// Crashes node `i`: everything not on its disk is gone.
    pub fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.raft.take().is_some() {
            self.stats.crashes += 1;
            n.restart_at = self.now + 1 + self.rng.range(0..self.opts.restart_ticks_max.max(1));
            n.stalled_until = 0;
            n.reads.clear();
            n.ready_reads.clear();
            n.proposed.clear();
            n.incoming.clear();
        }
    }

    /// Restarts node `i` from its disk.
    pub fn restart(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.raft.is_some() {
            return;
        }
        let restored = Restored {
            hard_state: n.disk.hard_state,
            snapshot: n.disk.snapshot.clone(),
            snapshot_data: n.disk.snapshot_data.clone(),
            entries: n.disk.entries.clone(),
        };
        // The state machine restarts from what it last synced, at or past the snapshot; the
        // log after it is applied again on top (entries it holds are skipped).
        assert!(
            n.disk.machine.applied >= n.disk.snapshot.index,
            "seed {}: a node's state machine is behind its log's snapshot",
            self.opts.seed
        );
        n.machine = n.disk.machine;
        let id = i as NodeId + 1;
        let seed = self.opts.seed ^ self.now.wrapping_mul(0x2545_F491);
        n.raft = Some(Raft::new(node_config(id, &self.opts), restored, seed));
        // Its links are new connections both ways: what was in flight may be lost.
        for other in 0..self.nodes.len() {
            self.lost.insert((i, other));
            self.lost.insert((other, i));
        }
    }

    /// The runtime's part in quiescence (see [`SimOptions::quiesce`]), once a tick.
    fn liveness(&mut self) {
        let n = self.nodes.len();
        let live: Vec<usize> = (0..n).filter(|&i| self.is_live(i)).collect();
        for &to in &live {
            for &from in live.iter().filter(|&&i| i != to) {
                if self.groups[to] != self.groups[from] || self.rng.chance(self.opts.drop) {
                    continue;
                }
                self.heard.insert((to, from), self.now);
                if self.lost.remove(&(from, to)) {
                    self.wake(to);
                }
            }
        }
        let silent_after = u64::from(node_config(1, &self.opts).election_ticks_min);
        for i in live {
            let Some(raft) = self.nodes[i].raft.as_ref().filter(|r| r.quiesced()) else {
                continue;
            };
            let (heard, now) = (&self.heard, self.now);
            let silent = |node: NodeId| {
                let at = heard.get(&(i, (node - 1) as usize)).copied();
                node != i as NodeId + 1 && at.is_none_or(|at| now - at >= silent_after)
            };
            let wake = if raft.role() == Role::Leader {
                raft.membership().voters.iter().any(|&v| silent(v))
            } else {
                raft.leader().is_none_or(silent)
            };
            self.stats.quiesced_ticks += 1;
            if wake {
                self.wake(i);
            }
        }
    }

    fn wake(&mut self, i: usize) {
        if let Some(raft) = self.nodes[i].raft.as_mut().filter(|r| r.quiesced()) {
            raft.unquiesce();
            self.stats.quiesce_wakes += 1;
        }
    }

    /// Separates the nodes into groups (by index into `groups`, one entry per node).
    pub fn partition(&mut self, groups: &[u8]) {
        self.groups.copy_from_slice(groups);
    }

    pub fn heal(&mut self) {
        self.groups.iter_mut().for_each(|g| *g = 0);
    }

    /// One simulated tick: time passes, messages arrive, readies are handled, invariants are
    /// checked.
    pub fn tick(&mut self) {
        self.now += 1;
        let now = self.now;
        for i in 0..self.nodes.len() {
            if self.nodes[i].raft.is_some() && self.nodes[i].stalled_until == now {
                // It wakes: a client's read that waited in its socket comes first.
                self.read_at(i);
            }
        }
        for n in self.nodes.iter_mut() {
            let clock = n.clock.read(now);
            if let Some(r) = n.raft.as_mut().filter(|_| now >= n.stalled_until) {
                r.tick(clock);
            }
        }
        if self.opts.quiesce {
            self.liveness();
        }
        self.deliver();
        self.handle_readies();
        self.check_invariants();
    }

    fn deliver(&mut self) {
        let now = self.now;
        let mut due: Vec<(u64, u64, Message)> = Vec::new();
        let stalled: Vec<bool> = self.nodes.iter().map(|n| now < n.stalled_until).collect();
        self.network.retain(|m| {
            let to = (m.2.to - 1) as usize;
            if m.0 <= now && !stalled.get(to).copied().unwrap_or(false) {
                due.push(m.clone());
                false
            } else {
                true
            }
        });
        due.sort_by_key(|(at, seq, _)| (*at, *seq));
        for (_, _, m) in due {
            let to = (m.to - 1) as usize;
            let from = (m.from - 1) as usize;
            if to >= self.nodes.len()
                || self.groups[to] != self.groups[from]
                || self.nodes[to].raft.is_none()
            {
                self.lost.insert((from, to));
                continue;
            }
            self.heard.insert((to, from), self.now);
            if self.lost.remove(&(from, to)) {
                self.wake(to);
            }
            if let Body::AppendResponse(AppendResult::Rejected { .. }) = m.body {
                self.stats.append_rejections += 1;
            }
            if let Some(r) = self.nodes[to].raft.as_mut() {
                r.step(m);
            }
            // Handle the answer before the next message, as a runtime would between batches.
            self.handle_ready(to);
        }
    }

    fn handle_readies(&mut self) {
        for i in 0..self.nodes.len() {
            self.handle_ready(i);
        }
    }

    fn handle_ready(&mut self, i: usize) {
        if self.now < self.nodes[i].stalled_until {
            return; // a stalled runtime does nothing; it catches up when it wakes
        }
        loop {
            let Some(raft) = self.nodes[i].raft.as_mut() else {
                return;
            };
            if !raft.has_ready() {
                return;
            }
            let mut ready = raft.ready();
            let n = &mut self.nodes[i];
            // 0. Gather the pieces of a snapshot from the leader; the last one completes it,
            // and the snapshot is installed once the core hears so (after `advance`). A piece
            // the disk cannot take drops the transfer.
            let mut snapshot_in = None;
            for c in &ready.snapshot_chunks {
                if self.rng.chance(self.opts.lose_piece) {
                    n.incoming.clear();
                    snapshot_in = Some((c.meta.index, false));
                    self.stats.snapshot_pieces_lost += 1;
                    break;
                }
                if c.offset == 0 {
                    n.incoming.clear();
                }
                assert_eq!(n.incoming.len() as u64, c.offset, "pieces come in order");
                n.incoming.extend_from_slice(&c.data);
                if c.last {
                    snapshot_in = Some((c.meta.index, true));
                }
            }
            if let Some(snap) = &mut ready.snapshot {
                snap.data = Bytes::from(std::mem::take(&mut n.incoming));
                let raft = n.raft.as_mut().expect("running");
                raft.supply_snapshot_data(snap.meta.index, snap.data.clone());
            }
            // 1. Persist.
            if let Some(hs) = ready.hard_state {
                n.disk.hard_state = hs;
            }
            if let Some(snap) = &ready.snapshot {
                // The entries after the snapshot stay only if the log agrees with it there.
                let (index, term) = (snap.meta.index, snap.meta.term);
                let keep = n
                    .disk
                    .entries
                    .iter()
                    .any(|e| e.index == index && e.term == term);
                n.disk.entries.retain(|e| keep && e.index > index);
                n.disk.snapshot = snap.meta.clone();
                n.disk.snapshot_data = Some(snap.data.clone());
                n.disk.machine = Machine::decode(&snap.data);
            }
            if let Some(first) = ready.entries.first() {
                n.disk.entries.retain(|e| e.index < first.index);
                n.disk.entries.extend(ready.entries.iter().cloned());
            }
            // 2. Send.
            for m in ready.messages {
                self.send(m);
            }
            // 3. Apply.
            let n = &mut self.nodes[i];
            if let Some(snap) = &ready.snapshot {
                n.machine = Machine::decode(&snap.data);
                self.stats.snapshots_installed += 1;
                check_chain(&mut self.chain, n.machine, self.opts.seed);
            }
            for e in &ready.committed {
                if e.index <= n.machine.applied {
                    continue; // a restarted state machine holds it already
                }
                n.machine.apply(e);
                check_chain(&mut self.chain, n.machine, self.opts.seed);
                if let std::collections::btree_map::Entry::Vacant(v) = self.committed.entry(e.index)
                {
                    v.insert(e.term);
                    // Index 1 is the founding membership, not a change.
                    if matches!(e.payload, Payload::Config(_)) && e.index > 1 {
                        self.stats.config_changes += 1;
                    }
                }
                if n.proposed.remove(&(e.index, e.term)).is_some() {
                    self.stats.acknowledged += 1;
                    self.acknowledged = self.acknowledged.max(e.index);
                }
            }
            for rs in ready.read_states {
                let context = u64::from_le_bytes(rs.context[..].try_into().expect("8 bytes"));
                match rs.index {
                    Some(index) => n.ready_reads.push((context, index)),
                    None => {
                        n.reads.remove(&context);
                        self.stats.reads_failed += 1;
                    }
                }
            }
            let applied = n.machine.applied;
            let seed = self.opts.seed;
            let mut served = 0;
            n.ready_reads.retain(|&(context, index)| {
                if index > applied {
                    return true;
                }
                // Linearizability of reads: every write acknowledged before the read was asked
                // must be visible at the index the read is served at.
                if let Some(required) = n.reads.remove(&context) {
                    assert!(
                        index >= required,
                        "seed {seed}: read {context} served at index {index} misses a write \
                         acknowledged at {required}"
                    );
                    served += 1;
                }
                false
            });
            self.stats.reads_served += served;
            let raft = n.raft.as_mut().expect("running");
            raft.advance();
            match snapshot_in {
                Some((index, true)) => raft.snapshot_received(index),
                Some((index, false)) => raft.snapshot_lost(index),
                None => {}
            }
            // 4. Compact.
            // Half the compactions build no snapshot (`Raft::compact_log`), as the node's do
            // unless a follower waits for one; the state machine is synced either way.
            if let Some(after) = self.opts.compact_after {
                let lazy = self.compaction_rng.chance(0.5);
                let n = &mut self.nodes[i];
                let raft = n.raft.as_mut().expect("running");
                let due = raft.compaction_due(n.machine.applied, after, usize::MAX);
                let wanted = raft.wants_snapshot();
                let before = raft.log().snapshot().index;
                if wanted || (due && !lazy) {
                    let data = n.machine.encode();
                    if raft.compact(n.machine.applied, data.clone()) {
                        n.disk.snapshot_data = Some(data);
                        n.disk.machine = n.machine;
                    }
                } else if due {
                    n.disk.machine = n.machine;
                    if raft.compact_log(n.machine.applied) > before {
                        n.disk.snapshot_data = None;
                    }
                }
                if raft.log().snapshot().index > before {
                    n.disk.snapshot = raft.log().snapshot().clone();
                    let index = n.disk.snapshot.index;
                    n.disk.entries.retain(|e| e.index > index);
                }
            }
        }
    }

    fn send(&mut self, m: Message) {
        self.stats.messages_sent += 1;
        if self.rng.chance(self.opts.drop) {
            self.lost
                .insert(((m.from - 1) as usize, (m.to - 1) as usize));
            return;
        }
        let copies = if self.rng.chance(self.opts.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = self.now + 1 + self.rng.range(0..self.opts.delay_ticks_max.max(1));
            self.seq += 1;
            self.network.push((at, self.seq, m.clone()));
        }
    }

    /// A client proposes a command to a random running node (only a leader accepts it).
    pub fn propose_somewhere(&mut self) {
        let i = self.rng.range(0..self.nodes.len() as u64) as usize;
        let i = self.leader_index().unwrap_or(i);
        self.next_proposal += 1;
        let data = Bytes::from(format!("cmd-{}", self.next_proposal));
        if !self.is_live(i) {
            return;
        }
        let n = &mut self.nodes[i];
        if let Some(raft) = n.raft.as_mut() {
            if let Ok(index) = raft.propose(data) {
                self.stats.proposals += 1;
                n.proposed.insert((index, raft.term()), self.next_proposal);
            }
        }
        self.handle_ready(i);
    }

    /// The leader proposes one membership change about a random node (refused, harmlessly,
    /// while another change is pending).
    pub fn reconfigure(&mut self) {
        let Some(i) = self.leader_index() else {
            return;
        };
        let id = self.rng.range(1..self.nodes.len() as u64 + 1) as NodeId;
        let raft = self.nodes[i].raft.as_mut().expect("running");
        let current = raft.membership().clone();
        let change = if current.voters.contains(&id) {
            if current.voters.len() <= 3 {
                return;
            }
            ConfigChange::Remove(id)
        } else if current.learners.contains(&id) {
            if current.voters.len() >= 5 {
                ConfigChange::Remove(id)
            } else {
                ConfigChange::AddVoter(id)
            }
        } else {
            ConfigChange::AddLearner(id)
        };
        let _ = raft.propose_config(current.apply(change));
        self.handle_ready(i);
    }

    /// The leader (if any) proposes `change` to its membership.
    pub fn change_membership(&mut self, change: ConfigChange) -> Result<Index, ProposeError> {
        let i = self
            .leader_index()
            .ok_or(ProposeError::NotLeader { leader: None })?;
        let raft = self.nodes[i].raft.as_mut().expect("running");
        let next = raft.membership().apply(change);
        let result = raft.propose_config(next);
        self.handle_ready(i);
        result
    }

    /// A client asks node `i` for a linearizable read: half the time under the leader's
    /// lease (`read_lease`, which is `read_index` where there is no lease), half the time
    /// with `read_index`. Both must see every write acknowledged before the read.
    pub fn read_at(&mut self, i: usize) {
        if !self.is_live(i) {
            return; // the request waits in a socket; it is asked when the node wakes
        }
        self.next_read += 1;
        let context = self.next_read;
        let required = self.acknowledged;
        let lease = self.rng.chance(0.5);
        let n = &mut self.nodes[i];
        if let Some(raft) = n.raft.as_mut() {
            n.reads.insert(context, required);
            let context = Bytes::copy_from_slice(&context.to_le_bytes());
            if lease {
                let clock = n.clock.read(self.now);
                self.stats.lease_reads += u64::from(raft.has_lease(clock));
                raft.read_lease(context, clock);
            } else {
                raft.read_index(context);
            }
        }
        self.handle_ready(i);
    }

    /// The running node that is leader of the highest term, if any.
    pub fn leader_index(&self) -> Option<usize> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.raft.as_ref().map(|r| (i, r)))
            .filter(|(_, r)| r.role() == Role::Leader)
            .max_by_key(|(_, r)| r.term())
            .map(|(i, _)| i)
    }

    pub fn raft(&self, i: usize) -> Option<&Raft> {
        self.nodes[i].raft.as_ref()
    }

    pub fn applied(&self, i: usize) -> Index {
        self.nodes[i].machine.applied
    }

    pub fn now(&self) -> u64 {
        self.now
    }

    fn check_invariants(&mut self) {
        let seed = self.opts.seed;
        let running: Vec<&Raft> = self.nodes.iter().filter_map(|n| n.raft.as_ref()).collect();
        for r in &running {
            self.stats.max_term = self.stats.max_term.max(r.term());
            if r.role() == Role::Leader {
                let previous = *self.leaders.entry(r.term()).or_insert(r.id());
                assert_eq!(
                    previous,
                    r.id(),
                    "seed {seed}: election safety: nodes {previous} and {} both led term {}",
                    r.id(),
                    r.term()
                );
                // Leader completeness: what leaders of earlier terms committed is here.
                let log = r.log();
                let earlier = self.leader_commits.range(..r.term()).map(|(_, &c)| c).max();
                let bound = earlier.unwrap_or(0).max(log.first_index() - 1);
                for (&index, &term) in self.committed.range(log.first_index()..bound + 1) {
                    assert_eq!(
                        log.term(index),
                        Some(term),
                        "seed {seed}: leader completeness: leader {} of term {} lacks committed \
                         entry {index} (term {term})",
                        r.id(),
                        r.term()
                    );
                }
                let commit = self.leader_commits.entry(r.term()).or_insert(0);
                *commit = (*commit).max(log.committed());
            }
        }
        self.stats.leaders_elected = self.leaders.len() as u64;
        // Log matching, pairwise, over the entries both still hold.
        for (a, ra) in running.iter().enumerate() {
            for rb in running.iter().skip(a + 1) {
                check_log_matching(ra.log(), rb.log(), seed);
            }
        }
    }

    /// Heals the network, restarts every node, stops faults, and checks that the group elects
    /// a leader, commits a new entry and that every node applies everything.
    pub fn heal_and_converge(&mut self) {
        self.heal();
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        let reliable = SimOptions {
            drop: 0.0,
            duplicate: 0.0,
            partition: 0.0,
            crash: 0.0,
            ..self.opts.clone()
        };
        self.opts = reliable;
        let seed = self.opts.seed;
        let deadline = self.now + 2000;
        let mut proposed_in: Option<Term> = None;
        while self.now < deadline {
            self.tick();
            let Some(i) = self.leader_index() else {
                continue;
            };
            // A write in the leader's term: the group accepts writes again.
            let raft = self.nodes[i].raft.as_mut().expect("running");
            if proposed_in != Some(raft.term())
                && raft.propose(Bytes::from_static(b"final")).is_ok()
            {
                proposed_in = Some(raft.term());
                self.handle_ready(i);
                continue;
            }
            // Converged: the leader committed an entry of its term, holds nothing uncommitted,
            // and every member (voter or learner) has applied exactly what it committed.
            let raft = self.nodes[i].raft.as_ref().expect("running");
            let log = raft.log();
            let commit = log.committed();
            let members = raft.membership();
            let done = proposed_in == Some(raft.term())
                && log.term(commit) == Some(raft.term())
                && log.last_index() == commit
                && members
                    .members()
                    .all(|id| self.nodes[id as usize - 1].machine.applied == commit);
            if done {
                return;
            }
        }
        let states: Vec<String> = self
            .nodes
            .iter()
            .map(|n| match &n.raft {
                Some(r) => format!(
                    "node {} {:?} term {} last {} commit {} applied {}",
                    r.id(),
                    r.role(),
                    r.term(),
                    r.log().last_index(),
                    r.log().committed(),
                    n.machine.applied
                ),
                None => "down".to_string(),
            })
            .collect();
        panic!(
            "seed {seed}: liveness: the healed group did not converge within 2000 ticks: \
             {states:#?}"
        );
    }
}

fn node_config(id: NodeId, opts: &SimOptions) -> Config {
    Config {
        pre_vote: opts.pre_vote,
        check_quorum: opts.pre_vote,
        quiesce: opts.quiesce,
        compaction_catch_up_entries: opts.compact_after.map_or(1_000, |after| after / 4),
        append_entries_max: 16,
        inflight_appends_max: 8,
        snapshot_chunk_bytes_max: 24,
        // Half the way to the next compaction, a snapshot is stale: sometimes a follower gets
        // the latest, sometimes a fresh one.
        snapshot_stale_entries: opts.compact_after.map_or(0, |after| after / 2),
        ..Config::new(id)
    }
}

fn check_chain(chain: &mut BTreeMap<Index, u64>, m: Machine, seed: u64) {
    let first = *chain.entry(m.applied).or_insert(m.hash);
    assert_eq!(
        first, m.hash,
        "seed {seed}: state machine safety: two nodes differ after applying index {}",
        m.applied
    );
}

fn check_log_matching(a: &super::log::RaftLog, b: &super::log::RaftLog, seed: u64) {
    let lo = a.first_index().max(b.first_index());
    let hi = a.last_index().min(b.last_index());
    // Find the highest common index with equal terms; everything from `lo` to it must agree.
    let Some(top) = (lo..=hi).rev().find(|&i| a.term(i) == b.term(i)) else {
        return;
    };
    for index in lo..=top {
        let (ea, eb) = (a.entry(index), b.entry(index));
        assert_eq!(
            ea, eb,
            "seed {seed}: log matching: logs agree at index {top} but differ at {index}"
        );
    }
}
