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
    /// 1 keyspace ("default"), 2 key (required), 3 consistency (Linearizable).
    Get {
        keyspace: String,
        key: Bytes,
        consistency: Consistency,
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
    /// 7 keys_only (false), 8 consistency (Linearizable). Presence matters for 2, 3, 4, 6.
    Scan {
        keyspace: String,
        range: ScanRange,
        limit: u32,
        continuation: Option<Bytes>,
        keys_only: bool,
        consistency: Consistency,
    },
    /// 1 keyspace, 2 op (repeated nested message: 1 kind 0=put 1=delete, 2 key (required),
    /// 3 value, 4 ttl_ms, 5 condition kind, 6 expected_version). Applied atomically.
    Batch { keyspace: String, ops: Vec<BatchOp> },
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
            other => ErrorCode::Other(other),
        }
    }
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

// ---------------------------------------------------------------------------------------------
// Encoding helpers. Optional fields are left out when they hold their default: the decoder
// restores the default, and leaving them out keeps the common frames small.

fn put_keyspace(w: &mut FieldWriter<'_>, field: u32, keyspace: &str) {
    if keyspace != DEFAULT_KEYSPACE {
        w.str(field, keyspace);
    }
}

fn put_nonzero(w: &mut FieldWriter<'_>, field: u32, value: u64) {
    if value != 0 {
        w.varint(field, value);
    }
}

fn put_nonempty(w: &mut FieldWriter<'_>, field: u32, value: &[u8]) {
    if !value.is_empty() {
        w.bytes(field, value);
    }
}

fn put_true(w: &mut FieldWriter<'_>, field: u32, value: bool) {
    if value {
        w.bool(field, true);
    }
}

/// Presence-significant bytes: written whenever `Some`, even when empty.
fn put_present(w: &mut FieldWriter<'_>, field: u32, value: Option<&Bytes>) {
    if let Some(value) = value {
        w.bytes(field, value);
    }
}

/// A time in ms where 0 and absent both mean "none".
fn put_ms(w: &mut FieldWriter<'_>, field: u32, value: Option<u64>) {
    put_nonzero(w, field, value.unwrap_or(0));
}

fn put_condition(w: &mut FieldWriter<'_>, kind_field: u32, version_field: u32, c: &Condition) {
    match *c {
        Condition::None => {}
        Condition::IfAbsent => w.varint(kind_field, 1),
        Condition::IfPresent => w.varint(kind_field, 2),
        Condition::IfVersion(version) => {
            w.varint(kind_field, 3);
            // Always written, even 0, so the condition is self-describing on the wire.
            w.varint(version_field, version);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding helpers.

/// One field of a message being decoded, with the context needed for a precise error.
struct Field {
    message: &'static str,
    number: u32,
    value: Value,
}

impl Field {
    fn wrong_wire_type(&self, expected: WireType) -> DecodeError {
        DecodeError::WrongWireType {
            message: self.message,
            field: self.number,
            expected,
            found: self.value.wire_type(),
        }
    }

    fn invalid(&self, value: u64) -> DecodeError {
        DecodeError::InvalidValue {
            message: self.message,
            field: self.number,
            value,
        }
    }

    fn varint(&self) -> Result<u64, DecodeError> {
        match self.value {
            Value::Varint(value) => Ok(value),
            Value::Bytes(_) => Err(self.wrong_wire_type(WireType::Varint)),
        }
    }

    fn bytes(self) -> Result<Bytes, DecodeError> {
        match self.value {
            Value::Bytes(bytes) => Ok(bytes),
            Value::Varint(_) => Err(self.wrong_wire_type(WireType::Len)),
        }
    }

    fn string(self) -> Result<String, DecodeError> {
        let (message, field) = (self.message, self.number);
        let bytes = self.bytes()?;
        match std::str::from_utf8(&bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(DecodeError::Field {
                message,
                source: FieldError::InvalidUtf8 { field },
            }),
        }
    }

    /// Strict 0/1: anything else is more likely corruption than a deliberate "true".
    fn bool(&self) -> Result<bool, DecodeError> {
        match self.varint()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.invalid(other)),
        }
    }

    fn u16(&self) -> Result<u16, DecodeError> {
        let value = self.varint()?;
        u16::try_from(value).map_err(|_| self.invalid(value))
    }

    fn u32(&self) -> Result<u32, DecodeError> {
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| self.invalid(value))
    }

    fn sint(&self) -> Result<i64, DecodeError> {
        Ok(super::field::zigzag_decode(self.varint()?))
    }

    /// A time in ms where 0 means "none".
    fn ms(&self) -> Result<Option<u64>, DecodeError> {
        Ok(Some(self.varint()?).filter(|&ms| ms != 0))
    }

    fn consistency(&self) -> Result<Consistency, DecodeError> {
        let value = self.varint()?;
        Consistency::from_wire(value).ok_or_else(|| self.invalid(value))
    }
}

/// The fields of `body`, tagged with the message name for errors. Unknown field numbers are
/// yielded like any other; each decoder's `match` ignores them, which is what lets a newer
/// peer add fields.
fn fields(message: &'static str, body: &Bytes) -> impl Iterator<Item = Result<Field, DecodeError>> {
    FieldReader::new(body.clone()).map(move |field| match field {
        Ok((number, value)) => Ok(Field {
            message,
            number,
            value,
        }),
        Err(source) => Err(DecodeError::Field { message, source }),
    })
}

fn required<T>(message: &'static str, field: u32, value: Option<T>) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::MissingField { message, field })
}

/// The raw condition fields of a message, combined once the whole body has been read (the
/// two fields may come in either order).
#[derive(Default)]
struct ConditionFields {
    kind: u64,
    expected_version: u64,
}

impl ConditionFields {
    fn finish(self, message: &'static str, kind_field: u32) -> Result<Condition, DecodeError> {
        match self.kind {
            0 => Ok(Condition::None),
            1 => Ok(Condition::IfAbsent),
            2 => Ok(Condition::IfPresent),
            3 => Ok(Condition::IfVersion(self.expected_version)),
            // An unknown condition must not be ignored: the write would become unconditional.
            other => Err(DecodeError::InvalidValue {
                message,
                field: kind_field,
                value: other,
            }),
        }
    }
}

