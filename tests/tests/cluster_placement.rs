//! The cluster map at work, end to end, on real processes: keyspaces created and dropped at
//! run time (with the `kvstore keyspace` CLI), two nodes joining a running cluster with
//! `--join` and the placement moving replicas and leaders onto them, one node drained and
//! retired, one killed (its replicas re-created on the others, restoring every partition's
//! replication) and brought back (the placement gives it its share again), all under a concurrent workload whose history must stay linearizable, and every
//! acknowledged key of a second keyspace readable at the end.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::wire::{Condition, Consistency};
use tests::cluster::{Cluster, ClusterOptions};
use tests::harness::{kvstore_bin, runtime, wait_until};
use tests::workload::{self, Workload};

const PARTITIONS: u32 = 8;
const PATIENCE: Duration = Duration::from_secs(90);
/// `--down-after-ms` of every node: short, so that re-replication starts within the test.
const DOWN_AFTER_MS: &str = "3000";

/// `kvstore ARGS…` against the nodes at `addr`: its exit code and output.
fn kvstore(args: &[&str]) -> (i32, String) {
    let out = Command::new(kvstore_bin()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// The cluster map as `kvstore cluster map` prints it.
fn map_json(addr: &str) -> serde_json::Value {
    let (code, out) = kvstore(&["cluster", "--addr", addr, "map"]);
    assert_eq!(code, 0, "{out}");
    serde_json::from_str(&out).unwrap()
}

/// Groups each node hosts, from its own status.
fn hosted(cluster: &Cluster, id: u64) -> Vec<u64> {
    let Some(status) = cluster.status(id) else {
        return Vec::new();
    };
    let mut groups: Vec<u64> = status["groups"]
        .as_array()
        .map(|gs| gs.iter().filter_map(|g| g["group"].as_u64()).collect())
        .unwrap_or_default();
    groups.sort();
    groups
}

/// Whether the placement has settled: not rebalancing, nothing in flight, the up nodes'
/// replicas and leaders within one of the mean, and every node hosting exactly what the map
/// places on it.
fn settled(cluster: &Cluster, addr: &str, up: &[u64]) -> Result<(), String> {
    let map = map_json(addr);
    if map["rebalancing"] == true {
        return Err("still rebalancing".into());
    }
    let groups = map["groups"].as_array().unwrap();
    if let Some(g) = groups
        .iter()
        .find(|g| !g["want"].as_array().unwrap().is_empty())
    {
        return Err(format!("group {} is moving", g["group"]));
    }
    let mut replicas = BTreeMap::new();
    let mut leaders = BTreeMap::new();
    for g in groups {
        for r in g["replicas"].as_array().unwrap() {
            *replicas.entry(r.as_u64().unwrap()).or_insert(0usize) += 1;
        }
        if let Some(l) = g["leader"].as_u64() {
            *leaders.entry(l).or_insert(0usize) += 1;
        }
    }
    for (what, counts) in [("replicas", &replicas), ("leaders", &leaders)] {
        let per: Vec<usize> = up
            .iter()
            .map(|n| counts.get(n).copied().unwrap_or(0))
            .collect();
        let (lo, hi) = (per.iter().min().unwrap(), per.iter().max().unwrap());
        if hi - lo > 1 {
            return Err(format!("{what} per node {up:?}: {per:?}"));
        }
        if counts.keys().any(|n| !up.contains(n)) {
            return Err(format!("{what} on a node not up: {counts:?}"));
        }
    }
    for &n in up {
        let mut placed: Vec<u64> = groups
            .iter()
            .filter(|g| {
                g["replicas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|r| r.as_u64() == Some(n))
            })
            .map(|g| g["group"].as_u64().unwrap())
            .collect();
        placed.sort();
        let on_disk = hosted(cluster, n);
        if placed != on_disk {
            return Err(format!(
                "node {n} hosts {on_disk:?}, the map places {placed:?}"
            ));
        }
    }
    Ok(())
}

/// Every up node's view of its groups, for a failure message.
fn groups_seen(cluster: &Cluster, up: &[u64]) -> String {
    let mut out = String::new();
    for &n in up {
        let Some(status) = cluster.status(n) else {
            out.push_str(&format!("node {n}: no status\n"));
            continue;
        };
        for g in status["groups"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "node {n} group {} {} term {} leader {} voters {} learners {} epoch {} last {} match {}\n",
                g["group"], g["role"], g["term"], g["leader"], g["voters"], g["learners"],
                g["epoch"], g["last_index"], g["match_index"]
            ));
        }
    }
    out
}

fn wait_settled(cluster: &Cluster, addr: &str, up: &[u64], what: &str) {
    let mut last = String::new();
    let ok = wait_until(PATIENCE, || match settled(cluster, addr, up) {
        Ok(()) => true,
        Err(e) => {
            last = e;
            false
        }
    });
    assert!(
        ok,
        "{what}: the placement did not settle ({last})\nmap: {}\n{}\n{}",
        kvstore(&["cluster", "--addr", addr, "map"]).1,
        groups_seen(cluster, up),
        cluster.logs(),
    );
}

/// Three nodes founding `default` with [`PARTITIONS`] partitions, down after [`DOWN_AFTER_MS`].
fn start_cluster(name: &str) -> Cluster {
    Cluster::start(
        name,
        ClusterOptions {
            partitions: PARTITIONS,
            args: node_args(&[]),
            ..ClusterOptions::default()
        },
    )
    .unwrap()
}

/// `kvstore serve` arguments of every node, and `more`.
fn node_args(more: &[String]) -> Vec<String> {
    let mut args: Vec<String> = ["--idle-spin-us", "0", "--down-after-ms", DOWN_AFTER_MS]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(more.iter().cloned());
    args
}

/// Starts nodes `ids`, joining through node 1's peer address.
fn join(cluster: &mut Cluster, rt: &tokio::runtime::Runtime, ids: &[u64]) {
    let client = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
    let map = rt.block_on(client.map()).unwrap();
    let peer = map.nodes[&1].peer.clone();
    for &id in ids {
        let args = node_args(&["--join".to_string(), peer.clone()]);
        cluster.start_joining_node(id, &args).unwrap();
    }
}

/// A writer on keyspace `logs` that remembers every key it was told is written.
struct Writer {
    acked: Arc<Mutex<Vec<u64>>>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Writer {
    fn start(rt: &tokio::runtime::Runtime, addresses: Vec<String>) -> Writer {
        let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let task = {
            let (acked, stop) = (acked.clone(), stop.clone());
            let client = ClusterClient::new(addresses, ClusterConfig::default());
            rt.spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("line:{i:06}");
                    if client
                        .put("logs", key.as_bytes(), key.as_bytes(), Condition::None)
                        .await
                        .is_ok()
                    {
                        acked.lock().unwrap().push(i);
                    }
                    i += 1;
                }
            })
        };
        Writer { acked, stop, task }
    }

    /// Stops, then reads every acknowledged key back through `addresses`.
    fn finish_and_check(self, rt: &tokio::runtime::Runtime, addresses: Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        rt.block_on(self.task).unwrap();
        let acked = self.acked.lock().unwrap().clone();
        assert!(
            acked.len() > 20,
            "the writer made progress: {}",
            acked.len()
        );
        let reader = ClusterClient::new(addresses, ClusterConfig::default());
        let missing: Vec<u64> = rt.block_on(async {
            let mut missing = Vec::new();
            for i in &acked {
                let key = format!("line:{i:06}");
                match reader
                    .get("logs", key.as_bytes(), Consistency::Linearizable)
                    .await
                {
                    Ok(Some(v)) if v.value == key.as_bytes() => {}
                    _ => missing.push(*i),
                }
            }
            missing
        });
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged keys are missing: {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(20)]
        );
    }
}

