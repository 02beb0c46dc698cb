//! The data model on top of the storage engine: keyspaces, versioned values, conditional writes,
//! counters, ordered scans with continuation tokens, and atomic batches.
//!
//! Every operation the store offers is defined here once; the binary protocol, the Redis port
//! and (in part 2) the replicated state machine are thin mappings onto it. A keyspace is a named
//! collection; on disk, a user key `k` in keyspace `ks` is stored as the engine key
//! `[len(ks)] ks k`, so every keyspace is one contiguous, ordered range of the index and a
//! prefix scan never crosses keyspaces.
//!
//! This module does no IO of its own and knows nothing of sockets or frames.

use bytes::{BufMut, Bytes, BytesMut};

use crate::storage::{Engine, Group, StorageError, Txn, Value, Written};

/// The keyspace that the Redis port and clients that name none use.
pub const DEFAULT_KEYSPACE: &str = "default";
/// Longest keyspace name, in bytes.
pub const KEYSPACE_NAME_BYTES_MAX: usize = 64;
/// Entries a scan page returns when the request names no limit.
pub const SCAN_LIMIT_DEFAULT: u32 = 100;
/// Most entries one scan page may return.
pub const SCAN_LIMIT_MAX: u32 = 10_000;
/// A scan page stops early once its keys and values pass this many bytes, so that a page always
/// fits in one frame.
pub const SCAN_PAGE_BYTES_MAX: usize = 1024 * 1024;
/// Most operations in one atomic batch.
pub const BATCH_OPS_MAX: usize = 10_000;
const CONTINUATION_FORMAT: u8 = 1;

/// Errors of the data model. Storage errors pass through.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Storage(#[from] StorageError),

    #[error(
        "invalid keyspace name {name:?}: {reason} (names are 1 to 64 bytes of ASCII letters, \
         digits, '_', '-' and '.')"
    )]
    InvalidKeyspace { name: String, reason: &'static str },

    #[error("value is not an integer or out of range")]
    NotAnInteger,

    #[error("increment or decrement would overflow")]
    Overflow,

    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A precondition on the current state of a key, checked atomically with the write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    #[default]
    None,
    /// The key must not exist (Redis `SET NX`).
    IfAbsent,
    /// The key must exist (Redis `SET XX`).
    IfPresent,
    /// The key's current version must be this one; 0 means "must not exist". This is
    /// compare-and-set.
    IfVersion(u64),
}

impl Condition {
    fn holds(self, current: Option<u64>) -> bool {
        match self {
            Condition::None => true,
            Condition::IfAbsent => current.is_none(),
            Condition::IfPresent => current.is_some(),
            Condition::IfVersion(0) => current.is_none(),
            Condition::IfVersion(v) => current == Some(v),
        }
    }
}

/// A value with its version and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub value: Bytes,
    pub version: u64,
    pub expires_at_ms: Option<u64>,
}

/// The result of a conditional write: whether it happened, and the version the key has now
/// (the new version if applied, else the current one; 0 if the key does not exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    pub applied: bool,
    pub version: u64,
}

/// The result of a delete: whether its condition held, whether the key existed, and the
/// version of the deletion (or the key's current version, 0 if absent, when nothing was
/// deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeleteOutcome {
    pub applied: bool,
    pub existed: bool,
    pub version: u64,
}

/// One write of a batch.
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

/// The result of a batch: applied entirely, or not at all because op `failed_op` had a
/// condition that did not hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOutcome {
    pub applied: bool,
    pub version: u64,
    pub failed_op: Option<u32>,
}

/// Which keys a scan visits. All bounds are optional; `prefix` narrows `[start, end)` further.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanRange {
    pub start: Option<Bytes>,
    pub end: Option<Bytes>,
    pub prefix: Option<Bytes>,
}

/// One entry of a scan page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanItem {
    pub key: Bytes,
    pub value: Option<Bytes>,
    pub version: u64,
    pub expires_at_ms: Option<u64>,
}

/// A page of a scan, and the token that continues it (`None` when the range is exhausted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub items: Vec<ScanItem>,
    pub continuation: Option<Bytes>,
}

/// Engine keys up to this long are built on the stack by [`Keyspace::point_key`].
const POINT_KEY_INLINE_BYTES: usize = 64;

