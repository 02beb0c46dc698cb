//! The URL frontier in the store: keyspace `crawl`, partitioned by host, so that everything a
//! host's politeness depends on lives in one partition and changes in one atomic batch.
//!
//! ```text
//! h:{host}                            the host: its lease, next allowed fetch, robots.txt, counts
//! u:{host}:<path?query>               a URL: its state (queued or final), attempts, outcome
//! q:{host}:<not before, ms, 13 digits>:<path?query>
//!                                     the host's queue, in the order its URLs may be fetched
//! p:{fingerprint}                     a page's text (once per exact fingerprint), for the build
//! n:{<band>.<value>}:<simhash>        the near-duplicate index: one key per simhash band
//! m:{crawl}                           the crawl: its seeds and scope, when it started
//! ```
//!
//! **Leases.** A worker holds a host by writing its name and an expiry into `h:{host}` with
//! compare-and-set; it renews before the expiry. Every write a worker makes for a host it holds
//! is one batch conditioned on `h:{host}`'s version (the *fencing token*), and that batch
//! rewrites `h:{host}` with a sequence number one higher. A worker that lost its lease (it
//! stalled past the expiry and another took the host) finds its batch refused and stops, so a
//! URL's outcome is committed once, by the lease holder, however many workers fetched it.
//!
//! **Queue entries are hints; the URL record is the truth.** An entry whose URL is no longer
//! `queued` is deleted when met. A URL is added to another host's partition with a batch that
//! creates its record only if absent, with its queue entry; to its own host's, inside the
//! holder's fenced batch.

use std::collections::BTreeMap;

use bytes::Bytes;
use kvstore::client::cluster::ClusterClient;
use kvstore::client::{ClientError, ScanOptions};
use kvstore::partition::map::KeyspaceSpec;
use kvstore::wire::{BatchOp, Condition, Consistency, Entry, Response, ScanRange};
use serde::{Deserialize, Serialize};

pub const KEYSPACE: &str = "crawl";
/// The most bytes of robots.txt kept (Google reads 500 KiB).
pub const ROBOTS_BYTES_MAX: usize = 500 * 1024;
/// Failed fetches of a host's robots.txt in a row after which its URLs are settled as
/// disallowed (so a crawl ends): touching a host whose rules cannot be read is not polite.
pub const ROBOTS_FAILURES_MAX: u32 = 5;
/// Entries per scan page.
pub const SCAN_PAGE: u32 = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum FrontierError {
    #[error("the store: {0}")]
    Client(#[from] ClientError),
    #[error("the value at {key:?} is not a frontier record: {error}")]
    BadRecord { key: String, error: String },
    #[error("the store answered a batch with {0:?}")]
    Unexpected(String),
}

pub type Result<T, E = FrontierError> = std::result::Result<T, E>;

/// Who holds a host, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    pub owner: String,
    pub until_ms: u64,
}

/// A host's robots.txt as last fetched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotsCopy {
    pub fetched_ms: u64,
    /// The HTTP status (0: it could not be fetched).
    pub status: u16,
    pub body: String,
    /// Fetches in a row that failed (no answer, or a 5xx).
    #[serde(default)]
    pub failures: u32,
}

impl RobotsCopy {
    pub fn failed(&self) -> bool {
        self.status == 0 || self.status >= 500
    }
}

/// Final outcomes, counted per host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub done: u64,
    pub duplicate: u64,
    pub redirected: u64,
    pub failed: u64,
    pub skipped: u64,
    pub disallowed: u64,
    /// Fetch attempts that will be tried again.
    pub retries: u64,
    pub bytes: u64,
}

impl Counts {
    /// URLs with a final state.
    pub fn settled(&self) -> u64 {
        self.done + self.duplicate + self.redirected + self.failed + self.skipped + self.disallowed
    }

    pub fn add(&mut self, other: &Counts) {
        self.done += other.done;
        self.duplicate += other.duplicate;
        self.redirected += other.redirected;
        self.failed += other.failed;
        self.skipped += other.skipped;
        self.disallowed += other.disallowed;
        self.retries += other.retries;
        self.bytes += other.bytes;
    }
}

