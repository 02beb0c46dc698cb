//! A cluster of real `kvstore` processes on loopback, and the faults a test inflicts on it.
//!
//! Every node's peer links go through a proxy the harness runs, one per direction of every
//! pair (node 1 reaches node 2 at the proxy for 1→2, which forwards to node 2's peer port).
//! Cutting a link closes its connections and refuses new ones, so a test partitions the
//! cluster however it likes, one direction at a time if it wants to. Nodes keep their ports
//! across restarts, so clients and proxies find them again.
//!
//! Faults: [`Cluster::kill`] (SIGKILL), [`Cluster::pause`] and [`Cluster::resume`] (SIGSTOP,
//! SIGCONT), [`Cluster::restart`], [`Cluster::isolate`] and [`Cluster::heal`].

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::{Server, ServerOptions, TempDir};

/// Settings of a test cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub nodes: u64,
    /// `kvstore serve --fsync`: `always` makes the WAL fsync.
    pub fsync: String,
    /// More `kvstore serve` arguments for every node.
    pub args: Vec<String>,
    /// Route peer links through the harness's proxies (needed for [`Cluster::isolate`]);
    /// benchmarks turn this off so that the proxies cost nothing.
    pub proxies: bool,
    /// Partitions of the keyspace `default` (`kvstore serve --default-partitions`). The
    /// part 2 tests use 1: one Raft group, replicated on every node, holds the keyspace, and
    /// "the leader" is its leader.
    pub partitions: u32,
}

impl Default for ClusterOptions {
    fn default() -> ClusterOptions {
        ClusterOptions {
            nodes: 3,
            fsync: "always".into(),
            // Several nodes share two cores: spinning would steal from the others.
            args: vec!["--idle-spin-us".into(), "0".into()],
            proxies: true,
            partitions: 1,
        }
    }
}

#[derive(Default)]
struct Link {
    cut: bool,
    connections: Vec<JoinHandle<()>>,
}

type Links = Arc<Mutex<HashMap<(u64, u64), Link>>>;

/// The status of the first partition of `default` (group 1) in a node's `/cluster` status:
/// with one partition, the group that holds the whole keyspace.
pub fn data_group(status: &serde_json::Value) -> serde_json::Value {
    group_of(status, 1)
}

/// The status of `group` in a node's `/cluster` status (`Null` if it hosts none).
pub fn group_of(status: &serde_json::Value, group: u64) -> serde_json::Value {
    status["groups"]
        .as_array()
        .and_then(|groups| groups.iter().find(|g| g["group"].as_u64() == Some(group)))
        .cloned()
        .unwrap_or(serde_json::Value::Null)
}

/// A running cluster. Node ids are 1..=n; `nodes[i]` is node `i + 1`.
pub struct Cluster {
    pub nodes: Vec<Server>,
    links: Links,
    /// Runs the proxies.
    runtime: tokio::runtime::Runtime,
    pub dir: TempDir,
}

