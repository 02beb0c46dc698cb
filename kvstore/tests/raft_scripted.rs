//! Raft scenarios scripted step by step, for the properties that random runs rarely reach.
//!
//! The network here delivers every message, one at a time, only between the nodes that are
//! "up"; nothing ticks unless the script says so, and elections are started by handing a node
//! `TimeoutNow`. Each test records every entry each node hands out as committed and checks at
//! the end that no two nodes committed different entries at one index (state machine safety).
//!
//! - **Figure 8** of the Raft paper: why a leader counts replicas only for entries of its own
//!   term. Five nodes, `append_entries_max` 1, so that an old entry reaches a majority on its
//!   own before the new leader's entry does: the moment a wrong commit rule would commit it.
//! - **Leader leases**: while a leader may serve reads from its lease, no other node becomes
//!   leader, across every phase of the election and check-quorum timers (many seeds), and a
//!   voter that restarts does not forget the lease it granted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use kvstore::raft::{Body, Config, Index, Message, NodeId, Raft, ReadState, Restored, Role, Term};

fn config(id: NodeId, quiesce: bool) -> Config {
    Config {
        append_entries_max: 1,
        quiesce,
        // Small chunks, so that a snapshot of a few hundred bytes takes many.
        snapshot_chunk_bytes_max: SNAPSHOT_CHUNK,
        snapshot_chunks_inflight_max: SNAPSHOT_WINDOW,
        snapshot_stale_entries: SNAPSHOT_STALE_ENTRIES,
        compaction_catch_up_entries: CATCH_UP_ENTRIES,
        compaction_catch_up_bytes: CATCH_UP_BYTES,
        ..Config::new(id)
    }
}

const SNAPSHOT_CHUNK: usize = 10;
const SNAPSHOT_WINDOW: usize = 4;
/// A snapshot with more entries than this after it is stale: a follower gets a fresh one.
const SNAPSHOT_STALE_ENTRIES: u64 = 20;
/// A leader compacting without a snapshot keeps the entries of a follower this close behind.
const CATCH_UP_ENTRIES: u64 = 10;
/// ... and whose missing entries hold at most this many bytes.
const CATCH_UP_BYTES: usize = 1_000;

struct Net {
    nodes: BTreeMap<NodeId, Raft>,
    up: BTreeSet<NodeId>,
    queue: VecDeque<Message>,
    /// (index -> term) of every entry each node reported committed.
    committed: BTreeMap<NodeId, BTreeMap<Index, Term>>,
    /// Read states each node handed out, in order.
    reads: BTreeMap<NodeId, Vec<ReadState>>,
    /// Each node's clock, in ticks: a node that ticks alone runs ahead (it is all the time
    /// there is here), one that is paused falls behind until [`Net::pass_time`].
    clocks: BTreeMap<NodeId, u64>,
    seed: u64,
    /// Idle groups quiesce (see `Raft::quiesced`).
    quiesce: bool,
    /// Each node's pieces of a snapshot from the leader (the runtime's part).
    incoming: BTreeMap<NodeId, Vec<u8>>,
}

impl Net {
    fn new(n: u64) -> Net {
        Net::seeded(n, 0)
    }

    fn seeded(n: u64, seed: u64) -> Net {
        Net::with(n, seed, false)
    }

    fn quiescing(n: u64) -> Net {
        Net::with(n, 0, true)
    }

