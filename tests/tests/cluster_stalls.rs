//! Real clusters where a node's process is stopped (SIGSTOP) and resumed, for the two ways a
//! stall used to break the store's safety:
//!
//! - a leader cut off and stopped wakes sure it still leads, with a lease it dated in ticks it
//!   never counted; a lease read it serves then would miss the writes the others committed
//!   meanwhile (leases are now dated on a monotonic clock);
//! - a follower stopped while keys with TTLs expire catches up by applying the backlog in one
//!   engine group; it used to judge expiry differently inside a group than entry by entry,
//!   and so diverge from the leader.

use std::time::Duration;

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::client::PutOptions;
use kvstore::wire::{Condition, Consistency};
use tests::cluster::{Cluster, ClusterOptions};
use tests::harness::{connect, runtime, wait_until};

/// The clusters of this file run one at a time: they share two cores, and timing matters.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn others(cluster: &Cluster, id: u64) -> Vec<u64> {
    (1..=cluster.nodes.len() as u64)
        .filter(|&o| o != id)
        .collect()
}

fn addresses_of(cluster: &Cluster, ids: &[u64]) -> Vec<String> {
    ids.iter()
        .map(|&id| cluster.node(id).addr.to_string())
        .collect()
}

/// Waits until one of `ids` reports a leader other than `old`.
fn wait_for_new_leader(cluster: &Cluster, ids: &[u64], old: u64) -> u64 {
    let mut found = None;
    let elected = wait_until(Duration::from_secs(15), || {
        found = ids.iter().find_map(|&id| {
            let s = cluster.status(id)?;
            let leader = tests::cluster::data_group(&s)["leader"].as_u64()?;
            (leader != old && tests::cluster::data_group(&s)["role"] == "leader").then_some(leader)
        });
        found.is_some()
    });
    assert!(elected, "no new leader among {ids:?}\n{}", cluster.logs());
    found.expect("checked")
}

#[test]
fn a_leader_cut_off_and_stopped_serves_no_stale_lease_read_when_it_wakes() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cluster = Cluster::start("stall-lease", ClusterOptions::default()).unwrap();
    let rt = runtime();
    for trial in 0..3 {
        let leader = cluster.wait_for_leader(Duration::from_secs(20)).unwrap();
        let key = format!("k{trial}");
        let all = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
        rt.block_on(all.put("default", key.as_bytes(), b"old", Condition::None))
            .unwrap();
        // A connection to the leader, handshake done, that reads under the lease.
        let direct = rt.block_on(connect(cluster.node(leader)));
        let seen = rt
            .block_on(direct.get_with("default", key.as_bytes(), Consistency::Lease))
            .unwrap();
        assert_eq!(seen.map(|v| v.value), Some("old".into()));

        // Cut it off and stop it at once, before it can notice it lost its quorum.
        cluster.isolate(leader);
        cluster.pause(leader).unwrap();
        let rest = others(&cluster, leader);
        wait_for_new_leader(&cluster, &rest, leader);
        let behind = ClusterClient::new(addresses_of(&cluster, &rest), ClusterConfig::default());
        rt.block_on(behind.put("default", key.as_bytes(), b"new", Condition::None))
            .unwrap();

        // The lease read reaches the stopped leader's socket; then it wakes.
        let read = {
            let direct = direct.clone();
            let key = key.clone();
            rt.spawn(async move {
                direct
                    .get_with("default", key.as_bytes(), Consistency::Lease)
                    .await
            })
        };
        std::thread::sleep(Duration::from_millis(200));
        cluster.resume(leader).unwrap();
        let answer = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(15), read).await })
            .expect("the woken node answers")
            .unwrap();
        match answer {
            Ok(Some(v)) => assert_ne!(
                &v.value[..],
                b"old",
                "trial {trial}: node {leader} served a stale lease read after a stall\n{}",
                cluster.logs()
            ),
            Ok(None) => panic!("trial {trial}: the key vanished"),
            // Refused (it cannot confirm its leadership): what it must do.
            Err(error) => eprintln!("trial {trial}: the woken leader refused: {error}"),
        }
        cluster.heal();
        // The cluster settles on one leader again before the next trial.
        let all = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
        let value = rt
            .block_on(all.get("default", key.as_bytes(), Consistency::Linearizable))
            .unwrap()
            .unwrap();
        assert_eq!(&value.value[..], b"new");
    }
}

