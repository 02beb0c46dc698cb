//! Nothing assumes a single host: three nodes, each in its own network namespace with its own
//! address (veth pairs on a bridge the test creates, and removes at the end), found a
//! partitioned cluster, and clients on the host reach them by those addresses. One node's
//! link is then cut at the network level (its veth goes down): the other two keep serving
//! every partition, and once the link is back the node catches up and every write is there.
//!
//! Needs root (network namespaces); `iproute2` provides `ip`.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kvstore::client::cluster::{ClusterClient, ClusterConfig};
use kvstore::wire::{Condition, Consistency};
use tests::harness::{kvstore_bin, runtime, wait_until};

const NODES: u64 = 3;

/// The namespaces, links and processes of one test run; `Drop` removes them all.
struct Net {
    tag: String,
    subnet: String,
    dir: PathBuf,
    nodes: Vec<Child>,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` (iproute2) to run");
    assert!(
        out.status.success(),
        "ip {}: {} (this test needs root to create network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn new() -> Net {
        let pid = std::process::id();
        let tag = format!("{}", pid % 100_000);
        let subnet = format!("10.213.{}", pid % 250);
        let dir = std::env::temp_dir().join(format!("kvstore-e2e-netns-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let net = Net {
            tag,
            subnet,
            dir,
            nodes: Vec::new(),
        };
        let br = net.bridge();
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&["addr", "add", &format!("{}.254/24", net.subnet), "dev", &br]);
        ip(&["link", "set", &br, "up"]);
        for i in 1..=NODES {
            let (ns, host, inner) = (net.ns(i), net.veth(i), format!("kvn{i}"));
            ip(&["netns", "add", &ns]);
            ip(&["link", "add", &host, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", &ns]);
            ip(&["link", "set", &host, "master", &br, "up"]);
            let addr = format!("{}/24", net.addr(i));
            ip(&[
                "netns", "exec", &ns, "ip", "addr", "add", &addr, "dev", &inner,
            ]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", &inner, "up"]);
            ip(&["netns", "exec", &ns, "ip", "link", "set", "lo", "up"]);
        }
        net
    }

    fn bridge(&self) -> String {
        format!("kvbr{}", self.tag)
    }
    fn ns(&self, i: u64) -> String {
        format!("kvns{}-{i}", self.tag)
    }
    fn veth(&self, i: u64) -> String {
        format!("kvv{}-{i}", self.tag)
    }
    fn addr(&self, i: u64) -> String {
        format!("{}.{i}", self.subnet)
    }

    /// Starts node `i` inside its namespace, listening on its own address.
    fn start(&mut self, i: u64) {
        let peers: Vec<String> = (1..=NODES)
            .map(|n| format!("{n}={}:7100", self.addr(n)))
            .collect();
        let a = self.addr(i);
        let log = std::fs::File::create(self.dir.join(format!("node-{i}.log"))).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(i)])
            .arg(kvstore_bin())
            .args([
                "serve",
                "--node-id",
                &i.to_string(),
                "--peers",
                &peers.join(","),
            ])
            .args([
                "--peer-listen",
                &format!("{a}:7100"),
                "--listen",
                &format!("{a}:7379"),
            ])
            .args([
                "--resp-listen",
                &format!("{a}:6380"),
                "--http-listen",
                &format!("{a}:7380"),
            ])
            .args(["--default-partitions", "8", "--idle-spin-us", "0"])
            .arg("--data-dir")
            .arg(self.dir.join(format!("node-{i}")))
            .stderr(log)
            .spawn()
            .expect("starting a node in its namespace");
        self.nodes.push(child);
    }

    fn client_addresses(&self) -> Vec<String> {
        (1..=NODES)
            .map(|i| format!("{}:7379", self.addr(i)))
            .collect()
    }

    fn logs(&self) -> String {
        (1..=NODES)
            .map(|i| {
                let log = std::fs::read_to_string(self.dir.join(format!("node-{i}.log")))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("----- node {i} -----\n{}\n", tail.join("\n"))
            })
            .collect()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for child in &mut self.nodes {
            let _ = child.kill();
            let _ = child.wait();
        }
        for i in 1..=NODES {
            let _ = Command::new("ip")
                .args(["link", "del", &self.veth(i)])
                .output();
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .output();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge()])
            .output();
        if std::env::var_os("KVSTORE_TEST_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[test]
fn every_node_in_its_own_network_namespace_and_a_cut_link() {
    let mut net = Net::new();
    for i in 1..=NODES {
        net.start(i);
    }
    let rt = runtime();
    let client = ClusterClient::new(net.client_addresses(), ClusterConfig::default());
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt
        .block_on(client.put("default", b"probe", b"1", Condition::None))
        .is_err()
    {
        assert!(Instant::now() < deadline, "no cluster:\n{}", net.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    // The map names the nodes by the addresses of their namespaces (once each registered).
    let registered = wait_until(Duration::from_secs(30), || {
        rt.block_on(client.current_map()).is_ok_and(|map| {
            (1..=NODES).all(|i| {
                map.nodes
                    .get(&i)
                    .is_some_and(|n| n.client == format!("{}:7379", net.addr(i)))
            })
        })
    });
    assert!(
        registered,
        "every node registered its address:\n{}",
        net.logs()
    );
    let key = |i: usize| format!("netns:{i:04}").into_bytes();
    for i in 0..300 {
        rt.block_on(client.put("default", &key(i), b"before", Condition::None))
            .unwrap();
    }

    // Node 3's link goes down: the two others serve every partition.
    ip(&["link", "set", &net.veth(3), "down"]);
    for i in 300..600 {
        rt.block_on(client.put("default", &key(i), b"during", Condition::None))
            .unwrap_or_else(|e| panic!("write {i} with node 3 cut off: {e}\n{}", net.logs()));
    }
    ip(&["link", "set", &net.veth(3), "up"]);

    // Back, node 3 catches up: a follower read on it sees every write.
    // (Three replicas on three nodes: node 3 hosts every partition.)
    let three = rt
        .block_on(kvstore::client::Client::connect(
            format!("{}:7379", net.addr(3)),
            Default::default(),
        ))
        .unwrap();
    let caught_up = wait_until(Duration::from_secs(60), || {
        (0..600).step_by(7).all(|i| {
            rt.block_on(three.get_with("default", &key(i), Consistency::Follower))
                .is_ok_and(|v| v.is_some())
        })
    });
    assert!(
        caught_up,
        "node 3 serves every write after the cut:\n{}",
        net.logs()
    );
    for i in 0..600 {
        let got = rt
            .block_on(client.get("default", &key(i), Consistency::Linearizable))
            .unwrap();
        let want: &[u8] = if i < 300 { b"before" } else { b"during" };
        assert_eq!(
            got.map(|v| v.value.to_vec()),
            Some(want.to_vec()),
            "key {i}"
        );
    }
}
