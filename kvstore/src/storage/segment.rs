//! Segment and hint files: naming, creation, the recovery scan, and the hint format.
//!
//! A segment is an append-only file: a 16-byte header (magic `KVSEG001`, then the segment id as
//! a little-endian u64) followed by records (see [`super::record`]). A hint file sits beside a
//! sealed segment and lists, for every record, what the index needs (key, kind, version, expiry,
//! offset, length) without the values, so a restart reads a few bytes per key instead of every
//! value. A hint is only an accelerator: if it is missing, damaged or stale, the segment is
//! scanned instead.
//!
//! This module decides what the bytes of a segment mean after a crash: a damaged tail with no
//! valid record after it is a torn write and is cut off; damage with valid records after it is
//! corruption and is reported, never skipped.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{Result, StorageError};
use super::record::{self, DecodeError, RecordKind, RecordLimits};

pub const SEGMENT_MAGIC: &[u8; 8] = b"KVSEG001";
pub const SEGMENT_HEADER_BYTES: u64 = 16;
const HINT_MAGIC: &[u8; 8] = b"KVHINT01";
const SEGMENT_SUFFIX: &str = "seg";
const HINT_SUFFIX: &str = "hint";

pub fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:010}.{SEGMENT_SUFFIX}"))
}

pub fn hint_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:010}.{HINT_SUFFIX}"))
}

/// The ids of the segment files in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(StorageError::io("listing", dir))? {
        let entry = entry.map_err(StorageError::io("listing", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".seg") {
            if let Ok(id) = stem.parse::<u64>() {
                ids.push(id);
            }
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Makes a directory entry (a created, renamed or deleted file) durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StorageError::io("syncing directory", dir))
}

/// Creates a new, empty segment with its header, durably (file and directory entry).
pub fn create_segment(dir: &Path, id: u64) -> Result<File> {
    let file = create_segment_file(&segment_path(dir, id), id)?;
    sync_dir(dir)?;
    Ok(file)
}

/// Creates a segment file with its header at `path` and fsyncs the file (not the directory).
pub fn create_segment_file(path: &Path, id: u64) -> Result<File> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(StorageError::io("creating segment", path))?;
    let mut header = Vec::with_capacity(SEGMENT_HEADER_BYTES as usize);
    header.extend_from_slice(SEGMENT_MAGIC);
    header.extend_from_slice(&id.to_le_bytes());
    let written = file
        .write_all(&header)
        .map_err(StorageError::io("writing segment header", path))
        .and_then(|()| {
            file.sync_all()
                .map_err(StorageError::io("syncing segment", path))
        });
    if let Err(error) = written {
        // Leave no header-less file behind: recovery would refuse to start on it.
        let _ = fs::remove_file(path);
        return Err(error);
    }
    Ok(file)
}

/// Opens an existing segment for reading and positional writing.
pub fn open_segment(dir: &Path, id: u64) -> Result<File> {
    let path = segment_path(dir, id);
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(StorageError::io("opening segment", &path))
}

/// What the index needs to know about one record: everything but the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HintEntry {
    pub kind: RecordKind,
    pub version: u64,
    pub expires_at_ms: u64,
    pub offset: u64,
    pub len: u32,
    pub key: Box<[u8]>,
    /// The end key of a `DeleteRange`; empty for other kinds.
    pub aux: Box<[u8]>,
}

/// The result of scanning a segment's bytes.
#[derive(Debug)]
pub struct Scan {
    pub entries: Vec<HintEntry>,
    /// Bytes of the file that hold whole, valid records (and the header).
    pub valid_len: u64,
    /// Why the bytes after `valid_len` were dropped, if any were.
    pub torn_tail: Option<String>,
}

