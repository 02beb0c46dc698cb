//! Real clusters under faults: 3 and 5 `kvstore` processes, a concurrent client workload, and a
//! nemesis that kills, pauses, partitions and restarts nodes; also snapshot catch-up and a
//! leader's hand-over when it is stopped on purpose. Every run's history must be
//! linearizable (which covers "no acknowledged write is lost": the final reads are part of
//! it), and the cluster must take writes again within a few seconds of each fault healing.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kvstore::wire::Consistency;
use tests::cluster::{Cluster, ClusterOptions};
use tests::harness::runtime;
use tests::workload::{self, Workload};

/// A cluster takes writes again within this long of a fault healing.
const RECOVERY_MAX: Duration = Duration::from_secs(5);

/// One step of a nemesis schedule.
#[derive(Debug, Clone, Copy)]
enum Fault {
    KillLeader,
    KillFollower,
    IsolateLeader,
    PauseLeader,
    RestartAll,
}

fn follower_of(cluster: &Cluster, leader: u64) -> u64 {
    (1..=cluster.nodes.len() as u64)
        .find(|&id| id != leader)
        .expect("a follower")
}

/// Inflicts `fault` for `hold`, heals it, and returns how long the cluster then took to
/// accept a write.
fn inflict(
    rt: &tokio::runtime::Runtime,
    cluster: &mut Cluster,
    fault: Fault,
    hold: Duration,
) -> Duration {
    let leader = cluster
        .wait_for_leader(Duration::from_secs(20))
        .expect("a leader before the fault");
    match fault {
        Fault::KillLeader => cluster.kill(leader).unwrap(),
        Fault::KillFollower => cluster.kill(follower_of(cluster, leader)).unwrap(),
        Fault::IsolateLeader => {
            cluster.isolate(leader);
            // The cut took: the others elect a leader of their own.
            let others: Vec<u64> = (1..=cluster.nodes.len() as u64)
                .filter(|&id| id != leader)
                .collect();
            let elected = tests::harness::wait_until(Duration::from_secs(10), || {
                others.iter().any(|&id| {
                    cluster.status(id).is_some_and(|s| {
                        let l = tests::cluster::data_group(&s)["leader"].as_u64();
                        l.is_some() && l != Some(leader)
                    })
                })
            });
            assert!(
                elected,
                "no new leader behind the partition\n{}",
                cluster.logs()
            );
        }
        Fault::PauseLeader => cluster.pause(leader).unwrap(),
        Fault::RestartAll => {
            for id in 1..=cluster.nodes.len() as u64 {
                cluster.kill(id).unwrap();
            }
        }
    }
    std::thread::sleep(hold);
    match fault {
        Fault::KillLeader => cluster.restart(leader).unwrap(),
        Fault::KillFollower => cluster.restart(follower_of(cluster, leader)).unwrap(),
        Fault::IsolateLeader => cluster.heal(),
        Fault::PauseLeader => cluster.resume(leader).unwrap(),
        Fault::RestartAll => {
            for id in 1..=cluster.nodes.len() as u64 {
                cluster.restart(id).unwrap();
            }
        }
    }
    let took = rt
        .block_on(workload::time_to_write(
            cluster.client_addresses(),
            RECOVERY_MAX * 2,
        ))
        .unwrap_or(RECOVERY_MAX * 2);
    eprintln!("{fault:?}: leader was {leader}; writes again {took:?} after healing");
    took
}

/// The clusters of this file run one at a time: they share two cores, and timing matters.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run_with_faults(name: &str, nodes: u64, faults: &[Fault], seed: u64) {
    run_with_faults_and(name, nodes, &[], faults, seed)
}

