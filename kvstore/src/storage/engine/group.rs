//! The write path: transactions, write groups, and appending them to the log.
//!
//! Every write is a [`Txn`]: it reads, stages puts and deletes, and commits atomically with one
//! version. Transactions run inside a [`Group`], which holds the writer lock: a group may run
//! many transactions, each with its own version, and appends all of them with a single
//! positional write when it ends; only then are they published in the index. A server uses one
//! group per pipelined batch, so a batch of N writes costs one system call instead of N, while
//! each write keeps its own version (compare-and-set stays exact) and its own atomicity.
//! `Engine::write` is simply a group of one transaction.
//!
//! Within a group, a transaction sees the writes of the transactions committed before it in
//! the same group through an *overlay*, exactly as if each had been appended on its own: the
//! result of running a pipeline as a group is the result of running it one write at a time.
//! Other threads see nothing of a group until its append has succeeded, and nothing at all if
//! it fails.

use super::*;

/// A staged point write.
#[derive(Debug, Clone)]
pub(super) enum Staged {
    Put { value: Bytes, expires_at_ms: u64 },
    Delete,
}

/// A transaction's staged point writes: one per key, the last write to a key winning, in the
/// order they were first staged.
///
/// Most transactions stage one or two keys, so a vector searched from the front beats a map
/// (and costs no allocation beyond its own); past [`STAGING_SCAN_MAX`] keys an index by key
/// keeps a large batch linear rather than quadratic.
#[derive(Debug, Default, Clone)]
struct Staging {
    writes: Vec<(IndexKey, Staged)>,
    /// Position of each key in `writes`, once there are too many to search.
    index: Option<BTreeMap<IndexKey, usize>>,
}

/// Staged keys searched one by one; beyond this, [`Staging`] keeps an index.
const STAGING_SCAN_MAX: usize = 16;

impl Staging {
    fn position(&self, key: &[u8]) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.writes.iter().position(|(k, _)| k.as_slice() == key),
        }
    }

    fn get(&self, key: &[u8]) -> Option<&Staged> {
        self.position(key).map(|i| &self.writes[i].1)
    }

    fn insert(&mut self, key: IndexKey, staged: Staged) {
        if let Some(i) = self.position(key.as_slice()) {
            self.writes[i].1 = staged;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(key.clone(), self.writes.len());
        }
        self.writes.push((key, staged));
        if self.index.is_none() && self.writes.len() > STAGING_SCAN_MAX {
            self.reindex();
        }
    }

    /// Drops the writes to keys in `[start, end)`.
    fn remove_range(&mut self, start: &[u8], end: &[u8]) {
        self.writes.retain(|(k, _)| !in_range(k, start, end));
        if self.index.is_some() {
            self.reindex();
        }
    }

    fn reindex(&mut self) {
        let index = self.writes.iter().enumerate();
        self.index = Some(index.map(|(i, (k, _))| (k.clone(), i)).collect());
    }

    fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

/// One effect of a committed transaction, in the order `finish` publishes them.
#[derive(Debug)]
enum Applied {
    Range {
        version: u64,
        range: KeyRange,
    },
    Write {
        version: u64,
        key: IndexKey,
        staged: Staged,
        /// The record's offset and length in the group's buffer.
        at: usize,
        len: usize,
    },
}

/// What the transactions committed earlier in a group did, for the ones after them to see.
/// It points into the group's list of applied writes rather than copying them.
#[derive(Debug, Default)]
struct Overlay {
    /// The latest write per key: its position in the group's `applied`.
    staged: BTreeMap<IndexKey, usize>,
    /// Range deletions; keys staged after a range are in `staged`.
    ranges: Vec<KeyRange>,
}

/// What the overlay says about a key.
enum Seen<'a> {
    Written(&'a Staged, u64),
    Deleted,
    /// The overlay knows nothing: ask the index.
    Unknown,
}

