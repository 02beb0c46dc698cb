//! Time as an input. The engine asks a [`Clock`] for "now" instead of reading the system clock,
//! so TTL behaviour is tested by moving a [`ManualClock`] rather than by sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> u64;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug, Default)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    pub fn advance_ms(&self, ms: u64) {
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// The clock of a replicated state machine: the wall clock, but never behind a floor that the
/// log raises (the time of the latest applied entry), and never going back between two
/// readings. Reads judge expiry by it, and the node stamps its proposals with it, so that
/// reads and the writes after them agree on what has expired (see `docs/raft.md`, "The
/// replicated state machine").
#[derive(Debug)]
pub struct FloorClock {
    wall: std::sync::Arc<dyn Clock>,
    /// The highest time handed out or set as the floor.
    floor: AtomicU64,
}

impl FloorClock {
    pub fn new(wall: std::sync::Arc<dyn Clock>) -> FloorClock {
        FloorClock {
            wall,
            floor: AtomicU64::new(0),
        }
    }

    /// Raises the floor to `now_ms` (never lowers it).
    pub fn raise_to(&self, now_ms: u64) {
        self.floor.fetch_max(now_ms, Ordering::SeqCst);
    }
}

impl Clock for FloorClock {
    fn now_ms(&self) -> u64 {
        let wall = self.wall.now_ms();
        self.floor.fetch_max(wall, Ordering::SeqCst).max(wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_clock_follows_the_wall_but_never_goes_below_its_floor_or_back() {
        let wall = std::sync::Arc::new(ManualClock::new(1_000));
        let clock = FloorClock::new(wall.clone());
        assert_eq!(clock.now_ms(), 1_000);
        clock.raise_to(5_000);
        assert_eq!(clock.now_ms(), 5_000, "the log is ahead of the wall");
        clock.raise_to(2_000);
        assert_eq!(clock.now_ms(), 5_000, "the floor never goes down");
        wall.advance_ms(10_000);
        assert_eq!(clock.now_ms(), 11_000, "the wall is ahead again");
    }
}
