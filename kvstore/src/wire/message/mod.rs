//! Requests and responses of the binary protocol: their Rust types, opcodes and field layouts.
//!
//! This module owns the mapping between a message and the fields of a frame body, including
//! every default and every "required" rule (see `docs/wire-protocol.md`, which this code must
//! match). It validates only the encoding (wire types, enum values, integer ranges, UTF-8),
//! never semantics such as key length or whether a keyspace exists: that is the server's job.
//! It does no I/O and keeps no connection state (the handshake is enforced by the server).

use bytes::{Bytes, BytesMut};
use thiserror::Error;

use super::field::{FieldError, FieldReader, FieldWriter, Value, WireType};
use super::frame::{encode_frame_with, Frame, FrameError};

/// Oldest protocol version this code speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// Newest protocol version this code speaks.
pub const PROTOCOL_VERSION_MAX: u16 = 1;

/// Keyspace used when a request leaves the keyspace field out.
pub const DEFAULT_KEYSPACE: &str = "default";

/// Opcodes. A response carries its request's opcode with [`RESPONSE_BIT`](opcode::RESPONSE_BIT)
/// set, except errors, which all use [`ERROR`](opcode::ERROR) (so request opcode 0x7FFF is
/// reserved).
pub mod opcode {
    pub const HELLO: u16 = 0x0001;
    pub const PING: u16 = 0x0002;
    pub const GET: u16 = 0x0010;
    pub const PUT: u16 = 0x0011;
    pub const DELETE: u16 = 0x0012;
    pub const INCR: u16 = 0x0014;
    pub const SCAN: u16 = 0x0015;
    pub const BATCH: u16 = 0x0016;
    pub const CLUSTER_MAP: u16 = 0x0020;
    pub const MAP_CHANGE: u16 = 0x0021;
    pub const RESPONSE_BIT: u16 = 0x8000;
    pub const ERROR: u16 = 0xFFFF;

    /// The opcode of a successful response to `request`.
    pub const fn response_to(request: u16) -> u16 {
        request | RESPONSE_BIT
    }
}

/// Picks the version to speak: the newest one both sides support, if their ranges overlap.
pub fn negotiate_version(client_min: u16, client_max: u16) -> Option<u16> {
    let version = client_max.min(PROTOCOL_VERSION_MAX);
    (version >= client_min.max(PROTOCOL_VERSION_MIN)).then_some(version)
}

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read was sent.
    #[default]
    Linearizable = 0,
    /// Served by a leader that holds a valid lease, without a round of confirmation.
    Lease = 1,
    /// Served by any replica; may be stale.
    Follower = 2,
}

impl std::str::FromStr for Consistency {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "linearizable" => Ok(Consistency::Linearizable),
            "lease" => Ok(Consistency::Lease),
            "follower" => Ok(Consistency::Follower),
            other => Err(format!(
                "unknown consistency {other:?} (linearizable, lease or follower)"
            )),
        }
    }
}

impl Consistency {
    fn from_wire(value: u64) -> Option<Self> {
        match value {
            0 => Some(Consistency::Linearizable),
            1 => Some(Consistency::Lease),
            2 => Some(Consistency::Follower),
            _ => None,
        }
    }
}

/// A precondition on a key's current state; the write happens only if it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Unconditional (kind 0).
    #[default]
    None,
    /// Only if the key does not exist (kind 1).
    IfAbsent,
    /// Only if the key exists (kind 2).
    IfPresent,
    /// Only if the key's current version equals this one; 0 means "absent" (kind 3).
    IfVersion(u64),
}

/// A range of keys to scan. All bounds are optional and combine (a key must satisfy each).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScanRange {
    /// Inclusive lower bound.
    pub start: Option<Bytes>,
    /// Exclusive upper bound.
    pub end: Option<Bytes>,
    pub prefix: Option<Bytes>,
}

/// One write inside a [`Request::Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchOp {
    Put {
        key: Bytes,
        value: Bytes,
        ttl_ms: Option<u64>,
        condition: Condition,
    },
    Delete {
        key: Bytes,
        condition: Condition,
    },
}

/// A stored value with its metadata, as returned by [`Response::GetOk`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub value: Bytes,
    pub version: u64,
    /// Absolute expiry time in Unix milliseconds; `None` when the key never expires.
    pub expires_at_ms: Option<u64>,
}

/// How stale a follower read may be, as the replica that served it knew: it had not applied
/// `entries` entries of the highest commit index a leader had told it, and it last heard
/// that commit index `ms` milliseconds before (from a leader's message, or, leading itself,
/// from a quorum's answer). `ms` is `None` when the replica has heard from no leader since
/// it started: its data may be arbitrarily old.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReadLag {
    pub entries: u64,
    pub ms: Option<u64>,
}

