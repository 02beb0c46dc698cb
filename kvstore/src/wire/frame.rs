//! Framing for the binary protocol: cutting a byte stream into frames and writing frames back.
//!
//! This module owns the 14-byte frame header (length, opcode, request id) and the frame size
//! limit. It knows nothing about what a body means (that is `field` and `message`) and it never
//! touches a socket: the caller reads bytes into a `BytesMut`, asks [`decode_frame`] for the next
//! frame, and writes whatever [`encode_frame_with`] appended to its output buffer.
//!
//! ```text
//!  0        4        6                 14
//!  +--------+--------+-----------------+------------------------+
//!  | length | opcode |   request_id    | body (length-10 bytes) |
//!  |  u32   |  u16   |      u64        |  tagged fields         |
//!  +--------+--------+-----------------+------------------------+
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Size of the `length` prefix itself; `length` counts the bytes after it.
pub const FRAME_LENGTH_PREFIX_BYTES: usize = 4;

/// Size of the whole header: length prefix, opcode and request id.
pub const FRAME_HEADER_BYTES: usize = 14;

/// Smallest legal value of the `length` field: an opcode and a request id with an empty body.
pub const FRAME_LENGTH_FIELD_MIN_BYTES: usize = FRAME_HEADER_BYTES - FRAME_LENGTH_PREFIX_BYTES;

/// Default limit on a whole frame (header included) when the server configures no other.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 4 * 1024 * 1024;

/// Largest frame the format can express at all: the `length` field is a `u32`.
pub const FRAME_BYTES_MAX_ENCODABLE: u64 = u32::MAX as u64 + FRAME_LENGTH_PREFIX_BYTES as u64;

/// One frame cut out of the stream; `body` is a zero-copy slice of the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: u16,
    pub request_id: u64,
    pub body: Bytes,
}

/// Why the stream cannot be cut into frames. After any of these the framing is lost (we no
/// longer know where the next frame starts), so the caller must close the connection.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The frame (header included) is bigger than the limit. `opcode` and `request_id` are
    /// filled in when the header was already buffered, so the server can answer that request id
    /// with `FrameTooLarge` before closing.
    #[error("frame of {declared_bytes} bytes exceeds the limit of {max_bytes} bytes")]
    TooLarge {
        declared_bytes: u64,
        max_bytes: u64,
        opcode: Option<u16>,
        request_id: Option<u64>,
    },
    /// The `length` field is too small to hold even an opcode and a request id.
    #[error(
        "frame length field is {declared_bytes} bytes, \
         below the {FRAME_LENGTH_FIELD_MIN_BYTES} bytes of opcode and request id"
    )]
    TooShort { declared_bytes: u32 },
    /// The peer closed the stream in the middle of a frame.
    #[error("stream ended inside a frame: have {have_bytes} bytes, need {need_bytes}")]
    Truncated {
        have_bytes: usize,
        need_bytes: usize,
    },
}

/// Reads the header at the start of `buf` without consuming anything.
///
/// Returns `(length, opcode, request_id)` once all [`FRAME_HEADER_BYTES`] are present.
pub fn peek_header(buf: &[u8]) -> Option<(u32, u16, u64)> {
    let mut header = buf.get(..FRAME_HEADER_BYTES)?;
    Some((header.get_u32(), header.get_u16(), header.get_u64()))
}

/// Reads only the `length` prefix, which is all we need to reject an oversize frame early.
fn peek_length(buf: &[u8]) -> Option<u32> {
    let mut prefix = buf.get(..FRAME_LENGTH_PREFIX_BYTES)?;
    Some(prefix.get_u32())
}

/// Cuts the next frame off the front of `buf`.
///
/// * `Ok(Some(frame))`: exactly one frame was consumed.
/// * `Ok(None)`: the frame is not complete yet; `buf` is untouched. Read more and call again.
/// * `Err(_)`: the stream is unusable; close the connection.
///
/// The size checks run as soon as the 4-byte length is buffered, so a peer cannot make us
/// buffer an oversize body before we notice.
pub fn decode_frame(
    buf: &mut BytesMut,
    frame_bytes_max: usize,
) -> Result<Option<Frame>, FrameError> {
    let Some(length) = peek_length(buf) else {
        return Ok(None);
    };
    if (length as usize) < FRAME_LENGTH_FIELD_MIN_BYTES {
        return Err(FrameError::TooShort {
            declared_bytes: length,
        });
    }
    // Computed in u64: `length + 4` overflows a u32, and usize may be 32 bits.
    let frame_bytes = u64::from(length) + FRAME_LENGTH_PREFIX_BYTES as u64;
    if frame_bytes > frame_bytes_max as u64 {
        let header = peek_header(buf);
        return Err(FrameError::TooLarge {
            declared_bytes: frame_bytes,
            max_bytes: frame_bytes_max as u64,
            opcode: header.map(|(_, opcode, _)| opcode),
            request_id: header.map(|(_, _, request_id)| request_id),
        });
    }
    // frame_bytes <= frame_bytes_max, which is a usize, so this conversion is lossless.
    let frame_bytes = frame_bytes as usize;
    if buf.len() < frame_bytes {
        return Ok(None);
    }
    let mut frame = buf.split_to(frame_bytes).freeze();
    frame.advance(FRAME_LENGTH_PREFIX_BYTES);
    let opcode = frame.get_u16();
    let request_id = frame.get_u64();
    Ok(Some(Frame {
        opcode,
        request_id,
        body: frame,
    }))
}

