//! The Raft thread of a node: the loop that owns every group the node hosts, and the
//! snapshot worker beside it, which builds groups' snapshots and installs those from their
//! leaders, so that neither holds up the other groups.
//!
//! [`Runner::run`] waits on the inbox or the next tick, handles what is queued (peer
//! messages, proposals, reads, admin requests, built and installed snapshots), ticks the
//! groups, and runs rounds: persist every group's `Ready` with one WAL sync, send, apply,
//! answer, advance (see `super` for the order and why it is safe). Nothing else touches a group's Raft core or its
//! state machine's writes; the [`super::Node`] handle only queues events.

use anyhow::Context;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::mpsc::{self as stdmpsc, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use super::io::{LogStore, MonoClock, Network};
use super::state::{self, Reply, StateMachine};
use super::{
    command, raft_config, Built, Consistency, Event, GroupStatus, NodeConfig, NodeError,
    NodeStatus, ProposalResult, Shared, Staleness, Unavailable, UnknownOutcome,
    COMPACTION_RETRY_DELAY, EVENTS_PER_ROUND_MAX, SNAPSHOT_RETRY_DELAY,
};
use crate::raft::{
    self, ConfigChange, GroupId, Index, Message, NodeId, ProposeError, Raft, Role, Term,
};
use crate::storage;
use crate::storage::fault::{FaultInjector, IoOp};

pub(super) struct Proposal {
    term: Term,
    reply: oneshot::Sender<ProposalResult>,
}

pub(super) struct Group {
    pub(super) raft: Raft,
    pub(super) machine: StateMachine,
    /// Where the state machine and the snapshot files live.
    pub(super) dir: PathBuf,
    /// Proposals waiting for their entry to apply, by index.
    pub(super) proposals: BTreeMap<Index, Proposal>,
    /// Reads waiting for a read index, by context.
    pub(super) reads: HashMap<u64, oneshot::Sender<Result<Staleness, NodeError>>>,
    /// Reads that have a read index, waiting for the state machine to reach it.
    pub(super) waiting_reads: Vec<(Index, oneshot::Sender<Result<Staleness, NodeError>>)>,
    /// When (on [`clock::monotonic_us`]) it last heard from a leader of the group.
    pub(super) heard_at_us: Option<raft::Micros>,
    /// The term and vote last written to the WAL: a change must be synced before any
    /// message goes out.
    pub(super) term_vote: (Term, Option<NodeId>),
    /// A snapshot of this group is being built.
    pub(super) snapshotting: bool,
    /// The file a snapshot from the leader is gathered in as its pieces arrive.
    pub(super) incoming: Option<std::fs::File>,
    /// A snapshot from the leader being installed by the worker, and what the group
    /// committed meanwhile, applied once it is in.
    pub(super) installing: Option<Deferred>,
    /// The last build failed: no new one before this.
    pub(super) snapshot_not_before: Option<raft::Micros>,
    /// The last compaction could not drop anything (a follower close behind needs the
    /// entries: `Raft::compact_log`): no new one before this, unless a follower wants a
    /// snapshot.
    pub(super) compaction_not_before: Option<raft::Micros>,
}

pub(super) struct Runner {
    pub(super) config: NodeConfig,
    pub(super) wal: Box<dyn LogStore>,
    pub(super) groups: BTreeMap<GroupId, Group>,
    pub(super) transport: Arc<dyn Network>,
    pub(super) clock: Arc<dyn MonoClock>,
    /// When (on `clock`) the next tick is due.
    pub(super) next_tick_us: raft::Micros,
    pub(super) shared: Arc<Shared>,
    pub(super) next_read: u64,
    pub(super) shutdown: bool,
    /// Where groups send their snapshots to be built, and those from a leader to be
    /// installed, off this thread.
    pub(super) snapshots: SyncSender<(GroupId, Job)>,
    /// Snapshots the worker has built, to compact the logs with in the next round.
    pub(super) built: Vec<(GroupId, Built)>,
    /// Snapshots from a leader the worker has installed, to adopt in the next round.
    pub(super) installed: Vec<(GroupId, InstallResult)>,
    /// When the loop last came round (on [`clock::monotonic_us`]), and when it last woke
    /// from a stall (a gap of an election timeout: SIGSTOP, a long fsync).
    pub(super) last_loop_us: raft::Micros,
    pub(super) woke_at_us: Option<raft::Micros>,
    /// Directories of removed groups, deleted once the removal is durable in the WAL.
    pub(super) doomed: Vec<PathBuf>,
    /// Something was logged outside a `Ready` (a founding entry): sync at the next round.
    pub(super) unsynced: bool,
    /// Groups an event or a tick touched since the last round: only they can have anything
    /// ready, and only their published status can have changed. With a thousand groups on a
    /// node, a heartbeat for one must not cost a look at every other.
    pub(super) dirty: BTreeSet<GroupId>,
    /// When (on `clock`) each peer node was last heard from: any frame of its Raft thread's
    /// (messages or its ping). A quiesced group wakes when a node it depends on falls silent.
    pub(super) heard_nodes: BTreeMap<NodeId, raft::Micros>,
    /// Ticks since the node started: every `heartbeat_ticks` of them it pings its peers.
    pub(super) ticks: u64,
}

impl Runner {
    pub(super) fn run(&mut self, events: stdmpsc::Receiver<Event>) -> anyhow::Result<()> {
        // Persist whatever the groups start with (a founding entry) before anything else.
        self.round()?;
        while !self.shutdown {
            let wait_us = self.next_tick_us.saturating_sub(self.clock.now_us());
            let mut batch = Vec::new();
            match events.recv_timeout(Duration::from_micros(wait_us)) {
                Ok(event) => {
                    batch.push(event);
                    batch.extend(events.try_iter().take(EVENTS_PER_ROUND_MAX));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            self.turn(batch)?;
        }
        for g in self.groups.values_mut() {
            g.machine.sync()?;
        }
        Ok(())
    }

    /// One turn of the loop, given what arrived since the last: handle it, tick if a tick is
    /// due, and run rounds until nothing is ready. A simulator drives a node by calling this.
    pub(super) fn turn(&mut self, events: Vec<Event>) -> anyhow::Result<()> {
        self.note_stall();
        for event in events {
            if let Some(group) = event.group() {
                self.dirty.insert(group);
            }
            self.handle(event);
        }
        let now = self.clock.now_us();
        if now >= self.next_tick_us {
            self.ticks += 1;
            let raft = raft_config(&self.config);
            if self.ticks.is_multiple_of(u64::from(raft.heartbeat_ticks)) {
                // One ping per peer stands for the heartbeats of every quiesced group.
                self.transport.ping_all();
            }
            self.wake_silent(now);
            for (id, g) in self.groups.iter_mut() {
                let quiet = g.raft.quiesced();
                g.raft.tick(now);
                if !quiet {
                    // (A quiesced group's tick only counts: nothing can be ready.)
                    g.reads.retain(|_, tx| !tx.is_closed());
                    self.dirty.insert(*id);
                }
            }
            let tick_us = self.config.tick.as_micros() as u64;
            self.next_tick_us += tick_us;
            if self.next_tick_us < now {
                self.next_tick_us = now + tick_us; // a long stall: do not tick in a burst
            }
        }
        self.round()
    }

    /// Wakes every quiesced group that depends on a node gone silent for an election
    /// timeout: a follower whose leader's node, a leader one of whose voters' nodes. (What a
    /// quiesced follower's reads report as their staleness is worked out when they are
    /// served, from the same liveness: see [`super::Node::staleness`].)
    fn wake_silent(&mut self, now: raft::Micros) {
        let election = u64::from(raft_config(&self.config).election_ticks_min);
        let silent_after = self.config.tick.as_micros() as u64 * election;
        let me = self.config.id;
        let heard = &self.heard_nodes;
        let alive = |node: NodeId| {
            node == me
                || heard
                    .get(&node)
                    .is_some_and(|&at| now.saturating_sub(at) < silent_after)
        };
        for (id, g) in self.groups.iter_mut() {
            if !g.raft.quiesced() {
                continue;
            }
            let awake = if g.raft.role() == Role::Leader {
                g.raft.membership().voters.iter().all(|&v| alive(v))
            } else {
                g.raft.leader().is_some_and(alive)
            };
            if !awake {
                tracing::debug!(group = id, "a node it depends on fell silent: waking");
                g.raft.unquiesce();
                self.dirty.insert(*id);
            }
        }
    }

    /// Peer `node`'s Raft thread sent a frame. With `gap`, this node may have missed some of
    /// what it sent: every quiesced group it is a member of wakes, since a message that would
    /// have woken it may be among the lost.
    fn heard(&mut self, node: NodeId, gap: bool) {
        let now = self.clock.now_us();
        if self.fresh(now) {
            self.heard_nodes.insert(node, now);
        }
        if !gap {
            return;
        }
        for (id, g) in self.groups.iter_mut() {
            let m = g.raft.membership();
            if g.raft.quiesced() && (m.voters.contains(&node) || m.learners.contains(&node)) {
                tracing::debug!(
                    group = id,
                    node,
                    "messages from a member may be lost: waking"
                );
                g.raft.unquiesce();
                self.dirty.insert(*id);
            }
        }
    }

    /// Whether what arrives now shows its sender's state now: not just after a stall, when it
    /// may have waited in the socket all along.
    fn fresh(&self, now: raft::Micros) -> bool {
        self.woke_at_us
            .is_none_or(|woke| now.saturating_sub(woke) > self.stall_settle_us())
    }

    /// Notes a stall: the loop came round an election timeout or more after the last time.
    fn note_stall(&mut self) {
        let now = self.clock.now_us();
        let election = u64::from(raft_config(&self.config).election_ticks_min);
        let stall_us = self.config.tick.as_micros() as u64 * election;
        if now.saturating_sub(self.last_loop_us) > stall_us {
            tracing::warn!(
                stalled_ms = now.saturating_sub(self.last_loop_us) / 1000,
                "the Raft thread stalled"
            );
            self.woke_at_us = Some(now);
        }
        self.last_loop_us = now;
    }

    /// How long after a stall leader messages are not taken as fresh contact: two heartbeat
    /// intervals, by when a heartbeat sent after the wake has arrived.
    fn stall_settle_us(&self) -> raft::Micros {
        let heartbeat = u64::from(raft_config(&self.config).heartbeat_ticks);
        2 * heartbeat * self.config.tick.as_micros() as u64
    }

    fn handle(&mut self, event: Event) {
        if !matches!(
            event,
            Event::Step(..)
                | Event::Shutdown
                | Event::SnapshotBuilt(..)
                | Event::SnapshotInstalled(..)
                | Event::Heard(..)
        ) {
            self.shared
                .client_events
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        match event {
            Event::Step(group, m) => {
                // Messages handled just after a stall may have waited in the socket all
                // along: they do not show the leader was heard recently.
                let now = self.clock.now_us();
                let fresh = self.fresh(now);
                if !self.groups.contains_key(&group) && !self.create_replica(group, &m) {
                    return;
                }
                let Some(g) = self.groups.get_mut(&group) else {
                    return;
                };
                let from = m.from;
                if fresh {
                    self.heard_nodes.insert(from, now);
                }
                let leader_message = fresh && m.body.is_from_leader();
                g.raft.step(m);
                if leader_message && g.raft.leader() == Some(from) {
                    g.heard_at_us = Some(now);
                }
            }
            Event::Propose(group, data, reply) => {
                let Some(g) = self.groups.get_mut(&group) else {
                    let _ = reply.send(Err(NodeError::UnknownGroup { group }));
                    return;
                };
                let proposed = g.raft.propose(data);
                let term = g.raft.term();
                match proposed {
                    Ok(index) => {
                        // An earlier proposal at this index (from an older term of this node)
                        // was overwritten in the log: it was not applied.
                        if let Some(old) = g.proposals.insert(index, Proposal { term, reply }) {
                            let _ = old.reply.send(Err(NodeError::Dropped));
                        }
                    }
                    Err(error) => {
                        let _ = reply.send(Err(self.propose_error(group, error)));
                    }
                }
            }
            Event::Read(group, consistency, reply) => {
                self.next_read = self.next_read.wrapping_add(1);
                let context = self.next_read;
                let Some(g) = self.groups.get_mut(&group) else {
                    let _ = reply.send(Err(NodeError::UnknownGroup { group }));
                    return;
                };
                g.reads.insert(context, reply);
                let context = Bytes::copy_from_slice(&context.to_le_bytes());
                match consistency {
                    // The clock is read now, after the request arrived: a lease that held
                    // before a stall of this thread says nothing about now.
                    Consistency::Lease => g.raft.read_lease(context, self.clock.now_us()),
                    _ => g.raft.read_index(context),
                }
            }
            Event::Transfer(group, to, reply) => {
                let Some(g) = self.groups.get_mut(&group) else {
                    let _ = reply.send(Err(NodeError::UnknownGroup { group }));
                    return;
                };
                let (role, leader) = (g.raft.role(), g.raft.leader());
                let result = if role != Role::Leader {
                    Err(self.propose_error(group, ProposeError::NotLeader { leader }))
                } else if !g.raft.membership().voters.contains(&to) {
                    Err(NodeError::Unavailable(Unavailable::NotVoter { node: to }))
                } else {
                    g.raft.transfer_leader(to);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            Event::Membership(group, change, address, reply) => {
                let Some(g) = self.groups.get_mut(&group) else {
                    let _ = reply.send(Err(NodeError::UnknownGroup { group }));
                    return;
                };
                if let (ConfigChange::AddLearner(id) | ConfigChange::AddVoter(id), Some(a)) =
                    (change, &address)
                {
                    // Logged before the change, so every member (and any later leader) can
                    // reach the node; applying it sets the address here too.
                    let now = storage::Clock::now_ms(&*g.machine.clock());
                    if let Err(error) = g.raft.propose(command::Command::peer(now, id, a)) {
                        let _ = reply.send(Err(self.propose_error(group, error)));
                        return;
                    }
                }
                let g = self.groups.get_mut(&group).expect("looked up above");
                let next = g.raft.membership().apply(change);
                let result = g.raft.propose_config(next);
                let result = result.map_err(|e| self.propose_error(group, e));
                let _ = reply.send(result);
            }
            Event::CreateGroup(group, voters, campaign, reply) => {
                let _ = reply.send(self.create_group(group, voters, campaign));
            }
            Event::RemoveGroup(group, reply) => {
                let _ = reply.send(Ok(self.remove_group(group)));
            }
            Event::SnapshotBuilt(group, built) => self.built.push((group, built)),
            Event::SnapshotInstalled(group, installed) => self.installed.push((group, installed)),
            Event::Heard(node, gap) => self.heard(node, gap),
            Event::Shutdown => self.shutdown = true,
        }
    }

    fn create_group(
        &mut self,
        group: GroupId,
        voters: Vec<NodeId>,
        campaign: bool,
    ) -> Result<bool, NodeError> {
        if self.groups.contains_key(&group) {
            return Ok(false);
        }
        if self.groups.len() >= super::GROUPS_MAX {
            return Err(NodeError::Unavailable(Unavailable::TooManyGroups {
                hosted: self.groups.len(),
            }));
        }
        let opened = super::open_group(
            &self.config,
            group,
            &mut *self.wal,
            Default::default(),
            Some(voters),
            &self.shared.clock,
        );
        let (mut g, _) = opened.map_err(|e| NodeError::Stopped(format!("{e:#}")))?;
        if campaign {
            g.raft.campaign();
        }
        tracing::info!(group, campaign, "founded a group of a new keyspace");
        self.unsynced = true;
        self.host(group, g);
        Ok(true)
    }

    /// Starts running `g` (and serving reads from its engine).
    fn host(&mut self, group: GroupId, g: Group) {
        self.shared
            .dbs
            .write()
            .expect("dbs lock")
            .insert(group, g.machine.shared_db());
        self.groups.insert(group, g);
    }

    /// Forgets `group`: its waiting requests fail, its log gets a tombstone, and its directory
    /// goes once that is durable (in the next round).
    fn remove_group(&mut self, group: GroupId) -> bool {
        let Some(g) = self.groups.remove(&group) else {
            return false;
        };
        self.shared.dbs.write().expect("dbs lock").remove(&group);
        for (_, p) in g.proposals {
            let _ = p.reply.send(Err(NodeError::Dropped));
        }
        let gone = || Err(NodeError::UnknownGroup { group });
        for (_, reply) in g.reads {
            let _ = reply.send(gone());
        }
        for (_, reply) in g.waiting_reads {
            let _ = reply.send(gone());
        }
        self.wal.remove_group(group);
        self.unsynced = true;
        self.doomed.push(g.dir.clone());
        tracing::info!(group, "removed this node's replica of a group");
        drop(g.machine);
        true
    }

    /// A leader's message for a group this node does not host: a replica is being added
    /// here. Creates it empty (the leader sends a snapshot and the log) and says whether it
    /// did. Any other message for an unknown group is dropped: only a leader adds replicas.
    fn create_replica(&mut self, group: GroupId, m: &Message) -> bool {
        if !m.body.is_from_leader() {
            return false;
        }
        {
            // Only where the map places the group: a leader's message from before this
            // replica was removed, or a map this node has not caught up with yet, creates
            // nothing (the leader repeats itself; once the map places the group here, it is
            // created). Deleting a replica its group still counts would break Raft: the
            // leader's match index for it would be ahead of its log. A node without a map, or
            // a group newer than its map (added to a group by hand), accepts the leader.
            let map = self.shared.map.borrow();
            let placed = match map.groups.get(&group) {
                Some(g) => g.places(self.config.id),
                None => map.version == 0 || group >= map.next_group,
            };
            if !placed {
                return false;
            }
        }
        if self.groups.len() >= super::GROUPS_MAX {
            tracing::warn!(
                group,
                hosted = self.groups.len(),
                "not creating a replica: the node hosts the most groups it may"
            );
            return false;
        }
        let opened = super::open_group(
            &self.config,
            group,
            &mut *self.wal,
            Default::default(),
            None,
            &self.shared.clock,
        );
        match opened {
            Ok((g, _)) => {
                tracing::info!(group, leader = m.from, "created a replica for a leader");
                self.host(group, g);
                true
            }
            Err(error) => {
                tracing::error!(group, %error, "could not create a replica");
                false
            }
        }
    }

    fn propose_error(&self, group: GroupId, error: ProposeError) -> NodeError {
        match error {
            ProposeError::NotLeader { leader } => NodeError::NotLeader {
                group,
                epoch: self
                    .groups
                    .get(&group)
                    .map_or(0, |g| g.raft.membership_index()),
                leader,
                address: leader.and_then(|id| {
                    let advertised = self.shared.advertised.lock().expect("advertised lock");
                    advertised.get(&id).cloned()
                }),
            },
            other => NodeError::Unavailable(Unavailable::Proposal(other)),
        }
    }

    /// Persists, sends, applies and advances until no group has anything ready.
    fn round(&mut self) -> anyhow::Result<()> {
        for (id, built) in std::mem::take(&mut self.built) {
            self.snapshot_built(id, built)?;
            self.dirty.insert(id);
        }
        for (id, installed) in std::mem::take(&mut self.installed) {
            self.snapshot_installed(id, installed)?;
            self.dirty.insert(id);
        }
        if std::mem::take(&mut self.unsynced) {
            self.wal.sync()?;
        }
        for dir in std::mem::take(&mut self.doomed) {
            // The tombstone is durable: the data can go. Off this thread, it may be large.
            let trash = dir.with_extension(format!("removed-{}", super::now_ms()));
            match std::fs::rename(&dir, &trash) {
                Ok(()) => {
                    std::thread::spawn(move || {
                        if let Err(error) = std::fs::remove_dir_all(&trash) {
                            tracing::warn!(dir = %trash.display(), %error, "could not delete a removed group");
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "could not delete a removed group")
                }
            }
        }
        // Only touched groups can be ready; a group that was ready is looked at again (what
        // it applied may have made more ready), the rest are done.
        let mut check: Vec<GroupId> = self.dirty.iter().copied().collect();
        loop {
            let mut readies = Vec::new();
            for id in &check {
                if let Some(g) = self.groups.get_mut(id) {
                    if g.raft.has_ready() {
                        readies.push((*id, g.raft.ready()));
                    }
                }
            }
            if readies.is_empty() {
                break;
            }
            check = readies.iter().map(|(id, _)| *id).collect();
            // A leader's appends go out before its own sync, so that the followers' fsyncs
            // overlap the leader's (Raft dissertation §10.2.1). That is safe: they depend on
            // nothing this sync makes durable (the term was made durable when this node
            // campaigned), and the leader counts itself towards a commit only for entries
            // it has persisted. So may a follower's acknowledgement of a snapshot chunk: it
            // promises only bytes held in memory (a restart answers 0 and the transfer
            // starts over). Everything else (votes, acknowledgements) waits for the sync.
            for (id, ready) in &mut readies {
                let g = &self.groups[id];
                if ready
                    .hard_state
                    .is_some_and(|hs| (hs.term, hs.vote) != g.term_vote)
                {
                    // A new term or vote must be durable first (a single voter wins its
                    // election and appends within one round).
                    continue;
                }
                let (early, rest): (Vec<Message>, Vec<Message>) =
                    std::mem::take(&mut ready.messages)
                        .into_iter()
                        .partition(|m| {
                            m.body.is_from_leader()
                                || matches!(m.body, raft::Body::SnapshotResponse { .. })
                        });
                ready.messages = rest;
                for m in early {
                    self.transport.send(*id, m);
                }
            }
            // 1. Persist, with one sync for every group. A round that only moved commit
            // indexes needs no sync of its own: the commit index is a hint for restarts, never
            // needed for safety, so its record waits in the buffer for the next sync. That
            // keeps an fsync off the path from "committed" to "applied and answered".
            let mut must_sync = false;
            let mut snapshots_in = Vec::new();
            for (id, ready) in &mut readies {
                let g = self.groups.get_mut(id).expect("a group");
                for chunk in &ready.snapshot_chunks {
                    // A piece that cannot be kept (a full disk) drops the transfer, not the
                    // node: its other groups go on, and the leader starts over later.
                    let faults = self.config.wal.faults.as_deref();
                    match g.keep_snapshot_chunk(chunk, faults) {
                        Ok(()) if chunk.last => snapshots_in.push((*id, chunk.meta.index, true)),
                        Ok(()) => {}
                        Err(error) => {
                            let (index, error) = (chunk.meta.index, format!("{error:#}"));
                            tracing::warn!(group = id, index, %error, "could not keep a piece of a \
                                snapshot from the leader; the transfer starts over later");
                            g.drop_incoming_snapshot();
                            snapshots_in.push((*id, chunk.meta.index, false));
                            break;
                        }
                    }
                }
                if let Some(snapshot) = &mut ready.snapshot {
                    // Its pieces are in its file (`keep_snapshot_chunk`), mapped from now on
                    // (for the state machine to install, and for the core to send on), never
                    // gathered in memory.
                    let path = state::snapshot_path(&g.dir, snapshot.meta.index);
                    snapshot.data = state::map_snapshot_file(&path)?;
                    g.raft
                        .supply_snapshot_data(snapshot.meta.index, snapshot.data.clone());
                    let kept_later = g.raft.log().last_index() > snapshot.meta.index;
                    self.wal.set_snapshot(*id, &snapshot.meta, !kept_later);
                    must_sync = true;
                }
                if !ready.entries.is_empty() {
                    self.wal.append(*id, &ready.entries);
                    must_sync = true;
                }
                if let Some(hard_state) = ready.hard_state {
                    self.wal.set_hard_state(*id, hard_state);
                    let term_vote = (hard_state.term, hard_state.vote);
                    must_sync |= term_vote != g.term_vote;
                    g.term_vote = term_vote;
                }
            }
            if must_sync {
                self.wal.sync()?;
            }
            // 2. Send.
            for (id, ready) in &mut readies {
                for m in std::mem::take(&mut ready.messages) {
                    self.transport.send(*id, m);
                }
            }
            // 3. Apply, answer, advance.
            for (id, ready) in readies {
                let g = self.groups.get_mut(&id).expect("a group");
                let peers = g.apply(id, ready, &self.snapshots)?;
                self.learn_peers(peers);
                let g = self.groups.get_mut(&id).expect("a group");
                g.raft.advance();
                for (_, index, kept) in snapshots_in.iter().filter(|s| s.0 == id) {
                    match kept {
                        true => g.raft.snapshot_received(*index),
                        false => g.raft.snapshot_lost(*index),
                    }
                }
                let now = self.clock.now_us();
                let (entries, bytes) = (self.config.compact_entries, self.config.compact_bytes);
                g.maybe_snapshot(id, &self.snapshots, (entries, bytes), now);
            }
        }
        self.publish_dirty();
        Ok(())
    }

    /// Peer addresses the log recorded: the transport can reach them from now on.
    fn learn_peers(&self, peers: Vec<(NodeId, String)>) {
        for (peer, address) in peers {
            if peer != self.config.id && !self.config.peers.contains_key(&peer) {
                tracing::info!(peer, %address, "learnt a peer's address from the log");
                self.transport.set_peer(peer, address);
            }
        }
    }

    /// Publishes the status of every group (at start, and for a simulator's checks).
    pub(super) fn publish_status(&self) {
        let groups = self.groups.iter().map(|(id, g)| g.status(*id)).collect();
        let mut status = self.shared.status.lock().expect("status lock");
        *status = NodeStatus {
            id: self.config.id,
            groups,
            // Filled in when asked (`Node::status`), not on every round.
            peers: BTreeMap::new(),
            advertised: BTreeMap::new(),
            wal_syncs: self.wal.syncs(),
            wal_segments: self.wal.segments(),
            peers_heard_us: self.heard_nodes.clone(),
        };
    }

    /// Publishes the status of the groups touched since the last round (added, changed or
    /// removed), keeping the published list sorted by group.
    fn publish_dirty(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        let mut status = self.shared.status.lock().expect("status lock");
        for id in dirty {
            let at = status.groups.binary_search_by_key(&id, |g| g.group);
            match (self.groups.get(&id), at) {
                (Some(g), Ok(i)) => status.groups[i] = g.status(id),
                (Some(g), Err(i)) => status.groups.insert(i, g.status(id)),
                (None, Ok(i)) => {
                    status.groups.remove(i);
                }
                (None, Err(_)) => {}
            }
        }
        status.wal_syncs = self.wal.syncs();
        status.wal_segments = self.wal.segments();
        status.peers_heard_us.clone_from(&self.heard_nodes);
    }
}

impl Group {
    /// Writes a piece of a snapshot coming from the leader to the incoming file (a piece at
    /// offset 0 starts it afresh). Not synced: until the last piece, a crash loses only a
    /// transfer, which the leader starts again. After the last piece the file is synced and
    /// becomes the snapshot's file (renamed, the directory synced), never written again.
    /// `faults` may fail the writes (tests of a full disk).
    fn keep_snapshot_chunk(
        &mut self,
        chunk: &raft::SnapshotChunk,
        faults: Option<&dyn FaultInjector>,
    ) -> anyhow::Result<()> {
        use std::os::unix::fs::FileExt;
        let path = state::incoming_snapshot_path(&self.dir);
        let fault = |op| faults.map_or(Ok(()), |f| f.before(op, &path));
        if chunk.offset == 0 {
            fault(IoOp::Create).with_context(|| format!("creating {}", path.display()))?;
            let file = std::fs::File::create(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            self.incoming = Some(file);
        }
        let Some(file) = &self.incoming else {
            anyhow::bail!(
                "a snapshot piece at offset {} with none before",
                chunk.offset
            );
        };
        fault(IoOp::Append)
            .and_then(|()| file.write_all_at(&chunk.data, chunk.offset))
            .with_context(|| format!("writing {}", path.display()))?;
        if chunk.last {
            let file = self.incoming.take().expect("checked above");
            let done = state::snapshot_path(&self.dir, chunk.meta.index);
            fault(IoOp::Sync).with_context(|| format!("syncing {}", path.display()))?;
            state::put_snapshot_file_in_place(&file, &path, &done)?;
        }
        Ok(())
    }

    /// Forgets a snapshot transfer that could not be kept, and its file.
    fn drop_incoming_snapshot(&mut self) {
        self.incoming = None;
        let _ = std::fs::remove_file(state::incoming_snapshot_path(&self.dir));
    }

    /// What [`Node::status`](super::Node::status) shows of this group.
    fn status(&self, id: GroupId) -> GroupStatus {
        let r = &self.raft;
        let membership = r.membership();
        GroupStatus {
            group: id,
            role: match r.role() {
                Role::Leader => "leader",
                Role::Follower => "follower",
                Role::Candidate => "candidate",
                Role::PreCandidate => "pre-candidate",
            }
            .to_string(),
            term: r.term(),
            leader: r.leader(),
            commit: r.log().committed(),
            applied: self.machine.applied(),
            last_index: r.log().last_index(),
            snapshot_index: r.log().snapshot().index,
            voters: membership.voters.iter().copied().collect(),
            learners: membership.learners.iter().copied().collect(),
            match_index: if r.role() == Role::Leader {
                r.match_indexes()
            } else {
                BTreeMap::new()
            },
            leader_commit: r.leader_commit(),
            epoch: r.membership_index(),
            config_committed: r.membership_index() <= r.log().committed(),
            quiesced: r.quiesced(),
            heard_at_us: self.heard_at_us.max(r.heard_from_quorum_at()),
        }
    }

    /// Applies what `ready` committed and answers whoever waits on it; returns the peer
    /// addresses the entries recorded. A snapshot from the leader goes to the worker to be
    /// installed (`jobs`): building its engine takes a second per 100 MB or so, which would
    /// hold up every group of the node on this thread. The group's log goes on meanwhile
    /// (appends, acknowledgements: a new replica catches up while it installs); what it
    /// commits waits in `installing` until [`Runner::snapshot_installed`].
    fn apply(
        &mut self,
        group: GroupId,
        ready: raft::Ready,
        jobs: &SyncSender<(GroupId, Job)>,
    ) -> anyhow::Result<Vec<(NodeId, String)>> {
        let mut peers = Vec::new();
        if let Some(snapshot) = &ready.snapshot {
            // What this node proposed up to there is covered by a snapshot from another
            // leader: whether each landed is not known here.
            let covered: Vec<Index> = self
                .proposals
                .range(..=snapshot.meta.index)
                .map(|(i, _)| *i)
                .collect();
            for index in covered {
                if let Some(p) = self.proposals.remove(&index) {
                    let _ = p
                        .reply
                        .send(Err(NodeError::Unknown(UnknownOutcome::CoveredBySnapshot)));
                }
            }
            let index = snapshot.meta.index;
            let job = self.machine.install_job(snapshot.data.clone());
            let generation = job.generation();
            let queued = match self.installing {
                // One at a time: a newer snapshot while one installs is installed here.
                Some(_) => Err(job),
                None => jobs
                    .try_send((group, Job::Install(job, Instant::now())))
                    .map_err(|e| {
                        let (stdmpsc::TrySendError::Full((_, job))
                        | stdmpsc::TrySendError::Disconnected((_, job))) = e;
                        match job {
                            Job::Install(job, _) => job,
                            Job::Build(_) => unreachable!("an install was sent"),
                        }
                    }),
            };
            match queued {
                Ok(()) => {
                    self.installing = Some(Deferred {
                        index,
                        generation,
                        committed: Vec::new(),
                        read_states: Vec::new(),
                    })
                }
                Err(job) => {
                    // The worker's queue is full (or another install is under way): here.
                    let started = Instant::now();
                    let built = job.run()?;
                    let deferred = self.installing.take();
                    peers = self.finish_install(group, index, built, started)?;
                    if let Some(d) = deferred {
                        // Its entries are at or below the newer snapshot's index, or after it.
                        peers.extend(self.apply_committed(d.committed, d.read_states)?);
                    }
                }
            }
        }
        if let Some(deferred) = &mut self.installing {
            deferred.committed.extend(ready.committed);
            deferred.read_states.extend(ready.read_states);
            return Ok(peers);
        }
        peers.extend(self.apply_committed(ready.committed, ready.read_states)?);
        Ok(peers)
    }

    /// Switches the state machine to the engine built from the snapshot at `index`; returns
    /// the peer addresses it records.
    fn finish_install(
        &mut self,
        group: GroupId,
        index: Index,
        built: state::Installed,
        started: Instant,
    ) -> anyhow::Result<Vec<(NodeId, String)>> {
        self.machine.adopt(built)?;
        // The WAL's mark for it was synced before it was installed.
        state::remove_snapshots_before(&self.dir, index)?;
        tracing::info!(
            group,
            index,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "installed a snapshot from the leader"
        );
        Ok(self.machine.peers()?)
    }

    /// Applies committed entries, answers their proposals, and serves the reads they let
    /// through; returns the peer addresses the entries recorded.
    fn apply_committed(
        &mut self,
        committed: Vec<raft::Entry>,
        read_states: Vec<raft::ReadState>,
    ) -> anyhow::Result<Vec<(NodeId, String)>> {
        let mut replies: BTreeMap<Index, Reply> =
            self.machine.apply(&committed)?.into_iter().collect();
        let peers: Vec<(NodeId, String)> = replies
            .values()
            .filter_map(|r| match r {
                Reply::Peer { id, address } => Some((*id, address.clone())),
                _ => None,
            })
            .collect();
        for entry in &committed {
            if let Some(p) = self.proposals.remove(&entry.index) {
                let result = if p.term == entry.term {
                    replies
                        .remove(&entry.index)
                        .ok_or(NodeError::Unknown(UnknownOutcome::NoReply))
                } else {
                    Err(NodeError::Dropped)
                };
                let _ = p.reply.send(result);
            }
        }
        for rs in read_states {
            let context = u64::from_le_bytes(rs.context[..].try_into().unwrap_or_default());
            let Some(reply) = self.reads.remove(&context) else {
                continue;
            };
            match rs.index {
                Some(index) => self.waiting_reads.push((index, reply)),
                None => {
                    let leader = self.raft.leader();
                    let _ =
                        reply.send(Err(NodeError::Unavailable(Unavailable::ReadNotConfirmed {
                            leader,
                        })));
                }
            }
        }
        let applied = self.machine.applied();
        let staleness = Staleness {
            entries_behind: self.raft.log().committed().saturating_sub(applied),
            since_leader_ms: None,
        };
        let (due, waiting) = std::mem::take(&mut self.waiting_reads)
            .into_iter()
            .partition(|(index, _)| *index <= applied);
        self.waiting_reads = waiting;
        for (_, reply) in due {
            let _ = reply.send(Ok(staleness));
        }
        Ok(peers)
    }

    /// Asks the snapshot worker to sync the engine once the log holds `every.0` applied
    /// entries past its snapshot, or `every.1` bytes (see [`Raft::compaction_due`]), and the
    /// log is compacted when that is done ([`Runner::snapshot_built`]). A snapshot's bytes are
    /// built only when a follower waits for one ([`Raft::wants_snapshot`]): writing out the
    /// whole partition at every compaction cost more than the log it replaced.
    fn maybe_snapshot(
        &mut self,
        group: GroupId,
        jobs: &SyncSender<(GroupId, Job)>,
        every: (u64, u64),
        now_us: raft::Micros,
    ) {
        let applied = self.machine.applied();
        let bytes_max = usize::try_from(every.1).unwrap_or(usize::MAX);
        // A follower waiting for a fresh snapshot wants one now, due or not.
        let wanted = self.raft.wants_snapshot();
        if self.snapshotting
            || self.installing.is_some()
            || !(wanted || self.raft.compaction_due(applied, every.0, bytes_max))
        {
            return;
        }
        if self.snapshot_not_before.is_some_and(|t| now_us < t) {
            return; // the last attempt failed: wait before the next
        }
        if !wanted && self.compaction_not_before.is_some_and(|t| now_us < t) {
            return; // the last one dropped nothing: a follower needed its entries
        }
        if applied != self.raft.log().applied() {
            // After a restart the engine can be ahead of what Raft has handed out again (the
            // commit index is re-learnt from the leader): wait until they agree, so that the
            // snapshot's index is one Raft has applied.
            return;
        }
        let job = match wanted {
            true => self.machine.snapshot_job(),
            false => self.machine.sync_job(),
        };
        if jobs.try_send((group, Job::Build(job))).is_ok() {
            self.snapshotting = true;
        }
    }
}

impl Runner {
    /// The worker synced a group's engine (and built a snapshot, if one was asked for):
    /// compacts the group's log up to the index the engine holds.
    ///
    /// Crash safety, step by step: the worker synced the engine (after taking its view, when
    /// it built a snapshot: so it holds everything the snapshot stands for) and saved the
    /// snapshot, if any, to a file named by its index, synced; here the WAL mark is written
    /// and synced (inside `purge`), and only then are older snapshot files and WAL segments
    /// deleted. A crash anywhere leaves a WAL mark whose snapshot file exists or whose index
    /// the engine holds durably; a restart needs nothing more (`open_group`).
    fn snapshot_built(&mut self, group: GroupId, built: Built) -> anyhow::Result<()> {
        let Some(g) = self.groups.get_mut(&group) else {
            return Ok(());
        };
        g.snapshotting = false;
        let (index, data) = match built {
            Ok(built) => built,
            Err(error) => {
                // Not fatal: the log just stays longer; try again after a pause.
                tracing::error!(group, %error, "building a snapshot failed");
                let retry = SNAPSHOT_RETRY_DELAY.as_micros() as u64;
                g.snapshot_not_before = Some(self.clock.now_us() + retry);
                return Ok(());
            }
        };
        let before = g.raft.log().snapshot().index;
        let bytes = data.as_ref().map(Bytes::len);
        // An index ahead of what Raft applied cannot come after the check that started the
        // job, but compacting past `applied` would drop unapplied entries.
        let taken = index <= g.raft.log().applied()
            && match data {
                Some(data) => g.raft.compact(index, data),
                None => g.raft.compact_log(index) > before,
            };
        if !taken && bytes.is_none() {
            let retry = COMPACTION_RETRY_DELAY.as_micros() as u64;
            g.compaction_not_before = Some(self.clock.now_us() + retry);
        }
        if !taken {
            // A snapshot from the leader was installed meanwhile, or the log is compacted
            // past `index` already. A built file goes, unless the WAL's mark names it.
            tracing::debug!(group, index, "a built snapshot is not needed any more");
            if index != g.raft.log().snapshot().index {
                let _ = std::fs::remove_file(state::snapshot_path(&g.dir, index));
            }
            return Ok(());
        }
        let snapshot = g.raft.log().snapshot().clone();
        self.wal.set_snapshot(group, &snapshot, false);
        let purged = self.wal.purge()?;
        state::remove_snapshots_before(&g.dir, snapshot.index)?;
        tracing::info!(
            group,
            index = snapshot.index,
            snapshot_bytes = bytes,
            segments_purged = purged,
            "compacted the log"
        );
        Ok(())
    }
}

/// Work for the snapshot worker, off the Raft thread.
pub(super) enum Job {
    /// Sync a group's engine (and build a snapshot of it, if one was asked for), to compact
    /// its log with.
    Build(state::SnapshotJob),
    /// Build the engine of a snapshot from the leader (asked for at the instant given).
    Install(state::InstallJob, Instant),
}

/// What a group committed while the worker installed a snapshot from its leader.
pub(super) struct Deferred {
    /// The snapshot's index, and the generation its engine is built in.
    index: Index,
    generation: u64,
    committed: Vec<raft::Entry>,
    read_states: Vec<raft::ReadState>,
}

/// An installed snapshot's engine (and when it was asked for), or the generation it was
/// built in and why it failed.
pub(super) type InstallResult = Result<(state::Installed, Instant), (u64, String)>;

impl Job {
    /// Runs the job; returns the event that hands its result to the Raft thread.
    pub(super) fn run(self, group: GroupId) -> Event {
        // A panic here must not leave the group waiting for a result that never comes.
        fn caught<T>(
            what: &str,
            job: impl FnOnce() -> Result<T, state::StateError>,
        ) -> Result<T, String> {
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)) {
                Ok(result) => result.map_err(|e| format!("{e:#}")),
                Err(_) => Err(format!("the snapshot worker panicked while {what}")),
            }
        }
        match self {
            Job::Build(job) => {
                let started = Instant::now();
                let built = caught("building a snapshot", || job.run());
                let elapsed_ms = started.elapsed().as_millis() as u64;
                match &built {
                    Ok((index, Some(data))) => {
                        let bytes = data.len();
                        tracing::info!(group, index, bytes, elapsed_ms, "built a snapshot");
                    }
                    Ok((index, None)) => {
                        tracing::debug!(group, index, elapsed_ms, "synced the engine");
                    }
                    Err(_) => {}
                }
                Event::SnapshotBuilt(group, built)
            }
            Job::Install(job, asked) => {
                let generation = job.generation();
                let installed = caught("installing a snapshot", || job.run())
                    .map(|built| (built, asked))
                    .map_err(|e| (generation, e));
                Event::SnapshotInstalled(group, installed)
            }
        }
    }
}

impl Runner {
    /// A snapshot from the leader the worker installed: the group's state machine switches
    /// to it and applies what the group committed meanwhile. A failed install stops the node
    /// (as one on this thread did): the snapshot is durable and the WAL names it, so a
    /// restart installs it again.
    fn snapshot_installed(&mut self, group: GroupId, result: InstallResult) -> anyhow::Result<()> {
        let Some(g) = self.groups.get_mut(&group) else {
            // Removed meanwhile: its directory went with it.
            return Ok(());
        };
        let expected = g.installing.as_ref().map(|d| (d.generation, d.index));
        let (built, asked) = match result {
            Ok((built, asked)) if Some((built.generation(), built.applied())) == expected => {
                (built, asked)
            }
            Ok((stale, _)) => {
                // A newer snapshot was installed on this thread meanwhile (or this is the
                // install of a replica since removed and created again).
                g.machine.discard(stale);
                return Ok(());
            }
            Err((generation, error)) if expected.is_some_and(|(g, _)| g == generation) => {
                anyhow::bail!("installing the snapshot of group {group}: {error}")
            }
            Err(_) => return Ok(()),
        };
        let deferred = g.installing.take().expect("expected above");
        let mut peers = g.finish_install(group, deferred.index, built, asked)?;
        peers.extend(g.apply_committed(deferred.committed, deferred.read_states)?);
        self.learn_peers(peers);
        Ok(())
    }
}

/// The snapshot worker: builds the snapshots groups ask for and installs those from their
/// leaders, one at a time, and hands each to the Raft thread through its inbox. One thread
/// per node, however many groups it hosts.
pub(super) fn snapshot_worker(jobs: stdmpsc::Receiver<(GroupId, Job)>, inbox: SyncSender<Event>) {
    for (group, job) in jobs {
        if inbox.send(job.run(group)).is_err() {
            return; // the Raft thread has stopped
        }
    }
}
