//! The on-disk record: encoding and decoding of one log entry, pure (no IO).
//!
//! Every change to the store is appended to a segment file as a record:
//!
//! ```text
//!  0       4         8         12     13        21             29
//!  +-------+---------+---------+------+---------+--------------+-----+-------+
//!  | crc32 | key_len | val_len | kind | version | expires_at_ms| key | value |
//!  |  u32  |   u32   |   u32   |  u8  |   u64   |     u64      |     |       |
//!  +-------+---------+---------+------+---------+--------------+-----+-------+
//! ```
//!
//! All integers are little-endian. `crc32` (IEEE, as in zlib) covers every byte after itself, so a
//! torn write or a flipped bit anywhere in the record is detected. The low seven bits of `kind`
//! say what the record is; the high bit ([`BATCH_CONTINUES`]) says that more records of the same atomic
//! batch follow. See `kvstore/docs/storage-format.md` for how records make up segments.
//!
//! This module must not touch files: it turns records into bytes and bytes into records.

/// Bytes in a record header, before the key.
pub const RECORD_HEADER_BYTES: usize = 29;

/// Flag in the `kind` byte: another record of the same batch follows this one.
pub const BATCH_CONTINUES: u8 = 0x80;

/// What a record does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Set `key` to `value`.
    Put = 1,
    /// Delete `key` (a tombstone).
    Delete = 2,
    /// Delete every key `k` with `key <= k < value` (an empty `value` means "to the end").
    DeleteRange = 3,
    /// Carries no data; records a version so that versions never go backwards after compaction
    /// drops the records that used them.
    VersionMark = 4,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte & !BATCH_CONTINUES {
            1 => Some(RecordKind::Put),
            2 => Some(RecordKind::Delete),
            3 => Some(RecordKind::DeleteRange),
            4 => Some(RecordKind::VersionMark),
            _ => None,
        }
    }
}

