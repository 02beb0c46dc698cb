//! `kvstore load`: a steady write load on a cluster through `ClusterClient`, with a progress
//! line every second, and at the end a check that every acknowledged write can be read back.
//!
//! It is what you run in one terminal while you kill, add, drain and remove nodes in another:
//! the progress lines show the writes going on (and the errors and the latency of each
//! second), and the final check shows that nothing acknowledged was lost. Each client writes
//! its own keys, `load-{client}-{n:08}`, each with a value that names it, so a read tells a
//! lost write from a stale one. A write whose outcome is unknown (its deadline passed with
//! no answer) is counted apart and not checked: it may or may not have been applied.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::client::cluster::ClusterClient;
use crate::client::ClientError;
use crate::wire::Consistency;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub keyspace: String,
    /// Concurrent writers, each with one write in flight.
    pub clients: u32,
    /// Stop after this long (`None`: at Ctrl-C or SIGTERM).
    pub duration: Option<Duration>,
    pub value_bytes: usize,
    /// Read every acknowledged write back at the end.
    pub verify: bool,
}

/// Most concurrent writers.
pub const LOAD_CLIENTS_MAX: u32 = 1024;
/// Largest value a load writes.
pub const LOAD_VALUE_BYTES_MAX: usize = 1024 * 1024;

/// Counters shared by the writers and the progress line.
#[derive(Default)]
struct Counters {
    acknowledged: AtomicU64,
    failed: AtomicU64,
    unknown: AtomicU64,
    /// Latencies of the writes acknowledged since the last progress line, in microseconds.
    window: Mutex<Vec<u64>>,
}

fn key(client: u32, n: u64) -> String {
    format!("load-{client}-{n:08}")
}

fn value(client: u32, n: u64, bytes: usize) -> Vec<u8> {
    let mut v = key(client, n).into_bytes();
    v.resize(bytes.max(v.len()), b'.');
    v
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(i).map_or(0.0, |&us| us as f64 / 1000.0)
}

