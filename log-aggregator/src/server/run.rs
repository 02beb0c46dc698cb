//! `log-aggregator serve`: binds its listeners, reaches the store, brings its index up to
//! date (logging progress), then serves; follows the journal, commits the index, applies
//! retention, and on SIGINT/SIGTERM stops taking logs, stores what it has queued, and lets
//! requests in flight finish.
//!
//! Bringing the index up to date: in memory, every bucket retention keeps is indexed from the
//! store. On disk (`--index-dir`), the index opens as it was last committed, and only what
//! it lacks is read: the buckets it has no index for (new, lost or torn) from the store, and
//! everything else from the journal, from the checkpoint it saved (a little before, for
//! writes still in flight then). A checkpoint older than the journal keeps entries (it
//! expires them after [`store::JOURNAL_TTL_MS`]) says nothing of what arrived since, so then
//! every bucket is read again, and the records the index holds already are skipped.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use super::{now_ms, router, syslog, App};
use crate::feed::{Feed, JOURNAL_SKEW_MS};
use crate::index::{Indexes, Opened};
use crate::layout::{bucket_of, BUCKET_MS};
use crate::store::{self, LogStore};

/// How often the journal is read (and the index committed, while the ingest is light).
pub const FEED_INTERVAL_MS: u64 = 200;
/// While a poll finds at most this many lines not yet searchable, the index commits at every
/// poll (a line is searchable about one poll after it is stored).
pub const COMMIT_PROMPT_LINES_MAX: usize = 2_000;
/// Under a heavier ingest the index commits at most this often, as Elasticsearch refreshes
/// once a second: every commit writes a segment that later merges rewrite, so committing
/// each poll would spend the CPU that the store needs to take the lines in.
pub const COMMIT_INTERVAL_MAX_MS: u64 = 1_000;

/// Whether the journal's poll commits the index: with `uncommitted` lines waiting, the last
/// commit `since_ms` ago.
pub fn commit_due(uncommitted: usize, since_ms: u64) -> bool {
    uncommitted <= COMMIT_PROMPT_LINES_MAX || since_ms >= COMMIT_INTERVAL_MAX_MS
}
/// How often retention runs, by default.
pub const RETENTION_EVERY_MS_DEFAULT: i64 = 60_000;
/// How many buckets before the retention cut each sweep deletes (covers a day of downtime).
pub const RETENTION_SWEEP_BUCKETS: i64 = 24 * 6;

pub struct ServeConfig {
    pub store: Vec<String>,
    pub http: String,
    pub syslog_tcp: Option<String>,
    pub syslog_udp: Option<String>,
    pub token: String,
    pub name: Option<String>,
    pub partitions: u32,
    pub retention_ms: i64,
    /// HTTP pushes stored at once (more get 429).
    pub pushes_in_flight: usize,
    /// How often retention runs.
    pub retention_every_ms: i64,
    /// A stream's most bytes kept: past it, its oldest buckets are deleted.
    pub stream_bytes_max: Option<u64>,
    /// Where the index is kept (`None`: in memory).
    pub index_dir: Option<std::path::PathBuf>,
}

/// What a start reads to bring its index up to date: the buckets (of `first..=last`) to
/// index from the store, and the checkpoint to follow the journal from, if it can (`has`:
/// whether the index holds a bucket). A checkpoint the journal no longer reaches back to (or
/// from the future: a clock set back) is no use, and then every bucket is read.
pub fn catch_up_plan(
    first: i64,
    last: i64,
    now: i64,
    checkpoint: Option<i64>,
    has: impl Fn(i64) -> bool,
) -> (Vec<i64>, Option<i64>) {
    let journal_reach = store::JOURNAL_TTL_MS as i64 - 2 * JOURNAL_SKEW_MS;
    let checkpoint = checkpoint.filter(|&c| c <= now && now - c < journal_reach);
    let wanted = (0..=(last - first) / BUCKET_MS)
        .map(|i| first + i * BUCKET_MS)
        .filter(|&b| checkpoint.is_none() || !has(b))
        .collect();
    (wanted, checkpoint)
}