fn keyspace_or_default(keyspace: Option<String>) -> String {
    keyspace.unwrap_or_else(|| DEFAULT_KEYSPACE.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Requests.

impl Request {
    /// Whether this request changes data: on a cluster node, exactly these go through the Raft
    /// log; everything else runs on the node's own engine. The match names every request (no
    /// wildcard), so a new one must be classified here before it compiles.
    pub fn is_write(&self) -> bool {
        match self {
            Request::Put { .. }
            | Request::Delete { .. }
            | Request::Incr { .. }
            | Request::Batch { .. } => true,
            Request::Hello { .. }
            | Request::Ping { .. }
            | Request::Get { .. }
            | Request::Scan { .. } => false,
        }
    }

    pub fn opcode(&self) -> u16 {
        match self {
            Request::Hello { .. } => opcode::HELLO,
            Request::Ping { .. } => opcode::PING,
            Request::Get { .. } => opcode::GET,
            Request::Put { .. } => opcode::PUT,
            Request::Delete { .. } => opcode::DELETE,
            Request::Incr { .. } => opcode::INCR,
            Request::Scan { .. } => opcode::SCAN,
            Request::Batch { .. } => opcode::BATCH,
        }
    }

    /// Appends this request as one frame to `dst`. Fails only if the frame would exceed what
    /// the `u32` length can express, in which case `dst` is left as it was.
    pub fn encode(&self, request_id: u64, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame_with(self.opcode(), request_id, dst, |dst| {
            self.encode_body(&mut FieldWriter::new(dst))
        })
    }

    /// Writes this request's fields (the frame body).
    pub fn encode_body(&self, w: &mut FieldWriter<'_>) {
        match self {
            Request::Hello {
                min_version,
                max_version,
                client_name,
                client_id,
            } => {
                w.varint(1, u64::from(*min_version));
                w.varint(2, u64::from(*max_version));
                put_nonempty(w, 3, client_name.as_bytes());
                if *client_id != 0 {
                    w.varint(4, *client_id);
                }
            }
            Request::Ping { payload } => put_nonempty(w, 1, payload),
            Request::Get {
                keyspace,
                key,
                consistency,
            } => {
                put_keyspace(w, 1, keyspace);
                w.bytes(2, key);
                put_nonzero(w, 3, *consistency as u64);
            }
            Request::Put {
                keyspace,
                key,
                value,
                ttl_ms,
                condition,
            } => {
                put_keyspace(w, 1, keyspace);
                w.bytes(2, key);
                put_nonempty(w, 3, value);
                put_ms(w, 4, *ttl_ms);
                put_condition(w, 5, 6, condition);
            }
            Request::Delete {
                keyspace,
                key,
                condition,
            } => {
                put_keyspace(w, 1, keyspace);
                w.bytes(2, key);
                put_condition(w, 3, 4, condition);
            }
            Request::Incr {
                keyspace,
                key,
                delta,
            } => {
                put_keyspace(w, 1, keyspace);
                w.bytes(2, key);
                if *delta != 0 {
                    w.sint(3, *delta);
                }
            }
            Request::Scan {
                keyspace,
                range,
                limit,
                continuation,
                keys_only,
                consistency,
            } => {
                put_keyspace(w, 1, keyspace);
                put_present(w, 2, range.start.as_ref());
                put_present(w, 3, range.end.as_ref());
                put_present(w, 4, range.prefix.as_ref());
                put_nonzero(w, 5, u64::from(*limit));
                put_present(w, 6, continuation.as_ref());
                put_true(w, 7, *keys_only);
                put_nonzero(w, 8, *consistency as u64);
            }
            Request::Batch { keyspace, ops } => {
                put_keyspace(w, 1, keyspace);
                for op in ops {
                    w.message(2, |w| encode_batch_op(w, op));
                }
            }
        }
    }

    /// Decodes the body of `frame` according to its opcode.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        let body = &frame.body;
        match frame.opcode {
            opcode::HELLO => decode_hello(body),
            opcode::PING => decode_ping(body),
            opcode::GET => decode_get(body),
            opcode::PUT => decode_put(body),
            opcode::DELETE => decode_delete(body),
            opcode::INCR => decode_incr(body),
            opcode::SCAN => decode_scan(body),
            opcode::BATCH => decode_batch(body),
            opcode => Err(DecodeError::UnknownOpcode { opcode }),
        }
    }
}

fn encode_batch_op(w: &mut FieldWriter<'_>, op: &BatchOp) {
    match op {
        BatchOp::Put {
            key,
            value,
            ttl_ms,
            condition,
        } => {
            // kind 0 (put) is the default and is left out.
            w.bytes(2, key);
            put_nonempty(w, 3, value);
            put_ms(w, 4, *ttl_ms);
            put_condition(w, 5, 6, condition);
        }
        BatchOp::Delete { key, condition } => {
            w.varint(1, 1);
            w.bytes(2, key);
            put_condition(w, 5, 6, condition);
        }
    }
}

fn decode_hello(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Hello";
    let (mut min_version, mut max_version, mut client_name) = (None, None, String::new());
    let mut client_id = 0;
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => min_version = Some(field.u16()?),
            2 => max_version = Some(field.u16()?),
            3 => client_name = field.string()?,
            4 => client_id = field.varint()?,
            _ => {}
        }
    }
    Ok(Request::Hello {
        min_version: required(MESSAGE, 1, min_version)?,
        max_version: required(MESSAGE, 2, max_version)?,
        client_name,
        client_id,
    })
}

fn decode_ping(body: &Bytes) -> Result<Request, DecodeError> {
    let mut payload = Bytes::new();
    for field in fields("Ping", body) {
        let field = field?;
        if field.number == 1 {
            payload = field.bytes()?;
        }
    }
    Ok(Request::Ping { payload })
}

