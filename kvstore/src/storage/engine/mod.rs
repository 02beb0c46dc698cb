//! The engine: one data directory, its in-memory ordered index, reads, scans, views, the
//! syncer (group commit) and the maintenance thread. The write path is in `group.rs`,
//! compaction in `compact.rs`, recovery in `recover.rs`.
//!
//! Concurrency, in one paragraph: writes are serialized by the `writer` mutex (one append
//! position), which is also what makes a [`Txn`] atomic and isolated. The index and the table of
//! open segment files live together under the `state` read-write lock; readers hold it only long
//! enough to copy a location, then read the value with a positional read outside the lock.
//! Lock order is always `writer` before `state`. Durability is tracked by version: the syncer
//! thread fsyncs the active segment and publishes the highest version known to be on disk, so
//! all writers waiting at that moment share one fsync (group commit). An engine configured to
//! hold appends (`Config::write_buffer_bytes`) keeps the end of its active segment in memory
//! (`State::tail`, beside the index that points into it) and writes it in pieces, at the latest
//! at every sync: see `docs/storage-format.md`, section 6.
//!
//! The recovery rule that makes compaction simple: for each key, the record with the highest
//! version wins, whichever file it is in. Segment order therefore does not matter, and a crash
//! that leaves both a compaction's output and its inputs on disk loses nothing.

use std::collections::{btree_map, BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;

use super::clock::Clock;
use super::error::{Result, StorageError};
use super::fault::IoOp;
use super::record::{self, Record, RecordKind, RecordLimits, BATCH_CONTINUES};
use super::segment::{self, HintEntry, SEGMENT_HEADER_BYTES};
use super::{Config, FsyncPolicy, Maintenance};

mod background;
mod compact;
mod group;
mod key;
mod recover;
pub use background::Background;
use compact::finish_interrupted_compaction;
pub use group::{Group, Savepoint, Txn};
use key::IndexKey;
use recover::recover;

/// Name of the file that records the data directory's format version.
pub const FORMAT_FILE: &str = "KVSTORE_FORMAT";
/// The storage format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
const LOCK_FILE: &str = "LOCK";
/// Lists the segments a finished compaction replaced; see [`Engine::compact`].
const COMPACTION_MARKER: &str = "COMPACTION_DONE";
/// Records whose liveness compaction checks per hold of the index's read lock: small, so that
/// a write waiting to publish (which needs the write lock) waits microseconds, not milliseconds.
const COMPACTION_CHUNK_RECORDS: usize = 64;
/// Expired keys removed per hold of the index's write lock.
const PURGE_CHUNK_KEYS: usize = 1000;

/// Where [`Inner::lookup`] found a key.
enum Lookup<R> {
    Missing,
    /// The value was in the index and has been handed to the caller's closure.
    Inline(R),
    /// Not kept inline: to be read from where `Source` says.
    OnDisk(IndexEntry, Source),
}

/// A value read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value {
    pub value: Bytes,
    /// The version of the write that stored this value.
    pub version: u64,
    /// When the value expires, in milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
}

/// One key and its value (or only its version and expiry when a scan asked for keys only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanEntry {
    pub key: Bytes,
    pub value: Option<Bytes>,
    pub version: u64,
    pub expires_at_ms: Option<u64>,
}

/// What a write produced: the version it wrote with, or `None` if it changed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub version: Option<u64>,
}

/// Figures about the engine, for `/metrics` and `/status`.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub keys: u64,
    pub segments: u64,
    pub disk_bytes: u64,
    pub live_bytes: u64,
    pub last_version: u64,
    pub durable_version: u64,
    pub compactions: u64,
    pub compaction_bytes_reclaimed: u64,
    pub fsyncs: u64,
    pub expired_purged: u64,
}

/// The engine's entries as of one instant; see [`Engine::view`].
pub struct View {
    engine: Engine,
    entries: Vec<(Bytes, IndexEntry, Source)>,
}

impl View {
    /// How many entries the view holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in key order, each value read (and its checksum checked) as it comes.
    pub fn entries(&self) -> impl Iterator<Item = Result<ScanEntry>> + '_ {
        (0..self.entries.len()).map(|i| self.entry(i))
    }

    /// One entry of the view, by key.
    pub fn get(&self, key: &[u8]) -> Result<Option<ScanEntry>> {
        match self.entries.binary_search_by(|(k, _, _)| k[..].cmp(key)) {
            Ok(i) => self.entry(i).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn entry(&self, i: usize) -> Result<ScanEntry> {
        let (key, entry, source) = &self.entries[i];
        let value = match &entry.inline {
            Some(inline) => inline.clone(),
            None => self.engine.inner.read_value(source, entry.at, key)?,
        };
        Ok(ScanEntry {
            key: key.clone(),
            value: Some(value),
            version: entry.version,
            expires_at_ms: (entry.expires_at_ms != 0).then_some(entry.expires_at_ms),
        })
    }
}

/// What one compaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactionReport {
    pub segments_in: usize,
    pub segments_out: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub records_kept: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Location {
    segment: u64,
    offset: u64,
    len: u32,
}

#[derive(Debug, Clone)]
struct IndexEntry {
    at: Location,
    version: u64,
    /// 0 means the value never expires.
    expires_at_ms: u64,
    /// The value itself, when it is at most `inline_value_bytes_max` bytes: reading it then
    /// costs no disk read. Always a copy of the record at `at`.
    inline: Option<Bytes>,
}

impl IndexEntry {
    fn expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= now_ms
    }

    /// Like `expired`, but reads the clock only for entries that can expire: most have no TTL,
    /// and a clock read is not free (on some virtual machines it costs more than the lookup).
    fn expired_by(&self, clock: &dyn Clock) -> bool {
        self.expires_at_ms != 0 && self.expires_at_ms <= clock.now_ms()
    }

    /// Expired as of `now`, or of the clock when `now` is `None`.
    fn expired_at(&self, now: Option<u64>, clock: &dyn Clock) -> bool {
        match now {
            Some(now) => self.expired(now),
            None => self.expired_by(clock),
        }
    }
}

