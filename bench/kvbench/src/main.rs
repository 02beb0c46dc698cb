//! `kvbench`: one load loop, two systems. It drives a kvstore cluster (binary protocol) and an
//! etcd cluster (gRPC, the `etcd-client` crate) the same way, so `bench/etcd-compare.sh` can
//! put their figures side by side; and it measures kvstore's failover time.
//!
//! ```text
//! kvbench kvstore   ADDR[,ADDR...]  put|get  CLIENTS SECONDS   (one group: to its leader)
//! kvbench kvcluster ADDR[,ADDR...]  put|get  CLIENTS SECONDS   (any partitions: ClusterClient)
//! kvbench etcd      ENDPOINT[,...]  put|get  CLIENTS SECONDS
//! kvbench failover KILLS            (starts its own 3-node cluster; needs KVSTORE_BIN)
//! kvbench fill ADDR[,ADDR...] MEGABYTES   (ClusterClient: 4 KiB values until that much is
//!                                           written; 32 writers)
//! ```
//!
//! `KVBENCH_KEYSPACE` names the keyspace of the kvstore loads (default `default`).
//!
//! Each client is one connection with one request in flight, writing 8-byte sequential keys
//! and 256-byte values to the leader, or reading (linearizable) random keys of 1,000 written
//! first. A load prints one JSON line: operations, seconds, ops/s, p50 and p99 in ms, errors.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY_BYTES: usize = 8;
const VALUE_BYTES: usize = 256;
const READ_KEYS: u64 = 1000;

/// The keyspace the kvstore loads use (`KVBENCH_KEYSPACE`, default `default`).
fn keyspace() -> String {
    std::env::var("KVBENCH_KEYSPACE").unwrap_or_else(|_| "default".into())
}

fn key(n: u64) -> Vec<u8> {
    format!("{:0width$}", n % 100_000_000, width = KEY_BYTES).into_bytes()
}

/// The per-client operation, for one system.
trait Target: Send + Sync + 'static {
    type Conn: Send + 'static;
    fn connect(&self) -> impl std::future::Future<Output = Self::Conn> + Send;
    fn put(
        c: &mut Self::Conn,
        k: Vec<u8>,
        v: Vec<u8>,
    ) -> impl std::future::Future<Output = bool> + Send;
    fn get(c: &mut Self::Conn, k: Vec<u8>) -> impl std::future::Future<Output = bool> + Send;
}

struct Kvstore {
    leader: String,
}

impl Target for Kvstore {
    type Conn = kvstore::client::Client;
    async fn connect(&self) -> Self::Conn {
        kvstore::client::Client::connect(self.leader.as_str(), Default::default())
            .await
            .expect("connecting to the kvstore leader")
    }
    async fn put(c: &mut Self::Conn, k: Vec<u8>, v: Vec<u8>) -> bool {
        c.put("default", &k, &v).await.is_ok()
    }
    async fn get(c: &mut Self::Conn, k: Vec<u8>) -> bool {
        c.get_with("default", &k, kvstore::wire::Consistency::Linearizable)
            .await
            .is_ok()
    }
}

/// A partitioned cluster through `ClusterClient`: each client routes every key to its
/// partition's leader by the cluster map.
struct Kvcluster {
    addrs: Vec<String>,
}

impl Target for Kvcluster {
    type Conn = kvstore::client::cluster::ClusterClient;
    async fn connect(&self) -> Self::Conn {
        kvstore::client::cluster::ClusterClient::new(self.addrs.clone(), Default::default())
    }
    async fn put(c: &mut Self::Conn, k: Vec<u8>, v: Vec<u8>) -> bool {
        c.put(&keyspace(), &k, &v, Default::default()).await.is_ok()
    }
    async fn get(c: &mut Self::Conn, k: Vec<u8>) -> bool {
        c.get(&keyspace(), &k, kvstore::wire::Consistency::Linearizable)
            .await
            .is_ok()
    }
}

