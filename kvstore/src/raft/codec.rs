//! Bytes for Raft's nouns: log entries and memberships (shared by the WAL and the network) and
//! the messages nodes exchange. Fixed-width little-endian integers and `u32` length prefixes;
//! the layouts are in `docs/raft.md` ("On the wire"). Pure: no IO, and a decoder never trusts a
//! count or length it has not checked against the bytes it holds.

use bytes::{BufMut, Bytes};

use super::message::{
    AppendResult, Body, Entry, Index, Membership, Message, NodeId, Payload, SnapshotMeta,
};

const PAYLOAD_NOOP: u8 = 0;
const PAYLOAD_COMMAND: u8 = 1;
const PAYLOAD_CONFIG: u8 = 2;
/// Bytes of an entry with an empty payload: index, term, kind, length.
pub const ENTRY_BYTES_MIN: usize = 21;

/// Appends `n` as a `u32`. Every length here fits: the WAL and frames limit what they hold.
pub fn put_u32(dst: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("lengths fit in 32 bits");
    dst.put_u32_le(n);
}

pub fn put_membership(dst: &mut Vec<u8>, m: &Membership) {
    for set in [&m.voters, &m.learners] {
        put_u32(dst, set.len());
        for id in set {
            dst.put_u64_le(*id);
        }
    }
}

/// `index u64 | term u64 | kind u8 | len u32 | payload`.
pub fn put_entry(dst: &mut Vec<u8>, e: &Entry) {
    dst.put_u64_le(e.index);
    dst.put_u64_le(e.term);
    match &e.payload {
        Payload::Noop => {
            dst.put_u8(PAYLOAD_NOOP);
            put_u32(dst, 0);
        }
        Payload::Command(data) => {
            dst.put_u8(PAYLOAD_COMMAND);
            put_u32(dst, data.len());
            dst.extend_from_slice(data);
        }
        Payload::Config(m) => {
            dst.put_u8(PAYLOAD_CONFIG);
            let at = dst.len();
            put_u32(dst, 0);
            put_membership(dst, m);
            let len = dst.len() - at - 4;
            dst[at..at + 4].copy_from_slice(&(len as u32).to_le_bytes());
        }
    }
}

/// Reads the fields written above from a buffer, with errors that say where it went wrong.
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

pub type Result<T> = std::result::Result<T, String>;

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, at: 0 }
    }
    /// Bytes read so far.
    pub fn position(&self) -> usize {
        self.at
    }
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.at
    }
    pub fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.buf.len());
        let end = end.ok_or_else(|| format!("field at byte {} runs past the end", self.at))?;
        let bytes = &self.buf[self.at..end];
        self.at = end;
        Ok(bytes)
    }
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(format!("flag {other} is neither 0 nor 1")),
        }
    }
    pub fn u32(&mut self) -> Result<usize> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4 bytes")) as usize)
    }
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A `u32` length and that many bytes.
    pub fn bytes(&mut self) -> Result<Bytes> {
        let len = self.u32()?;
        Ok(Bytes::copy_from_slice(self.take(len)?))
    }
    /// A count of items of at least `item_bytes` each, checked against what is left.
    pub fn count(&mut self, item_bytes: usize) -> Result<usize> {
        let count = self.u32()?;
        if count > self.remaining() / item_bytes.max(1) {
            return Err(format!("count {count} does not fit in what is left"));
        }
        Ok(count)
    }

    pub fn membership(&mut self) -> Result<Membership> {
        let mut sets = [Vec::new(), Vec::new()];
        for set in sets.iter_mut() {
            let count = self.count(8)?;
            for _ in 0..count {
                set.push(self.u64()? as NodeId);
            }
        }
        let [voters, learners] = sets;
        Ok(Membership {
            voters: voters.into_iter().collect(),
            learners: learners.into_iter().collect(),
        })
    }

    pub fn entry(&mut self) -> Result<Entry> {
        let index = self.u64()?;
        let term = self.u64()?;
        let kind = self.u8()?;
        let len = self.u32()?;
        let data = self.take(len)?;
        let payload = match kind {
            PAYLOAD_NOOP if len == 0 => Payload::Noop,
            PAYLOAD_COMMAND => Payload::Command(Bytes::copy_from_slice(data)),
            PAYLOAD_CONFIG => {
                let mut inner = Reader::new(data);
                let m = inner.membership()?;
                if inner.remaining() != 0 {
                    return Err("bytes left over after a membership".into());
                }
                Payload::Config(m)
            }
            other => return Err(format!("unknown payload kind {other}")),
        };
        Ok(Entry {
            index,
            term,
            payload,
        })
    }

    /// `count u32`, then that many contiguous entries.
    pub fn entries(&mut self) -> Result<Vec<Entry>> {
        let count = self.count(ENTRY_BYTES_MIN)?;
        let mut entries: Vec<Entry> = Vec::with_capacity(count);
        for _ in 0..count {
            let e = self.entry()?;
            if let Some(prev) = entries.last().map(|p| p.index) {
                if e.index != prev + 1 {
                    return Err(format!("entry {} follows entry {prev}", e.index));
                }
            }
            entries.push(e);
        }
        Ok(entries)
    }
}

