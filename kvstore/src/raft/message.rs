//! The nouns of Raft: log entries, the durable hard state, cluster membership, snapshots and the
//! messages nodes exchange. Plain data with no behaviour beyond small helpers; how they move is
//! in [`super::core`], how they are stored is the runtime's business (the WAL).

use std::collections::BTreeSet;

use bytes::Bytes;

/// A Raft group's id on its node (a partition's group, or the meta group). Every message
/// between nodes names one.
pub type GroupId = u64;

/// A node's identity in a Raft group. 0 is never a valid id (it means "none" on the wire).
pub type NodeId = u64;
/// A Raft term: a logical clock that increases with every election.
pub type Term = u64;
/// A position in the Raft log. The first entry has index 1; index 0 is "before the log".
pub type Index = u64;

/// One log entry. `(index, term)` identifies it: two logs that hold an entry with the same
/// index and term are identical up to it (the log matching property).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: Index,
    pub term: Term,
    pub payload: Payload,
}

/// What an entry carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Appended by every new leader: committing it commits everything before it (a leader may
    /// only count replicas for entries of its own term, figure 8 of the paper).
    Noop,
    /// A command for the state machine, opaque to Raft.
    Command(Bytes),
    /// The whole membership after a change (or the initial one, at index 1 of a new group). It
    /// takes effect as soon as it is appended, committed or not; a leader proposes a change
    /// only when the previous one has committed, and only one server at a time.
    Config(Membership),
}

impl Entry {
    /// Rough size in bytes, for batching limits.
    pub fn size(&self) -> usize {
        24 + match &self.payload {
            Payload::Command(data) => data.len(),
            Payload::Noop => 0,
            Payload::Config(m) => 8 * (m.voters.len() + m.learners.len()),
        }
    }
}

/// One membership change: a single server at a time (Raft dissertation §4.1), so the old and
/// new majorities always overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    /// Add a non-voting member that receives the log (to catch up before it votes).
    AddLearner(NodeId),
    /// Make a node a voter (a learner is promoted; an unknown node joins directly).
    AddVoter(NodeId),
    /// Remove a voter or a learner.
    Remove(NodeId),
}

/// Who is in the group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    pub voters: BTreeSet<NodeId>,
    pub learners: BTreeSet<NodeId>,
}

impl Membership {
    pub fn new(voters: impl IntoIterator<Item = NodeId>) -> Membership {
        Membership {
            voters: voters.into_iter().collect(),
            learners: BTreeSet::new(),
        }
    }

    /// The membership after `change`.
    pub fn apply(&self, change: ConfigChange) -> Membership {
        let mut next = self.clone();
        match change {
            ConfigChange::AddLearner(id) => {
                if !next.voters.contains(&id) {
                    next.learners.insert(id);
                }
            }
            ConfigChange::AddVoter(id) => {
                next.learners.remove(&id);
                next.voters.insert(id);
            }
            ConfigChange::Remove(id) => {
                next.voters.remove(&id);
                next.learners.remove(&id);
            }
        }
        next
    }

    pub fn contains(&self, id: NodeId) -> bool {
        self.voters.contains(&id) || self.learners.contains(&id)
    }

    /// Every member, voters first.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(self.learners.iter()).copied()
    }

    /// Whether going from `self` to `next` changes at most one voter (so any majority of the
    /// old voters overlaps any majority of the new).
    pub fn is_single_step_to(&self, next: &Membership) -> bool {
        self.voters.symmetric_difference(&next.voters).count() <= 1
    }

    /// Votes needed for a majority of the voters.
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }
}

/// What must be on disk before a node sends any message that depends on it: granting a vote
/// twice in one term, or forgetting a term, would break election safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HardState {
    pub term: Term,
    /// Who this node voted for in `term`.
    pub vote: Option<NodeId>,
    /// The commit index this node knew (an optimisation for restart; never required for
    /// safety, since the commit index can always be learnt again).
    pub commit: Index,
}

/// Describes a snapshot: the state machine after applying every entry up to `index`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotMeta {
    pub index: Index,
    pub term: Term,
    /// The membership as of `index` (the log that held it is gone).
    pub membership: Membership,
}

/// A snapshot: its description and the state machine's bytes, opaque to Raft.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub meta: SnapshotMeta,
    pub data: Bytes,
}

/// A message between two nodes of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub from: NodeId,
    pub to: NodeId,
    /// The sender's term (for a pre-vote, the term the sender would campaign in).
    pub term: Term,
    pub body: Body,
}

