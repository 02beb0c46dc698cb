//! A partitioned cluster, end to end: three real nodes found the keyspace `default` with 64
//! partitions (each a Raft group of three), and clients find every key's leader by
//! themselves: `ClusterClient` through the cluster map, `redis-cli -c` through `-MOVED`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::client::ScanOptions;
use kvstore::partition::map::KeyspaceSpec;
use kvstore::wire::{BatchOp, Condition, Consistency, ErrorCode, ScanRange};
use tests::cluster::{group_of, Cluster, ClusterOptions};
use tests::harness::{runtime, wait_until};

const PARTITIONS: u64 = 64;

fn partitioned(name: &str) -> Cluster {
    let cluster = Cluster::start(
        name,
        ClusterOptions {
            partitions: PARTITIONS as u32,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    // Every group (the meta group 0 and partitions 1..=64) elects a leader.
    let all_led = || {
        (0..=PARTITIONS).all(|g| {
            (1..=3).any(|id| {
                cluster
                    .status(id)
                    .is_some_and(|s| group_of(&s, g)["role"] == "leader")
            })
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), all_led),
        "every group elected a leader:\n{}",
        cluster.logs()
    );
    cluster.wait_settled(Duration::from_secs(60)).unwrap();
    cluster
}

fn key(i: usize) -> Vec<u8> {
    format!("key:{i:05}").into_bytes()
}

#[test]
fn a_client_routes_every_key_to_its_partition_and_a_merged_scan_sees_them_all_in_order() {
    let mut cluster = partitioned("partitions-client");
    // Every node hosts a replica of every group (three replicas on three nodes), and the
    // leaders are spread over more than one node.
    let status = cluster.status(1).unwrap();
    assert_eq!(
        status["groups"].as_array().unwrap().len() as u64,
        PARTITIONS + 1
    );
    let rt = runtime();
    let client = Arc::new(ClusterClient::new(
        cluster.client_addresses(),
        ClusterConfig::default(),
    ));
    let map = rt
        .block_on(client.map())
        .expect("a cluster node serves its map");
    let ks = map.keyspace("default").unwrap();
    assert_eq!(u64::from(ks.partitions), PARTITIONS);

    // Applications make sure of their keyspace at start, several processes at once: one
    // creates it, the others find it; an existing keyspace keeps its spec.
    let ensured: Vec<_> = (0..3)
        .map(|_| {
            let client = client.clone();
            rt.spawn(async move {
                let mut spec = KeyspaceSpec::new("ensured");
                spec.partitions = 4;
                client.ensure_keyspace(spec).await
            })
        })
        .collect();
    for e in ensured {
        let map = rt.block_on(e).unwrap().expect("ensure_keyspace");
        assert_eq!(map.keyspace("ensured").unwrap().partitions, 4);
    }
    let mut other = KeyspaceSpec::new("ensured");
    other.partitions = 16;
    let map = rt.block_on(client.ensure_keyspace(other)).unwrap();
    assert_eq!(map.keyspace("ensured").unwrap().partitions, 4);

    // Many keys at once, grouped by partition into batches: every one is there after.
    let many: Vec<(bytes::Bytes, bytes::Bytes)> = (0..5_000)
        .map(|i| {
            let key = format!("many:{{{}}}:{i}", i % 97);
            (key.into(), bytes::Bytes::from(vec![b'x'; 100 + i % 300]))
        })
        .collect();
    let written = rt
        .block_on(client.put_many("ensured", many.clone(), 8))
        .expect("put_many");
    assert_eq!(written, 5_000);
    let mut seen = 0;
    let mut continuation = None;
    loop {
        let page = rt
            .block_on(client.scan(
                "ensured",
                ScanOptions {
                    range: ScanRange {
                        prefix: Some(bytes::Bytes::from_static(b"many:")),
                        ..ScanRange::default()
                    },
                    limit: 1_000,
                    continuation,
                    keys_only: false,
                    consistency: Some(Consistency::Linearizable),
                },
            ))
            .unwrap();
        for e in &page.entries {
            let i: usize = std::str::from_utf8(&e.key)
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(e.value.as_deref(), Some(&many[i].1[..]));
            seen += 1;
        }
        continuation = page.continuation;
        if continuation.is_none() {
            break;
        }
    }
    assert_eq!(seen, 5_000);

    let n = 2_000;
    let writes: Vec<_> = (0..n)
        .map(|i| {
            let client = client.clone();
            rt.spawn(async move {
                client
                    .put(
                        "default",
                        &key(i),
                        format!("v{i}").as_bytes(),
                        Condition::None,
                    )
                    .await
            })
        })
        .collect();
    for w in writes {
        rt.block_on(w).unwrap().unwrap();
    }
    // The keys landed on many partitions: each node's engines hold a share.
    for i in (0..n).step_by(97) {
        let got = rt
            .block_on(client.get("default", &key(i), Consistency::Linearizable))
            .unwrap()
            .unwrap();
        assert_eq!(got.value, format!("v{i}").as_bytes());
    }
    // An untagged scan runs on every partition and merges them in key order, page by page.
    let mut seen = Vec::new();
    let mut continuation = None;
    let mut pages = 0;
    loop {
        let page = rt
            .block_on(client.scan(
                "default",
                ScanOptions {
                    range: ScanRange {
                        prefix: Some("key:".into()),
                        ..ScanRange::default()
                    },
                    limit: 300,
                    continuation: continuation.take(),
                    ..ScanOptions::default()
                },
            ))
            .unwrap();
        assert!(page.entries.len() <= 300);
        seen.extend(page.entries.into_iter().map(|e| e.key.to_vec()));
        pages += 1;
        match page.continuation {
            Some(c) => continuation = Some(c),
            None => break,
        }
    }
    let expected: Vec<Vec<u8>> = (0..n).map(key).collect();
    assert_eq!(seen.len(), n, "{pages} pages");
    assert_eq!(seen, expected, "every key once, in key order");

    // Each partition scanned on its own (as an application reading a whole keyspace does):
    // every key in exactly one partition, each partition's keys in order, none elsewhere.
    let mut by_partition: Vec<Vec<u8>> = Vec::new();
    let mut nonempty = 0;
    for p in 0..PARTITIONS as u32 {
        let mut keys = Vec::new();
        let mut continuation = None;
        loop {
            let page = rt
                .block_on(client.scan_partition(
                    "default",
                    p,
                    ScanOptions {
                        range: ScanRange {
                            prefix: Some("key:".into()),
                            ..ScanRange::default()
                        },
                        limit: 7,
                        continuation: continuation.take(),
                        ..ScanOptions::default()
                    },
                ))
                .unwrap();
            keys.extend(page.entries.into_iter().map(|e| e.key.to_vec()));
            match page.continuation {
                Some(c) => continuation = Some(c),
                None => break,
            }
        }
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "partition {p} in key order"
        );
        for k in &keys {
            assert_eq!(
                kvstore::partition::slot(k) as u64 * PARTITIONS / 16384,
                u64::from(p),
                "{} is in its own partition",
                String::from_utf8_lossy(k)
            );
        }
        nonempty += usize::from(!keys.is_empty());
        by_partition.extend(keys);
    }
    by_partition.sort();
    assert_eq!(by_partition, expected, "the partitions hold every key once");
    assert!(
        nonempty > PARTITIONS as usize / 2,
        "{nonempty} partitions hold keys"
    );
    let err = rt
        .block_on(client.scan_partition("default", PARTITIONS as u32, ScanOptions::default()))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("has 64 partitions: there is no partition 64"),
        "{err}"
    );

    // Keys sharing a hash tag share a partition: a batch of them is atomic, and a scan of
    // the tag runs on that partition alone. A batch across partitions is refused.
    let put = |k: &str| BatchOp::Put {
        key: k.as_bytes().to_vec().into(),
        value: b"x".to_vec().into(),
        ttl_ms: None,
        condition: Condition::None,
    };
    rt.block_on(client.batch("default", vec![put("{user1}:a"), put("{user1}:b")]))
        .unwrap();
    let tagged = rt
        .block_on(client.scan(
            "default",
            ScanOptions {
                range: ScanRange {
                    prefix: Some("{user1}:".into()),
                    ..ScanRange::default()
                },
                ..ScanOptions::default()
            },
        ))
        .unwrap();
    assert_eq!(tagged.entries.len(), 2);
    let across = rt.block_on(client.batch("default", vec![put("{user1}:c"), put("{user2}:c")]));
    match across {
        Err(kvstore::client::ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::CrossPartition);
            let slot = kvstore::partition::slot(b"user2");
            assert!(message.contains(&format!("slot {slot}")), "{message}");
        }
        other => panic!("a batch across partitions: {other:?}"),
    }

    // A node dies: the partitions it led elect new leaders, and the client finds them.
    let victim = 1 + (rand_seed() % 3);
    cluster.kill(victim).unwrap();
    for i in 0..200 {
        let k = format!("after:{i}");
        rt.block_on(client.put("default", k.as_bytes(), b"y", Condition::None))
            .unwrap();
    }
    for i in (0..n).step_by(13) {
        let got = rt
            .block_on(client.get("default", &key(i), Consistency::Linearizable))
            .unwrap();
        assert!(got.is_some(), "{} lost after node {victim} died", i);
    }
    cluster.restart(victim).unwrap();
}