/// Writes `megabytes` of 4 KiB values into `KVBENCH_KEYSPACE` through `ClusterClient`, 32
/// writers at once; prints the bytes written and the rate.
async fn fill(addrs: Vec<String>, megabytes: u64) {
    const VALUE: usize = 4096;
    const WRITERS: u64 = 32;
    let client = Arc::new(kvstore::client::cluster::ClusterClient::new(
        addrs,
        Default::default(),
    ));
    let total = megabytes * 1024 * 1024 / VALUE as u64;
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let (client, next) = (client.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let value = vec![b'a' + (w % 26) as u8; VALUE];
            let ks = keyspace();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total {
                    return;
                }
                let k = format!("fill-{n:010}");
                client
                    .put(&ks, k.as_bytes(), &value, Default::default())
                    .await
                    .expect("a fill write");
                if n % 2048 == 0 {
                    eprintln!("fill: {} of {megabytes} MB", (n * VALUE as u64) >> 20);
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("a fill task");
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = total * VALUE as u64;
    println!(
        "{}",
        serde_json::json!({
            "op": "fill", "keyspace": keyspace(), "bytes": bytes, "seconds": seconds,
            "mb_per_s": bytes as f64 / 1048576.0 / seconds,
        })
    );
}

struct Etcd {
    leader: String,
}

impl Target for Etcd {
    type Conn = etcd_client::Client;
    async fn connect(&self) -> Self::Conn {
        etcd_client::Client::connect([self.leader.as_str()], None)
            .await
            .expect("connecting to the etcd leader")
    }
    async fn put(c: &mut Self::Conn, k: Vec<u8>, v: Vec<u8>) -> bool {
        c.put(k, v, None).await.is_ok()
    }
    async fn get(c: &mut Self::Conn, k: Vec<u8>) -> bool {
        // etcd's default range read is linearizable.
        c.get(k, None).await.is_ok()
    }
}

async fn load<T: Target>(target: Arc<T>, system: &str, op: &str, clients: u64, seconds: f64) {
    if op == "get" {
        let mut c = target.connect().await;
        for n in 0..READ_KEYS {
            assert!(
                T::put(&mut c, key(n), vec![b'v'; VALUE_BYTES]).await,
                "preload"
            );
        }
    }
    let next = Arc::new(AtomicU64::new(1_000_000));
    let errors = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for id in 0..clients {
        let (target, next, errors) = (target.clone(), next.clone(), errors.clone());
        let op = op.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = target.connect().await;
            let mut latencies = Vec::new();
            let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (id + 1);
            while Instant::now() < until {
                let t = Instant::now();
                let ok = if op == "put" {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    T::put(&mut c, key(n), vec![b'v'; VALUE_BYTES]).await
                } else {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    T::get(&mut c, key(rng % READ_KEYS)).await
                };
                if ok {
                    latencies.push(t.elapsed());
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("a client task"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "system": system, "op": op, "clients": clients, "ops": all.len(),
            "seconds": elapsed, "ops_per_s": all.len() as f64 / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99),
            "errors": errors.load(Ordering::Relaxed),
        })
    );
}

/// The kvstore node that accepts a write (the others redirect).
async fn kvstore_leader(addrs: &str) -> String {
    for _ in 0..100 {
        for addr in addrs.split(',') {
            if let Ok(c) = kvstore::client::Client::connect(addr, Default::default()).await {
                if c.put("default", b"probe", b"1").await.is_ok() {
                    return addr.to_string();
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no kvstore leader among {addrs}");
}

/// The etcd member that leads (its status says so).
async fn etcd_leader(endpoints: &str) -> String {
    for endpoint in endpoints.split(',') {
        let mut c = etcd_client::Client::connect([endpoint], None)
            .await
            .expect("connecting to etcd");
        let status = c.status().await.expect("etcd status");
        if status.leader() == status.header().map_or(0, |h| h.member_id()) {
            return endpoint.to_string();
        }
    }
    panic!("no etcd leader among {endpoints}");
}

/// Kills the leader of a fresh 3-node cluster `kills` times; prints each time from the kill
/// to the first write a client gets acknowledged, and the median.
fn failover(kills: usize) {
    use tests::cluster::{Cluster, ClusterOptions};
    let options = ClusterOptions {
        proxies: false,
        args: Vec::new(),
        ..ClusterOptions::default()
    };
    let mut cluster = Cluster::start("failover-bench", options).expect("starting a cluster");
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    let mut times = Vec::new();
    for round in 0..kills {
        let leader = cluster
            .wait_for_leader(Duration::from_secs(20))
            .expect("a leader");
        // Every node's client must be connected before the kill, so that the measurement
        // is the cluster's, not connection set-up.
        let addresses = cluster.client_addresses();
        let client = kvstore::client::cluster::ClusterClient::new(
            addresses,
            kvstore::client::cluster::ClusterConfig {
                backoff_ms: 5,
                ..Default::default()
            },
        );
        rt.block_on(client.put("default", b"warm", b"1", Default::default()))
            .expect("a write before the kill");
        cluster.kill(leader).expect("kill");
        let killed = Instant::now();
        rt.block_on(client.put("default", b"after", b"1", Default::default()))
            .expect("a write after the kill");
        let took = killed.elapsed();
        eprintln!(
            "kill {}: node {leader}, first write after {took:?}",
            round + 1
        );
        times.push(took);
        cluster.restart(leader).expect("restart");
        std::thread::sleep(Duration::from_secs(2));
    }
    times.sort();
    let ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1000.0).collect();
    println!(
        "{}",
        serde_json::json!({
            "system": "kvstore", "op": "failover", "kills": kills,
            "p50_ms": ms[ms.len() / 2], "max_ms": ms[ms.len() - 1], "all_ms": ms,
        })
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage =
        "usage: kvbench kvstore|kvcluster|etcd ADDRS put|get CLIENTS SECONDS | kvbench failover KILLS \
         | kvbench fill ADDRS MEGABYTES";
    match args.first().map(String::as_str) {
        Some("failover") => failover(args.get(1).and_then(|n| n.parse().ok()).unwrap_or(10)),
        Some("fill") if args.len() == 3 => {
            let addrs = args[1].split(',').map(str::to_string).collect();
            let megabytes = args[2].parse().expect(usage);
            let rt = tokio::runtime::Runtime::new().expect("a runtime");
            rt.block_on(fill(addrs, megabytes));
        }
        Some(system @ ("kvstore" | "kvcluster" | "etcd")) if args.len() == 5 => {
            let (addrs, op) = (&args[1], args[2].as_str());
            let clients: u64 = args[3].parse().expect(usage);
            let seconds: f64 = args[4].parse().expect(usage);
            assert!(op == "put" || op == "get", "{usage}");
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(async {
                if system == "kvstore" {
                    let leader = kvstore_leader(addrs).await;
                    load(Arc::new(Kvstore { leader }), system, op, clients, seconds).await
                } else if system == "kvcluster" {
                    let addrs = addrs.split(',').map(str::to_string).collect();
                    load(Arc::new(Kvcluster { addrs }), system, op, clients, seconds).await
                } else {
                    let leader = etcd_leader(addrs).await;
                    load(Arc::new(Etcd { leader }), system, op, clients, seconds).await
                }
            });
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
}