    fn with(n: u64, seed: u64, quiesce: bool) -> Net {
        let ids: Vec<NodeId> = (1..=n).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                let restored = Restored::bootstrap(ids.clone());
                (id, Raft::new(config(id, quiesce), restored, seed))
            })
            .collect();
        Net {
            nodes,
            up: ids.iter().copied().collect(),
            queue: VecDeque::new(),
            committed: BTreeMap::new(),
            reads: BTreeMap::new(),
            clocks: ids.iter().map(|&id| (id, 0)).collect(),
            seed,
            quiesce,
            incoming: BTreeMap::new(),
        }
    }

    /// Restarts `id` from its state: what a node that had persisted everything would have.
    fn restart(&mut self, id: NodeId) {
        let old = &self.nodes[&id];
        let log = old.log();
        let restored = Restored {
            hard_state: old.hard_state(),
            snapshot: log.snapshot().clone(),
            snapshot_data: Some(Bytes::new()),
            entries: log.entries_from(log.first_index()).cloned().collect(),
        };
        let node = Raft::new(config(id, self.quiesce), restored, self.seed + 1);
        self.nodes.insert(id, node);
    }

    /// One tick on every node (their clocks run at one rate), then delivery.
    fn tick_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.tick(id);
        }
        self.settle();
    }

    /// One tick on node `id`, its clock one tick on.
    fn tick(&mut self, id: NodeId) {
        let clock = self.clocks.get_mut(&id).expect("a node");
        *clock += 1;
        let now = *clock * Config::new(id).tick_us;
        self.nodes.get_mut(&id).expect("a node").tick(now);
    }

    /// Node `id`'s clock, in microseconds.
    fn now_us(&self, id: NodeId) -> u64 {
        self.clocks[&id] * Config::new(id).tick_us
    }

    /// Time passes for node `id` without it ticking (its process was stopped).
    fn pass_time(&mut self, id: NodeId, ticks: u64) {
        *self.clocks.get_mut(&id).expect("a node") += ticks;
    }

    fn has_lease(&self, id: NodeId) -> bool {
        self.node(id).has_lease(self.now_us(id))
    }

    fn read_lease(&mut self, id: NodeId) {
        let now = self.now_us(id);
        let node = self.nodes.get_mut(&id).expect("a node");
        node.read_lease(Bytes::from_static(b"r"), now);
    }

    /// The highest-term leader other than `id`, if any.
    fn other_leader(&self, id: NodeId) -> Option<NodeId> {
        self.nodes
            .iter()
            .filter(|(&other, n)| other != id && n.role() == Role::Leader)
            .max_by_key(|(_, n)| n.term())
            .map(|(&other, _)| other)
    }

    fn node(&self, id: NodeId) -> &Raft {
        &self.nodes[&id]
    }

    /// Only these nodes talk to each other from now on; messages in flight to or from the
    /// others are lost.
    fn set_up(&mut self, up: &[NodeId]) {
        self.up = up.iter().copied().collect();
        let up = &self.up;
        self.queue
            .retain(|m| up.contains(&m.from) && up.contains(&m.to));
    }

    /// Collects every node's Ready (the "disk" is the node's own memory here: nothing is
    /// restarted) and queues the messages between nodes that are up.
    fn collect(&mut self) {
        for (&id, node) in self.nodes.iter_mut() {
            while node.has_ready() {
                let ready = node.ready();
                let incoming = self.incoming.entry(id).or_default();
                let mut received = None;
                for c in &ready.snapshot_chunks {
                    if c.offset == 0 {
                        incoming.clear();
                    }
                    incoming.extend_from_slice(&c.data);
                    if c.last {
                        received = Some(c.meta.index);
                    }
                }
                if let Some(snap) = &ready.snapshot {
                    let data = Bytes::from(std::mem::take(incoming));
                    node.supply_snapshot_data(snap.meta.index, data);
                }
                let log = self.committed.entry(id).or_default();
                for e in &ready.committed {
                    log.insert(e.index, e.term);
                }
                self.reads.entry(id).or_default().extend(ready.read_states);
                for m in ready.messages {
                    if self.up.contains(&m.from) && self.up.contains(&m.to) {
                        self.queue.push_back(m);
                    }
                }
                node.advance();
                if let Some(index) = received {
                    node.snapshot_received(index);
                }
            }
        }
    }

    /// Delivers messages one at a time until none are left or `stop` holds after a delivery.
    /// Returns whether `stop` held.
    fn deliver_until(&mut self, mut stop: impl FnMut(&Net) -> bool) -> bool {
        self.collect();
        while let Some(m) = self.queue.pop_front() {
            self.nodes.get_mut(&m.to).expect("a node").step(m);
            self.collect();
            if stop(self) {
                return true;
            }
        }
        false
    }

    fn settle(&mut self) {
        self.deliver_until(|_| false);
    }

    /// Tells `id` to campaign now (as a leader transfer would) and delivers until it wins,
    /// up to three times: a first try may only teach it a voter's higher term.
    fn elect(&mut self, id: NodeId) {
        for _ in 0..3 {
            if self.node(id).role() == Role::Leader {
                return;
            }
            let term = self.node(id).term();
            self.nodes.get_mut(&id).unwrap().step(Message {
                from: id,
                to: id,
                term,
                body: Body::TimeoutNow,
            });
            self.deliver_until(|net| net.node(id).role() == Role::Leader);
        }
        assert_eq!(
            self.node(id).role(),
            Role::Leader,
            "node {id} won no election"
        );
    }

    /// Delivers what is in flight, then ticks the leader `id` until it sends heartbeats and
    /// delivers those: followers learn its latest commit index from them.
    fn heartbeat(&mut self, id: NodeId) {
        self.settle();
        for _ in 0..Config::new(id).heartbeat_ticks {
            self.tick(id);
        }
        self.settle();
    }

    /// Ticks a leader that is cut off until check-quorum makes it step down.
    fn step_down(&mut self, id: NodeId) {
        for _ in 0..100 {
            if self.node(id).role() != Role::Leader {
                return;
            }
            self.tick(id);
            self.collect();
        }
        panic!("node {id} did not step down without a quorum");
    }

    fn propose(&mut self, id: NodeId, data: &'static str) -> Index {
        self.nodes
            .get_mut(&id)
            .unwrap()
            .propose(Bytes::from(data))
            .expect("the leader accepts")
    }

    fn assert_state_machine_safety(&self) {
        let mut agreed: BTreeMap<Index, (NodeId, Term)> = BTreeMap::new();
        for (&id, log) in &self.committed {
            for (&index, &term) in log {
                let (first, t) = *agreed.entry(index).or_insert((id, term));
                assert_eq!(
                    t, term,
                    "nodes {first} and {id} committed different entries at index {index}"
                );
            }
        }
    }
}

#[test]
fn an_old_term_entry_on_a_majority_is_not_committed_until_an_entry_of_the_leaders_term_is() {
    let mut net = Net::new(5);

    // Node 1 leads and everyone has its first entries.
    net.elect(1);
    net.heartbeat(1);
    let base = net.node(1).log().last_index();
    assert_eq!(net.node(5).log().committed(), base);

    // (a) Node 1 appends `a` and gets it to node 2 only.
    net.set_up(&[1, 2]);
    let a = net.propose(1, "a");
    assert_eq!(a, base + 1);
    net.settle();
    assert_eq!(net.node(2).log().last_index(), a);
    let term_a = net.node(1).term();

    // (b) Node 5 wins an election with 3 and 4 and appends its own entry at index `a`, but
    // is cut off before it sends it anywhere.
    net.set_up(&[3, 4, 5]);
    net.elect(5);
    net.set_up(&[]);
    let term_5 = net.node(5).term();
    assert_eq!(
        net.node(5).log().term(a),
        Some(term_5),
        "5's no-op sits at index a"
    );

    // (c) Node 1 comes back with 2 and 3 and wins a later term (its first try may only
    // learn node 3's term). It sends `a` to node 3, one entry per append.
    net.set_up(&[]);
    net.step_down(1);
    net.set_up(&[1, 2, 3]);
    net.elect(1);
    let term_c = net.node(1).term();
    assert!(term_c > term_5);
    let noop_c = net.node(1).log().last_index();
    assert_eq!(noop_c, a + 1);
    let on_majority = net.deliver_until(|net| {
        net.node(3).log().term(a) == Some(term_a) && net.node(1).match_indexes()[&3] >= a
    });
    assert!(on_majority, "node 3 took `a` and node 1 heard of it");
    // `a` is on nodes 1, 2 and 3, a majority, but it is of an old term: not committed.
    assert!(
        net.node(1).log().committed() < a,
        "node 1 committed index {a} of term {term_a} by counting replicas in term {term_c}"
    );

    // (d) Node 1 is cut off before its own entry reaches a majority. Node 5, whose entry at
    // `a` has a later term than `a`, wins with 3 and 4 and overwrites `a` on them.
    net.set_up(&[]);
    net.step_down(5);
    net.set_up(&[3, 4, 5]);
    net.elect(5);
    net.heartbeat(5);
    assert_eq!(
        net.node(3).log().term(a),
        Some(term_5),
        "`a` was overwritten"
    );
    assert!(net.node(3).log().committed() >= a);

    // Everyone reconnects: node 5's entries win everywhere, and no node ever reported `a`
    // (term `term_a`) as committed.
    net.set_up(&[1, 2, 3, 4, 5]);
    let b = net.propose(5, "b");
    net.heartbeat(5);
    for id in 1..=5 {
        assert_eq!(net.node(id).log().committed(), b, "node {id}");
        assert_eq!(net.node(id).log().term(a), Some(term_5), "node {id}");
    }
    net.assert_state_machine_safety();
}

