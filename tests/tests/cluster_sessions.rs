//! One `ClusterClient` shared by many tasks keeps many writes in flight (a session window on
//! the cluster) and still applies each at most once, through a leader's death.

use std::sync::Arc;
use std::time::Duration;

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::wire::Consistency;
use tests::cluster::{Cluster, ClusterOptions};
use tests::harness::runtime;

#[test]
fn a_shared_client_applies_each_of_many_concurrent_writes_once_through_a_leader_kill() {
    let mut cluster = Cluster::start("sessions", ClusterOptions::default()).unwrap();
    let rt = runtime();
    let client = Arc::new(ClusterClient::new(
        cluster.client_addresses(),
        ClusterConfig::default(),
    ));
    let writes = 3000;
    let tasks: Vec<_> = (0..writes)
        .map(|_| {
            let client = client.clone();
            rt.spawn(async move { client.incr("default", b"n", 1).await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).unwrap();
    let done_before_kill = tasks.iter().filter(|t| t.is_finished()).count();
    cluster.kill(leader).unwrap();
    let (mut acknowledged, mut unknown) = (0, 0);
    let mut values = Vec::new();
    for task in tasks {
        match rt.block_on(task).unwrap() {
            Ok(value) => {
                acknowledged += 1;
                values.push(value);
            }
            Err(e) if e.outcome_unknown() => unknown += 1,
            Err(e) => panic!("a definite failure: {e}"),
        }
    }
    cluster.restart(leader).unwrap();
    let total = rt
        .block_on(client.get("default", b"n", Consistency::Linearizable))
        .unwrap()
        .map(|v| {
            String::from_utf8(v.value.to_vec())
                .unwrap()
                .parse::<u64>()
                .unwrap()
        })
        .unwrap_or(0);
    eprintln!(
        "{done_before_kill} done before the kill; {acknowledged} acknowledged, {unknown} \
         unknown, counter at {total}"
    );
    assert!(done_before_kill < writes as usize, "the kill came mid-way");
    // The client retries through the election well within its deadline, and no write's id
    // falls out of the session window while it is in flight: every write gets a definite
    // answer. (A window kept by counting writes in flight let slow ones fall out of it.)
    assert_eq!(unknown, 0, "every write gets a definite answer");
    assert!(
        total >= acknowledged && total <= acknowledged + unknown,
        "every acknowledged write applied once, no write twice: {total} after \
         {acknowledged} acknowledged and {unknown} unknown"
    );
    // Each acknowledged increment saw its own value: no two answers share one.
    values.sort_unstable();
    values.dedup();
    assert_eq!(values.len() as u64, acknowledged, "distinct results");
}
