//! The Raft log as one node sees it: a snapshot that stands for every entry up to its index,
//! then the entries after it, with three marks that only move forward:
//!
//! ```text
//!   snapshot.index        applied        committed        stable          last
//!  ───────┤ compacted │ ... ┤  applied   │  committed     │  persisted     │ not yet persisted
//! ```
//!
//! `applied <= committed <= last` always. `stable` is how far the runtime has persisted; it
//! moves back only when a leader overwrites entries this node had persisted but not
//! committed. The log is in memory (the runtime's write-ahead log is its durable copy) and is
//! kept short by compaction: the state machine takes a snapshot, and the entries it covers go.
//!
//! Invariants asserted here: committed entries are never truncated; entries are contiguous,
//! and their terms never decrease along the log.

use std::collections::VecDeque;

use super::message::{Entry, Index, Membership, SnapshotMeta, Term};

#[derive(Debug, Clone)]
pub struct RaftLog {
    snapshot: SnapshotMeta,
    /// Entries `snapshot.index + 1 ..= last_index()`, in order.
    entries: VecDeque<Entry>,
    committed: Index,
    /// The highest entry handed out to be applied.
    applied: Index,
    /// The highest entry known to be persisted.
    stable: Index,
    /// The size of `entries` ([`Entry::size`] summed): what the log holds in memory, which
    /// the runtime bounds by compacting (`Raft::compaction_due`).
    bytes: usize,
}

/// Why a follower could not append: it has no entry `(prev_index, prev_term)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mismatch {
    /// The term it holds at `prev_index`, if its log reaches that far.
    pub conflict_term: Option<Term>,
    /// The first index it holds of `conflict_term`, or (if its log is too short) one past its
    /// last entry: where the leader should look next.
    pub first_index: Index,
}

impl RaftLog {
    /// A log restored from durable state: the last snapshot, the entries after it (as the
    /// write-ahead log kept them, all persisted) and the commit index last recorded.
    pub fn restore(snapshot: SnapshotMeta, entries: Vec<Entry>, committed: Index) -> RaftLog {
        let mut log = RaftLog {
            applied: snapshot.index,
            committed: snapshot.index,
            stable: snapshot.index,
            snapshot,
            entries: VecDeque::new(),
            bytes: 0,
        };
        log.append(entries);
        log.stable = log.last_index();
        log.committed = committed.clamp(log.snapshot.index, log.last_index());
        log
    }

    pub fn first_index(&self) -> Index {
        self.snapshot.index + 1
    }

    pub fn last_index(&self) -> Index {
        self.snapshot.index + self.entries.len() as Index
    }

    pub fn last_term(&self) -> Term {
        self.entries.back().map_or(self.snapshot.term, |e| e.term)
    }

    pub fn committed(&self) -> Index {
        self.committed
    }

    pub fn applied(&self) -> Index {
        self.applied
    }

    pub fn stable(&self) -> Index {
        self.stable
    }

    pub fn snapshot(&self) -> &SnapshotMeta {
        &self.snapshot
    }

    /// The term of the entry at `index`; `None` if it was compacted away or is past the end.
    /// The snapshot's own index still has a known term.
    pub fn term(&self, index: Index) -> Option<Term> {
        if index == self.snapshot.index {
            return Some(self.snapshot.term);
        }
        self.entry(index).map(|e| e.term)
    }