#[test]
fn once_an_entry_of_its_term_is_on_a_majority_the_leader_commits_the_old_ones_with_it() {
    let mut net = Net::new(5);
    net.elect(1);
    net.settle();
    net.set_up(&[1, 2]);
    let a = net.propose(1, "a");
    net.settle();
    // Node 3 leads briefly, appending nothing anyone keeps.
    net.set_up(&[3, 4, 5]);
    net.elect(3);
    net.set_up(&[]);
    // Node 1 wins again with 2 and 4 (3 and 5 stay cut off) and replicates everything.
    net.step_down(1);
    net.set_up(&[1, 2, 4]);
    net.elect(1);
    net.heartbeat(1);
    let last = net.node(1).log().last_index();
    assert!(last > a);
    assert_eq!(net.node(1).log().committed(), last);
    assert_eq!(net.node(4).log().committed(), last);
    net.assert_state_machine_safety();
}

/// Cuts node 1, leader of a 3-node group, off from the rest just after it sent a heartbeat
/// `offset` ticks into its check-quorum period; the answers to that heartbeat reach it
/// `delay` ticks later. Then ticks until node 2 or 3 leads and has committed an entry. At
/// every tick, node 1 holds a lease only if no other node leads, and then answers a lease
/// read at once. Returns whether node 1 served a read from its lease after the cut (so that
/// the test knows the window was exercised).
fn cut_off_the_leader(seed: u64, offset: u32, delay: u32) -> bool {
    let mut net = Net::seeded(3, seed);
    net.elect(1);
    for _ in 0..offset {
        net.tick_all();
    }
    // Node 1 ticks alone until it sends a heartbeat round; the followers get it at once.
    net.settle();
    let mut round_sent = false;
    for _ in 0..Config::new(1).heartbeat_ticks {
        net.tick(1);
        net.collect();
        round_sent |= net
            .queue
            .iter()
            .any(|m| matches!(m.body, Body::Heartbeat { .. }));
    }
    assert!(round_sent, "seed {seed}: node 1 sent a heartbeat");
    net.deliver_until(|net| {
        net.queue
            .iter()
            .all(|m| matches!(m.body, Body::HeartbeatResponse { .. }))
    });
    let answers: Vec<Message> = net.queue.drain(..).collect();
    net.set_up(&[2, 3]);
    for _ in 0..delay {
        net.tick_all();
    }
    for m in answers {
        net.nodes.get_mut(&1).unwrap().step(m);
    }
    net.collect();
    assert!(
        net.has_lease(1) || delay > 0,
        "seed {seed}: a quorum answered: lease"
    );
    let term = net.node(1).term();
    let mut served_from_lease = false;
    for tick in 0..200 {
        let other = net.other_leader(1);
        if net.has_lease(1) {
            assert_eq!(
                other, None,
                "seed {seed}, offset {offset}, tick {tick}: node 1 holds a lease while \
                 node {other:?} leads"
            );
            // And a lease read is answered at once, with no message sent.
            let before = net.reads.get(&1).map_or(0, Vec::len);
            net.read_lease(1);
            net.collect();
            assert_eq!(net.reads[&1].len(), before + 1, "answered at once");
            assert!(net.reads[&1][before].index.is_some());
            served_from_lease = true;
        }
        if let Some(leader) = other {
            if net.node(leader).log().committed() > net.node(1).log().committed() {
                assert!(net.node(leader).term() > term);
                assert!(!net.has_lease(1));
                net.assert_state_machine_safety();
                return served_from_lease;
            }
        }
        net.tick_all();
    }
    panic!("seed {seed}, offset {offset}: nodes 2 and 3 elected no leader");
}

#[test]
fn no_other_node_leads_while_a_leader_holds_its_lease() {
    let mut windows = 0;
    for seed in 0..20 {
        for offset in 0..Config::new(1).election_ticks_min {
            for delay in 0..5 {
                windows += u32::from(cut_off_the_leader(seed, offset, delay));
            }
        }
    }
    assert!(
        windows > 500,
        "leases were exercised after the cut ({windows} runs)"
    );
}

#[test]
fn a_voter_that_restarts_keeps_refusing_candidates_for_an_election_timeout() {
    for seed in 0..20 {
        // Node 1 leads; node 2 is cut off, so node 3's answers alone keep node 1's lease.
        let mut net = Net::seeded(3, seed);
        net.elect(1);
        net.heartbeat(1);
        net.set_up(&[1, 3]);
        // Tick until node 2's election timer fires for the second time (its first pre-vote
        // was lost): it sends pre-votes this tick.
        let mut pre_votes = Vec::new();
        let mut attempts = 0;
        while attempts < 2 {
            for id in [1, 2, 3] {
                net.tick(id);
            }
            let node2 = net.nodes.get_mut(&2).unwrap();
            let ready = node2.ready();
            node2.advance();
            pre_votes = ready.messages;
            pre_votes.retain(|m| matches!(m.body, Body::PreVote { .. }));
            attempts += usize::from(!pre_votes.is_empty());
            net.settle();
        }
        assert!(net.has_lease(1), "seed {seed}: node 3 keeps node 1's lease");
        // Now node 3 crashes and restarts, forgetting that it heard from node 1, and node 1
        // is cut off; node 2's pre-vote reaches node 3.
        net.restart(3);
        net.set_up(&[2, 3]);
        net.queue
            .extend(pre_votes.into_iter().filter(|m| m.to == 3));
        net.settle();
        for tick in 0.. {
            if net.has_lease(1) {
                assert_eq!(
                    net.other_leader(1),
                    None,
                    "seed {seed}, tick {tick}: the restarted node 3 voted for node 2 while \
                     node 1's lease held"
                );
            } else if net.other_leader(1).is_some() {
                break;
            }
            assert!(tick < 200, "seed {seed}: node 2 never won");
            net.tick_all();
        }
    }
}