impl Staged {
    /// This write as a reader at `now_ms` sees it: a put whose deadline has passed reads as a
    /// deletion, exactly as the index would judge it once published. Every read inside a
    /// group goes through here, so the answer never depends on which writes happen to share
    /// a group (a replica catching up applies many log entries in one).
    fn as_of(&self, now_ms: u64) -> &Staged {
        match self {
            Staged::Put { expires_at_ms, .. }
                if *expires_at_ms != 0 && *expires_at_ms <= now_ms =>
            {
                &Staged::Delete
            }
            live => live,
        }
    }
}

impl Overlay {
    /// What the group's earlier transactions say about `key` at `now_ms`.
    fn lookup<'a>(&self, applied: &'a [Applied], key: &[u8], now_ms: u64) -> Seen<'a> {
        if let Some(&i) = self.staged.get(key) {
            let Applied::Write {
                staged, version, ..
            } = &applied[i]
            else {
                unreachable!("the overlay points at point writes only");
            };
            return Seen::Written(staged.as_of(now_ms), *version);
        }
        if self.ranges.iter().any(|(s, e)| in_range(key, s, e)) {
            return Seen::Deleted;
        }
        Seen::Unknown
    }
}

/// A transaction in progress; see [`Engine::write`] and [`Group::txn`].
pub struct Txn<'a> {
    inner: &'a Inner,
    version: u64,
    now_ms: u64,
    /// Staged point writes, one per key (the last write to a key in a transaction wins). Keys
    /// are index keys from the start, so a short key is never allocated on the way in.
    staged: Staging,
    /// Staged range deletions, applied before the point writes staged after them.
    ranges: Vec<KeyRange>,
    overlay: &'a Overlay,
    applied: &'a [Applied],
    /// The first read that failed because of this engine's disk, not the request (see
    /// [`Txn::storage_fault`]).
    fault: std::cell::RefCell<Option<String>>,
}