/// How many writes a session may have in flight: a cluster remembers the replies of the
/// session's last `SESSION_WINDOW` request ids, so a retry of any of them gets its first reply,
/// and refuses (as outcome unknown) a request id this far below the highest it applied. A
/// client must not send request id `n` before every id up to `n - SESSION_WINDOW` has its
/// answer (or was given up).
pub const SESSION_WINDOW: u64 = 64;

/// `lag_ms` on the wire for "unknown".
pub const LAG_MS_UNKNOWN: u64 = u64::MAX;

fn put_lag(w: &mut FieldWriter<'_>, first: u32, lag: &Option<ReadLag>) {
    if let Some(lag) = lag {
        // Written even when 0: presence says "this was a follower read".
        w.varint(first, lag.entries);
        w.varint(first + 1, lag.ms.unwrap_or(LAG_MS_UNKNOWN));
    }
}

fn lag_ms(wire: u64) -> Option<u64> {
    (wire != LAG_MS_UNKNOWN).then_some(wire)
}

/// One key returned by a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Bytes,
    /// `None` when the scan asked for keys only.
    pub value: Option<Bytes>,
    pub version: u64,
    pub expires_at_ms: Option<u64>,
}

/// Everything a client can ask. Field numbers and defaults are listed per variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// 1 min_version (required), 2 max_version (required), 3 client_name (""), 4 client_id
    /// (0: none). A client id names a session: the connection's writes carry it, with their
    /// request id as the session's sequence number, so a cluster applies a retried write once.
    Hello {
        min_version: u16,
        max_version: u16,
        client_name: String,
        client_id: u64,
    },
    /// 1 payload (empty).
    Ping { payload: Bytes },
    /// 1 keyspace ("default"), 2 key (required), 3 consistency (absent: the keyspace's
    /// read consistency, linearizable unless it was created with another).
    Get {
        keyspace: String,
        key: Bytes,
        consistency: Option<Consistency>,
    },
    /// 1 keyspace, 2 key (required), 3 value (empty), 4 ttl_ms (absent or 0: no expiry),
    /// 5 condition kind (0), 6 expected_version (0).
    Put {
        keyspace: String,
        key: Bytes,
        value: Bytes,
        ttl_ms: Option<u64>,
        condition: Condition,
    },
    /// 1 keyspace, 2 key (required), 3 condition kind (0), 4 expected_version (0).
    Delete {
        keyspace: String,
        key: Bytes,
        condition: Condition,
    },
    /// 1 keyspace, 2 key (required), 3 delta (zigzag, 0).
    Incr {
        keyspace: String,
        key: Bytes,
        delta: i64,
    },
    /// 1 keyspace, 2 start, 3 end, 4 prefix, 5 limit (0: server default), 6 continuation,
    /// 7 keys_only (false), 8 consistency (absent: the keyspace's), 9 partition (absent: the
    /// one the range settles, see below). Presence matters for 2, 3, 4, 6, 8, 9. On a partitioned cluster
    /// a scan runs on one partition: the one its prefix's (or both its ends') hash tag names,
    /// else the one `partition` names; a client merges the partitions' pages.
    Scan {
        keyspace: String,
        range: ScanRange,
        limit: u32,
        continuation: Option<Bytes>,
        keys_only: bool,
        consistency: Option<Consistency>,
        partition: Option<u32>,
    },
    /// 1 keyspace, 2 op (repeated nested message: 1 kind 0=put 1=delete, 2 key (required),
    /// 3 value, 4 ttl_ms, 5 condition kind, 6 expected_version). Applied atomically.
    Batch { keyspace: String, ops: Vec<BatchOp> },
    /// 1 known_version (0). Asks for the node's cluster map if it is newer than the one the
    /// client has (see `kvstore::partition::map`).
    ClusterMap { known_version: u64 },
    /// 1 change (required): an encoded `kvstore::partition::change::MapChange` (create or
    /// drop a keyspace, register, drain or remove a node, rebalance, report a group's
    /// membership). Served by the meta group's leader (others redirect, as for group 0);
    /// answered with `ClusterMapOk` holding the map after the change.
    MapChange { change: Bytes },
}