fn decode_get(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Get";
    let (mut keyspace, mut key, mut consistency) = (None, None, Consistency::default());
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => key = Some(field.bytes()?),
            3 => consistency = field.consistency()?,
            _ => {}
        }
    }
    Ok(Request::Get {
        keyspace: keyspace_or_default(keyspace),
        key: required(MESSAGE, 2, key)?,
        consistency,
    })
}

fn decode_put(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Put";
    let (mut keyspace, mut key, mut value, mut ttl_ms) = (None, None, Bytes::new(), None);
    let mut condition = ConditionFields::default();
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => key = Some(field.bytes()?),
            3 => value = field.bytes()?,
            4 => ttl_ms = field.ms()?,
            5 => condition.kind = field.varint()?,
            6 => condition.expected_version = field.varint()?,
            _ => {}
        }
    }
    Ok(Request::Put {
        keyspace: keyspace_or_default(keyspace),
        key: required(MESSAGE, 2, key)?,
        value,
        ttl_ms,
        condition: condition.finish(MESSAGE, 5)?,
    })
}

fn decode_delete(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Delete";
    let (mut keyspace, mut key) = (None, None);
    let mut condition = ConditionFields::default();
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => key = Some(field.bytes()?),
            3 => condition.kind = field.varint()?,
            4 => condition.expected_version = field.varint()?,
            _ => {}
        }
    }
    Ok(Request::Delete {
        keyspace: keyspace_or_default(keyspace),
        key: required(MESSAGE, 2, key)?,
        condition: condition.finish(MESSAGE, 3)?,
    })
}

fn decode_incr(body: &Bytes) -> Result<Request, DecodeError> {
    const MESSAGE: &str = "Incr";
    let (mut keyspace, mut key, mut delta) = (None, None, 0);
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => key = Some(field.bytes()?),
            3 => delta = field.sint()?,
            _ => {}
        }
    }
    Ok(Request::Incr {
        keyspace: keyspace_or_default(keyspace),
        key: required(MESSAGE, 2, key)?,
        delta,
    })
}

fn decode_scan(body: &Bytes) -> Result<Request, DecodeError> {
    let (mut keyspace, mut range, mut limit) = (None, ScanRange::default(), 0);
    let (mut continuation, mut keys_only, mut consistency) = (None, false, Consistency::default());
    for field in fields("Scan", body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => range.start = Some(field.bytes()?),
            3 => range.end = Some(field.bytes()?),
            4 => range.prefix = Some(field.bytes()?),
            5 => limit = field.u32()?,
            6 => continuation = Some(field.bytes()?),
            7 => keys_only = field.bool()?,
            8 => consistency = field.consistency()?,
            _ => {}
        }
    }
    Ok(Request::Scan {
        keyspace: keyspace_or_default(keyspace),
        range,
        limit,
        continuation,
        keys_only,
        consistency,
    })
}

fn decode_batch(body: &Bytes) -> Result<Request, DecodeError> {
    let (mut keyspace, mut ops) = (None, Vec::new());
    for field in fields("Batch", body) {
        let field = field?;
        match field.number {
            1 => keyspace = Some(field.string()?),
            2 => ops.push(decode_batch_op(&field.bytes()?)?),
            _ => {}
        }
    }
    Ok(Request::Batch {
        keyspace: keyspace_or_default(keyspace),
        ops,
    })
}

