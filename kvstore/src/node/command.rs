//! What a replicated log entry carries: a client's write as a typed operation
//! ([`crate::op::Op`]), with the session it belongs to and the proposer's clock.
//!
//! The log holds operations, not their effects (as Redis's append-only file holds commands):
//! every replica applies an entry by running the one executor ([`crate::op::execute`]) on its
//! operation, at the entry's index as its version and at the entry's time as "now", so every
//! replica computes the same writes and the same outcome. Layout (little-endian), documented
//! in `docs/raft.md`:
//!
//! ```text
//!  0        1      2           10          18          26
//!  +--------+------+-----------+-----------+-----------+--------------------------+
//!  | format | kind | client_id |    seq    |  now_ms   | body                     |
//!  |   u8   |  u8  |    u64    |    u64    |    u64    | kind 1: a whole frame    |
//!  |   =1   |      | 0 = none  |           |           | kind 2: u32 n, n × (u32  |
//!  |        |      |           |           |           |         len, bytes)      |
//!  +--------+------+-----------+-----------+-----------+--------------------------+
//! ```
//!
//! Kind 1 is a binary-protocol request frame (already a typed operation: [`Op::Request`], kept
//! as the frame that arrived so that logging it copies nothing); kind 4 any other operation in
//! [`Op::encode`]'s layout (a Redis write, translated at the edge); kind 3 a node's peer address
//! (`u64 node id`, then the address), which the leader logs before adding the node so that
//! every member, and every later leader, can reach it. Kind 2 (a Redis command's arguments) is
//! what earlier builds logged; it is still applied, by translating it as the edge would. A
//! request with a `client_id` belongs to that client's session: the state machine remembers
//! the replies of its last `SESSION_WINDOW` requests, so a retry applies once.

use bytes::{BufMut, Bytes, BytesMut};

use crate::op::Op;
use crate::wire::frame::{encode_frame, Frame, FRAME_HEADER_BYTES, FRAME_LENGTH_PREFIX_BYTES};
use crate::wire::Request;

const FORMAT: u8 = 1;
const KIND_WIRE: u8 = 1;
const KIND_RESP: u8 = 2;
const KIND_PEER: u8 = 3;
const KIND_OP: u8 = 4;
/// Bytes before the body.
pub const HEADER_BYTES: usize = 26;
/// Most arguments of a Redis command in the log (as the RESP codec accepts).
pub const RESP_ARGS_MAX: usize = 1024 * 1024;

/// A decoded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The client session, if the request belongs to one: `(client_id, seq)`.
    pub session: Option<(u64, u64)>,
    /// The leader's clock at proposal, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    pub body: Body,
}

/// The request itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A binary-protocol request, as its frame (the request id is the session's `seq`).
    Wire(Frame),
    /// A Redis command: its name and arguments (logged by earlier builds; see the module docs).
    Resp(Vec<Bytes>),
    /// An operation other than a binary-protocol request.
    Op(Op),
    /// Node `id` listens for peers at `address`.
    Peer { id: u64, address: String },
}

/// Why an entry does not decode. The leader wrote it, so this is corruption or a version
/// mismatch, never a client's mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command is {len} bytes, shorter than its {HEADER_BYTES}-byte header")]
    Short { len: usize },
    #[error("unknown command format {0}")]
    Format(u8),
    #[error("unknown command kind {0}")]
    Kind(u8),
    #[error("malformed command body: {0}")]
    Body(String),
}

impl Command {
    /// Encodes a binary-protocol request (`request_id` goes into its frame).
    pub fn wire(
        session: Option<(u64, u64)>,
        now_ms: u64,
        request: &Request,
        request_id: u64,
    ) -> Result<Bytes, crate::wire::frame::FrameError> {
        let mut buf = header(KIND_WIRE, session, now_ms);
        request.encode(request_id, &mut buf)?;
        Ok(buf.freeze())
    }

    /// Encodes a binary-protocol request from the frame it arrived in (no re-encoding).
    pub fn wire_frame(session: Option<(u64, u64)>, now_ms: u64, frame: &Frame) -> Bytes {
        let mut buf = header(KIND_WIRE, session, now_ms);
        buf.reserve(FRAME_HEADER_BYTES + frame.body.len());
        encode_frame(frame.opcode, frame.request_id, &frame.body, &mut buf)
            .expect("a frame that was decoded encodes again");
        buf.freeze()
    }

    /// Encodes an operation (a binary-protocol request is better logged as its frame, with
    /// [`Command::wire_frame`]).
    pub fn op(session: Option<(u64, u64)>, now_ms: u64, op: &Op) -> Bytes {
        let mut buf = header(KIND_OP, session, now_ms);
        op.encode(&mut buf)
            .expect("an operation small enough to have arrived encodes");
        buf.freeze()
    }

    /// Encodes a Redis command in the layout earlier builds logged (kind 2).
    pub fn resp(now_ms: u64, args: &[&[u8]]) -> Bytes {
        let mut buf = header(KIND_RESP, None, now_ms);
        buf.put_u32_le(args.len() as u32);
        for arg in args {
            buf.put_u32_le(arg.len() as u32);
            buf.put_slice(arg);
        }
        buf.freeze()
    }

    /// Encodes a node's peer address.
    pub fn peer(now_ms: u64, id: u64, address: &str) -> Bytes {
        let mut buf = header(KIND_PEER, None, now_ms);
        buf.put_u64_le(id);
        buf.put_slice(address.as_bytes());
        buf.freeze()
    }