/// An engine key (keyspace prefix and user key), on the stack when short; see
/// [`Keyspace::point_key`]. Dereferences to the key's bytes.
pub enum PointKey {
    Inline {
        len: u8,
        bytes: [u8; POINT_KEY_INLINE_BYTES],
    },
    Heap(Vec<u8>),
}

impl std::ops::Deref for PointKey {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            PointKey::Inline { len, bytes } => &bytes[..*len as usize],
            PointKey::Heap(key) => key,
        }
    }
}

/// Where in the on-disk order a keyspace lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyspace {
    prefix: Vec<u8>,
}

impl Keyspace {
    /// Validates `name` and computes its key prefix.
    pub fn new(name: &str) -> Result<Keyspace> {
        let invalid = |reason| DbError::InvalidKeyspace {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("it is empty"));
        }
        if name.len() > KEYSPACE_NAME_BYTES_MAX {
            return Err(invalid("it is too long"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        {
            return Err(invalid("it contains a character that is not allowed"));
        }
        let mut prefix = Vec::with_capacity(1 + name.len());
        prefix.push(name.len() as u8);
        prefix.extend_from_slice(name.as_bytes());
        Ok(Keyspace { prefix })
    }

    /// The engine key for `key` in this keyspace.
    pub fn key(&self, key: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(self.prefix.len() + key.len());
        k.extend_from_slice(&self.prefix);
        k.extend_from_slice(key);
        k
    }

    /// The engine key for `key`, built on the stack when it is short: the point operations
    /// build one per call, and a heap allocation per GET or SET shows in the profile.
    pub fn point_key(&self, key: &[u8]) -> PointKey {
        let len = self.prefix.len() + key.len();
        if len > POINT_KEY_INLINE_BYTES {
            return PointKey::Heap(self.key(key));
        }
        let mut bytes = [0u8; POINT_KEY_INLINE_BYTES];
        bytes[..self.prefix.len()].copy_from_slice(&self.prefix);
        bytes[self.prefix.len()..len].copy_from_slice(key);
        PointKey::Inline {
            len: len as u8,
            bytes,
        }
    }

    fn user_key<'a>(&self, engine_key: &'a [u8]) -> &'a [u8] {
        &engine_key[self.prefix.len()..]
    }

    /// `[start, end)` of this keyspace in engine keys.
    fn bounds(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.prefix.clone(),
            successor(&self.prefix).expect("a keyspace prefix starts < 0xff"),
        )
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// if there is none (the prefix is all `0xff`).
pub fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(last) = s.pop() {
        if last < 0xff {
            s.push(last + 1);
            return Some(s);
        }
    }
    None
}

/// Parses a stored value as a counter, with Redis's rules: optional '-', decimal digits, no
/// spaces, fits in i64.
pub fn parse_counter(value: &[u8]) -> Result<i64> {
    if value.is_empty() || value.len() > 20 {
        return Err(DbError::NotAnInteger);
    }
    let text = std::str::from_utf8(value).map_err(|_| DbError::NotAnInteger)?;
    if text.starts_with('+')
        || (text.len() > 1 && (text.starts_with('0') || text.starts_with("-0")))
    {
        return Err(DbError::NotAnInteger);
    }
    text.parse().map_err(|_| DbError::NotAnInteger)
}

/// The data model over one engine.
#[derive(Debug, Clone)]
pub struct Db {
    engine: Engine,
}

/// The operations of the data model, over anything that can read a key and run a
/// transaction: a [`Db`] (each operation is its own transaction, reads take no lock) or a
/// [`GroupDb`] (each operation is one transaction of a write group, appended with the others
/// in one write). One definition of every operation serves both.
pub trait Store {
    /// "Now" for this store's writes, in milliseconds since the Unix epoch: relative expiry
    /// times are counted from it.
    fn now_ms(&self) -> u64;

    /// Reads the engine key `key` (keyspace prefix included).
    fn read(&self, key: &[u8]) -> Result<Option<Value>, StorageError>;

    /// Runs `f` as one atomic transaction.
    fn transact<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<(T, Written), E>;

    /// Reads `key`.
    fn get(&self, ks: &Keyspace, key: &[u8]) -> Result<Option<Item>> {
        Ok(self.read(&ks.point_key(key))?.map(|v| Item {
            value: v.value,
            version: v.version,
            expires_at_ms: v.expires_at_ms,
        }))
    }