// ----- Messages ----------------------------------------------------------------------------

const PRE_VOTE: u8 = 1;
const PRE_VOTE_RESPONSE: u8 = 2;
const VOTE: u8 = 3;
const VOTE_RESPONSE: u8 = 4;
const APPEND: u8 = 5;
const APPEND_ACCEPTED: u8 = 6;
const APPEND_REJECTED: u8 = 7;
const HEARTBEAT: u8 = 8;
const HEARTBEAT_RESPONSE: u8 = 9;
const INSTALL_SNAPSHOT: u8 = 10;
const SNAPSHOT_RESPONSE: u8 = 11;
const TIMEOUT_NOW: u8 = 12;
const READ_INDEX: u8 = 13;
const READ_INDEX_RESPONSE: u8 = 14;
const QUIESCE: u8 = 15;

/// Appends `m`: `from u64 | to u64 | term u64 | kind u8 | fields of the kind`.
pub fn put_message(dst: &mut Vec<u8>, m: &Message) {
    dst.put_u64_le(m.from);
    dst.put_u64_le(m.to);
    dst.put_u64_le(m.term);
    let put_bytes = |dst: &mut Vec<u8>, b: &[u8]| {
        put_u32(dst, b.len());
        dst.extend_from_slice(b);
    };
    match &m.body {
        Body::PreVote {
            last_index,
            last_term,
        } => {
            dst.put_u8(PRE_VOTE);
            dst.put_u64_le(*last_index);
            dst.put_u64_le(*last_term);
        }
        Body::PreVoteResponse { granted } => {
            dst.put_u8(PRE_VOTE_RESPONSE);
            dst.put_u8(u8::from(*granted));
        }
        Body::Vote {
            last_index,
            last_term,
            transfer,
        } => {
            dst.put_u8(VOTE);
            dst.put_u64_le(*last_index);
            dst.put_u64_le(*last_term);
            dst.put_u8(u8::from(*transfer));
        }
        Body::VoteResponse { granted } => {
            dst.put_u8(VOTE_RESPONSE);
            dst.put_u8(u8::from(*granted));
        }
        Body::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => {
            dst.put_u8(APPEND);
            dst.put_u64_le(*prev_index);
            dst.put_u64_le(*prev_term);
            dst.put_u64_le(*commit);
            put_u32(dst, entries.len());
            for e in entries {
                put_entry(dst, e);
            }
        }
        Body::AppendResponse(AppendResult::Accepted { match_index }) => {
            dst.put_u8(APPEND_ACCEPTED);
            dst.put_u64_le(*match_index);
        }
        Body::AppendResponse(AppendResult::Rejected {
            prev_index,
            conflict_term,
            first_index,
        }) => {
            dst.put_u8(APPEND_REJECTED);
            dst.put_u64_le(*prev_index);
            // Terms start at 1, so 0 stands for "none".
            dst.put_u64_le(conflict_term.unwrap_or(0));
            dst.put_u64_le(*first_index);
        }
        Body::Heartbeat { commit, round } => {
            dst.put_u8(HEARTBEAT);
            dst.put_u64_le(*commit);
            dst.put_u64_le(*round);
        }
        Body::HeartbeatResponse { round } => {
            dst.put_u8(HEARTBEAT_RESPONSE);
            dst.put_u64_le(*round);
        }
        Body::Quiesce { commit } => {
            dst.put_u8(QUIESCE);
            dst.put_u64_le(*commit);
        }
        Body::InstallSnapshot {
            meta,
            offset,
            data,
            done,
        } => {
            dst.put_u8(INSTALL_SNAPSHOT);
            dst.put_u64_le(meta.index);
            dst.put_u64_le(meta.term);
            put_membership(dst, &meta.membership);
            dst.put_u64_le(*offset);
            put_bytes(dst, data);
            dst.put_u8(u8::from(*done));
        }
        Body::SnapshotResponse { index, received } => {
            dst.put_u8(SNAPSHOT_RESPONSE);
            dst.put_u64_le(*index);
            dst.put_u64_le(*received);
        }
        Body::TimeoutNow => dst.put_u8(TIMEOUT_NOW),
        Body::ReadIndex { context } => {
            dst.put_u8(READ_INDEX);
            put_bytes(dst, context);
        }
        Body::ReadIndexResponse { context, index } => {
            dst.put_u8(READ_INDEX_RESPONSE);
            put_bytes(dst, context);
            dst.put_u64_le(*index);
        }
    }
}