/// `h:{host}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRecord {
    pub host: String,
    pub scheme: String,
    pub lease: Option<Lease>,
    /// No fetch before this time (the Crawl-delay after the last response, or a back-off).
    pub next_fetch_ms: u64,
    pub robots: Option<RobotsCopy>,
    pub counts: Counts,
    /// One more on every fenced write: tells whether an ambiguous write applied.
    pub seq: u64,
}

impl HostRecord {
    pub fn new(scheme: &str, host: &str) -> HostRecord {
        HostRecord {
            host: host.to_string(),
            scheme: scheme.to_string(),
            lease: None,
            next_fetch_ms: 0,
            robots: None,
            counts: Counts::default(),
            seq: 0,
        }
    }

    /// The record as `owner` claims it, holding the lease until `until_ms`. A lease that was
    /// never released (its holder died, or lost its way to the store) may have covered a
    /// request whose response was never recorded, sent at any moment until the lease ran out:
    /// so the first fetch waits `delay` (the host's Crawl-delay) after that, as if a response
    /// had arrived then. (Leases are wall-clock times: the workers of one crawl share a
    /// clock, or clocks kept within a few milliseconds of each other.)
    pub fn claimed(mut self, owner: &str, until_ms: u64, delay: std::time::Duration) -> HostRecord {
        if let Some(old) = &self.lease {
            let lapse = std::time::UNIX_EPOCH + std::time::Duration::from_millis(old.until_ms);
            self.next_fetch_ms = self.next_fetch_ms.max(super::allowed_after(lapse, delay));
        }
        self.lease = Some(Lease {
            owner: owner.to_string(),
            until_ms,
        });
        self.seq += 1;
        self
    }

    pub fn free_at(&self, now_ms: u64, me: &str) -> bool {
        self.lease
            .as_ref()
            .is_none_or(|l| l.until_ms <= now_ms || l.owner == me)
    }
}

/// A URL's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UrlState {
    Queued,
    /// Fetched; its text is stored under its fingerprint.
    Done,
    /// Fetched; its text is another page's (exactly or nearly).
    Duplicate,
    /// It redirected; the target is a URL of its own.
    Redirected,
    /// Given up: an error status, a redirect past the limit, attempts exhausted.
    Failed,
    /// Not a page to process: not HTML, or too large.
    Skipped,
    /// robots.txt disallows it.
    Disallowed,
}

/// `u:{host}:<path>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UrlRecord {
    pub url: String,
    pub state: UrlState,
    pub depth: u32,
    /// Redirects followed to reach it.
    pub hops: u32,
    pub attempts: u32,
    pub not_before_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The exact fingerprint of its text (its own, or the page it duplicates).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The redirect's target, or the URL whose text this duplicates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other: Option<String>,
    #[serde(default)]
    pub at_ms: u64,
}

impl UrlRecord {
    pub fn queued(url: &str, depth: u32, hops: u32, now_ms: u64) -> UrlRecord {
        UrlRecord {
            url: url.to_string(),
            state: UrlState::Queued,
            depth,
            hops,
            attempts: 0,
            not_before_ms: now_ms,
            status: None,
            reason: None,
            fingerprint: None,
            other: None,
            at_ms: now_ms,
        }
    }
}

/// `p:{fingerprint}`: a page's text, stored once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageRecord {
    pub url: String,
    pub title: String,
    pub text: String,
    pub simhash: u64,
    pub fetched_ms: u64,
}

/// `m:{crawl}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrawlRecord {
    pub seeds: Vec<String>,
    /// Hosts (`host:port`) the crawl may fetch from.
    pub scope: Vec<String>,
    pub started_ms: u64,
}

