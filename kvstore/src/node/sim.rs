//! Whole nodes in the seeded simulator: the real Raft thread ([`Runner`]), the real state
//! machine and engine, driven turn by turn in one thread, with its log, its network and its
//! clock replaced through the traits of [`super::io`]:
//!
//! - the log is in memory and split in two, what was synced and what was not: a crash loses
//!   the unsynced part, as a power failure would;
//! - the network delivers each message after 1 to 3 steps, drops some, and partitions;
//! - each node's clock runs at its own rate (up to 5% apart), and time goes on while a node
//!   is stalled (it takes no turns: SIGSTOP, a long fsync) or down.
//!
//! Clients write a unique key per request to random nodes. At the end the network heals and
//! every node restarts; every node must then hold the same state, and every acknowledged
//! write. Everything but the state machine's files comes from one seed; a failing seed prints
//! the command that replays it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::io::{LogStore, MonoClock, Network};
use super::wal::GroupLog;
use super::{
    assemble, command, Consistency, Event, NodeConfig, NodeError, Parts, ProposalResult, Staleness,
    DEFAULT_GROUP,
};
use crate::db::Store;
use crate::raft::{Entry, GroupId, HardState, Message, Micros, NodeId, Rng, SnapshotMeta};
use crate::storage;

/// One step of simulated time.
const STEP_US: Micros = 2_000;
/// The nodes' tick (elections after 10 to 20 ticks).
const TICK: Duration = Duration::from_millis(10);

/// What a node's log holds durably, by group.
#[derive(Debug, Default, Clone)]
struct Disk {
    groups: BTreeMap<GroupId, GroupLog>,
}

enum Pending {
    Append(GroupId, Vec<Entry>),
    HardState(GroupId, HardState),
    Snapshot(GroupId, SnapshotMeta, bool),
    Removed(GroupId),
}

/// A log in memory: appends wait in `pending` until `sync` writes them to the disk.
struct MemLog {
    disk: Arc<Mutex<Disk>>,
    pending: Vec<Pending>,
    syncs: u64,
}

impl LogStore for MemLog {
    fn append(&mut self, group: GroupId, entries: &[Entry]) {
        self.pending.push(Pending::Append(group, entries.to_vec()));
    }
    fn set_hard_state(&mut self, group: GroupId, state: HardState) {
        self.pending.push(Pending::HardState(group, state));
    }
    fn set_snapshot(&mut self, group: GroupId, meta: &SnapshotMeta, discard_later: bool) {
        self.pending
            .push(Pending::Snapshot(group, meta.clone(), discard_later));
    }
    fn remove_group(&mut self, group: GroupId) {
        self.pending.push(Pending::Removed(group));
    }
    fn sync(&mut self) -> storage::Result<()> {
        let mut disk = self.disk.lock().unwrap();
        for op in self.pending.drain(..) {
            match op {
                Pending::Append(group, entries) => {
                    let log = disk.groups.entry(group).or_default();
                    if let Some(first) = entries.first() {
                        log.entries.retain(|e| e.index < first.index);
                    }
                    log.entries.extend(entries);
                }
                Pending::HardState(group, state) => {
                    disk.groups.entry(group).or_default().hard_state = state;
                }
                Pending::Snapshot(group, meta, discard_later) => {
                    let log = disk.groups.entry(group).or_default();
                    log.entries
                        .retain(|e| !discard_later && e.index > meta.index);
                    log.snapshot = meta;
                }
                Pending::Removed(group) => {
                    disk.groups.remove(&group);
                }
            }
        }
        self.syncs += 1;
        Ok(())
    }
    fn purge(&mut self) -> storage::Result<usize> {
        self.sync().map(|()| 0)
    }
    fn syncs(&self) -> u64 {
        self.syncs
    }
    fn segments(&self) -> usize {
        1
    }
}

/// Messages a node sent, and the pings of its Raft thread, waiting for the simulator to
/// carry them.
#[derive(Default)]
struct Outbox {
    sent: Mutex<Vec<(GroupId, Message)>>,
    pings: Mutex<u64>,
}

impl Network for Outbox {
    fn send(&self, group: GroupId, m: Message) {
        self.sent.lock().unwrap().push((group, m));
    }
    fn set_peer(&self, _id: NodeId, _address: String) {}
    fn ping_all(&self) {
        *self.pings.lock().unwrap() += 1;
    }
}