#[test]
fn a_leader_that_hands_over_leadership_gives_up_its_lease_for_the_term() {
    let mut net = Net::new(3);
    net.elect(1);
    net.heartbeat(1);
    assert!(net.has_lease(1));
    net.nodes.get_mut(&1).unwrap().transfer_leader(2);
    assert!(!net.has_lease(1), "no lease while transferring");
    // Node 2 gets TimeoutNow and campaigns, but its vote requests are held up in the
    // network, and it is cut off.
    let campaigning = net.deliver_until(|net| net.node(2).role() == Role::Candidate);
    assert!(campaigning, "node 2 got TimeoutNow");
    let mut held: Vec<Message> = net.queue.drain(..).collect();
    held.retain(|m| m.from == 2 && m.to == 3 && matches!(m.body, Body::Vote { .. }));
    assert!(!held.is_empty());
    // Node 1 still leads with node 3, and the transfer times out. Node 2 is paused (a
    // process stopped, not a slow clock), so its held request is still its latest.
    net.set_up(&[1, 3]);
    for _ in 0..2 * Config::new(1).election_ticks_max {
        for id in [1, 3] {
            net.tick(id);
        }
        net.settle();
        assert_eq!(net.node(1).role(), Role::Leader);
        assert!(
            !net.has_lease(1),
            "a lease after telling node 2 to campaign"
        );
    }
    // The held vote request arrives: node 3 grants it (the leader asked for this election),
    // so node 2 leads while node 1 still thinks it does.
    net.set_up(&[2, 3]);
    net.queue.extend(held);
    net.settle();
    assert_eq!(net.other_leader(1), Some(2));
    assert_eq!(net.node(1).role(), Role::Leader);
    assert!(!net.has_lease(1));
}

/// A leader whose runtime stalls (SIGSTOP, a long fsync) misses ticks but not time. Nodes 2
/// and 3 elect a leader and commit while node 1 is stopped; when it wakes, before it hears
/// of them, it must not serve a read from the lease it held before the stall. (Dated in
/// ticks, the lease would still hold: node 1 ticked not once while it was stopped.)
#[test]
fn a_leader_that_stalled_wakes_without_its_lease() {
    for seed in 0..20 {
        let mut net = Net::seeded(3, seed);
        net.elect(1);
        net.heartbeat(1);
        assert!(net.has_lease(1), "seed {seed}");
        let committed = net.node(1).log().committed();
        net.set_up(&[2, 3]);
        let mut stalled = 0;
        let leader = loop {
            match net.other_leader(1) {
                Some(l) if net.node(l).log().committed() > committed => break l,
                _ => {}
            }
            assert!(
                stalled < 200,
                "seed {seed}: nodes 2 and 3 elected no leader"
            );
            for id in [2, 3] {
                net.tick(id);
            }
            net.settle();
            net.pass_time(1, 1);
            stalled += 1;
        };
        assert!(net.node(leader).term() > net.node(1).term());
        // Node 1 wakes, still sure it leads, and a lease read is the first thing it does.
        assert_eq!(net.node(1).role(), Role::Leader);
        let before = net.reads.get(&1).map_or(0, Vec::len);
        net.read_lease(1);
        net.collect();
        assert_eq!(
            net.reads.get(&1).map_or(0, Vec::len),
            before,
            "seed {seed}: node 1 served a read from its lease after a stall of {stalled} ticks"
        );
        assert!(!net.has_lease(1));
    }
}

/// A stall shorter than the lease leaves it in force: nobody else can have been elected.
#[test]
fn a_short_stall_keeps_the_lease() {
    let mut net = Net::new(3);
    net.elect(1);
    net.heartbeat(1);
    let heard = net.node(1).heard_from_quorum_at();
    assert!(heard.is_some_and(|t| t <= net.now_us(1)), "{heard:?}");
    net.pass_time(1, 2);
    net.read_lease(1);
    net.collect();
    assert_eq!(net.reads[&1].len(), 1, "answered from the lease");
    assert!(net.reads[&1][0].index.is_some());
    // But a clock that goes back voids it.
    let now = net.now_us(1);
    net.nodes
        .get_mut(&1)
        .unwrap()
        .read_lease(Bytes::from_static(b"r"), now - 1);
    net.collect();
    assert_eq!(net.reads[&1].len(), 1, "no lease after the clock went back");
}

// ----- Quiescence ---------------------------------------------------------------------------

/// Ticks every node `ticks` times, delivering after each.
fn idle(net: &mut Net, ticks: u32) {
    for _ in 0..ticks {
        net.tick_all();
    }
}

fn quiesced(net: &Net) -> Vec<NodeId> {
    net.nodes
        .iter()
        .filter(|(_, n)| n.quiesced())
        .map(|(&id, _)| id)
        .collect()
}

/// A quiesced 3-node group led by node 1 (term and commit index returned).
fn quiet_group() -> (Net, Term, Index) {
    let mut net = Net::quiescing(3);
    net.elect(1);
    let index = net.propose(1, "x");
    net.settle();
    idle(&mut net, 3 * Config::new(1).heartbeat_ticks);
    assert_eq!(quiesced(&net), vec![1, 2, 3], "an idle group quiesces");
    assert!(net.node(3).log().committed() >= index);
    let (term, commit) = (net.node(1).term(), net.node(1).log().committed());
    (net, term, commit)
}

