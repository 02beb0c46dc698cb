//! Fault injection for the engine's file IO, so that tests can make an append, an fsync, a
//! file creation, a rename or a removal fail exactly where they choose, and check that the
//! engine reports it, keeps or refuses writes as documented, and loses nothing acknowledged.
//!
//! The engine asks the configured [`FaultInjector`] before each of those operations; in
//! production there is none and the check is a branch on `None`. A disk that fills up for real
//! is tested too (`tests/tests/disk_full.rs`); this covers the failures a test cannot provoke
//! with a real file system, such as an fsync that fails.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds of file operations a fault can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoOp {
    /// Appending records to the active segment (`pwrite`).
    Append,
    /// Writing a compaction output segment.
    WriteOutput,
    /// `fsync` of a segment.
    Sync,
    /// Creating a new segment file.
    Create,
    /// Renaming a finished file into place (compaction outputs, hints, the marker).
    Rename,
    /// Removing a file (compaction inputs, the marker).
    Remove,
    /// Reading a value that is not held in memory (`pread`).
    Read,
}

/// Decides whether an operation fails. Called just before the real operation, which is not
/// attempted if this returns an error.
pub trait FaultInjector: Send + Sync + std::fmt::Debug {
    fn before(&self, op: IoOp, path: &Path) -> std::io::Result<()>;
}

/// Fails the `nth` operation of kind `op` (counting from 1), and with `and_after` every later
/// one too (a disk that stays broken); everything else succeeds.
#[derive(Debug)]
pub struct FailNth {
    op: IoOp,
    nth: u64,
    and_after: bool,
    seen: AtomicU64,
}

impl FailNth {
    pub fn once(op: IoOp, nth: u64) -> FailNth {
        FailNth {
            op,
            nth,
            and_after: false,
            seen: AtomicU64::new(0),
        }
    }

    pub fn from(op: IoOp, nth: u64) -> FailNth {
        FailNth {
            op,
            nth,
            and_after: true,
            seen: AtomicU64::new(0),
        }
    }

    /// How many operations of the watched kind were attempted so far.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }
}

impl FaultInjector for FailNth {
    fn before(&self, op: IoOp, path: &Path) -> std::io::Result<()> {
        if op != self.op {
            return Ok(());
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.nth || (self.and_after && n > self.nth) {
            return Err(std::io::Error::other(format!(
                "injected fault: {op:?} #{n} on {}",
                path.display()
            )));
        }
        Ok(())
    }
}