/// Tells the caller, once the peer has closed the stream, whether it closed mid-frame.
///
/// Returns `None` when `buf` is empty (a clean close) or holds a complete frame (decode it
/// first). `need_bytes` is the whole frame size when the length prefix is buffered, and the
/// header size otherwise (the real size is unknown).
pub fn truncated_at_eof(buf: &[u8]) -> Option<FrameError> {
    if buf.is_empty() {
        return None;
    }
    let need_bytes = match peek_length(buf) {
        // Saturating: on a 32-bit target a u32 length plus the prefix may not fit a usize.
        Some(length) => (length as usize)
            .saturating_add(FRAME_LENGTH_PREFIX_BYTES)
            .max(FRAME_HEADER_BYTES),
        None => FRAME_HEADER_BYTES,
    };
    (buf.len() < need_bytes).then_some(FrameError::Truncated {
        have_bytes: buf.len(),
        need_bytes,
    })
}

/// Appends one frame to `dst`, letting `write_body` write the body straight into `dst`.
///
/// The header is written first with a placeholder length, which is patched once the body size
/// is known; this avoids building the body in a second buffer and copying it. If the body makes
/// the frame larger than the `u32` length can express, `dst` is restored to its previous
/// length and `TooLarge` is returned. Checking against the *peer's* limit (learned in the
/// handshake) is the caller's job.
pub fn encode_frame_with(
    opcode: u16,
    request_id: u64,
    dst: &mut BytesMut,
    write_body: impl FnOnce(&mut BytesMut),
) -> Result<(), FrameError> {
    let start = dst.len();
    dst.put_u32(0); // placeholder, patched below
    dst.put_u16(opcode);
    dst.put_u64(request_id);
    write_body(dst);
    let frame_bytes = (dst.len() - start) as u64;
    let Ok(length) = u32::try_from(frame_bytes - FRAME_LENGTH_PREFIX_BYTES as u64) else {
        dst.truncate(start);
        return Err(FrameError::TooLarge {
            declared_bytes: frame_bytes,
            max_bytes: FRAME_BYTES_MAX_ENCODABLE,
            opcode: Some(opcode),
            request_id: Some(request_id),
        });
    };
    dst[start..start + FRAME_LENGTH_PREFIX_BYTES].copy_from_slice(&length.to_be_bytes());
    Ok(())
}