#[test]
fn an_idle_group_quiesces_and_stays_quiet_with_its_leader() {
    let (mut net, term, _) = quiet_group();
    // Far past any election timeout: nothing is sent, nobody campaigns.
    for _ in 0..10 * Config::new(1).election_ticks_max {
        for id in 1..=3 {
            net.tick(id);
        }
        net.collect();
        assert!(net.queue.is_empty(), "a quiesced group sends nothing");
    }
    assert_eq!(net.node(1).role(), Role::Leader);
    assert!((1..=3).all(|id| net.node(id).term() == term));
}

#[test]
fn a_proposal_wakes_the_group_and_it_quiesces_again_once_idle() {
    let (mut net, term, commit) = quiet_group();
    let index = net.propose(1, "y");
    assert!(quiesced(&net).is_empty() || quiesced(&net) == vec![2, 3]);
    assert!(!net.node(1).quiesced(), "a proposal wakes the leader");
    net.settle();
    assert!(quiesced(&net).is_empty(), "its append wakes the followers");
    net.heartbeat(1);
    assert!(index > commit && net.node(2).log().committed() >= index);
    idle(&mut net, 3 * Config::new(1).heartbeat_ticks);
    assert_eq!(quiesced(&net), vec![1, 2, 3]);
    assert_eq!(net.node(1).term(), term);
}

#[test]
fn a_quiesced_leader_earns_no_lease_and_a_read_wakes_it_for_a_round() {
    let (mut net, _, commit) = quiet_group();
    for _ in 0..2 * Config::new(1).lease_ticks {
        net.tick(1);
    }
    assert!(!net.has_lease(1), "the lease ran out while it was quiet");
    net.read_lease(1);
    assert!(!net.node(1).quiesced());
    net.settle();
    let read = net.reads[&1].last().expect("the read was answered");
    assert_eq!(read.index, Some(commit));
    assert!(net.has_lease(1), "the round renewed the lease");
}

/// Reads are activity: a leader read steadily stays awake and keeps its lease, so each read
/// is served at once rather than after a round (a quiesced leader holds no lease); once the
/// reads stop, it quiesces again.
#[test]
fn a_leader_read_steadily_stays_awake_with_its_lease_and_quiesces_once_reads_stop() {
    let (mut net, _, _) = quiet_group();
    net.read_lease(1);
    net.settle();
    for _ in 0..4 * Config::new(1).heartbeat_ticks {
        net.tick_all();
        let answered = net.reads[&1].len();
        net.read_lease(1);
        net.collect();
        assert_eq!(net.reads[&1].len(), answered + 1, "served under the lease");
        assert!(!net.node(1).quiesced(), "a leader being read stays awake");
    }
    idle(&mut net, 3 * Config::new(1).heartbeat_ticks);
    assert_eq!(
        quiesced(&net),
        vec![1, 2, 3],
        "quiet again once the reads stop"
    );
}

#[test]
fn a_message_of_an_older_term_does_not_wake_a_quiesced_follower() {
    let (mut net, term, commit) = quiet_group();
    let stale = Message {
        from: 3,
        to: 2,
        term: term - 1,
        body: Body::Heartbeat { commit, round: 1 },
    };
    net.nodes.get_mut(&2).unwrap().step(stale);
    assert!(
        net.node(2).quiesced(),
        "a deposed leader's late message is no news"
    );
}

#[test]
fn a_follower_that_missed_the_quiesce_wakes_the_group_without_a_new_term() {
    let mut net = Net::quiescing(3);
    net.elect(1);
    net.propose(1, "x");
    net.settle();
    let term = net.node(1).term();
    // Node 3 hears nothing from the leader while it quiesces.
    net.set_up(&[1, 2]);
    idle(&mut net, 3 * Config::new(1).heartbeat_ticks);
    assert_eq!(quiesced(&net), vec![1, 2]);
    net.set_up(&[1, 2, 3]);
    // Node 3 times out and asks for pre-votes: they wake the others, the leader's lease
    // refuses them, and its heartbeats bring node 3 back before it can win anything.
    idle(&mut net, 3 * Config::new(1).election_ticks_max);
    assert_eq!(net.node(1).role(), Role::Leader);
    assert!((1..=3).all(|id| net.node(id).term() == term));
    assert_eq!(net.node(3).leader(), Some(1));
    assert_eq!(quiesced(&net), vec![1, 2, 3], "then all of it quiesces");
}

#[test]
fn a_woken_follower_whose_leader_is_gone_elects_another() {
    let (mut net, term, commit) = quiet_group();
    // The runtime wakes nodes 2 and 3 when node 1's node falls silent.
    net.set_up(&[2, 3]);
    for id in [2, 3] {
        net.nodes.get_mut(&id).unwrap().unquiesce();
    }
    for _ in 0..3 * Config::new(1).election_ticks_max {
        for id in [2, 3] {
            net.tick(id);
        }
        net.settle();
    }
    let leader = net.other_leader(1).expect("nodes 2 and 3 elect a leader");
    assert!(net.node(leader).term() > term);
    assert!(net.node(leader).log().committed() > commit);
    net.assert_state_machine_safety();
}

// ----- Snapshot transfer --------------------------------------------------------------------

fn install_snapshot_offsets(net: &Net, to: NodeId) -> Vec<u64> {
    let offsets = net.queue.iter().filter(|m| m.to == to);
    offsets
        .filter_map(|m| match m.body {
            Body::InstallSnapshot { offset, .. } => Some(offset),
            _ => None,
        })
        .collect()
}

/// Node 3 was cut off while the leader's log was compacted past everything it has: the
/// leader has begun to send it a snapshot (at the index returned) of 95 bytes, ten chunks of
/// 10, and the first chunks are on their way.
fn snapshot_under_way() -> (Net, Index) {
    let mut net = Net::new(3);
    net.elect(1);
    net.set_up(&[1, 2]);
    for _ in 0..5 {
        net.propose(1, "x");
    }
    net.heartbeat(1);
    let index = net.node(1).log().committed();
    let data = Bytes::from(vec![7u8; 95]);
    net.nodes.get_mut(&1).unwrap().compact(index, data);
    net.set_up(&[1, 2, 3]);
    for _ in 0..Config::new(1).heartbeat_ticks {
        net.tick(1);
    }
    let started = net.deliver_until(|net| !install_snapshot_offsets(net, 3).is_empty());
    assert!(started, "node 3 gets a snapshot");
    (net, index)
}