impl Txn<'_> {
    /// Why a read in this transaction failed because of this engine's files (an IO error,
    /// a checksum), if one did. The caller may have turned the error into a reply; a
    /// replicated state machine must instead stop, or this replica would silently skip a
    /// write the others applied.
    pub fn storage_fault(&self) -> Option<String> {
        self.fault.borrow().clone()
    }

    fn note<T>(&self, result: Result<T>) -> Result<T> {
        if let Err(e) = &result {
            if !e.is_deterministic() {
                self.fault.borrow_mut().get_or_insert_with(|| e.to_string());
            }
        }
        result
    }

    /// The version this transaction writes with.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// "Now" for this transaction, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Reads `key` as this transaction sees it. A write it staged reports this transaction's
    /// version.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value>> {
        let written = |staged: &Staged, version| match staged {
            Staged::Put {
                value,
                expires_at_ms,
            } => Some(Value {
                value: value.clone(),
                version,
                expires_at_ms: (*expires_at_ms != 0).then_some(*expires_at_ms),
            }),
            Staged::Delete => None,
        };
        if let Some(staged) = self.staged.get(key) {
            return Ok(written(staged.as_of(self.now_ms), self.version));
        }
        if self.ranges.iter().any(|(s, e)| in_range(key, s, e)) {
            return Ok(None);
        }
        match self.overlay.lookup(self.applied, key, self.now_ms) {
            Seen::Written(staged, version) => Ok(written(staged, version)),
            Seen::Deleted => Ok(None),
            Seen::Unknown => self.note(self.inner.get(key, Some(self.now_ms))),
        }
    }

    /// The version of `key` as this transaction sees it, without reading the value: what a
    /// condition needs.
    pub fn version_of(&self, key: &[u8]) -> Option<u64> {
        let version = |staged: &Staged, version| match staged {
            Staged::Put { .. } => Some(version),
            Staged::Delete => None,
        };
        if let Some(staged) = self.staged.get(key) {
            return version(staged.as_of(self.now_ms), self.version);
        }
        if self.ranges.iter().any(|(s, e)| in_range(key, s, e)) {
            return None;
        }
        match self.overlay.lookup(self.applied, key, self.now_ms) {
            Seen::Written(staged, v) => version(staged, v),
            Seen::Deleted => None,
            Seen::Unknown => self.inner.version_of(key, Some(self.now_ms)),
        }
    }

    /// Stages `key = value`, expiring at `expires_at_ms` (0 = never).
    ///
    /// The engine keeps its own copy of the value, exactly its size: a value given as a slice
    /// of a network buffer must not keep that buffer alive from the index.
    pub fn put(&mut self, key: &[u8], value: impl AsRef<[u8]>, expires_at_ms: u64) -> Result<()> {
        let value = value.as_ref();
        self.check_key(key)?;
        if value.len() > self.inner.config.value_bytes_max as usize {
            return Err(StorageError::ValueTooLarge {
                len: value.len(),
                max: self.inner.config.value_bytes_max,
            });
        }
        self.staged.insert(
            key.into(),
            Staged::Put {
                value: Bytes::copy_from_slice(value),
                expires_at_ms,
            },
        );
        Ok(())
    }

    /// Remembers what is staged so far, for [`Txn::rollback`]. (A replicated state machine
    /// runs a whole command in one transaction; a part of it that fails must leave no trace,
    /// as if it had been a transaction of its own.)
    pub fn savepoint(&self) -> Savepoint {
        Savepoint {
            staged: self.staged.clone(),
            ranges: self.ranges.clone(),
        }
    }

    /// Forgets everything staged since `savepoint` was taken.
    pub fn rollback(&mut self, savepoint: Savepoint) {
        self.staged = savepoint.staged;
        self.ranges = savepoint.ranges;
    }

    /// Whether anything is staged.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.ranges.is_empty()
    }

    /// Stages the deletion of `key`.
    pub fn delete(&mut self, key: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.staged.insert(IndexKey::from(key), Staged::Delete);
        Ok(())
    }

    /// Stages the deletion of every key in `[start, end)` (`end` empty = no upper bound),
    /// including writes staged earlier in this transaction.
    pub fn delete_range(&mut self, start: &[u8], end: &[u8]) -> Result<()> {
        self.check_key(start)?;
        self.check_key(end)?;
        self.staged.remove_range(start, end);
        self.ranges.push((start.into(), end.into()));
        Ok(())
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        let max = self.inner.config.key_bytes_max;
        if key.len() > max as usize {
            return Err(StorageError::KeyTooLarge {
                len: key.len(),
                max,
            });
        }
        Ok(())
    }
}

/// What a transaction had staged at some point; see [`Txn::savepoint`].
pub struct Savepoint {
    staged: Staging,
    ranges: Vec<KeyRange>,
}

pub(super) fn in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// Transactions appended together; see [`Engine::write_group`].
pub struct Group<'a> {
    inner: &'a Inner,
    writer: std::sync::MutexGuard<'a, Writer>,
    now_ms: u64,
    /// The version the next transaction gets unless it asks for a higher one.
    next_version: u64,
    overlay: Overlay,
    /// The encoded records of every committed transaction, in order.
    buf: Vec<u8>,
    /// What every committed transaction did, in order.
    applied: Vec<Applied>,
    /// The highest version committed so far.
    last_version: Option<u64>,
}