impl Reader<'_> {
    pub fn message(&mut self) -> Result<Message> {
        let from = self.u64()?;
        let to = self.u64()?;
        let term = self.u64()?;
        let body = match self.u8()? {
            PRE_VOTE => Body::PreVote {
                last_index: self.u64()?,
                last_term: self.u64()?,
            },
            PRE_VOTE_RESPONSE => Body::PreVoteResponse {
                granted: self.bool()?,
            },
            VOTE => Body::Vote {
                last_index: self.u64()?,
                last_term: self.u64()?,
                transfer: self.bool()?,
            },
            VOTE_RESPONSE => Body::VoteResponse {
                granted: self.bool()?,
            },
            APPEND => {
                let prev_index = self.u64()?;
                let prev_term = self.u64()?;
                let commit = self.u64()?;
                let entries = self.entries()?;
                if entries.first().is_some_and(|e| e.index != prev_index + 1) {
                    return Err("entries do not follow prev_index".into());
                }
                Body::Append {
                    prev_index,
                    prev_term,
                    entries,
                    commit,
                }
            }
            APPEND_ACCEPTED => Body::AppendResponse(AppendResult::Accepted {
                match_index: self.u64()?,
            }),
            APPEND_REJECTED => Body::AppendResponse(AppendResult::Rejected {
                prev_index: self.u64()?,
                conflict_term: Some(self.u64()?).filter(|&t| t != 0),
                first_index: self.u64()? as Index,
            }),
            HEARTBEAT => Body::Heartbeat {
                commit: self.u64()?,
                round: self.u64()?,
            },
            HEARTBEAT_RESPONSE => Body::HeartbeatResponse { round: self.u64()? },
            QUIESCE => Body::Quiesce {
                commit: self.u64()?,
            },
            INSTALL_SNAPSHOT => Body::InstallSnapshot {
                meta: SnapshotMeta {
                    index: self.u64()?,
                    term: self.u64()?,
                    membership: self.membership()?,
                },
                offset: self.u64()?,
                data: self.bytes()?,
                done: self.bool()?,
            },
            SNAPSHOT_RESPONSE => Body::SnapshotResponse {
                index: self.u64()?,
                received: self.u64()?,
            },
            TIMEOUT_NOW => Body::TimeoutNow,
            READ_INDEX => Body::ReadIndex {
                context: self.bytes()?,
            },
            READ_INDEX_RESPONSE => Body::ReadIndexResponse {
                context: self.bytes()?,
                index: self.u64()?,
            },
            other => return Err(format!("unknown message kind {other}")),
        };
        Ok(Message {
            from,
            to,
            term,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Body> {
        let meta = SnapshotMeta {
            index: 9,
            term: 3,
            membership: Membership {
                voters: [1, 2, 3].into(),
                learners: [4].into(),
            },
        };
        vec![
            Body::PreVote {
                last_index: 5,
                last_term: 2,
            },
            Body::PreVoteResponse { granted: true },
            Body::Vote {
                last_index: 5,
                last_term: 2,
                transfer: true,
            },
            Body::VoteResponse { granted: false },
            Body::Append {
                prev_index: 4,
                prev_term: 1,
                commit: 3,
                entries: vec![
                    Entry {
                        index: 5,
                        term: 2,
                        payload: Payload::Noop,
                    },
                    Entry {
                        index: 6,
                        term: 2,
                        payload: Payload::Command(Bytes::from_static(b"put")),
                    },
                    Entry {
                        index: 7,
                        term: 2,
                        payload: Payload::Config(meta.membership.clone()),
                    },
                ],
            },
            Body::AppendResponse(AppendResult::Accepted { match_index: 7 }),
            Body::AppendResponse(AppendResult::Rejected {
                prev_index: 7,
                conflict_term: Some(2),
                first_index: 5,
            }),
            Body::AppendResponse(AppendResult::Rejected {
                prev_index: 7,
                conflict_term: None,
                first_index: 3,
            }),
            Body::Heartbeat {
                commit: 7,
                round: 12,
            },
            Body::HeartbeatResponse { round: 12 },
            Body::Quiesce { commit: 13 },
            Body::InstallSnapshot {
                meta,
                offset: 1024,
                data: Bytes::from_static(b"chunk"),
                done: true,
            },
            Body::SnapshotResponse {
                index: 9,
                received: 1029,
            },
            Body::TimeoutNow,
            Body::ReadIndex {
                context: Bytes::from_static(b"ctx"),
            },
            Body::ReadIndexResponse {
                context: Bytes::from_static(b"ctx"),
                index: 8,
            },
        ]
    }

    #[test]
    fn every_message_kind_round_trips_and_every_truncation_fails() {
        for body in samples() {
            let m = Message {
                from: 1,
                to: 2,
                term: 3,
                body,
            };
            let mut buf = Vec::new();
            put_message(&mut buf, &m);
            let mut r = Reader::new(&buf);
            assert_eq!(r.message().unwrap(), m);
            assert_eq!(r.remaining(), 0);
            for len in 0..buf.len() {
                assert!(
                    Reader::new(&buf[..len]).message().is_err(),
                    "{} cut at {len} decoded",
                    m.body.kind()
                );
            }
        }
    }

    #[test]
    fn absurd_counts_are_refused_before_allocating() {
        let mut buf = Vec::new();
        put_message(
            &mut buf,
            &Message {
                from: 1,
                to: 2,
                term: 3,
                body: Body::Append {
                    prev_index: 0,
                    prev_term: 0,
                    commit: 0,
                    entries: Vec::new(),
                },
            },
        );
        let at = buf.len() - 4;
        buf[at..].copy_from_slice(&u32::MAX.to_le_bytes());
        let error = Reader::new(&buf).message().unwrap_err();
        assert!(error.contains("does not fit"), "{error}");
    }
}