#[test]
fn a_snapshot_goes_out_a_window_of_chunks_at_a_time_and_a_lost_chunk_is_sent_again() {
    let (mut net, index) = snapshot_under_way();
    assert_eq!(
        install_snapshot_offsets(&net, 3),
        vec![0, 10, 20, 30],
        "a window of chunks goes out before any answer"
    );
    // The second chunk is lost: the follower takes the first and no more, and the transfer
    // stalls until the leader goes back to what the follower acknowledged.
    let lost = net
        .queue
        .iter()
        .position(|m| matches!(m.body, Body::InstallSnapshot { offset: 10, .. }) && m.to == 3);
    net.queue.remove(lost.unwrap());
    net.settle();
    assert!(net.node(3).log().snapshot().index < index);
    for _ in 0..2 * Config::new(1).election_ticks_min {
        net.tick(1);
        net.settle();
    }
    assert_eq!(net.node(3).log().snapshot().index, index, "installed");
    net.heartbeat(1);
    assert_eq!(net.node(3).log().committed(), index);
}

#[test]
fn a_log_is_due_for_compaction_by_its_entries_or_by_its_bytes() {
    let mut net = Net::new(3);
    net.elect(1);
    for _ in 0..3 {
        net.nodes
            .get_mut(&1)
            .unwrap()
            .propose(Bytes::from(vec![7u8; 1000]))
            .unwrap();
    }
    net.heartbeat(1);
    let leader = net.node(1);
    let applied = leader.log().committed();
    assert!(leader.log().bytes() >= 3000);
    assert!(
        !leader.compaction_due(applied, 1_000, 1 << 20),
        "neither is reached"
    );
    assert!(leader.compaction_due(applied, 3, 1 << 20), "by entries");
    assert!(leader.compaction_due(applied, 1_000, 3000), "by bytes");
    // Entries not applied yet do not count: compacting cannot drop them, and counting them
    // would ask for a snapshot after every applied entry.
    net.set_up(&[1]);
    for _ in 0..5 {
        net.nodes
            .get_mut(&1)
            .unwrap()
            .propose(Bytes::from(vec![7u8; 1000]))
            .unwrap();
    }
    net.settle();
    let leader = net.node(1);
    assert_eq!(
        leader.log().committed(),
        applied,
        "nothing more commits alone"
    );
    assert!(leader.log().bytes() >= 8000);
    assert!(!leader.compaction_due(applied, 1_000, 5000));
}

/// A follower that has just installed one snapshot (not yet handed to its runtime) takes no
/// piece of another in the same batch: the runtime would write it over the first one's file.
#[test]
fn a_follower_takes_no_piece_of_another_snapshot_before_the_installed_one_is_handed_out() {
    use kvstore::raft::{Membership, SnapshotMeta};
    let mut follower = Raft::new(config(2, false), Restored::bootstrap(vec![1, 2, 3]), 0);
    let piece = |index, done| Message {
        from: 1,
        to: 2,
        term: 1,
        body: Body::InstallSnapshot {
            meta: SnapshotMeta {
                index,
                term: 1,
                membership: Membership {
                    voters: [1, 2, 3].into(),
                    learners: Default::default(),
                },
            },
            offset: 0,
            data: Bytes::from_static(b"abc"),
            done,
        },
    };
    follower.step(piece(5, true));
    follower.step(piece(9, false));
    let ready = follower.ready();
    assert!(
        ready.snapshot.is_none(),
        "installed only once the runtime holds every piece"
    );
    let pieces: Vec<(u64, bool)> = (ready.snapshot_chunks.iter())
        .map(|c| (c.meta.index, c.last))
        .collect();
    assert_eq!(
        pieces,
        vec![(5, true)],
        "only the received snapshot's pieces"
    );
    follower.advance();
    follower.snapshot_received(5);
    follower.step(piece(9, false));
    let ready = follower.ready();
    assert_eq!(ready.snapshot.map(|s| s.meta.index), Some(5));
    assert!(
        ready.snapshot_chunks.is_empty(),
        "none of another until then"
    );
}

/// A follower whose runtime could not keep a piece of a snapshot (a full disk) drops the
/// transfer rather than stopping, ignores pieces for an election timeout (no tight loop of
/// retries), and then takes the snapshot again from the start.
#[test]
fn a_follower_that_could_not_keep_a_piece_drops_the_transfer_and_takes_it_again_later() {
    let (mut net, index) = snapshot_under_way();
    // Node 3 takes the first piece; its disk cannot keep it.
    let first = net.queue.iter().position(|m| m.to == 3).unwrap();
    let m = net.queue.remove(first).unwrap();
    let node3 = net.nodes.get_mut(&3).unwrap();
    node3.step(m);
    let ready = node3.ready();
    let lost: Vec<u64> = ready.snapshot_chunks.iter().map(|c| c.offset).collect();
    assert_eq!(lost, vec![0]);
    for m in ready.messages {
        net.queue.push_back(m);
    }
    node3.advance();
    node3.snapshot_lost(index);
    // The rest of the window is ignored: nothing is kept, nothing answered.
    net.settle();
    assert_eq!(net.node(3).log().snapshot().index, 0);
    assert!(net.incoming.get(&3).is_none_or(|b| b.is_empty()));
    // After the leader's stall timeout (and node 3's pause), the transfer starts over and
    // completes.
    for _ in 0..3 * Config::new(1).election_ticks_min {
        net.tick(1);
        net.tick(3);
        net.settle();
    }
    assert_eq!(net.node(3).log().snapshot().index, index, "installed");
    net.heartbeat(1);
    assert_eq!(net.node(3).log().committed(), index);
}