/// A node's clock: its own origin and rate, moved by the simulator.
struct SimClock(AtomicU64);

impl MonoClock for SimClock {
    fn now_us(&self) -> Micros {
        self.0.load(Ordering::SeqCst)
    }
}

struct Running {
    parts: Parts,
    outbox: Arc<Outbox>,
    /// Events to hand to its next turn.
    queued: Vec<Event>,
    /// The snapshot worker's jobs (builds, and installs of snapshots from a leader), each
    /// done at the step given: a slow worker, while the Raft thread goes on.
    jobs: Vec<(u64, GroupId, super::runner::Job)>,
}

/// What the simulated network carries.
#[derive(Debug, Clone)]
enum Carried {
    Message(GroupId, Message),
    /// A ping of the sender's Raft thread (see `Transport::ping_all`).
    Ping,
}

/// A disk that fills up during every other snapshot a node receives from a leader: the
/// second piece of it cannot be written. The node must drop the transfer and go on serving,
/// and the leader start it over (the next attempt finds room).
#[derive(Debug, Default)]
struct FullForSnapshots {
    /// (transfers begun, pieces written of the current one)
    progress: Mutex<(u64, u64)>,
    refused: AtomicU64,
}

impl storage::fault::FaultInjector for FullForSnapshots {
    fn before(&self, op: storage::fault::IoOp, path: &std::path::Path) -> std::io::Result<()> {
        use storage::fault::IoOp;
        if path.file_name() != super::state::incoming_snapshot_path(path).file_name() {
            return Ok(());
        }
        let mut progress = self.progress.lock().unwrap();
        let (transfers, pieces) = &mut *progress;
        match op {
            IoOp::Create => (*transfers, *pieces) = (*transfers + 1, 0),
            IoOp::Append => *pieces += 1,
            _ => {}
        }
        if op == IoOp::Append && *transfers % 2 == 1 && *pieces == 2 {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(std::io::Error::other("injected: no space left on device"));
        }
        Ok(())
    }
}

struct SimNode {
    id: NodeId,
    dir: crate::test_dir::TestDir,
    disk_faults: Arc<FullForSnapshots>,
    disk: Arc<Mutex<Disk>>,
    clock: Arc<SimClock>,
    rate_permille: u64,
    running: Option<Running>,
    restart_at: u64,
    stalled_until: u64,
}

/// What a read is answered with.
type ReadAnswer = oneshot::Receiver<Result<Staleness, NodeError>>;

/// The knobs of one run.
#[derive(Debug, Clone)]
struct Options {
    seed: u64,
    nodes: u64,
    steps: u64,
    drop: f64,
    crash: f64,
    stall: f64,
    partition: f64,
    write: f64,
    /// Chance per step of a read under the leader's lease at a random node.
    read: f64,
}

/// What happened, for the test to check the run did real work.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    crashes: u64,
    stalls: u64,
    lease_reads_checked: u64,
    snapshots_taken: u64,
    /// Pieces of snapshots from a leader that a node's disk refused.
    snapshot_pieces_refused: u64,
    /// Snapshots from a leader that the (slow) worker installed while the Raft thread went
    /// on.
    installs: u64,
    /// Writes of unique keys proposed (the ones whose acknowledgement is checked).
    proposed: u64,
    /// Followers that caught up under load.
    caught_up: u64,
    /// Steps at which some node's group was quiesced (in the idle phases).
    quiesced_steps: u64,
}

struct Sim {
    opts: Options,
    rng: Rng,
    step: u64,
    nodes: Vec<SimNode>,
    /// (deliver at step, from, to, what: a group's message or a ping)
    network: Vec<(u64, NodeId, NodeId, Carried)>,
    /// Links (from, to) that lost something since the receiver last heard the sender: a
    /// dropped or blocked message, or a new connection (a restart). The transport's numbered
    /// links report it as a gap with the next frame that arrives.
    lost: std::collections::BTreeSet<(NodeId, NodeId)>,
    /// Partition side of each node (messages cross only within a side).
    side: Vec<u8>,
    next_key: u64,
    writes: Vec<(u64, oneshot::Receiver<ProposalResult>)>,
    acknowledged: Vec<u64>,
    /// Lease reads in flight: the node, how many writes were acknowledged when it was asked,
    /// and its answer.
    reads: Vec<(usize, usize, ReadAnswer)>,
    stats: Stats,
    runtime: tokio::runtime::Runtime,
}