    /// Writes `key = value` if `condition` holds, expiring after `ttl_ms` if given.
    fn put(
        &self,
        ks: &Keyspace,
        key: &[u8],
        value: impl AsRef<[u8]>,
        ttl_ms: Option<u64>,
        condition: Condition,
    ) -> Result<(Outcome, Written)> {
        let value = value.as_ref();
        let k = ks.point_key(key);
        self.transact(|txn| {
            // An unconditional put needs no lookup: that saves an index search on every SET.
            if condition != Condition::None {
                let current = txn.version_of(&k);
                if !condition.holds(current) {
                    return Ok(Outcome {
                        applied: false,
                        version: current.unwrap_or(0),
                    });
                }
            }
            txn.put(&k, value, deadline(txn, ttl_ms))?;
            Ok(Outcome {
                applied: true,
                version: txn.version(),
            })
        })
    }

    /// Deletes `key` if `condition` holds. An unconditional delete of a missing key is applied
    /// and changes nothing.
    fn delete(
        &self,
        ks: &Keyspace,
        key: &[u8],
        condition: Condition,
    ) -> Result<(DeleteOutcome, Written)> {
        let k = ks.point_key(key);
        self.transact(|txn| {
            let current = txn.version_of(&k);
            let existed = current.is_some();
            if !condition.holds(current) || !existed {
                let applied = condition.holds(current);
                return Ok(DeleteOutcome {
                    applied,
                    existed,
                    version: current.unwrap_or(0),
                });
            }
            txn.delete(&k)?;
            Ok(DeleteOutcome {
                applied: true,
                existed,
                version: txn.version(),
            })
        })
    }

    /// Adds `delta` to the counter at `key` (absent counts as 0), keeping its expiry.
    fn incr(&self, ks: &Keyspace, key: &[u8], delta: i64) -> Result<((i64, u64), Written)> {
        let k = ks.point_key(key);
        self.transact(|txn| {
            let (current, expires) = match txn.get(&k)? {
                Some(v) => (parse_counter(&v.value)?, v.expires_at_ms.unwrap_or(0)),
                None => (0, 0),
            };
            let next = current.checked_add(delta).ok_or(DbError::Overflow)?;
            txn.put(&k, next.to_string(), expires)?;
            Ok((next, txn.version()))
        })
    }

    /// Sets (or with `None` removes) the expiry of an existing key. Returns whether it existed.
    /// A deadline in the past deletes the key.
    fn set_expiry(
        &self,
        ks: &Keyspace,
        key: &[u8],
        ttl_ms: Option<i64>,
    ) -> Result<(bool, Written)> {
        let k = ks.point_key(key);
        self.transact(|txn| {
            let Some(current) = txn.get(&k)? else {
                return Ok(false);
            };
            match ttl_ms {
                Some(ms) if ms <= 0 => txn.delete(&k)?,
                Some(ms) => txn.put(&k, current.value, txn.now_ms().saturating_add(ms as u64))?,
                None if current.expires_at_ms.is_none() => return Ok(false),
                None => txn.put(&k, current.value, 0)?,
            }
            Ok(true)
        })
    }

    /// Applies `ops` atomically: all of them, or none if any condition fails.
    fn batch(&self, ks: &Keyspace, ops: &[BatchOp]) -> Result<(BatchOutcome, Written)> {
        if ops.len() > BATCH_OPS_MAX {
            return Err(DbError::InvalidArgument(format!(
                "a batch holds at most {BATCH_OPS_MAX} operations, this one has {}",
                ops.len()
            )));
        }
        self.transact(|txn| {
            for (i, op) in ops.iter().enumerate() {
                let (key, condition) = match op {
                    BatchOp::Put { key, condition, .. } | BatchOp::Delete { key, condition } => {
                        (ks.key(key), *condition)
                    }
                };
                if condition != Condition::None {
                    let current = txn.version_of(&key);
                    if !condition.holds(current) {
                        // Returning an error rolls the whole transaction back.
                        return Err(FailedOp(i as u32, current.unwrap_or(0)).into());
                    }
                }
                match op {
                    BatchOp::Put { value, ttl_ms, .. } => {
                        let expires = deadline(txn, *ttl_ms);
                        txn.put(&key, value, expires)?
                    }
                    BatchOp::Delete { .. } => txn.delete(&key)?,
                }
            }
            Ok(BatchOutcome {
                applied: true,
                version: txn.version(),
                failed_op: None,
            })
        })
        .or_else(|e: BatchError| match e {
            BatchError::Failed(FailedOp(i, version)) => Ok((
                BatchOutcome {
                    applied: false,
                    version,
                    failed_op: Some(i),
                },
                Written { version: None },
            )),
            BatchError::Db(e) => Err(e),
        })
    }