pub fn host_key(host: &str) -> String {
    format!("h:{{{host}}}")
}
pub fn url_key(host: &str, path: &str) -> String {
    format!("u:{{{host}}}:{path}")
}
pub fn url_prefix(host: &str) -> String {
    format!("u:{{{host}}}:")
}
pub fn queue_key(host: &str, not_before_ms: u64, path: &str) -> String {
    format!("q:{{{host}}}:{not_before_ms:013}:{path}")
}
pub fn queue_prefix(host: &str) -> String {
    format!("q:{{{host}}}:")
}
pub fn page_key(fingerprint: &str) -> String {
    format!("p:{{{fingerprint}}}")
}
pub fn near_key(band: u32, value: u16, simhash: u64) -> String {
    format!("n:{{{band}.{value:04x}}}:{simhash:016x}")
}
pub fn near_prefix(band: u32, value: u16) -> String {
    format!("n:{{{band}.{value:04x}}}:")
}
pub const CRAWL_KEY: &str = "m:{crawl}";

/// A queue entry: when its URL may be fetched, and its path.
pub fn parse_queue_key(host: &str, key: &[u8]) -> Option<(u64, String)> {
    let rest = std::str::from_utf8(key)
        .ok()?
        .strip_prefix(&queue_prefix(host))?;
    let (t, path) = rest.split_once(':')?;
    Some((t.parse().ok()?, path.to_string()))
}

pub fn encode<T: Serialize>(value: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(value).expect("a frontier record serialises"))
}

pub fn decode<T: for<'de> Deserialize<'de>>(key: &str, value: &[u8]) -> Result<T> {
    serde_json::from_slice(value).map_err(|e| FrontierError::BadRecord {
        key: key.to_string(),
        error: e.to_string(),
    })
}

pub fn put(key: String, value: Bytes, condition: Condition) -> BatchOp {
    BatchOp::Put {
        key: Bytes::from(key),
        value,
        ttl_ms: None,
        condition,
    }
}

pub fn delete(key: String) -> BatchOp {
    BatchOp::Delete {
        key: Bytes::from(key),
        condition: Condition::None,
    }
}

/// What a batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Applied { version: u64 },
    Refused { op: Option<u32>, version: u64 },
}

/// The frontier: typed reads and writes over a [`ClusterClient`].
#[derive(Clone)]
pub struct Frontier {
    pub client: std::sync::Arc<ClusterClient>,
}

impl Frontier {
    pub fn new(client: std::sync::Arc<ClusterClient>) -> Frontier {
        Frontier { client }
    }

    /// Creates the keyspace if it is missing.
    pub async fn ensure_keyspace(&self, partitions: u32) -> Result<()> {
        let mut spec = KeyspaceSpec::new(KEYSPACE);
        spec.partitions = partitions;
        spec.read_consistency = Consistency::Linearizable;
        self.client.ensure_keyspace(spec).await?;
        Ok(())
    }

    pub async fn batch(&self, ops: Vec<BatchOp>) -> Result<Batch> {
        match self.client.batch(KEYSPACE, ops).await? {
            Response::BatchOk {
                applied: true,
                version,
                ..
            } => Ok(Batch::Applied { version }),
            Response::BatchOk {
                failed_op, version, ..
            } => Ok(Batch::Refused {
                op: failed_op,
                version,
            }),
            other => Err(FrontierError::Unexpected(format!("{other:?}"))),
        }
    }

    /// A record and its version, linearizably.
    pub async fn get<T: for<'de> Deserialize<'de>>(&self, key: &str) -> Result<Option<(T, u64)>> {
        match self
            .client
            .get(KEYSPACE, key.as_bytes(), Consistency::Linearizable)
            .await?
        {
            Some(v) => Ok(Some((decode(key, &v.value)?, v.version))),
            None => Ok(None),
        }
    }