#[derive(Debug)]
struct SegmentInfo {
    file: Arc<File>,
    /// Bytes in the file (header included).
    total_bytes: u64,
    /// Bytes of records the index still points at.
    live_bytes: u64,
    has_hint: bool,
}

#[derive(Debug, Default)]
struct State {
    index: BTreeMap<IndexKey, IndexEntry>,
    /// The keys that have a TTL, ordered by deadline: active expiry walks this from the front,
    /// so it never looks at the (usually far more numerous) keys without one.
    expiring: BTreeSet<(u64, IndexKey)>,
    segments: BTreeMap<u64, SegmentInfo>,
    /// Records appended to the active segment but not written to its file yet
    /// (`Config::write_buffer_bytes`); the index may point into them.
    tail: Tail,
}

/// The end of the active segment while it is held in memory: `bytes` belong at offset `base`
/// of segment `segment`, whose file holds everything before `base`.
#[derive(Debug, Default)]
struct Tail {
    segment: u64,
    base: u64,
    bytes: Vec<u8>,
}

/// Where a value that is not inline is read from: its segment's file, or a copy of its
/// record taken from the tail (the tail may be written out and dropped before it is read).
enum Source {
    File(Arc<File>),
    Held(Bytes),
}

impl State {
    fn insert(&mut self, key: IndexKey, entry: IndexEntry) {
        let at = entry.at;
        let expires = entry.expires_at_ms;
        if expires != 0 {
            self.expiring.insert((expires, key.clone()));
        }
        // One search: the entry API gives the old entry and keeps the key at hand.
        let old = match self.index.entry(key) {
            btree_map::Entry::Vacant(slot) => {
                slot.insert(entry);
                None
            }
            btree_map::Entry::Occupied(mut slot) => {
                let old = slot.insert(entry);
                if old.expires_at_ms != 0 && old.expires_at_ms != expires {
                    self.expiring
                        .remove(&(old.expires_at_ms, slot.key().clone()));
                }
                Some(old)
            }
        };
        if let Some(old) = old {
            self.release(old.at);
        }
        if let Some(seg) = self.segments.get_mut(&at.segment) {
            seg.live_bytes += u64::from(at.len);
        }
    }

    fn remove(&mut self, key: &[u8]) {
        if let Some(old) = self.index.remove(key) {
            self.release(old.at);
            if old.expires_at_ms != 0 {
                self.expiring.remove(&(old.expires_at_ms, key.into()));
            }
        }
    }

    fn remove_range(&mut self, start: &[u8], end: &[u8], below_version: u64) {
        let doomed: Vec<IndexKey> = self
            .index
            .range::<[u8], _>(range_bounds(start, end))
            .filter(|(_, e)| e.version < below_version)
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.remove(&key);
        }
    }

    /// Where the record `at` points to can be read: a copy of it if it is still in the tail,
    /// else its segment's file.
    fn source_of(&self, dir: &Path, at: Location) -> Result<Source> {
        let t = &self.tail;
        if at.segment == t.segment && at.offset >= t.base {
            let start = (at.offset - t.base) as usize;
            return match t.bytes.get(start..start + at.len as usize) {
                Some(record) => Ok(Source::Held(Bytes::copy_from_slice(record))),
                None => Err(StorageError::Corrupt {
                    path: segment::segment_path(dir, at.segment),
                    offset: at.offset,
                    reason: "the index points past the end of the segment (a bug)".into(),
                }),
            };
        }
        self.file_of(dir, at).map(Source::File)
    }

    /// The open file of the segment `at` points into. The index never points at a segment
    /// that is not open; if it did, this reports it instead of panicking.
    fn file_of(&self, dir: &Path, at: Location) -> Result<Arc<File>> {
        match self.segments.get(&at.segment) {
            Some(segment) => Ok(segment.file.clone()),
            None => Err(StorageError::Corrupt {
                path: segment::segment_path(dir, at.segment),
                offset: at.offset,
                reason: "the index points into a segment that is not open (a bug)".into(),
            }),
        }
    }

    fn release(&mut self, at: Location) {
        if let Some(seg) = self.segments.get_mut(&at.segment) {
            seg.live_bytes = seg.live_bytes.saturating_sub(u64::from(at.len));
        }
    }
}

/// An owned key range `[start, end)`; an empty `end` means "to the end".
type KeyRange = (Box<[u8]>, Box<[u8]>);

/// `[start, end)`, where an empty `end` means "to the end of the keyspace".
/// An inverted range (`start >= end`) is empty rather than an error.
fn range_bounds<'a>(start: &'a [u8], end: &'a [u8]) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    if !end.is_empty() && start >= end {
        // `BTreeMap::range` panics on inverted bounds; this pair is valid and selects nothing.
        return (Bound::Excluded(start), Bound::Included(start));
    }
    let upper = if end.is_empty() {
        Bound::Unbounded
    } else {
        Bound::Excluded(end)
    };
    (Bound::Included(start), upper)
}

