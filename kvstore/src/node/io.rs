//! The node runtime's IO, behind three small traits: where the Raft log is kept
//! ([`LogStore`]: the WAL on disk), where peer messages go ([`Network`]: the TCP transport)
//! and what time it is ([`MonoClock`]: `CLOCK_BOOTTIME`). The Raft thread ([`super::runner`])
//! sees only these, so that the whole runtime can run against in-memory, fault-injecting
//! versions: many nodes in one thread, from one seed, with crashes that lose unsynced writes,
//! stalls, drifting clocks and partitions (the next step of the simulator).

use crate::raft::{Entry, GroupId, HardState, Message, Micros, NodeId, SnapshotMeta};
use crate::storage;

/// A node's Raft log: buffered appends of every group, made durable together by [`sync`].
///
/// [`sync`]: LogStore::sync
pub trait LogStore: Send {
    fn append(&mut self, group: GroupId, entries: &[Entry]);
    fn set_hard_state(&mut self, group: GroupId, state: HardState);
    /// Entries up to `meta.index` are covered by a snapshot (and, with `discard_later`, so
    /// are the entries after it).
    fn set_snapshot(&mut self, group: GroupId, meta: &SnapshotMeta, discard_later: bool);
    /// Forgets `group`: this node no longer hosts it.
    fn remove_group(&mut self, group: GroupId);
    /// Makes everything since the last call durable; an error is final (fail-stop).
    fn sync(&mut self) -> storage::Result<()>;
    /// Drops what every group's snapshot covers; returns how many units (segments) went.
    fn purge(&mut self) -> storage::Result<usize>;
    /// Syncs since start, and segments held, for `/metrics`.
    fn syncs(&self) -> u64;
    fn segments(&self) -> usize;
}

impl LogStore for super::wal::Wal {
    fn append(&mut self, group: GroupId, entries: &[Entry]) {
        super::wal::Wal::append(self, group, entries)
    }
    fn set_hard_state(&mut self, group: GroupId, state: HardState) {
        super::wal::Wal::set_hard_state(self, group, state)
    }
    fn set_snapshot(&mut self, group: GroupId, meta: &SnapshotMeta, discard_later: bool) {
        super::wal::Wal::set_snapshot(self, group, meta, discard_later)
    }
    fn remove_group(&mut self, group: GroupId) {
        super::wal::Wal::remove_group(self, group)
    }
    fn sync(&mut self) -> storage::Result<()> {
        super::wal::Wal::sync(self)
    }
    fn purge(&mut self) -> storage::Result<usize> {
        super::wal::Wal::purge(self)
    }
    fn syncs(&self) -> u64 {
        super::wal::Wal::syncs(self)
    }
    fn segments(&self) -> usize {
        super::wal::Wal::segments(self)
    }
}

/// Where a node's messages to its peers go. Sending never blocks: a message that cannot be
/// queued is dropped (Raft sends again).
pub trait Network: Send + Sync {
    fn send(&self, group: GroupId, m: Message);
    /// Peer `id` is (now) reached at `address`.
    fn set_peer(&self, id: NodeId, address: String);
    /// Tells every peer this node's Raft thread is alive (once a heartbeat interval).
    fn ping_all(&self);
}

impl Network for super::transport::Transport {
    fn send(&self, group: GroupId, m: Message) {
        super::transport::Transport::send(self, group, m)
    }
    fn set_peer(&self, id: NodeId, address: String) {
        super::transport::Transport::set_peer(self, id, address)
    }
    fn ping_all(&self) {
        super::transport::Transport::ping_all(self)
    }
}

/// A monotonic clock in microseconds (the Raft core's leases are dated on it).
pub trait MonoClock: Send + Sync {
    fn now_us(&self) -> Micros;
}

/// The real one: `CLOCK_BOOTTIME` (see [`super::clock`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct BootClock;

impl MonoClock for BootClock {
    fn now_us(&self) -> Micros {
        super::clock::monotonic_us()
    }
}