/// The kinds of message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// "Would you vote for me in `term`?" Changes no state at the receiver, so a node that was
    /// cut off cannot inflate terms and depose a healthy leader when it comes back.
    PreVote {
        last_index: Index,
        last_term: Term,
    },
    PreVoteResponse {
        granted: bool,
    },
    /// A request for a vote. `transfer` is set when the current leader asked for this election
    /// (leader transfer), so voters ignore the leader they still hear from.
    Vote {
        last_index: Index,
        last_term: Term,
        transfer: bool,
    },
    VoteResponse {
        granted: bool,
    },
    /// Entries following `(prev_index, prev_term)`, and the leader's commit index.
    Append {
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: Index,
    },
    AppendResponse(AppendResult),
    /// Keeps followers from starting elections and carries the commit index (capped at what
    /// the follower is known to hold). `round` numbers the leader's heartbeats, so that an
    /// answer proves the follower still followed at that round (ReadIndex, leases).
    Heartbeat {
        commit: Index,
        round: u64,
    },
    HeartbeatResponse {
        round: u64,
    },
    /// From a leader whose group is idle, instead of a heartbeat: "nothing is in flight; stop
    /// your election timer until you hear from me or my node goes silent". Carries the commit
    /// index; unanswered.
    Quiesce {
        commit: Index,
    },
    /// A piece of a snapshot, sent to a follower whose next entry was compacted away.
    InstallSnapshot {
        meta: SnapshotMeta,
        offset: u64,
        data: Bytes,
        done: bool,
    },
    /// How many bytes of the snapshot at `index` the follower holds (what to send next).
    SnapshotResponse {
        index: Index,
        received: u64,
    },
    /// From a leader handing over leadership: "start an election now".
    TimeoutNow,
    /// A follower asks the leader for a read index on behalf of its client.
    ReadIndex {
        context: Bytes,
    },
    /// The leader's answer: reads may be served once `index` is applied. `index` 0 means the
    /// leader could not serve it (it is stepping down or transferring); retry elsewhere.
    ReadIndexResponse {
        context: Bytes,
        index: Index,
    },
}

/// A follower's answer to `Append`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendResult {
    /// The follower's log now matches the leader's up to `match_index`.
    Accepted { match_index: Index },
    /// The follower has no entry `(prev_index, prev_term)`. The hint lets the leader skip a
    /// whole term per round trip instead of one entry (fast backtracking, as in 6.5840):
    /// `conflict_term` is the term the follower has at `prev_index` (None if its log is
    /// shorter) and `first_index` the first index it holds of that term (or its log's end).
    Rejected {
        prev_index: Index,
        conflict_term: Option<Term>,
        first_index: Index,
    },
}

impl Body {
    /// Whether only a leader sends it (to its followers): what shows a follower its leader is
    /// there, and what may found a replica a node does not host yet.
    pub fn is_from_leader(&self) -> bool {
        matches!(
            self,
            Body::Append { .. }
                | Body::Heartbeat { .. }
                | Body::Quiesce { .. }
                | Body::InstallSnapshot { .. }
        )
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Body::PreVote { .. } => "pre_vote",
            Body::PreVoteResponse { .. } => "pre_vote_response",
            Body::Vote { .. } => "vote",
            Body::VoteResponse { .. } => "vote_response",
            Body::Append { .. } => "append",
            Body::AppendResponse(_) => "append_response",
            Body::Heartbeat { .. } => "heartbeat",
            Body::HeartbeatResponse { .. } => "heartbeat_response",
            Body::Quiesce { .. } => "quiesce",
            Body::InstallSnapshot { .. } => "install_snapshot",
            Body::SnapshotResponse { .. } => "snapshot_response",
            Body::TimeoutNow => "timeout_now",
            Body::ReadIndex { .. } => "read_index",
            Body::ReadIndexResponse { .. } => "read_index_response",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_changes_one_server_at_a_time() {
        let m = Membership::new([1, 2, 3]);
        assert_eq!(m.quorum(), 2);
        let m = m.apply(ConfigChange::AddLearner(4));
        assert!(m.contains(4) && !m.voters.contains(&4));
        assert_eq!(m.quorum(), 2, "learners do not count");
        let m = m.apply(ConfigChange::AddVoter(4));
        assert!(m.voters.contains(&4) && !m.learners.contains(&4));
        assert_eq!(m.quorum(), 3);
        // Adding a voter as a learner does not demote it.
        assert_eq!(m.apply(ConfigChange::AddLearner(4)), m);
        let m = m.apply(ConfigChange::Remove(1));
        assert_eq!(m.voters.iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(m.members().collect::<Vec<_>>(), vec![2, 3, 4]);
    }
}