/// Everything a server can answer. Field numbers and defaults are listed per variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// 1 version (required), 2 server_name (""), 3 frame_bytes_max (0: not advertised, assume
    /// `FRAME_BYTES_MAX_DEFAULT`).
    HelloOk {
        version: u16,
        server_name: String,
        frame_bytes_max: u32,
    },
    /// 1 payload (empty), echoing the ping.
    Pong { payload: Bytes },
    /// 1 found (false), 2 value (empty), 3 version (0), 4 expires_at_ms (absent or 0: none),
    /// 5 lag_entries, 6 lag_ms (both absent unless a follower read: see [`ReadLag`]).
    /// Fields 2..4 are ignored when found is false.
    GetOk {
        found: Option<Versioned>,
        lag: Option<ReadLag>,
    },
    /// 1 applied (false), 2 version (0): the new version if applied, otherwise the key's
    /// current version (0 if absent).
    PutOk { applied: bool, version: u64 },
    /// 1 applied (false), 2 version (0), 3 existed (false). `applied` says whether the
    /// condition held (an unconditional delete of a missing key is applied); `existed` whether
    /// the key was present when the request ran. `version` is the version of the deletion if
    /// applied and the key existed, otherwise the key's current version (0 if absent).
    DeleteOk {
        applied: bool,
        existed: bool,
        version: u64,
    },
    /// 1 value (zigzag, 0), 2 version (0).
    IncrOk { value: i64, version: u64 },
    /// 1 entry (repeated nested message: 1 key (required), 2 value (absent when keys_only),
    /// 3 version, 4 expires_at_ms), 2 continuation (absent: the scan is finished), 3
    /// lag_entries, 4 lag_ms (as in `GetOk`).
    ScanOk {
        entries: Vec<Entry>,
        continuation: Option<Bytes>,
        lag: Option<ReadLag>,
    },
    /// 1 applied (false), 2 version (0), 3 failed_op (absent: none). When applied, `version`
    /// is the version of all the batch's writes; otherwise `failed_op` is the index of the
    /// first op whose condition failed and `version` that key's current version.
    BatchOk {
        applied: bool,
        version: u64,
        failed_op: Option<u32>,
    },
    /// 1 map (absent: the node's map is not newer than the one asked about, or it has none):
    /// an encoded `kvstore::partition::ClusterMap`.
    ClusterMapOk { map: Option<Bytes> },
    /// 1 code (required), 2 message ("").
    Error { code: ErrorCode, message: String },
}

/// Error codes carried by [`Response::Error`]. Unknown numbers decode to `Other` so an old
/// client can still report an error a newer server invented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    UnsupportedVersion,
    HandshakeRequired,
    UnknownOpcode,
    FrameTooLarge,
    Malformed,
    InvalidArgument,
    NotAnInteger,
    Storage,
    Busy,
    ShuttingDown,
    Timeout,
    Internal,
    /// A write reached a replica that does not lead; the message ends with ` at HOST:PORT`
    /// when the leader's address is known. Nothing was applied: retry there.
    NotLeader,
    /// The cluster could not take the request now (no quorum, an election, a membership
    /// change in progress). Nothing was applied: retry shortly.
    Unavailable,
    /// The keys of one request (a batch, a multi-key command) are in different partitions;
    /// the message names their slots. Nothing was applied.
    CrossPartition,
    /// The keyspace is not in the cluster map.
    UnknownKeyspace,
    /// The request carried an epoch of its partition ([`ROUTING_EPOCH_FIELD`]) older than
    /// the one this node's replica is at: the sender's map is stale. The message ends with
    /// `epoch N` (the current one, see [`stale_epoch_current`]). Nothing was applied.
    StaleEpoch,
    /// The keyspace holds as many bytes as its limit allows (`kvstore keyspace limit`): a
    /// write that adds data is refused; deletes go. The message names the keyspace, what it
    /// holds and the limit. Nothing was applied.
    OverQuota,
    /// The keyspace is over its limit of requests a second; the message ends with `retry
    /// after N ms`. Nothing was applied.
    RateLimited,
    /// A number this code does not know. Never holds one of the numbers above.
    Other(u32),
}

impl ErrorCode {
    pub fn code(self) -> u32 {
        match self {
            ErrorCode::UnsupportedVersion => 1,
            ErrorCode::HandshakeRequired => 2,
            ErrorCode::UnknownOpcode => 3,
            ErrorCode::FrameTooLarge => 4,
            ErrorCode::Malformed => 5,
            ErrorCode::InvalidArgument => 6,
            ErrorCode::NotAnInteger => 7,
            ErrorCode::Storage => 8,
            ErrorCode::Busy => 9,
            ErrorCode::ShuttingDown => 10,
            ErrorCode::Timeout => 11,
            ErrorCode::Internal => 12,
            ErrorCode::NotLeader => 13,
            ErrorCode::Unavailable => 14,
            ErrorCode::CrossPartition => 15,
            ErrorCode::UnknownKeyspace => 16,
            ErrorCode::StaleEpoch => 17,
            ErrorCode::OverQuota => 18,
            ErrorCode::RateLimited => 19,
            ErrorCode::Other(code) => code,
        }
    }

