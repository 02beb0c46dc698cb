//! The Raft log on disk: one write-ahead log shared by every Raft group of a node. It lives
//! with the node runtime, not in `storage`: the storage engine knows nothing of Raft; this
//! file borrows only its file helpers, error type and fault injection.
//!
//! Each group's entries, hard state (term, vote, commit) and snapshot marks are appended as
//! checksummed records to one sequence of segment files, and [`Wal::sync`] writes and fsyncs
//! whatever was appended since the last call, for all groups at once. The node runtime appends
//! everything a round of `Ready`s asks to persist, calls `sync` once, and only then sends the
//! messages that depend on it (votes, append acknowledgements): group commit across proposals
//! and groups, and the hard state on disk before anything that depends on it leaves the node.
//!
//! The log is read only when the node starts ([`Wal::open`]), which rebuilds every group's
//! state; a torn tail of the newest segment is cut off with a log line, damage anywhere else is
//! an error naming the file and offset. Segments roll over at `segment_bytes_max`; a new
//! segment starts with a checkpoint of every group's hard state and snapshot mark, so that
//! [`Wal::purge`] can delete sealed segments, oldest first, as soon as every entry in them is
//! covered by its group's snapshot. The byte layout is in `kvstore/docs/storage-format.md` ("The Raft log").

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::raft::codec::{put_entry, put_membership, put_u32, Reader};
use crate::raft::{Entry, GroupId, HardState, Index, Payload, SnapshotMeta};
use crate::storage::fault::{FaultInjector, IoOp};
use crate::storage::segment::sync_dir;
use crate::storage::{Result, StorageError};

/// The first bytes of every WAL segment.
pub const WAL_MAGIC: &[u8; 8] = b"KVRAFTWL";
/// The segment format this build writes and reads.
pub const WAL_VERSION: u32 = 1;
/// Magic and version.
pub const WAL_SEGMENT_HEADER_BYTES: usize = 12;
/// Length and checksum before every record.
pub const WAL_RECORD_HEADER_BYTES: usize = 8;
/// The largest record accepted when reading; a larger length is damage.
pub const WAL_RECORD_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Entries are split into records of about this many bytes at most (one entry may exceed it).
const ENTRIES_RECORD_BYTES_TARGET: usize = 1024 * 1024;
/// With `WalOptions::preallocate`, the active segment is zero-filled this far ahead of its end.
pub const WAL_PREALLOCATE_STEP_BYTES: u64 = 4 * 1024 * 1024;

const KIND_ENTRIES: u8 = 1;
const KIND_HARD_STATE: u8 = 2;
const KIND_SNAPSHOT: u8 = 3;
const KIND_REMOVED: u8 = 4;

/// Settings of a WAL.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// A segment is sealed and a new one started once it is this large.
    pub segment_bytes_max: u64,
    /// Whether `sync` fsyncs. Off only for tests and benchmarks that say so.
    pub fsync: bool,
    /// Zero-fill the active segment ahead of its end, [`WAL_PREALLOCATE_STEP_BYTES`] at a
    /// time, so that most syncs overwrite blocks the file already has: an `fdatasync` that
    /// does not grow the file need not write its metadata (measured here: 170 µs against
    /// 290 µs per 4 KiB sync). Replay stops at the zeros (`scan_segment`).
    pub preallocate: bool,
    /// Asked before every write (`Append`), fsync (`Sync`), segment creation (`Create`) and
    /// removal (`Remove`), for tests of the failure paths (`None` in production). The Raft
    /// thread asks it too before it writes a snapshot received from a leader.
    pub faults: Option<std::sync::Arc<dyn FaultInjector>>,
}

impl Default for WalOptions {
    fn default() -> WalOptions {
        WalOptions {
            segment_bytes_max: 64 * 1024 * 1024,
            fsync: true,
            preallocate: true,
            faults: None,
        }
    }
}

fn fault(opts: &WalOptions, op: IoOp, path: &Path) -> std::io::Result<()> {
    match &opts.faults {
        Some(faults) => faults.before(op, path),
        None => Ok(()),
    }
}

/// One record of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalRecord {
    /// Entries, contiguous. They replace the group's entries from `entries[0].index` on.
    Entries {
        group: GroupId,
        entries: Vec<Entry>,
    },
    HardState {
        group: GroupId,
        state: HardState,
    },
    /// Entries up to `meta.index` are covered by a snapshot and gone; with `discard_later`,
    /// so are the entries after it (a snapshot from the leader that the log disagreed with).
    Snapshot {
        group: GroupId,
        meta: SnapshotMeta,
        discard_later: bool,
    },
    /// The node no longer hosts the group: everything logged for it before is gone (a group
    /// of the same id logged after this starts afresh).
    Removed {
        group: GroupId,
    },
}

/// What a group had persisted: what `Raft::new` needs, less the snapshot's bytes (which the
/// state machine keeps).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupLog {
    pub hard_state: HardState,
    pub snapshot: SnapshotMeta,
    /// The entries after the snapshot, contiguous.
    pub entries: Vec<Entry>,
}

// ----- Record codec (pure) ---------------------------------------------------------------