fn decode_batch_op(body: &Bytes) -> Result<BatchOp, DecodeError> {
    const MESSAGE: &str = "Batch.op";
    const KIND_PUT: u64 = 0;
    const KIND_DELETE: u64 = 1;
    let (mut kind, mut key, mut value, mut ttl_ms) = (KIND_PUT, None, Bytes::new(), None);
    let mut condition = ConditionFields::default();
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => kind = field.varint()?,
            2 => key = Some(field.bytes()?),
            3 => value = field.bytes()?,
            4 => ttl_ms = field.ms()?,
            5 => condition.kind = field.varint()?,
            6 => condition.expected_version = field.varint()?,
            _ => {}
        }
    }
    let key = required(MESSAGE, 2, key)?;
    let condition = condition.finish(MESSAGE, 5)?;
    match kind {
        KIND_PUT => Ok(BatchOp::Put {
            key,
            value,
            ttl_ms,
            condition,
        }),
        // A delete ignores value and ttl_ms, as an older peer ignores unknown fields.
        KIND_DELETE => Ok(BatchOp::Delete { key, condition }),
        other => Err(DecodeError::InvalidValue {
            message: MESSAGE,
            field: 1,
            value: other,
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Responses.

impl Response {
    /// An error response.
    pub fn error(code: ErrorCode, message: impl Into<String>) -> Self {
        Response::Error {
            code,
            message: message.into(),
        }
    }

    pub fn opcode(&self) -> u16 {
        match self {
            Response::HelloOk { .. } => opcode::response_to(opcode::HELLO),
            Response::Pong { .. } => opcode::response_to(opcode::PING),
            Response::GetOk { .. } => opcode::response_to(opcode::GET),
            Response::PutOk { .. } => opcode::response_to(opcode::PUT),
            Response::DeleteOk { .. } => opcode::response_to(opcode::DELETE),
            Response::IncrOk { .. } => opcode::response_to(opcode::INCR),
            Response::ScanOk { .. } => opcode::response_to(opcode::SCAN),
            Response::BatchOk { .. } => opcode::response_to(opcode::BATCH),
            Response::Error { .. } => opcode::ERROR,
        }
    }

    /// Appends this response as one frame to `dst`, answering `request_id`. Fails only if the
    /// frame would exceed what the `u32` length can express, leaving `dst` as it was.
    pub fn encode(&self, request_id: u64, dst: &mut BytesMut) -> Result<(), FrameError> {
        encode_frame_with(self.opcode(), request_id, dst, |dst| {
            self.encode_body(&mut FieldWriter::new(dst))
        })
    }

    /// Writes this response's fields (the frame body).
    pub fn encode_body(&self, w: &mut FieldWriter<'_>) {
        match self {
            Response::HelloOk {
                version,
                server_name,
                frame_bytes_max,
            } => {
                w.varint(1, u64::from(*version));
                put_nonempty(w, 2, server_name.as_bytes());
                put_nonzero(w, 3, u64::from(*frame_bytes_max));
            }
            Response::Pong { payload } => put_nonempty(w, 1, payload),
            Response::GetOk { found, lag } => {
                if let Some(found) = found {
                    w.bool(1, true);
                    put_nonempty(w, 2, &found.value);
                    put_nonzero(w, 3, found.version);
                    put_ms(w, 4, found.expires_at_ms);
                }
                put_lag(w, 5, lag);
            }
            Response::PutOk { applied, version } => {
                put_true(w, 1, *applied);
                put_nonzero(w, 2, *version);
            }
            Response::DeleteOk {
                applied,
                existed,
                version,
            } => {
                put_true(w, 1, *applied);
                put_nonzero(w, 2, *version);
                put_true(w, 3, *existed);
            }
            Response::IncrOk { value, version } => {
                if *value != 0 {
                    w.sint(1, *value);
                }
                put_nonzero(w, 2, *version);
            }
            Response::ScanOk {
                entries,
                continuation,
                lag,
            } => {
                put_lag(w, 3, lag);
                for entry in entries {
                    w.message(1, |w| {
                        w.bytes(1, &entry.key);
                        put_present(w, 2, entry.value.as_ref());
                        put_nonzero(w, 3, entry.version);
                        put_ms(w, 4, entry.expires_at_ms);
                    });
                }
                put_present(w, 2, continuation.as_ref());
            }
            Response::BatchOk {
                applied,
                version,
                failed_op,
            } => {
                put_true(w, 1, *applied);
                put_nonzero(w, 2, *version);
                // Presence matters: op 0 can fail.
                if let Some(index) = failed_op {
                    w.varint(3, u64::from(*index));
                }
            }
            Response::Error { code, message } => {
                w.varint(1, u64::from(code.code()));
                put_nonempty(w, 2, message.as_bytes());
            }
        }
    }

    /// Decodes the body of `frame` according to its opcode. The request id it answers is
    /// `frame.request_id`.
    pub fn decode(frame: &Frame) -> Result<Self, DecodeError> {
        let body = &frame.body;
        const HELLO_OK: u16 = opcode::response_to(opcode::HELLO);
        const PONG: u16 = opcode::response_to(opcode::PING);
        const GET_OK: u16 = opcode::response_to(opcode::GET);
        const PUT_OK: u16 = opcode::response_to(opcode::PUT);
        const DELETE_OK: u16 = opcode::response_to(opcode::DELETE);
        const INCR_OK: u16 = opcode::response_to(opcode::INCR);
        const SCAN_OK: u16 = opcode::response_to(opcode::SCAN);
        const BATCH_OK: u16 = opcode::response_to(opcode::BATCH);
        match frame.opcode {
            HELLO_OK => decode_hello_ok(body),
            PONG => decode_pong(body),
            GET_OK => decode_get_ok(body),
            PUT_OK => decode_put_ok(body),
            DELETE_OK => decode_delete_ok(body),
            INCR_OK => decode_incr_ok(body),
            SCAN_OK => decode_scan_ok(body),
            BATCH_OK => decode_batch_ok(body),
            opcode::ERROR => decode_error(body),
            opcode => Err(DecodeError::UnknownOpcode { opcode }),
        }
    }
}

fn decode_hello_ok(body: &Bytes) -> Result<Response, DecodeError> {
    const MESSAGE: &str = "HelloOk";
    let (mut version, mut server_name, mut frame_bytes_max) = (None, String::new(), 0);
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => version = Some(field.u16()?),
            2 => server_name = field.string()?,
            3 => frame_bytes_max = field.u32()?,
            _ => {}
        }
    }
    Ok(Response::HelloOk {
        version: required(MESSAGE, 1, version)?,
        server_name,
        frame_bytes_max,
    })
}

fn decode_pong(body: &Bytes) -> Result<Response, DecodeError> {
    let mut payload = Bytes::new();
    for field in fields("Pong", body) {
        let field = field?;
        if field.number == 1 {
            payload = field.bytes()?;
        }
    }
    Ok(Response::Pong { payload })
}

fn decode_get_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut found, mut value, mut version, mut expires_at_ms) = (false, Bytes::new(), 0, None);
    let mut lag: Option<ReadLag> = None;
    for field in fields("GetOk", body) {
        let field = field?;
        match field.number {
            1 => found = field.bool()?,
            2 => value = field.bytes()?,
            3 => version = field.varint()?,
            4 => expires_at_ms = field.ms()?,
            5 => lag.get_or_insert_default().entries = field.varint()?,
            6 => lag.get_or_insert_default().ms = lag_ms(field.varint()?),
            _ => {}
        }
    }
    let found = found.then_some(Versioned {
        value,
        version,
        expires_at_ms,
    });
    Ok(Response::GetOk { found, lag })
}

fn decode_put_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut applied, mut version) = (false, 0);
    for field in fields("PutOk", body) {
        let field = field?;
        match field.number {
            1 => applied = field.bool()?,
            2 => version = field.varint()?,
            _ => {}
        }
    }
    Ok(Response::PutOk { applied, version })
}

fn decode_delete_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut applied, mut version, mut existed) = (false, 0, false);
    for field in fields("DeleteOk", body) {
        let field = field?;
        match field.number {
            1 => applied = field.bool()?,
            2 => version = field.varint()?,
            3 => existed = field.bool()?,
            _ => {}
        }
    }
    Ok(Response::DeleteOk {
        applied,
        existed,
        version,
    })
}

fn decode_incr_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut value, mut version) = (0, 0);
    for field in fields("IncrOk", body) {
        let field = field?;
        match field.number {
            1 => value = field.sint()?,
            2 => version = field.varint()?,
            _ => {}
        }
    }
    Ok(Response::IncrOk { value, version })
}

