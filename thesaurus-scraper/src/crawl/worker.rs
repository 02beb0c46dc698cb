//! A crawl worker (`thesaurus-scraper worker`): one process that claims hosts from the
//! frontier by lease and crawls each politely: one request at a time, the Crawl-delay after
//! each response, robots.txt obeyed.
//!
//! For each host it holds, a task loops: wait for the host's next allowed fetch; take the
//! first URL of its queue that is due; fetch it; decide (see [`super::policy`]); and commit the
//! outcome in one batch fenced by the host's lease (see [`super::frontier`]). What must
//! survive the worker's death is written before that commit and is idempotent: the page's
//! text under its fingerprint, its links to other hosts (added only if absent). So a worker
//! killed at any point leaves the URL queued, the next holder fetches it again, and its text
//! is stored once and its outcome committed once. Requests go out only while the lease holds
//! (see `Hold`), and the next holder waits the Crawl-delay after a lease that was never
//! released (see [`HostRecord::claimed`]): a takeover is as polite as one worker.
//!
//! A host whose queue is empty is released at once; a worker told to stop (SIGTERM) releases
//! the hosts it holds, so others need not wait for the leases to lapse.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kvstore::wire::{BatchOp, Condition};
use tokio::sync::{watch, Mutex};
use url::Url;

use super::extract;
use super::fetch::{Fetched, Fetcher, AGENT};
use super::fingerprint;
use super::frontier::{
    self, delete, encode, put, Batch, Frontier, HostRecord, Lease, PageRecord, RobotsCopy,
    UrlRecord, UrlState,
};
use super::policy::{Decision, Policy};
use super::{canon, now_ms};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This worker's name in leases (unique per process).
    pub id: String,
    pub lease: Duration,
    /// Hosts held at once.
    pub hosts_max: usize,
    /// Obey Crawl-delay (off only to measure raw speed; robots.txt is obeyed always).
    pub polite: bool,
    /// Requests in flight per host when not polite.
    pub per_host: usize,
    /// The longest Crawl-delay honoured; longer ones are cut to it.
    pub crawl_delay_max: Duration,
    /// The delay between requests to a host whose robots.txt names none.
    pub default_delay: Duration,
    /// How long a fetched robots.txt is trusted.
    pub robots_ttl: Duration,
    /// Links deeper than this from a seed are not followed.
    pub depth_max: u32,
    pub policy: Policy,
}

impl Default for WorkerConfig {
    fn default() -> WorkerConfig {
        WorkerConfig {
            id: format!("w-{}", std::process::id()),
            lease: Duration::from_secs(10),
            hosts_max: 16,
            polite: true,
            per_host: 1,
            crawl_delay_max: Duration::from_secs(10),
            default_delay: Duration::ZERO,
            robots_ttl: Duration::from_secs(3600),
            depth_max: 1_000,
            policy: Policy::default(),
        }
    }
}

/// What a worker has done, for its log and metrics.
#[derive(Debug, Default)]
pub struct WorkerStats {
    pub fetches: AtomicU64,
    pub pages: AtomicU64,
    pub bytes: AtomicU64,
    pub commits: AtomicU64,
    pub leases_lost: AtomicU64,
}

/// A host this worker holds: its record as last written and that write's version.
struct Held {
    record: HostRecord,
    version: u64,
    lost: bool,
}

/// A held host as its tasks share it: the record behind a lock (fenced commits take it), and
/// the lease's end as last written, 0 once lost, readable without the lock. Requests are sent
/// only while the lease holds and are cut when it runs out, even while a commit is stuck
/// retrying with the lock held: whoever takes the host next waits the Crawl-delay after that
/// end (see [`HostRecord::claimed`]), so the host is never asked sooner, nor twice at once.
struct Hold {
    state: Mutex<Held>,
    until_ms: AtomicU64,
}

impl Hold {
    fn new(held: Held) -> Hold {
        let until = held.record.lease.as_ref().map_or(0, |l| l.until_ms);
        Hold {
            state: Mutex::new(held),
            until_ms: AtomicU64::new(until),
        }
    }

    /// Publishes the lease's end after a commit (or its loss).
    fn written(&self, h: &Held) {
        let until = match &h.record.lease {
            Some(l) if !h.lost => l.until_ms,
            _ => 0,
        };
        self.until_ms.store(until, Ordering::SeqCst);
    }