impl Cluster {
    /// Starts `options.nodes` nodes that found one cluster, and waits for a leader.
    pub fn start(name: &str, options: ClusterOptions) -> Result<Cluster> {
        let n = options.nodes;
        let dir = TempDir::new(name);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let links: Links = Arc::default();
        // Every port the nodes will listen on (peer, binary, RESP, HTTP) is held until the
        // proxies are bound, so no proxy can take one of them.
        let reserved = crate::harness::reserve_ports(n as usize * 4);
        let ports: Vec<u16> = reserved
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<std::io::Result<_>>()?;
        let (peer_ports, client_ports) = ports.split_at(n as usize);
        let mut proxy_of = BTreeMap::new();
        for from in (1..=n).filter(|_| options.proxies) {
            for to in (1..=n).filter(|&to| to != from) {
                let target: SocketAddr = ([127, 0, 0, 1], peer_ports[to as usize - 1]).into();
                let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
                proxy_of.insert((from, to), listener.local_addr()?);
                links.lock().unwrap().insert((from, to), Link::default());
                runtime.spawn(proxy(listener, target, (from, to), links.clone()));
            }
        }
        drop(reserved);
        let mut nodes = Vec::new();
        for id in 1..=n {
            let peers: Vec<String> = (1..=n)
                .map(|to| match proxy_of.get(&(id, to)) {
                    Some(addr) => format!("{to}={addr}"),
                    None => format!("{to}=127.0.0.1:{}", peer_ports[to as usize - 1]),
                })
                .collect();
            let ports = &client_ports[(id as usize - 1) * 3..id as usize * 3];
            let mut args = vec![
                "--node-id".to_string(),
                id.to_string(),
                "--peers".into(),
                peers.join(","),
                "--peer-listen".into(),
                format!("127.0.0.1:{}", peer_ports[id as usize - 1]),
                "--default-partitions".into(),
                options.partitions.to_string(),
                // Part 2's single group has every node as a voter (a five-node test means
                // five voters); partitions get the default three replicas.
                "--default-replicas".into(),
                if options.partitions == 1 { n.min(7) } else { 3 }.to_string(),
            ];
            args.extend(options.args.iter().cloned());
            let node_dir = dir.path.join(format!("node-{id}"));
            std::fs::create_dir_all(&node_dir)?;
            let server = Server::start(
                &node_dir,
                ServerOptions {
                    fsync: options.fsync.clone(),
                    args,
                    ports: Some([ports[0], ports[1], ports[2]]),
                },
            )
            .with_context(|| format!("starting node {id}"))?;
            nodes.push(server);
        }
        let cluster = Cluster {
            nodes,
            links,
            runtime,
            dir,
        };
        cluster.wait_for_leader(Duration::from_secs(20))?;
        Ok(cluster)
    }

    pub fn node(&self, id: u64) -> &Server {
        &self.nodes[id as usize - 1]
    }

    fn node_mut(&mut self, id: u64) -> &mut Server {
        &mut self.nodes[id as usize - 1]
    }

    /// Every node's binary-protocol address, for a [`kvstore::client::cluster::ClusterClient`].
    pub fn client_addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|s| s.addr.to_string()).collect()
    }

    /// Node `id`'s `/cluster` status, if it answers within a second.
    pub fn status(&self, id: u64) -> Option<serde_json::Value> {
        let node = self.node(id);
        if !node.is_running() {
            return None;
        }
        let body = http_get(node.http, "/cluster").ok()?;
        serde_json::from_str(&body).ok()
    }

    /// The leader that a majority of the reachable nodes agree on, with its term.
    pub fn leader(&self) -> Option<u64> {
        let mut votes: BTreeMap<(u64, u64), usize> = BTreeMap::new();
        for id in 1..=self.nodes.len() as u64 {
            if let Some(s) = self.status(id) {
                let g = data_group(&s);
                if let (Some(leader), Some(term)) = (g["leader"].as_u64(), g["term"].as_u64()) {
                    *votes.entry((term, leader)).or_default() += 1;
                }
            }
        }
        let majority = self.nodes.len() / 2 + 1;
        votes
            .into_iter()
            .rev()
            .find(|(_, n)| *n >= majority)
            .map(|((_, leader), _)| leader)
    }

    /// Waits until a majority agrees on a leader; returns it.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(leader) = self.leader() {
                return Ok(leader);
            }
            if Instant::now() > deadline {
                bail!("no leader after {timeout:?}:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the placement has settled: the map (read from the meta group) is not
    /// rebalancing and no move is in flight. A partitioned cluster balances its leaders once
    /// it has started; tests about routing wait for that, so that no leadership transfer
    /// answers one of their requests with "try again".
    pub fn wait_settled(&self, timeout: Duration) -> Result<()> {
        let client = kvstore::client::cluster::ClusterClient::new(
            self.client_addresses(),
            Default::default(),
        );
        let deadline = Instant::now() + timeout;
        loop {
            let map = self.runtime.block_on(client.current_map());
            if map.is_ok_and(|m| !m.rebalancing && m.groups.values().all(|g| g.want.is_empty())) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the placement did not settle in {timeout:?}:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGKILL.
    pub fn kill(&mut self, id: u64) -> Result<()> {
        self.node_mut(id).kill()
    }

    /// Starts a killed (or running) node again on its data and ports.
    pub fn restart(&mut self, id: u64) -> Result<()> {
        self.node_mut(id).restart()
    }

    /// SIGSTOP: the node freezes with its connections open.
    pub fn pause(&self, id: u64) -> Result<()> {
        self.node(id).signal("STOP")
    }

    /// SIGCONT.
    pub fn resume(&self, id: u64) -> Result<()> {
        self.node(id).signal("CONT")
    }

    /// Cuts every link between `id` and the others, both ways. (Its clients still reach it.)
    pub fn isolate(&self, id: u64) {
        let mut links = self.links.lock().unwrap();
        for ((from, to), link) in links.iter_mut() {
            if *from == id || *to == id {
                link.cut = true;
                for c in link.connections.drain(..) {
                    c.abort();
                }
            }
        }
    }

    /// Restores every link.
    pub fn heal(&self) {
        for link in self.links.lock().unwrap().values_mut() {
            link.cut = false;
        }
    }

    /// Starts node `id` with no founding peers, to be added to the cluster (it is not behind
    /// the proxies: peers reach it at its own address). Returns its peer address.
    pub fn start_joining_node(&mut self, id: u64, args: &[String]) -> Result<String> {
        assert_eq!(
            id as usize,
            self.nodes.len() + 1,
            "nodes are numbered in order"
        );
        let ports = crate::harness::free_ports(4);
        let peer = format!("127.0.0.1:{}", ports[3]);
        let mut all = vec![
            "--node-id".to_string(),
            id.to_string(),
            "--peer-listen".into(),
            peer.clone(),
        ];
        all.extend(args.iter().cloned());
        let node_dir = self.dir.path.join(format!("node-{id}"));
        std::fs::create_dir_all(&node_dir)?;
        let server = Server::start(
            &node_dir,
            ServerOptions {
                fsync: "always".into(),
                args: all,
                ports: Some([ports[0], ports[1], ports[2]]),
            },
        )?;
        self.nodes.push(server);
        Ok(peer)
    }

    /// Every node's log, for a failure message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let log = s.log();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("----- node {} -----\n{}\n", i + 1, tail.join("\n"))
            })
            .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Paused nodes must be resumed to die promptly.
        for node in &self.nodes {
            let _ = node.signal("CONT");
        }
        for node in &mut self.nodes {
            let _ = node.kill();
        }
        let _ = &self.runtime;
    }
}