#[test]
fn a_follower_that_applies_a_backlog_of_expiring_keys_agrees_with_the_leader() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start("stall-ttl", ClusterOptions::default()).unwrap();
    let rt = runtime();
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).unwrap();
    let follower = others(&cluster, leader)[0];
    let client = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
    let ttl = |ms| PutOptions {
        ttl_ms: Some(ms),
        condition: Condition::None,
    };
    let if_absent = PutOptions {
        ttl_ms: None,
        condition: Condition::IfAbsent,
    };
    cluster.pause(follower).unwrap();
    for i in 0..5 {
        let (k, n) = (format!("k{i}"), format!("n{i}"));
        rt.block_on(async {
            client
                .put_with("default", k.as_bytes(), b"a", ttl(1))
                .await
                .unwrap();
            client
                .put_with("default", n.as_bytes(), b"not a number", ttl(1))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            // Both expired at these entries' time: the write and the increment see nothing.
            let w = client
                .put_with("default", k.as_bytes(), b"b", if_absent)
                .await
                .unwrap();
            assert!(w.applied, "the leader saw k{i} expired");
            assert_eq!(client.incr("default", n.as_bytes(), 1).await.unwrap(), 1);
        });
    }
    let commit = tests::cluster::data_group(&cluster.status(leader).unwrap())["commit"]
        .as_u64()
        .unwrap();
    cluster.resume(follower).unwrap();
    let caught_up = wait_until(Duration::from_secs(15), || {
        cluster.status(follower).is_some_and(|s| {
            tests::cluster::data_group(&s)["applied"]
                .as_u64()
                .is_some_and(|a| a >= commit)
        })
    });
    assert!(caught_up, "the follower caught up\n{}", cluster.logs());
    let direct = rt.block_on(connect(cluster.node(follower)));
    for i in 0..5 {
        let (k, n) = (format!("k{i}"), format!("n{i}"));
        let read = |key: &str| {
            rt.block_on(direct.get_with("default", key.as_bytes(), Consistency::Follower))
                .unwrap()
                .map(|v| v.value)
        };
        assert_eq!(read(&k), Some("b".into()), "k{i} on the follower");
        assert_eq!(read(&n), Some("1".into()), "n{i} on the follower");
    }
    drop(cluster.kill(leader));
}

#[test]
fn a_follower_read_says_how_long_since_its_replica_heard_from_a_leader() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start("stall-lag", ClusterOptions::default()).unwrap();
    let rt = runtime();
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).unwrap();
    let client = ClusterClient::new(cluster.client_addresses(), ClusterConfig::default());
    rt.block_on(client.put("default", b"k", b"v", Condition::None))
        .unwrap();
    let direct = rt.block_on(connect(cluster.node(leader)));
    // A leader cut off and stopped wakes sure it leads: its data is as old as the last time
    // a quorum answered it, and a follower read must say so.
    cluster.isolate(leader);
    cluster.pause(leader).unwrap();
    std::thread::sleep(Duration::from_millis(2_000));
    cluster.resume(leader).unwrap();
    let (found, lag) = rt
        .block_on(direct.get_lagged("default", b"k", Consistency::Follower))
        .unwrap();
    assert_eq!(found.map(|v| v.value), Some("v".into()));
    let lag = lag.expect("a follower read carries its lag");
    assert!(
        lag.ms.is_some_and(|ms| ms >= 1_500),
        "node {leader} heard from no quorum for 2 s, yet says {lag:?}\n{}",
        cluster.logs()
    );
    cluster.heal();
    // A follower stopped for 2 s, just woken: the heartbeats that waited in its socket are
    // old news, and must not make its lag look like nothing.
    let follower = others(&cluster, leader)[0];
    let to_follower = rt.block_on(connect(cluster.node(follower)));
    cluster.pause(follower).unwrap();
    std::thread::sleep(Duration::from_millis(2_000));
    cluster.resume(follower).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let (_, lag) = rt
        .block_on(to_follower.get_lagged("default", b"k", Consistency::Follower))
        .unwrap();
    let lag = lag.expect("a follower read carries its lag");
    assert!(
        lag.ms.is_some_and(|ms| ms >= 1_000),
        "node {follower} just woke from a 2 s stop, yet says {lag:?}"
    );
    // A node restarted alone on its old data has heard from no leader: its lag is unknown,
    // not zero.
    for id in 1..=3 {
        cluster.kill(id).unwrap();
    }
    cluster.restart(leader).unwrap();
    let alone = rt.block_on(connect(cluster.node(leader)));
    let (found, lag) = rt
        .block_on(alone.get_lagged("default", b"k", Consistency::Follower))
        .unwrap();
    assert_eq!(found.map(|v| v.value), Some("v".into()));
    let lag = lag.expect("a follower read carries its lag");
    assert_eq!(
        lag.ms, None,
        "node {leader} has heard from no leader: {lag:?}"
    );
}
