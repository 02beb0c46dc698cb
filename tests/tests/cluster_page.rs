//! The live cluster page, in a real browser: headless Chromium opens a node's HTTP admin
//! `/`, lets the page's script fetch `/cluster/overview`, and the DOM it renders lists every
//! node and every partition with its leader; after the leader of a partition is killed, the
//! page (on another node) shows that node not answering and the partition led elsewhere.

use std::time::Duration;

use tests::cluster::{group_of, Cluster, ClusterOptions};
use tests::harness::wait_until;

const PARTITIONS: u64 = 8;

/// The page at `http` after its script has run, as Chromium renders it.
fn rendered(http: std::net::SocketAddr) -> String {
    let profile = tempfile_dir();
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.display()),
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("http://{http}/"),
        ])
        .output()
        .expect("chromium (scripts/install-test-deps.sh installs it)");
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "kvstore-page-chromium-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The leader the page shows for `group` ("" for none).
fn leader_shown(dom: &str, group: u64) -> Option<String> {
    let at = dom.find(&format!("data-group=\"{group}\" data-leader=\""))?;
    let rest = &dom[at..];
    let start = rest.find("data-leader=\"")? + "data-leader=\"".len();
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].to_string())
}

#[test]
fn the_cluster_page_shows_every_node_and_partition_and_a_leader_change() {
    let mut cluster = Cluster::start(
        "cluster-page",
        ClusterOptions {
            partitions: PARTITIONS as u32,
            ..ClusterOptions::default()
        },
    )
    .unwrap();
    let led = |g: u64| {
        (1..=3).find(|&id| {
            cluster
                .status(id)
                .is_some_and(|s| group_of(&s, g)["role"] == "leader")
        })
    };
    assert!(
        wait_until(Duration::from_secs(60), || (0..=PARTITIONS)
            .all(|g| led(g).is_some())),
        "every group elected a leader"
    );
    cluster.wait_settled(Duration::from_secs(60)).unwrap();

    let dom = rendered(cluster.node(1).http);
    for id in 1..=3 {
        assert!(
            dom.contains(&format!("data-node=\"{id}\"")),
            "node {id} on the page:\n{dom}"
        );
    }
    for g in 0..=PARTITIONS {
        let shown =
            leader_shown(&dom, g).unwrap_or_else(|| panic!("group {g} on the page:\n{dom}"));
        assert!(!shown.is_empty(), "group {g} shows its leader");
    }
    assert!(dom.contains("(8 partitions)"), "{dom}");

    // The leader of partition 0 (group 1) dies; node 2's page shows the change.
    let victim = led(1).unwrap();
    cluster.kill(victim).unwrap();
    let watcher = (1..=3).find(|&id| id != victim).unwrap();
    let mut last = String::new();
    let moved = wait_until(Duration::from_secs(30), || {
        last = rendered(cluster.node(watcher).http);
        leader_shown(&last, 1).is_some_and(|l| !l.is_empty() && l != victim.to_string())
    });
    assert!(
        moved,
        "the page shows group 1 led by another node than {victim}:\n{last}"
    );
    assert!(
        last.contains(&format!("class=\"unreachable\" data-node=\"{victim}\"")),
        "the page shows node {victim} not answering:\n{last}"
    );
    cluster.restart(victim).unwrap();
}