/// Scans a segment's bytes. `tail_may_be_torn` is true for the newest segment, the only one a
/// crash can leave half-written; elsewhere any damage is corruption.
pub fn scan(
    path: &Path,
    id: u64,
    data: &[u8],
    limits: RecordLimits,
    tail_may_be_torn: bool,
) -> Result<Scan> {
    let corrupt = |offset: u64, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let header = SEGMENT_HEADER_BYTES as usize;
    if data.len() < header {
        if tail_may_be_torn && SEGMENT_MAGIC.starts_with(&data[..data.len().min(8)]) {
            // Crashed while creating the segment: nothing in it was ever acknowledged.
            return Ok(Scan {
                entries: Vec::new(),
                valid_len: 0,
                torn_tail: Some(format!(
                    "segment header is {} of {header} bytes",
                    data.len()
                )),
            });
        }
        return Err(corrupt(
            0,
            format!("file is {} bytes, shorter than the header", data.len()),
        ));
    }
    if &data[..8] != SEGMENT_MAGIC {
        return Err(corrupt(
            0,
            format!("bad magic {:?}, expected {:?}", &data[..8], SEGMENT_MAGIC),
        ));
    }
    let stored_id = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
    if stored_id != id {
        return Err(corrupt(
            8,
            format!("header says segment {stored_id}, file name says {id}"),
        ));
    }

    let mut entries = Vec::new();
    let mut offset = header;
    // Records of a batch are held back until the batch's last record is seen: a batch is atomic.
    let mut batch_start = offset;
    let mut batch: Vec<HintEntry> = Vec::new();
    while offset < data.len() {
        match record::decode(&data[offset..], limits) {
            Ok(rec) => {
                let len = rec.encoded_len();
                batch.push(HintEntry {
                    kind: rec.kind,
                    version: rec.version,
                    expires_at_ms: rec.expires_at_ms,
                    offset: offset as u64,
                    len: len as u32,
                    key: rec.key.into(),
                    aux: if rec.kind == RecordKind::DeleteRange {
                        rec.value.into()
                    } else {
                        [].into()
                    },
                });
                offset += len;
                if !rec.batch_continues {
                    entries.append(&mut batch);
                    batch_start = offset;
                }
            }
            Err(error) => {
                if !tail_may_be_torn {
                    return Err(corrupt(offset as u64, error.to_string()));
                }
                if let Some(next) = next_valid_record(data, offset + 1, limits) {
                    return Err(corrupt(
                        offset as u64,
                        format!("{error}; a valid record starts again at offset {next}"),
                    ));
                }
                let reason = match error {
                    DecodeError::Incomplete { .. } => format!("incomplete record ({error})"),
                    _ => format!("damaged record ({error})"),
                };
                return Ok(Scan {
                    entries,
                    valid_len: batch_start as u64,
                    torn_tail: Some(reason),
                });
            }
        }
    }
    if !batch.is_empty() {
        let reason = format!("batch of {} records has no final record", batch.len());
        if !tail_may_be_torn {
            return Err(corrupt(batch_start as u64, reason));
        }
        return Ok(Scan {
            entries,
            valid_len: batch_start as u64,
            torn_tail: Some(reason),
        });
    }
    Ok(Scan {
        entries,
        valid_len: data.len() as u64,
        torn_tail: None,
    })
}

/// The first offset at or after `from` where a whole, checksum-valid record starts.
fn next_valid_record(data: &[u8], from: usize, limits: RecordLimits) -> Option<usize> {
    (from..data.len()).find(|&at| record::decode(&data[at..], limits).is_ok())
}

/// Writes the hint file for segment `id`, covering its first `segment_len` bytes. Written to a
/// temporary name and renamed, so a crash never leaves a half-written hint under the real name.
pub fn write_hint(dir: &Path, id: u64, segment_len: u64, entries: &[HintEntry]) -> Result<()> {
    let mut buf = Vec::with_capacity(32 + entries.len() * 48);
    buf.extend_from_slice(HINT_MAGIC);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&segment_len.to_le_bytes());
    buf.extend_from_slice(&(entries.len() as u64).to_le_bytes());
    for e in entries {
        buf.push(e.kind as u8);
        buf.extend_from_slice(&e.version.to_le_bytes());
        buf.extend_from_slice(&e.expires_at_ms.to_le_bytes());
        buf.extend_from_slice(&e.offset.to_le_bytes());
        buf.extend_from_slice(&e.len.to_le_bytes());
        buf.extend_from_slice(&(e.key.len() as u32).to_le_bytes());
        buf.extend_from_slice(&(e.aux.len() as u32).to_le_bytes());
        buf.extend_from_slice(&e.key);
        buf.extend_from_slice(&e.aux);
    }
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());

    let path = hint_path(dir, id);
    let tmp = path.with_extension("hint.tmp");
    let mut file = File::create(&tmp).map_err(StorageError::io("creating hint", &tmp))?;
    file.write_all(&buf)
        .map_err(StorageError::io("writing hint", &tmp))?;
    file.sync_all()
        .map_err(StorageError::io("syncing hint", &tmp))?;
    fs::rename(&tmp, &path).map_err(StorageError::io("renaming hint", &tmp))?;
    Ok(())
}