/// Runs the load against the nodes at `addrs`; returns the exit code (0: every acknowledged
/// write read back, or no check asked; 1: some were missing or wrong; 2: bad options).
pub async fn run(
    addrs: &str,
    options: LoadOptions,
    stop: impl std::future::Future<Output = ()>,
) -> i32 {
    if options.clients == 0 || options.clients > LOAD_CLIENTS_MAX {
        eprintln!("kvstore: --clients must be 1 to {LOAD_CLIENTS_MAX}");
        return 2;
    }
    if options.value_bytes > LOAD_VALUE_BYTES_MAX {
        eprintln!("kvstore: --value-bytes must be at most {LOAD_VALUE_BYTES_MAX}");
        return 2;
    }
    let nodes = addrs.split(',').map(|a| a.trim().to_string()).collect();
    let client = Arc::new(ClusterClient::new(nodes, Default::default()));
    let counters = Arc::new(Counters::default());
    let stopping = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut writers = Vec::new();
    for id in 0..options.clients {
        let (client, counters, stopping) = (client.clone(), counters.clone(), stopping.clone());
        let (keyspace, bytes) = (options.keyspace.clone(), options.value_bytes);
        writers.push(tokio::spawn(async move {
            // The numbers of this writer's acknowledged writes.
            let mut acknowledged = Vec::new();
            let mut n = 0u64;
            while !stopping.load(Ordering::Relaxed) {
                let at = Instant::now();
                let (k, v) = (key(id, n), value(id, n, bytes));
                let result = client
                    .put(&keyspace, k.as_bytes(), &v, Default::default())
                    .await;
                match result {
                    Ok(_) => {
                        acknowledged.push(n);
                        counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                        let us = at.elapsed().as_micros() as u64;
                        counters.window.lock().expect("window lock").push(us);
                    }
                    Err(error) if error.outcome_unknown() => {
                        counters.unknown.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(error) => {
                        counters.failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%error, "a write failed");
                    }
                }
                n += 1;
            }
            acknowledged
        }));
    }
    eprintln!(
        "kvstore load: {} writers into keyspace {:?}, {}-byte values; {}",
        options.clients,
        options.keyspace,
        options.value_bytes,
        options
            .duration
            .map_or("Ctrl-C stops it".to_string(), |d| format!(
                "for {} s",
                d.as_secs_f64()
            ))
    );
    let deadline = async {
        match options.duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(stop, deadline);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut last = 0;
    loop {
        tokio::select! {
            _ = &mut stop => break,
            _ = &mut deadline => break,
            _ = ticker.tick() => {
                let total = counters.acknowledged.load(Ordering::Relaxed);
                let mut window = std::mem::take(&mut *counters.window.lock().expect("window lock"));
                window.sort_unstable();
                eprintln!(
                    "{:>6.0} s  {:>7} writes/s  p50 {:>7.2} ms  p99 {:>7.2} ms  acknowledged {}  failed {}  unknown {}",
                    started.elapsed().as_secs_f64(),
                    total - last,
                    percentile(&window, 0.5),
                    percentile(&window, 0.99),
                    total,
                    counters.failed.load(Ordering::Relaxed),
                    counters.unknown.load(Ordering::Relaxed),
                );
                last = total;
            }
        }
    }
    stopping.store(true, Ordering::Relaxed);
    let mut acknowledged = Vec::new();
    for (id, writer) in writers.into_iter().enumerate() {
        let numbers = writer.await.expect("a writer task");
        acknowledged.push((id as u32, numbers));
    }
    let seconds = started.elapsed().as_secs_f64();
    let total: usize = acknowledged.iter().map(|(_, n)| n.len()).sum();
    println!(
        "acknowledged {total} writes in {seconds:.1} s ({:.0}/s); failed {}; outcome unknown {}",
        total as f64 / seconds,
        counters.failed.load(Ordering::Relaxed),
        counters.unknown.load(Ordering::Relaxed),
    );
    if !options.verify {
        return 0;
    }
    let wrong = verify(&client, &options, acknowledged).await;
    if wrong == 0 {
        println!("verified: every acknowledged write reads back");
        0
    } else {
        println!("verified: {wrong} acknowledged writes are missing or wrong");
        1
    }
}

/// Reads every acknowledged write back (linearizably), a writer's keys per task; returns how
/// many are missing or hold another value.
async fn verify(
    client: &Arc<ClusterClient>,
    options: &LoadOptions,
    acknowledged: Vec<(u32, Vec<u64>)>,
) -> u64 {
    let wrong = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for (id, numbers) in acknowledged {
        let (client, wrong) = (client.clone(), wrong.clone());
        let (keyspace, bytes) = (options.keyspace.clone(), options.value_bytes);
        readers.push(tokio::spawn(async move {
            for n in numbers {
                let k = key(id, n);
                let got = client
                    .get(&keyspace, k.as_bytes(), Consistency::Linearizable)
                    .await;
                let ok = match &got {
                    Ok(Some(v)) => v.value[..] == value(id, n, bytes)[..],
                    Ok(None) => false,
                    Err(error) => {
                        eprintln!("kvstore load: reading {k} back: {error}");
                        false
                    }
                };
                if !ok {
                    if !matches!(got, Err(ClientError::Timeout { .. })) {
                        eprintln!("kvstore load: {k} was acknowledged but reads back {got:?}");
                    }
                    wrong.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for reader in readers {
        reader.await.expect("a reader task");
    }
    wrong.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_names_its_key_and_has_the_asked_length() {
        assert_eq!(value(3, 7, 0), b"load-3-00000007");
        let v = value(3, 7, 20);
        assert_eq!(v.len(), 20);
        assert!(v.starts_with(b"load-3-00000007"));
    }

    #[test]
    fn percentiles_of_a_window() {
        let sorted = [1000, 2000, 3000, 4000];
        assert_eq!(percentile(&sorted, 0.5), 3.0);
        assert_eq!(percentile(&sorted, 0.99), 4.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }
}