#[derive(Debug)]
struct Writer {
    segment: u64,
    file: Arc<File>,
    /// The segment's length, the tail held in memory included.
    len: u64,
    last_version: u64,
    buf: Vec<u8>,
    /// Bytes of the tail (`State::tail`) not written to `file` yet.
    held: usize,
}

/// What the syncer publishes to async waiters.
#[derive(Debug, Clone, Copy)]
struct Durability {
    version: u64,
    failed: bool,
}

#[derive(Debug, Default)]
struct SyncState {
    requested: u64,
    durable: u64,
    failed: Option<String>,
    shutdown: bool,
}

struct Inner {
    dir: PathBuf,
    config: Config,
    clock: Arc<dyn Clock>,
    limits: RecordLimits,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    /// The highest version appended (not necessarily durable). Updated under `writer`.
    appended: AtomicU64,
    /// The active segment's file, for the syncer (which must not take `writer`).
    active_file: Mutex<(u64, Arc<File>)>,
    sync: Mutex<SyncState>,
    sync_cv: Condvar,
    /// The durable version, and whether syncing has failed (waiters must wake up either way).
    durable_tx: tokio::sync::watch::Sender<Durability>,
    next_segment_id: AtomicU64,
    compaction: Mutex<()>,
    /// Set after a failure that leaves the files in a state we cannot trust (a failed fsync, a
    /// failed rollback of a partial append, a compaction that failed after its marker). Writes
    /// and compactions are refused until a restart re-reads the log. A leaf lock: nothing else
    /// is ever acquired while it is held.
    poison: Mutex<Option<String>>,
    counters: Counters,
    _lock: File,
}

#[derive(Debug, Default)]
struct Counters {
    compactions: AtomicU64,
    compaction_bytes_reclaimed: AtomicU64,
    fsyncs: AtomicU64,
    expired_purged: AtomicU64,
}

/// Stops and joins the background threads when the last [`Engine`] handle is dropped.
struct Threads {
    inner: Arc<Inner>,
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Threads {
    fn drop(&mut self) {
        {
            let mut s = self.inner.sync.lock().expect("sync lock");
            s.shutdown = true;
        }
        self.inner.sync_cv.notify_all();
        for handle in self.handles.drain(..) {
            let _ = handle.join();
        }
        // A clean close makes everything written so far durable, whatever the fsync policy.
        if let Err(error) = self.inner.sync_now() {
            tracing::error!(%error, "final fsync on close failed");
        }
    }
}

/// A handle to an open data directory. Cheap to clone; the directory is closed (background
/// threads stopped, everything fsynced) when the last handle is dropped.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
    _threads: Arc<Threads>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens (or creates) the data directory `dir`, recovering its contents from the log.
    pub fn open(dir: impl AsRef<Path>, config: Config, clock: Arc<dyn Clock>) -> Result<Engine> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(StorageError::io("creating", &dir))?;
        let lock = lock_dir(&dir)?;
        check_format(&dir)?;
        finish_interrupted_compaction(&dir)?;
        remove_temporary_files(&dir)?;

        if config.key_bytes_max > record::KEY_BYTES_LIMIT
            || config.value_bytes_max > record::VALUE_BYTES_LIMIT
        {
            return Err(StorageError::InvalidConfig(format!(
                "key_bytes_max ({}) and value_bytes_max ({}) may not exceed the format's limits \
                 of {} and {} bytes",
                config.key_bytes_max,
                config.value_bytes_max,
                record::KEY_BYTES_LIMIT,
                record::VALUE_BYTES_LIMIT
            )));
        }
        // Records are decoded against the format's limits, not the configured ones: lowering a
        // configured limit must not make records written under a higher one unreadable.
        let limits = RecordLimits::FORMAT;
        let started = std::time::Instant::now();
        // Time 0 keeps every expired record: see `Config::expire_locally`.
        let now = if config.expire_locally {
            clock.now_ms()
        } else {
            0
        };
        let recovered = recover(&dir, limits, now, config.inline_value_bytes_max)?;
        let (segment, file, len) = match recovered.reusable_tail {
            Some((segment, len)) => (
                segment,
                recovered.state.segments[&segment].file.clone(),
                len,
            ),
            None => {
                let id = recovered.next_segment_id;
                (
                    id,
                    Arc::new(segment::create_segment(&dir, id)?),
                    SEGMENT_HEADER_BYTES,
                )
            }
        };
        let active_file = file.clone();
        let writer = Writer {
            segment,
            file,
            len,
            last_version: recovered.last_version,
            buf: Vec::new(),
            held: 0,
        };
        let mut state = recovered.state;
        state.tail = Tail {
            segment,
            base: len,
            bytes: Vec::new(),
        };
        state
            .segments
            .entry(writer.segment)
            .or_insert_with(|| SegmentInfo {
                file: active_file.clone(),
                total_bytes: SEGMENT_HEADER_BYTES,
                live_bytes: 0,
                has_hint: false,
            });
        let next_segment_id = state.segments.keys().next_back().map_or(1, |id| id + 1);
        tracing::info!(
            dir = %dir.display(),
            keys = state.index.len(),
            segments = state.segments.len(),
            last_version = recovered.last_version,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "storage recovered"
        );