    /// Returns once the lease has run out or is lost.
    async fn lapsed(&self) {
        loop {
            let (until, now) = (self.until_ms.load(Ordering::SeqCst), now_ms());
            if until <= now {
                return;
            }
            // A renewal moves the end on: look again then.
            tokio::time::sleep(Duration::from_millis(until - now)).await;
        }
    }
}

pub struct Worker {
    frontier: Frontier,
    fetcher: Fetcher,
    cfg: WorkerConfig,
    /// Hosts the crawl may fetch from.
    scope: HashSet<String>,
    pub stats: Arc<WorkerStats>,
    /// Hosts whose records this worker has made sure exist.
    known_hosts: std::sync::Mutex<HashSet<String>>,
}

/// What a host's task does next.
enum Next {
    Urls(Vec<(u64, String)>),
    Wait(Duration),
    End(HostEnd),
}

enum HostEnd {
    /// The queue is empty; the lease was released.
    Empty,
    Lost,
    Stopped,
}

impl Worker {
    pub fn new(
        frontier: Frontier,
        fetcher: Fetcher,
        cfg: WorkerConfig,
        scope: HashSet<String>,
    ) -> Worker {
        Worker {
            frontier,
            fetcher,
            cfg,
            scope,
            stats: Arc::new(WorkerStats::default()),
            known_hosts: std::sync::Mutex::new(HashSet::new()),
        }
    }

