//! The binary wire protocol: a pure codec between bytes and typed requests and responses.
//!
//! This module owns the byte format only. It must not do I/O, hold connection state, enforce
//! the handshake or validate semantics (key sizes, keyspace names): the server does those with
//! the values decoded here. `docs/wire-protocol.md` is the full specification; this is the
//! short manual.
//!
//! # Frames ([`frame`])
//!
//! ```text
//!  0        4        6                 14
//!  +--------+--------+-----------------+------------------------+
//!  | length | opcode |   request_id    | body (length-10 bytes) |
//!  |  u32   |  u16   |      u64        |  tagged fields         |
//!  +--------+--------+-----------------+------------------------+
//! ```
//!
//! Integers are big-endian. `length` counts the bytes after itself. A frame larger than the
//! receiver's `frame_bytes_max` (default [`FRAME_BYTES_MAX_DEFAULT`], header included) is
//! rejected as soon as its length is read, and the connection is closed.
//!
//! # Bodies ([`field`])
//!
//! A body is a sequence of protobuf-style fields: a varint key `field_number << 3 | wire_type`,
//! then a varint (wire type 0) or a varint length and that many bytes (wire type 2). Unknown
//! field numbers are skipped and absent fields take defaults, so peers of different versions
//! can talk.
//!
//! # Messages ([`message`])
//!
//! A response echoes the request id and uses the request's opcode with the high bit set, or
//! `0xFFFF` for an error. The first request on a connection must be `Hello`.
//!
//! ```
//! // A server's read loop, in outline: cut frames out of the input, answer each by id.
//! use bytes::BytesMut;
//! use kvstore::wire::{decode_frame, Request, Response, FRAME_BYTES_MAX_DEFAULT};
//!
//! let mut input = BytesMut::new();
//! Request::Ping { payload: "hi".into() }.encode(7, &mut input)?;
//! let mut output = BytesMut::new();
//! while let Some(frame) = decode_frame(&mut input, FRAME_BYTES_MAX_DEFAULT)? {
//!     let response = match Request::decode(&frame) {
//!         Ok(Request::Ping { payload }) => Response::Pong { payload },
//!         Ok(_) => Response::error(kvstore::wire::ErrorCode::Internal, "not in this example"),
//!         Err(error) => Response::error(error.error_code(), error.to_string()),
//!     };
//!     response.encode(frame.request_id, &mut output)?;
//! }
//! let reply = decode_frame(&mut output, FRAME_BYTES_MAX_DEFAULT)?.expect("one whole frame");
//! assert_eq!(reply.request_id, 7);
//! assert_eq!(Response::decode(&reply).unwrap(), Response::Pong { payload: "hi".into() });
//! # Ok::<(), kvstore::wire::FrameError>(())
//! ```

pub mod field;
pub mod frame;
pub mod message;

pub use field::{FieldError, FieldReader, FieldWriter, Value, WireType};
pub use frame::{
    decode_frame, encode_frame, encode_frame_with, peek_header, truncated_at_eof, Frame,
    FrameError, FRAME_BYTES_MAX_DEFAULT, FRAME_HEADER_BYTES,
};
pub use message::{
    negotiate_version, opcode, BatchOp, Condition, Consistency, DecodeError, Entry, ErrorCode,
    ReadLag, Request, Response, ScanRange, Versioned, DEFAULT_KEYSPACE, PROTOCOL_VERSION_MAX,
    PROTOCOL_VERSION_MIN, SESSION_WINDOW,
};

use bytes::BytesMut;

/// Frame limit used by [`fuzz_decode`]: small, so the fuzzer also reaches the oversize path.
pub const FUZZ_FRAME_BYTES_MAX: usize = 64 * 1024;

