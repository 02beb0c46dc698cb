//! Raft consensus (the course's replication and consensus modules), sans IO.
//!
//! [`Raft`] is one node of one Raft group as a deterministic state machine: messages, ticks
//! and proposals go in; a [`Ready`] of things to persist, send and apply comes out. It owns
//! no sockets, files, clocks, threads or unseeded randomness, so the same code runs inside
//! the node runtime (which does the IO) and inside the simulator in `tests/`, where a whole
//! cluster and an unreliable network run in one thread from one seed. `kvstore/docs/raft.md`
//! explains the protocol, its invariants and where each is asserted.
//!
//! What it implements: leader election with randomized timeouts, pre-vote and check-quorum;
//! log replication with flow control and fast conflict backtracking; the commit rule for
//! entries of the current term only; ReadIndex reads (also forwarded from followers);
//! snapshots sent in chunks to followers that fell behind the compacted log; leader transfer;
//! learners; membership changes one voter at a time.
//!
//! ```
//! use kvstore::raft::{Config, Raft, Restored, Role};
//! // A group of one: it elects itself after an election timeout.
//! let mut node = Raft::new(Config::new(1), Restored::bootstrap([1]), 42);
//! let tick_us = Config::new(1).tick_us;
//! for t in 1..=20 {
//!     node.tick(t * tick_us); // the runtime's monotonic clock, in microseconds
//! }
//! assert_eq!(node.role(), Role::Leader);
//! let ready = node.ready(); // persist ready.entries and ready.hard_state, then:
//! node.advance();
//! assert!(node.propose(bytes::Bytes::from("x")).is_ok());
//! ```

// The pure modules must not read clocks, sleep or draw unseeded randomness (clippy.toml).
#![deny(clippy::disallowed_methods)]

pub mod codec;
mod core;
mod log;
mod message;
mod progress;
mod rng;
pub mod sim;

pub use self::core::{
    Config, Micros, ProposeError, Raft, ReadState, Ready, Restored, Role, SnapshotChunk,
};
pub use self::log::{Mismatch, RaftLog};
pub use self::message::{
    AppendResult, Body, ConfigChange, Entry, GroupId, HardState, Index, Membership, Message,
    NodeId, Payload, Snapshot, SnapshotMeta, Term,
};
pub use self::rng::Rng;