/// Reads the hint for segment `id` if it exists, is intact, and covers exactly `segment_len`
/// bytes. Any problem means "no usable hint" (the caller scans the segment), never an error.
pub fn read_hint(dir: &Path, id: u64, segment_len: u64) -> Option<Vec<HintEntry>> {
    let data = fs::read(hint_path(dir, id)).ok()?;
    let (body, crc) = data.split_at(data.len().checked_sub(4)?);
    if crc32fast::hash(body).to_le_bytes() != crc {
        tracing::warn!(
            segment = id,
            "hint file fails its checksum; scanning the segment instead"
        );
        return None;
    }
    let mut r = Reader { data: body, at: 0 };
    if r.take(8)? != HINT_MAGIC || r.u64()? != id || r.u64()? != segment_len {
        return None;
    }
    let count = r.u64()?;
    let mut entries = Vec::with_capacity(count.min(1 << 24) as usize);
    for _ in 0..count {
        let kind = match r.take(1)?[0] {
            1 => RecordKind::Put,
            2 => RecordKind::Delete,
            3 => RecordKind::DeleteRange,
            4 => RecordKind::VersionMark,
            _ => return None,
        };
        let version = r.u64()?;
        let expires_at_ms = r.u64()?;
        let offset = r.u64()?;
        let len = r.u32()?;
        let key_len = r.u32()? as usize;
        let aux_len = r.u32()? as usize;
        let key = r.take(key_len)?.into();
        let aux = r.take(aux_len)?.into();
        entries.push(HintEntry {
            kind,
            version,
            expires_at_ms,
            offset,
            len,
            key,
            aux,
        });
    }
    (r.at == body.len()).then_some(entries)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let bytes = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::Record;

    const LIMITS: RecordLimits = RecordLimits {
        key_bytes_max: 1024,
        value_bytes_max: 1 << 20,
    };

    fn segment(records: &[(&[u8], bool)]) -> Vec<u8> {
        let mut data = Vec::new();
        data.extend_from_slice(SEGMENT_MAGIC);
        data.extend_from_slice(&7u64.to_le_bytes());
        for (i, (key, continues)) in records.iter().enumerate() {
            Record {
                kind: RecordKind::Put,
                batch_continues: *continues,
                version: i as u64 + 1,
                expires_at_ms: 0,
                key,
                value: b"value",
            }
            .encode(&mut data);
        }
        data
    }

    fn scan_of(data: &[u8], torn_ok: bool) -> Result<Scan> {
        scan(Path::new("test.seg"), 7, data, LIMITS, torn_ok)
    }

    #[test]
    fn clean_segment_scans_whole() {
        let data = segment(&[(b"a", false), (b"b", false)]);
        let s = scan_of(&data, true).unwrap();
        assert_eq!(s.entries.len(), 2);
        assert_eq!(s.valid_len, data.len() as u64);
        assert!(s.torn_tail.is_none());
    }

    #[test]
    fn truncated_tail_is_cut_at_every_length() {
        let data = segment(&[(b"a", false), (b"b", false)]);
        let first_end = 16 + 29 + 1 + 5;
        for cut in first_end + 1..data.len() {
            let s = scan_of(&data[..cut], true).unwrap();
            assert_eq!(s.entries.len(), 1, "cut at {cut}");
            assert_eq!(s.valid_len, first_end as u64);
            assert!(s.torn_tail.is_some());
        }
    }

    #[test]
    fn garbage_tail_is_cut() {
        let mut data = segment(&[(b"a", false)]);
        let valid = data.len() as u64;
        data.extend((0..300u32).map(|i| (i * 7919 % 251) as u8));
        let s = scan_of(&data, true).unwrap();
        assert_eq!(s.valid_len, valid);
        assert_eq!(s.entries.len(), 1);
    }

    #[test]
    fn damage_before_valid_records_is_corruption_with_its_offset() {
        let mut data = segment(&[(b"a", false), (b"b", false), (b"c", false)]);
        let second = 16 + 29 + 1 + 5;
        data[second + 30] ^= 0xff; // inside the second record's key
        match scan_of(&data, true) {
            Err(StorageError::Corrupt { offset, .. }) => assert_eq!(offset, second as u64),
            other => panic!("expected corruption, got {other:?}"),
        }
    }

    #[test]
    fn sealed_segments_never_drop_a_tail() {
        let data = segment(&[(b"a", false), (b"b", false)]);
        assert!(matches!(
            scan_of(&data[..data.len() - 1], false),
            Err(StorageError::Corrupt { .. })
        ));
    }

    #[test]
    fn unfinished_batch_is_dropped_whole() {
        let data = segment(&[(b"a", false), (b"b", true), (b"c", true)]);
        let s = scan_of(&data, true).unwrap();
        assert_eq!(s.entries.len(), 1);
        assert_eq!(s.valid_len, (16 + 29 + 1 + 5) as u64);
    }

    #[test]
    fn hint_round_trip_and_staleness() {
        let dir = std::env::temp_dir().join(format!("kv-hint-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let data = segment(&[(b"a", false), (b"b", false)]);
        let entries = scan_of(&data, false).unwrap().entries;
        write_hint(&dir, 7, data.len() as u64, &entries).unwrap();
        assert_eq!(read_hint(&dir, 7, data.len() as u64), Some(entries));
        assert_eq!(
            read_hint(&dir, 7, data.len() as u64 + 1),
            None,
            "stale length"
        );
        let mut bytes = fs::read(hint_path(&dir, 7)).unwrap();
        bytes[20] ^= 1;
        fs::write(hint_path(&dir, 7), bytes).unwrap();
        assert_eq!(read_hint(&dir, 7, data.len() as u64), None, "damaged hint");
        fs::remove_dir_all(&dir).unwrap();
    }
}
