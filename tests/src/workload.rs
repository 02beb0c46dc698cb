//! A concurrent client workload against a cluster that records every operation with its call
//! and completion times, for [`crate::linearizability::check_kv`].
//!
//! Each client is a [`ClusterClient`] (its own session) running gets (linearizable and under
//! the leader's lease), puts, increments and deletes on a few shared keys, so operations overlap on every key. Every value is a decimal
//! integer, so an increment never meets a value it cannot add to. An operation that fails
//! with an unknown outcome is recorded without a completion (it may have happened); one that
//! definitely did not happen is left out; a read that failed is left out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::client::ClientError;
use kvstore::wire::{Condition, Consistency};

use crate::linearizability::{KvInput, KvOperation, KvOutput, Operation};

/// The keyspace the workload uses.
pub const KEYSPACE: &str = "default";

/// What the workload did, shared with its clients.
pub struct Recorder {
    started: Instant,
    history: Mutex<Vec<KvOperation>>,
    pub completed: AtomicU64,
    pub unknown: AtomicU64,
    pub failed: AtomicU64,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            started: Instant::now(),
            history: Mutex::default(),
            completed: AtomicU64::new(0),
            unknown: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// When it started: operations' call and completion times count from here.
    pub fn started(&self) -> Instant {
        self.started
    }

    fn now(&self) -> u64 {
        self.started.elapsed().as_micros() as u64
    }

    pub fn history(&self) -> Vec<KvOperation> {
        self.history.lock().unwrap().clone()
    }