    pub fn entry(&self, index: Index) -> Option<&Entry> {
        let offset = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(offset).ok()?)
    }

    /// Whether this log holds `(index, term)`.
    pub fn matches(&self, index: Index, term: Term) -> bool {
        self.term(index) == Some(term)
    }

    /// Whether a candidate whose log ends at `(last_index, last_term)` is at least as up to
    /// date as this log (§5.4.1): a later last term wins, and with equal terms the longer log.
    pub fn is_up_to_date(&self, last_index: Index, last_term: Term) -> bool {
        (last_term, last_index) >= (self.last_term(), self.last_index())
    }

    /// Appends entries that follow the last one (a leader appending to its own log, or the
    /// tail of [`RaftLog::try_append`]).
    pub fn append(&mut self, entries: impl IntoIterator<Item = Entry>) {
        for entry in entries {
            assert_eq!(
                entry.index,
                self.last_index() + 1,
                "log entries must be contiguous"
            );
            assert!(
                entry.term >= self.last_term(),
                "terms must not decrease along the log: {} after {}",
                entry.term,
                self.last_term()
            );
            self.bytes += entry.size();
            self.entries.push_back(entry);
        }
    }

    /// The bytes of the entries held in memory (see [`Entry::size`]).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the first `n` entries (compacted into a snapshot), keeping `bytes` right.
    fn drop_front(&mut self, n: usize) {
        for e in self.entries.drain(..n) {
            self.bytes -= e.size();
        }
    }

    /// A follower's append: if the log holds `(prev_index, prev_term)`, entries that conflict
    /// (same index, other term) are cut off with everything after them, and the new ones are
    /// appended. Entries already present are kept, so a stale or duplicated `Append` never
    /// truncates entries that a newer one added. Returns the last index known to match the
    /// leader's log: `prev_index + entries.len()`, not necessarily the last index.
    pub fn try_append(
        &mut self,
        prev_index: Index,
        prev_term: Term,
        entries: Vec<Entry>,
    ) -> Result<Index, Mismatch> {
        let match_index = prev_index + entries.len() as Index;
        if prev_index < self.snapshot.index {
            // The prefix up to the snapshot is committed, so it matches any leader's log; what
            // matters is that the entries from the snapshot on agree, checked below.
        } else if !self.matches(prev_index, prev_term) {
            return Err(self.mismatch(prev_index));
        }
        let compacted = self.snapshot.index;
        let mut new = entries.into_iter().skip_while(|e| e.index <= compacted);
        let mut pending = None;
        for entry in new.by_ref() {
            match self.term(entry.index) {
                Some(term) if term == entry.term => continue,
                Some(_) => {
                    self.truncate_from(entry.index);
                    pending = Some(entry);
                    break;
                }
                None => {
                    pending = Some(entry);
                    break;
                }
            }
        }
        if let Some(first) = pending {
            self.append(std::iter::once(first).chain(new));
        }
        Ok(match_index)
    }

    fn mismatch(&self, prev_index: Index) -> Mismatch {
        match self.term(prev_index) {
            None => Mismatch {
                conflict_term: None,
                first_index: self.last_index() + 1,
            },
            Some(term) => {
                let mut first = prev_index;
                while first > self.first_index() && self.term(first - 1) == Some(term) {
                    first -= 1;
                }
                Mismatch {
                    conflict_term: Some(term),
                    first_index: first,
                }
            }
        }
    }

    /// The last index of `term` in this log, if the log holds any entry of it (the leader's
    /// half of fast backtracking).
    pub fn last_index_of_term(&self, term: Term) -> Option<Index> {
        // Terms never decrease along the log, so search from the end and stop early.
        let mut index = self.last_index();
        while index >= self.snapshot.index {
            match self.term(index) {
                Some(t) if t == term => return Some(index),
                Some(t) if t < term => return None,
                _ => {}
            }
            if index == 0 {
                break;
            }
            index -= 1;
        }
        None
    }

    fn truncate_from(&mut self, index: Index) {
        assert!(
            index > self.committed,
            "a committed entry ({index}, commit index {}) must never be overwritten",
            self.committed
        );
        let keep = (index - self.first_index()) as usize;
        for e in self.entries.drain(keep..) {
            self.bytes -= e.size();
        }
        self.stable = self.stable.min(index - 1);
    }

    /// Raises the commit index (it never goes back).
    pub fn commit_to(&mut self, index: Index) {
        if index > self.committed {
            assert!(
                index <= self.last_index(),
                "cannot commit {index} past the last entry {}",
                self.last_index()
            );
            self.committed = index;
        }
    }

    /// Entries not yet persisted.
    pub fn unstable(&self) -> impl Iterator<Item = &Entry> {
        self.entries_from(self.stable + 1)
    }

    /// Records that entries up to `(index, term)` are persisted. Ignored if the entry has since
    /// been replaced (the persisted one was overwritten by a newer leader's).
    pub fn stable_to(&mut self, index: Index, term: Term) {
        if self.matches(index, term) && index > self.stable {
            self.stable = index;
        }
    }

    /// Committed entries not yet handed out to be applied.
    pub fn to_apply(&self) -> impl Iterator<Item = &Entry> {
        self.entries_from(self.applied + 1)
            .take_while(|e| e.index <= self.committed)
    }

    pub fn applied_to(&mut self, index: Index) {
        assert!(
            index <= self.committed,
            "applied {index} past commit {}",
            self.committed
        );
        self.applied = self.applied.max(index);
    }

    /// Entries from `index` on (`index` must not be compacted).
    pub fn entries_from(&self, index: Index) -> impl Iterator<Item = &Entry> {
        let skip = index.saturating_sub(self.first_index()) as usize;
        self.entries.iter().skip(skip)
    }

    /// Up to `entries_max` entries from `index` on, stopping before `bytes_max` is passed
    /// (but always at least one, so a large entry still goes out).
    pub fn slice(&self, index: Index, entries_max: usize, bytes_max: usize) -> Vec<Entry> {
        let mut bytes = 0;
        self.entries_from(index)
            .take(entries_max)
            .take_while(|e| {
                bytes += e.size();
                bytes <= bytes_max || bytes == e.size()
            })
            .cloned()
            .collect()
    }

    /// Forgets entries up to `index` (which must be applied): the state machine's snapshot
    /// now stands for them. `membership` is the membership as of `index`.
    pub fn compact(&mut self, index: Index, membership: Membership) {
        if index <= self.snapshot.index {
            return;
        }
        assert!(
            index <= self.applied,
            "compacting {index} past applied {}",
            self.applied
        );
        let term = self.term(index).expect("an applied entry is in the log");
        let drop = (index - self.snapshot.index) as usize;
        self.drop_front(drop);
        self.snapshot = SnapshotMeta {
            index,
            term,
            membership,
        };
        self.stable = self.stable.max(index);
    }

    /// Installs a snapshot received from the leader (newer than anything applied). If the log
    /// holds the snapshot's last entry, the entries after it are kept (they may be needed);
    /// otherwise the whole log goes.
    pub fn install(&mut self, snapshot: SnapshotMeta) {
        assert!(
            snapshot.index > self.applied,
            "installing snapshot {} over applied {}",
            snapshot.index,
            self.applied
        );
        if self.matches(snapshot.index, snapshot.term) {
            let drop = (snapshot.index - self.snapshot.index) as usize;
            self.drop_front(drop);
            self.stable = self.stable.max(snapshot.index);
        } else {
            self.entries.clear();
            self.bytes = 0;
            self.stable = snapshot.index;
        }
        self.committed = self.committed.max(snapshot.index);
        self.applied = snapshot.index;
        self.snapshot = snapshot;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::Payload;

    fn entries(from: Index, terms: &[Term]) -> Vec<Entry> {
        terms
            .iter()
            .enumerate()
            .map(|(i, &term)| Entry {
                index: from + i as Index,
                term,
                payload: Payload::Noop,
            })
            .collect()
    }

    fn log_of(terms: &[Term]) -> RaftLog {
        RaftLog::restore(SnapshotMeta::default(), entries(1, terms), 0)
    }

    fn terms(log: &RaftLog) -> Vec<Term> {
        log.entries_from(log.first_index())
            .map(|e| e.term)
            .collect()
    }

    /// The bytes the log holds follow every way entries come and go.
    #[test]
    fn the_bytes_held_follow_appends_truncations_compactions_and_installs() {
        let sum = |l: &RaftLog| -> usize { l.entries_from(l.first_index()).map(Entry::size).sum() };
        let mut l = log_of(&[1, 1, 1, 1]);
        assert_eq!(l.bytes(), 4 * 24);
        // A conflict at index 3 cuts two entries and appends one.
        l.try_append(2, 1, entries(3, &[2])).unwrap();
        assert_eq!(l.bytes(), 3 * 24);
        assert_eq!(l.bytes(), sum(&l));
        l.commit_to(3);
        l.applied = 3;
        l.compact(2, Default::default());
        assert_eq!(l.bytes(), 24);
        assert_eq!(l.bytes(), sum(&l));
        l.install(SnapshotMeta {
            index: 9,
            term: 3,
            membership: Default::default(),
        });
        assert_eq!(l.bytes(), 0);
    }

    #[test]
    fn try_append_cases() {
        // (log terms, prev_index, prev_term, new entry terms) -> result, resulting terms
        type Case = (&'static [Term], Index, Term, &'static [Term]);
        let check = |(log, prev_index, prev_term, new): Case,
                     expected: Result<Index, Mismatch>,
                     after: &[Term]| {
            let mut l = log_of(log);
            let got = l.try_append(prev_index, prev_term, entries(prev_index + 1, new));
            assert_eq!(
                got, expected,
                "{log:?} + ({prev_index},{prev_term}) {new:?}"
            );
            assert_eq!(
                terms(&l),
                after,
                "{log:?} + ({prev_index},{prev_term}) {new:?}"
            );
        };
        // Appending at the end.
        check((&[1, 1], 2, 1, &[2]), Ok(3), &[1, 1, 2]);
        // A heartbeat-like empty append matches without changes.
        check((&[1, 1, 2], 1, 1, &[]), Ok(1), &[1, 1, 2]);
        // Entries already present are kept (a stale, shorter append truncates nothing).
        check((&[1, 1, 2], 0, 0, &[1]), Ok(1), &[1, 1, 2]);
        // A conflict cuts the log at the first differing entry.
        check((&[1, 1, 2, 2], 1, 1, &[1, 3]), Ok(3), &[1, 1, 3]);
        // Log too short: the hint is its end.
        let short = Mismatch {
            conflict_term: None,
            first_index: 3,
        };
        check((&[1, 1], 4, 1, &[1]), Err(short), &[1, 1]);
        // Wrong term at prev_index: the hint is the first index of that term.
        let wrong = Mismatch {
            conflict_term: Some(2),
            first_index: 3,
        };
        check((&[1, 1, 2, 2, 2], 5, 3, &[3]), Err(wrong), &[1, 1, 2, 2, 2]);
    }

    #[test]
    #[should_panic(expected = "must never be overwritten")]
    fn truncating_a_committed_entry_panics() {
        let mut l = log_of(&[1, 1, 1]);
        l.commit_to(3);
        let _ = l.try_append(1, 1, entries(2, &[2]));
    }

    #[test]
    fn stable_applied_and_compaction() {
        let mut l = log_of(&[1, 1]);
        l.append(entries(3, &[2, 2]));
        assert_eq!(
            l.unstable().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 4]
        );
        l.stable_to(4, 2);
        assert_eq!(l.unstable().count(), 0);
        l.commit_to(3);
        assert_eq!(
            l.to_apply().map(|e| e.index).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        l.applied_to(3);
        l.compact(2, Membership::new([1]));
        assert_eq!((l.first_index(), l.term(2), l.term(1)), (3, Some(1), None));
        assert_eq!(
            l.last_index_of_term(1),
            Some(2),
            "the snapshot's term still counts"
        );
        assert_eq!(l.last_index_of_term(2), Some(4));
        assert_eq!(l.last_index_of_term(3), None);
        // Overwriting a persisted, uncommitted entry moves `stable` back.
        assert_eq!(l.try_append(3, 2, entries(4, &[3])), Ok(4));
        assert_eq!((l.stable(), l.unstable().count()), (3, 1));
    }

    #[test]
    fn install_keeps_a_matching_tail_and_drops_a_diverging_log() {
        let snap = |index, term| SnapshotMeta {
            index,
            term,
            membership: Membership::new([1, 2, 3]),
        };
        let mut l = log_of(&[1, 1, 2, 2]);
        l.install(snap(3, 2));
        assert_eq!((l.first_index(), l.last_index(), l.committed()), (4, 4, 3));
        let mut l = log_of(&[1, 1, 2, 2]);
        l.install(snap(6, 3));
        assert_eq!((l.first_index(), l.last_index(), l.last_term()), (7, 6, 3));
        assert_eq!((l.applied(), l.stable()), (6, 6));
    }

    #[test]
    fn up_to_date_compares_last_term_then_length() {
        let l = log_of(&[1, 2, 2]);
        assert!(l.is_up_to_date(3, 2));
        assert!(l.is_up_to_date(1, 3));
        assert!(!l.is_up_to_date(2, 2));
        assert!(!l.is_up_to_date(10, 1));
    }

    #[test]
    fn slices_respect_both_limits() {
        let l = log_of(&[1; 10]);
        assert_eq!(l.slice(3, 4, usize::MAX).len(), 4);
        assert_eq!(l.slice(3, 100, 1).len(), 1, "at least one entry");
        assert_eq!(l.slice(9, 100, usize::MAX).len(), 2);
    }
}