    pub fn from_code(code: u32) -> Self {
        match code {
            1 => ErrorCode::UnsupportedVersion,
            2 => ErrorCode::HandshakeRequired,
            3 => ErrorCode::UnknownOpcode,
            4 => ErrorCode::FrameTooLarge,
            5 => ErrorCode::Malformed,
            6 => ErrorCode::InvalidArgument,
            7 => ErrorCode::NotAnInteger,
            8 => ErrorCode::Storage,
            9 => ErrorCode::Busy,
            10 => ErrorCode::ShuttingDown,
            11 => ErrorCode::Timeout,
            12 => ErrorCode::Internal,
            13 => ErrorCode::NotLeader,
            14 => ErrorCode::Unavailable,
            15 => ErrorCode::CrossPartition,
            16 => ErrorCode::UnknownKeyspace,
            17 => ErrorCode::StaleEpoch,
            18 => ErrorCode::OverQuota,
            19 => ErrorCode::RateLimited,
            other => ErrorCode::Other(other),
        }
    }
}

/// The field number, in any keyed request (get, put, delete, incr, scan, batch), of the
/// epoch of the key's partition as the sender's cluster map has it (the index of the group's
/// membership: see `kvstore::partition::map::PartitionInfo::epoch`). Optional; the request
/// decoders ignore it, and a node checks it at the edge ([`routing_epoch`]).
pub const ROUTING_EPOCH_FIELD: u32 = 15;

/// The routing epoch a request's body carries, if any (see [`ROUTING_EPOCH_FIELD`]).
pub fn routing_epoch(body: &Bytes) -> Result<Option<u64>, DecodeError> {
    for field in fields::fields("request", body) {
        let field = field?;
        if field.number == ROUTING_EPOCH_FIELD {
            return field.varint().map(Some);
        }
    }
    Ok(None)
}

/// The message of a [`ErrorCode::StaleEpoch`] answer for `group`, whose replica here is at
/// `current` while the request said `sent`.
pub fn stale_epoch_message(group: u64, sent: u64, current: u64) -> String {
    format!(
        "the request was routed by a stale cluster map: group {group} is at a later membership \
         than the epoch {sent} the request carried; now at epoch {current}"
    )
}

/// The current epoch a [`ErrorCode::StaleEpoch`] message names.
pub fn stale_epoch_current(message: &str) -> Option<u64> {
    message.rsplit_once("epoch ")?.1.trim().parse().ok()
}

/// The message of a [`ErrorCode::RateLimited`] answer: `keyspace` is over its `max` requests
/// a second, and a request may pass again after `wait_ms`.
pub fn rate_limited_message(keyspace: &str, max: u32, wait_ms: u64) -> String {
    format!("keyspace {keyspace} is over its limit of {max} requests a second; retry after {wait_ms} ms")
}

/// How long a [`ErrorCode::RateLimited`] message says to wait, in milliseconds.
pub fn rate_limited_wait_ms(message: &str) -> Option<u64> {
    message
        .rsplit_once("retry after ")?
        .1
        .trim_end_matches(" ms")
        .parse()
        .ok()
}

/// Why a frame's body is not the message its opcode names. The frame boundaries are intact,
/// so the server answers the request id with an error and may keep the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("unknown opcode {opcode:#06x}")]
    UnknownOpcode { opcode: u16 },
    #[error("{message}: required field {field} is missing")]
    MissingField { message: &'static str, field: u32 },
    #[error("{message}: field {field} has wire type {found:?}, expected {expected:?}")]
    WrongWireType {
        message: &'static str,
        field: u32,
        expected: WireType,
        found: WireType,
    },
    #[error("{message}: field {field} has value {value}, which is out of range")]
    InvalidValue {
        message: &'static str,
        field: u32,
        value: u64,
    },
    #[error("{message}: {source}")]
    Field {
        message: &'static str,
        #[source]
        source: FieldError,
    },
}

impl DecodeError {
    /// The code the server should answer with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            DecodeError::UnknownOpcode { .. } => ErrorCode::UnknownOpcode,
            _ => ErrorCode::Malformed,
        }
    }
}

mod fields;
mod request;
mod response;
#[cfg(test)]
mod tests;

use fields::*;