    /// Runs `op` and records it.
    pub async fn record<F>(&self, client: u64, key: &[u8], input: KvInput, op: F)
    where
        F: std::future::Future<Output = Result<KvOutput, ClientError>>,
    {
        let call = self.now();
        let result = op.await;
        let completion = match result {
            Ok(output) => {
                self.completed.fetch_add(1, Ordering::Relaxed);
                Some((output, self.now()))
            }
            Err(e) if e.outcome_unknown() && !matches!(input, KvInput::Get) => {
                self.unknown.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        self.history.lock().unwrap().push((
            key.to_vec(),
            Operation {
                client,
                input,
                call,
                completion,
            },
        ));
    }
}

/// Settings of a workload.
#[derive(Debug, Clone)]
pub struct Workload {
    pub clients: u64,
    pub keys: u64,
    pub seed: u64,
}

/// One operation against `client`, recorded.
pub async fn run_one(rec: &Recorder, client: &ClusterClient, id: u64, key: &[u8], choice: u64) {
    let value = |n: u64| (id * 1_000_000_000 + n).to_string().into_bytes();
    match choice % 10 {
        0..=3 => {
            // Half the reads under the leader's lease: they must be linearizable too (the
            // nodes share one clock here, which a lease needs to be correct).
            let consistency = match choice % 10 {
                0 | 1 => Consistency::Linearizable,
                _ => Consistency::Lease,
            };
            let op = async {
                let got = client.get(KEYSPACE, key, consistency).await?;
                Ok(KvOutput::Value(got.map(|v| v.value.to_vec())))
            };
            rec.record(id, key, KvInput::Get, op).await;
        }
        4..=6 => {
            let v = value(choice);
            let op = async {
                client.put(KEYSPACE, key, &v, Condition::None).await?;
                Ok(KvOutput::Ok)
            };
            rec.record(id, key, KvInput::Put(v.clone()), op).await;
        }
        7 | 8 => {
            let op = async { Ok(KvOutput::Counter(client.incr(KEYSPACE, key, 1).await?)) };
            rec.record(id, key, KvInput::Incr(1), op).await;
        }
        _ => {
            let op = async { Ok(KvOutput::Applied(client.delete(KEYSPACE, key).await?)) };
            rec.record(id, key, KvInput::Delete, op).await;
        }
    }
}

/// Runs the workload until `stop` is set; returns when every client has finished its last
/// operation.
pub async fn run(
    addresses: Vec<String>,
    workload: Workload,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    run_paced(addresses, workload, Duration::ZERO, rec, stop).await
}

/// [`run`], each client waiting `pause` after each operation (a workload beside others).
pub async fn run_paced(
    addresses: Vec<String>,
    workload: Workload,
    pause: Duration,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for id in 1..=workload.clients {
        let config = ClusterConfig {
            deadline_ms: 30_000,
            ..ClusterConfig::default()
        };
        // Each client starts at a different node, so reads are served by followers too.
        let mut addresses = addresses.clone();
        let shift = id as usize % addresses.len();
        addresses.rotate_left(shift);
        let client = ClusterClient::new(addresses, config);
        let (rec, stop) = (rec.clone(), stop.clone());
        let mut rng = workload.seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let keys = workload.keys;
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let key = format!("k{}", rng % keys);
                run_one(&rec, &client, id, key.as_bytes(), rng >> 8).await;
                if !pause.is_zero() {
                    tokio::time::sleep(pause).await;
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

/// Time until a write succeeds through a fresh client, polling.
pub async fn time_to_write(addresses: Vec<String>, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let config = ClusterConfig {
        deadline_ms: limit.as_millis() as u64,
        ..ClusterConfig::default()
    };
    let client = ClusterClient::new(addresses, config);
    client
        .put(KEYSPACE, b"probe", b"1", Condition::None)
        .await
        .ok()
        .map(|_| started.elapsed())
}

/// A workload running in the background.
pub struct Running {
    pub rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    keys: u64,
}

/// Starts `workload` against the cluster at `addresses` on `rt`.
pub fn start(rt: &tokio::runtime::Runtime, addresses: Vec<String>, workload: Workload) -> Running {
    start_paced(rt, addresses, workload, Duration::ZERO)
}

/// [`start`], each client waiting `pause` after each operation.
pub fn start_paced(
    rt: &tokio::runtime::Runtime,
    addresses: Vec<String>,
    workload: Workload,
    pause: Duration,
) -> Running {
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let keys = workload.keys;
    let task = rt.spawn(run_paced(
        addresses,
        workload,
        pause,
        rec.clone(),
        stop.clone(),
    ));
    Running {
        rec,
        stop,
        task,
        keys,
    }
}

impl Running {
    /// Stops the clients, reads every key once more through `addresses` (so a lost write
    /// shows up in the history), and returns the history.
    pub fn finish(self, rt: &tokio::runtime::Runtime, addresses: Vec<String>) -> Vec<KvOperation> {
        self.stop.store(true, Ordering::Relaxed);
        let rec = self.rec;
        rt.block_on(async {
            let _ = self.task.await;
            let client = ClusterClient::new(addresses, ClusterConfig::default());
            for k in 0..self.keys {
                let key = format!("k{k}");
                run_one(&rec, &client, 0, key.as_bytes(), 0).await;
            }
        });
        let history = rec.history();
        eprintln!(
            "{} operations recorded: {} completed, {} of unknown outcome, {} failed",
            history.len(),
            rec.completed.load(Ordering::Relaxed),
            rec.unknown.load(Ordering::Relaxed),
            rec.failed.load(Ordering::Relaxed),
        );
        history
    }
}

/// Panics with every violation (and `context`, e.g. the nodes' logs) unless `history` is
/// linearizable.
pub fn assert_linearizable(history: &[KvOperation], context: impl FnOnce() -> String) {
    let started = Instant::now();
    let verdict = crate::linearizability::check_kv(history);
    eprintln!(
        "checked {} operations in {:?}",
        history.len(),
        started.elapsed()
    );
    if let Err(violations) = verdict {
        for v in &violations {
            eprintln!("{v}");
        }
        panic!(
            "{} keys are not linearizable\n{}",
            violations.len(),
            context()
        );
    }
}