/// A decoded record, borrowing its key and value from the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: RecordKind,
    /// More records of the same atomic batch follow this one.
    pub batch_continues: bool,
    /// The version of the write; all records of a batch share it.
    pub version: u64,
    /// Milliseconds since the Unix epoch after which a `Put` is gone; 0 means never.
    pub expires_at_ms: u64,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl Record<'_> {
    /// The number of bytes this record occupies on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_BYTES + self.key.len() + self.value.len()
    }

    /// Appends the encoded record to `dst`.
    pub fn encode(&self, dst: &mut Vec<u8>) {
        let start = dst.len();
        let key_len = u32::try_from(self.key.len()).expect("key length checked by the engine");
        let value_len =
            u32::try_from(self.value.len()).expect("value length checked by the engine");
        let mut kind = self.kind as u8;
        if self.batch_continues {
            kind |= BATCH_CONTINUES;
        }
        dst.extend_from_slice(&[0; 4]); // crc, patched below
        dst.extend_from_slice(&key_len.to_le_bytes());
        dst.extend_from_slice(&value_len.to_le_bytes());
        dst.push(kind);
        dst.extend_from_slice(&self.version.to_le_bytes());
        dst.extend_from_slice(&self.expires_at_ms.to_le_bytes());
        dst.extend_from_slice(self.key);
        dst.extend_from_slice(self.value);
        let crc = crc32fast::hash(&dst[start + 4..]);
        dst[start..start + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Why bytes at some offset are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The buffer ends before the record does: `need_bytes` are required, `have_bytes` remain.
    Incomplete {
        need_bytes: usize,
        have_bytes: usize,
    },
    /// A length field is larger than the configured limit; the header itself is garbage.
    LengthOverLimit {
        field: &'static str,
        length: u64,
        max: u64,
    },
    /// The stored checksum does not match the record's bytes.
    ChecksumMismatch { stored: u32, computed: u32 },
    /// The kind byte is not one this build knows.
    UnknownKind { byte: u8 },
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Incomplete {
                need_bytes,
                have_bytes,
            } => write!(
                f,
                "record needs {need_bytes} bytes but only {have_bytes} remain in the file"
            ),
            DecodeError::LengthOverLimit { field, length, max } => {
                write!(f, "{field} is {length} bytes, over the limit of {max}")
            }
            DecodeError::ChecksumMismatch { stored, computed } => write!(
                f,
                "checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            DecodeError::UnknownKind { byte } => write!(f, "unknown record kind {byte:#04x}"),
        }
    }
}

/// The longest key the format allows; a configured limit may only be lower.
pub const KEY_BYTES_LIMIT: u32 = 1024 * 1024;
/// The longest value the format allows; a configured limit may only be lower.
pub const VALUE_BYTES_LIMIT: u32 = 1024 * 1024 * 1024;

/// Limits used to reject garbage headers before trusting their lengths.
#[derive(Debug, Clone, Copy)]
pub struct RecordLimits {
    pub key_bytes_max: u32,
    pub value_bytes_max: u32,
}

impl RecordLimits {
    /// What every record ever written satisfies, whatever the configuration was at the time.
    pub const FORMAT: RecordLimits = RecordLimits {
        key_bytes_max: KEY_BYTES_LIMIT,
        value_bytes_max: VALUE_BYTES_LIMIT,
    };
}

/// Decodes the record at the start of `buf`. Checks lengths against `limits`, then the checksum.
pub fn decode(buf: &[u8], limits: RecordLimits) -> Result<Record<'_>, DecodeError> {
    if buf.len() < RECORD_HEADER_BYTES {
        return Err(DecodeError::Incomplete {
            need_bytes: RECORD_HEADER_BYTES,
            have_bytes: buf.len(),
        });
    }
    let u32_at = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    let u64_at = |at: usize| u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"));
    let stored = u32_at(0);
    let key_len = u32_at(4);
    let value_len = u32_at(8);
    if key_len > limits.key_bytes_max {
        return Err(DecodeError::LengthOverLimit {
            field: "key length",
            length: key_len.into(),
            max: limits.key_bytes_max.into(),
        });
    }
    if value_len > limits.value_bytes_max {
        return Err(DecodeError::LengthOverLimit {
            field: "value length",
            length: value_len.into(),
            max: limits.value_bytes_max.into(),
        });
    }
    let total = RECORD_HEADER_BYTES + key_len as usize + value_len as usize;
    if buf.len() < total {
        return Err(DecodeError::Incomplete {
            need_bytes: total,
            have_bytes: buf.len(),
        });
    }
    let computed = crc32fast::hash(&buf[4..total]);
    if computed != stored {
        return Err(DecodeError::ChecksumMismatch { stored, computed });
    }
    let kind_byte = buf[12];
    let kind =
        RecordKind::from_byte(kind_byte).ok_or(DecodeError::UnknownKind { byte: kind_byte })?;
    let key_end = RECORD_HEADER_BYTES + key_len as usize;
    Ok(Record {
        kind,
        batch_continues: kind_byte & BATCH_CONTINUES != 0,
        version: u64_at(13),
        expires_at_ms: u64_at(21),
        key: &buf[RECORD_HEADER_BYTES..key_end],
        value: &buf[key_end..total],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: RecordLimits = RecordLimits {
        key_bytes_max: 1024,
        value_bytes_max: 1 << 20,
    };

    fn put<'a>(key: &'a [u8], value: &'a [u8], version: u64) -> Record<'a> {
        Record {
            kind: RecordKind::Put,
            batch_continues: false,
            version,
            expires_at_ms: 0,
            key,
            value,
        }
    }

    #[test]
    fn layout_matches_the_documented_diagram() {
        let mut buf = Vec::new();
        let mut record = put(b"ab", b"xyz", 0x0102);
        record.batch_continues = true;
        record.expires_at_ms = 7;
        record.encode(&mut buf);
        assert_eq!(buf.len(), 29 + 2 + 3);
        assert_eq!(&buf[4..8], &2u32.to_le_bytes());
        assert_eq!(&buf[8..12], &3u32.to_le_bytes());
        assert_eq!(buf[12], 0x81);
        assert_eq!(&buf[13..21], &0x0102u64.to_le_bytes());
        assert_eq!(&buf[21..29], &7u64.to_le_bytes());
        assert_eq!(&buf[29..], b"abxyz");
        assert_eq!(&buf[0..4], &crc32fast::hash(&buf[4..]).to_le_bytes());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        put(b"key", b"value", 9).encode(&mut buf);
        for byte in 0..buf.len() {
            for bit in 0..8 {
                let mut damaged = buf.clone();
                damaged[byte] ^= 1 << bit;
                assert!(
                    decode(&damaged, LIMITS).is_err(),
                    "flip of byte {byte} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn short_buffers_are_incomplete_not_errors_of_content() {
        let mut buf = Vec::new();
        put(b"key", b"value", 1).encode(&mut buf);
        for len in 0..buf.len() {
            assert!(
                matches!(
                    decode(&buf[..len], LIMITS),
                    Err(DecodeError::Incomplete { .. })
                ),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn oversized_lengths_are_rejected_before_reading_the_body() {
        let mut buf = vec![0u8; RECORD_HEADER_BYTES];
        buf[4..8].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(
            decode(&buf, LIMITS),
            Err(DecodeError::LengthOverLimit {
                field: "key length",
                ..
            })
        ));
    }

    proptest! {
        #[test]
        fn round_trip(key in proptest::collection::vec(any::<u8>(), 0..64),
                      value in proptest::collection::vec(any::<u8>(), 0..256),
                      version: u64, expires: u64, batch: bool, kind in 1u8..=4) {
            let record = Record {
                kind: RecordKind::from_byte(kind).unwrap(),
                batch_continues: batch,
                version,
                expires_at_ms: expires,
                key: &key,
                value: &value,
            };
            let mut buf = Vec::new();
            record.encode(&mut buf);
            buf.extend_from_slice(b"trailing bytes belong to the next record");
            let decoded = decode(&buf, LIMITS).unwrap();
            prop_assert_eq!(decoded.encoded_len(), record.encoded_len());
            prop_assert_eq!(decoded, record);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode(&bytes, LIMITS);
        }
    }
}
