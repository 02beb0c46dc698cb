//! Membership changes on a live cluster under a client workload: a fourth node joins as a
//! learner, catches up and is promoted; a follower is removed; then the leader removes itself.
//! Writes continue throughout and the history stays linearizable.

use std::time::{Duration, Instant};

use tests::cluster::{http_post, Cluster, ClusterOptions};
use tests::harness::runtime;
use tests::workload::{self, Workload};

const PATIENCE: Duration = Duration::from_secs(20);

/// Posts an admin request to the current leader until it is accepted.
fn post_to_leader(cluster: &Cluster, path: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let leader = cluster.wait_for_leader(PATIENCE).unwrap();
        match http_post(cluster.node(leader).http, path) {
            Ok(body) => return body,
            // An earlier change still committing, or a leader change: try again.
            Err(error) if Instant::now() < deadline => {
                eprintln!("{path}: {error}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(error) => panic!("{path}: {error}\n{}", cluster.logs()),
        }
    }
}

fn group(cluster: &Cluster, id: u64) -> Option<serde_json::Value> {
    cluster
        .status(id)
        .map(|s| tests::cluster::data_group(&s).clone())
}

fn voters(g: &serde_json::Value) -> Vec<u64> {
    g["voters"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_u64()).collect())
        .unwrap_or_default()
}

fn wait_for(cluster: &Cluster, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_node_joins_under_load_then_a_follower_and_the_leader_are_removed() {
    let mut cluster = Cluster::start("membership", ClusterOptions::default()).unwrap();
    let rt = runtime();
    let load = workload::start(
        &rt,
        cluster.client_addresses(),
        Workload {
            clients: 3,
            keys: 5,
            seed: 4,
        },
    );
    std::thread::sleep(Duration::from_secs(1));

    // A fourth node joins as a learner and catches up without voting.
    let args = ["--idle-spin-us".to_string(), "0".to_string()];
    let peer = cluster.start_joining_node(4, &args).unwrap();
    post_to_leader(&cluster, &format!("/cluster/add-node?id=4&peer={peer}"));
    let leader = cluster.wait_for_leader(PATIENCE).unwrap();
    let target = group(&cluster, leader).unwrap()["commit"].as_u64().unwrap();
    wait_for(&cluster, "node 4 to catch up", || {
        group(&cluster, 4).is_some_and(|g| g["applied"].as_u64() >= Some(target))
    });
    let g = group(&cluster, leader).unwrap();
    assert_eq!(voters(&g), vec![1, 2, 3], "a learner does not vote");
    assert_eq!(g["learners"], serde_json::json!([4]));

    // Promoted, it counts in the quorum.
    post_to_leader(&cluster, "/cluster/add-node?id=4&voter=true");
    wait_for(&cluster, "four voters", || {
        cluster
            .wait_for_leader(PATIENCE)
            .ok()
            .and_then(|l| group(&cluster, l))
            .is_some_and(|g| voters(&g) == vec![1, 2, 3, 4])
    });

    // A follower is removed, and stopped.
    let leader = cluster.wait_for_leader(PATIENCE).unwrap();
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    post_to_leader(&cluster, &format!("/cluster/remove-node?id={follower}"));
    wait_for(&cluster, "the follower's removal", || {
        group(&cluster, leader).is_some_and(|g| !voters(&g).contains(&follower))
    });
    cluster.kill(follower).unwrap();

    // The leader removes itself: it steps down once the change commits, and the others
    // elect a new leader among themselves.
    post_to_leader(&cluster, &format!("/cluster/remove-node?id={leader}"));
    let remaining: Vec<u64> = [1, 2, 3, 4]
        .into_iter()
        .filter(|&id| id != leader && id != follower)
        .collect();
    wait_for(&cluster, "a new leader without the old one", || {
        remaining.iter().all(|&id| {
            group(&cluster, id).is_some_and(|g| {
                g["leader"].as_u64().is_some_and(|l| remaining.contains(&l))
                    && !voters(&g).contains(&leader)
            })
        })
    });
    cluster.kill(leader).unwrap();
    let addresses: Vec<String> = remaining
        .iter()
        .map(|&id| cluster.node(id).addr.to_string())
        .collect();
    let took = rt.block_on(workload::time_to_write(addresses.clone(), PATIENCE));
    assert!(
        took.is_some(),
        "the two remaining voters take writes\n{}",
        cluster.logs()
    );
    std::thread::sleep(Duration::from_secs(1));

    let history = load.finish(&rt, addresses);
    workload::assert_linearizable(&history, || cluster.logs());
}