/// Node 3 was cut off while the leader compacted its log at the index returned (a snapshot of
/// 95 bytes) and then logged `after` more entries, all committed by nodes 1 and 2; node 3 is
/// back, and the leader's heartbeat to it is on its way.
fn snapshot_needed_with_entries_after(after: usize) -> (Net, Index) {
    let mut net = Net::new(3);
    net.elect(1);
    net.set_up(&[1, 2]);
    for _ in 0..5 {
        net.propose(1, "x");
    }
    net.heartbeat(1);
    let index = net.node(1).log().committed();
    net.nodes
        .get_mut(&1)
        .unwrap()
        .compact(index, Bytes::from(vec![7u8; 95]));
    for _ in 0..after {
        net.propose(1, "y");
    }
    net.heartbeat(1);
    net.set_up(&[1, 2, 3]);
    for _ in 0..Config::new(1).heartbeat_ticks {
        net.tick(1);
    }
    (net, index)
}

fn snapshots_sent(net: &Net, to: NodeId) -> Vec<Index> {
    let chunks = net.queue.iter().filter(|m| m.to == to);
    let mut indexes: Vec<Index> = chunks
        .filter_map(|m| match &m.body {
            Body::InstallSnapshot { meta, .. } => Some(meta.index),
            _ => None,
        })
        .collect();
    indexes.dedup();
    indexes
}

/// Delivers until node `to` is sent a piece of a snapshot; returns the snapshots' indexes.
fn deliver_until_snapshot(net: &mut Net, to: NodeId) -> Vec<Index> {
    net.deliver_until(|net| !snapshots_sent(net, to).is_empty());
    snapshots_sent(net, to)
}

/// The leader, its snapshot at `index` in hand, sends it to node 3, which installs it and
/// catches up on the log after it.
fn sent_installed_and_caught_up(net: &mut Net, index: Index) {
    assert!(!net.node(1).wants_snapshot());
    assert_eq!(deliver_until_snapshot(net, 3), vec![index]);
    net.settle();
    assert_eq!(net.node(3).log().snapshot().index, index, "installed");
    net.propose(1, "z");
    net.heartbeat(1);
    assert_eq!(net.node(3).log().committed(), net.node(1).log().committed());
    net.assert_state_machine_safety();
}

/// A follower that needs a snapshot while the leader's latest is followed by a short log gets
/// that one at once.
#[test]
fn a_follower_that_needs_a_snapshot_gets_the_latest_while_the_log_after_it_is_short() {
    let (mut net, index) = snapshot_needed_with_entries_after(3);
    assert!(!net.node(1).wants_snapshot());
    assert_eq!(deliver_until_snapshot(&mut net, 3), vec![index]);
    net.settle();
    net.heartbeat(1);
    assert_eq!(net.node(3).log().committed(), net.node(1).log().committed());
}

/// With a long log after the latest snapshot, the leader asks its runtime for a fresh one and
/// sends the follower that, not the stale one and then the long log (or, once the log is
/// compacted under the transfer, a second snapshot).
#[test]
fn a_follower_that_needs_a_snapshot_waits_for_a_fresh_one_while_the_log_after_the_latest_is_long() {
    let (mut net, stale) = snapshot_needed_with_entries_after(25);
    assert_eq!(
        deliver_until_snapshot(&mut net, 3),
        Vec::<Index>::new(),
        "the stale snapshot is not sent"
    );
    assert!(net.node(1).wants_snapshot(), "the leader wants a fresh one");
    assert!(
        !net.node(2).wants_snapshot(),
        "only a leader sends snapshots"
    );
    // The runtime builds it: the follower is sent it at once.
    let fresh = net.node(1).log().committed();
    assert!(fresh > stale + SNAPSHOT_STALE_ENTRIES);
    net.nodes
        .get_mut(&1)
        .unwrap()
        .compact(fresh, Bytes::from(vec![8u8; 95]));
    sent_installed_and_caught_up(&mut net, fresh);
}

/// A runtime that builds no fresh snapshot holds the follower back only for a bound: then
/// the stale one goes, and the follower catches up on the log after it.
#[test]
fn a_follower_waits_for_a_fresh_snapshot_only_for_a_bound() {
    let (mut net, stale) = snapshot_needed_with_entries_after(25);
    assert!(deliver_until_snapshot(&mut net, 3).is_empty());
    assert!(net.node(1).wants_snapshot());
    let wait = Config::new(1).snapshot_wait_ticks_max;
    for _ in 0..wait - 1 {
        net.tick(1);
        let sent = net.deliver_until(|net| !snapshots_sent(net, 3).is_empty());
        assert!(!sent, "still waiting");
    }
    net.tick(1);
    assert_eq!(deliver_until_snapshot(&mut net, 3), vec![stale]);
    assert!(!net.node(1).wants_snapshot());
    net.settle();
    net.heartbeat(1);
    assert_eq!(net.node(3).log().snapshot().index, stale);
    assert_eq!(net.node(3).log().committed(), net.node(1).log().committed());
    net.assert_state_machine_safety();
}

/// Node 3 was cut off after index `cut`, and nodes 1 and 2 then committed `after` more
/// entries; the leader compacted its log up to its commit index *without* a snapshot
/// (`compact_log`, as a node does unless a follower waits for one) and returned where its
/// log now starts. Node 3 is back, and the leader's heartbeat to it is on its way.
fn compacted_without_a_snapshot(after: usize) -> (Net, Index, Index) {
    compacted_without_a_snapshot_of(after, "y")
}

/// The same, with every entry after the cut holding `data`.
fn compacted_without_a_snapshot_of(after: usize, data: &'static str) -> (Net, Index, Index) {
    let mut net = Net::new(3);
    net.elect(1);
    for _ in 0..3 {
        net.propose(1, "x");
    }
    net.heartbeat(1);
    let cut = net.node(3).log().committed();
    net.set_up(&[1, 2]);
    for _ in 0..after {
        net.propose(1, data);
    }
    net.heartbeat(1);
    let committed = net.node(1).log().committed();
    let to = net.nodes.get_mut(&1).unwrap().compact_log(committed);
    net.set_up(&[1, 2, 3]);
    for _ in 0..Config::new(1).heartbeat_ticks {
        net.tick(1);
    }
    (net, cut, to)
}