fn decode_scan_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut entries, mut continuation) = (Vec::new(), None);
    let mut lag: Option<ReadLag> = None;
    for field in fields("ScanOk", body) {
        let field = field?;
        match field.number {
            1 => entries.push(decode_entry(&field.bytes()?)?),
            2 => continuation = Some(field.bytes()?),
            3 => lag.get_or_insert_default().entries = field.varint()?,
            4 => lag.get_or_insert_default().ms = lag_ms(field.varint()?),
            _ => {}
        }
    }
    Ok(Response::ScanOk {
        entries,
        continuation,
        lag,
    })
}

fn decode_entry(body: &Bytes) -> Result<Entry, DecodeError> {
    const MESSAGE: &str = "ScanOk.entry";
    let (mut key, mut value, mut version, mut expires_at_ms) = (None, None, 0, None);
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => key = Some(field.bytes()?),
            2 => value = Some(field.bytes()?),
            3 => version = field.varint()?,
            4 => expires_at_ms = field.ms()?,
            _ => {}
        }
    }
    Ok(Entry {
        key: required(MESSAGE, 1, key)?,
        value,
        version,
        expires_at_ms,
    })
}

fn decode_batch_ok(body: &Bytes) -> Result<Response, DecodeError> {
    let (mut applied, mut version, mut failed_op) = (false, 0, None);
    for field in fields("BatchOk", body) {
        let field = field?;
        match field.number {
            1 => applied = field.bool()?,
            2 => version = field.varint()?,
            3 => failed_op = Some(field.u32()?),
            _ => {}
        }
    }
    Ok(Response::BatchOk {
        applied,
        version,
        failed_op,
    })
}

