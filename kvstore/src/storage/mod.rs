//! The single-node storage engine: a log-structured store in the Bitcask family, with an
//! *ordered* in-memory index so that prefix and range scans work.
//!
//! Every write is appended to the active segment file as a checksummed record; an in-memory
//! ordered map (a `BTreeMap`) points from each live key to its newest record. Reads cost one
//! positional read. Deletes append tombstones; TTLs are stored in the record. Segments roll over
//! at a size limit; sealed segments get *hint files* (the index without the values) so a
//! restart is fast; *compaction* rewrites the live records of sealed segments and deletes them,
//! in the background, without stopping reads or writes. The on-disk format, the recovery rules
//! and the crash argument for compaction are in `kvstore/docs/storage-format.md`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use kvstore::storage::{Config, Engine, SystemClock};
//!
//! let engine = Engine::open("/tmp/data", Config::default(), Arc::new(SystemClock))?;
//! let (_, written) = engine.write(None, |txn| txn.put(b"k", "v", 0))?;
//! engine.wait_durable(written.version.unwrap())?;
//! assert_eq!(&engine.get(b"k")?.unwrap().value[..], b"v");
//! # Ok::<(), kvstore::storage::StorageError>(())
//! ```
//!
//! This module owns file IO for the data directory and nothing else: no networking, no
//! knowledge of keyspaces or of the wire protocol.

mod clock;
mod engine;
mod error;
pub mod fault;
pub mod record;
pub mod segment;

pub use clock::{Clock, FloorClock, ManualClock, SystemClock};
pub use engine::{
    Background, CompactionReport, Engine, Group, Savepoint, ScanEntry, Stats, Txn, Value, View,
    Written, FORMAT_FILE, FORMAT_VERSION,
};
pub use error::{Result, StorageError};

/// When an acknowledged write reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// A write is acknowledged only once it is on disk. Concurrent writers share one fsync
    /// (group commit), so the cost per write falls as concurrency rises.
    Always,
    /// Writes are fsynced in the background every `ms` milliseconds; a crash of the machine
    /// (not just the process) can lose the last interval.
    Interval { ms: u64 },
    /// The OS decides (and a clean shutdown fsyncs). A machine crash can lose recent writes.
    Never,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => match other.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(FsyncPolicy::Interval { ms }),
                _ => Err(format!(
                    "invalid fsync policy {other:?}: expected always, never or interval:MS \
                     (e.g. interval:1000)"
                )),
            },
        }
    }
}

impl std::fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval { ms } => write!(f, "interval:{ms}"),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

/// Whether hint writing, TTL purging and compaction run on their own thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Maintenance {
    Background,
    /// Only when called ([`Engine::compact`], ...): deterministic, for tests.
    Manual,
}

/// Limits and policies of an engine.
#[derive(Debug, Clone)]
pub struct Config {
    pub fsync: FsyncPolicy,
    /// A segment is sealed and a new one started when an append would pass this size.
    pub segment_bytes_max: u64,
    pub key_bytes_max: u32,
    pub value_bytes_max: u32,
    /// Values up to this size are also kept in the in-memory index, so reading them costs no
    /// disk read (larger ones are read from their segment). 0 keeps none.
    pub inline_value_bytes_max: u32,
    /// Compaction starts when sealed segments hold at least this many dead bytes...
    pub compaction_dead_bytes_min: u64,
    /// ...and at least this fraction of their bytes is dead.
    pub compaction_dead_ratio: f64,
    pub maintenance: Maintenance,
    pub maintenance_interval_ms: u64,
    /// Whether the engine itself forgets expired keys (at recovery, in the periodic purge and
    /// in compaction). A replicated state machine turns this off: a replica replaying old log
    /// entries must still see keys that were alive at those entries' time, whatever its own
    /// clock says now. Reads hide expired keys either way.
    pub expire_locally: bool,
    /// Bytes of appended records the engine may hold in memory before writing them to its
    /// active segment, in one write (at the latest at every sync, rotation and close); 0
    /// writes every batch at once. Reads of a value still held are served from memory. Only
    /// for an engine whose writes are also logged elsewhere (a Raft group's state machine,
    /// whose log replays them): a crash of the process loses what is held, as a crash of the
    /// machine loses what was written but not synced. Ignored under `FsyncPolicy::Always`.
    pub write_buffer_bytes: usize,
    /// Fails chosen file operations, for tests of the failure paths; `None` in production.
    pub faults: Option<std::sync::Arc<dyn fault::FaultInjector>>,
    /// Background threads shared with other engines (a node hosting many groups): then this
    /// engine starts no maintenance thread, and no syncer unless `fsync` is `Always`. `None`:
    /// threads of its own.
    pub background: Option<std::sync::Arc<Background>>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            fsync: FsyncPolicy::Always,
            segment_bytes_max: 64 * 1024 * 1024,
            key_bytes_max: 64 * 1024,
            value_bytes_max: 16 * 1024 * 1024,
            inline_value_bytes_max: 64,
            compaction_dead_bytes_min: 16 * 1024 * 1024,
            compaction_dead_ratio: 0.5,
            maintenance: Maintenance::Background,
            maintenance_interval_ms: 1000,
            expire_locally: true,
            write_buffer_bytes: 0,
            faults: None,
            background: None,
        }
    }
}
