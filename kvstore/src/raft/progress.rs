//! What a leader knows about one follower's log, and how fast it may send to it.
//!
//! A follower is in one of three states:
//! - `Probe`: the leader does not know where their logs meet. It sends one `Append` and waits
//!   for the answer (or the next heartbeat) before sending another, moving `next` back by a
//!   whole term per rejection (fast backtracking).
//! - `Replicate`: the logs meet at `match`; the leader streams entries optimistically, up to
//!   `inflight_appends_max` unacknowledged messages (flow control).
//! - `Snapshot`: the entries the follower needs were compacted; the leader sends its snapshot
//!   in chunks and resumes with the log after it.
//!
//! Invariant: `match < next`, and `match` never decreases while this node stays leader.

use std::collections::VecDeque;

use super::message::{Index, Snapshot};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Probe {
        /// An `Append` is out and unanswered: wait.
        waiting: bool,
    },
    Replicate {
        /// The last index of each unacknowledged `Append`, oldest first.
        inflight: VecDeque<Index>,
    },
    Snapshot {
        /// The snapshot being sent. It is kept until the transfer ends, even if the leader
        /// takes a newer one meanwhile: starting over at every compaction would never finish
        /// under a steady write rate. (Its bytes are shared, not copied.)
        snapshot: Snapshot,
        /// Bytes the follower has acknowledged.
        acked: u64,
        /// Where the next chunk starts (`None`: none sent yet). Chunks go out ahead of the
        /// acknowledgements, up to a window (`Config::snapshot_chunks_inflight_max`).
        sent: Option<u64>,
        /// Ticks since a chunk was last sent (resent when it is lost).
        idle_ticks: u32,
    },
    /// The follower needs a snapshot, and the leader's latest is stale (a long log follows
    /// it): it waits for the runtime to build a fresh one (`Config::snapshot_stale_entries`).
    AwaitSnapshot {
        /// Ticks waited: after `Config::snapshot_wait_ticks_max`, the stale one goes.
        ticks: u32,
    },
}

#[derive(Debug, Clone)]
pub struct Progress {
    pub match_index: Index,
    pub next_index: Index,
    pub state: State,
    /// Heard from since the last check-quorum round.
    pub recent_active: bool,
    /// The highest heartbeat round it answered.
    pub acked_round: u64,
}

impl Progress {
    pub fn new(next_index: Index) -> Progress {
        Progress {
            match_index: 0,
            next_index,
            state: State::Probe { waiting: false },
            recent_active: false,
            acked_round: 0,
        }
    }

    /// Whether the leader must hold back new `Append`s to this follower.
    pub fn is_paused(&self, inflight_appends_max: usize) -> bool {
        match &self.state {
            State::Probe { waiting } => *waiting,
            State::Replicate { inflight } => inflight.len() >= inflight_appends_max,
            State::Snapshot { .. } | State::AwaitSnapshot { .. } => true,
        }
    }

    /// Records that the follower's log matches up to `index`. Returns whether anything moved
    /// (a stale or duplicated answer moves nothing).
    pub fn acknowledge(&mut self, index: Index) -> bool {
        let moved = index > self.match_index;
        if moved {
            self.match_index = index;
        }
        self.next_index = self.next_index.max(index + 1);
        match &mut self.state {
            State::Probe { .. } if moved || index + 1 == self.next_index => {
                self.state = State::Replicate {
                    inflight: VecDeque::new(),
                }
            }
            State::Probe { waiting } => *waiting = false,
            State::Replicate { inflight } => {
                while inflight.front().is_some_and(|&last| last <= index) {
                    inflight.pop_front();
                }
            }
            State::Snapshot { .. } | State::AwaitSnapshot { .. } => {}
        }
        moved
    }

    /// Records that an `Append` ending at `last` went out.
    pub fn sent(&mut self, last: Index) {
        match &mut self.state {
            State::Probe { waiting } => *waiting = true,
            State::Replicate { inflight } => {
                if last >= self.next_index {
                    self.next_index = last + 1;
                    inflight.push_back(last);
                }
            }
            State::Snapshot { .. } | State::AwaitSnapshot { .. } => {}
        }
    }

    /// The follower rejected an `Append`: look again from `next` (never at or below what is
    /// known to match), one message at a time.
    pub fn back_off(&mut self, next: Index) {
        self.next_index = next.max(self.match_index + 1);
        self.state = State::Probe { waiting: false };
    }

    /// Waits for a fresh snapshot to send (unless it already does).
    pub fn await_snapshot(&mut self) {
        if !matches!(self.state, State::AwaitSnapshot { .. }) {
            self.state = State::AwaitSnapshot { ticks: 0 };
        }
    }

    /// Whether it waits for a fresh snapshot.
    pub fn awaits_snapshot(&self) -> bool {
        matches!(self.state, State::AwaitSnapshot { .. })
    }

    /// Starts sending `snapshot`.
    pub fn send_snapshot(&mut self, snapshot: Snapshot) {
        self.state = State::Snapshot {
            snapshot,
            acked: 0,
            sent: None,
            idle_ticks: 0,
        };
    }

    /// A heartbeat answer shows the follower is reachable but it has not acknowledged
    /// everything: appends may have been lost. Lets one more message go (a waiting probe, or
    /// one in-flight slot), whose answer tells the leader where the follower really is.
    pub fn resume(&mut self) {
        match &mut self.state {
            State::Probe { waiting } => *waiting = false,
            State::Replicate { inflight } => {
                inflight.pop_front();
            }
            State::Snapshot { .. } | State::AwaitSnapshot { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_then_replicate_with_flow_control() {
        let mut p = Progress::new(11);
        assert!(!p.is_paused(2));
        p.sent(10);
        assert!(p.is_paused(2), "one probe at a time");
        p.back_off(6);
        assert_eq!((p.next_index, p.is_paused(2)), (6, false));
        assert!(p.acknowledge(8));
        assert!(matches!(p.state, State::Replicate { .. }));
        p.sent(10);
        p.sent(12);
        assert_eq!(p.next_index, 13);
        assert!(p.is_paused(2), "two appends in flight");
        assert!(p.acknowledge(10));
        assert!(!p.is_paused(2));
        assert!(!p.acknowledge(9), "a stale answer moves nothing");
        assert_eq!((p.match_index, p.next_index), (10, 13));
        p.back_off(3);
        assert_eq!(p.next_index, 11, "never back below what matches");
    }
}