    /// Deletes every key of the keyspace.
    fn flush(&self, ks: &Keyspace) -> Result<Written> {
        let (start, end) = ks.bounds();
        let ((), written) = self.transact(|txn| txn.delete_range(&start, &end))?;
        Ok(written)
    }
}

impl Store for Db {
    fn now_ms(&self) -> u64 {
        self.engine.now_ms()
    }

    fn read(&self, key: &[u8]) -> Result<Option<Value>, StorageError> {
        self.engine.get(key)
    }

    fn transact<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<(T, Written), E> {
        self.engine.write(None, f)
    }
}

/// The data model inside a write group: every operation becomes one transaction of the group
/// (its own version, its own atomicity), and all of them reach the disk with one write when
/// the group ends. See [`crate::storage::Group`].
pub struct GroupDb<'g, 'e> {
    group: std::cell::RefCell<&'g mut Group<'e>>,
}

impl<'g, 'e> GroupDb<'g, 'e> {
    pub fn new(group: &'g mut Group<'e>) -> Self {
        GroupDb {
            group: std::cell::RefCell::new(group),
        }
    }
}

impl Store for GroupDb<'_, '_> {
    fn now_ms(&self) -> u64 {
        self.group.borrow().now_ms()
    }

    fn read(&self, key: &[u8]) -> Result<Option<Value>, StorageError> {
        self.group.borrow().read(key)
    }

    fn transact<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<(T, Written), E> {
        self.group.borrow_mut().txn(None, f)
    }
}

impl Db {
    pub fn new(engine: Engine) -> Db {
        Db { engine }
    }

    /// Calls `f` with `key`'s value, or `None`, without copying it out first: see
    /// [`Engine::get_with`].
    pub fn get_with<R>(
        &self,
        ks: &Keyspace,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> R,
    ) -> Result<R> {
        Ok(self.engine.get_with(&ks.point_key(key), f)?)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Counts the live keys of the keyspace.
    pub fn count(&self, ks: &Keyspace) -> u64 {
        let (start, end) = ks.bounds();
        self.engine.count(&start, &end)
    }

    /// One page of an ordered scan. `continuation` is the token from the previous page.
    pub fn scan(
        &self,
        ks: &Keyspace,
        range: &ScanRange,
        limit: u32,
        continuation: Option<&[u8]>,
        keys_only: bool,
    ) -> Result<ScanPage> {
        let limit = match limit {
            0 => SCAN_LIMIT_DEFAULT,
            n => n.min(SCAN_LIMIT_MAX),
        } as usize;
        let (ks_start, ks_end) = ks.bounds();
        let mut start = ks.key(range.start.as_deref().unwrap_or(b""));
        let mut end = match &range.end {
            Some(end) => ks.key(end),
            None => ks_end.clone(),
        };
        if let Some(prefix) = &range.prefix {
            start = start.max(ks.key(prefix));
            let prefix_end = successor(&ks.key(prefix)).unwrap_or(ks_end);
            end = end.min(prefix_end);
        }
        start = start.max(ks_start);
        if let Some(token) = continuation {
            let last = decode_continuation(token)?;
            // Resume just after the last key returned: its smallest successor is `last\0`.
            let mut after = ks.key(&last);
            after.push(0);
            start = start.max(after);
        }
        if start >= end {
            return Ok(ScanPage {
                items: Vec::new(),
                continuation: None,
            });
        }
        let entries = self.engine.scan(&start, &end, limit, keys_only)?;
        let full = entries.len() == limit;
        let mut items = Vec::with_capacity(entries.len());
        let mut bytes = 0;
        for e in entries {
            bytes += e.key.len() + e.value.as_ref().map_or(0, |v| v.len());
            items.push(ScanItem {
                key: Bytes::copy_from_slice(ks.user_key(&e.key)),
                value: e.value,
                version: e.version,
                expires_at_ms: e.expires_at_ms,
            });
            if bytes >= SCAN_PAGE_BYTES_MAX {
                break;
            }
        }
        let more = full || bytes >= SCAN_PAGE_BYTES_MAX;
        let continuation = match items.last() {
            Some(last) if more => Some(encode_continuation(&last.key)),
            _ => None,
        };
        Ok(ScanPage {
            items,
            continuation,
        })
    }
}

fn deadline(txn: &Txn<'_>, ttl_ms: Option<u64>) -> u64 {
    ttl_ms.map_or(0, |ms| txn.now_ms().saturating_add(ms))
}

/// A batch condition failed at op `.0`; the key's version was `.1`.
struct FailedOp(u32, u64);

enum BatchError {
    Failed(FailedOp),
    Db(DbError),
}

impl From<FailedOp> for BatchError {
    fn from(f: FailedOp) -> Self {
        BatchError::Failed(f)
    }
}

impl From<StorageError> for BatchError {
    fn from(e: StorageError) -> Self {
        BatchError::Db(e.into())
    }
}

/// A continuation token: a format byte, then the last user key returned. Opaque to clients.
fn encode_continuation(last_key: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + last_key.len());
    b.put_u8(CONTINUATION_FORMAT);
    b.put_slice(last_key);
    b.freeze()
}