        let last_version = recovered.last_version;
        let (durable_tx, _) = tokio::sync::watch::channel(Durability {
            version: last_version,
            failed: false,
        });
        let inner = Arc::new(Inner {
            dir,
            config,
            clock,
            limits,
            state: RwLock::new(state),
            writer: Mutex::new(writer),
            appended: AtomicU64::new(last_version),
            active_file: Mutex::new((segment, active_file)),
            sync: Mutex::new(SyncState {
                requested: last_version,
                durable: last_version,
                ..SyncState::default()
            }),
            sync_cv: Condvar::new(),
            durable_tx,
            next_segment_id: AtomicU64::new(next_segment_id),
            compaction: Mutex::new(()),
            poison: Mutex::new(None),
            counters: Counters::default(),
            _lock: lock,
        });

        let mut handles = Vec::new();
        let shared = inner.config.background.clone();
        // Under fsync=always group commit waits on a syncer of the engine's own; the periodic
        // fsync and the maintenance can be left to a pool shared by many engines.
        let own_syncer = match inner.config.fsync {
            FsyncPolicy::Never => false,
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval { .. } => shared.is_none(),
        };
        if own_syncer {
            let syncer = inner.clone();
            handles.push(spawn("kv-syncer", move || syncer.syncer_loop()));
        }
        if inner.config.maintenance == Maintenance::Background && shared.is_none() {
            let maint = inner.clone();
            handles.push(spawn("kv-maintenance", move || maint.maintenance_loop()));
        }
        if let Some(pool) = &shared {
            pool.register(&inner);
        }
        let threads = Arc::new(Threads {
            inner: inner.clone(),
            handles,
        });
        Ok(Engine {
            inner,
            _threads: threads,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The configured limits and policies.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// "Now" according to the engine's clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Reads the current value of `key`; an expired value reads as absent.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        self.inner.get(key, None)
    }

    /// Calls `f` with `key`'s value (`None` if absent or expired) without making a `Value`:
    /// a value kept in the index is lent while the index is read-locked, so `f` must be quick
    /// (copying it into a reply buffer is what this is for).
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        self.inner.get_with(key, f)
    }

