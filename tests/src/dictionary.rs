//! What the dictionary tests share: a slice of the real dictionary, and a search replica
//! (`dictionary-search serve`) run as a real process, spoken to with curl.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use dictionary_search::dataset;
use dictionary_search::entry::Entry;
use dictionary_search::source::Sources;

use std::sync::Arc;

use dictionary_search::store;
use kvstore::client::cluster::{ClusterClient, ClusterConfig};

use crate::cluster::{Cluster, ClusterOptions};
use crate::harness::{free_ports, runtime, wait_until, Proc};

/// Every `every`th entry of the real dictionary (parsed from the installed sources), and the
/// ones the examples name.
pub fn slice(every: usize) -> BTreeMap<String, Entry> {
    let parsed = Sources::default()
        .read(&mut |_| {})
        .expect("the dictionary sources (scripts/install-dictionary-data.sh installs them)");
    let all = dataset::merge(&parsed);
    let named = [
        "acrophobia",
        "goose",
        "run",
        "good",
        "better",
        "ice cream",
        "fear",
        "height",
        "across",
        "acronym",
        "cat",
        "hat",
        "bat",
        "listen",
        "silent",
    ];
    all.into_iter()
        .enumerate()
        .filter(|(i, (k, _))| i % every == 0 || named.contains(&k.as_str()))
        .map(|(_, kv)| kv)
        .collect()
}

/// A 3-node store (named `name`) with `entries` loaded into its `dictionary` keyspace of 8
/// partitions, a client of it and a runtime to drive the client with.
pub fn loaded_store(
    name: &str,
    entries: &BTreeMap<String, Entry>,
) -> (Cluster, Arc<ClusterClient>, tokio::runtime::Runtime) {
    let cluster = Cluster::start(name, ClusterOptions::default()).expect("a cluster starts");
    cluster
        .wait_for_leader(Duration::from_secs(30))
        .expect("a leader");
    let rt = runtime();
    let client = Arc::new(ClusterClient::new(
        cluster.client_addresses(),
        ClusterConfig::default(),
    ));
    rt.block_on(store::ensure_keyspace(&client, 8))
        .expect("the dictionary keyspace");
    let version = dataset::version(entries);
    rt.block_on(store::load(
        client.clone(),
        entries,
        &version,
        false,
        &|_| {},
    ))
    .expect("a load");
    (cluster, client, rt)
}

/// A `dictionary-search serve` process, killed on drop.
pub struct Replica {
    pub proc: Proc,
    pub addr: String,
}

impl Replica {
    pub fn start(store: &[String], dir: &Path) -> Replica {
        let port = free_ports(1)[0];
        let addr = format!("127.0.0.1:{port}");
        let args = ["serve", "--listen", &addr, "--store", &store.join(",")]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let log = dir.join(format!("replica-{port}.log"));
        Replica {
            proc: Proc::start("dictionary-search", args, log),
            addr,
        }
    }

    /// Starts it again on the same address, after a kill; its log is appended to.
    pub fn restart(&mut self) {
        self.proc.restart();
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// Waits until `/health` answers 200 (the index is built).
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        wait_until(timeout, || self.get("/health").0 == 200)
    }

    /// `curl` GET: the status and the body.
    pub fn get(&self, path: &str) -> (u16, String) {
        curl(&format!("http://{}{path}", self.addr), &[])
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}

/// Runs curl on `url` with `args`; the status code and the body (headers too with `-i`).
pub fn curl(url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .expect("curl (scripts/install-test-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}