    pub fn decode(data: &Bytes) -> Result<Command, CommandError> {
        if data.len() < HEADER_BYTES {
            return Err(CommandError::Short { len: data.len() });
        }
        if data[0] != FORMAT {
            return Err(CommandError::Format(data[0]));
        }
        let u64_at = |at: usize| u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"));
        let (client_id, seq, now_ms) = (u64_at(2), u64_at(10), u64_at(18));
        let session = (client_id != 0).then_some((client_id, seq));
        let body = data.slice(HEADER_BYTES..);
        let body = match data[1] {
            KIND_WIRE => Body::Wire(frame_of(&body)?),
            KIND_RESP => Body::Resp(decode_args(&body)?),
            KIND_OP => Body::Op(Op::decode(&body).map_err(CommandError::Body)?),
            KIND_PEER if body.len() >= 8 => Body::Peer {
                id: u64::from_le_bytes(body[..8].try_into().expect("8 bytes")),
                address: String::from_utf8(body[8..].to_vec())
                    .map_err(|_| CommandError::Body("peer address is not UTF-8".into()))?,
            },
            KIND_PEER => return Err(CommandError::Body("peer record cut short".into())),
            kind => return Err(CommandError::Kind(kind)),
        };
        Ok(Command {
            session,
            now_ms,
            body,
        })
    }
}

fn header(kind: u8, session: Option<(u64, u64)>, now_ms: u64) -> BytesMut {
    let (client_id, seq) = session.unwrap_or((0, 0));
    let mut buf = BytesMut::with_capacity(HEADER_BYTES + 64);
    buf.put_u8(FORMAT);
    buf.put_u8(kind);
    buf.put_u64_le(client_id);
    buf.put_u64_le(seq);
    buf.put_u64_le(now_ms);
    buf
}

/// The one frame `body` holds, as a slice of it (applying an entry copies nothing).
fn frame_of(body: &Bytes) -> Result<Frame, CommandError> {
    let bad = |what: &str| CommandError::Body(format!("request frame {what}"));
    if body.len() < FRAME_HEADER_BYTES {
        return Err(bad("cut short"));
    }
    let length = u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if length + FRAME_LENGTH_PREFIX_BYTES != body.len() {
        return Err(bad("length does not match the entry"));
    }
    Ok(Frame {
        opcode: u16::from_be_bytes(body[4..6].try_into().expect("2 bytes")),
        request_id: u64::from_be_bytes(body[6..14].try_into().expect("8 bytes")),
        body: body.slice(FRAME_HEADER_BYTES..),
    })
}

fn decode_args(body: &Bytes) -> Result<Vec<Bytes>, CommandError> {
    let short = || CommandError::Body("Redis arguments cut short".into());
    let mut at = 0;
    let u32_next = |at: &mut usize| -> Result<usize, CommandError> {
        let bytes = body.get(*at..*at + 4).ok_or_else(short)?;
        *at += 4;
        Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")) as usize)
    };
    let n = u32_next(&mut at)?;
    if n > RESP_ARGS_MAX {
        return Err(CommandError::Body(format!("{n} Redis arguments")));
    }
    let mut args = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let len = u32_next(&mut at)?;
        if body.len() - at < len {
            return Err(short());
        }
        args.push(body.slice(at..at + len));
        at += len;
    }
    if at != body.len() {
        return Err(CommandError::Body("bytes after the Redis arguments".into()));
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_requests_round_trip_with_their_session_and_time() {
        let request = Request::Put {
            keyspace: "default".into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
            ttl_ms: Some(5),
            condition: crate::wire::Condition::IfAbsent,
        };
        let data = Command::wire(Some((7, 9)), 1234, &request, 9).unwrap();
        let command = Command::decode(&data).unwrap();
        assert_eq!(command.session, Some((7, 9)));
        assert_eq!(command.now_ms, 1234);
        let Body::Wire(frame) = command.body else {
            panic!("a wire command")
        };
        assert_eq!(frame.request_id, 9);
        assert_eq!(Request::decode(&frame).unwrap(), request);
        // A server logs the frame as it arrived: the same bytes.
        assert_eq!(Command::wire_frame(Some((7, 9)), 1234, &frame), data);
    }

    #[test]
    fn resp_commands_round_trip() {
        let data = Command::resp(42, &[b"SET", b"key", b"", b"EX"]);
        let command = Command::decode(&data).unwrap();
        assert_eq!(command.session, None);
        assert_eq!(command.now_ms, 42);
        assert_eq!(
            command.body,
            Body::Resp(vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"key"),
                Bytes::new(),
                Bytes::from_static(b"EX"),
            ])
        );
    }

    #[test]
    fn peer_addresses_round_trip() {
        let command = Command::decode(&Command::peer(5, 4, "127.0.0.1:7104")).unwrap();
        assert_eq!(
            command.body,
            Body::Peer {
                id: 4,
                address: "127.0.0.1:7104".into()
            }
        );
        assert!(Command::decode(&Command::peer(5, 4, "x").slice(..HEADER_BYTES + 7)).is_err());
    }

    #[test]
    fn every_truncation_and_bad_header_is_an_error() {
        let data = Command::resp(42, &[b"SET", b"key", b"value"]);
        for len in 0..data.len() {
            assert!(Command::decode(&data.slice(..len)).is_err(), "cut at {len}");
        }
        let mut longer = BytesMut::from(&data[..]);
        longer.put_u8(0);
        assert!(Command::decode(&longer.freeze()).is_err());
        let mut bad = BytesMut::from(&data[..]);
        bad[0] = 9;
        assert_eq!(Command::decode(&bad.freeze()), Err(CommandError::Format(9)));
        let mut bad = BytesMut::from(&data[..]);
        bad[1] = 9;
        assert_eq!(Command::decode(&bad.freeze()), Err(CommandError::Kind(9)));
    }
}
