//! The crawler: a URL frontier in the store partitioned by host ([`frontier`]), workers that
//! hold hosts by lease and fetch politely ([`worker`]), and the pure parts they use: URL
//! canonicalisation ([`canon`]), fetch outcomes ([`policy`]), text and links ([`extract`]),
//! content fingerprints ([`fingerprint`]).
//!
//! This module seeds a crawl and reports on it; `thesaurus-scraper crawl` starts the worker
//! processes and watches them until nothing is queued.

pub mod canon;
pub mod extract;
pub mod fetch;
pub mod fingerprint;
pub mod frontier;
pub mod policy;
pub mod worker;

use std::collections::BTreeMap;

use serde::Serialize;
use url::Url;

use frontier::{CrawlRecord, Frontier, UrlRecord, CRAWL_KEY, KEYSPACE};

/// Wall-clock milliseconds since the Unix epoch (leases and retry times are shared between
/// processes on one machine, so they are wall-clock times).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The first whole millisecond at which a host may be asked again, `delay` after `at` (a
/// response's arrival). Rounded up: a fetch waits until `now_ms() >= ` this, and `now_ms()`
/// truncates, so rounding down would let it go up to a millisecond early.
pub fn allowed_after(at: std::time::SystemTime, delay: std::time::Duration) -> u64 {
    let us = (at + delay)
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    us.div_ceil(1000)
}

/// Seeds a crawl: its record (seeds and scope: the seeds' hosts and `extra_scope`), a host
/// record per host, and each seed queued unless seen. Running it again adds what is new.
pub async fn seed(
    frontier: &Frontier,
    seeds: &[Url],
    extra_scope: &[String],
    partitions: u32,
) -> frontier::Result<CrawlRecord> {
    frontier.ensure_keyspace(partitions).await?;
    let mut record = frontier.crawl_record().await?.unwrap_or(CrawlRecord {
        seeds: Vec::new(),
        scope: Vec::new(),
        started_ms: now_ms(),
    });
    for s in seeds {
        if !record.seeds.contains(&s.to_string()) {
            record.seeds.push(s.to_string());
        }
        let host = canon::host_key(s);
        if !record.scope.contains(&host) {
            record.scope.push(host);
        }
    }
    for h in extra_scope {
        if !record.scope.contains(h) {
            record.scope.push(h.clone());
        }
    }
    frontier
        .client
        .put(
            KEYSPACE,
            CRAWL_KEY.as_bytes(),
            &frontier::encode(&record),
            kvstore::wire::Condition::None,
        )
        .await?;
    for s in seeds {
        let host = canon::host_key(s);
        frontier.ensure_host(s.scheme(), &host).await?;
        let path = canon::path_key(s);
        frontier
            .add_if_new(&host, &path, &UrlRecord::queued(s.as_str(), 0, 0, now_ms()))
            .await?;
    }
    Ok(record)
}

/// One host's progress.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostStatus {
    pub queued: u64,
    pub counts: frontier::Counts,
    /// Who holds it, if anyone.
    pub lease: Option<String>,
}

/// The crawl as a whole.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Status {
    pub hosts: BTreeMap<String, HostStatus>,
    pub queued: u64,
    /// Every host's counts added up (in the JSON, beside `queued`).
    #[serde(flatten)]
    pub totals: frontier::Counts,
    pub started_ms: u64,
    pub elapsed_s: f64,
    /// URLs settled per second since the crawl started.
    pub rate: f64,
}

impl Status {
    /// URLs with a final state.
    pub fn settled(&self) -> u64 {
        self.totals.settled()
    }
}

/// Reads the crawl's status from the store.
pub async fn status(frontier: &Frontier) -> frontier::Result<Status> {
    let mut s = Status::default();
    if let Some(c) = frontier.crawl_record().await? {
        s.started_ms = c.started_ms;
    }
    let now = now_ms();
    for (host, (record, _)) in frontier.hosts().await? {
        let queued = frontier
            .scan_prefix(&frontier::queue_prefix(&host), true, usize::MAX)
            .await?
            .len() as u64;
        let c = &record.counts;
        s.queued += queued;
        s.totals.add(c);
        s.hosts.insert(
            host,
            HostStatus {
                queued,
                counts: c.clone(),
                lease: record.lease.filter(|l| l.until_ms > now).map(|l| l.owner),
            },
        );
    }
    s.elapsed_s = now.saturating_sub(s.started_ms) as f64 / 1000.0;
    if s.elapsed_s > 0.0 {
        s.rate = s.settled() as f64 / s.elapsed_s;
    }
    Ok(s)
}

/// The status as a text table.
pub fn render_status(s: &Status) -> String {
    let row = |name: &str, queued: u64, c: &frontier::Counts, lease: &str| {
        format!(
            "{name:<24} {queued:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  {lease}\n",
            c.done, c.duplicate, c.redirected, c.failed, c.skipped, c.disallowed
        )
    };
    let mut out = format!(
        "{:<24} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}  lease\n",
        "host", "queued", "done", "dup", "redir", "failed", "skipped", "robots"
    );
    for (host, h) in &s.hosts {
        out.push_str(&row(
            host,
            h.queued,
            &h.counts,
            h.lease.as_deref().unwrap_or("-"),
        ));
    }
    out.push_str(&row("all", s.queued, &s.totals, ""));
    out.push_str(&format!(
        "{} settled in {:.0} s ({:.1} URLs/s), {} retries, {:.1} MB fetched\n",
        s.settled(),
        s.elapsed_s,
        s.rate,
        s.totals.retries,
        s.totals.bytes as f64 / 1e6
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn the_next_fetch_is_never_sooner_than_the_delay() {
        // A response at 1000.9 ms with a 5 ms delay: not before 1005.9, so 1006.
        let at = UNIX_EPOCH + Duration::from_micros(1_000_900);
        assert_eq!(allowed_after(at, Duration::from_millis(5)), 1_006);
        // Exactly on a millisecond: that millisecond.
        let at = UNIX_EPOCH + Duration::from_millis(2_000);
        assert_eq!(allowed_after(at, Duration::from_millis(10)), 2_010);
        assert_eq!(allowed_after(at, Duration::ZERO), 2_000);
    }
}