fn decode_continuation(token: &[u8]) -> Result<Vec<u8>> {
    match token.split_first() {
        Some((&CONTINUATION_FORMAT, key)) => Ok(key.to_vec()),
        _ => Err(DbError::InvalidArgument(
            "the continuation token was not produced by this server".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Config, FsyncPolicy, Maintenance, SystemClock};
    use std::sync::Arc;

    fn db(name: &str) -> (Db, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("kv-db-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let config = Config {
            fsync: FsyncPolicy::Never,
            maintenance: Maintenance::Manual,
            ..Config::default()
        };
        (
            Db::new(Engine::open(&dir, config, Arc::new(SystemClock)).unwrap()),
            dir,
        )
    }

    #[test]
    fn get_with_lends_what_get_returns() {
        let dir = std::env::temp_dir().join(format!("kv-db-get-with-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let clock = Arc::new(crate::storage::ManualClock::new(1_000_000));
        let config = Config {
            fsync: FsyncPolicy::Never,
            maintenance: Maintenance::Manual,
            ..Config::default()
        };
        let db = Db::new(Engine::open(&dir, config, clock.clone()).unwrap());
        let ks = Keyspace::new("default").unwrap();
        let small = b"fits in the index".to_vec();
        let large = vec![b'v'; 1000]; // past inline_value_bytes_max: read from its segment
        db.put(&ks, b"small", &small, None, Condition::None)
            .unwrap();
        db.put(&ks, b"large", &large, None, Condition::None)
            .unwrap();
        db.put(&ks, b"gone", b"x", Some(1), Condition::None)
            .unwrap();
        clock.advance_ms(1);
        for key in [&b"small"[..], b"large", b"missing", b"gone"] {
            let lent = db.get_with(&ks, key, |v| v.map(<[u8]>::to_vec)).unwrap();
            let got = db.get(&ks, key).unwrap().map(|item| item.value.to_vec());
            assert_eq!(lent, got, "{}", String::from_utf8_lossy(key));
        }
        assert_eq!(
            db.get_with(&ks, b"large", |v| v.map(<[u8]>::len)).unwrap(),
            Some(1000)
        );
        assert!(db.get_with(&ks, b"gone", |v| v.is_none()).unwrap());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn keyspace_names_are_validated() {
        for bad in ["", "has space", "slash/", &"x".repeat(65)] {
            assert!(Keyspace::new(bad).is_err(), "{bad:?}");
        }
        for good in ["default", "a", "log-2026.11_x"] {
            assert!(Keyspace::new(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn counters_follow_redis_parsing() {
        for (text, want) in [
            ("0", Some(0)),
            ("-5", Some(-5)),
            ("9223372036854775807", Some(i64::MAX)),
        ] {
            assert_eq!(parse_counter(text.as_bytes()).ok(), want, "{text}");
        }
        for bad in [
            "",
            " 1",
            "1 ",
            "+1",
            "01",
            "-0",
            "1.5",
            "9223372036854775808",
            "abc",
        ] {
            assert!(parse_counter(bad.as_bytes()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn point_keys_are_the_keyspace_keys_on_the_stack_or_the_heap() {
        let ks = Keyspace::new("users").unwrap();
        for len in [0, 1, 30, 64 - 6, 64 - 5, 200] {
            let key = vec![b'x'; len];
            let point = ks.point_key(&key);
            assert_eq!(&point[..], &ks.key(&key)[..], "len {len}");
            let inline = matches!(point, PointKey::Inline { .. });
            assert_eq!(inline, 6 + len <= POINT_KEY_INLINE_BYTES, "len {len}");
        }
    }

    #[test]
    fn conditions_compare_and_set_and_batches() {
        let (db, dir) = db("cond");
        let ks = Keyspace::new("default").unwrap();
        let (first, _) = db.put(&ks, b"k", "1", None, Condition::IfAbsent).unwrap();
        assert!(first.applied);
        let (again, _) = db.put(&ks, b"k", "2", None, Condition::IfAbsent).unwrap();
        assert_eq!(
            again,
            Outcome {
                applied: false,
                version: first.version
            }
        );
        let (stale, _) = db
            .put(&ks, b"k", "3", None, Condition::IfVersion(999))
            .unwrap();
        assert!(!stale.applied);
        let (cas, _) = db
            .put(&ks, b"k", "4", None, Condition::IfVersion(first.version))
            .unwrap();
        assert!(cas.applied && cas.version > first.version);
        let ops = [
            BatchOp::Put {
                key: "a".into(),
                value: "1".into(),
                ttl_ms: None,
                condition: Condition::None,
            },
            BatchOp::Delete {
                key: "k".into(),
                condition: Condition::IfVersion(first.version),
            },
        ];
        let (out, _) = db.batch(&ks, &ops).unwrap();
        assert_eq!(out.failed_op, Some(1));
        assert!(
            db.get(&ks, b"a").unwrap().is_none(),
            "a failed batch writes nothing"
        );
        let ((n, _), _) = db.incr(&ks, b"n", 5).unwrap();
        assert_eq!(n, 5);
        db.put(&ks, b"text", "abc", None, Condition::None).unwrap();
        assert!(matches!(
            db.incr(&ks, b"text", 1),
            Err(DbError::NotAnInteger)
        ));
        db.put(&ks, b"max", i64::MAX.to_string(), None, Condition::None)
            .unwrap();
        assert!(matches!(db.incr(&ks, b"max", 1), Err(DbError::Overflow)));
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn scans_page_through_a_prefix_without_crossing_keyspaces() {
        let (db, dir) = db("scan");
        let a = Keyspace::new("a").unwrap();
        let b = Keyspace::new("b").unwrap();
        for i in 0..25 {
            db.put(
                &a,
                format!("user:{i:02}").as_bytes(),
                "v",
                None,
                Condition::None,
            )
            .unwrap();
            db.put(
                &a,
                format!("zzz:{i:02}").as_bytes(),
                "v",
                None,
                Condition::None,
            )
            .unwrap();
            db.put(
                &b,
                format!("user:{i:02}").as_bytes(),
                "v",
                None,
                Condition::None,
            )
            .unwrap();
        }
        let range = ScanRange {
            prefix: Some("user:".into()),
            ..ScanRange::default()
        };
        let mut token = None;
        let mut seen = Vec::new();
        loop {
            let page = db.scan(&a, &range, 10, token.as_deref(), true).unwrap();
            seen.extend(
                page.items
                    .iter()
                    .map(|i| String::from_utf8(i.key.to_vec()).unwrap()),
            );
            match page.continuation {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let want: Vec<String> = (0..25).map(|i| format!("user:{i:02}")).collect();
        assert_eq!(seen, want);
        assert_eq!(db.count(&a), 50);
        db.flush(&a).unwrap();
        assert_eq!(db.count(&a), 0);
        assert_eq!(db.count(&b), 25, "flush stays inside its keyspace");
        assert!(db.scan(&a, &range, 10, Some(b"\x09bogus"), true).is_err());
        drop(db);
        let _ = std::fs::remove_dir_all(dir);
    }
}