    /// Every entry under `prefix` (all partitions when the prefix has no whole hash tag), up
    /// to `max`.
    pub async fn scan_prefix(
        &self,
        prefix: &str,
        keys_only: bool,
        max: usize,
    ) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let mut continuation = None;
        loop {
            let page = self
                .client
                .scan(
                    KEYSPACE,
                    ScanOptions {
                        range: ScanRange {
                            prefix: Some(Bytes::from(prefix.to_string())),
                            ..ScanRange::default()
                        },
                        limit: SCAN_PAGE.min(max.saturating_sub(out.len()).max(1) as u32),
                        continuation,
                        keys_only,
                        consistency: Some(Consistency::Linearizable),
                    },
                )
                .await?;
            out.extend(page.entries);
            continuation = page.continuation;
            if continuation.is_none() || out.len() >= max {
                out.truncate(max);
                return Ok(out);
            }
        }
    }

    /// Adds a URL to its host if it has never been seen: its record and queue entry, in one
    /// batch that does nothing if the record exists. Whether it was new.
    pub async fn add_if_new(&self, host: &str, path: &str, record: &UrlRecord) -> Result<bool> {
        let ops = vec![
            put(url_key(host, path), encode(record), Condition::IfAbsent),
            put(
                queue_key(host, record.not_before_ms, path),
                Bytes::new(),
                Condition::None,
            ),
        ];
        Ok(matches!(self.batch(ops).await?, Batch::Applied { .. }))
    }

    /// Creates a host's record if it has none.
    pub async fn ensure_host(&self, scheme: &str, host: &str) -> Result<()> {
        let record = HostRecord::new(scheme, host);
        self.client
            .put(
                KEYSPACE,
                host_key(host).as_bytes(),
                &encode(&record),
                Condition::IfAbsent,
            )
            .await?;
        Ok(())
    }

    /// Every host record, by host.
    pub async fn hosts(&self) -> Result<BTreeMap<String, (HostRecord, u64)>> {
        let mut out = BTreeMap::new();
        for e in self.scan_prefix("h:{", false, usize::MAX).await? {
            let k = String::from_utf8_lossy(&e.key).to_string();
            let record: HostRecord = decode(&k, e.value.as_deref().unwrap_or_default())?;
            out.insert(record.host.clone(), (record, e.version));
        }
        Ok(out)
    }

    /// The first `limit` queue entries of a host: (not before, path).
    pub async fn queue(&self, host: &str, limit: usize) -> Result<Vec<(u64, String)>> {
        let entries = self.scan_prefix(&queue_prefix(host), true, limit).await?;
        Ok(entries
            .iter()
            .filter_map(|e| parse_queue_key(host, &e.key))
            .collect())
    }

    /// Whether any host has anything queued.
    pub async fn anything_queued(&self) -> Result<bool> {
        Ok(!self.scan_prefix("q:{", true, 1).await?.is_empty())
    }

    /// Stores a page's text under its fingerprint unless it is there; the URL already stored
    /// under it otherwise.
    pub async fn store_page(&self, fingerprint: &str, page: &PageRecord) -> Result<Option<String>> {
        let key = page_key(fingerprint);
        let written = self
            .client
            .put(KEYSPACE, key.as_bytes(), &encode(page), Condition::IfAbsent)
            .await?;
        if written.0 {
            return Ok(None);
        }
        match self.get::<PageRecord>(&key).await? {
            Some((existing, _)) => Ok(Some(existing.url)),
            None => Ok(None),
        }
    }

    /// A stored page whose simhash is within [`super::fingerprint::NEAR_BITS`] of `simhash`:
    /// its fingerprint. The four bands are looked up at once.
    pub async fn find_near(&self, simhash: u64) -> Result<Option<String>> {
        use super::fingerprint::{band, near, BANDS};
        let prefixes: Vec<String> = (0..BANDS)
            .map(|i| near_prefix(i, band(simhash, i)))
            .collect();
        let scans = prefixes.iter().map(|p| self.scan_prefix(p, false, 1_000));
        for (prefix, entries) in prefixes
            .iter()
            .zip(futures_util::future::join_all(scans).await)
        {
            for e in entries? {
                let Some(hex) = std::str::from_utf8(&e.key)
                    .ok()
                    .and_then(|k| k.strip_prefix(prefix.as_str()))
                else {
                    continue;
                };
                if let Ok(other) = u64::from_str_radix(hex, 16) {
                    if near(simhash, other) {
                        let fp = e.value.as_deref().unwrap_or_default();
                        return Ok(Some(String::from_utf8_lossy(fp).to_string()));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Indexes a stored page's simhash under each of its bands (the four writes at once).
    pub async fn index_near(&self, simhash: u64, fingerprint: &str) -> Result<()> {
        use super::fingerprint::{band, BANDS};
        let keys: Vec<String> = (0..BANDS)
            .map(|i| near_key(i, band(simhash, i), simhash))
            .collect();
        let writes = keys.iter().map(|key| {
            self.client.put(
                KEYSPACE,
                key.as_bytes(),
                fingerprint.as_bytes(),
                Condition::None,
            )
        });
        for done in futures_util::future::join_all(writes).await {
            done?;
        }
        Ok(())
    }

    pub async fn crawl_record(&self) -> Result<Option<CrawlRecord>> {
        Ok(self.get::<CrawlRecord>(CRAWL_KEY).await?.map(|(r, _)| r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_put_a_hosts_records_in_one_partition_and_its_queue_in_time_order() {
        use kvstore::partition::slot as key_slot;
        let host = "127.0.0.2:8081";
        let slot = key_slot(host_key(host).as_bytes());
        assert_eq!(key_slot(url_key(host, "/a{b}").as_bytes()), slot);
        assert_eq!(key_slot(queue_key(host, 5, "/a").as_bytes()), slot);
        assert!(queue_key(host, 999, "/z") < queue_key(host, 1_000, "/a"));
        assert_eq!(
            parse_queue_key(host, queue_key(host, 42, "/w/a:b.html?x=1").as_bytes()),
            Some((42, "/w/a:b.html?x=1".to_string()))
        );
        assert_eq!(
            parse_queue_key("other:1", queue_key(host, 1, "/").as_bytes()),
            None
        );
    }

    #[test]
    fn a_lease_is_free_when_absent_expired_or_mine() {
        let mut h = HostRecord::new("http", "h:1");
        assert!(h.free_at(10, "w1"));
        h.lease = Some(Lease {
            owner: "w1".into(),
            until_ms: 100,
        });
        assert!(h.free_at(50, "w1"));
        assert!(!h.free_at(50, "w2"));
        assert!(h.free_at(100, "w2"));
    }

    #[test]
    fn a_host_taken_from_an_unreleased_lease_waits_the_delay_after_it_ran_out() {
        let delay = std::time::Duration::from_millis(20);
        let mut h = HostRecord::new("http", "h:1");
        h.next_fetch_ms = 1_000;
        // Released (or never held): the recorded next fetch stands.
        let c = h.clone().claimed("w2", 9_000, delay);
        assert_eq!(c.next_fetch_ms, 1_000);
        assert_eq!(
            c.lease.as_ref().map(|l| (l.owner.as_str(), l.until_ms)),
            Some(("w2", 9_000))
        );
        assert_eq!(c.seq, h.seq + 1);
        // Held until 5,000 by a worker now gone, even under this very name: not before 5,020.
        for owner in ["w1", "w2"] {
            h.lease = Some(Lease {
                owner: owner.into(),
                until_ms: 5_000,
            });
            assert_eq!(h.clone().claimed("w2", 9_000, delay).next_fetch_ms, 5_020);
        }
        // A later recorded next fetch (a back-off) stands.
        h.next_fetch_ms = 7_000;
        assert_eq!(h.clone().claimed("w2", 9_000, delay).next_fetch_ms, 7_000);
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_named() {
        let u = UrlRecord::queued("http://h:1/a", 2, 0, 7);
        let back: UrlRecord = decode("u", &encode(&u)).unwrap();
        assert_eq!(back, u);
        let err = decode::<UrlRecord>("u:{h:1}:/a", b"{").unwrap_err();
        assert!(err.to_string().contains("u:{h:1}:/a"), "{err}");
    }
}
