//! Tagged-field encoding of frame bodies: a protobuf-like sequence of `(key, value)` pairs.
//!
//! This module owns varints, zigzag, field keys and wire types, with a [`FieldWriter`] that
//! appends fields to a buffer and a [`FieldReader`] that iterates over a body. It does not know
//! which field numbers exist or what they mean, and it decides nothing about defaults: that is
//! `message`'s job, which is what lets a newer peer add fields an older one skips.
//!
//! ```text
//!  field = key varint (field_number << 3 | wire_type), then the value
//!  wire_type 0: value is a varint (unsigned LEB128, 1..=10 bytes)
//!  wire_type 2: value is a varint byte count, then that many bytes
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Longest varint we accept: 10 groups of 7 bits cover a u64.
pub const VARINT_BYTES_MAX: usize = 10;

/// Field numbers are 1..=2^29-1, so that a key always fits in a u32 as in protobuf.
pub const FIELD_NUMBER_MAX: u32 = (1 << 29) - 1;

/// How many low bits of a key hold the wire type.
const WIRE_TYPE_BITS: u32 = 3;

/// How a field's value is laid out, which is all a reader needs to skip an unknown field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    /// An unsigned LEB128 varint.
    Varint = 0,
    /// A varint byte count followed by that many bytes.
    Len = 2,
}

/// A field's value as found on the wire, before a message gives it a type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Varint(u64),
    /// A zero-copy slice of the frame body.
    Bytes(Bytes),
}

impl Value {
    pub fn wire_type(&self) -> WireType {
        match self {
            Value::Varint(_) => WireType::Varint,
            Value::Bytes(_) => WireType::Len,
        }
    }
}

/// Why a body is not a valid field sequence. Offsets count from the start of the body being
/// read (for a nested message, from the start of the nested bytes).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FieldError {
    #[error("unknown wire type {wire_type} at offset {offset} (only 0 and 2 exist)")]
    UnknownWireType { wire_type: u8, offset: usize },
    #[error("field number 0 at offset {offset} is reserved")]
    ZeroFieldNumber { offset: usize },
    #[error("field number {field_number} at offset {offset} exceeds {FIELD_NUMBER_MAX}")]
    FieldNumberTooLarge { field_number: u64, offset: usize },
    #[error("varint at offset {offset} is longer than {VARINT_BYTES_MAX} bytes")]
    VarintTooLong { offset: usize },
    #[error("varint at offset {offset} overflows u64")]
    VarintOverflow { offset: usize },
    #[error("body truncated at offset {offset}: need {need_bytes} bytes, have {have_bytes}")]
    Truncated {
        offset: usize,
        need_bytes: usize,
        have_bytes: usize,
    },
    #[error("field {field} is not valid UTF-8")]
    InvalidUtf8 { field: u32 },
}