/// Decodes arbitrary bytes the way a server and a client would, checking that every message
/// that decodes re-encodes to an equal message. Shared by the cargo-fuzz target and a proptest.
///
/// # Panics
///
/// Only if the codec has a bug: it must accept or reject any input without panicking, and
/// anything it accepts must round-trip.
pub fn fuzz_decode(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    loop {
        match decode_frame(&mut buf, FUZZ_FRAME_BYTES_MAX) {
            Ok(Some(frame)) => {
                if let Ok(request) = Request::decode(&frame) {
                    let mut out = BytesMut::new();
                    request
                        .encode(frame.request_id, &mut out)
                        .expect("re-encoding fits a frame");
                    let again = decode_single_frame(&mut out);
                    assert_eq!(again.opcode, frame.opcode);
                    assert_eq!(again.request_id, frame.request_id);
                    assert_eq!(Request::decode(&again).as_ref(), Ok(&request));
                }
                if let Ok(response) = Response::decode(&frame) {
                    let mut out = BytesMut::new();
                    response
                        .encode(frame.request_id, &mut out)
                        .expect("re-encoding fits a frame");
                    let again = decode_single_frame(&mut out);
                    assert_eq!(again.opcode, frame.opcode);
                    assert_eq!(again.request_id, frame.request_id);
                    assert_eq!(Response::decode(&again).as_ref(), Ok(&response));
                }
            }
            Ok(None) => {
                // What is left is a partial frame exactly when something is left.
                assert_eq!(truncated_at_eof(&buf).is_some(), !buf.is_empty());
                return;
            }
            Err(_) => return, // a real connection is closed here
        }
    }
}

/// Cuts the one frame that `out` holds, which a correct encoder guarantees.
fn decode_single_frame(out: &mut BytesMut) -> Frame {
    let frame = decode_frame(out, usize::MAX)
        .expect("an encoded frame has a valid header")
        .expect("an encoded frame is complete");
    assert!(out.is_empty(), "the encoder wrote exactly one frame");
    frame
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;
    use proptest::prelude::*;

    /// Opcodes the decoders know, so generated frames get past the opcode check.
    const KNOWN_OPCODES: &[u16] = &[
        0x0001, 0x0002, 0x0010, 0x0011, 0x0012, 0x0014, 0x0015, 0x0016, 0x8001, 0x8002, 0x8010,
        0x8011, 0x8012, 0x8014, 0x8015, 0x8016, 0xFFFF,
    ];

    /// A field sequence that mostly uses the field numbers and value ranges the decoders know,
    /// so generated bodies get past the first check and exercise defaults and round trips.
    fn plausible_fields() -> impl Strategy<Value = Vec<(u32, Value)>> {
        let value = prop_oneof![
            3 => (0u64..3).prop_map(Value::Varint),
            1 => any::<u64>().prop_map(Value::Varint),
            3 => "[a-z]{0,6}".prop_map(|s| Value::Bytes(s.into())),
            1 => proptest::collection::vec(any::<u8>(), 0..8).prop_map(|b| Value::Bytes(b.into())),
        ];
        proptest::collection::vec((1u32..10, value), 0..5)
    }

    fn write_fields(w: &mut FieldWriter<'_>, fields: &[(u32, Value)]) {
        for (number, value) in fields {
            match value {
                Value::Varint(v) => w.varint(*number, *v),
                Value::Bytes(b) => w.bytes(*number, b),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
            fuzz_decode(&data);
        }

        /// Random bodies behind valid headers reach much deeper into the message decoders.
        #[test]
        fn random_bodies_never_panic_and_round_trip(
            frames in proptest::collection::vec(
                (
                    proptest::sample::select(KNOWN_OPCODES),
                    any::<u64>(),
                    plausible_fields(),
                    // Nested messages (batch ops, scan entries) live in field 1 or 2.
                    proptest::option::of((1u32..3, plausible_fields())),
                    // Occasionally end the body with garbage.
                    prop_oneof![
                        4 => Just(Vec::new()),
                        1 => proptest::collection::vec(any::<u8>(), 1..3),
                    ],
                ),
                1..4,
            ),
        ) {
            let mut data = BytesMut::new();
            for (opcode, request_id, fields, nested, garbage) in &frames {
                let mut body = BytesMut::new();
                let mut w = FieldWriter::new(&mut body);
                write_fields(&mut w, fields);
                if let Some((number, nested)) = nested {
                    w.message(*number, |w| write_fields(w, nested));
                }
                body.put_slice(garbage);
                data.put_u32(10 + body.len() as u32);
                data.put_u16(*opcode);
                data.put_u64(*request_id);
                data.put_slice(&body);
            }
            fuzz_decode(&data);
        }
    }

    #[test]
    fn fuzz_decode_handles_edge_cases() {
        fuzz_decode(&[]);
        fuzz_decode(&[0, 0, 0, 3]); // too short
        fuzz_decode(&[0xff, 0xff, 0xff, 0xff]); // too large
        fuzz_decode(&[0, 0, 0, 10, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1]); // empty ping
        fuzz_decode(&[0, 0, 0, 10, 0, 2, 0, 0]); // truncated header
    }
}