fn decode_error(body: &Bytes) -> Result<Response, DecodeError> {
    const MESSAGE: &str = "Error";
    let (mut code, mut message) = (None, String::new());
    for field in fields(MESSAGE, body) {
        let field = field?;
        match field.number {
            1 => code = Some(ErrorCode::from_code(field.u32()?)),
            2 => message = field.string()?,
            _ => {}
        }
    }
    Ok(Response::Error {
        code: required(MESSAGE, 1, code)?,
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::super::frame::{decode_frame, FRAME_BYTES_MAX_DEFAULT};
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    // ---- helpers ------------------------------------------------------------------------------

    fn frame_of(opcode: u16, request_id: u64, body: &[u8]) -> Frame {
        Frame {
            opcode,
            request_id,
            body: Bytes::copy_from_slice(body),
        }
    }

    fn body_of(build: impl FnOnce(&mut FieldWriter<'_>)) -> Vec<u8> {
        let mut dst = BytesMut::new();
        build(&mut FieldWriter::new(&mut dst));
        dst.to_vec()
    }

    /// Encodes, cuts the frame back out of the stream, decodes, and returns the message.
    fn request_round_trip(request: &Request) -> Request {
        let mut buf = BytesMut::new();
        request.encode(77, &mut buf).expect("fits");
        let frame = decode_frame(&mut buf, FRAME_BYTES_MAX_DEFAULT)
            .expect("valid")
            .expect("whole");
        assert!(buf.is_empty(), "one frame, nothing left");
        assert_eq!((frame.opcode, frame.request_id), (request.opcode(), 77));
        Request::decode(&frame).expect("decodes")
    }

    fn response_round_trip(response: &Response) -> Response {
        let mut buf = BytesMut::new();
        response.encode(78, &mut buf).expect("fits");
        let frame = decode_frame(&mut buf, FRAME_BYTES_MAX_DEFAULT)
            .expect("valid")
            .expect("whole");
        assert!(buf.is_empty(), "one frame, nothing left");
        assert_eq!((frame.opcode, frame.request_id), (response.opcode(), 78));
        Response::decode(&frame).expect("decodes")
    }

    /// Checks that `body` under `opcode` decodes to `expected` (as a request).
    fn check_request(opcode: u16, body: &[u8], expected: Result<Request, DecodeError>) {
        assert_eq!(
            Request::decode(&frame_of(opcode, 1, body)),
            expected,
            "body {body:02x?}"
        );
    }

    fn check_response(opcode: u16, body: &[u8], expected: Result<Response, DecodeError>) {
        assert_eq!(
            Response::decode(&frame_of(opcode, 1, body)),
            expected,
            "body {body:02x?}"
        );
    }

    fn missing(message: &'static str, field: u32) -> DecodeError {
        DecodeError::MissingField { message, field }
    }

    fn invalid(message: &'static str, field: u32, value: u64) -> DecodeError {
        DecodeError::InvalidValue {
            message,
            field,
            value,
        }
    }

    fn b(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    // ---- exact layouts (these back the diagrams in docs/wire-protocol.md) ---------------------

    #[test]
    fn get_request_layout() {
        let request = Request::Get {
            keyspace: "users".into(),
            key: b(b"k1"),
            consistency: Consistency::Lease,
        };
        let mut buf = BytesMut::new();
        request.encode(5, &mut buf).expect("fits");
        #[rustfmt::skip]
        let expected = [
            0x00, 0x00, 0x00, 0x17,                         // length = 10 + 13
            0x00, 0x10,                                     // opcode GET
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, // request id 5
            0x0a, 0x05, b'u', b's', b'e', b'r', b's',       // 1 keyspace "users"
            0x12, 0x02, b'k', b'1',                         // 2 key "k1"
            0x18, 0x01,                                     // 3 consistency = Lease
        ];
        assert_eq!(&buf[..], &expected);
    }

    #[test]
    fn put_request_layout_leaves_defaults_out() {
        let request = Request::Put {
            keyspace: DEFAULT_KEYSPACE.into(),
            key: b(b"k"),
            value: b(b"v"),
            ttl_ms: Some(1000),
            condition: Condition::IfVersion(7),
        };
        let mut buf = BytesMut::new();
        request.encode(1, &mut buf).expect("fits");
        #[rustfmt::skip]
        let body = [
            0x12, 0x01, b'k', // 2 key
            0x1a, 0x01, b'v', // 3 value
            0x20, 0xe8, 0x07, // 4 ttl_ms = 1000
            0x28, 0x03,       // 5 condition kind = IfVersion
            0x30, 0x07,       // 6 expected_version = 7
        ];
        assert_eq!(&buf[..4], &[0, 0, 0, 10 + body.len() as u8]);
        assert_eq!(&buf[4..6], &[0x00, 0x11]);
        assert_eq!(&buf[14..], &body);
    }

    #[test]
    fn error_response_layout() {
        let mut buf = BytesMut::new();
        Response::error(ErrorCode::UnknownOpcode, "no")
            .encode(9, &mut buf)
            .expect("fits");
        #[rustfmt::skip]
        let expected = [
            0x00, 0x00, 0x00, 0x10,                         // length = 10 + 6
            0xff, 0xff,                                     // opcode ERROR
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09, // request id 9
            0x08, 0x03,                                     // 1 code = UnknownOpcode
            0x12, 0x02, b'n', b'o',                         // 2 message "no"
        ];
        assert_eq!(&buf[..], &expected);
    }

    #[test]
    fn scan_ok_layout_nests_entries() {
        let response = Response::ScanOk {
            entries: vec![Entry {
                key: b(b"a"),
                value: Some(b(b"")),
                version: 2,
                expires_at_ms: None,
            }],
            continuation: None,
            lag: None,
        };
        let mut buf = BytesMut::new();
        response.encode(1, &mut buf).expect("fits");
        #[rustfmt::skip]
        let body = [
            0x0a, 0x07,             // 1 entry, 7 bytes:
            0x0a, 0x01, b'a',       //   1 key "a"
            0x12, 0x00,             //   2 value "" (present: not keys_only)
            0x18, 0x02,             //   3 version 2
        ];
        assert_eq!(&buf[4..6], &[0x80, 0x15]);
        assert_eq!(&buf[14..], &body);
    }

    // ---- compatibility ------------------------------------------------------------------------

    #[test]
    fn unknown_fields_of_both_wire_types_are_skipped() {
        let plain = body_of(|w| {
            w.str(1, "ks");
            w.bytes(2, b"key");
            w.varint(3, 2);
        });
        let extended = body_of(|w| {
            w.varint(100, 12345); // unknown varint first
            w.str(1, "ks");
            w.bytes(99, b"future"); // unknown bytes in the middle
            w.bytes(2, b"key");
            w.varint(3, 2);
            w.message(1000, |w| w.varint(1, 1)); // unknown nested message at the end
            w.varint(FIELD_NUMBER_MAX_FOR_TESTS, u64::MAX);
        });
        let expected = Request::Get {
            keyspace: "ks".into(),
            key: b(b"key"),
            consistency: Consistency::Follower,
        };
        check_request(opcode::GET, &plain, Ok(expected.clone()));
        check_request(opcode::GET, &extended, Ok(expected));
    }

    const FIELD_NUMBER_MAX_FOR_TESTS: u32 = super::super::field::FIELD_NUMBER_MAX;

    #[test]
    fn unknown_fields_in_nested_messages_are_skipped() {
        let body = body_of(|w| {
            w.message(1, |w| {
                w.bytes(1, b"k");
                w.varint(9, 1);
                w.bytes(10, b"x");
            });
            // An outer field this version does not know either.
            w.varint(13, 4);
        });
        let expected = Response::ScanOk {
            entries: vec![Entry {
                key: b(b"k"),
                value: None,
                version: 0,
                expires_at_ms: None,
            }],
            continuation: None,
            lag: None,
        };
        check_response(0x8015, &body, Ok(expected));
    }

    #[test]
    fn absent_optional_fields_take_their_defaults() {
        let key_only = body_of(|w| w.bytes(2, b"k"));
        check_request(
            opcode::PUT,
            &key_only,
            Ok(Request::Put {
                keyspace: DEFAULT_KEYSPACE.into(),
                key: b(b"k"),
                value: Bytes::new(),
                ttl_ms: None,
                condition: Condition::None,
            }),
        );
        check_request(
            opcode::SCAN,
            &[],
            Ok(Request::Scan {
                keyspace: DEFAULT_KEYSPACE.into(),
                range: ScanRange::default(),
                limit: 0,
                continuation: None,
                keys_only: false,
                consistency: Consistency::Linearizable,
            }),
        );
        check_request(
            opcode::PING,
            &[],
            Ok(Request::Ping {
                payload: Bytes::new(),
            }),
        );
        check_response(
            0x8011,
            &[],
            Ok(Response::PutOk {
                applied: false,
                version: 0,
            }),
        );
        check_response(
            0x8010,
            &[],
            Ok(Response::GetOk {
                found: None,
                lag: None,
            }),
        );
        // ttl 0 on the wire means "no expiry", like absence.
        let zero_ttl = body_of(|w| {
            w.bytes(2, b"k");
            w.varint(4, 0);
        });
        let Ok(Request::Put { ttl_ms, .. }) = Request::decode(&frame_of(opcode::PUT, 1, &zero_ttl))
        else {
            panic!("put with ttl 0 should decode");
        };
        assert_eq!(ttl_ms, None);
    }

    #[test]
    fn repeated_scalar_fields_last_one_wins() {
        let body = body_of(|w| {
            w.bytes(2, b"first");
            w.sint(3, 1);
            w.bytes(2, b"second");
            w.sint(3, -5);
        });
        check_request(
            opcode::INCR,
            &body,
            Ok(Request::Incr {
                keyspace: DEFAULT_KEYSPACE.into(),
                key: b(b"second"),
                delta: -5,
            }),
        );
    }

    // ---- errors -------------------------------------------------------------------------------

    #[test]
    fn decode_errors() {
        let no_key = body_of(|w| w.str(1, "ks"));
        let key_as_varint = body_of(|w| w.varint(2, 1));
        let bad_consistency = body_of(|w| {
            w.bytes(2, b"k");
            w.varint(3, 3);
        });
        let bad_condition = body_of(|w| {
            w.bytes(2, b"k");
            w.varint(3, 4);
        });
        let bad_utf8 = body_of(|w| {
            w.bytes(1, &[0xff]);
            w.bytes(2, b"k");
        });
        let bad_bool = body_of(|w| w.varint(7, 2));
        let version_too_big = body_of(|w| {
            w.varint(1, 1);
            w.varint(2, 70000);
        });
        let bad_op_kind = body_of(|w| {
            w.message(2, |w| {
                w.varint(1, 2);
                w.bytes(2, b"k");
            })
        });
        let op_without_key = body_of(|w| w.message(2, |w| w.varint(1, 1)));
        let wrong_wire_type = DecodeError::WrongWireType {
            message: "Get",
            field: 2,
            expected: WireType::Len,
            found: WireType::Varint,
        };
        let field_error = |message, source| DecodeError::Field { message, source };
        let unknown_wire_type = FieldError::UnknownWireType {
            wire_type: 3,
            offset: 0,
        };
        let truncated = FieldError::Truncated {
            offset: 2,
            need_bytes: 3,
            have_bytes: 1,
        };
        let cases: Vec<(u16, &[u8], DecodeError)> = vec![
            (0x0003, &[], DecodeError::UnknownOpcode { opcode: 0x0003 }),
            (0x8010, &[], DecodeError::UnknownOpcode { opcode: 0x8010 }),
            (opcode::GET, &no_key, missing("Get", 2)),
            (opcode::INCR, &[], missing("Incr", 2)),
            (opcode::HELLO, &[], missing("Hello", 1)),
            (opcode::GET, &key_as_varint, wrong_wire_type),
            (opcode::GET, &bad_consistency, invalid("Get", 3, 3)),
            (opcode::DELETE, &bad_condition, invalid("Delete", 3, 4)),
            (
                opcode::GET,
                &bad_utf8,
                field_error("Get", FieldError::InvalidUtf8 { field: 1 }),
            ),
            (opcode::SCAN, &bad_bool, invalid("Scan", 7, 2)),
            (opcode::HELLO, &version_too_big, invalid("Hello", 2, 70000)),
            (opcode::BATCH, &bad_op_kind, invalid("Batch.op", 1, 2)),
            (opcode::BATCH, &op_without_key, missing("Batch.op", 2)),
            (
                opcode::PING,
                &[0x0b],
                field_error("Ping", unknown_wire_type),
            ),
            (
                opcode::PING,
                &[0x0a, 0x03, 0x00],
                field_error("Ping", truncated),
            ),
        ];
        for (opcode, body, error) in cases {
            assert_eq!(
                Request::decode(&frame_of(opcode, 1, body)),
                Err(error),
                "{body:02x?}"
            );
        }
    }

    #[test]
    fn response_decode_errors() {
        let unknown = DecodeError::UnknownOpcode { opcode: 0x0010 };
        check_response(0x0010, &[], Err(unknown));
        check_response(opcode::ERROR, &[], Err(missing("Error", 1)));
        let entry_without_key = body_of(|w| w.message(1, |w| w.varint(3, 1)));
        check_response(0x8015, &entry_without_key, Err(missing("ScanOk.entry", 1)));
    }

    #[test]
    fn error_codes_map_to_numbers_and_back() {
        for code in 0..=20 {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
        assert_eq!(ErrorCode::from_code(4), ErrorCode::FrameTooLarge);
        assert_eq!(ErrorCode::from_code(999), ErrorCode::Other(999));
        assert_eq!(
            DecodeError::UnknownOpcode { opcode: 9 }.error_code(),
            ErrorCode::UnknownOpcode
        );
        assert_eq!(
            DecodeError::MissingField {
                message: "Get",
                field: 2
            }
            .error_code(),
            ErrorCode::Malformed
        );
    }

    #[test]
    fn version_negotiation_picks_the_newest_common_version() {
        assert_eq!(negotiate_version(1, 1), Some(1));
        assert_eq!(negotiate_version(1, 9), Some(PROTOCOL_VERSION_MAX));
        assert_eq!(negotiate_version(0, 0), None);
        assert_eq!(negotiate_version(PROTOCOL_VERSION_MAX + 1, u16::MAX), None);
        assert_eq!(negotiate_version(3, 2), None);
    }

    #[test]
    fn error_messages_say_what_went_wrong() {
        let error = DecodeError::MissingField {
            message: "Get",
            field: 2,
        };
        assert_eq!(error.to_string(), "Get: required field 2 is missing");
        assert_eq!(
            DecodeError::UnknownOpcode { opcode: 0x42 }.to_string(),
            "unknown opcode 0x0042"
        );
    }

    // ---- property tests -----------------------------------------------------------------------

    fn any_bytes() -> impl Strategy<Value = Bytes> {
        vec(any::<u8>(), 0..20).prop_map(Bytes::from)
    }

    fn any_string() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(DEFAULT_KEYSPACE.to_owned()),
            Just(String::new()),
            "\\PC{0,8}"
        ]
    }

    /// `Some(0)` is not generated: 0 means "none" on the wire, so it decodes to `None`.
    fn any_ms() -> impl Strategy<Value = Option<u64>> {
        proptest::option::of(1..=u64::MAX)
    }

    fn any_lag() -> impl Strategy<Value = Option<ReadLag>> {
        proptest::option::of(
            (any::<u64>(), proptest::option::of(0..LAG_MS_UNKNOWN))
                .prop_map(|(entries, ms)| ReadLag { entries, ms }),
        )
    }

    fn any_consistency() -> impl Strategy<Value = Consistency> {
        prop_oneof![
            Just(Consistency::Linearizable),
            Just(Consistency::Lease),
            Just(Consistency::Follower)
        ]
    }

    fn any_condition() -> impl Strategy<Value = Condition> {
        prop_oneof![
            Just(Condition::None),
            Just(Condition::IfAbsent),
            Just(Condition::IfPresent),
            any::<u64>().prop_map(Condition::IfVersion),
        ]
    }

    fn any_batch_op() -> impl Strategy<Value = BatchOp> {
        prop_oneof![
            (any_bytes(), any_bytes(), any_ms(), any_condition()).prop_map(
                |(key, value, ttl_ms, condition)| BatchOp::Put {
                    key,
                    value,
                    ttl_ms,
                    condition
                }
            ),
            (any_bytes(), any_condition())
                .prop_map(|(key, condition)| BatchOp::Delete { key, condition }),
        ]
    }

    fn any_request() -> impl Strategy<Value = Request> {
        let range = (
            proptest::option::of(any_bytes()),
            proptest::option::of(any_bytes()),
            proptest::option::of(any_bytes()),
        )
            .prop_map(|(start, end, prefix)| ScanRange { start, end, prefix });
        prop_oneof![
            (any::<u16>(), any::<u16>(), any_string(), any::<u64>()).prop_map(
                |(min_version, max_version, client_name, client_id)| Request::Hello {
                    min_version,
                    max_version,
                    client_name,
                    client_id,
                }
            ),
            any_bytes().prop_map(|payload| Request::Ping { payload }),
            (any_string(), any_bytes(), any_consistency()).prop_map(
                |(keyspace, key, consistency)| Request::Get {
                    keyspace,
                    key,
                    consistency
                }
            ),
            (
                any_string(),
                any_bytes(),
                any_bytes(),
                any_ms(),
                any_condition()
            )
                .prop_map(|(keyspace, key, value, ttl_ms, condition)| Request::Put {
                    keyspace,
                    key,
                    value,
                    ttl_ms,
                    condition
                }),
            (any_string(), any_bytes(), any_condition()).prop_map(|(keyspace, key, condition)| {
                Request::Delete {
                    keyspace,
                    key,
                    condition,
                }
            }),
            (any_string(), any_bytes(), any::<i64>()).prop_map(|(keyspace, key, delta)| {
                Request::Incr {
                    keyspace,
                    key,
                    delta,
                }
            }),
            (
                any_string(),
                range,
                any::<u32>(),
                proptest::option::of(any_bytes()),
                any::<bool>(),
                any_consistency()
            )
                .prop_map(
                    |(keyspace, range, limit, continuation, keys_only, consistency)| {
                        Request::Scan {
                            keyspace,
                            range,
                            limit,
                            continuation,
                            keys_only,
                            consistency,
                        }
                    }
                ),
            (any_string(), vec(any_batch_op(), 0..5))
                .prop_map(|(keyspace, ops)| Request::Batch { keyspace, ops }),
        ]
    }

    fn any_error_code() -> impl Strategy<Value = ErrorCode> {
        // from_code never yields Other(n) for a known n, so generate through it.
        prop_oneof![1..=12u32, any::<u32>()].prop_map(ErrorCode::from_code)
    }

    fn any_response() -> impl Strategy<Value = Response> {
        let found =
            (any_bytes(), any::<u64>(), any_ms()).prop_map(|(value, version, expires_at_ms)| {
                Versioned {
                    value,
                    version,
                    expires_at_ms,
                }
            });
        let entry = (
            any_bytes(),
            proptest::option::of(any_bytes()),
            any::<u64>(),
            any_ms(),
        )
            .prop_map(|(key, value, version, expires_at_ms)| Entry {
                key,
                value,
                version,
                expires_at_ms,
            });
        prop_oneof![
            (any::<u16>(), any_string(), any::<u32>()).prop_map(
                |(version, server_name, frame_bytes_max)| Response::HelloOk {
                    version,
                    server_name,
                    frame_bytes_max
                }
            ),
            any_bytes().prop_map(|payload| Response::Pong { payload }),
            (proptest::option::of(found), any_lag())
                .prop_map(|(found, lag)| Response::GetOk { found, lag }),
            (any::<bool>(), any::<u64>())
                .prop_map(|(applied, version)| Response::PutOk { applied, version }),
            (any::<bool>(), any::<bool>(), any::<u64>()).prop_map(|(applied, existed, version)| {
                Response::DeleteOk {
                    applied,
                    existed,
                    version,
                }
            }),
            (any::<i64>(), any::<u64>())
                .prop_map(|(value, version)| Response::IncrOk { value, version }),
            (
                vec(entry, 0..5),
                proptest::option::of(any_bytes()),
                any_lag()
            )
                .prop_map(|(entries, continuation, lag)| Response::ScanOk {
                    entries,
                    continuation,
                    lag,
                }),
            (
                any::<bool>(),
                any::<u64>(),
                proptest::option::of(any::<u32>())
            )
                .prop_map(|(applied, version, failed_op)| Response::BatchOk {
                    applied,
                    version,
                    failed_op
                }),
            (any_error_code(), any_string())
                .prop_map(|(code, message)| Response::Error { code, message }),
        ]
    }

    proptest! {
        #[test]
        fn every_request_round_trips(request in any_request()) {
            prop_assert_eq!(request_round_trip(&request), request);
        }

        #[test]
        fn every_response_round_trips(response in any_response()) {
            prop_assert_eq!(response_round_trip(&response), response);
        }

        #[test]
        fn pipelined_requests_fed_one_byte_at_a_time_decode_in_order(
            requests in vec(any_request(), 1..5)
        ) {
            let mut stream = BytesMut::new();
            for (id, request) in requests.iter().enumerate() {
                request.encode(id as u64, &mut stream).expect("fits");
            }
            let mut buf = BytesMut::new();
            let mut decoded = Vec::new();
            for byte in stream {
                buf.extend_from_slice(&[byte]);
                while let Some(frame) = decode_frame(&mut buf, FRAME_BYTES_MAX_DEFAULT)
                    .expect("valid stream")
                {
                    prop_assert_eq!(frame.request_id, decoded.len() as u64);
                    decoded.push(Request::decode(&frame).expect("decodes"));
                }
            }
            prop_assert_eq!(decoded, requests);
        }

        #[test]
        fn unknown_trailing_fields_never_change_a_request(
            request in any_request(),
            extra_varint in any::<u64>(),
            extra_bytes in any_bytes(),
        ) {
            let mut body = BytesMut::new();
            {
                let mut w = FieldWriter::new(&mut body);
                w.varint(500, extra_varint);
                request.encode_body(&mut w);
                w.bytes(501, &extra_bytes);
            }
            let frame = Frame { opcode: request.opcode(), request_id: 0, body: body.freeze() };
            prop_assert_eq!(Request::decode(&frame), Ok(request));
        }
    }
}