/// Number of bytes `value` takes as a varint.
pub fn varint_len(value: u64) -> usize {
    // Each byte carries 7 bits; zero still takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `value` as an unsigned LEB128 varint.
pub fn put_varint(dst: &mut BytesMut, value: u64) {
    let mut scratch = [0u8; VARINT_BYTES_MAX];
    let len = write_varint(value, &mut scratch);
    dst.put_slice(&scratch[..len]);
}

/// Writes `value` into `out` and returns how many bytes it took.
fn write_varint(mut value: u64, out: &mut [u8; VARINT_BYTES_MAX]) -> usize {
    let mut len = 0;
    while value >= 0x80 {
        out[len] = (value as u8) | 0x80;
        value >>= 7;
        len += 1;
    }
    out[len] = value as u8;
    len + 1
}

/// Maps signed to unsigned so that small magnitudes stay small: 0,-1,1,-2 -> 0,1,2,3.
pub fn zigzag_encode(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

/// Inverse of [`zigzag_encode`].
pub fn zigzag_decode(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// Appends fields to a buffer, usually straight into the outgoing frame.
///
/// It writes every field it is asked to write: whether a default value may be left out is a
/// per-field decision recorded in the message spec, so the message encoder makes it.
pub struct FieldWriter<'a> {
    dst: &'a mut BytesMut,
}

impl<'a> FieldWriter<'a> {
    pub fn new(dst: &'a mut BytesMut) -> Self {
        FieldWriter { dst }
    }

    fn key(&mut self, field: u32, wire_type: WireType) {
        // Field numbers are constants in the message code, so a bad one is a programming error.
        debug_assert!(
            (1..=FIELD_NUMBER_MAX).contains(&field),
            "field number {field}"
        );
        put_varint(
            self.dst,
            (u64::from(field) << WIRE_TYPE_BITS) | wire_type as u64,
        );
    }

    pub fn varint(&mut self, field: u32, value: u64) {
        self.key(field, WireType::Varint);
        put_varint(self.dst, value);
    }

    /// A signed integer, zigzag-encoded so that small negative numbers stay short.
    pub fn sint(&mut self, field: u32, value: i64) {
        self.varint(field, zigzag_encode(value));
    }

    pub fn bool(&mut self, field: u32, value: bool) {
        self.varint(field, u64::from(value));
    }

    pub fn bytes(&mut self, field: u32, value: &[u8]) {
        self.key(field, WireType::Len);
        put_varint(self.dst, value.len() as u64);
        self.dst.put_slice(value);
    }

    pub fn str(&mut self, field: u32, value: &str) {
        self.bytes(field, value.as_bytes());
    }

    /// A nested message, whose fields `write` appends through a nested writer.
    ///
    /// The length prefix is only known afterwards, so the nested bytes are written in place and
    /// then shifted right by the size of the prefix. That costs one `memmove` of the nested
    /// bytes but no allocation, and keeps the encoding canonical (shortest varint).
    pub fn message(&mut self, field: u32, write: impl FnOnce(&mut FieldWriter<'_>)) {
        self.key(field, WireType::Len);
        let start = self.dst.len();
        write(&mut FieldWriter {
            dst: &mut *self.dst,
        });
        let nested_bytes = self.dst.len() - start;
        let mut prefix = [0u8; VARINT_BYTES_MAX];
        let prefix_bytes = write_varint(nested_bytes as u64, &mut prefix);
        self.dst.put_slice(&prefix[..prefix_bytes]); // grow; the content is overwritten next
        self.dst
            .copy_within(start..start + nested_bytes, start + prefix_bytes);
        self.dst[start..start + prefix_bytes].copy_from_slice(&prefix[..prefix_bytes]);
    }
}

/// Iterates over the fields of a body, yielding `(field_number, value)`.
///
/// Byte values are zero-copy slices of the body. After the first error the iterator is
/// exhausted: once one field is malformed we no longer know where the next one starts.
pub struct FieldReader {
    body: Bytes,
    pos: usize,
    failed: bool,
}

impl FieldReader {
    pub fn new(body: Bytes) -> Self {
        FieldReader {
            body,
            pos: 0,
            failed: false,
        }
    }

    fn read_varint(&mut self) -> Result<u64, FieldError> {
        let offset = self.pos;
        let mut value: u64 = 0;
        for index in 0..VARINT_BYTES_MAX {
            let Some(&byte) = self.body.get(offset + index) else {
                let have_bytes = self.body.len() - offset;
                // The varint's real length is unknown; one more byte is the least it needs.
                return Err(FieldError::Truncated {
                    offset,
                    need_bytes: have_bytes + 1,
                    have_bytes,
                });
            };
            // The tenth byte holds only bit 63; anything above it does not fit a u64.
            if index == VARINT_BYTES_MAX - 1 && byte & 0x7f > 1 {
                return Err(if byte & 0x80 != 0 {
                    FieldError::VarintTooLong { offset }
                } else {
                    FieldError::VarintOverflow { offset }
                });
            }
            value |= u64::from(byte & 0x7f) << (7 * index);
            if byte & 0x80 == 0 {
                self.pos = offset + index + 1;
                return Ok(value);
            }
        }
        Err(FieldError::VarintTooLong { offset })
    }

    fn read_field(&mut self) -> Result<(u32, Value), FieldError> {
        let offset = self.pos;
        let key = self.read_varint()?;
        let wire_type = (key & 0b111) as u8;
        let field_number = key >> WIRE_TYPE_BITS;
        if field_number == 0 {
            return Err(FieldError::ZeroFieldNumber { offset });
        }
        let Ok(field) = u32::try_from(field_number) else {
            return Err(FieldError::FieldNumberTooLarge {
                field_number,
                offset,
            });
        };
        if field > FIELD_NUMBER_MAX {
            return Err(FieldError::FieldNumberTooLarge {
                field_number,
                offset,
            });
        }
        let value = match wire_type {
            0 => Value::Varint(self.read_varint()?),
            2 => {
                let length = self.read_varint()?;
                let start = self.pos;
                let have_bytes = self.body.len() - start;
                // A length that does not even fit a usize certainly runs past the body.
                let need_bytes = usize::try_from(length).unwrap_or(usize::MAX);
                if need_bytes > have_bytes {
                    return Err(FieldError::Truncated {
                        offset: start,
                        need_bytes,
                        have_bytes,
                    });
                }
                self.pos = start + need_bytes;
                Value::Bytes(self.body.slice(start..self.pos))
            }
            _ => return Err(FieldError::UnknownWireType { wire_type, offset }),
        };
        Ok((field, value))
    }
}

impl Iterator for FieldReader {
    type Item = Result<(u32, Value), FieldError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.body.len() {
            return None;
        }
        let field = self.read_field();
        self.failed = field.is_err();
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn write(build: impl FnOnce(&mut FieldWriter<'_>)) -> Vec<u8> {
        let mut dst = BytesMut::new();
        build(&mut FieldWriter::new(&mut dst));
        dst.to_vec()
    }

    fn read(body: &[u8]) -> Vec<Result<(u32, Value), FieldError>> {
        FieldReader::new(Bytes::copy_from_slice(body)).collect()
    }

    fn varint_bytes(value: u64) -> Vec<u8> {
        let mut dst = BytesMut::new();
        put_varint(&mut dst, value);
        dst.to_vec()
    }

    #[test]
    fn varint_layout() {
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for &(value, bytes) in cases {
            assert_eq!(varint_bytes(value), bytes, "varint {value}");
            assert_eq!(varint_len(value), bytes.len(), "varint_len {value}");
        }
    }

    #[test]
    fn zigzag_table() {
        let cases = [
            (0, 0),
            (-1, 1),
            (1, 2),
            (-2, 3),
            (i64::MAX, u64::MAX - 1),
            (i64::MIN, u64::MAX),
        ];
        for (signed, unsigned) in cases {
            assert_eq!(zigzag_encode(signed), unsigned, "encode {signed}");
            assert_eq!(zigzag_decode(unsigned), signed, "decode {unsigned}");
        }
    }

    #[test]
    fn field_layout() {
        let bytes = write(|w| {
            w.varint(1, 150);
            w.sint(2, -2);
            w.bool(3, true);
            w.str(4, "hi");
            w.bytes(16, b"");
        });
        #[rustfmt::skip]
        let expected = [
            0x08, 0x96, 0x01,       // field 1 varint 150
            0x10, 0x03,             // field 2 varint zigzag(-2) = 3
            0x18, 0x01,             // field 3 varint 1
            0x22, 0x02, b'h', b'i', // field 4 len 2 "hi"
            0x82, 0x01, 0x00,       // field 16 (key 130 takes two bytes) len 0
        ];
        assert_eq!(bytes, expected);
    }

    #[test]
    fn nested_message_gets_a_minimal_length_prefix() {
        let bytes = write(|w| {
            w.message(2, |nested| {
                nested.bytes(1, &[7; 200]);
            })
        });
        // key 0x12, then length 203 as a two-byte varint, then the nested field.
        assert_eq!(&bytes[..6], &[0x12, 0xcb, 0x01, 0x0a, 0xc8, 0x01]);
        let fields = read(&bytes);
        let Some(Ok((2, Value::Bytes(nested)))) = fields.first() else {
            panic!("expected one nested field, got {fields:?}");
        };
        assert_eq!(
            read(nested),
            vec![Ok((1, Value::Bytes(vec![7; 200].into())))]
        );
    }

    /// A declared length of i64::MAX, as a usize on this target.
    const I64_MAX_BYTES: usize = if usize::BITS >= 64 {
        i64::MAX as usize
    } else {
        usize::MAX
    };

    #[test]
    fn malformed_bodies() {
        let cases: &[(&[u8], FieldError)] = &[
            (
                &[0x09, 0x00],
                FieldError::UnknownWireType {
                    wire_type: 1,
                    offset: 0,
                },
            ),
            (
                &[0x08, 0x01, 0x0d],
                FieldError::UnknownWireType {
                    wire_type: 5,
                    offset: 2,
                },
            ),
            (&[0x00, 0x00], FieldError::ZeroFieldNumber { offset: 0 }),
            (
                &[0x80, 0x80, 0x80, 0x80, 0x10],
                FieldError::FieldNumberTooLarge {
                    field_number: 1 << 29,
                    offset: 0,
                },
            ),
            (
                &[0x08, 0x80],
                FieldError::Truncated {
                    offset: 1,
                    need_bytes: 2,
                    have_bytes: 1,
                },
            ),
            (
                &[0x12, 0x05, b'a'],
                FieldError::Truncated {
                    offset: 2,
                    need_bytes: 5,
                    have_bytes: 1,
                },
            ),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ],
                FieldError::VarintOverflow { offset: 1 },
            ),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x81, 0x00,
                ],
                FieldError::VarintTooLong { offset: 1 },
            ),
            (
                &[0x12, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                FieldError::Truncated {
                    offset: 10,
                    need_bytes: I64_MAX_BYTES,
                    have_bytes: 0,
                },
            ),
        ];
        for (body, error) in cases {
            let fields = read(body);
            assert_eq!(fields.last(), Some(&Err(error.clone())), "body {body:02x?}");
            assert!(
                fields[..fields.len() - 1].iter().all(Result::is_ok),
                "body {body:02x?}"
            );
        }
    }

    #[test]
    fn non_minimal_varints_are_accepted() {
        // Protobuf readers accept padded varints; so do we (the writer never produces them).
        assert_eq!(
            read(&[0x88, 0x00, 0x81, 0x80, 0x00]),
            vec![Ok((1, Value::Varint(1)))]
        );
    }

    #[test]
    fn empty_body_has_no_fields() {
        assert_eq!(read(&[]), vec![]);
    }

    proptest! {
        #[test]
        fn varints_round_trip(value in any::<u64>()) {
            let mut body = varint_bytes(8); // key: field 1, varint
            body.extend(varint_bytes(value));
            prop_assert_eq!(read(&body), vec![Ok((1, Value::Varint(value)))]);
        }

        #[test]
        fn zigzag_round_trips(value in any::<i64>()) {
            prop_assert_eq!(zigzag_decode(zigzag_encode(value)), value);
        }

        #[test]
        fn field_sequences_round_trip(
            fields in proptest::collection::vec(
                (1..=FIELD_NUMBER_MAX, prop_oneof![
                    any::<u64>().prop_map(Value::Varint),
                    proptest::collection::vec(any::<u8>(), 0..300)
                        .prop_map(|bytes| Value::Bytes(bytes.into())),
                ]),
                0..8,
            )
        ) {
            let body = write(|w| {
                for (number, value) in &fields {
                    match value {
                        Value::Varint(v) => w.varint(*number, *v),
                        Value::Bytes(b) => w.bytes(*number, b),
                    }
                }
            });
            let decoded: Vec<_> = read(&body).into_iter().map(|f| f.expect("valid")).collect();
            prop_assert_eq!(decoded, fields);
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = read(&body);
        }
    }
}