/// Appends one frame whose body is already in a slice.
pub fn encode_frame(
    opcode: u16,
    request_id: u64,
    body: &[u8],
    dst: &mut BytesMut,
) -> Result<(), FrameError> {
    encode_frame_with(opcode, request_id, dst, |dst| dst.extend_from_slice(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MAX: usize = FRAME_BYTES_MAX_DEFAULT;

    fn encoded(opcode: u16, request_id: u64, body: &[u8]) -> BytesMut {
        let mut dst = BytesMut::new();
        encode_frame(opcode, request_id, body, &mut dst).expect("small frame");
        dst
    }

    /// Feeds `input` to `decode_frame` and checks the outcome and what is left in the buffer.
    fn check(input: &[u8], max: usize, expected: Result<Option<Frame>, FrameError>, left: usize) {
        let mut buf = BytesMut::from(input);
        assert_eq!(decode_frame(&mut buf, max), expected, "input {input:02x?}");
        assert_eq!(buf.len(), left, "bytes left after decoding {input:02x?}");
    }

    fn frame(opcode: u16, request_id: u64, body: &'static [u8]) -> Frame {
        Frame {
            opcode,
            request_id,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn header_layout_is_big_endian_length_opcode_request_id() {
        let bytes = encoded(0x0002, 0x0102_0304_0506_0708, b"xyz");
        assert_eq!(
            &bytes[..],
            &[
                0x00, 0x00, 0x00, 0x0d, // length = 10 + 3
                0x00, 0x02, // opcode
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // request id
                b'x', b'y', b'z', // body
            ]
        );
        assert_eq!(
            peek_header(&bytes),
            Some((13, 0x0002, 0x0102_0304_0506_0708))
        );
    }

    #[test]
    fn decodes_complete_frames_and_leaves_the_rest() {
        let mut two = encoded(1, 7, b"ab");
        two.extend_from_slice(&encoded(2, 8, b"")[..]);
        let first_len = FRAME_HEADER_BYTES + 2;
        check(
            &two,
            MAX,
            Ok(Some(frame(1, 7, b"ab"))),
            two.len() - first_len,
        );
        check(&two[first_len..], MAX, Ok(Some(frame(2, 8, b""))), 0);
    }

    #[test]
    fn incomplete_input_is_left_untouched() {
        let bytes = encoded(1, 7, b"abc");
        for cut in 0..bytes.len() {
            check(&bytes[..cut], MAX, Ok(None), cut);
        }
    }

    #[test]
    fn oversize_is_detected_from_the_length_prefix_alone() {
        // 4 bytes declaring a 100-byte frame against a 64-byte limit.
        let expected = FrameError::TooLarge {
            declared_bytes: 100,
            max_bytes: 64,
            opcode: None,
            request_id: None,
        };
        check(&[0, 0, 0, 96], 64, Err(expected), 4);
        check(
            &[0xff, 0xff, 0xff, 0xff],
            MAX,
            Err(FrameError::TooLarge {
                declared_bytes: FRAME_BYTES_MAX_ENCODABLE,
                max_bytes: MAX as u64,
                opcode: None,
                request_id: None,
            }),
            4,
        );
    }

    #[test]
    fn oversize_reports_the_request_id_when_the_header_is_buffered() {
        let bytes = encoded(0x0011, 42, &[0; 100]);
        let expected = FrameError::TooLarge {
            declared_bytes: 114,
            max_bytes: 64,
            opcode: Some(0x0011),
            request_id: Some(42),
        };
        check(
            &bytes[..FRAME_HEADER_BYTES],
            64,
            Err(expected),
            FRAME_HEADER_BYTES,
        );
    }

    #[test]
    fn a_frame_exactly_at_the_limit_is_accepted() {
        let bytes = encoded(1, 1, &[0; 50]);
        check(
            &bytes,
            64,
            Ok(Some(Frame {
                opcode: 1,
                request_id: 1,
                body: vec![0; 50].into(),
            })),
            0,
        );
    }

    #[test]
    fn length_below_opcode_plus_request_id_is_too_short() {
        for length in 0..10u8 {
            check(
                &[0, 0, 0, length],
                MAX,
                Err(FrameError::TooShort {
                    declared_bytes: length.into(),
                }),
                4,
            );
        }
    }

    #[test]
    fn truncated_at_eof_reports_partial_frames_only() {
        let bytes = encoded(1, 1, b"hello");
        assert_eq!(truncated_at_eof(&[]), None);
        assert_eq!(
            truncated_at_eof(&bytes[..2]),
            Some(FrameError::Truncated {
                have_bytes: 2,
                need_bytes: FRAME_HEADER_BYTES
            })
        );
        assert_eq!(
            truncated_at_eof(&bytes[..16]),
            Some(FrameError::Truncated {
                have_bytes: 16,
                need_bytes: 19
            })
        );
        assert_eq!(truncated_at_eof(&bytes), None);
    }

    #[test]
    fn encode_appends_after_existing_bytes() {
        let mut dst = BytesMut::from(&b"prefix"[..]);
        encode_frame(3, 4, b"body", &mut dst).expect("small frame");
        assert_eq!(&dst[..6], b"prefix");
        let mut rest = dst.split_off(6);
        assert_eq!(decode_frame(&mut rest, MAX), Ok(Some(frame(3, 4, b"body"))));
    }

    proptest! {
        #[test]
        fn stream_fed_one_byte_at_a_time_decodes_to_the_same_frames(
            frames in proptest::collection::vec(
                (any::<u16>(), any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40)),
                0..6,
            )
        ) {
            let mut stream = BytesMut::new();
            for (opcode, request_id, body) in &frames {
                encode_frame(*opcode, *request_id, body, &mut stream).expect("small frame");
            }
            let mut buf = BytesMut::new();
            let mut decoded = Vec::new();
            for byte in stream {
                buf.put_u8(byte);
                while let Some(frame) = decode_frame(&mut buf, MAX).expect("valid stream") {
                    decoded.push((frame.opcode, frame.request_id, frame.body.to_vec()));
                }
            }
            prop_assert_eq!(decoded, frames);
            prop_assert!(buf.is_empty());
        }
    }
}
