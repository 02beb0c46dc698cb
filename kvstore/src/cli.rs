//! What the `kvstore` binary's subcommands do: `serve` (open the data directory, bind the
//! listeners, run until SIGINT/SIGTERM) and the client commands (`get`, `put`, `del`, `scan`,
//! `incr`, `ping`) over the binary protocol. Argument parsing stays in `main.rs`.
//!
//! Client commands exit with a code a shell script can branch on; see [`exit`].

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use bytes::Bytes;
use tokio::net::TcpListener;

use crate::client::{Client, ClientConfig, ClientError, PutOptions, ScanOptions};
use crate::db::Db;
use crate::server::{self, Listeners, ServerConfig};
use crate::service::shutdown_signal;
use crate::storage::{self, Engine, SystemClock};
use crate::wire::{Condition, ErrorCode, ScanRange};

/// Exit codes of the client subcommands.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// `get`: the key does not exist. `del`: the key did not exist.
    pub const NOT_FOUND: i32 = 1;
    /// Bad arguments (reported by the argument parser).
    pub const USAGE: i32 = 2;
    /// The server could not be reached, or the connection broke, or it timed out.
    pub const UNAVAILABLE: i32 = 3;
    /// The server refused the request (the message says why).
    pub const SERVER_ERROR: i32 = 4;
    /// A conditional write (`--if-absent`, `--if-present`, `--if-version`) did not apply.
    pub const CONDITION_FAILED: i32 = 5;
}

/// Everything `kvstore serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub resp_listen: Option<SocketAddr>,
    pub http_listen: Option<SocketAddr>,
    pub storage: storage::Config,
    pub server: ServerConfig,
    /// Written (JSON with the bound addresses) once every listener is bound.
    pub ready_file: Option<PathBuf>,
    /// Run as a node of a replicated cluster instead of a single node.
    pub cluster: Option<ClusterOptions>,
}

/// `kvstore serve --node-id N --peers ... --peer-listen ...`.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub node_id: u64,
    /// Founding members' peer addresses (this node's included); empty for a node that will
    /// be added to a running cluster.
    pub peers: std::collections::BTreeMap<u64, String>,
    /// A member's peer address to join a running cluster through.
    pub join: Option<String>,
    /// See `server::control::DOWN_AFTER_DEFAULT`.
    pub down_after_ms: u64,
    pub peer_listen: SocketAddr,
    pub tick_ms: u64,
    pub compact_entries: u64,
    pub compact_bytes: u64,
    /// Partitions and replicas of the keyspace `default` a founding node creates.
    pub default_partitions: u32,
    pub default_replicas: u32,
}

/// Parses `1=HOST:PORT,2=HOST:PORT`.
pub fn parse_peers(text: &str) -> Result<std::collections::BTreeMap<u64, String>, String> {
    let mut peers = std::collections::BTreeMap::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("{part:?} is not ID=HOST:PORT"))?;
        let id: u64 = id
            .trim()
            .parse()
            .ok()
            .filter(|&id| id != 0)
            .ok_or_else(|| format!("{id:?} is not a node id (a positive integer)"))?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(format!("node {id} is listed twice"));
        }
    }
    Ok(peers)
}

/// Runs a server until SIGINT or SIGTERM.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    if options.cluster.is_some() {
        return serve_node(options).await;
    }
    let engine = {
        let dir = options.data_dir.clone();
        let config = options.storage.clone();
        tokio::task::spawn_blocking(move || Engine::open(&dir, config, Arc::new(SystemClock)))
            .await?
            .with_context(|| format!("opening data directory {}", options.data_dir.display()))?
    };
    let Listeners { binary, resp, http } = bind_client_listeners(&options).await?;
    let ready = serde_json::json!({
        "pid": std::process::id(),
        "listen": addr_of(&binary),
        "resp_listen": resp.as_ref().map(addr_of),
        "http_listen": http.as_ref().map(addr_of),
    });
    tracing::info!(
        listen = %addr_of(&binary),
        resp = %resp.as_ref().map(addr_of).unwrap_or_default(),
        http = %http.as_ref().map(addr_of).unwrap_or_default(),
        data_dir = %options.data_dir.display(),
        fsync = %options.storage.fsync,
        "kvstore serving"
    );
    write_ready_file(options.ready_file.as_deref(), &ready)?;
    let listeners = Listeners { binary, resp, http };
    server::run(
        listeners,
        Db::new(engine),
        None,
        options.server,
        shutdown_signal(),
    )
    .await
}

async fn bind(addr: SocketAddr, what: &'static str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} listener to {addr}"))
}