    /// Claims and crawls hosts until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
        let mut tasks: tokio::task::JoinSet<(String, HostEnd)> = tokio::task::JoinSet::new();
        let mut held: HashSet<String> = HashSet::new();
        // A host found empty is not claimed again for a while.
        let mut cooldown: HashMap<String, u64> = HashMap::new();
        loop {
            if *stop.borrow() {
                break;
            }
            if held.len() < self.cfg.hosts_max {
                match self.frontier.hosts().await {
                    Ok(hosts) => {
                        let now = now_ms();
                        let mut candidates: Vec<_> = hosts
                            .into_iter()
                            .filter(|(h, (r, _))| {
                                !held.contains(h)
                                    && cooldown.get(h).is_none_or(|t| *t <= now)
                                    && r.free_at(now, &self.cfg.id)
                            })
                            .collect();
                        // Spread workers over hosts: each starts at its own place in the list.
                        let n = candidates.len().max(1);
                        candidates.rotate_left(fingerprint_usize(&self.cfg.id) % n);
                        // One claim per round: workers started together share the hosts
                        // rather than the first taking them all.
                        let mut claimed = false;
                        for (host, (record, version)) in candidates {
                            if held.len() >= self.cfg.hosts_max || claimed {
                                break;
                            }
                            match self.claim(record, version).await {
                                Ok(Some(h)) => {
                                    claimed = true;
                                    held.insert(host.clone());
                                    let me = self.clone();
                                    let stop = stop.clone();
                                    tasks.spawn(async move {
                                        let end = me.crawl_host(h, stop).await;
                                        (host, end)
                                    });
                                }
                                Ok(None) => {}
                                Err(e) => tracing::warn!(%host, error = %e, "claiming a host"),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "listing hosts"),
                }
            }
            tokio::select! {
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((host, end)) = done {
                        held.remove(&host);
                        match end {
                            HostEnd::Empty => {
                                cooldown.insert(host, now_ms() + 1_000);
                            }
                            HostEnd::Lost => {
                                self.stats.leases_lost.fetch_add(1, Ordering::Relaxed);
                                tracing::warn!(%host, "lost the lease on a host");
                            }
                            HostEnd::Stopped => {}
                        }
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = stop.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// Takes a host's lease if it is free: compare-and-set on its record's version.
    async fn claim(&self, record: HostRecord, version: u64) -> frontier::Result<Option<Arc<Hold>>> {
        let delay = self.delay(record.robots.as_ref().and_then(parse_robots).as_ref());
        let until = now_ms() + self.cfg.lease.as_millis() as u64;
        let record = record.claimed(&self.cfg.id, until, delay);
        let key = frontier::host_key(&record.host);
        let written = self
            .frontier
            .client
            .cas(
                frontier::KEYSPACE,
                key.as_bytes(),
                version,
                &encode(&record),
            )
            .await?;
        if !written.applied {
            return Ok(None);
        }
        tracing::debug!(host = %record.host, "claimed");
        Ok(Some(Arc::new(Hold::new(Held {
            record,
            version: written.version,
            lost: false,
        }))))
    }

    /// One fenced write for a held host: `ops` with the host's record, changed by `update`
    /// and conditioned on its version. False if the lease is lost.
    async fn commit(
        &self,
        held: &Hold,
        ops: Vec<BatchOp>,
        update: impl FnOnce(&mut HostRecord),
    ) -> bool {
        let mut h = held.state.lock().await;
        if h.lost {
            return false;
        }
        let mut record = h.record.clone();
        update(&mut record);
        record.seq = h.record.seq + 1;
        let key = frontier::host_key(&record.host);
        let mut batch = Vec::with_capacity(ops.len() + 1);
        batch.push(put(
            key.clone(),
            encode(&record),
            Condition::IfVersion(h.version),
        ));
        batch.extend(ops);
        let deadline = h.record.lease.as_ref().map_or(0, |l| l.until_ms);
        let written = loop {
            match self.frontier.batch(batch.clone()).await {
                Ok(Batch::Applied { version }) => {
                    h.record = record;
                    h.version = version;
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    break true;
                }
                Ok(Batch::Refused { .. }) => {
                    // Either another worker took the host, or an earlier try of this very
                    // batch applied and its answer was lost: the sequence number tells.
                    match self.frontier.get::<HostRecord>(&key).await {
                        Ok(Some((now, version)))
                            if now.seq == record.seq
                                && now.lease.as_ref().map(|l| &l.owner) == Some(&self.cfg.id) =>
                        {
                            h.record = now;
                            h.version = version;
                            break true;
                        }
                        Ok(_) => break false,
                        Err(e) => tracing::warn!(error = %e, "reading a host record back"),
                    }
                }
                Err(e) => {
                    tracing::warn!(host = %record.host, error = %e, "a frontier write failed; retrying")
                }
            }
            if now_ms() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        h.lost = !written;
        held.written(&h);
        written
    }

    /// Renews the lease until the host task ends.
    async fn renew_lease(&self, held: Arc<Hold>, done: Arc<AtomicBool>) {
        let every = self.cfg.lease / 3;
        while !done.load(Ordering::Relaxed) {
            tokio::time::sleep(every).await;
            if done.load(Ordering::Relaxed) {
                return;
            }
            let until = now_ms() + self.cfg.lease.as_millis() as u64;
            let id = self.cfg.id.clone();
            if !self
                .commit(&held, Vec::new(), |r| {
                    r.lease = Some(Lease {
                        owner: id,
                        until_ms: until,
                    })
                })
                .await
            {
                return;
            }
        }
    }

    async fn crawl_host(self: &Arc<Self>, held: Arc<Hold>, stop: watch::Receiver<bool>) -> HostEnd {
        let done = Arc::new(AtomicBool::new(false));
        let renewer = {
            let me = self.clone();
            let (held, done) = (held.clone(), done.clone());
            tokio::spawn(async move { me.renew_lease(held, done).await })
        };
        let end = self.crawl_host_inner(&held, stop).await;
        done.store(true, Ordering::Relaxed);
        renewer.abort();
        if !matches!(end, HostEnd::Lost) {
            // Let the host go now rather than when the lease lapses.
            self.commit(&held, Vec::new(), |r| r.lease = None).await;
        }
        end
    }

    async fn crawl_host_inner(
        self: &Arc<Self>,
        held: &Arc<Hold>,
        mut stop: watch::Receiver<bool>,
    ) -> HostEnd {
        let (host, scheme) = {
            let h = held.state.lock().await;
            (h.record.host.clone(), h.record.scheme.clone())
        };
        // The URLs this host has (a cache for adding links; the store stays the truth).
        let seen: Arc<std::sync::Mutex<HashSet<String>>> = loop {
            let prefix = frontier::url_prefix(&host);
            match self.frontier.scan_prefix(&prefix, true, usize::MAX).await {
                Ok(entries) => {
                    break Arc::new(std::sync::Mutex::new(
                        entries
                            .iter()
                            .filter_map(|e| {
                                std::str::from_utf8(&e.key)
                                    .ok()?
                                    .strip_prefix(&prefix)
                                    .map(String::from)
                            })
                            .collect(),
                    ));
                }
                Err(e) => {
                    tracing::warn!(%host, error = %e, "reading a host's URLs");
                    if sleep_or_stop(Duration::from_millis(500), &mut stop).await {
                        return HostEnd::Stopped;
                    }
                }
            }
        };
        // Polite: one request at a time, the Crawl-delay between. Not: `per_host` at once.
        let per_host = if self.cfg.polite {
            1
        } else {
            self.cfg.per_host.max(1)
        };
        let mut robots: Option<Arc<texting_robots::Robot>> = None;
        // Fetches run as tasks of their own: they must make progress (and release the host's
        // lock) while this loop waits on the store.
        let mut running: tokio::task::JoinSet<(String, Result<bool, frontier::FrontierError>)> =
            tokio::task::JoinSet::new();
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut end = None;
        loop {
            if end.is_none() {
                if *stop.borrow() {
                    end = Some(HostEnd::Stopped);
                } else if held.state.lock().await.lost {
                    end = Some(HostEnd::Lost);
                }
            }
            if let Some(e) = end.take() {
                // Let what is in flight finish (its outcome is committed or refused).
                while running.join_next().await.is_some() {}
                return e;
            }
            if running.len() < per_host {
                match self
                    .next_urls(
                        held,
                        &host,
                        &scheme,
                        &mut robots,
                        &in_flight,
                        per_host - running.len(),
                    )
                    .await
                {
                    Next::Urls(urls) => {
                        for (not_before, path) in urls {
                            in_flight.insert(path.clone());
                            let (me, held, seen) = (self.clone(), held.clone(), seen.clone());
                            let (host, robots) = (host.clone(), robots.clone());
                            running.spawn(async move {
                                let r = me
                                    .process(
                                        &held,
                                        &host,
                                        not_before,
                                        &path,
                                        robots.as_deref(),
                                        &seen,
                                    )
                                    .await;
                                (path, r)
                            });
                        }
                    }
                    Next::Wait(d) if running.is_empty() => {
                        if sleep_or_stop(d, &mut stop).await {
                            end = Some(HostEnd::Stopped);
                        }
                        continue;
                    }
                    Next::Wait(_) => {}
                    Next::End(e) if running.is_empty() => {
                        end = Some(e);
                        continue;
                    }
                    Next::End(_) => {}
                }
            }
            let joined = running.join_next().await;
            if let Some(Err(e)) = &joined {
                // A fetch's task panicked: a bug. Let the host go; another try starts afresh.
                tracing::error!(%host, error = %e, "a fetch task failed");
                end = Some(HostEnd::Stopped);
            }
            if let Some(Ok((path, result))) = joined {
                in_flight.remove(&path);
                match result {
                    Ok(true) => {}
                    Ok(false) => end = Some(HostEnd::Lost),
                    Err(e) => {
                        tracing::warn!(%host, %path, error = %e, "processing a URL; trying again");
                        if sleep_or_stop(Duration::from_millis(500), &mut stop).await {
                            end = Some(HostEnd::Stopped);
                        }
                    }
                }
            }
        }
    }

    /// What to fetch next for a host: up to `room` due URLs not in flight, or how long to
    /// wait, or the end (its queue is empty, or its lease is lost). Fetches robots.txt first
    /// when it is missing or stale.
    async fn next_urls(
        &self,
        held: &Hold,
        host: &str,
        scheme: &str,
        robots: &mut Option<Arc<texting_robots::Robot>>,
        in_flight: &HashSet<String>,
        room: usize,
    ) -> Next {
        let record = held.state.lock().await.record.clone();
        let now = now_ms();
        if record.next_fetch_ms > now {
            return Next::Wait(Duration::from_millis(
                (record.next_fetch_ms - now).min(1_000),
            ));
        }
        // robots.txt: fetched when missing or stale, kept in the host's record. One that keeps
        // failing is asked again after a back-off, and after ROBOTS_FAILURES_MAX failures in
        // a row counts as "disallow everything" until it is fetched again (after its TTL).
        let fresh = record.robots.as_ref().is_some_and(|r| {
            now < r.fetched_ms + self.cfg.robots_ttl.as_millis() as u64
                && (!r.failed() || r.failures >= frontier::ROBOTS_FAILURES_MAX)
        });
        if !fresh {
            if !in_flight.is_empty() {
                return Next::Wait(Duration::from_millis(10));
            }
            let mut copy = tokio::select! {
                biased;
                () = held.lapsed() => return Next::End(HostEnd::Lost),
                copy = self.fetch_robots(scheme, host) => copy,
            };
            let failed = copy.failed();
            if failed {
                copy.failures = record.robots.as_ref().map_or(0, |r| r.failures) + 1;
                tracing::warn!(%host, status = copy.status, failures = copy.failures, "robots.txt failed");
            }
            let delay = if failed && copy.failures < frontier::ROBOTS_FAILURES_MAX {
                // robots.txt unreachable: touch nothing for a while.
                self.cfg.policy.backoff(3)
            } else {
                self.delay(parse_robots(&copy).as_ref())
            };
            let next = super::allowed_after(std::time::SystemTime::now(), delay);
            let ok = self
                .commit(held, Vec::new(), |r| {
                    r.robots = Some(copy);
                    r.next_fetch_ms = next;
                })
                .await;
            *robots = None;
            return if ok {
                Next::Wait(Duration::ZERO)
            } else {
                Next::End(HostEnd::Lost)
            };
        }
        if robots.is_none() {
            *robots = parse_robots(record.robots.as_ref().expect("fresh robots")).map(Arc::new);
        }
        let queue = match self.frontier.queue(host, room + in_flight.len()).await {
            Ok(q) => q,
            Err(e) => {
                tracing::warn!(%host, error = %e, "reading a host's queue");
                return Next::Wait(Duration::from_millis(500));
            }
        };
        if queue.is_empty() {
            return Next::End(HostEnd::Empty);
        }
        let now = now_ms();
        let due: Vec<(u64, String)> = queue
            .iter()
            .filter(|(t, p)| *t <= now && !in_flight.contains(p))
            .take(room)
            .cloned()
            .collect();
        if due.is_empty() {
            let first = queue.iter().map(|(t, _)| *t).min().unwrap_or(now);
            return Next::Wait(Duration::from_millis(
                first.saturating_sub(now).clamp(10, 1_000),
            ));
        }
        Next::Urls(due)
    }

    fn delay(&self, robots: Option<&texting_robots::Robot>) -> Duration {
        if !self.cfg.polite {
            return Duration::ZERO;
        }
        robots
            .and_then(|r| r.delay)
            .map(|d| Duration::from_secs_f64(f64::from(d).max(0.0)))
            .unwrap_or(self.cfg.default_delay)
            .min(self.cfg.crawl_delay_max)
    }

    async fn fetch_robots(&self, scheme: &str, host: &str) -> RobotsCopy {
        let url = format!("{scheme}://{host}/robots.txt");
        let fetched = self.fetcher.get(&url, true).await;
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let (status, body) = match fetched {
            Fetched::Response(a) => {
                let mut body = a
                    .body
                    .map(|b| String::from_utf8_lossy(&b).to_string())
                    .unwrap_or_default();
                body.truncate(floor_boundary(&body, frontier::ROBOTS_BYTES_MAX));
                (a.status, body)
            }
            Fetched::Error(e) => {
                tracing::warn!(%host, error = %e, "fetching robots.txt");
                (0, String::new())
            }
        };
        tracing::info!(%host, status, "robots.txt");
        RobotsCopy {
            fetched_ms: now_ms(),
            status,
            body,
            failures: 0,
        }
    }

    /// Fetches one queued URL and commits its outcome. `Ok(false)`: the lease is lost.
    async fn process(
        &self,
        held: &Hold,
        host: &str,
        not_before: u64,
        path: &str,
        robots: Option<&texting_robots::Robot>,
        seen: &std::sync::Mutex<HashSet<String>>,
    ) -> Result<bool, frontier::FrontierError> {
        let queue_key = frontier::queue_key(host, not_before, path);
        let url_key = frontier::url_key(host, path);
        let record = match self.frontier.get::<UrlRecord>(&url_key).await? {
            Some((r, _)) if r.state == UrlState::Queued => r,
            // A stale hint: its URL is settled (or was never written).
            _ => return Ok(self.commit(held, vec![delete(queue_key)], |_| {}).await),
        };
        let Ok(url) = Url::parse(&record.url) else {
            let r = settle(record, UrlState::Failed, None, Some("not a URL".into()));
            return Ok(self
                .settle(held, &url_key, &queue_key, r, Vec::new(), |h| {
                    h.counts.failed += 1
                })
                .await);
        };
        if robots.is_some_and(|r| !r.allowed(url.as_str())) {
            let r = settle(
                record,
                UrlState::Disallowed,
                None,
                Some("robots.txt".into()),
            );
            return Ok(self
                .settle(held, &url_key, &queue_key, r, Vec::new(), |h| {
                    h.counts.disallowed += 1
                })
                .await);
        }

        let fetched = tokio::select! {
            biased;
            // Never a request without the lease, nor one that outlives it.
            () = held.lapsed() => return Ok(false),
            fetched = self.fetcher.get(url.as_str(), false) => fetched,
        };
        self.stats.fetches.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        let next_fetch = super::allowed_after(std::time::SystemTime::now(), self.delay(robots));
        let status = match &fetched {
            Fetched::Response(a) => Some(a.status),
            Fetched::Error(_) => None,
        };
        let bytes = match &fetched {
            Fetched::Response(a) => a.bytes as u64,
            Fetched::Error(_) => 0,
        };
        self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        let decision = self
            .cfg
            .policy
            .decide(&url, &fetched, record.attempts, record.hops, now);
        let mut ops = Vec::new();
        let mut record = record;
        record.status = status;
        let counted: fn(&mut frontier::Counts);
        match decision {
            Decision::Retry { at_ms, reason } => {
                record.attempts += 1;
                record.not_before_ms = at_ms;
                record.reason = Some(reason);
                ops.push(delete(queue_key.clone()));
                ops.push(put(
                    frontier::queue_key(host, at_ms, path),
                    Bytes::new(),
                    Condition::None,
                ));
                ops.push(put(url_key.clone(), encode(&record), Condition::None));
                return Ok(self
                    .commit(held, ops, |r| {
                        r.next_fetch_ms = next_fetch;
                        r.counts.retries += 1;
                        r.counts.bytes += bytes;
                    })
                    .await);
            }
            Decision::Redirect { to } => {
                self.add_links(
                    host,
                    std::slice::from_ref(&to),
                    record.depth,
                    record.hops + 1,
                    seen,
                    &mut ops,
                )
                .await?;
                record.other = Some(to.to_string());
                record = settle(record, UrlState::Redirected, None, None);
                counted = |c| c.redirected += 1;
            }
            Decision::Failed { reason } => {
                record = settle(record, UrlState::Failed, None, Some(reason));
                counted = |c| c.failed += 1;
            }
            Decision::Skipped { reason } => {
                record = settle(record, UrlState::Skipped, None, Some(reason));
                counted = |c| c.skipped += 1;
            }
            Decision::Page => {
                let Fetched::Response(answer) = &fetched else {
                    unreachable!("a page is a response")
                };
                let body = answer.body.clone().unwrap_or_default();
                let html = String::from_utf8_lossy(&body);
                let page = match extract::extract(&html, &url) {
                    Ok(page) => page,
                    Err(e) => {
                        let r = settle(record, UrlState::Skipped, None, Some(e.to_string()));
                        return Ok(self
                            .settle(held, &url_key, &queue_key, r, ops, move |h| {
                                h.counts.skipped += 1;
                                h.counts.bytes += bytes;
                                h.next_fetch_ms = h.next_fetch_ms.max(next_fetch);
                            })
                            .await);
                    }
                };
                if record.depth < self.cfg.depth_max {
                    self.add_links(host, &page.links, record.depth + 1, 0, seen, &mut ops)
                        .await?;
                }
                let (state, fp, other) = self.store_text(&url, &page).await?;
                record.other = other;
                let dup = state == UrlState::Duplicate;
                record = settle(record, state, fp, None);
                self.stats.pages.fetch_add(1, Ordering::Relaxed);
                counted = if dup {
                    |c| c.duplicate += 1
                } else {
                    |c| c.done += 1
                };
            }
        }
        Ok(self
            .settle(held, &url_key, &queue_key, record, ops, move |r| {
                counted(&mut r.counts);
                r.counts.bytes += bytes;
                // The next fetch waits the Crawl-delay from this response.
                r.next_fetch_ms = r.next_fetch_ms.max(next_fetch);
            })
            .await)
    }

    /// Commits a URL's final state: its record, its queue entry gone, `ops` (links found).
    async fn settle(
        &self,
        held: &Hold,
        url_key: &str,
        queue_key: &str,
        record: UrlRecord,
        mut ops: Vec<BatchOp>,
        update: impl FnOnce(&mut HostRecord),
    ) -> bool {
        ops.push(put(url_key.to_string(), encode(&record), Condition::None));
        ops.push(delete(queue_key.to_string()));
        self.commit(held, ops, update).await
    }

    /// Queues links: this host's inside the coming fenced batch (`ops`), other hosts' now, in
    /// their own partitions, each only if never seen. Links outside the crawl's scope are
    /// dropped.
    async fn add_links(
        &self,
        host: &str,
        links: &[Url],
        depth: u32,
        hops: u32,
        seen: &std::sync::Mutex<HashSet<String>>,
        ops: &mut Vec<BatchOp>,
    ) -> Result<(), frontier::FrontierError> {
        let now = now_ms();
        for link in links {
            let link_host = canon::host_key(link);
            if !self.scope.contains(&link_host) {
                continue;
            }
            let path = canon::path_key(link);
            let record = UrlRecord::queued(link.as_str(), depth, hops, now);
            if link_host == host {
                if seen.lock().expect("seen lock").insert(path.clone()) {
                    ops.push(put(
                        frontier::url_key(host, &path),
                        encode(&record),
                        Condition::None,
                    ));
                    ops.push(put(
                        frontier::queue_key(host, now, &path),
                        Bytes::new(),
                        Condition::None,
                    ));
                }
            } else {
                let known = self
                    .known_hosts
                    .lock()
                    .expect("hosts lock")
                    .contains(&link_host);
                if !known {
                    self.frontier.ensure_host(link.scheme(), &link_host).await?;
                    self.known_hosts
                        .lock()
                        .expect("hosts lock")
                        .insert(link_host.clone());
                }
                self.frontier.add_if_new(&link_host, &path, &record).await?;
            }
        }
        Ok(())
    }

    /// Stores a page's text once: `Duplicate` (with the other URL) when the same or nearly the
    /// same text is stored already.
    async fn store_text(
        &self,
        url: &Url,
        page: &extract::Extracted,
    ) -> Result<(UrlState, Option<String>, Option<String>), frontier::FrontierError> {
        if page.text.trim().is_empty() {
            return Ok((UrlState::Done, None, None));
        }
        let fp = fingerprint::exact(&page.text);
        let sim = fingerprint::simhash(&page.text);
        if let Some(other_fp) = self.frontier.find_near(sim).await? {
            if other_fp != fp {
                let other = self
                    .frontier
                    .get::<PageRecord>(&frontier::page_key(&other_fp))
                    .await?
                    .map(|(p, _)| p.url);
                if other.as_deref() != Some(url.as_str()) {
                    return Ok((UrlState::Duplicate, Some(other_fp), other));
                }
            }
        }
        let record = PageRecord {
            url: url.to_string(),
            title: page.title.clone(),
            text: page.text.clone(),
            simhash: sim,
            fetched_ms: now_ms(),
        };
        match self.frontier.store_page(&fp, &record).await? {
            // Stored by another URL: a duplicate. (Stored by this URL: an earlier try of
            // this fetch, by a worker that died before committing.)
            Some(other) if other != url.as_str() => {
                Ok((UrlState::Duplicate, Some(fp), Some(other)))
            }
            _ => {
                self.frontier.index_near(sim, &fp).await?;
                Ok((UrlState::Done, Some(fp), None))
            }
        }
    }
}

fn settle(
    mut r: UrlRecord,
    state: UrlState,
    fingerprint: Option<String>,
    reason: Option<String>,
) -> UrlRecord {
    r.state = state;
    r.fingerprint = fingerprint;
    if reason.is_some() {
        r.reason = reason;
    } else if state != UrlState::Failed {
        r.reason = None;
    }
    r.at_ms = now_ms();
    r
}

fn parse_robots(copy: &RobotsCopy) -> Option<texting_robots::Robot> {
    match copy.status {
        // Fetched: its rules.
        200..=299 => texting_robots::Robot::new(AGENT, copy.body.as_bytes()).ok(),
        // Unreachable (after ROBOTS_FAILURES_MAX tries): nothing may be fetched.
        0 | 500..=599 => texting_robots::Robot::new(AGENT, b"User-agent: *\nDisallow: /\n").ok(),
        // Missing (4xx): everything allowed.
        _ => texting_robots::Robot::new(AGENT, b"").ok(),
    }
}

fn floor_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

fn fingerprint_usize(s: &str) -> usize {
    s.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) as usize
}

/// Sleeps, or returns true at once if `stop` turns true meanwhile.
async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => *stop.borrow(),
        _ = stop.changed() => true,
    }
}