pub async fn serve(
    config: ServeConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let http = TcpListener::bind(&config.http)
        .await
        .with_context(|| format!("listening on {}", config.http))?;
    let tcp = match &config.syslog_tcp {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("listening for syslog on tcp {a}"))?,
        ),
        None => None,
    };
    let udp = match &config.syslog_udp {
        Some(a) => Some(
            UdpSocket::bind(a)
                .await
                .with_context(|| format!("listening for syslog on udp {a}"))?,
        ),
        None => None,
    };
    let http_addr = http.local_addr()?;
    let name = config.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "aggregator".into());
        format!("{host}:{}", http_addr.port())
    });
    let client = Arc::new(ClusterClient::new(
        config.store.clone(),
        ClusterConfig::default(),
    ));
    loop {
        match store::ensure_keyspace(&client, config.partitions).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "the store is not reachable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    let boot = now_ms();
    // On the suite's landing page (every store node's /suite).
    let registration = kvstore::client::registry::register(
        client.clone(),
        kvstore::client::registry::Service {
            name: "log-aggregator".into(),
            url: format!("http://{http_addr}"),
            health: "/health".into(),
            keyspaces: vec![crate::layout::KEYSPACE.into()],
            about: format!("collect and search logs (aggregator {name})"),
        },
    );
    let store = Arc::new(LogStore::new(client, format!("{name}/{boot}")));
    let (indexes, opened) = match &config.index_dir {
        Some(dir) => Indexes::open(dir)?,
        None => (Indexes::default(), Opened::default()),
    };
    if indexes.on_disk() {
        tracing::info!(
            buckets = opened.buckets,
            lines = opened.lines,
            broken = opened.broken.len(),
            checkpoint = opened.checkpoint,
            "opened the index on disk"
        );
    }
    let indexes = Arc::new(indexes);
    let app = Arc::new(App::new(
        name.clone(),
        store.clone(),
        indexes.clone(),
        config.token,
        config.pushes_in_flight,
    ));

    let stop_rx = app.stop.subscribe();
    let server = {
        let app = app.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let service = router(app).into_make_service_with_connect_info::<SocketAddr>();
            axum::serve(http, service)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await
        })
    };
    tracing::info!(%name, http = %http_addr, "aggregator listening; bringing the index up to date");

    // The index, from the store: the buckets retention keeps that the index lacks (all of
    // them, unless the journal still holds everything since the checkpoint).
    let started = Instant::now();
    let first = bucket_of(boot - config.retention_ms);
    let last = bucket_of(boot);
    let (wanted, checkpoint) =
        catch_up_plan(first, last, boot, opened.checkpoint, |b| indexes.has(b));
    if indexes.on_disk() {
        match checkpoint {
            Some(c) => tracing::info!(
                behind_ms = boot - c,
                buckets = wanted.len(),
                "catching up from the journal; indexing the buckets the index lacks from the store"
            ),
            None => tracing::info!(
                buckets = wanted.len(),
                "no checkpoint within the journal's reach: reading every bucket from the store"
            ),
        }
    }
    let mut feed = Feed::new(store.clone(), indexes.clone(), checkpoint.unwrap_or(boot));
    let buckets = wanted.len();
    let mut done = 0usize;
    let mut lines = 0usize;
    let mut fed = crate::feed::Fed::default();
    loop {
        let from = done;
        let progress = |bucket: i64, n: usize| {
            done += 1;
            lines += n;
            if n > 0 || done == buckets || done.is_multiple_of(100) {
                let rate = lines as f64 / started.elapsed().as_secs_f64().max(0.001);
                let eta = started.elapsed().as_secs_f64() / done as f64 * (buckets - done) as f64;
                tracing::info!(
                    bucket,
                    lines = n,
                    done,
                    buckets,
                    total_lines = lines,
                    rate = format!("{rate:.0}/s"),
                    eta = format!("{eta:.0}s"),
                    "rebuilding the index"
                );
            }
        };
        // (From the bucket that failed last time, if it did: the ones before are in.)
        match feed.rebuild(&wanted[from..], &mut fed, progress).await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, "rebuilding the index failed; going on from there");
                tokio::time::sleep(error.retry_after()).await;
            }
        }
    }
    // Then the journal since the checkpoint, before serving (a restart must not answer
    // without what it had indexed before it stopped).
    let caught_up = if checkpoint.is_some() {
        loop {
            match feed.poll(now_ms(), None).await {
                Ok(fed) => break fed,
                Err(error) => {
                    tracing::warn!(%error, "reading the journal failed; retrying");
                    tokio::time::sleep(error.retry_after()).await;
                }
            }
        }
    } else {
        Default::default()
    };
    let now = now_ms();
    indexes.commit(now)?;
    indexes.save_checkpoint(feed.position())?;
    app.ready.store(true, Ordering::SeqCst);
    tracing::info!(
        from_store = fed.new,
        from_journal = caught_up.new,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "index up to date; serving"
    );

    // Syslog, through one queue to the store.
    let (queue_tx, queue_rx) = mpsc::channel(syslog::QUEUE_RECORDS_MAX);
    let drained = tokio::spawn(syslog::drain(app.clone(), queue_rx));
    let mut listeners = Vec::new();
    if let Some(l) = tcp {
        tracing::info!(addr = %l.local_addr()?, "syslog over TCP");
        listeners.push(tokio::spawn(syslog::serve_tcp(
            app.clone(),
            l,
            queue_tx.clone(),
            stop_rx.clone(),
        )));
    }
    if let Some(s) = udp {
        tracing::info!(addr = %s.local_addr()?, "syslog over UDP");
        listeners.push(tokio::spawn(syslog::serve_udp(
            app.clone(),
            s,
            queue_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(queue_tx);

    // The journal, into the index and the live tail.
    let follower = {
        let app = app.clone();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(FEED_INTERVAL_MS));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_commit = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let now = now_ms();
                let tail = &app.tail;
                let mut to_tail = |r| {
                    let _ = tail.send(Arc::new(r));
                };
                match feed.poll(now, Some(&mut to_tail)).await {
                    Ok(fed) => {
                        let m = &app.metrics;
                        m.indexed.fetch_add(fed.new as u64, Ordering::Relaxed);
                        m.dedup_hits
                            .fetch_add(fed.duplicates as u64, Ordering::Relaxed);
                        let lag = if fed.entries > 0 {
                            now - feed.newest_ms
                        } else {
                            0
                        };
                        m.lag_ms.store(lag.max(0) as u64, Ordering::Relaxed);
                    }
                    Err(error) => tracing::warn!(%error, "reading the journal failed; retrying"),
                }
                let since = last_commit.elapsed().as_millis() as u64;
                if !commit_due(app.indexes.uncommitted(), since) {
                    continue;
                }
                last_commit = std::time::Instant::now();
                // Off the runtime's threads: a commit may wait for a push being indexed. Once
                // it is in, the journal up to the poll's position is in the index for good.
                let indexes = app.indexes.clone();
                let position = feed.position();
                let committed = tokio::task::spawn_blocking(move || {
                    indexes.commit(now)?;
                    indexes.save_checkpoint(position)
                });
                match committed.await {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => tracing::error!(%error, "committing the index failed"),
                    Err(error) => tracing::error!(%error, "committing the index panicked"),
                }
            }
        })
    };

    // Retention.
    let retention = {
        let app = app.clone();
        let retention_ms = config.retention_ms;
        let stream_bytes_max = config.stream_bytes_max;
        let every = Duration::from_millis(config.retention_every_ms.max(100) as u64);
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.changed() => return,
                }
                let cut = bucket_of(now_ms() - retention_ms);
                let dropped = app.indexes.drop_before(cut);
                let mut deleted = 0;
                for i in 1..=RETENTION_SWEEP_BUCKETS {
                    match app.store.delete_bucket(cut - i * BUCKET_MS).await {
                        Ok(n) => deleted += n,
                        Err(error) => {
                            tracing::warn!(%error, "retention: deleting a bucket failed");
                            break;
                        }
                    }
                }
                // Per-stream size limits: a stream's oldest buckets past its limit, from the
                // store first (so a crash between the two leaves nothing the index lacks).
                for (stream, bucket) in stream_bytes_max
                    .map(|max| app.indexes.over_limit(max))
                    .unwrap_or_default()
                {
                    match app.store.delete_stream_bucket(&stream, bucket).await {
                        Ok(n) => {
                            deleted += n;
                            if let Err(error) = app.indexes.drop_stream_bucket(&stream, bucket) {
                                tracing::error!(%error, "retention: dropping from the index failed");
                            }
                            tracing::info!(service = %stream.service, host = %stream.host, bucket, chunks = n, "a stream over its size limit lost its oldest bucket");
                        }
                        Err(error) => {
                            tracing::warn!(%error, "retention: deleting a stream's bucket failed");
                            break;
                        }
                    }
                }
                if dropped > 0 || deleted > 0 {
                    tracing::info!(
                        dropped_buckets = dropped,
                        deleted_chunks = deleted,
                        "retention"
                    );
                }
            }
        })
    };

    shutdown.await;
    tracing::info!("stopping: storing what is queued, finishing requests");
    app.stopping.store(true, Ordering::SeqCst);
    let _ = app.stop.send(true);
    for l in listeners {
        let _ = l.await;
    }
    let _ = drained.await;
    let _ = follower.await;
    let _ = retention.await;
    server.await??;
    registration.withdraw().await;
    // What was indexed since the follower's last commit (the journal has it too).
    if let Err(error) = app.indexes.commit(now_ms()) {
        tracing::error!(%error, "committing the index failed");
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: i64 = BUCKET_MS;

    #[test]
    fn the_index_commits_every_poll_while_light_and_once_a_second_under_a_flood() {
        // Light: every poll, however recent the last commit.
        assert!(commit_due(0, 0));
        assert!(commit_due(COMMIT_PROMPT_LINES_MAX, FEED_INTERVAL_MS));
        // Heavy: not until a second has passed since the last.
        let heavy = COMMIT_PROMPT_LINES_MAX + 1;
        assert!(!commit_due(heavy, FEED_INTERVAL_MS));
        assert!(!commit_due(heavy, COMMIT_INTERVAL_MAX_MS - 1));
        assert!(commit_due(heavy, COMMIT_INTERVAL_MAX_MS));
    }

    #[test]
    fn a_start_reads_from_the_store_only_what_its_index_lacks_while_the_journal_reaches_back() {
        let now = 100 * B + 5;
        let has = |b: i64| b != 98 * B; // one bucket lost
        let (wanted, from) = catch_up_plan(96 * B, 100 * B, now, Some(now - 60_000), has);
        assert_eq!(wanted, vec![98 * B]);
        assert_eq!(from, Some(now - 60_000));
        // No checkpoint, one older than the journal keeps, or one from the future: all.
        let every: Vec<i64> = (96..=100).map(|i| i * B).collect();
        let old = now - store::JOURNAL_TTL_MS as i64;
        for checkpoint in [None, Some(old), Some(now + 1)] {
            assert_eq!(
                catch_up_plan(96 * B, 100 * B, now, checkpoint, has),
                (every.clone(), None),
                "{checkpoint:?}"
            );
        }
    }
}