/// Binds the client-facing listeners `options` names.
async fn bind_client_listeners(options: &ServeOptions) -> anyhow::Result<Listeners> {
    let binary = bind(options.listen, "binary-protocol").await?;
    let resp = match options.resp_listen {
        Some(addr) => Some(bind(addr, "RESP").await?),
        None => None,
    };
    let http = match options.http_listen {
        Some(addr) => Some(bind(addr, "HTTP").await?),
        None => None,
    };
    Ok(Listeners { binary, resp, http })
}

fn addr_of(listener: &TcpListener) -> String {
    listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// Writes `ready` (the bound addresses, as JSON) to `path` atomically, for scripts and tests.
fn write_ready_file(
    path: Option<&std::path::Path>,
    ready: &serde_json::Value,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, ready.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .with_context(|| format!("writing ready file {}", path.display()))?;
    }
    Ok(())
}

/// Runs a cluster node until SIGINT or SIGTERM: the Raft node, its peer listener, and the
/// client listeners in front of it.
async fn serve_node(options: ServeOptions) -> anyhow::Result<()> {
    let cluster = options.cluster.clone().expect("cluster options");
    let Listeners { binary, resp, http } = bind_client_listeners(&options).await?;
    let peer = bind(cluster.peer_listen, "peer").await?;
    let http_addr = http.as_ref().map(addr_of);
    let mut config = crate::node::NodeConfig::new(cluster.node_id, options.data_dir.clone());
    config.peers = cluster.peers.clone();
    config.tick = std::time::Duration::from_millis(cluster.tick_ms.max(1));
    config.compact_entries = cluster.compact_entries.max(1);
    config.compact_bytes = cluster.compact_bytes.max(1);
    config.default_partitions = cluster.default_partitions;
    config.default_replicas = cluster.default_replicas;
    config.engine.segment_bytes_max = options.storage.segment_bytes_max;
    // `--fsync never` turns off the WAL's fsync too (for experiments only: a crash can then
    // lose acknowledged writes).
    config.wal.fsync = !matches!(options.storage.fsync, storage::FsyncPolicy::Never);
    config.advertise = crate::node::transport::Advertised {
        client: addr_of(&binary),
        resp: resp.as_ref().map(addr_of),
        peer: addr_of(&peer),
    };
    let advertised = config.advertise.clone();
    let listeners = Listeners { binary, resp, http };
    let node = server::cluster_node::NodeServer::start(listeners, peer, config, options.server)
        .await?
        .join(cluster.join.clone())
        .down_after(std::time::Duration::from_millis(cluster.down_after_ms));
    let ready = serde_json::json!({
        "pid": std::process::id(),
        "node_id": cluster.node_id,
        "listen": advertised.client,
        "resp_listen": advertised.resp,
        "http_listen": http_addr,
        "peer_listen": advertised.peer,
    });
    tracing::info!(
        node_id = cluster.node_id,
        listen = %advertised.client,
        peer_listen = %advertised.peer,
        peers = ?cluster.peers,
        data_dir = %options.data_dir.display(),
        "kvstore cluster node serving"
    );
    write_ready_file(options.ready_file.as_deref(), &ready)?;
    node.run(std::time::Duration::from_secs(2), shutdown_signal())
        .await
}

/// A client subcommand.
#[derive(Debug, Clone)]
pub enum Command {
    Ping,
    Get {
        key: Bytes,
        /// `None`: the keyspace's read consistency.
        consistency: Option<crate::wire::Consistency>,
    },
    Put {
        key: Bytes,
        value: Bytes,
        ttl_ms: Option<u64>,
        condition: Condition,
    },
    Del {
        key: Bytes,
    },
    Incr {
        key: Bytes,
        by: i64,
    },
    Scan {
        range: ScanRange,
        limit: Option<u64>,
        keys_only: bool,
    },
}

