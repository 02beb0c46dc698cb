//! Clicks counted in memory between flushes to the store. Pure, no IO.
//!
//! A redirect must not wait for a replicated write, so each process counts its clicks per
//! code here and a task adds them to the store's counters every flush interval (one
//! increment per code, however many clicks). What it costs: clicks a process took but had
//! not flushed are lost if the process is killed (at most one interval's worth; a graceful
//! stop flushes them first). A store node's death loses nothing: a flushed increment is
//! replicated before it is acknowledged. An increment whose outcome is unknown (the store
//! did not answer in time) is not retried, so a click is never counted twice.

use std::collections::HashMap;

/// Codes with unflushed clicks a process keeps by default; a click for yet another code is
/// dropped (and counted as dropped) until the next flush.
pub const PENDING_CODES_MAX_DEFAULT: usize = 100_000;

pub struct Pending {
    counts: HashMap<String, u64>,
    codes_max: usize,
}

impl Pending {
    pub fn new(codes_max: usize) -> Pending {
        Pending {
            counts: HashMap::new(),
            codes_max,
        }
    }

    /// Counts `n` clicks of `code`; false if they were dropped (too many codes pending).
    pub fn add(&mut self, code: &str, n: u64) -> bool {
        if let Some(c) = self.counts.get_mut(code) {
            *c += n;
            return true;
        }
        if self.counts.len() >= self.codes_max {
            return false;
        }
        self.counts.insert(code.to_string(), n);
        true
    }

    /// Everything pending, to flush; the counts start again from nothing.
    pub fn take(&mut self) -> HashMap<String, u64> {
        std::mem::take(&mut self.counts)
    }

    /// Clicks pending in all.
    pub fn clicks(&self) -> u64 {
        self.counts.values().sum()
    }

    pub fn of(&self, code: &str) -> u64 {
        self.counts.get(code).copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clicks_add_up_per_code_and_a_full_table_drops_new_codes_only() {
        let mut p = Pending::new(2);
        assert!(p.add("a", 1) && p.add("a", 2) && p.add("b", 1));
        assert!(!p.add("c", 1), "a third code does not fit");
        assert!(p.add("a", 1), "a known code still counts");
        assert_eq!((p.of("a"), p.clicks()), (4, 5));
        let taken = p.take();
        assert_eq!(taken.len(), 2);
        assert_eq!(p.clicks(), 0);
        assert!(p.add("c", 1), "room again after a flush");
    }
}