/// A write to one of three shared keys with a TTL of a few milliseconds, or only if the key
/// is absent (so whether it applies depends on whether the last one expired): replicas that
/// judged expiry differently would end up with different states.
fn expiring_put(key: u64, ttl_ms: u64, if_absent: bool, now_ms: u64) -> Bytes {
    let request = crate::wire::Request::Put {
        keyspace: "default".into(),
        key: Bytes::from(format!("t{}", key % 3)),
        value: Bytes::from(key.to_string()),
        ttl_ms: (!if_absent).then_some(ttl_ms),
        condition: if if_absent {
            crate::wire::Condition::IfAbsent
        } else {
            crate::wire::Condition::None
        },
    };
    command::Command::wire(None, now_ms, &request, 0).expect("a small request encodes")
}

fn put(key: u64, now_ms: u64) -> Bytes {
    let request = crate::wire::Request::Put {
        keyspace: "default".into(),
        key: Bytes::from(format!("k{key:08}")),
        value: Bytes::from(key.to_string()),
        ttl_ms: None,
        condition: crate::wire::Condition::None,
    };
    command::Command::wire(None, now_ms, &request, 0).expect("a small request encodes")
}

impl Sim {
    fn new(opts: Options) -> Sim {
        let mut rng = Rng::new(opts.seed);
        let nodes = (1..=opts.nodes)
            .map(|id| SimNode {
                id,
                dir: crate::test_dir::TestDir::new("node-sim"),
                disk_faults: Arc::default(),
                disk: Arc::default(),
                clock: Arc::new(SimClock(AtomicU64::new(1 + rng.range(0..1 << 40)))),
                rate_permille: 950 + rng.range(0..101),
                running: None,
                restart_at: 0,
                stalled_until: 0,
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime for the (unused) transports");
        let mut sim = Sim {
            side: vec![0; opts.nodes as usize],
            opts,
            rng,
            step: 0,
            nodes,
            network: Vec::new(),
            lost: Default::default(),
            next_key: 0,
            writes: Vec::new(),
            acknowledged: Vec::new(),
            reads: Vec::new(),
            stats: Stats::default(),
            runtime,
        };
        for i in 0..sim.nodes.len() {
            sim.start(i);
        }
        sim
    }

    fn replay_command(&self) -> String {
        format!(
            "NODE_SIM_SEED={} cargo test -p kvstore --lib node::sim::tests::replay -- --nocapture",
            self.opts.seed
        )
    }

    /// Starts node `i` from what its log has on disk and its state machine's files.
    fn start(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        let mut config = NodeConfig::new(n.id, n.dir.to_path_buf());
        config.peers = (1..=self.opts.nodes)
            .map(|id| (id, format!("sim:{id}")))
            .collect();
        config.tick = TICK;
        config.compact_entries = 40;
        // Snapshots go in many small chunks, so a transfer outlasts a compaction interval.
        config.snapshot_chunk_bytes_max = 1024;
        config.raft_seed = Some(self.opts.seed ^ n.id.wrapping_mul(0x9E37_79B9) ^ self.step);
        config.engine.fsync = storage::FsyncPolicy::Never;
        config.engine.maintenance = storage::Maintenance::Manual;
        config.wal.faults = Some(n.disk_faults.clone());
        let disk = n.disk.lock().unwrap().clone();
        let log = MemLog {
            disk: n.disk.clone(),
            pending: Vec::new(),
            syncs: 0,
        };
        let outbox = Arc::new(Outbox::default());
        let timing = super::transport::Timing::of(&super::raft_config(&config));
        let transport = Arc::new(super::transport::Transport::new(
            n.id,
            config.advertise.clone(),
            timing,
            self.runtime.handle().clone(),
        ));
        let parts = assemble(
            config,
            Box::new(log),
            disk.groups,
            outbox.clone(),
            transport,
            n.clock.clone(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "seed {}: node {} did not start: {e:#}",
                self.opts.seed, n.id
            )
        });
        n.running = Some(Running {
            parts,
            outbox,
            queued: Vec::new(),
            jobs: Vec::new(),
        });
        // Its links are new connections both ways: the first frame on each is a gap.
        let id = n.id;
        for other in (1..=self.opts.nodes).filter(|&o| o != id) {
            self.lost.insert((id, other));
            self.lost.insert((other, id));
        }
    }

    fn crash(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.running.take().is_some() {
            self.stats.crashes += 1;
            n.restart_at = self.step + 1 + self.rng.range(0..100);
            n.stalled_until = 0;
        }
    }

    fn live(&self, i: usize) -> bool {
        let n = &self.nodes[i];
        n.running.is_some() && self.step >= n.stalled_until
    }

    fn faults(&mut self) {
        let o = self.opts.clone();
        if self.rng.chance(o.partition) {
            let heal = self.rng.chance(0.5);
            for s in self.side.iter_mut() {
                *s = if heal { 0 } else { self.rng.range(0..2) as u8 };
            }
        }
        for i in 0..self.nodes.len() {
            if self.nodes[i].running.is_none() {
                if self.step >= self.nodes[i].restart_at {
                    self.start(i);
                }
            } else if self.rng.chance(o.crash) {
                self.crash(i);
            } else if self.live(i) && self.rng.chance(o.stall) {
                // Up to three election timeouts: others elect and commit meanwhile.
                self.stats.stalls += 1;
                self.nodes[i].stalled_until = self.step + 1 + self.rng.range(0..300);
            }
        }
        // Every third phase of 500 steps is nearly idle, so the group quiesces, and the odd
        // read and write must wake it (lease reads at a quiesced leader among them).
        let busy = if (self.step / 500) % 3 == 2 {
            0.01
        } else {
            1.0
        };
        if self.rng.chance(o.read * busy) {
            let i = self.rng.range(0..self.nodes.len() as u64) as usize;
            if let Some(running) = self.nodes[i].running.as_mut() {
                // Queued even at a stalled node: it waits in the socket and is served first
                // thing when the node wakes, lease and all.
                let (tx, rx) = oneshot::channel();
                running
                    .parts
                    .shared
                    .client_events
                    .fetch_add(1, Ordering::Relaxed);
                running
                    .queued
                    .push(Event::Read(DEFAULT_GROUP, Consistency::Lease, tx));
                self.reads.push((i, self.acknowledged.len(), rx));
            }
        }
        if self.rng.chance(o.write * busy) {
            // A client asks a random node, and follows its redirect to the leader it knows
            // (as `ClusterClient` does).
            let mut i = self.rng.range(0..self.nodes.len() as u64) as usize;
            if let Some(leader) = self.leader_known_by(i) {
                i = (leader - 1) as usize;
            }
            if self.live(i) {
                self.next_key += 1;
                let key = self.next_key;
                let now_ms = 1_900_000_000_000 + self.step * STEP_US / 1000;
                let (tx, rx) = oneshot::channel();
                let expiring = self.rng.chance(0.3);
                let data = if expiring {
                    let ttl_ms = 1 + self.rng.range(0..8);
                    expiring_put(key, ttl_ms, self.rng.chance(0.5), now_ms)
                } else {
                    put(key, now_ms)
                };
                let running = self.nodes[i].running.as_mut().expect("live");
                // As `Node::submit` counts it (the Raft thread uncounts it).
                let counted = &running.parts.shared.client_events;
                counted.fetch_add(1, Ordering::Relaxed);
                running.queued.push(Event::Propose(DEFAULT_GROUP, data, tx));
                if !expiring {
                    self.stats.proposed += 1;
                    self.writes.push((key, rx));
                }
            }
        }
    }

    /// The leader node `i` believes in, if it runs and knows one.
    fn leader_known_by(&self, i: usize) -> Option<NodeId> {
        let running = self.nodes[i].running.as_ref()?;
        running.parts.runner.groups[&DEFAULT_GROUP].raft.leader()
    }

    /// One step: time passes, faults strike, messages arrive, every live node takes a turn.
    fn run_step(&mut self) {
        self.step += 1;
        for n in &self.nodes {
            n.clock
                .0
                .fetch_add(STEP_US * n.rate_permille / 1000, Ordering::SeqCst);
        }
        self.faults();
        let quiet = (0..self.nodes.len()).any(|i| {
            let running = self.nodes[i].running.as_ref().filter(|_| self.live(i));
            running.is_some_and(|r| r.parts.runner.groups[&DEFAULT_GROUP].raft.quiesced())
        });
        self.stats.quiesced_steps += u64::from(quiet);
        // Carry what the nodes sent.
        for i in 0..self.nodes.len() {
            let from = self.nodes[i].id;
            let Some(running) = &self.nodes[i].running else {
                continue;
            };
            let sent: Vec<_> = std::mem::take(&mut *running.outbox.sent.lock().unwrap());
            let pings = std::mem::take(&mut *running.outbox.pings.lock().unwrap());
            for (group, m) in sent {
                if self.rng.chance(self.opts.drop) {
                    self.lost.insert((from, m.to));
                    continue;
                }
                let at = self.step + 1 + self.rng.range(0..3);
                self.network
                    .push((at, from, m.to, Carried::Message(group, m)));
            }
            for _ in 0..pings {
                for to in (1..=self.opts.nodes).filter(|&to| to != from) {
                    // A ping lost is no gap: it numbers no message.
                    if !self.rng.chance(self.opts.drop) {
                        let at = self.step + 1 + self.rng.range(0..3);
                        self.network.push((at, from, to, Carried::Ping));
                    }
                }
            }
        }
        let step = self.step;
        let mut due = Vec::new();
        self.network.retain(|m| {
            if m.0 <= step {
                due.push((m.1, m.2, m.3.clone()));
                false
            } else {
                true
            }
        });
        for (from, to, carried) in due {
            let (f, t) = ((from - 1) as usize, (to - 1) as usize);
            let running = self.nodes.get_mut(t).and_then(|n| n.running.as_mut());
            let Some(running) = running.filter(|_| self.side[f] == self.side[t]) else {
                self.lost.insert((from, to));
                continue;
            };
            let gap = self.lost.remove(&(from, to));
            if let Carried::Message(group, m) = carried {
                running.queued.push(Event::Step(group, m));
                if gap {
                    running.queued.push(Event::Heard(from, true));
                }
            } else {
                running.queued.push(Event::Heard(from, gap));
            }
        }
        for i in 0..self.nodes.len() {
            if !self.live(i) {
                continue;
            }
            let seed = self.opts.seed;
            let running = self.nodes[i].running.as_mut().expect("live");
            // The snapshot worker's jobs (builds and installs) run here, up to 40 steps after
            // they were asked for (a crash loses them, as it would the worker's thread), and
            // come back as events.
            while let Ok((group, job)) = running.parts.jobs.try_recv() {
                let due = self.step + self.rng.range(0..40);
                running.jobs.push((due, group, job));
            }
            let step = self.step;
            let (due, later) = std::mem::take(&mut running.jobs)
                .into_iter()
                .partition(|(at, _, _)| *at <= step);
            running.jobs = later;
            for (_, group, job) in due {
                if matches!(job, super::runner::Job::Install(..)) {
                    self.stats.installs += 1;
                }
                running.queued.push(job.run(group));
            }
            let mut events = std::mem::take(&mut running.queued);
            events.extend(running.parts.events.try_iter());
            if let Err(error) = running.parts.runner.turn(events) {
                panic!("seed {seed}: node {} failed: {error:#}", self.nodes[i].id);
            }
        }
        self.check_reads();
        let acknowledged = &mut self.acknowledged;
        self.writes.retain_mut(|(key, rx)| match rx.try_recv() {
            Ok(Ok(_)) => {
                acknowledged.push(*key);
                false
            }
            Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => false,
            Err(oneshot::error::TryRecvError::Empty) => true,
        });
    }

    /// A lease read that was answered must see every write acknowledged before it was asked
    /// (the stale read a leader that stalled could serve).
    fn check_reads(&mut self) {
        let seed = self.opts.seed;
        let mut reads = std::mem::take(&mut self.reads);
        reads.retain_mut(|(i, required, rx)| match rx.try_recv() {
            Ok(Ok(_)) => {
                if let Some(running) = self.nodes[*i].running.as_ref() {
                    let db = running.parts.shared.dbs.read().unwrap()[&DEFAULT_GROUP]
                        .read()
                        .unwrap()
                        .clone();
                    let ks = crate::db::Keyspace::new("default").expect("a valid name");
                    for key in &self.acknowledged[..*required] {
                        let found = db
                            .get(&ks, format!("k{key:08}").as_bytes())
                            .expect("a read");
                        assert!(
                            found.is_some(),
                            "seed {seed}: a lease read at node {} missed k{key:08}, \
                             acknowledged before it was asked",
                            *i + 1
                        );
                    }
                    self.stats.lease_reads_checked += 1;
                }
                false
            }
            Ok(Err(_)) | Err(oneshot::error::TryRecvError::Closed) => false,
            Err(oneshot::error::TryRecvError::Empty) => true,
        });
        self.reads = reads;
    }

    /// The leader of the highest term among the running nodes.
    fn leader(&self) -> Option<usize> {
        (0..self.nodes.len())
            .filter_map(|i| {
                let r = &self.nodes[i].running.as_ref()?.parts.runner.groups[&DEFAULT_GROUP];
                (r.raft.role() == crate::raft::Role::Leader).then_some((r.raft.term(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Ends the faults: heals the network, wakes and restarts every node; clients keep
    /// writing if `writes`.
    fn heal(&mut self, writes: bool) {
        self.opts = Options {
            drop: 0.0,
            crash: 0.0,
            stall: 0.0,
            partition: 0.0,
            write: if writes { self.opts.write } else { 0.0 },
            ..self.opts.clone()
        };
        self.side.iter_mut().for_each(|s| *s = 0);
        for i in 0..self.nodes.len() {
            self.nodes[i].stalled_until = 0;
            if self.nodes[i].running.is_none() {
                self.start(i);
            }
        }
    }

    /// Heals the network, then keeps a follower down while the others write and compact, and
    /// brings it back with the writes still going: it must catch up (by a snapshot sent in
    /// many chunks, then the log) while they go on, not start over at every compaction.
    fn catch_up_under_load(&mut self) {
        let seed = self.opts.seed;
        let replay = self.replay_command();
        self.heal(true);
        let mut leader = None;
        for _ in 0..5_000 {
            self.run_step();
            leader = self.leader();
            if leader.is_some() {
                break;
            }
        }
        let leader =
            leader.unwrap_or_else(|| panic!("seed {seed}: no leader; replay with:\n  {replay}"));
        let follower = (leader + 1) % self.nodes.len();
        self.crash(follower);
        self.nodes[follower].restart_at = u64::MAX;
        for _ in 0..400 {
            self.run_step();
        }
        self.start(follower);
        for _ in 0..5_000 {
            self.run_step();
            let Some(leader) = self.leader() else {
                continue;
            };
            let commit = self.nodes[leader]
                .running
                .as_ref()
                .expect("leads")
                .parts
                .runner
                .groups[&DEFAULT_GROUP]
                .raft
                .log()
                .committed();
            let applied = self.nodes[follower]
                .running
                .as_ref()
                .expect("restarted")
                .parts
                .runner
                .groups[&DEFAULT_GROUP]
                .machine
                .applied();
            if applied + 10 >= commit {
                self.stats.caught_up += 1;
                return;
            }
        }
        panic!(
            "seed {seed}: node {} never caught up while the writes went on; replay with:\n  {replay}",
            follower + 1
        );
    }

    /// Heals everything, restarts every node, and runs until they all hold the same state.
    fn heal_and_check(&mut self) {
        let seed = self.opts.seed;
        self.heal(false);
        let replay = self.replay_command();
        for _ in 0..20_000 {
            self.run_step();
            let states: Vec<_> = self.nodes.iter().map(state_of).collect();
            if states.windows(2).all(|w| w[0] == w[1]) && !self.nodes_behind() {
                self.stats.snapshot_pieces_refused = self
                    .nodes
                    .iter()
                    .map(|n| n.disk_faults.refused.load(Ordering::SeqCst))
                    .sum();
                self.stats.snapshots_taken = self
                    .nodes
                    .iter()
                    .filter(|n| {
                        let r = n.running.as_ref().expect("all running");
                        r.parts.runner.groups[&DEFAULT_GROUP]
                            .raft
                            .log()
                            .snapshot()
                            .index
                            > 0
                    })
                    .count() as u64;
                for key in &self.acknowledged {
                    assert!(
                        states[0].contains(&format!("k{key:08}={key}")),
                        "seed {seed}: acknowledged write k{key:08} is lost; replay with:\n  {replay}"
                    );
                }
                return;
            }
        }
        panic!("seed {seed}: the nodes never converged; replay with:\n  {replay}");
    }

    /// Whether some node has not applied everything its leader committed.
    fn nodes_behind(&self) -> bool {
        let status: Vec<_> = self
            .nodes
            .iter()
            .map(|n| {
                let r = n.running.as_ref().expect("all running");
                r.parts.runner.publish_status();
                let s = r.parts.shared.status.lock().unwrap().groups[0].clone();
                (s.role, s.commit, s.applied)
            })
            .collect();
        let Some(commit) = status
            .iter()
            .filter(|(role, ..)| role == "leader")
            .map(|(_, c, _)| *c)
            .max()
        else {
            return true;
        };
        status.iter().any(|(_, _, applied)| *applied < commit)
    }
}

/// A node's user data: every key of the default keyspace with its value.
fn state_of(n: &SimNode) -> Vec<String> {
    let r = n.running.as_ref().expect("all running");
    let db = r.parts.shared.dbs.read().unwrap()[&DEFAULT_GROUP]
        .read()
        .unwrap()
        .clone();
    let all = db
        .engine()
        .scan_all(b"\x07default", b"\x07defaulu", usize::MAX);
    all.expect("a scan")
        .iter()
        .map(|e| {
            let key = String::from_utf8_lossy(&e.key[8..]).into_owned();
            let value = String::from_utf8_lossy(e.value.as_deref().unwrap_or_default());
            format!("{key}={value}")
        })
        .collect()
}

fn options(seed: u64) -> Options {
    Options {
        seed,
        nodes: 3,
        steps: 3_000,
        drop: 0.02,
        crash: 0.0005,
        stall: 0.0005,
        partition: 0.002,
        write: 0.3,
        read: 0.2,
    }
}

fn run(seed: u64) -> (usize, u64, Stats) {
    let mut sim = Sim::new(options(seed));
    let replay = sim.replay_command();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for _ in 0..sim.opts.steps {
            sim.run_step();
        }
        sim.catch_up_under_load();
        sim.heal_and_check();
        (sim.acknowledged.len(), sim.stats.proposed, sim.stats)
    }));
    match outcome {
        Ok(counts) => counts,
        Err(panic) => {
            eprintln!("node simulator, seed {seed} failed; replay with:\n  {replay}");
            std::panic::resume_unwind(panic)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_nodes_survive_crashes_stalls_drift_and_partitions() {
        let seeds: u64 = std::env::var("NODE_SIM_SEEDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(16);
        let (mut acknowledged, mut proposed, mut totals) = (0, 0, Stats::default());
        for seed in 0..seeds {
            let (a, p, stats) = run(seed);
            acknowledged += a;
            proposed += p;
            totals.crashes += stats.crashes;
            totals.stalls += stats.stalls;
            totals.lease_reads_checked += stats.lease_reads_checked;
            totals.snapshots_taken += stats.snapshots_taken;
            totals.snapshot_pieces_refused += stats.snapshot_pieces_refused;
            totals.installs += stats.installs;
            totals.proposed += stats.proposed;
            totals.caught_up += stats.caught_up;
            totals.quiesced_steps += stats.quiesced_steps;
        }
        eprintln!(
            "node simulator: {seeds} seeds, {acknowledged} of {proposed} writes acknowledged, \
             {totals:?}"
        );
        // The runs did real work, or the checks checked nothing.
        assert!(
            acknowledged as u64 > proposed / 2,
            "most writes are acknowledged ({acknowledged} of {proposed})"
        );
        assert!(
            totals.crashes >= seeds && totals.stalls >= seeds,
            "{totals:?}"
        );
        assert!(totals.lease_reads_checked > seeds * 100, "{totals:?}");
        assert!(totals.snapshots_taken > 0, "{totals:?}");
        assert!(totals.snapshot_pieces_refused > 0, "{totals:?}");
        assert!(totals.installs > 0, "{totals:?}");
        assert!(totals.quiesced_steps > seeds * 100, "{totals:?}");
    }

    /// Replays one run from `NODE_SIM_SEED` (does nothing without it).
    #[test]
    fn replay() {
        let Some(seed) = std::env::var("NODE_SIM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
        else {
            return;
        };
        let (acknowledged, proposed, stats) = run(seed);
        eprintln!("seed {seed}: {acknowledged} of {proposed} writes acknowledged, {stats:?}");
    }
}