/// A follower a few entries behind when the leader compacts without a snapshot keeps what it
/// needs in the leader's log: it is sent entries, and no snapshot is built for it.
#[test]
fn a_log_compacted_without_a_snapshot_keeps_what_a_follower_close_behind_needs() {
    let (mut net, cut, to) = compacted_without_a_snapshot(CATCH_UP_ENTRIES as usize - 2);
    assert_eq!(to, cut, "compacted only up to what node 3 holds");
    net.settle();
    assert!(!net.node(1).wants_snapshot());
    assert_eq!(
        net.node(3).log().snapshot().index,
        0,
        "no snapshot was sent"
    );
    net.heartbeat(1);
    assert_eq!(net.node(3).log().committed(), net.node(1).log().committed());
    net.assert_state_machine_safety();
}

/// Entries a close follower misses are kept only up to a number of bytes: five entries
/// behind is close, but not when they are large.
#[test]
fn a_log_compacted_without_a_snapshot_keeps_a_bounded_number_of_bytes_for_a_follower() {
    let big: &'static str = "b".repeat(CATCH_UP_BYTES / 3).leak();
    let (net, cut, to) = compacted_without_a_snapshot_of(5, big);
    assert!(5 < CATCH_UP_ENTRIES && 5 * big.len() > CATCH_UP_BYTES);
    assert!(to > cut, "compacted past node 3's log");
    assert_eq!(to, net.node(1).log().committed(), "nothing kept for node 3");
}

/// A follower further behind needs a snapshot the leader has not built: the leader asks its
/// runtime for one and sends nothing until it comes (there is no stale one to fall back on,
/// however long it waits), then sends that one. A snapshot built at the very index the log
/// was compacted to is taken.
#[test]
fn a_log_compacted_without_a_snapshot_has_one_built_when_a_follower_needs_it() {
    let (mut net, cut, to) = compacted_without_a_snapshot(CATCH_UP_ENTRIES as usize + 5);
    assert!(to > cut, "compacted past node 3's log");
    assert_eq!(to, net.node(1).log().committed());
    assert!(deliver_until_snapshot(&mut net, 3).is_empty());
    assert!(net.node(1).wants_snapshot(), "the leader wants one built");
    for _ in 0..2 * Config::new(1).snapshot_wait_ticks_max {
        net.tick(1);
        let sent = net.deliver_until(|net| !snapshots_sent(net, 3).is_empty());
        assert!(!sent, "nothing to send until one is built");
    }
    assert!(net.node(1).wants_snapshot(), "still waiting");
    let leader = net.nodes.get_mut(&1).unwrap();
    assert!(leader.compact(to, Bytes::from(vec![9u8; 95])), "taken");
    assert!(
        !leader.compact(to, Bytes::from(vec![9u8; 95])),
        "held already"
    );
    sent_installed_and_caught_up(&mut net, to);
}

/// A leader restarted from a log compacted without a snapshot has none to send either: it
/// waits for its runtime to build one.
#[test]
fn a_leader_restarted_without_snapshot_bytes_has_one_built_for_a_follower() {
    let (mut net, _, to) = compacted_without_a_snapshot(CATCH_UP_ENTRIES as usize + 5);
    let old = net.node(1);
    let restored = Restored {
        hard_state: old.hard_state(),
        snapshot: old.log().snapshot().clone(),
        snapshot_data: None,
        entries: old
            .log()
            .entries_from(old.log().first_index())
            .cloned()
            .collect(),
    };
    net.nodes
        .insert(1, Raft::new(config(1, false), restored, 7));
    net.queue.clear();
    net.elect(1);
    net.settle();
    assert!(net.node(1).wants_snapshot());
    assert_eq!(net.node(3).log().snapshot().index, 0);
    let fresh = net.node(1).log().applied();
    net.nodes
        .get_mut(&1)
        .unwrap()
        .compact(fresh.max(to), Bytes::from(vec![5u8; 95]));
    net.settle();
    net.heartbeat(1);
    assert!(net.node(3).log().snapshot().index >= to, "installed");
    assert_eq!(net.node(3).log().committed(), net.node(1).log().committed());
    net.assert_state_machine_safety();
}

/// A leader's proposals of one turn go to each follower together, in one `Append`, not in an
/// `Append` per proposal: with one group a round carries many writes, and so many messages
/// (and answers) would cost more than the entries.
#[test]
fn a_leader_sends_the_proposals_of_a_turn_in_one_append_per_follower() {
    let ids: Vec<NodeId> = vec![1, 2, 3];
    let mut nodes: BTreeMap<NodeId, Raft> = ids
        .iter()
        .map(|&id| {
            (
                id,
                Raft::new(Config::new(id), Restored::bootstrap(ids.clone()), 7),
            )
        })
        .collect();
    // Every node's Ready handed out (persisted at once) and its messages delivered, until
    // nothing moves.
    let settle = |nodes: &mut BTreeMap<NodeId, Raft>| loop {
        let mut queue = Vec::new();
        for node in nodes.values_mut() {
            while node.has_ready() {
                queue.extend(node.ready().messages);
                node.advance();
            }
        }
        if queue.is_empty() {
            return;
        }
        for m in queue {
            nodes.get_mut(&m.to).expect("a node").step(m);
        }
    };
    // As a leader transfer would (voters refuse an ordinary campaign this soon: leases).
    let term = nodes[&1].term();
    nodes.get_mut(&1).unwrap().step(Message {
        from: 1,
        to: 1,
        term,
        body: Body::TimeoutNow,
    });
    settle(&mut nodes);
    assert_eq!(nodes[&1].role(), Role::Leader);
    let leader = nodes.get_mut(&1).unwrap();
    for data in ["a", "b", "c"] {
        leader
            .propose(Bytes::from(data))
            .expect("the leader accepts");
    }
    let ready = leader.ready();
    let appends: Vec<(NodeId, usize)> = ready
        .messages
        .iter()
        .filter_map(|m| match &m.body {
            Body::Append { entries, .. } => Some((m.to, entries.len())),
            _ => None,
        })
        .collect();
    assert_eq!(
        appends,
        vec![(2, 3), (3, 3)],
        "one Append of three entries per follower"
    );
    leader.advance();
}