fn run_with_faults_and(name: &str, nodes: u64, args: &[&str], faults: &[Fault], seed: u64) {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut options = ClusterOptions {
        nodes,
        ..ClusterOptions::default()
    };
    options.args.extend(args.iter().map(|a| a.to_string()));
    let mut cluster = Cluster::start(name, options).unwrap();
    let rt = runtime();
    let load = workload::start(
        &rt,
        cluster.client_addresses(),
        Workload {
            clients: 4,
            keys: 6,
            seed,
        },
    );
    std::thread::sleep(Duration::from_secs(1));
    let mut slow = Vec::new();
    for &fault in faults {
        let took = inflict(&rt, &mut cluster, fault, Duration::from_millis(1500));
        if took > RECOVERY_MAX {
            slow.push((fault, took));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let rec = load.rec.clone();
    let history = load.finish(&rt, cluster.client_addresses());
    eprintln!("{name}: {} operations", history.len());
    workload::assert_linearizable(&history, || cluster.logs());
    let completed = rec.completed.load(Ordering::Relaxed);
    assert!(completed > 100, "the workload made progress: {completed}");
    assert!(slow.is_empty(), "slow recoveries: {slow:?}");
}

#[test]
fn three_nodes_stay_linearizable_through_kills_a_partition_a_pause_and_a_full_restart() {
    run_with_faults(
        "faults3",
        3,
        &[
            Fault::KillLeader,
            Fault::KillFollower,
            Fault::IsolateLeader,
            Fault::PauseLeader,
            Fault::RestartAll,
        ],
        3,
    );
}

#[test]
fn five_nodes_stay_linearizable_through_leader_kills_and_partitions() {
    run_with_faults(
        "faults5",
        5,
        &[
            Fault::KillLeader,
            Fault::IsolateLeader,
            Fault::KillFollower,
            Fault::KillLeader,
        ],
        5,
    );
}

#[test]
fn three_nodes_compacting_all_the_time_survive_kills_and_restarts() {
    run_with_faults_and(
        "compacting",
        3,
        &["--compact-entries", "50"],
        &[
            Fault::KillLeader,
            Fault::RestartAll,
            Fault::KillFollower,
            Fault::KillLeader,
        ],
        7,
    );
}

#[test]
fn a_node_that_missed_compacted_entries_catches_up_by_snapshot() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut options = ClusterOptions::default();
    options
        .args
        .extend(["--compact-entries".into(), "100".into()]);
    let mut cluster = Cluster::start("snapshot", options).unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).unwrap();
    let behind = follower_of(&cluster, leader);
    cluster.kill(behind).unwrap();
    let rt = runtime();
    let client = kvstore::client::cluster::ClusterClient::new(
        cluster.client_addresses(),
        Default::default(),
    );
    rt.block_on(async {
        for i in 0..500u32 {
            let key = format!("key-{}", i % 50);
            client
                .put(
                    "default",
                    key.as_bytes(),
                    &i.to_le_bytes(),
                    Default::default(),
                )
                .await
                .unwrap();
        }
    });
    let leader_group = tests::cluster::data_group(&cluster.status(leader).unwrap());
    assert!(
        leader_group["snapshot_index"].as_u64().unwrap() > 100,
        "the leader compacted its log: {leader_group}"
    );
    cluster.restart(behind).unwrap();
    let commit = leader_group["commit"].as_u64().unwrap();
    let caught_up = tests::harness::wait_until(Duration::from_secs(20), || {
        cluster.status(behind).is_some_and(|s| {
            let g = &tests::cluster::data_group(&s);
            g["applied"].as_u64() >= Some(commit) && g["snapshot_index"].as_u64() > Some(0)
        })
    });
    assert!(caught_up, "node {behind} caught up\n{}", cluster.logs());
    assert!(
        cluster
            .node(behind)
            .log()
            .contains("installed a snapshot from the leader"),
        "the node caught up by snapshot, not by log:\n{}",
        cluster.node(behind).log()
    );
    // Its own copy now answers follower reads with the leader's data.
    rt.block_on(async {
        let direct = kvstore::client::Client::connect(
            cluster.node(behind).addr,
            kvstore::client::ClientConfig::default(),
        )
        .await
        .unwrap();
        for i in 450..500u32 {
            let key = format!("key-{}", i % 50);
            let (got, lag) = direct
                .get_lagged("default", key.as_bytes(), Consistency::Follower)
                .await
                .unwrap();
            assert_eq!(&got.expect("present").value[..], &i.to_le_bytes());
            // A follower read says how stale it may be; this follower has heard from the
            // leader within a few heartbeats.
            let lag = lag.expect("a follower read carries its lag");
            assert!(lag.ms.is_some_and(|ms| ms < 5_000), "{lag:?}");
        }
        let (_, lag) = direct
            .get_lagged("default", b"key-1", Consistency::Linearizable)
            .await
            .unwrap();
        assert_eq!(lag, None, "a linearizable read is not stale");
    });
}

#[test]
fn a_leader_stopped_with_sigterm_hands_over_leadership_first() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let mut cluster = Cluster::start("handover", ClusterOptions::default()).unwrap();
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).unwrap();
    let status = cluster.nodes[leader as usize - 1]
        .terminate(Duration::from_secs(20))
        .unwrap();
    assert!(status.success(), "a clean exit: {status}");
    let log = cluster.node(leader).log();
    assert!(log.contains("leadership handed over"), "{log}");
    let next = cluster.wait_for_leader(Duration::from_secs(20)).unwrap();
    assert_ne!(next, leader);
    let rt = runtime();
    let took = rt.block_on(workload::time_to_write(
        cluster.client_addresses(),
        Duration::from_secs(10),
    ));
    assert!(took.is_some(), "the others take writes");
}