/// Runs a client subcommand, printing its result; returns the exit code.
///
/// `addrs` is one address or several, comma-separated (the nodes of a cluster): the command
/// goes to the first that answers, and follows a cluster's redirect to its leader.
///
/// While the cluster has no leader (an election after a node died), it keeps trying, for at
/// most `timeout_ms` in all.
pub async fn run_client(addrs: &str, keyspace: &str, timeout_ms: u64, command: Command) -> i32 {
    let config = ClientConfig {
        request_timeout_ms: timeout_ms,
        ..ClientConfig::default()
    };
    let all: Vec<String> = addrs.split(',').map(|a| a.trim().to_string()).collect();
    let mut candidates: std::collections::VecDeque<String> = all.iter().cloned().collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms);
    let pause = || tokio::time::sleep(std::time::Duration::from_millis(100));
    let mut last = (None, addrs.to_string());
    while std::time::Instant::now() < deadline {
        let Some(addr) = candidates.pop_front() else {
            // Every address tried: start over after a pause (an election takes about a second).
            pause().await;
            candidates.extend(all.iter().cloned());
            continue;
        };
        let client = match Client::connect(addr.as_str(), config.clone()).await {
            Ok(client) => client,
            Err(error) => {
                if all.len() == 1 {
                    return fail(&error, &addr);
                }
                last = (Some(error), addr);
                continue;
            }
        };
        match execute(&client, keyspace, command.clone()).await {
            Ok(code) => return code,
            // Refused before it reached the log: nothing was applied, so retrying is safe.
            Err(ClientError::Server { code, message }) if code == ErrorCode::NotLeader => {
                match message.rsplit_once(" at ") {
                    Some((_, leader)) if *leader != addr => {
                        candidates.push_front(leader.to_string())
                    }
                    _ => pause().await,
                }
                last = (Some(ClientError::Server { code, message }), addr);
            }
            Err(ClientError::Server { code, message }) if code == ErrorCode::Unavailable => {
                pause().await;
                last = (Some(ClientError::Server { code, message }), addr);
            }
            Err(error) => return fail(&error, &addr),
        }
    }
    match last {
        (Some(error), addr) => fail(&error, &addr),
        (None, addr) => {
            eprintln!("kvstore: no server address in {addr:?}");
            exit::USAGE
        }
    }
}

async fn execute(client: &Client, ks: &str, command: Command) -> Result<i32, ClientError> {
    let mut out = std::io::stdout().lock();
    match command {
        Command::Ping => {
            let started = std::time::Instant::now();
            client.ping().await?;
            let _ = writeln!(
                out,
                "PONG from {} in {:?}",
                client.server_name(),
                started.elapsed()
            );
        }
        Command::Get { key, consistency } => {
            match client.get_lagged(ks, &key, consistency).await? {
                (Some(found), lag) => {
                    let _ = out.write_all(&found.value);
                    let _ = out.write_all(b"\n");
                    if let Some(lag) = lag {
                        let heard = match lag.ms {
                            Some(ms) => format!("last heard from a leader {ms} ms before"),
                            None => "has heard from no leader since it started".into(),
                        };
                        eprintln!(
                            "kvstore: follower read: {} committed entries not yet applied; the \
                             replica {heard}",
                            lag.entries
                        );
                    }
                }
                (None, _) => {
                    eprintln!("kvstore: key not found: {}", String::from_utf8_lossy(&key));
                    return Ok(exit::NOT_FOUND);
                }
            }
        }
        Command::Put {
            key,
            value,
            ttl_ms,
            condition,
        } => {
            let r = client
                .put_with(ks, &key, &value, PutOptions { ttl_ms, condition })
                .await?;
            if !r.applied {
                eprintln!(
                    "kvstore: condition failed; not written (current version {})",
                    r.version
                );
                return Ok(exit::CONDITION_FAILED);
            }
            let _ = writeln!(out, "OK version {}", r.version);
        }
        Command::Del { key } => {
            if !client.delete(ks, &key).await? {
                eprintln!("kvstore: key not found: {}", String::from_utf8_lossy(&key));
                return Ok(exit::NOT_FOUND);
            }
            let _ = writeln!(out, "deleted");
        }
        Command::Incr { key, by } => {
            let _ = writeln!(out, "{}", client.incr(ks, &key, by).await?);
        }
        Command::Scan {
            range,
            limit,
            keys_only,
        } => {
            let mut left = limit.unwrap_or(u64::MAX);
            let mut continuation = None;
            while left > 0 {
                let options = ScanOptions {
                    range: range.clone(),
                    limit: left.min(1000) as u32,
                    continuation: continuation.take(),
                    keys_only,
                    ..ScanOptions::default()
                };
                let page = client.scan(ks, options).await?;
                for entry in &page.entries {
                    let _ = out.write_all(&entry.key);
                    if let Some(value) = &entry.value {
                        let _ = out.write_all(b"\t");
                        let _ = out.write_all(value);
                    }
                    let _ = out.write_all(b"\n");
                }
                left = left.saturating_sub(page.entries.len() as u64);
                match page.continuation {
                    Some(token) => continuation = Some(token),
                    None => break,
                }
            }
        }
    }
    Ok(exit::OK)
}

