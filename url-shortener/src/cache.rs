//! The redirect cache: code → URL, in memory, bounded. Pure, no IO.
//!
//! Links never change once created, so a cached answer is never wrong, and most redirects
//! (a few popular links take most clicks) need no store read at all. The bound is two
//! generations: new entries go into the current one; when it is full it becomes the previous
//! one (the old previous is dropped), and a hit in the previous generation moves the entry
//! back into the current. So an entry used since the last turnover survives it, as in an
//! LRU, without a list to keep in order.

use std::collections::HashMap;

/// Entries the cache holds by default (a URL is at most 2 KiB: at most about 200 MiB).
pub const CACHE_ENTRIES_DEFAULT: usize = 100_000;

pub struct Cache {
    current: HashMap<String, String>,
    previous: HashMap<String, String>,
    /// Entries in both generations together, at most.
    entries_max: usize,
}

impl Cache {
    pub fn new(entries_max: usize) -> Cache {
        Cache {
            current: HashMap::new(),
            previous: HashMap::new(),
            entries_max: entries_max.max(2),
        }
    }

    pub fn get(&mut self, code: &str) -> Option<String> {
        if let Some(url) = self.current.get(code) {
            return Some(url.clone());
        }
        let url = self.previous.remove(code)?;
        self.insert(code.to_string(), url.clone());
        Some(url)
    }

    pub fn insert(&mut self, code: String, url: String) {
        if self.current.len() >= self.entries_max / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(code, url);
    }

    pub fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_stays_within_its_bound_and_keeps_what_is_used() {
        let mut c = Cache::new(100);
        c.insert("hot".into(), "https://example.com/hot".into());
        for i in 0..1000 {
            c.insert(format!("c{i}"), format!("https://example.com/{i}"));
            assert!(c.len() <= 100);
            // The hot entry is used all the time: it is never evicted.
            assert_eq!(c.get("hot").as_deref(), Some("https://example.com/hot"));
        }
        assert_eq!(c.get("c0"), None, "a cold entry is evicted");
        assert_eq!(c.get("c999").as_deref(), Some("https://example.com/999"));
    }
}
