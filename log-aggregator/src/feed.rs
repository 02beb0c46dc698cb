//! How an aggregator's index follows the store: rebuilt from the records at start-up, then
//! kept current by following the journal that every aggregator writes (see
//! [`crate::store`]), so a line any aggregator acknowledged becomes searchable on all of them.
//!
//! Each poll reads the journal keys of every shard from [`JOURNAL_SKEW_MS`] before the
//! previous poll, keys only, and fetches the entries it has not seen. The overlap covers a
//! journal write that was stamped before it committed (a write may take up to the store
//! client's deadline, under it) and clocks that differ between aggregators; the keys seen in
//! the overlap are remembered, so each entry is read once. Entries are indexed through
//! [`Indexes::add`], which drops records already indexed: the journal and the rebuild may
//! overlap, and a retried push is journaled twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::index::{Added, Indexes};
use crate::layout::{self, JOURNAL_MINUTE_MS, JOURNAL_SHARDS};
use crate::record::{Read, Record};
use crate::store::{LogStore, StoreError};

/// How far before the previous poll each poll reads the journal again.
pub const JOURNAL_SKEW_MS: i64 = 20_000;

/// What one poll or rebuild did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Fed {
    pub entries: usize,
    pub new: usize,
    pub duplicates: usize,
}

pub struct Feed {
    store: Arc<LogStore>,
    indexes: Arc<Indexes>,
    /// Journal keys read, by their arrival time, back to the overlap.
    seen: BTreeMap<String, i64>,
    /// Where the next poll starts reading (before the overlap).
    from_ms: i64,
    /// The arrival time of the newest entry indexed (for the lag metric).
    pub newest_ms: i64,
}

impl Feed {
    /// A feed that reads the journal from `from_ms` on (the start of the rebuild).
    pub fn new(store: Arc<LogStore>, indexes: Arc<Indexes>, from_ms: i64) -> Feed {
        Feed {
            store,
            indexes,
            seen: BTreeMap::new(),
            from_ms,
            newest_ms: from_ms,
        }
    }

    /// Where the journal has been read to: every entry that arrived before it, and was
    /// written by then, is indexed (what [`Indexes::save_checkpoint`] records once committed).
    /// A feed started from a checkpoint begins there.
    pub fn position(&self) -> i64 {
        self.from_ms
    }

    /// Indexes every record of `buckets` (bucket starts) from the store, adding what it
    /// indexed to `fed`; `on_bucket` hears of each bucket done, so that a caller whose
    /// rebuild failed part way (the store unavailable, or the keyspace over its rate) can
    /// go on from the bucket that failed.
    pub async fn rebuild(
        &self,
        buckets: &[i64],
        fed: &mut Fed,
        mut on_bucket: impl FnMut(i64, usize),
    ) -> Result<(), StoreError> {
        for &bucket in buckets {
            let mut lines = 0;
            for stream in self.store.streams(bucket).await? {
                let records = self.store.bucket_records(&stream, bucket).await?;
                lines += records.len();
                let (added, _) = self
                    .index(format!("bucket {bucket}"), records, false)
                    .await?;
                fed.new += added.new;
                fed.duplicates += added.duplicates;
            }
            on_bucket(bucket, lines);
        }
        Ok(())
    }

    /// Reads what the journal gained since the last poll; `on_new`, if given, is handed each
    /// record indexed for the first time (the live tail).
    pub async fn poll(
        &mut self,
        now_ms: i64,
        mut on_new: Option<&mut (dyn FnMut(Record) + Send)>,
    ) -> Result<Fed, StoreError> {
        let from = self.from_ms - JOURNAL_SKEW_MS;
        let mut fed = Fed::default();
        let mut fresh: Vec<(String, i64)> = Vec::new();
        for minute in from.div_euclid(JOURNAL_MINUTE_MS)..=now_ms.div_euclid(JOURNAL_MINUTE_MS) {
            for shard in 0..JOURNAL_SHARDS {
                for key in self.store.journal_keys(minute, shard, from).await? {
                    if self.seen.contains_key(&key) {
                        continue;
                    }
                    let arrival = layout::parse_journal_time(&key).unwrap_or(now_ms);
                    fresh.push((key, arrival));
                }
            }
        }
        fresh.sort_by_key(|(_, arrival)| *arrival);
        for (key, arrival) in fresh {
            let records = self.store.journal_entry(&key).await?;
            let keep_new = on_new.is_some();
            let (added, new) = self.index(key.clone(), records, keep_new).await?;
            if let Some(on_new) = on_new.as_mut() {
                new.into_iter().for_each(on_new);
            }
            fed.entries += 1;
            fed.new += added.new;
            fed.duplicates += added.duplicates;
            self.newest_ms = self.newest_ms.max(arrival);
            self.seen.insert(key, arrival);
        }
        // The next poll reads from here, less the overlap; forget what is before that.
        self.from_ms = now_ms;
        let horizon = now_ms - 2 * JOURNAL_SKEW_MS;
        self.seen.retain(|_, arrival| *arrival >= horizon);
        Ok(fed)
    }

    /// Adds `records` (read from `key`) to the index off the runtime's threads: tantivy's
    /// queue to its indexing thread is bounded, and adding waits whenever that thread falls
    /// behind, which on a runtime thread would hold up the ingest's tasks too. Returns what
    /// it did and, if `keep_new`, the records new to the index.
    async fn index(
        &self,
        key: String,
        records: Vec<Read>,
        keep_new: bool,
    ) -> Result<(Added, Vec<Record>), StoreError> {
        let indexes = self.indexes.clone();
        let added = tokio::task::spawn_blocking(move || {
            let mut new = Vec::new();
            let added = indexes.add(&records, |r| {
                if keep_new {
                    new.push(r.clone());
                }
            });
            added.map(|added| (added, new))
        })
        .await;
        let error = |error: String| StoreError::BadRecord { key, error };
        match added {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(e)) => Err(error(e.to_string())),
            Err(e) => Err(error(format!("indexing stopped: {e}"))),
        }
    }
}