fn fail(error: &ClientError, addr: &str) -> i32 {
    eprintln!("kvstore: {error}");
    match error {
        ClientError::Server { .. } => exit::SERVER_ERROR,
        ClientError::Connect { .. } => {
            eprintln!("kvstore: is a server running at {addr}? (kvstore serve --listen {addr})");
            exit::UNAVAILABLE
        }
        _ => exit::UNAVAILABLE,
    }
}

/// A `kvstore cluster` subcommand.
#[derive(Debug, Clone)]
pub enum ClusterCommand {
    Status,
    AddNode {
        id: u64,
        peer: Option<String>,
        voter: bool,
    },
    RemoveNode {
        id: u64,
    },
    TransferLeader {
        id: u64,
    },
}

/// Runs a `kvstore cluster` subcommand against the HTTP admin port at `http`; returns the
/// exit code.
pub async fn run_cluster(http: &str, command: ClusterCommand) -> i32 {
    let (method, path) = match &command {
        ClusterCommand::Status => ("GET", "/cluster".to_string()),
        ClusterCommand::AddNode { id, peer, voter } => {
            let mut path = format!("/cluster/add-node?id={id}&voter={voter}");
            if let Some(peer) = peer {
                path.push_str(&format!("&peer={peer}"));
            }
            ("POST", path)
        }
        ClusterCommand::RemoveNode { id } => ("POST", format!("/cluster/remove-node?id={id}")),
        ClusterCommand::TransferLeader { id } => {
            ("POST", format!("/cluster/transfer-leader?to={id}"))
        }
    };
    let (status, body) = match http_request(http, method, &path).await {
        Ok(answer) => answer,
        Err(error) => {
            eprintln!("kvstore: cannot reach {http}: {error}");
            return exit::UNAVAILABLE;
        }
    };
    if status != 200 {
        eprint!("kvstore: {body}");
        return exit::SERVER_ERROR;
    }
    if !matches!(command, ClusterCommand::Status) {
        print!("{body}");
        return exit::OK;
    }
    match serde_json::from_str::<serde_json::Value>(&body) {
        Ok(status) => {
            print!("{}", status_table(&status));
            exit::OK
        }
        Err(error) => {
            eprintln!("kvstore: the status is not JSON: {error}");
            exit::SERVER_ERROR
        }
    }
}

/// The `cluster status` table, from a node's `/cluster` JSON: one row per member, with the
/// leader's view of each member's log when the node asked is the leader.
pub fn status_table(status: &serde_json::Value) -> String {
    let mut out = String::new();
    let me = status["id"].as_u64().unwrap_or(0);
    for g in status["groups"].as_array().into_iter().flatten() {
        let leader = g["leader"].as_u64();
        let commit = g["commit"].as_u64().unwrap_or(0);
        out.push_str(&format!(
            "group {}: term {}, leader {}, as seen by node {me} ({})\n",
            g["group"],
            g["term"],
            leader.map_or("none".into(), |l| l.to_string()),
            g["role"].as_str().unwrap_or("?"),
        ));
        out.push_str(&format!(
            "{:>6}  {:<10}  {:>6}  {:>10}  {:>10}  {:>8}  {}\n",
            "node", "role", "term", "commit", "applied", "lag", "address"
        ));
        let members = g["voters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|v| (v, "voter"))
            .chain(
                g["learners"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|v| (v, "learner")),
            );
        for (id, kind) in members {
            let id = id.as_u64().unwrap_or(0);
            let role = if Some(id) == leader { "leader" } else { kind };
            let matched = g["match_index"][id.to_string()].as_u64();
            let (term, applied, lag) = if id == me {
                let applied = g["applied"].as_u64().unwrap_or(0);
                (
                    g["term"].to_string(),
                    applied.to_string(),
                    commit.saturating_sub(applied).to_string(),
                )
            } else {
                let lag = matched.map_or("?".into(), |m| commit.saturating_sub(m).to_string());
                ("-".into(), "-".into(), lag)
            };
            let address = status["advertised"][id.to_string()]["client"]
                .as_str()
                .or_else(|| status["peers"][id.to_string()].as_str())
                .unwrap_or("");
            out.push_str(&format!(
                "{id:>6}  {role:<10}  {term:>6}  {commit:>10}  {applied:>10}  {lag:>8}  {address}\n"
            ));
        }
    }
    out
}

/// A minimal HTTP/1.1 exchange (the admin port is plain HTTP on a trusted network): returns
/// the status code and the body.
pub(crate) async fn http_request(
    addr: &str,
    method: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(addr);
    let mut stream = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    tokio::time::timeout(std::time::Duration::from_secs(10), read)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

/// Joins the chunks of a chunked HTTP body.
pub fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}