impl Group<'_> {
    /// Runs `f` as one transaction of this group, with `version` (which must be above every
    /// earlier one) or the next version. If `f` fails, the transaction leaves no trace. Its
    /// writes become durable and visible only when the group's append succeeds.
    pub fn txn<T, E: From<StorageError>>(
        &mut self,
        version: Option<u64>,
        f: impl FnOnce(&mut Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<(T, Written), E> {
        let version = match version {
            Some(v) if v < self.next_version => {
                let last = self.next_version - 1;
                return Err(StorageError::VersionNotIncreasing { given: v, last }.into());
            }
            Some(v) => v,
            None => self.next_version,
        };
        let mut txn = Txn {
            inner: self.inner,
            version,
            now_ms: self.now_ms,
            staged: Staging::default(),
            ranges: Vec::new(),
            overlay: &self.overlay,
            applied: &self.applied,
            fault: Default::default(),
        };
        let result = f(&mut txn);
        let (staged, ranges) = (txn.staged, txn.ranges);
        let value = result?;
        if staged.is_empty() && ranges.is_empty() {
            return Ok((value, Written { version: None }));
        }
        self.commit(version, staged, ranges);
        Ok((
            value,
            Written {
                version: Some(version),
            },
        ))
    }

    /// Reads `key` as the next transaction of this group would see it.
    pub fn read(&self, key: &[u8]) -> Result<Option<Value>> {
        match self.overlay.lookup(&self.applied, key, self.now_ms) {
            Seen::Written(
                Staged::Put {
                    value,
                    expires_at_ms,
                },
                version,
            ) => Ok(Some(Value {
                value: value.clone(),
                version,
                expires_at_ms: (*expires_at_ms != 0).then_some(*expires_at_ms),
            })),
            Seen::Written(Staged::Delete, _) | Seen::Deleted => Ok(None),
            Seen::Unknown => self.inner.get(key, Some(self.now_ms)),
        }
    }

    /// "Now" for this group's transactions, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// Sets "now" for the transactions that follow (a replicated state machine gives each log
    /// entry its own time).
    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// Bytes this group will append so far; a caller may end a group early past a budget.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Encodes a transaction's records into the group's buffer and records its effects for
    /// `finish` and the overlay. Its records form one batch: all but the last carry the "batch
    /// continues" flag.
    fn commit(&mut self, version: u64, staged: Staging, ranges: Vec<KeyRange>) {
        let count = ranges.len() + staged.writes.len();
        let mut n = 0;
        let mut encode = |buf: &mut Vec<u8>, kind, expires, key: &[u8], value: &[u8]| {
            n += 1;
            let at = buf.len();
            let rec = Record {
                kind,
                batch_continues: n < count,
                version,
                expires_at_ms: expires,
                key,
                value,
            };
            rec.encode(buf);
            (at, buf.len() - at)
        };
        for range in ranges {
            let (start, end) = &range;
            encode(&mut self.buf, RecordKind::DeleteRange, 0, start, end);
            self.overlay.staged.retain(|k, _| !in_range(k, start, end));
            self.overlay.ranges.push(range.clone());
            self.applied.push(Applied::Range { version, range });
        }
        for (key, staged) in staged.writes {
            let (at, len) = match &staged {
                Staged::Put {
                    value,
                    expires_at_ms,
                } => encode(&mut self.buf, RecordKind::Put, *expires_at_ms, &key, value),
                Staged::Delete => encode(&mut self.buf, RecordKind::Delete, 0, &key, &[]),
            };
            self.overlay.staged.insert(key.clone(), self.applied.len());
            self.applied.push(Applied::Write {
                version,
                key,
                staged,
                at,
                len,
            });
        }
        self.last_version = Some(version);
        self.next_version = version + 1;
    }

    /// Appends everything committed with one write and publishes it in the index. Returns the
    /// highest version written, if any.
    fn finish(mut self) -> Result<Option<u64>> {
        let Some(last) = self.last_version else {
            self.writer.buf = std::mem::take(&mut self.buf);
            return Ok(None);
        };
        let inner = self.inner;
        let w = &mut *self.writer;
        let buf = std::mem::take(&mut self.buf);
        if w.len + buf.len() as u64 > inner.config.segment_bytes_max && w.len > SEGMENT_HEADER_BYTES
        {
            inner.rotate(w)?;
        }
        // Held in memory (`Config::write_buffer_bytes`), unless that would pass the limit:
        // then what is held is written first, and a batch as large as the limit on its own
        // goes straight to the file.
        let (holds, limit) = (inner.holds_writes(), inner.config.write_buffer_bytes);
        let hold = holds && buf.len() < limit;
        if holds && w.held + buf.len() > limit {
            inner.write_held(w, false)?;
        }
        let base = w.len;
        let path = segment::segment_path(&inner.dir, w.segment);
        let appended = match hold {
            true => Ok(()),
            false => inner
                .fault(IoOp::Append, &path)
                .and_then(|()| w.file.write_all_at(&buf, base)),
        };
        if let Err(source) = appended {
            // Undo a partial append so the next record does not follow garbage (which recovery
            // would rightly call corruption). If even that fails, stop taking writes.
            if let Err(e) = w.file.set_len(base) {
                inner.poison(format!(
                    "append failed ({source}) and rollback failed ({e})"
                ));
            }
            w.buf = buf;
            return Err(StorageError::Io {
                action: "appending to",
                path: segment::segment_path(&inner.dir, w.segment),
                source,
            });
        }

        let inline_max = inner.config.inline_value_bytes_max as usize;
        {
            let mut state = inner.state.write().expect("state lock");
            if hold {
                // In the same critical section as the index entries that point into it.
                debug_assert_eq!(state.tail.base + w.held as u64, base);
                state.tail.bytes.extend_from_slice(&buf);
                w.held += buf.len();
            } else {
                state.tail.base = base + buf.len() as u64;
            }
            let seg = state
                .segments
                .get_mut(&w.segment)
                .expect("active segment is registered");
            seg.total_bytes += buf.len() as u64;
            for applied in self.applied.drain(..) {
                match applied {
                    Applied::Range { version, range } => {
                        assert!(version >= w.last_version, "versions only grow");
                        w.last_version = version;
                        state.remove_range(&range.0, &range.1, version);
                    }
                    Applied::Write {
                        version,
                        key,
                        staged,
                        at,
                        len,
                    } => {
                        assert!(version >= w.last_version, "versions only grow");
                        w.last_version = version;
                        match staged {
                            Staged::Put {
                                value,
                                expires_at_ms,
                            } => {
                                let at = Location {
                                    segment: w.segment,
                                    offset: base + at as u64,
                                    len: len as u32,
                                };
                                // `value` is the engine's own copy (see `Txn::put`), so the
                                // index may keep it as it is.
                                let inline = (value.len() <= inline_max).then_some(value);
                                let entry = IndexEntry {
                                    at,
                                    version,
                                    expires_at_ms,
                                    inline,
                                };
                                state.insert(key, entry);
                            }
                            Staged::Delete => state.remove(&key),
                        }
                    }
                }
            }
        }
        w.len += buf.len() as u64;
        w.buf = buf;
        inner.appended.store(last, Ordering::SeqCst);
        if matches!(inner.config.fsync, FsyncPolicy::Always) {
            let mut s = inner.sync.lock().expect("sync lock");
            s.requested = s.requested.max(last);
            drop(s);
            inner.sync_cv.notify_all();
        }
        Ok(Some(last))
    }
}

impl Inner {
    /// `now_ms` is the group's "now" (expiry deadlines, and which keys have expired), or
    /// `None` for the clock's.
    pub(super) fn write_group<R>(
        &self,
        now_ms: Option<u64>,
        f: impl FnOnce(&mut Group<'_>) -> R,
    ) -> Result<(R, Written)> {
        let mut writer = self.writer.lock().expect("writer lock");
        self.check_poison()?;
        let mut buf = std::mem::take(&mut writer.buf);
        buf.clear();
        let mut group = Group {
            inner: self,
            next_version: writer.last_version + 1,
            writer,
            now_ms: now_ms.unwrap_or_else(|| self.clock.now_ms()),
            overlay: Overlay::default(),
            buf,
            applied: Vec::new(),
            last_version: None,
        };
        let result = f(&mut group);
        let version = group.finish()?;
        Ok((result, Written { version }))
    }
}