    /// Up to `limit` entries with keys in `[start, end)` (`end` empty = no upper bound), in key
    /// order, skipping expired ones. With `keys_only`, values are not read from disk.
    pub fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        keys_only: bool,
    ) -> Result<Vec<ScanEntry>> {
        self.scan_at(start, end, limit, keys_only, Some(self.now_ms()))
    }

    /// [`Engine::scan`] including expired entries: what a replicated state machine's snapshot
    /// holds (see [`Config::expire_locally`]).
    pub fn scan_all(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<ScanEntry>> {
        self.scan_at(start, end, limit, false, None)
    }

    /// Entries live at `now`, or every entry when `now` is `None`.
    fn scan_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        keys_only: bool,
        now: Option<u64>,
    ) -> Result<Vec<ScanEntry>> {
        let picked: Vec<(Bytes, IndexEntry, Option<Source>)> = {
            let state = self.inner.state.read().expect("state lock");
            state
                .index
                .range::<[u8], _>(range_bounds(start, end))
                .filter(|(_, e)| now.is_none_or(|now| !e.expired(now)))
                .take(limit)
                .map(|(k, e)| {
                    let source = match keys_only || e.inline.is_some() {
                        true => None,
                        false => Some(state.source_of(&self.inner.dir, e.at)?),
                    };
                    Ok((Bytes::copy_from_slice(k), e.clone(), source))
                })
                .collect::<Result<_>>()?
        };
        picked
            .into_iter()
            .map(|(key, entry, source)| {
                // No source: keys only, or the value is inline.
                let value = match (keys_only, source) {
                    (true, _) => None,
                    (false, Some(source)) => Some(self.inner.read_value(&source, entry.at, &key)?),
                    (false, None) => entry.inline.clone(),
                };
                Ok(ScanEntry {
                    key,
                    value,
                    version: entry.version,
                    expires_at_ms: (entry.expires_at_ms != 0).then_some(entry.expires_at_ms),
                })
            })
            .collect()
    }

    /// Every entry (expired ones included) as of one instant: a consistent cut, since a write
    /// group is published in the index whole, under the lock this takes. Taking it costs one
    /// pass over the index under its read lock; values on disk are read only as the view is
    /// walked, from the files as they were (an open file stays readable after a compaction
    /// removes it), so walking a large view holds up no writer. What a replicated state
    /// machine builds its snapshots from, off the thread that applies the log.
    pub fn view(&self) -> Result<View> {
        let state = self.inner.state.read().expect("state lock");
        let entries = state
            .index
            .iter()
            .map(|(k, e)| {
                let source = state.source_of(&self.inner.dir, e.at)?;
                Ok((Bytes::copy_from_slice(k), e.clone(), source))
            })
            .collect::<Result<_>>()?;
        Ok(View {
            engine: self.clone(),
            entries,
        })
    }

    /// Counts the live keys in `[start, end)`.
    pub fn count(&self, start: &[u8], end: &[u8]) -> u64 {
        let now = self.now_ms();
        let state = self.inner.state.read().expect("state lock");
        state
            .index
            .range::<[u8], _>(range_bounds(start, end))
            .filter(|(_, e)| !e.expired(now))
            .count() as u64
    }

    /// Runs `f` as one atomic, isolated transaction and appends what it staged as one batch.
    ///
    /// `f` sees the store as of the start of the transaction plus its own staged writes; no other
    /// write runs concurrently. If `f` returns an error, nothing is written. `version` is the
    /// version to write with (it must be above every earlier version; a replicated log passes its
    /// entry index) or `None` to take the next one. The write is in the OS page cache when this
    /// returns; see [`Engine::wait_durable`] for the disk.
    pub fn write<R, E: From<StorageError>>(
        &self,
        version: Option<u64>,
        f: impl FnOnce(&mut Txn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<(R, Written), E> {
        let (result, _) = self
            .inner
            .write_group(None, |group| group.txn(version, f))?;
        result
    }

    /// Runs `f` with a [`Group`]: any number of transactions, each with its own version and
    /// each atomic, appended together with one write when `f` returns and published in the
    /// index only then. A server runs the writes of one pipelined batch this way, so the batch
    /// costs one system call instead of one per write. If that write fails, every transaction
    /// of the group fails (none is visible) and the results `f` computed must be discarded.
    pub fn write_group<R>(&self, f: impl FnOnce(&mut Group<'_>) -> R) -> Result<(R, Written)> {
        self.inner.write_group(None, f)
    }

    /// [`Engine::write_group`] at a given time instead of the clock's: deadlines computed and
    /// expiry judged inside the group use `now_ms`. A replicated state machine passes the time
    /// its log entry carries, so every replica computes the same result.
    pub fn write_group_at<R>(
        &self,
        now_ms: u64,
        f: impl FnOnce(&mut Group<'_>) -> R,
    ) -> Result<(R, Written)> {
        self.inner.write_group(Some(now_ms), f)
    }

    /// Blocks until the write with `version` is on disk under the `always` policy; returns at
    /// once under the other policies.
    pub fn wait_durable(&self, version: u64) -> Result<()> {
        if !matches!(self.inner.config.fsync, FsyncPolicy::Always) {
            return Ok(());
        }
        let mut s = self.inner.sync.lock().expect("sync lock");
        loop {
            if let Some(reason) = &s.failed {
                return Err(StorageError::Poisoned {
                    reason: reason.clone(),
                });
            }
            if s.durable >= version {
                return Ok(());
            }
            s = self.inner.sync_cv.wait(s).expect("sync lock");
        }
    }

    /// Async form of [`Engine::wait_durable`], for the server's tasks.
    pub async fn wait_durable_async(&self, version: u64) -> Result<()> {
        if !matches!(self.inner.config.fsync, FsyncPolicy::Always) {
            return Ok(());
        }
        let mut rx = self.inner.durable_tx.subscribe();
        let waited = rx
            .wait_for(|d| d.version >= version || d.failed)
            .await
            .map(|_| ());
        let failed = self.inner.sync.lock().expect("sync lock").failed.clone();
        match (waited, failed) {
            (_, Some(reason)) => Err(StorageError::Poisoned { reason }),
            (Ok(()), None) => Ok(()),
            (Err(_), None) => Err(StorageError::Poisoned {
                reason: "engine closed".into(),
            }),
        }
    }

    /// Makes every write so far durable now, whatever the policy.
    pub fn sync(&self) -> Result<()> {
        self.inner.sync_now()
    }

    /// Removes expired keys from the index (their records go at the next compaction).
    pub fn purge_expired(&self) -> usize {
        self.inner.purge_expired()
    }

    /// Rewrites every sealed segment's live records into new segments and deletes the old ones.
    /// Reads and writes continue meanwhile. See `docs/storage-format.md` for the crash argument.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.inner.compact()
    }

    /// Writes hint files for sealed segments that lack one.
    pub fn write_missing_hints(&self) -> Result<usize> {
        self.inner.write_missing_hints()
    }

    /// Current figures.
    pub fn stats(&self) -> Stats {
        let state = self.inner.state.read().expect("state lock");
        let c = &self.inner.counters;
        Stats {
            keys: state.index.len() as u64,
            segments: state.segments.len() as u64,
            disk_bytes: state.segments.values().map(|s| s.total_bytes).sum(),
            live_bytes: state.segments.values().map(|s| s.live_bytes).sum(),
            last_version: self.inner.appended.load(Ordering::SeqCst),
            durable_version: self.inner.durable_tx.borrow().version,
            compactions: c.compactions.load(Ordering::Relaxed),
            compaction_bytes_reclaimed: c.compaction_bytes_reclaimed.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            expired_purged: c.expired_purged.load(Ordering::Relaxed),
        }
    }
}

impl Inner {
    fn poison(&self, reason: String) {
        tracing::error!(%reason, "storage engine poisoned: refusing writes until restart");
        let mut p = self.poison.lock().expect("poison lock");
        p.get_or_insert(reason);
    }

    /// Asks the configured fault injector, if any, whether `op` on `path` fails.
    fn fault(&self, op: IoOp, path: &Path) -> std::io::Result<()> {
        match &self.config.faults {
            Some(faults) => faults.before(op, path),
            None => Ok(()),
        }
    }

    fn check_poison(&self) -> Result<()> {
        match &*self.poison.lock().expect("poison lock") {
            Some(reason) => Err(StorageError::Poisoned {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// The version of `key`'s live value, from the index alone (no disk read).
    /// `now` is the time expiry is judged at: a transaction's own time, or `None` for the
    /// clock's.
    pub(super) fn version_of(&self, key: &[u8], now: Option<u64>) -> Option<u64> {
        let state = self.state.read().expect("state lock");
        let entry = state.index.get(key)?;
        (!entry.expired_at(now, &*self.clock)).then_some(entry.version)
    }

    pub(super) fn get(&self, key: &[u8], now: Option<u64>) -> Result<Option<Value>> {
        let value = |value: Bytes, entry: &IndexEntry| Value {
            value,
            version: entry.version,
            expires_at_ms: (entry.expires_at_ms != 0).then_some(entry.expires_at_ms),
        };
        // A copy, not a clone: cloning would bump a reference count that every reader of
        // this key shares, and readers on other cores would fight over its cache line. A copy
        // of at most `inline_value_bytes_max` bytes touches only this thread's memory.
        match self.lookup(key, now, |v, entry| value(Bytes::copy_from_slice(v), entry))? {
            Lookup::Missing => Ok(None),
            Lookup::Inline(found) => Ok(Some(found)),
            Lookup::OnDisk(entry, source) => Ok(Some(value(
                self.read_value(&source, entry.at, key)?,
                &entry,
            ))),
        }
    }

    fn get_with<R>(&self, key: &[u8], f: impl FnOnce(Option<&[u8]>) -> R) -> Result<R> {
        let mut f = Some(f);
        let mut call = |v: Option<&[u8]>| (f.take().expect("called once"))(v);
        Ok(match self.lookup(key, None, |v, _| call(Some(v)))? {
            Lookup::Missing => call(None),
            Lookup::Inline(r) => r,
            Lookup::OnDisk(entry, source) => call(Some(&self.read_value(&source, entry.at, key)?)),
        })
    }

    /// Finds `key`'s live entry. An inline value is handed to `inline` while the index lock is
    /// held (so the caller can copy it without a reference count); an entry whose value is
    /// on disk comes back with its segment file, to be read after the lock is released.
    fn lookup<R>(
        &self,
        key: &[u8],
        now: Option<u64>,
        inline: impl FnOnce(&[u8], &IndexEntry) -> R,
    ) -> Result<Lookup<R>> {
        let state = self.state.read().expect("state lock");
        Ok(match state.index.get(key) {
            Some(e) if !e.expired_at(now, &*self.clock) => match &e.inline {
                Some(value) => Lookup::Inline(inline(value, e)),
                None => Lookup::OnDisk(e.clone(), state.source_of(&self.dir, e.at)?),
            },
            _ => Lookup::Missing,
        })
    }

    /// Reads and verifies the record at `at`; checksums are checked on every read, not only
    /// at recovery, so a bit flipped on disk is reported instead of returned.
    fn read_value(&self, source: &Source, at: Location, key: &[u8]) -> Result<Bytes> {
        let path = || segment::segment_path(&self.dir, at.segment);
        let buf = match source {
            Source::File(file) => {
                let mut buf = vec![0u8; at.len as usize];
                self.fault(IoOp::Read, &path())
                    .and_then(|()| file.read_exact_at(&mut buf, at.offset))
                    .map_err(|source| StorageError::Io {
                        action: "reading",
                        path: path(),
                        source,
                    })?;
                Bytes::from(buf)
            }
            Source::Held(record) => record.clone(),
        };
        let rec = record::decode(&buf, self.limits).map_err(|e| StorageError::Corrupt {
            path: path(),
            offset: at.offset,
            reason: e.to_string(),
        })?;
        if rec.key != key || rec.kind != RecordKind::Put {
            return Err(StorageError::Corrupt {
                path: path(),
                offset: at.offset,
                reason: "index points at a record for another key".into(),
            });
        }
        let start = record::RECORD_HEADER_BYTES + key.len();
        Ok(buf.slice(start..))
    }

    /// Whether appends are held in memory before they are written (`write_buffer_bytes`).
    pub(super) fn holds_writes(&self) -> bool {
        self.config.write_buffer_bytes > 0 && !matches!(self.config.fsync, FsyncPolicy::Always)
    }

    /// Writes the tail held in memory to the active segment's file, with one write, and drops
    /// it. Readers go on meanwhile: the tail stays readable until the file has it. A failed
    /// write keeps the tail (the next attempt writes it again, from the same offset) and
    /// trims whatever part of it reached the file, or poisons the engine if it cannot.
    /// `release`: also give back the tail's memory (at a sync, which is how a group that
    /// stopped writing lets go of it; a busy one keeps its buffer for the next appends).
    pub(super) fn write_held(&self, w: &mut Writer, release: bool) -> Result<()> {
        if w.held == 0 {
            if release && self.state.read().expect("state lock").tail.bytes.capacity() > 0 {
                self.state.write().expect("state lock").tail.bytes = Vec::new();
            }
            return Ok(());
        }
        let path = segment::segment_path(&self.dir, w.segment);
        let base = {
            let state = self.state.read().expect("state lock");
            let t = &state.tail;
            debug_assert_eq!((t.segment, t.bytes.len()), (w.segment, w.held));
            let written = self
                .fault(IoOp::Append, &path)
                .and_then(|()| w.file.write_all_at(&t.bytes, t.base));
            if let Err(source) = written {
                if let Err(e) = w.file.set_len(t.base) {
                    self.poison(format!(
                        "writing held records failed ({source}) and trimming failed ({e})"
                    ));
                }
                return Err(StorageError::Io {
                    action: "appending to",
                    path,
                    source,
                });
            }
            t.base
        };
        let mut state = self.state.write().expect("state lock");
        state.tail.base = base + w.held as u64;
        match release {
            true => state.tail.bytes = Vec::new(),
            false => state.tail.bytes.clear(),
        }
        w.held = 0;
        Ok(())
    }

    /// Seals the active segment (fsync) and starts a new one.
    fn rotate(&self, w: &mut Writer) -> Result<()> {
        self.write_held(w, false)?;
        let old = segment::segment_path(&self.dir, w.segment);
        if let Err(e) = self
            .fault(IoOp::Sync, &old)
            .and_then(|()| w.file.sync_data())
        {
            self.fail_sync(format!(
                "fsync of sealed segment {} failed: {e}",
                old.display()
            ));
            return Err(StorageError::Io {
                action: "syncing",
                path: old,
                source: e,
            });
        }
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        let id = self.next_segment_id.fetch_add(1, Ordering::SeqCst);
        let path = segment::segment_path(&self.dir, id);
        self.fault(IoOp::Create, &path)
            .map_err(StorageError::io("creating segment", &path))?;
        let file = Arc::new(segment::create_segment(&self.dir, id)?);
        {
            let mut state = self.state.write().expect("state lock");
            state.segments.insert(
                id,
                SegmentInfo {
                    file: file.clone(),
                    total_bytes: SEGMENT_HEADER_BYTES,
                    live_bytes: 0,
                    has_hint: false,
                },
            );
            state.tail = Tail {
                segment: id,
                base: SEGMENT_HEADER_BYTES,
                bytes: std::mem::take(&mut state.tail.bytes),
            };
        }
        *self.active_file.lock().expect("active file lock") = (id, file.clone());
        w.segment = id;
        w.file = file;
        w.len = SEGMENT_HEADER_BYTES;
        Ok(())
    }

    /// After a failed fsync the page cache may have dropped our dirty pages ("fsyncgate"):
    /// nothing written since the last good fsync can be trusted to reach the disk, and a later
    /// fsync of the same file may report success anyway. So durability stops here for good:
    /// waiters (blocking and async) are woken with an error, the syncer stops, and the engine
    /// refuses writes until a restart re-reads the log.
    fn fail_sync(&self, reason: String) {
        // Poison first: a waiter woken by the failure must find writes already refused.
        self.poison(reason.clone());
        let mut s = self.sync.lock().expect("sync lock");
        s.failed.get_or_insert(reason);
        let version = s.durable;
        self.durable_tx.send_replace(Durability {
            version,
            failed: true,
        });
        drop(s);
        self.sync_cv.notify_all();
    }

    fn sync_now(&self) -> Result<()> {
        let target = self.appended.load(Ordering::SeqCst);
        if self.holds_writes() {
            // What is held reaches the file first. (Under `Always`, where a syncer must
            // never wait for the writer, nothing is held.)
            self.write_held(&mut self.writer.lock().expect("writer lock"), true)?;
        }
        let (segment, file) = self.active_file.lock().expect("active file lock").clone();
        let path = segment::segment_path(&self.dir, segment);
        let result = self
            .fault(IoOp::Sync, &path)
            .and_then(|()| file.sync_data());
        self.counters.fsyncs.fetch_add(1, Ordering::Relaxed);
        match &result {
            Ok(()) => {
                let mut s = self.sync.lock().expect("sync lock");
                s.durable = s.durable.max(target);
                let failed = s.failed.is_some();
                self.durable_tx.send_replace(Durability {
                    version: s.durable,
                    failed,
                });
                drop(s);
                self.sync_cv.notify_all();
            }
            Err(e) => self.fail_sync(format!("fsync failed: {e}")),
        }
        result.map_err(StorageError::io(
            "syncing",
            segment::segment_path(&self.dir, segment),
        ))
    }

    fn syncer_loop(&self) {
        let interval = match self.config.fsync {
            FsyncPolicy::Interval { ms } => Some(Duration::from_millis(ms.max(1))),
            _ => None,
        };
        loop {
            {
                let mut s = self.sync.lock().expect("sync lock");
                match interval {
                    None => {
                        while !s.shutdown && s.requested <= s.durable {
                            s = self.sync_cv.wait(s).expect("sync lock");
                        }
                    }
                    Some(every) => {
                        s = self.sync_cv.wait_timeout(s, every).expect("sync lock").0;
                        if !s.shutdown && self.appended.load(Ordering::SeqCst) <= s.durable {
                            continue;
                        }
                    }
                }
                if s.shutdown || s.failed.is_some() {
                    return;
                }
            }
            if let Err(error) = self.sync_now() {
                tracing::error!(%error, "fsync failed; refusing further writes");
            }
        }
    }

    fn maintenance_loop(&self) {
        lower_thread_priority();
        let every = Duration::from_millis(self.config.maintenance_interval_ms.max(10));
        loop {
            // The condition variable is shared with the syncer and signalled on every commit
            // under fsync=always: wait out the whole interval, waking early only to shut down.
            let deadline = std::time::Instant::now() + every;
            {
                let mut s = self.sync.lock().expect("sync lock");
                while !s.shutdown {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    s = self.sync_cv.wait_timeout(s, left).expect("sync lock").0;
                }
                if s.shutdown {
                    return;
                }
            }
            self.maintain_once();
        }
    }

    /// One round of maintenance: expiry, then a compaction if one is due, else hint files.
    fn maintain_once(&self) {
        self.purge_expired();
        // A compaction replaces every sealed segment with outputs that have hints, so when
        // one is due, hints for its inputs would be read, written and deleted for nothing.
        if self.wants_compaction() {
            match self.compact() {
                Ok(report) => tracing::info!(?report, "compaction finished"),
                Err(error) => tracing::error!(%error, "compaction failed"),
            }
        } else if let Err(error) = self.write_missing_hints() {
            tracing::warn!(%error, "writing hint files failed");
        }
    }

    /// The highest version known to be on disk.
    fn durable_version(&self) -> u64 {
        self.sync.lock().expect("sync lock").durable
    }

    fn wants_compaction(&self) -> bool {
        // Only sealed segments count: the active one is not compacted, so its garbage must not
        // trigger a compaction. (Asking the writer lock would fail under load and count it.)
        let active = self.active_file.lock().expect("active file lock").0;
        let state = self.state.read().expect("state lock");
        let (total, live) = state
            .segments
            .iter()
            .filter(|(id, _)| **id != active)
            .fold((0u64, 0u64), |(t, l), (_, s)| {
                (t + s.total_bytes, l + s.live_bytes)
            });
        let dead = total.saturating_sub(live);
        dead >= self.config.compaction_dead_bytes_min
            && dead as f64 >= total as f64 * self.config.compaction_dead_ratio
    }

    /// Removes expired keys from the index, walking only the keys that have a TTL, in chunks
    /// of `PURGE_CHUNK_KEYS` so the write lock is never held for long.
    fn purge_expired(&self) -> usize {
        if !self.config.expire_locally {
            return 0;
        }
        let mut purged = 0;
        loop {
            let now = self.clock.now_ms();
            let mut state = self.state.write().expect("state lock");
            let due: Vec<IndexKey> = state
                .expiring
                .iter()
                .take_while(|(deadline, _)| *deadline <= now)
                .take(PURGE_CHUNK_KEYS)
                .map(|(_, key)| key.clone())
                .collect();
            if due.is_empty() {
                break;
            }
            for key in &due {
                state.remove(key);
            }
            purged += due.len();
        }
        self.counters
            .expired_purged
            .fetch_add(purged as u64, Ordering::Relaxed);
        purged
    }

    fn sealed_segments(&self) -> Vec<(u64, Arc<File>, bool)> {
        let active = self.writer.lock().expect("writer lock").segment;
        let state = self.state.read().expect("state lock");
        state
            .segments
            .iter()
            .filter(|(id, _)| **id != active)
            .map(|(id, s)| (*id, s.file.clone(), s.has_hint))
            .collect()
    }

    fn write_missing_hints(&self) -> Result<usize> {
        let _guard = self.compaction.lock().expect("compaction lock");
        let mut written = 0;
        for (id, file, has_hint) in self.sealed_segments() {
            if has_hint {
                continue;
            }
            let data = recover::read_sealed(&self.dir, id, &file)?;
            let path = segment::segment_path(&self.dir, id);
            let scan = segment::scan(&path, id, &data, self.limits, false)?;
            segment::write_hint(&self.dir, id, data.len() as u64, &scan.entries)?;
            if let Some(seg) = self
                .state
                .write()
                .expect("state lock")
                .segments
                .get_mut(&id)
            {
                seg.has_hint = true;
            }
            written += 1;
        }
        Ok(written)
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(StorageError::io("opening", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StorageError::Locked {
            path: dir.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(StorageError::Io {
            action: "locking",
            path,
            source: e,
        }),
    }
}

fn check_format(dir: &Path) -> Result<()> {
    let path = dir.join(FORMAT_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found = text
                .lines()
                .find_map(|l| l.strip_prefix("format_version="))
                .unwrap_or("(none)")
                .trim()
                .to_string();
            if found != FORMAT_VERSION.to_string() {
                return Err(StorageError::UnsupportedFormat {
                    path: dir.to_path_buf(),
                    found,
                    supported: FORMAT_VERSION,
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !segment::list_segments(dir)?.is_empty() {
                return Err(StorageError::MissingFormatFile {
                    path: dir.to_path_buf(),
                    format_file: FORMAT_FILE,
                });
            }
            let text = format!("kvstore data directory\nformat_version={FORMAT_VERSION}\n");
            write_atomically(dir, FORMAT_FILE, &text)
        }
        Err(e) => Err(StorageError::Io {
            action: "reading",
            path,
            source: e,
        }),
    }
}

/// Writes the small file `name` so that a crash leaves either no file or the whole of it:
/// write a temporary file, fsync it, rename it into place, fsync the directory.
fn write_atomically(dir: &Path, name: &str, text: &str) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        std::io::Write::write_all(&mut f, text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(StorageError::io("writing", &path))?;
    segment::sync_dir(dir)
}

/// Removes `*.tmp` files, and hints whose segment does not exist (left by a compaction that
/// crashed before renaming its output), so a later segment with that id never meets them.
fn remove_temporary_files(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(StorageError::io("listing", dir))? {
        let entry = entry.map_err(StorageError::io("listing", dir))?;
        let name = entry.file_name();
        let name = name.to_str().unwrap_or("");
        let orphan_hint = name
            .strip_suffix(".hint")
            .and_then(|stem| stem.parse::<u64>().ok())
            .is_some_and(|id| !segment::segment_path(dir, id).exists());
        if name.ends_with(".tmp") || orphan_hint {
            let path = entry.path();
            fs::remove_file(&path).map_err(StorageError::io("removing", &path))?;
        }
    }
    Ok(())
}

/// Lets background work (compaction, hint files, expiry) yield the CPU to requests, as
/// RocksDB does for its compaction threads: nice 10 for the calling thread. Best effort.
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    {
        // On Linux, `setpriority(PRIO_PROCESS, 0, ..)` applies to the calling thread only.
        // SAFETY: no pointers are involved; a failure (say, a forbidding policy) is harmless.
        let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
        if result != 0 {
            tracing::debug!("could not lower the maintenance thread's priority");
        }
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(f)
        .expect("spawning a storage thread")
}