/// Creates the keyspace `logs` (6 partitions of 3 replicas) with the CLI.
fn create_logs(addr: &str) {
    let (code, out) = kvstore(&[
        "keyspace",
        "--addr",
        addr,
        "create",
        "logs",
        "--partitions",
        "6",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("created keyspace logs"), "{out}");
}

fn addresses(cluster: &Cluster, ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|&n| cluster.node(n).addr.to_string())
        .collect()
}

#[test]
fn nodes_join_and_leave_under_load_and_the_placement_follows() {
    let mut cluster = start_cluster("placement");
    let first = cluster.node(1).addr.to_string();
    let rt = runtime();

    // A second keyspace, created at run time through the CLI, is usable at once from any
    // node (the others learn of it within moments; the client waits for them).
    create_logs(&first);
    let third = cluster.node(3).addr.to_string();
    let (code, out) = kvstore(&["put", "--addr", &third, "--keyspace", "logs", "probe", "1"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = kvstore(&["put", "--addr", &third, "--keyspace", "nope", "probe", "1"]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no keyspace"), "{out}");
    let (code, out) = kvstore(&["keyspace", "--addr", &first, "create", "logs"]);
    assert_ne!(code, 0, "a keyspace is created once: {out}");
    let (_, list) = kvstore(&["keyspace", "--addr", &first, "list"]);
    assert!(list.contains("default") && list.contains("logs"), "{list}");

    // The linearizability workload on `default`, and a writer on `logs` that remembers
    // every key it was told is written.
    let load = workload::start(
        &rt,
        cluster.client_addresses(),
        Workload {
            clients: 3,
            keys: 8,
            seed: 17,
        },
    );
    let writer = Writer::start(&rt, cluster.client_addresses());

    // Two nodes join through node 1's peer address.
    join(&mut cluster, &rt, &[4, 5]);
    wait_settled(&cluster, &first, &[1, 2, 3, 4, 5], "after two nodes joined");
    assert!(!hosted(&cluster, 4).is_empty() && !hosted(&cluster, 5).is_empty());

    // Node 2 is drained (nothing is left on it) and retired.
    let (code, out) = kvstore(&["cluster", "--addr", &first, "remove-node", "2"]);
    assert_ne!(code, 0, "a node holding replicas cannot be removed: {out}");
    assert!(out.contains("drain it first"), "{out}");
    let (code, out) = kvstore(&["cluster", "--addr", &first, "drain", "2"]);
    assert_eq!(code, 0, "{out}");
    wait_settled(&cluster, &first, &[1, 3, 4, 5], "after draining node 2");
    assert!(
        wait_until(PATIENCE, || hosted(&cluster, 2).is_empty()),
        "node 2 deleted its replicas"
    );
    let (code, out) = kvstore(&["cluster", "--addr", &first, "remove-node", "2"]);
    assert_eq!(code, 0, "{out}");
    cluster.kill(2).unwrap();

    // Node 5 dies: once it has answered no ping for the down delay, its replicas are
    // re-created on the three others, and every partition has its replicas again.
    cluster.kill(5).unwrap();
    wait_settled(&cluster, &first, &[1, 3, 4], "after node 5 died");
    let map = map_json(&first);
    let five = map["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == 5)
        .unwrap();
    assert_eq!(five["state"], "down");
    for g in map["groups"].as_array().unwrap() {
        let replicas = g["replicas"].as_array().unwrap().len();
        assert_eq!(replicas, 3, "group {} has its replicas back", g["group"]);
    }
    // Back, it deletes what moved away while it was down, and gets its share again.
    cluster.restart(5).unwrap();
    wait_settled(&cluster, &first, &[1, 3, 4, 5], "after node 5 came back");

    // A dropped keyspace leaves every node.
    let (code, out) = kvstore(&[
        "keyspace",
        "--addr",
        &first,
        "create",
        "scratch",
        "--partitions",
        "4",
    ]);
    assert_eq!(code, 0, "{out}");
    let scratch: Vec<u64> = {
        let map = map_json(&first);
        let ks = map["keyspaces"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["name"] == "scratch")
            .unwrap()
            .clone();
        let first_group = ks["first_group"].as_u64().unwrap();
        (first_group..first_group + 4).collect()
    };
    assert!(wait_until(PATIENCE, || {
        [1, 3, 4, 5]
            .iter()
            .map(|&n| {
                hosted(&cluster, n)
                    .iter()
                    .filter(|g| scratch.contains(g))
                    .count()
            })
            .sum::<usize>()
            == 12
    }));
    let (code, out) = kvstore(&["keyspace", "--addr", &first, "drop", "scratch"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        wait_until(PATIENCE, || [1, 3, 4, 5].iter().all(|&n| hosted(
            &cluster, n
        )
        .iter()
        .all(|g| !scratch.contains(g)))),
        "every replica of a dropped keyspace is deleted"
    );

    std::thread::sleep(Duration::from_secs(1));
    let up = addresses(&cluster, &[1, 3, 4, 5]);
    let history = load.finish(&rt, up.clone());
    workload::assert_linearizable(&history, || cluster.logs());
    writer.finish_and_check(&rt, up);
}

/// The group of a move in flight (one whose map wants a replica it does not have yet), with
/// the node it moves to and, for a replacement, the node it moves from.
fn a_move(map: &serde_json::Value) -> Option<(u64, u64, Option<u64>)> {
    let ids = |v: &serde_json::Value| -> Vec<u64> {
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n.as_u64())
            .collect()
    };
    map["groups"].as_array().unwrap().iter().find_map(|g| {
        let (want, replicas) = (ids(&g["want"]), ids(&g["replicas"]));
        let to = *want.iter().find(|n| !replicas.contains(n))?;
        let from = replicas.iter().copied().find(|n| !want.contains(n));
        Some((g["group"].as_u64().unwrap(), to, from))
    })
}

/// Waits for a move in flight (see [`a_move`]).
fn in_flight(cluster: &Cluster, addr: &str) -> (u64, u64, Option<u64>) {
    let mut found = None;
    wait_until(PATIENCE, || {
        found = a_move(&map_json(addr));
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no move in flight\n{}", cluster.logs()))
}

/// Kills `id` with SIGKILL and starts it again a moment later.
fn bounce(cluster: &mut Cluster, id: u64) {
    cluster.kill(id).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    cluster.restart(id).unwrap();
}

#[test]
fn moves_survive_sigkill_of_their_source_their_target_and_the_meta_leader() {
    let mut cluster = start_cluster("placement-crashes");
    // Any of the founders may be down at a moment: the CLI tries each.
    let first = cluster.client_addresses().join(",");
    let rt = runtime();
    create_logs(&first);
    let load = workload::start(
        &rt,
        cluster.client_addresses(),
        Workload {
            clients: 3,
            keys: 8,
            seed: 23,
        },
    );
    let writer = Writer::start(&rt, cluster.client_addresses());
    std::thread::sleep(Duration::from_secs(1));

    // Two nodes join: about forty replicas move, eight at a time.
    join(&mut cluster, &rt, &[4, 5]);
    // The meta leader dies while moves are in flight.
    in_flight(&cluster, &first);
    let meta_leader = map_json(&first)["groups"][0]["leader"].as_u64().unwrap();
    bounce(&mut cluster, meta_leader);
    // A move's target dies (its learner replica restarts from what it had)…
    let (_, to, _) = in_flight(&cluster, &first);
    bounce(&mut cluster, to);
    // …and a replacement's source.
    let from = loop {
        if let (_, _, Some(from)) = in_flight(&cluster, &first) {
            break from;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    bounce(&mut cluster, from);

    // Every move resumes or is undone: the placement settles, balanced.
    let all = [1, 2, 3, 4, 5];
    wait_settled(&cluster, &first, &all, "after the kills");
    std::thread::sleep(Duration::from_secs(1));
    let up = addresses(&cluster, &all);
    let history = load.finish(&rt, up.clone());
    workload::assert_linearizable(&history, || cluster.logs());
    writer.finish_and_check(&rt, up);
}

/// A request routed by a map older than its partition's membership is refused with
/// `StaleEpoch`, naming the current epoch; a request at that epoch passes; and a client that
/// still holds the old map learns it and goes on.
#[test]
fn a_request_routed_by_a_stale_map_is_refused_and_its_client_catches_up() {
    use kvstore::wire::{ErrorCode, Request};
    let rt = runtime();
    let mut cluster = start_cluster("placement-epochs");
    cluster.wait_settled(PATIENCE).unwrap();
    let old = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
    rt.block_on(old.put("default", b"before", b"1", Condition::None))
        .unwrap();
    join(&mut cluster, &rt, &[4]);
    cluster.wait_settled(PATIENCE).unwrap();

    // A partition that moved a replica onto node 4: its membership, and so its epoch, moved on.
    let fresh = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
    let map = rt.block_on(fresh.current_map()).unwrap();
    let ks = map.keyspace("default").unwrap();
    let (&group, info) = map
        .groups
        .iter()
        .find(|(g, p)| ks.groups().contains(*g) && p.epoch > 0)
        .expect("a partition moved");
    let key = (0..100_000)
        .map(|i| format!("k{i}"))
        .find(|k| map.route("default", k.as_bytes()).unwrap().0 == group)
        .unwrap();
    let get = Request::Get {
        keyspace: "default".into(),
        key: key.clone().into(),
        consistency: Some(kvstore::wire::Consistency::Linearizable),
    };
    let replica = &map.nodes[&info.replicas[0]].client;
    rt.block_on(async {
        let raw = kvstore::client::Client::connect(replica.as_str(), Default::default())
            .await
            .unwrap();
        match raw.call_routed(1, get.clone(), Some(0)).await {
            Err(kvstore::client::ClientError::Server { code, message }) => {
                assert_eq!(code, ErrorCode::StaleEpoch, "{message}");
                let current = kvstore::wire::message::stale_epoch_current(&message).unwrap();
                assert!(current >= info.epoch, "{message}");
                let again = raw.call_routed(2, get.clone(), Some(current)).await;
                assert!(
                    !matches!(&again, Err(kvstore::client::ClientError::Server { code, .. })
                        if *code == ErrorCode::StaleEpoch),
                    "{again:?}"
                );
            }
            other => panic!("expected StaleEpoch, got {other:?}"),
        }
        // The client with the map of before the join still writes and reads that partition.
        old.put("default", key.as_bytes(), b"v", Condition::None)
            .await
            .unwrap();
        let got = old
            .get(
                "default",
                key.as_bytes(),
                kvstore::wire::Consistency::Linearizable,
            )
            .await
            .unwrap();
        assert_eq!(got.unwrap().value, "v");
    });
}