/// Forwards connections from `listener` to `target` while the link is up.
async fn proxy(listener: TcpListener, target: SocketAddr, link: (u64, u64), links: Links) {
    while let Ok((inbound, _)) = listener.accept().await {
        // Checked and registered under one lock, so `isolate` cannot miss a connection.
        let mut links = links.lock().unwrap();
        let l = links.entry(link).or_default();
        if l.cut {
            drop(inbound);
            continue;
        }
        let task = tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (mut ri, mut wi) = inbound.into_split();
            let (mut ro, mut wo) = outbound.into_split();
            tokio::select! {
                _ = tokio::io::copy(&mut ri, &mut wo) => {}
                _ = tokio::io::copy(&mut ro, &mut wi) => {}
            }
        });
        l.connections.retain(|c| !c.is_finished());
        l.connections.push(task);
    }
}

/// A plain HTTP GET with a short budget; the body of a 200 answer.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    http(addr, "GET", path)
}

/// A plain HTTP POST with no body; the body of a 200 answer.
pub fn http_post(addr: SocketAddr, path: &str) -> Result<String> {
    http(addr, "POST", path)
}

fn http(addr: SocketAddr, method: &str, path: &str) -> Result<String> {
    let timeout = Duration::from_secs(6);
    let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: 0\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").context("not HTTP")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{head}");
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok(kvstore::cli::dechunk(body));
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A node's ports are chosen by the harness before the node binds them, so they must lie
    /// below the kernel's ephemeral range: a port of that range can be taken by any outgoing
    /// connection in between ("address already in use", CI on 2026-12-08).
    #[test]
    fn every_node_listens_below_the_ephemeral_range() {
        let ephemeral_from = crate::harness::ephemeral_ports_from();
        let cluster = Cluster::start("ports-below-ephemeral", ClusterOptions::default()).unwrap();
        for node in &cluster.nodes {
            for addr in [node.addr, node.resp, node.http] {
                assert!(
                    addr.port() < ephemeral_from,
                    "{addr} lies in the ephemeral range, from {ephemeral_from}"
                );
            }
        }
    }
}
