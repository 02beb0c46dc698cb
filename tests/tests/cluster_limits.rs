//! Per-keyspace limits on a real 3-node cluster: the applications share one store, and one
//! that runs away (a crawler, a log flood) must hit its own keyspace's limit, with a clear
//! error, while the others go on. Limits are set with the real `kvstore keyspace` CLI; the
//! clients are `ClusterClient` and `redis-cli -c`.

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::client::ClientError;
use kvstore::wire::{Condition, Consistency, ErrorCode};
use tests::cluster::{Cluster, ClusterOptions};
use tests::harness::{kvstore_bin, runtime, wait_until};

fn cluster(name: &str) -> Cluster {
    let cluster = Cluster::start(
        name,
        ClusterOptions {
            partitions: 8,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    cluster.wait_for_leader(Duration::from_secs(60)).unwrap();
    cluster.wait_settled(Duration::from_secs(60)).unwrap();
    cluster
}

/// `kvstore keyspace --addr … ARGS`: its stdout, asserting it succeeded.
fn keyspace(cluster: &Cluster, args: &[&str]) -> String {
    let out = Command::new(kvstore_bin())
        .args(["keyspace", "--addr", &cluster.client_addresses().join(",")])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kvstore keyspace {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn code_of(error: &ClientError) -> Option<ErrorCode> {
    match error {
        ClientError::Server { code, .. } => Some(*code),
        _ => None,
    }
}

#[test]
fn a_keyspace_at_its_byte_limit_refuses_writes_that_add_data_until_deletes_make_room() {
    let cluster = cluster("limits-bytes");
    keyspace(
        &cluster,
        &[
            "create",
            "crawl",
            "--partitions",
            "8",
            "--max-bytes",
            "200K",
        ],
    );
    keyspace(&cluster, &["create", "logs", "--partitions", "8"]);
    let listed = keyspace(&cluster, &["list"]);
    let crawl = listed.lines().find(|l| l.starts_with("crawl")).unwrap();
    assert!(crawl.ends_with("204800 bytes"), "{listed}");

    let rt = runtime();
    let client = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
    let value = vec![b'v'; 1024];
    // A runaway writer: until the store refuses.
    let started = Instant::now();
    let mut stored = 0usize;
    let refusal = loop {
        let key = format!("page:{stored:06}");
        match rt.block_on(client.put("crawl", key.as_bytes(), &value, Condition::None)) {
            Ok(_) => stored += 1,
            Err(error) => break error,
        }
        assert!(stored < 20_000, "never refused");
    };
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(code_of(&refusal), Some(ErrorCode::OverQuota), "{refusal}");
    let message = refusal.to_string();
    assert!(
        message.contains("keyspace crawl") && message.contains("limit of 204800"),
        "{message}"
    );
    // It held its limit, give or take what the writer added while the usage was a moment
    // old (each node sums the others' every second, its own every 250 ms).
    let rate = stored as f64 / elapsed;
    let held = stored * (value.len() + 11);
    assert!(held >= 150 * 1024, "refused early, at {held} bytes");
    assert!(
        (held as f64) <= 204_800.0 + rate * 1_100.0 * 1.5,
        "{held} bytes stored at {rate:.0} writes/s"
    );
    // Other keyspaces are not held back.
    rt.block_on(client.put("logs", b"line", b"fine", Condition::None))
        .unwrap();
    // Deletes go, and once the usage is below the limit again, writes do too.
    for i in 0..stored {
        let key = format!("page:{i:06}");
        rt.block_on(client.delete("crawl", key.as_bytes())).unwrap();
    }
    let again = wait_until(Duration::from_secs(10), || {
        rt.block_on(client.put("crawl", b"page:again", &value, Condition::None))
            .is_ok()
    });
    assert!(again, "writes go again once deletes made room");

    // The limit is lifted with `keyspace limit … none`; the RESP port's keyspace `default`
    // gets one too, and redis-cli sees -OOM as from a Redis at its maxmemory.
    keyspace(&cluster, &["limit", "crawl", "--max-bytes", "none"]);
    keyspace(&cluster, &["limit", "default", "--max-bytes", "20K"]);
    let port = cluster.node(1).resp.port().to_string();
    let big = "x".repeat(2048);
    let mut oom = String::new();
    let refused = wait_until(Duration::from_secs(20), || {
        for i in 0..20 {
            let out = Command::new("redis-cli")
                .args(["-c", "-p", &port, "SET", &format!("k{i}"), &big])
                .output()
                .expect("redis-cli (scripts/install-test-deps.sh installs it)");
            oom = String::from_utf8_lossy(&out.stdout).into_owned();
            if oom.starts_with("OOM") || oom.contains("(error) OOM") {
                return true;
            }
        }
        false
    });
    assert!(refused, "redis-cli never saw OOM: {oom}");
    assert!(oom.contains("keyspace default"), "{oom}");
    let out = Command::new("redis-cli")
        .args(["-c", "-p", &port, "DEL", "k0"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("OOM"),
        "a delete goes"
    );
}

#[test]
fn a_keyspace_over_its_rate_limit_is_refused_with_a_retry_hint_and_others_are_not() {
    let cluster = cluster("limits-rate");
    keyspace(
        &cluster,
        &["create", "flood", "--partitions", "8", "--max-ops", "100"],
    );
    keyspace(&cluster, &["create", "calm", "--partitions", "8"]);
    let described = keyspace(&cluster, &["describe", "flood"]);
    assert!(described.contains("limits 100 ops/s"), "{described}");

    let rt = runtime();
    let client = Arc::new(ClusterClient::new(
        cluster.client_addresses(),
        ClusterConfig::default(),
    ));
    // Warm the client's map and connections first.
    for ks in ["flood", "calm"] {
        rt.block_on(client.put(ks, b"k", b"v", Condition::None))
            .unwrap();
    }
    std::thread::sleep(Duration::from_secs(1)); // the buckets fill up again
    let seconds = 3.0;
    let count = |keyspace: &'static str| {
        let (ok, limited, other) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
        );
        let hint = Arc::new(std::sync::Mutex::new(String::new()));
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let (client, ok, limited, other, hint) = (
                    client.clone(),
                    ok.clone(),
                    limited.clone(),
                    other.clone(),
                    hint.clone(),
                );
                rt.spawn(async move {
                    let end = Instant::now() + Duration::from_secs_f64(seconds);
                    let mut i = 0u64;
                    while Instant::now() < end {
                        let key = format!("key:{t}:{}", i % 50);
                        i += 1;
                        match client
                            .get(keyspace, key.as_bytes(), Consistency::Lease)
                            .await
                        {
                            Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) if code_of(&e) == Some(ErrorCode::RateLimited) => {
                                *hint.lock().unwrap() = e.to_string();
                                limited.fetch_add(1, Ordering::Relaxed)
                            }
                            Err(_) => other.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                })
            })
            .collect();
        for t in tasks {
            rt.block_on(t).unwrap();
        }
        let hint = hint.lock().unwrap().clone();
        (
            ok.load(Ordering::Relaxed),
            limited.load(Ordering::Relaxed),
            other.load(Ordering::Relaxed),
            hint,
        )
    };
    let (ok, limited, other, hint) = count("flood");
    assert_eq!(other, 0);
    assert!(limited > 0, "never limited ({ok} served)");
    assert!(
        hint.contains("keyspace flood") && hint.contains("retry after"),
        "{hint}"
    );
    // About the limit: its rate for the run, a second's burst, and each node's share
    // rounded up to a whole partition.
    let most = (100.0 * (seconds + 1.0) * 1.4) as u64;
    assert!(ok <= most, "{ok} served, more than {most}");
    assert!(ok >= (100.0 * seconds * 0.5) as u64, "only {ok} served");

    let (calm_ok, calm_limited, calm_other, _) = count("calm");
    assert_eq!((calm_limited, calm_other), (0, 0));
    assert!(
        calm_ok > most,
        "an unlimited keyspace beside it served only {calm_ok}"
    );
}