/// Which node to kill, from the clock (the test holds for any).
fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

fn redis_cli(port: u16, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("redis-cli (scripts/install-test-deps.sh installs it)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn redis_cli_follows_moved_across_slots_and_cluster_commands_answer_as_redis_does() {
    let cluster = partitioned("partitions-redis");
    let port = |id: u64| cluster.node(id).resp.port();
    // The slot function is Redis's: the specification's examples.
    let slots = redis_cli(
        port(1),
        &[],
        "CLUSTER KEYSLOT 123456789\nCLUSTER KEYSLOT {user1000}.following\n\
         CLUSTER KEYSLOT {user1000}.followers\nCLUSTER KEYSLOT foo{}{bar}\n\
         CLUSTER KEYSLOT foo{{bar}}zap\n",
    );
    let slots: Vec<&str> = slots.lines().collect();
    assert_eq!(slots[0], "12739");
    assert_eq!(slots[1], slots[2]);
    assert_eq!(slots[3], "8363", "an empty tag hashes the whole key");
    assert_eq!(slots[4], "4015", "the tag is `{{bar`");

    // Keys on every slot range, written through one node and read through another.
    let mut script = String::new();
    for i in 0..100 {
        script.push_str(&format!("SET k{i} v{i}\n"));
    }
    let out = redis_cli(port(1), &["-c"], &script);
    assert_eq!(out.matches("OK").count(), 100, "{out}");
    let mut reads = String::new();
    for i in 0..100 {
        reads.push_str(&format!("GET k{i}\n"));
    }
    let out = redis_cli(port(2), &["-c"], &reads);
    let values: Vec<String> = out
        .lines()
        .filter(|l| !l.starts_with("->"))
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = (0..100).map(|i| format!("v{i}")).collect();
    assert_eq!(values, expected);
    // Without -c, a key this node does not lead gets MOVED with its slot and leader.
    let moved: BTreeSet<String> = (0..100)
        .map(|i| redis_cli(port(3), &[], &format!("SET k{i} w\n")))
        .filter(|o| o.starts_with("MOVED"))
        .collect();
    assert!(!moved.is_empty(), "node 3 leads every partition?");
    for m in &moved {
        let parts: Vec<&str> = m.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{m}");
        parts[1].parse::<u16>().unwrap();
    }
    // Multi-key commands must keep to one slot.
    let cross = redis_cli(port(1), &["-c"], "MSET a 1 b 2\n");
    assert!(cross.starts_with("CROSSSLOT"), "{cross}");
    let same = redis_cli(port(1), &["-c"], "MSET {t}a 1 {t}b 2\nMGET {t}a {t}b\n");
    assert!(same.ends_with("OK\n1\n2\n"), "{same}");
    // CLUSTER SLOTS covers every slot once; CLUSTER NODES lists every node.
    let slots = redis_cli(port(1), &[], "CLUSTER SLOTS\n");
    let numbers: Vec<u32> = slots.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(numbers.contains(&0) && numbers.contains(&16383), "{slots}");
    let nodes = redis_cli(port(2), &[], "CLUSTER NODES\n");
    assert_eq!(nodes.lines().count(), 3, "{nodes}");
    assert!(nodes.contains("myself,master"));
    let info = redis_cli(port(1), &[], "CLUSTER INFO\n");
    assert!(info.contains("cluster_state:ok"), "{info}");
    let total: i64 = (1..=3)
        .map(|id| {
            redis_cli(port(id), &[], "DBSIZE\n")
                .trim()
                .parse::<i64>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, 102, "each node counts the partitions it leads");
}

/// redis-py's `RedisCluster` through its own API (it learns the slots from `CLUSTER SLOTS`
/// and every command's keys from `COMMAND`), and `redis-benchmark --cluster`.
#[test]
fn redis_py_cluster_and_redis_benchmark_cluster_work_unchanged() {
    let cluster = partitioned("partitions-redis-py");
    let port = cluster.node(2).resp.port();
    let script = r#"
import sys
from redis.cluster import RedisCluster
rc = RedisCluster(host="127.0.0.1", port=int(sys.argv[1]), decode_responses=True, protocol=2)
for i in range(300):
    rc.set(f"py:{i}", f"v{i}")
assert all(rc.get(f"py:{i}") == f"v{i}" for i in range(300)), "read back"
assert rc.cluster_keyslot("123456789") == 12739
assert len(rc.get_nodes()) == 3, rc.get_nodes()
rc.mset_nonatomic({"{u}:a": "1", "{u}:b": "2"})
assert rc.mget_nonatomic(["{u}:a", "{u}:b", "py:7"]) == ["1", "2", "v7"]
assert rc.incr("py:counter") == 1 and rc.incr("py:counter") == 2
assert rc.delete("py:1", "py:2") == 2 and rc.get("py:1") is None
pipe = rc.pipeline()
for i in range(100):
    pipe.set(f"pipe:{i}", i)
assert pipe.execute() == [True] * 100
print("ok")
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &port.to_string()])
        .output()
        .expect("python3 with redis-py (scripts/install-test-deps.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("ok"), "{text}");

    let out = std::process::Command::new("redis-benchmark")
        .args(["--cluster", "-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-t", "set,get", "-n", "2000", "-c", "8", "-q"])
        .output()
        .expect("redis-benchmark");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Cluster has 3 master nodes"), "{text}");
    for op in ["SET", "GET"] {
        let line = text
            .lines()
            .rev()
            .find(|l| l.contains(&format!("{op}: ")) && l.contains("requests per second"))
            .unwrap_or_else(|| panic!("no {op} result:\n{text}"));
        let rate: f64 = line
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or(0.0);
        assert!(rate > 0.0, "{line}");
    }
}

/// `kvstore load` writes through a node's SIGKILL: its progress lines go on, and at the end
/// it reads every acknowledged write back and finds them all.
#[test]
fn the_load_command_writes_through_a_node_kill_and_reads_every_acknowledged_write_back() {
    let mut cluster = partitioned("partitions-load");
    let load = std::process::Command::new(tests::harness::kvstore_bin())
        .args(["load", "--addr", &cluster.client_addresses().join(",")])
        .args(["--clients", "8", "--seconds", "8"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kvstore load");
    std::thread::sleep(Duration::from_secs(3));
    cluster.kill(2).unwrap();
    let out = load.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("verified: every acknowledged write reads back"),
        "{stdout}"
    );
    let acknowledged: u64 = stdout
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(acknowledged > 100, "{stdout}");
    assert!(
        stderr.lines().filter(|l| l.contains("writes/s")).count() >= 5,
        "a progress line a second:\n{stderr}"
    );
}

/// `kvstore_ops_total{op="get"}` on each node.
fn gets_served(cluster: &Cluster) -> Vec<u64> {
    (1..=3)
        .map(|id| {
            let text = tests::cluster::http_get(cluster.node(id).http, "/metrics").unwrap();
            text.lines()
                .find_map(|l| l.strip_prefix("kvstore_ops_total{op=\"get\"} "))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
        .collect()
}

/// How many gets each node served while `read` ran 90 times.
fn gets_per_node(cluster: &Cluster, mut read: impl FnMut()) -> Vec<u64> {
    let before = gets_served(cluster);
    for _ in 0..90 {
        read();
    }
    let after = gets_served(cluster);
    after.iter().zip(&before).map(|(a, b)| a - b).collect()
}

/// A read that any replica may answer is spread over the replicas by `ClusterClient`, so
/// read-heavy applications (the dictionary's replicas, the URL shortener's redirects) use
/// every copy rather than all asking the leader; reads that must be linearizable still go
/// to the leader alone.
#[test]
fn follower_reads_are_spread_over_every_replica_and_linearizable_reads_go_to_the_leader() {
    let cluster = Cluster::start("follower-spread", ClusterOptions::default()).unwrap();
    cluster.wait_settled(Duration::from_secs(60)).unwrap();
    let rt = runtime();
    let client = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
    rt.block_on(client.put("default", b"spread", b"v", Condition::None))
        .unwrap();
    // A follower read may be stale: first, every replica has applied the write.
    let everywhere = wait_until(Duration::from_secs(10), || {
        (0..6).all(|_| {
            rt.block_on(client.get("default", b"spread", Consistency::Follower))
                .is_ok_and(|v| v.is_some())
        })
    });
    assert!(everywhere, "the write reached every replica");
    let read = |consistency: Consistency| -> Vec<u64> {
        gets_per_node(&cluster, || {
            let got = rt
                .block_on(client.get("default", b"spread", consistency))
                .unwrap();
            assert_eq!(got.map(|v| v.value.to_vec()), Some(b"v".to_vec()));
        })
    };
    let follower = read(Consistency::Follower);
    assert!(
        follower.iter().all(|&n| n >= 15),
        "follower reads per node: {follower:?}"
    );
    // The placement may still move a leader after start (CI once saw [2, 91, 0]: two reads
    // at the old leader, one of them redirected). The claim is about a leader that stays: if
    // the reads met a move, measure again; reads spread over replicas would fail every time.
    let mut tries = Vec::new();
    for _ in 0..3 {
        let linearizable = read(Consistency::Linearizable);
        let one_node = linearizable.iter().filter(|&&n| n > 0).count() == 1;
        tries.push(linearizable);
        if one_node {
            break;
        }
    }
    assert!(
        tries
            .last()
            .is_some_and(|t| t.iter().filter(|&&n| n > 0).count() == 1),
        "linearizable reads per node, each try: {tries:?}"
    );
}

/// A keyspace's read consistency (`keyspace create --read-consistency`) is what a read that
/// names none gets: on a keyspace of follower reads, every replica answers such a read itself
/// and `ClusterClient` spreads them; on a linearizable one, a follower sends it to the leader.
/// A read that names its consistency gets that one, whatever the keyspace says.
#[test]
fn a_read_that_names_no_consistency_gets_its_keyspace_s() {
    let cluster = Cluster::start("keyspace-consistency", ClusterOptions::default()).unwrap();
    cluster.wait_settled(Duration::from_secs(60)).unwrap();
    let rt = runtime();
    let client = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
    let mut spec = KeyspaceSpec::new("stale-ok");
    spec.partitions = 4;
    spec.read_consistency = Consistency::Follower;
    rt.block_on(client.create_keyspace(spec)).unwrap();
    let mut spec = KeyspaceSpec::new("exact");
    spec.partitions = 4;
    rt.block_on(client.create_keyspace(spec)).unwrap();
    for ks in ["stale-ok", "exact"] {
        let put = wait_until(Duration::from_secs(30), || {
            rt.block_on(client.put(ks, b"k", b"v", Condition::None))
                .is_ok()
        });
        assert!(put, "a write to {ks}");
    }
    // Every replica has applied both writes (asked explicitly at follower consistency).
    let everywhere = wait_until(Duration::from_secs(10), || {
        (1..=3).all(|id| {
            let node = kvstore::client::Client::connect(
                cluster.node(id).addr,
                kvstore::client::ClientConfig::default(),
            );
            let Ok(node) = rt.block_on(node) else {
                return false;
            };
            ["stale-ok", "exact"].iter().all(|ks| {
                rt.block_on(node.get_with(ks, b"k", Consistency::Follower))
                    .is_ok_and(|v| v.is_some())
            })
        })
    });
    assert!(everywhere, "the writes reached every replica");

    // Each node asked directly, without a consistency: a follower read says how stale it may
    // be (its lag); a linearizable one has none to say.
    for id in 1..=3 {
        let node = rt
            .block_on(kvstore::client::Client::connect(
                cluster.node(id).addr,
                kvstore::client::ClientConfig::default(),
            ))
            .unwrap();
        let read = |ks: &str, consistency: Option<Consistency>| {
            let (got, lag) = rt.block_on(node.get_lagged(ks, b"k", consistency)).unwrap();
            assert_eq!(
                got.map(|v| v.value.to_vec()),
                Some(b"v".to_vec()),
                "node {id}"
            );
            lag.is_some()
        };
        assert!(read("stale-ok", None), "node {id}: a follower read");
        assert!(!read("exact", None), "node {id}: a linearizable read");
        // Named explicitly, a consistency wins over the keyspace's.
        assert!(
            !read("stale-ok", Some(Consistency::Linearizable)),
            "node {id}"
        );
        assert!(read("exact", Some(Consistency::Follower)), "node {id}");
    }

    // Through ClusterClient, reads naming none are spread on the follower keyspace only.
    let spread = |ks: &str| -> Vec<u64> {
        gets_per_node(&cluster, || {
            let got = rt.block_on(client.get(ks, b"k", None)).unwrap();
            assert_eq!(got.map(|v| v.value.to_vec()), Some(b"v".to_vec()));
        })
    };
    let follower = spread("stale-ok");
    assert!(
        follower.iter().all(|&n| n >= 15),
        "stale-ok reads per node: {follower:?}"
    );
    let exact = spread("exact");
    assert!(
        exact.iter().filter(|&&n| n > 0).count() == 1
            || spread("exact").iter().filter(|&&n| n > 0).count() == 1,
        "exact reads per node: {exact:?}"
    );
}
