//! The whole life of a cluster node as a library call: open its data and start its Raft
//! thread ([`NodeServer::start`]), then serve its clients and peers until told to stop
//! ([`NodeServer::run`]). `kvstore serve --node-id ...` is a thin wrapper around it (it binds
//! the listeners, writes the ready file in between and passes SIGINT/SIGTERM as the shutdown);
//! a test or an embedding program can bind port 0 and call it the same way.
//!
//! It sits here, above `node`, so that the node runtime and its state machine never name a
//! listener: the dependency points one way, from the servers down to the node.
//!
//! Stopping: when `shutdown` resolves, a leader first hands leadership to another voter (at
//! most `handover` long), then connections drain and the Raft thread stops after its round.
//! If the Raft thread fails (its log cannot be written, its storage fails while applying), the
//! node stops serving at once and `run` returns the reason: fail-stop, for a supervisor to
//! restart it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;

use super::{Listeners, ServerConfig};
use crate::node::{Node, NodeConfig};

/// How often the failure of the Raft thread is checked for.
const FAILURE_POLL: Duration = Duration::from_millis(100);

/// A started node and the listeners it will serve.
pub struct NodeServer {
    pub node: Node,
    listeners: Listeners,
    peer: TcpListener,
    server: ServerConfig,
    data_dir: std::path::PathBuf,
    control: super::control::ControlOptions,
    /// One of the founding members (`--peers` names it).
    founding: bool,
}

impl NodeServer {
    /// Opens the node's data in `config.data_dir` and starts its Raft thread (on a blocking
    /// thread: replaying a log can take a while). Clients and peers are not served yet.
    pub async fn start(
        listeners: Listeners,
        peer: TcpListener,
        config: NodeConfig,
        server: ServerConfig,
    ) -> anyhow::Result<NodeServer> {
        let data_dir = config.data_dir.clone();
        let founding = config.peers.contains_key(&config.id);
        let node_dir = data_dir.clone();
        let runtime = tokio::runtime::Handle::current();
        let node = tokio::task::spawn_blocking(move || Node::start(config, runtime))
            .await?
            .with_context(|| format!("opening node data in {}", data_dir.display()))?;
        Ok(NodeServer {
            node,
            listeners,
            peer,
            server,
            data_dir: node_dir,
            control: Default::default(),
            founding,
        })
    }

    /// Joins a running cluster through the member listening for peers at `peer_address`:
    /// the node learns the map from it, registers, and the placement moves replicas here.
    pub fn join(mut self, peer_address: Option<String>) -> NodeServer {
        self.control.join = peer_address;
        self
    }

    /// Marks a node down (and re-creates its replicas elsewhere) after it answered no ping
    /// for this long (see [`super::control::DOWN_AFTER_DEFAULT`]).
    pub fn down_after(mut self, delay: Duration) -> NodeServer {
        self.control.down_after = delay;
        self
    }

    /// Serves clients and peers until `shutdown` resolves (then hands leadership over for at
    /// most `handover`) or the Raft thread fails; see the module documentation.
    pub async fn run(
        self,
        handover: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let NodeServer {
            node,
            listeners,
            peer,
            server,
            data_dir: node_dir,
            control,
            founding,
        } = self;
        let local = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).ok();
        let me = crate::partition::NodeInfo {
            id: node.id(),
            peer: local(&peer).unwrap_or_default(),
            client: local(&listeners.binary).unwrap_or_default(),
            resp: listeners.resp.as_ref().and_then(local),
            http: listeners.http.as_ref().and_then(local),
            state: crate::partition::NodeState::Up,
        };
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        {
            let stop_tx = stop_tx.clone();
            let node = node.clone();
            tokio::spawn(async move {
                shutdown.await;
                node.hand_over_leadership(handover).await;
                let _ = stop_tx.send(true);
            });
        }
        let failure = {
            let node = node.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(FAILURE_POLL).await;
                    if let Some(reason) = node.failure() {
                        let _ = stop_tx.send(true);
                        return Some(reason);
                    }
                    if stop_tx.is_closed() {
                        return None;
                    }
                }
            })
        };
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let control_task = {
            let registers = founding || control.join.is_some();
            let controller = super::control::Controller::new(node.clone(), me, control, registers);
            tokio::spawn(controller.run(stopped(stop_rx.clone())))
        };
        let peers_task = {
            let node = node.clone();
            let stop = stopped(stop_rx.clone());
            tokio::spawn(async move { node.serve_peers(peer, stop).await })
        };
        // The server's own engine, for what a single node would do with it (nothing a
        // cluster node's requests touch): the lowest group's, or a local one if the node
        // hosts none yet (a node waiting to be added).
        let db = match node.groups().first().and_then(|&g| node.db(g)) {
            Some(db) => db,
            None => crate::db::Db::new(crate::storage::Engine::open(
                node_dir.join("local"),
                crate::storage::Config::default(),
                Arc::new(crate::storage::SystemClock),
            )?),
        };
        let result = super::run(listeners, db, Some(node.clone()), server, stopped(stop_rx)).await;
        node.shutdown();
        let _ = peers_task.await;
        let _ = control_task.await;
        if failure.is_finished() {
            if let Ok(Some(reason)) = failure.await {
                anyhow::bail!("the node stopped: {reason}");
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Client, ClientConfig};

    async fn listener() -> TcpListener {
        TcpListener::bind("127.0.0.1:0").await.unwrap()
    }

    /// A node of one, in process on port 0: it serves a write and a read, and stops when told.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_of_one_serves_in_process_and_stops_when_told() {
        let dir = crate::test_dir::TestDir::new("node-server");
        let (binary, peer) = (listener().await, listener().await);
        let client_addr = binary.local_addr().unwrap();
        let mut config = NodeConfig::new(1, dir.to_path_buf());
        config
            .peers
            .insert(1, peer.local_addr().unwrap().to_string());
        config.tick = Duration::from_millis(5);
        let listeners = Listeners {
            binary,
            resp: None,
            http: None,
        };
        let server = NodeServer::start(listeners, peer, config, ServerConfig::default())
            .await
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(server.run(Duration::from_millis(100), async {
            let _ = stopped.await;
        }));
        let client = Client::connect(client_addr, ClientConfig::default())
            .await
            .unwrap();
        // The node elects itself within a few ticks; writes are refused until then.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while client.put("default", b"k", b"v").await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "no leader");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = client.get("default", b"k").await.unwrap();
        assert_eq!(got.map(|v| v.value), Some("v".into()));
        stop.send(()).unwrap();
        running.await.unwrap().unwrap();
    }
}