/// Appends `record` to `dst`: `len u32 | crc32 u32 | kind u8 | group u64 | body`, where `len`
/// counts the bytes after the checksum and the checksum covers them.
pub fn encode(record: &WalRecord, dst: &mut Vec<u8>) {
    let start = dst.len();
    dst.extend_from_slice(&[0; WAL_RECORD_HEADER_BYTES]);
    match record {
        WalRecord::Entries { group, entries } => {
            dst.push(KIND_ENTRIES);
            dst.extend_from_slice(&group.to_le_bytes());
            put_u32(dst, entries.len());
            for e in entries {
                put_entry(dst, e);
            }
        }
        WalRecord::HardState { group, state } => {
            dst.push(KIND_HARD_STATE);
            dst.extend_from_slice(&group.to_le_bytes());
            dst.extend_from_slice(&state.term.to_le_bytes());
            dst.extend_from_slice(&state.vote.unwrap_or(0).to_le_bytes());
            dst.extend_from_slice(&state.commit.to_le_bytes());
        }
        WalRecord::Snapshot {
            group,
            meta,
            discard_later,
        } => {
            dst.push(KIND_SNAPSHOT);
            dst.extend_from_slice(&group.to_le_bytes());
            dst.extend_from_slice(&meta.index.to_le_bytes());
            dst.extend_from_slice(&meta.term.to_le_bytes());
            dst.push(u8::from(*discard_later));
            put_membership(dst, &meta.membership);
        }
        WalRecord::Removed { group } => {
            dst.push(KIND_REMOVED);
            dst.extend_from_slice(&group.to_le_bytes());
        }
    }
    let len = dst.len() - start - WAL_RECORD_HEADER_BYTES;
    let crc = crc32fast::hash(&dst[start + WAL_RECORD_HEADER_BYTES..]);
    dst[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
    dst[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// Why bytes are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalDecodeError {
    #[error("{needed} more bytes needed")]
    Incomplete { needed: usize },
    #[error("{0}")]
    Invalid(String),
}

/// Decodes the record at the start of `buf`; returns it and its encoded length.
pub fn decode(buf: &[u8]) -> std::result::Result<(WalRecord, usize), WalDecodeError> {
    if buf.len() < WAL_RECORD_HEADER_BYTES {
        return Err(WalDecodeError::Incomplete {
            needed: WAL_RECORD_HEADER_BYTES - buf.len(),
        });
    }
    let len = u32::from_le_bytes(buf[0..4].try_into().expect("4 bytes")) as usize;
    if len > WAL_RECORD_BYTES_MAX {
        return Err(WalDecodeError::Invalid(format!(
            "record length {len} is over the limit of {WAL_RECORD_BYTES_MAX}"
        )));
    }
    let total = WAL_RECORD_HEADER_BYTES + len;
    if buf.len() < total {
        return Err(WalDecodeError::Incomplete {
            needed: total - buf.len(),
        });
    }
    let stored = u32::from_le_bytes(buf[4..8].try_into().expect("4 bytes"));
    let body = &buf[WAL_RECORD_HEADER_BYTES..total];
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(WalDecodeError::Invalid(format!(
            "checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let mut r = Reader::new(body);
    let record = read_record(&mut r).map_err(WalDecodeError::Invalid)?;
    if r.remaining() != 0 {
        return Err(WalDecodeError::Invalid(format!(
            "{} bytes left over after the record",
            r.remaining()
        )));
    }
    Ok((record, total))
}

fn read_record(r: &mut Reader<'_>) -> std::result::Result<WalRecord, String> {
    let kind = r.u8()?;
    let group = r.u64()?;
    match kind {
        KIND_ENTRIES => {
            let entries = r.entries()?;
            Ok(WalRecord::Entries { group, entries })
        }
        KIND_HARD_STATE => {
            let term = r.u64()?;
            let vote = r.u64()?;
            let commit = r.u64()?;
            Ok(WalRecord::HardState {
                group,
                state: HardState {
                    term,
                    vote: (vote != 0).then_some(vote),
                    commit,
                },
            })
        }
        KIND_SNAPSHOT => {
            let index = r.u64()?;
            let term = r.u64()?;
            let discard_later = match r.u8()? {
                0 => false,
                1 => true,
                other => return Err(format!("discard flag {other} is neither 0 nor 1")),
            };
            let membership = r.membership()?;
            Ok(WalRecord::Snapshot {
                group,
                meta: SnapshotMeta {
                    index,
                    term,
                    membership,
                },
                discard_later,
            })
        }
        KIND_REMOVED => Ok(WalRecord::Removed { group }),
        other => Err(format!("unknown record kind {other}")),
    }
}

// ----- Replay ----------------------------------------------------------------------------

/// A group's state while the log is read back.
#[derive(Debug, Default)]
struct Replayed {
    hard_state: HardState,
    snapshot: SnapshotMeta,
    entries: BTreeMap<Index, Entry>,
}

impl Replayed {
    fn apply(&mut self, record: WalRecord) {
        match record {
            WalRecord::Entries { entries, .. } => {
                let Some(first) = entries.first() else {
                    return;
                };
                // What follows `first` is replaced (a new leader overwrote it).
                self.entries.split_off(&first.index);
                for e in entries {
                    if e.index > self.snapshot.index {
                        self.entries.insert(e.index, e);
                    }
                }
            }
            WalRecord::HardState { state, .. } => self.hard_state = state,
            WalRecord::Snapshot {
                meta,
                discard_later,
                ..
            } => {
                if meta.index < self.snapshot.index {
                    return;
                }
                self.entries = if discard_later {
                    BTreeMap::new()
                } else {
                    self.entries.split_off(&(meta.index + 1))
                };
                self.snapshot = meta;
            }
            WalRecord::Removed { .. } => *self = Replayed::default(),
        }
    }

    /// The group's log, checked to be contiguous from its snapshot on.
    fn finish(self, group: GroupId, dir: &Path) -> Result<GroupLog> {
        let from = self.snapshot.index + 1;
        for (expected, &index) in (from..).zip(self.entries.keys()) {
            if index != expected {
                return Err(StorageError::Corrupt {
                    path: dir.to_path_buf(),
                    offset: 0,
                    reason: format!(
                        "raft group {group}: the log jumps from entry {} to {index} after a \
                         snapshot at {} (a segment is missing)",
                        expected - 1,
                        self.snapshot.index
                    ),
                });
            }
        }
        Ok(GroupLog {
            hard_state: self.hard_state,
            snapshot: self.snapshot,
            entries: self.entries.into_values().collect(),
        })
    }
}

/// The newest entry index each group wrote into one segment: the segment may go once every
/// one of them is covered by its group's snapshot.
type SegmentIndexes = BTreeMap<GroupId, Index>;

fn note_record(indexes: &mut SegmentIndexes, record: &WalRecord) {
    if let WalRecord::Entries { group, entries } = record {
        if let Some(last) = entries.last() {
            let max = indexes.entry(*group).or_insert(0);
            *max = (*max).max(last.index);
        }
    }
}

/// A segment's records, and where and why its torn tail starts if it has one.
type Scanned = (Vec<WalRecord>, Option<(u64, String)>);

/// The records in one segment's bytes. A damaged or incomplete record at the end of the
/// newest segment (`tail_may_be_torn`) is a torn write: the records before it are returned
/// with the length to cut the file to. Anything else is corruption.
fn scan_segment(path: &Path, data: &[u8], tail_may_be_torn: bool) -> Result<Scanned> {
    let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if data.len() < WAL_SEGMENT_HEADER_BYTES {
        if tail_may_be_torn && WAL_MAGIC.starts_with(&data[..data.len().min(8)]) {
            let reason = format!("segment header is {} bytes", data.len());
            return Ok((Vec::new(), Some((0, reason))));
        }
        return Err(corrupt(0, "shorter than a segment header".into()));
    }
    if &data[..8] != WAL_MAGIC {
        return Err(corrupt(0, format!("bad magic {:?}", &data[..8])));
    }
    let version = u32::from_le_bytes(data[8..12].try_into().expect("4 bytes"));
    if version != WAL_VERSION {
        return Err(StorageError::UnsupportedFormat {
            path: path.to_path_buf(),
            found: format!("raft log segment version {version}"),
            supported: WAL_VERSION,
        });
    }
    let mut records = Vec::new();
    let mut at = WAL_SEGMENT_HEADER_BYTES;
    // The zero-filled space of a preallocated segment is not part of the log. Every record
    // starts with a non-zero length, so the log ends where nothing but zeros follows (a
    // record's own last bytes may be zeros: the test is on where the next one would start).
    let last_nonzero = data.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    while at < last_nonzero {
        match decode(&data[at..]) {
            Ok((record, len)) => {
                records.push(record);
                at += len;
            }
            Err(error) => {
                if !tail_may_be_torn {
                    return Err(corrupt(at, error.to_string()));
                }
                // A torn write leaves nothing valid after it; valid records after the damage
                // mean the damage is in the middle. Except a hole of zeros where a record
                // should start: no record starts with a zero length, so it is a write into the
                // preallocated space that did not reach the disk while a later one of the same
                // batch did (its pages go in any order until the sync completes), and nothing
                // from there on was acknowledged.
                let hole = data[at..].len() >= 4 && data[at..at + 4] == [0; 4];
                if let Some(next) = (at + 1..last_nonzero)
                    .find(|&o| decode(&data[o..]).is_ok())
                    .filter(|_| !hole)
                {
                    return Err(corrupt(
                        at,
                        format!("{error}; a valid record starts again at offset {next}"),
                    ));
                }
                return Ok((records, Some((at as u64, error.to_string()))));
            }
        }
    }
    Ok((records, None))
}

// ----- The log ---------------------------------------------------------------------------

/// The write-ahead log of every Raft group on a node. See the module documentation.
pub struct Wal {
    dir: PathBuf,
    opts: WalOptions,
    file: File,
    active_id: u64,
    active_len: u64,
    /// How far the active segment is zero-filled (with `preallocate`).
    active_allocated: u64,
    active_indexes: SegmentIndexes,
    sealed: BTreeMap<u64, SegmentIndexes>,
    /// Records appended since the last `sync`.
    pending: Vec<u8>,
    /// Every group's current hard state and snapshot mark (for checkpoints and `purge`).
    marks: BTreeMap<GroupId, (HardState, SnapshotMeta)>,
    syncs: u64,
    /// Set after a failed write or fsync: what reached the disk is unknown, so nothing more
    /// is written; the node must restart and recover from the log.
    poisoned: Option<String>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("dir", &self.dir)
            .field("active_id", &self.active_id)
            .field("segments", &(self.sealed.len() + 1))
            .finish_non_exhaustive()
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:016}.wal"))
}

impl Wal {
    /// Opens (or creates) the log in `dir` and reads back every group's state. A new segment
    /// is started, beginning with a checkpoint of every group.
    pub fn open(
        dir: impl AsRef<Path>,
        opts: WalOptions,
    ) -> Result<(Wal, BTreeMap<GroupId, GroupLog>)> {
        let dir = dir.as_ref().to_path_buf();
        if opts.segment_bytes_max < (WAL_SEGMENT_HEADER_BYTES + WAL_RECORD_HEADER_BYTES) as u64 {
            return Err(StorageError::InvalidConfig(format!(
                "segment_bytes_max {} is too small for a raft log segment",
                opts.segment_bytes_max
            )));
        }
        fs::create_dir_all(&dir).map_err(StorageError::io("creating raft log directory", &dir))?;
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(StorageError::io("listing", &dir))? {
            let entry = entry.map_err(StorageError::io("listing", &dir))?;
            let name = entry.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".wal")?.parse::<u64>().ok());
            ids.extend(id);
        }
        ids.sort_unstable();

        let mut groups: BTreeMap<GroupId, Replayed> = BTreeMap::new();
        let mut sealed = BTreeMap::new();
        for (n, &id) in ids.iter().enumerate() {
            let path = segment_path(&dir, id);
            let data = fs::read(&path).map_err(StorageError::io("reading", &path))?;
            let newest = n + 1 == ids.len();
            let (records, torn) = scan_segment(&path, &data, newest)?;
            if let Some((valid, _)) = torn.as_ref().filter(|(v, _)| *v == 0) {
                // A crash while the segment was created: not even its header is whole.
                tracing::warn!(
                    path = %path.display(),
                    bytes = data.len() as u64 - valid,
                    "raft log: dropping a segment cut short at its creation"
                );
                fs::remove_file(&path).map_err(StorageError::io("removing", &path))?;
                sync_dir(&dir)?;
                continue;
            }
            if let Some((valid, reason)) = torn {
                tracing::warn!(
                    path = %path.display(),
                    dropped_bytes = data.len() as u64 - valid,
                    %reason,
                    "raft log: cutting off a torn write at the end of the newest segment"
                );
                let file = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(StorageError::io("opening", &path))?;
                file.set_len(valid)
                    .and_then(|()| file.sync_all())
                    .map_err(StorageError::io("truncating", &path))?;
            }
            let mut indexes = SegmentIndexes::new();
            for record in records {
                note_record(&mut indexes, &record);
                let group = match &record {
                    WalRecord::Entries { group, .. }
                    | WalRecord::HardState { group, .. }
                    | WalRecord::Snapshot { group, .. } => *group,
                    WalRecord::Removed { group } => {
                        groups.remove(group);
                        continue;
                    }
                };
                groups.entry(group).or_default().apply(record);
            }
            sealed.insert(id, indexes);
        }
        let mut logs = BTreeMap::new();
        for (group, replayed) in groups {
            logs.insert(group, replayed.finish(group, &dir)?);
        }

        let active_id = ids.last().map_or(1, |id| id + 1);
        let marks = logs
            .iter()
            .map(|(&g, log)| (g, (log.hard_state, log.snapshot.clone())))
            .collect();
        let (file, active_len) = Self::create_segment(&dir, active_id, &opts)?;
        let mut wal = Wal {
            dir,
            opts,
            file,
            active_id,
            active_len,
            active_allocated: active_len,
            active_indexes: SegmentIndexes::new(),
            sealed,
            pending: Vec::new(),
            marks,
            syncs: 0,
            poisoned: None,
        };
        wal.checkpoint();
        wal.sync()?;
        Ok((wal, logs))
    }

    fn create_segment(dir: &Path, id: u64, opts: &WalOptions) -> Result<(File, u64)> {
        let path = segment_path(dir, id);
        let mut file = fault(opts, IoOp::Create, &path)
            .and_then(|()| OpenOptions::new().write(true).create_new(true).open(&path))
            .map_err(StorageError::io("creating raft log segment", &path))?;
        let mut header = Vec::with_capacity(WAL_SEGMENT_HEADER_BYTES);
        header.extend_from_slice(WAL_MAGIC);
        header.extend_from_slice(&WAL_VERSION.to_le_bytes());
        file.write_all(&header)
            .and_then(|()| file.sync_all())
            .map_err(StorageError::io("writing raft log segment header", &path))?;
        sync_dir(dir)?;
        Ok((file, WAL_SEGMENT_HEADER_BYTES as u64))
    }

    /// Every group's hard state and snapshot mark, at the start of a segment, so that older
    /// segments hold nothing newer segments do not also say.
    fn checkpoint(&mut self) {
        let marks: Vec<(GroupId, HardState, SnapshotMeta)> = self
            .marks
            .iter()
            .map(|(&g, (hs, snap))| (g, *hs, snap.clone()))
            .collect();
        for (group, state, meta) in marks {
            self.push(&WalRecord::Snapshot {
                group,
                meta,
                discard_later: false,
            });
            self.push(&WalRecord::HardState { group, state });
        }
    }

    fn push(&mut self, record: &WalRecord) {
        note_record(&mut self.active_indexes, record);
        encode(record, &mut self.pending);
    }

    /// Appends entries of `group`; they replace its entries from `entries[0].index` on.
    /// Durable after the next [`Wal::sync`].
    pub fn append(&mut self, group: GroupId, entries: &[Entry]) {
        let mut start = 0;
        while start < entries.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < entries.len() && (end == start || bytes < ENTRIES_RECORD_BYTES_TARGET) {
                bytes += 32 + entry_data_len(&entries[end]);
                end += 1;
            }
            self.push(&WalRecord::Entries {
                group,
                entries: entries[start..end].to_vec(),
            });
            start = end;
        }
    }

    /// Records `group`'s hard state. Durable after the next [`Wal::sync`].
    pub fn set_hard_state(&mut self, group: GroupId, state: HardState) {
        self.marks.entry(group).or_default().0 = state;
        self.push(&WalRecord::HardState { group, state });
    }

    /// Records that `group`'s entries up to `meta.index` are covered by a snapshot the state
    /// machine holds (and, with `discard_later`, that the entries after it are gone too).
    pub fn set_snapshot(&mut self, group: GroupId, meta: &SnapshotMeta, discard_later: bool) {
        let mark = &mut self.marks.entry(group).or_default().1;
        if meta.index >= mark.index {
            *mark = meta.clone();
        }
        self.push(&WalRecord::Snapshot {
            group,
            meta: meta.clone(),
            discard_later,
        });
    }

    /// Records that this node no longer hosts `group`: a restart will not bring it back, and
    /// its entries no longer hold segments (durable after the next [`Wal::sync`]).
    pub fn remove_group(&mut self, group: GroupId) {
        self.marks.remove(&group);
        for indexes in self.sealed.values_mut() {
            indexes.remove(&group);
        }
        self.active_indexes.remove(&group);
        self.push(&WalRecord::Removed { group });
    }

    /// Writes everything appended since the last call and fsyncs it: one fsync for every
    /// group and every proposal in between (group commit). When this returns `Ok`, all of it
    /// is on disk. After a failure nothing more is written (see `poisoned`).
    pub fn sync(&mut self) -> Result<()> {
        if let Some(reason) = &self.poisoned {
            return Err(StorageError::Poisoned {
                reason: reason.clone(),
            });
        }
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = segment_path(&self.dir, self.active_id);
        self.preallocate();
        let written = fault(&self.opts, IoOp::Append, &path)
            .and_then(|()| self.file.write_all(&self.pending))
            .map_err(StorageError::io("writing raft log", &path))
            .and_then(|()| {
                if self.opts.fsync {
                    fault(&self.opts, IoOp::Sync, &path)
                        .and_then(|()| self.file.sync_data())
                        .map_err(StorageError::io("syncing raft log", &path))
                } else {
                    Ok(())
                }
            });
        if let Err(error) = written {
            self.poisoned = Some(error.to_string());
            return Err(error);
        }
        self.active_len += self.pending.len() as u64;
        self.pending.clear();
        self.syncs += 1;
        if self.active_len >= self.opts.segment_bytes_max {
            self.rotate()?;
        }
        Ok(())
    }

    /// With `preallocate`: if this sync's records reach past the zero-filled part of the
    /// active segment, zero-fills the next [`WAL_PREALLOCATE_STEP_BYTES`] past them (up to
    /// the segment's size), so that the syncs after this one do not grow the file. Written
    /// with `pwrite`: the file's cursor, where records go, does not move.
    ///
    /// Best effort: zeros are no data, so a disk too full for them (or any other failure)
    /// only stops the preallocation of this segment; the records' own write decides whether
    /// the sync fails.
    fn preallocate(&mut self) {
        use std::os::unix::fs::FileExt;
        let end = self.active_len + self.pending.len() as u64;
        if !self.opts.preallocate || end <= self.active_allocated {
            return;
        }
        let target = (end + WAL_PREALLOCATE_STEP_BYTES).min(self.opts.segment_bytes_max.max(end));
        let zeros = vec![0u8; 64 * 1024];
        let mut at = end;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            if let Err(error) = self.file.write_all_at(&zeros[..n], at) {
                // Give back what the zeros took: on a full disk the records need it.
                let _ = self.file.set_len(self.active_len);
                tracing::warn!(
                    segment = self.active_id,
                    %error,
                    "raft log: could not preallocate; this segment grows as it is written"
                );
                self.active_allocated = u64::MAX;
                return;
            }
            at += n as u64;
        }
        self.active_allocated = target;
    }

    fn rotate(&mut self) -> Result<()> {
        let id = self.active_id + 1;
        let (file, len) = Self::create_segment(&self.dir, id, &self.opts).inspect_err(|error| {
            self.poisoned = Some(error.to_string());
        })?;
        let indexes = std::mem::take(&mut self.active_indexes);
        self.sealed.insert(self.active_id, indexes);
        self.file = file;
        self.active_id = id;
        self.active_len = len;
        self.active_allocated = len;
        self.checkpoint();
        self.sync()
    }

    /// Deletes the oldest sealed segments, as long as every entry in each is covered by its
    /// group's snapshot. Returns how many went.
    ///
    /// Two rules keep replay correct, both found by the model test below:
    /// - it syncs first: a segment may go only once the snapshot marks that cover it are on
    ///   disk (a crash right after purging on an unsynced mark lost entries);
    /// - it deletes oldest first and stops at the first segment it must keep: a record that
    ///   overrides older ones (entries that replace a suffix, a snapshot that discards the
    ///   entries after it) must outlive every older segment holding what it overrides, or
    ///   those stale entries would come back on replay.
    ///
    /// So a group that never compacts pins every later segment; the runtime compacts groups
    /// whose entries hold the oldest segment.
    pub fn purge(&mut self) -> Result<usize> {
        self.sync()?;
        let marks = &self.marks;
        let obsolete: Vec<u64> = self
            .sealed
            .iter()
            .take_while(|(_, indexes)| {
                indexes
                    .iter()
                    .all(|(g, &max)| marks.get(g).is_some_and(|(_, snap)| max <= snap.index))
            })
            .map(|(&id, _)| id)
            .collect();
        for id in &obsolete {
            let path = segment_path(&self.dir, *id);
            fault(&self.opts, IoOp::Remove, &path)
                .and_then(|()| fs::remove_file(&path))
                .map_err(StorageError::io("deleting raft log segment", &path))?;
            self.sealed.remove(id);
        }
        if !obsolete.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(obsolete.len())
    }

    /// Segment files on disk, the active one included.
    pub fn segments(&self) -> usize {
        self.sealed.len() + 1
    }

    /// Successful calls to `sync` that wrote something (fsyncs, when `fsync` is on).
    pub fn syncs(&self) -> u64 {
        self.syncs
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn entry_data_len(e: &Entry) -> usize {
    match &e.payload {
        Payload::Command(data) => data.len(),
        Payload::Config(m) => 8 * (m.voters.len() + m.learners.len()),
        Payload::Noop => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Membership;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn entry(index: Index, term: u64, data: &str) -> Entry {
        Entry {
            index,
            term,
            payload: Payload::Command(Bytes::from(data.to_string())),
        }
    }

    fn entries(range: std::ops::RangeInclusive<Index>, term: u64) -> Vec<Entry> {
        range.map(|i| entry(i, term, &format!("v{i}"))).collect()
    }

    fn opts() -> WalOptions {
        WalOptions {
            segment_bytes_max: 64 * 1024 * 1024,
            fsync: false,
            preallocate: true,
            faults: None,
        }
    }

    fn snapshot(index: Index, term: u64) -> SnapshotMeta {
        SnapshotMeta {
            index,
            term,
            membership: Membership::new([1, 2, 3]),
        }
    }

    #[test]
    fn layout_matches_the_documented_diagram() {
        let mut buf = Vec::new();
        let state = HardState {
            term: 7,
            vote: Some(2),
            commit: 5,
        };
        encode(&WalRecord::HardState { group: 9, state }, &mut buf);
        assert_eq!(buf.len(), 8 + 1 + 8 + 24);
        assert_eq!(
            &buf[0..4],
            &33u32.to_le_bytes(),
            "length after the checksum"
        );
        assert_eq!(&buf[4..8], &crc32fast::hash(&buf[8..]).to_le_bytes());
        assert_eq!(buf[8], KIND_HARD_STATE);
        assert_eq!(&buf[9..17], &9u64.to_le_bytes());
        assert_eq!(&buf[17..25], &7u64.to_le_bytes());
        assert_eq!(&buf[25..33], &2u64.to_le_bytes());
        assert_eq!(&buf[33..41], &5u64.to_le_bytes());
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let mut buf = Vec::new();
        let record = WalRecord::Entries {
            group: 1,
            entries: entries(3..=4, 2),
        };
        encode(&record, &mut buf);
        for bit in 0..buf.len() * 8 {
            let mut damaged = buf.clone();
            damaged[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&damaged).is_err(), "bit {bit} flipped unnoticed");
        }
    }

    fn arb_entry() -> impl Strategy<Value = Payload> {
        prop_oneof![
            Just(Payload::Noop),
            proptest::collection::vec(any::<u8>(), 0..40)
                .prop_map(|v| Payload::Command(Bytes::from(v))),
            (
                proptest::collection::btree_set(1u64..9, 0..4),
                proptest::collection::btree_set(10u64..19, 0..3)
            )
                .prop_map(|(voters, learners)| Payload::Config(Membership { voters, learners })),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(group in any::<u64>(), first in 1u64..1000, term in any::<u64>(),
                              payloads in proptest::collection::vec(arb_entry(), 0..6),
                              vote in proptest::option::of(1u64..9), discard in any::<bool>()) {
            let entries: Vec<Entry> = payloads.into_iter().enumerate()
                .map(|(i, payload)| Entry { index: first + i as u64, term, payload }).collect();
            let records = [
                WalRecord::Entries { group, entries },
                WalRecord::HardState { group, state: HardState { term, vote, commit: first } },
                WalRecord::Snapshot { group, meta: snapshot(first, term), discard_later: discard },
            ];
            for record in records {
                let mut buf = Vec::new();
                encode(&record, &mut buf);
                let (back, len) = decode(&buf).unwrap();
                prop_assert_eq!(back, record);
                prop_assert_eq!(len, buf.len());
                for cut in 0..buf.len() {
                    let incomplete = matches!(decode(&buf[..cut]), Err(WalDecodeError::Incomplete { .. }));
                    prop_assert!(incomplete);
                }
            }
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn groups_come_back_as_written() {
        let dir = tempdir();
        let (mut wal, logs) = Wal::open(&dir, opts()).unwrap();
        assert!(logs.is_empty());
        wal.append(1, &entries(1..=5, 1));
        wal.set_hard_state(
            1,
            HardState {
                term: 1,
                vote: Some(1),
                commit: 3,
            },
        );
        wal.append(2, &entries(1..=2, 4));
        wal.set_hard_state(
            2,
            HardState {
                term: 4,
                vote: None,
                commit: 0,
            },
        );
        // A new leader overwrote entries 3 to 5 of group 1 with one entry: 4 and 5 go.
        wal.append(1, &entries(3..=3, 2));
        wal.sync().unwrap();
        assert_eq!(wal.syncs(), 1, "one write and fsync for all of the above");
        drop(wal);

        let (_, logs) = Wal::open(&dir, opts()).unwrap();
        let g1 = &logs[&1];
        let mut expected = entries(1..=2, 1);
        expected.extend(entries(3..=3, 2));
        assert_eq!(g1.entries, expected);
        assert_eq!(
            g1.hard_state,
            HardState {
                term: 1,
                vote: Some(1),
                commit: 3
            }
        );
        assert_eq!(logs[&2].entries, entries(1..=2, 4));
        assert_eq!(logs[&2].hard_state.term, 4);
    }

    #[test]
    fn a_snapshot_mark_drops_what_it_covers_and_the_rest_if_told() {
        let dir = tempdir();
        let (mut wal, _) = Wal::open(&dir, opts()).unwrap();
        wal.append(1, &entries(1..=10, 1));
        wal.set_snapshot(1, &snapshot(6, 1), false);
        wal.append(2, &entries(1..=10, 1));
        wal.set_snapshot(2, &snapshot(20, 3), true);
        wal.append(2, &entries(21..=22, 3));
        wal.sync().unwrap();
        drop(wal);
        let (_, logs) = Wal::open(&dir, opts()).unwrap();
        assert_eq!(logs[&1].snapshot, snapshot(6, 1));
        assert_eq!(logs[&1].entries, entries(7..=10, 1));
        assert_eq!(logs[&2].snapshot.index, 20);
        assert_eq!(logs[&2].entries, entries(21..=22, 3));
    }

    #[test]
    fn segments_roll_over_and_go_once_every_group_has_a_snapshot_past_them() {
        let dir = tempdir();
        let small = WalOptions {
            segment_bytes_max: 2048,
            fsync: false,
            preallocate: true,
            faults: None,
        };
        let (mut wal, _) = Wal::open(&dir, small.clone()).unwrap();
        // Group 2 writes once, early, and never compacts; then group 1 writes a lot.
        wal.append(2, &entries(1..=2, 1));
        wal.sync().unwrap();
        for i in 1..=300 {
            wal.append(1, &entries(i..=i, 1));
            wal.set_hard_state(
                1,
                HardState {
                    term: 1,
                    vote: Some(1),
                    commit: i,
                },
            );
            wal.sync().unwrap();
        }
        let before = wal.segments();
        assert!(before > 10, "{before} segments");
        // Group 1's snapshot covers 250, but group 2's entries pin the first segment, and
        // segments go oldest first.
        wal.set_snapshot(1, &snapshot(250, 1), false);
        assert_eq!(wal.purge().unwrap(), 0);
        assert_eq!(files(&dir), before);
        drop(wal);
        let (mut wal, logs) = Wal::open(&dir, small.clone()).unwrap();
        assert_eq!(logs[&1].snapshot.index, 250);
        assert_eq!(logs[&1].entries, entries(251..=300, 1));
        assert_eq!(logs[&1].hard_state.commit, 300);
        assert_eq!(logs[&2].entries, entries(1..=2, 1));
        // Once group 2 compacts too, only the segments holding entries past 250 stay.
        wal.set_snapshot(2, &snapshot(2, 1), false);
        let purged = wal.purge().unwrap();
        assert!(purged > 0 && purged < before, "purged {purged} of {before}");
        assert_eq!(files(&dir), wal.segments());
        drop(wal);
        let (_, logs) = Wal::open(&dir, small).unwrap();
        assert_eq!(logs[&1].entries, entries(251..=300, 1));
        assert!(logs[&2].entries.is_empty());
        assert!(files(&dir) < 10, "{} files left", files(&dir));
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_length_and_the_synced_prefix_survives() {
        let dir = tempdir();
        let (mut wal, _) = Wal::open(&dir, opts()).unwrap();
        wal.append(1, &entries(1..=3, 1));
        wal.sync().unwrap();
        let path = segment_path(&dir, wal.active_id);
        let synced = wal.active_len;
        wal.append(1, &entries(4..=4, 1));
        wal.sync().unwrap();
        let end = wal.active_len as usize;
        drop(wal);
        // (The file goes on in zeros, preallocated: a torn write leaves some of them.)
        let full = fs::read(&path).unwrap();
        assert!(full.len() > end && full[end..].iter().all(|&b| b == 0));
        for cut in synced as usize..end {
            // Cut there, or (in a preallocated segment) only zeros after it.
            let mut zeroed = full[..cut].to_vec();
            zeroed.resize(end + 4096, 0);
            for torn in [&full[..cut], &zeroed[..]] {
                let dir2 = tempdir();
                fs::write(segment_path(&dir2, 1), torn).unwrap();
                let (_, logs) = Wal::open(&dir2, opts()).unwrap();
                assert_eq!(logs[&1].entries, entries(1..=3, 1), "cut at {cut}");
                // Cut back to the synced records (zeros alone are no torn write: kept).
                let len = fs::metadata(segment_path(&dir2, 1)).unwrap().len();
                let kept = cut == synced as usize && torn.len() > cut;
                assert_eq!(len, if kept { torn.len() as u64 } else { synced });
            }
        }
        // Garbage instead of the last record: the same.
        let dir3 = tempdir();
        let mut garbage = full[..synced as usize].to_vec();
        garbage.extend((0..40u8).map(|b| b.wrapping_mul(37)));
        fs::write(segment_path(&dir3, 1), &garbage).unwrap();
        let (_, logs) = Wal::open(&dir3, opts()).unwrap();
        assert_eq!(logs[&1].entries, entries(1..=3, 1));
    }

    #[test]
    fn a_preallocated_segment_is_filled_ahead_and_its_zeros_are_not_read_as_damage() {
        let dir = tempdir();
        let (mut wal, _) = Wal::open(&dir, opts()).unwrap();
        let path = segment_path(&dir, wal.active_id);
        wal.append(1, &entries(1..=3, 1));
        // A hard state whose last bytes are zeros (vote and commit 0) ends the log.
        wal.set_hard_state(
            1,
            HardState {
                term: 1,
                vote: None,
                commit: 0,
            },
        );
        wal.sync().unwrap();
        let allocated = fs::metadata(&path).unwrap().len();
        assert_eq!(allocated, wal.active_len + WAL_PREALLOCATE_STEP_BYTES);
        // Syncs within the zero-filled part do not grow the file.
        for i in 4..=20 {
            wal.append(1, &entries(i..=i, 1));
            wal.sync().unwrap();
        }
        assert_eq!(fs::metadata(&path).unwrap().len(), allocated);
        drop(wal);
        let (_, logs) = Wal::open(&dir, opts()).unwrap();
        assert_eq!(logs[&1].entries, entries(1..=20, 1));
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            allocated,
            "nothing was cut off as torn"
        );
    }

    /// With preallocation a batch overwrites zeros in place, and its pages may reach the disk
    /// in any order before its sync completes: a hole of zeros followed by a valid record is
    /// an unsynced write (nothing after it was acknowledged), not damage in the middle.
    #[test]
    fn a_hole_of_zeros_in_the_newest_segment_is_an_unsynced_write_and_is_cut() {
        let dir = tempdir();
        let (mut wal, _) = Wal::open(&dir, opts()).unwrap();
        wal.append(1, &entries(1..=2, 1));
        wal.sync().unwrap();
        let synced = wal.active_len as usize;
        wal.append(1, &entries(3..=3, 1));
        wal.set_hard_state(
            1,
            HardState {
                term: 1,
                vote: None,
                commit: 3,
            },
        );
        wal.sync().unwrap();
        let path = segment_path(&dir, wal.active_id);
        drop(wal);
        let mut data = fs::read(&path).unwrap();
        // The page holding the entries record never reached the disk; the hard state did.
        let len = u32::from_le_bytes(data[synced..synced + 4].try_into().unwrap()) as usize;
        data[synced..synced + WAL_RECORD_HEADER_BYTES + len].fill(0);
        fs::write(&path, &data).unwrap();
        let (_, logs) = Wal::open(&dir, opts()).unwrap();
        assert_eq!(logs[&1].entries, entries(1..=2, 1));
        assert_eq!(fs::metadata(&path).unwrap().len(), synced as u64);
    }

    /// A crash while a segment was being created leaves part of its header; the next open
    /// drops it, so that it does not stand as a sealed segment that the open after refuses.
    #[test]
    fn a_segment_cut_short_at_its_creation_is_dropped() {
        let dir = tempdir();
        let (mut wal, _) = Wal::open(&dir, opts()).unwrap();
        wal.append(1, &entries(1..=2, 1));
        wal.sync().unwrap();
        let next = wal.active_id + 1;
        drop(wal);
        fs::write(segment_path(&dir, next), &WAL_MAGIC[..5]).unwrap();
        for _ in 0..2 {
            let (_, logs) = Wal::open(&dir, opts()).unwrap();
            assert_eq!(logs[&1].entries, entries(1..=2, 1));
        }
        assert!(!segment_path(&dir, next).exists());
    }

    #[test]
    fn damage_before_valid_records_or_in_a_sealed_segment_is_an_error() {
        let dir = tempdir();
        let (mut wal, _) = Wal::open(&dir, opts()).unwrap();
        wal.append(1, &entries(1..=3, 1));
        wal.sync().unwrap();
        let path = segment_path(&dir, wal.active_id);
        let first_record_end = wal.active_len;
        wal.append(1, &entries(4..=6, 1));
        wal.sync().unwrap();
        drop(wal);
        // Damage the first record of segment 1, followed by a valid one: corruption, whether
        // the segment is the newest or not.
        let mut data = fs::read(&path).unwrap();
        let victim = WAL_SEGMENT_HEADER_BYTES + 20;
        data[victim] ^= 0xFF;
        fs::write(&path, &data).unwrap();
        let error = Wal::open(&dir, opts()).unwrap_err();
        match error {
            StorageError::Corrupt {
                path: p, offset, ..
            } => {
                assert_eq!(p, path);
                assert!(offset < first_record_end);
            }
            other => panic!("expected corruption, got {other}"),
        }
        assert!(data.len() > first_record_end as usize);
    }

    #[test]
    fn a_segment_of_another_version_is_refused_with_a_clear_error() {
        let dir = tempdir();
        let (wal, _) = Wal::open(&dir, opts()).unwrap();
        let path = segment_path(&dir, wal.active_id);
        drop(wal);
        let mut data = fs::read(&path).unwrap();
        data[8..12].copy_from_slice(&99u32.to_le_bytes());
        fs::write(&path, &data).unwrap();
        let error = Wal::open(&dir, opts()).unwrap_err().to_string();
        assert!(error.contains("version 99"), "{error}");
    }

    #[test]
    fn a_missing_segment_in_the_middle_is_reported() {
        let dir = tempdir();
        let small = WalOptions {
            segment_bytes_max: 512,
            fsync: false,
            preallocate: true,
            faults: None,
        };
        let (mut wal, _) = Wal::open(&dir, small.clone()).unwrap();
        for i in 1..=40 {
            wal.append(1, &entries(i..=i, 1));
            wal.sync().unwrap();
        }
        drop(wal);
        fs::remove_file(segment_path(&dir, 3)).unwrap();
        let error = Wal::open(&dir, small).unwrap_err().to_string();
        assert!(error.contains("jumps from entry"), "{error}");
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Append `count` entries of `term` to a group, starting `back` entries before its end.
        Append {
            group: u64,
            back: u64,
            count: u64,
            term: u64,
        },
        HardState {
            group: u64,
            commit: u64,
        },
        /// A snapshot `back` entries before the group's end.
        Snapshot {
            group: u64,
            back: u64,
            discard_later: bool,
        },
        /// The node stops hosting a group (it may host it again later, afresh).
        Remove {
            group: u64,
        },
        Sync,
        Purge,
        /// Crash: unsynced records are lost; the log is opened again.
        Reopen,
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (1u64..4, 0u64..4, 1u64..6, 1u64..5)
                .prop_map(|(group, back, count, term)| Op::Append { group, back, count, term }),
            2 => (1u64..4, 0u64..50).prop_map(|(group, commit)| Op::HardState { group, commit }),
            2 => (1u64..4, 0u64..6, proptest::bool::weighted(0.2))
                .prop_map(|(group, back, discard_later)| Op::Snapshot { group, back, discard_later }),
            1 => (1u64..4).prop_map(|group| Op::Remove { group }),
            4 => Just(Op::Sync),
            1 => Just(Op::Purge),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// The log against a model of what each group persisted: after every reopen, each
        /// group is exactly what had been synced, however segments rolled over and were purged.
        #[test]
        fn reopening_gives_back_exactly_what_was_synced(ops in proptest::collection::vec(arb_op(), 1..120)) {
            let dir = tempdir();
            let small = WalOptions { segment_bytes_max: 600, fsync: false, preallocate: true, faults: None };
            let (mut wal, _) = Wal::open(&dir, small.clone()).unwrap();
            let mut model: BTreeMap<GroupId, GroupLog> = BTreeMap::new();
            let mut synced = model.clone();
            for op in ops {
                match op {
                    Op::Append { group, back, count, term } => {
                        let g = model.entry(group).or_default();
                        let last = g.snapshot.index + g.entries.len() as u64;
                        let first = last.saturating_sub(back).max(g.snapshot.index) + 1;
                        let new = entries(first..=first + count - 1, term);
                        g.entries.truncate((first - g.snapshot.index - 1) as usize);
                        g.entries.extend(new.iter().cloned());
                        wal.append(group, &new);
                    }
                    Op::HardState { group, commit } => {
                        let state = HardState { term: 1, vote: None, commit };
                        model.entry(group).or_default().hard_state = state;
                        wal.set_hard_state(group, state);
                    }
                    Op::Snapshot { group, back, discard_later } => {
                        let g = model.entry(group).or_default();
                        let last = g.snapshot.index + g.entries.len() as u64;
                        let at = last.saturating_sub(back).max(g.snapshot.index);
                        let meta = snapshot(at, 1);
                        let keep = (at - g.snapshot.index) as usize;
                        g.entries = if discard_later { Vec::new() } else { g.entries.split_off(keep) };
                        g.snapshot = meta.clone();
                        wal.set_snapshot(group, &meta, discard_later);
                    }
                    Op::Remove { group } => {
                        model.remove(&group);
                        wal.remove_group(group);
                    }
                    Op::Sync => {
                        wal.sync().unwrap();
                        synced = model.clone();
                    }
                    Op::Purge => {
                        wal.purge().unwrap();
                        synced = model.clone(); // purge syncs first
                    }
                    Op::Reopen => {
                        drop(wal);
                        let (reopened, logs) = Wal::open(&dir, small.clone()).unwrap();
                        wal = reopened;
                        model = synced.clone();
                        let expected: BTreeMap<GroupId, GroupLog> = model.clone();
                        prop_assert_eq!(logs, expected);
                    }
                }
            }
            let _ = fs::remove_dir_all(&dir);
        }
    }

    fn files(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    fn tempdir() -> crate::test_dir::TestDir {
        crate::test_dir::TestDir::new("wal-test")
    }
}
