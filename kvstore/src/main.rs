//! The `kvstore` binary: argument parsing and logging set-up only. What each subcommand does
//! lives in `kvstore::cli`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use kvstore::cli::{self, Command, ServeOptions};
use kvstore::server::ServerConfig;
use kvstore::storage::{self, FsyncPolicy};
use kvstore::wire::{Condition, Consistency, ScanRange};

#[derive(Parser)]
#[command(
    name = "kvstore",
    version,
    about = "A durable key-value store: server and client"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
// Parsed once per process: the size of `Serve` does not matter.
#[allow(clippy::large_enum_variant)]
enum Cmd {
    /// Run a server.
    Serve(Serve),
    /// Check that a server answers.
    Ping(#[command(flatten)] Conn),
    /// Print the value of KEY (exit 1 if it does not exist).
    Get {
        #[command(flatten)]
        conn: Conn,
        key: String,
        /// linearizable, lease, or follower (any replica; stderr says how stale). Default:
        /// the keyspace's (`keyspace create --read-consistency`; linearizable unless told).
        #[arg(long)]
        consistency: Option<Consistency>,
    },
    /// Set KEY to VALUE ("-" reads the value from stdin).
    Put {
        #[command(flatten)]
        conn: Conn,
        key: String,
        value: String,
        /// Expire the key after this many milliseconds.
        #[arg(long)]
        ttl_ms: Option<u64>,
        /// Only if KEY does not exist (exit 5 otherwise).
        #[arg(long, conflicts_with_all = ["if_present", "if_version"])]
        if_absent: bool,
        /// Only if KEY exists (exit 5 otherwise).
        #[arg(long, conflicts_with = "if_version")]
        if_present: bool,
        /// Only if KEY's version is V; 0 means "does not exist" (compare-and-set; exit 5 otherwise).
        #[arg(long, value_name = "V")]
        if_version: Option<u64>,
    },
    /// Delete KEY (exit 1 if it did not exist).
    Del {
        #[command(flatten)]
        conn: Conn,
        key: String,
    },
    /// Add to the counter at KEY and print the new value.
    Incr {
        #[command(flatten)]
        conn: Conn,
        key: String,
        #[arg(long, default_value_t = 1, allow_hyphen_values = true)]
        by: i64,
    },
    /// List keys (and values) in order, one "key<TAB>value" per line.
    Scan {
        #[command(flatten)]
        conn: Conn,
        /// Only keys starting with this.
        #[arg(long)]
        prefix: Option<String>,
        /// First key (inclusive).
        #[arg(long)]
        start: Option<String>,
        /// Last key (exclusive).
        #[arg(long)]
        end: Option<String>,
        /// Stop after this many keys.
        #[arg(long)]
        limit: Option<u64>,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
    },
    /// Write a steady load through the cluster client, print progress every second, and at
    /// the end read every acknowledged write back (exit 1 if one is missing).
    Load {
        #[command(flatten)]
        conn: Conn,
        /// Concurrent writers, each with one write in flight.
        #[arg(long, default_value_t = 16)]
        clients: u32,
        /// Stop after this many seconds (0: at Ctrl-C).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        #[arg(long, default_value_t = 256)]
        value_bytes: usize,
        /// Skip reading the acknowledged writes back at the end.
        #[arg(long)]
        no_verify: bool,
    },
    /// Create, list, describe or drop keyspaces (through any node of a cluster).
    Keyspace {
        /// Any nodes' addresses (binary protocol), comma-separated.
        #[arg(
            long,
            default_value = "127.0.0.1:7379",
            env = "KVSTORE_ADDR",
            global = true
        )]
        addr: String,
        /// Give up after this long (a change waits for the meta group's leader).
        #[arg(long, default_value_t = 15_000, global = true)]
        timeout_ms: u64,
        #[command(subcommand)]
        action: KeyspaceAction,
    },
    /// Show or change a cluster's membership (through a node's HTTP admin port).
    Cluster {
        /// Any nodes' addresses (binary protocol), for drain, undrain, remove-node,
        /// rebalance and map.
        #[arg(
            long,
            default_value = "127.0.0.1:7379",
            env = "KVSTORE_ADDR",
            global = true
        )]
        addr: String,
        /// A node's HTTP admin address.
        #[arg(
            long,
            default_value = "127.0.0.1:7380",
            env = "KVSTORE_HTTP",
            global = true
        )]
        http: String,
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Subcommand)]
enum KeyspaceAction {
    /// Create a keyspace, its partitions spread over the nodes that are up.
    Create {
        name: String,
        /// Fixed for the keyspace's life.
        #[arg(long, default_value_t = kvstore::partition::map::DEFAULT_PARTITIONS)]
        partitions: u32,
        /// Replicas of each partition (fewer if fewer nodes are up).
        #[arg(long, default_value_t = kvstore::partition::map::DEFAULT_REPLICAS)]
        replicas: u32,
        /// The default consistency of its reads: linearizable, lease or follower.
        #[arg(long, default_value = "linearizable")]
        read_consistency: Consistency,
        /// Most live bytes it may hold (e.g. 512M, 2G): writes that add data past it are
        /// refused with OverQuota (deletes still go).
        #[arg(long, value_parser = kvstore::cli_map::parse_bytes)]
        max_bytes: Option<u64>,
        /// Most requests a second across the cluster: more are refused with RateLimited.
        #[arg(long)]
        max_ops: Option<u32>,
    },
    /// Set or lift a keyspace's limits (`none` lifts one; one not given stays as it is).
    Limit {
        name: String,
        /// Most live bytes (e.g. 512M, 2G), or `none`.
        #[arg(long, value_parser = kvstore::cli_map::parse_limit_bytes)]
        max_bytes: Option<kvstore::cli_map::LimitArg<u64>>,
        /// Most requests a second, or `none`.
        #[arg(long, value_parser = kvstore::cli_map::parse_limit_ops)]
        max_ops: Option<kvstore::cli_map::LimitArg<u32>>,
    },
    /// One line per keyspace.
    List,
    /// One line per partition: group, slots, replicas, leader, move in flight.
    Describe { name: String },
    /// Drop a keyspace and all its keys.
    Drop { name: String },
}

#[derive(Subcommand)]
enum ClusterAction {
    /// Per node: its state, replicas, leaders, keys, bytes and moves in flight (from the map
    /// and every node's HTTP admin port); --json prints the same for scripts.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Every Raft group one node hosts (--http): role, term, commit and applied index, and
    /// each member's lag as its leader sees it.
    Groups,
    /// Move every replica and leadership off node ID (the placement plans the moves).
    Drain { id: u64 },
    /// Let node ID receive replicas again.
    Undrain { id: u64 },
    /// Retire node ID from the cluster map (once drained: it must hold nothing).
    RemoveNode { id: u64 },
    /// Run the placement planner now and move replicas and leaders to balance the nodes.
    Rebalance,
    /// Print the cluster map as JSON.
    Map,
    /// Raft membership of one group, by hand: add node ID (peer address PEER) as a learner of
    /// the default group; --voter then promotes it.
    AddReplica {
        id: u64,
        #[arg(long)]
        peer: Option<String>,
        #[arg(long)]
        voter: bool,
    },
    /// Raft membership of one group, by hand: remove node ID from the default group.
    RemoveReplica { id: u64 },
    /// Hand leadership of the default group to node ID.
    TransferLeader { id: u64 },
}

#[derive(Args)]
struct Conn {
    /// Server address (binary protocol); for a cluster, any nodes' addresses, comma-separated
    /// (writes follow the redirect to the leader).
    #[arg(long, default_value = "127.0.0.1:7379", env = "KVSTORE_ADDR")]
    addr: String,
    #[arg(long, default_value = "default")]
    keyspace: String,
    /// Give up on a request after this many milliseconds.
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
}

#[derive(Args)]
struct Serve {
    /// Data directory (created if missing).
    #[arg(long, default_value = "./kvstore-data")]
    data_dir: PathBuf,
    /// Binary-protocol listener.
    #[arg(long, default_value = "127.0.0.1:7379")]
    listen: SocketAddr,
    /// Redis-protocol (RESP2) listener.
    #[arg(long, default_value = "127.0.0.1:6380")]
    resp_listen: SocketAddr,
    /// HTTP admin listener: /health, /metrics, /status.
    #[arg(long, default_value = "127.0.0.1:7380")]
    http_listen: SocketAddr,
    /// When writes reach the disk: always (acknowledge after fsync, group commit),
    /// interval:MS, or never.
    #[arg(long, default_value = "always")]
    fsync: FsyncPolicy,
    #[arg(long, default_value_t = 1024)]
    connections_max: usize,
    /// Largest request frame, in bytes.
    #[arg(long, default_value_t = kvstore::wire::frame::FRAME_BYTES_MAX_DEFAULT)]
    frame_bytes_max: usize,
    /// Close connections idle for this long.
    #[arg(long, default_value_t = 300_000)]
    idle_timeout_ms: u64,
    /// Close connections that stall mid-request for this long.
    #[arg(long, default_value_t = 10_000)]
    read_timeout_ms: u64,
    /// Segment files roll over at this size.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    segment_bytes_max: u64,
    /// Write the bound addresses as JSON here once listening (for scripts and tests).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Worker threads for request handling (default: one fewer than the CPU cores, at least
    /// one; see `default_worker_threads`).
    #[arg(long)]
    threads: Option<usize>,
    /// While busy, a worker with nothing to run spins this many microseconds before it
    /// sleeps, so that the next request need not wake it; 0 turns it off. See
    /// `kvstore::server::idle`.
    #[arg(long, default_value_t = 20)]
    idle_spin_us: u64,
    /// Run as node N of a replicated cluster (with --peers and --peer-listen).
    #[arg(long, requires = "peer_listen")]
    node_id: Option<u64>,
    /// The founding members' peer addresses, this node's included: 1=HOST:PORT,2=...
    /// Leave out for a node that joins a running cluster (`--join`).
    #[arg(long, value_parser = cli::parse_peers, requires = "node_id", conflicts_with = "join")]
    peers: Option<std::collections::BTreeMap<u64, String>>,
    /// Join a running cluster through any member's peer address: this node learns the map
    /// from it, registers, and the placement moves replicas and leaders onto it.
    #[arg(long, value_name = "HOST:PORT", requires = "node_id")]
    join: Option<String>,
    /// A node that answers no ping for this long is marked down, and its replicas are
    /// re-created on the others.
    #[arg(long, default_value_t = kvstore::server::control::DOWN_AFTER_DEFAULT.as_millis() as u64)]
    down_after_ms: u64,
    /// Where other nodes connect to this one.
    #[arg(long, requires = "node_id")]
    peer_listen: Option<SocketAddr>,
    /// Length of a Raft tick: elections time out after 10 to 20 ticks, heartbeats every 2.
    #[arg(long, default_value_t = 50)]
    tick_ms: u64,
    /// Snapshot and truncate the Raft log every this many entries...
    #[arg(long, default_value_t = 100_000)]
    compact_entries: u64,
    /// ... or once a group's log holds this many bytes in memory.
    #[arg(long, default_value_t = kvstore::node::COMPACT_BYTES_DEFAULT)]
    compact_bytes: u64,
    /// Partitions of the keyspace `default` that a founding node (one of --peers) creates;
    /// every founding node must be given the same. Fixed for the keyspace's life (1: the
    /// single Raft group of part 2).
    #[arg(long, default_value_t = kvstore::partition::map::DEFAULT_PARTITIONS,
          value_parser = clap::value_parser!(u32).range(1..=16384))]
    default_partitions: u32,
    /// Replicas of each partition of `default` (fewer if there are fewer founding nodes).
    #[arg(long, default_value_t = kvstore::partition::map::DEFAULT_REPLICAS,
          value_parser = clap::value_parser!(u32).range(1..=7))]
    default_replicas: u32,
    /// Consistency of RESP reads: linearizable, lease or follower (READONLY switches a
    /// connection to follower reads).
    #[arg(long, default_value = "linearizable")]
    read_consistency: Consistency,
    /// Cluster nodes: a write not committed within this long is answered "outcome unknown".
    #[arg(long, default_value_t = 5_000)]
    request_timeout_ms: u64,
}

/// Request workers when `--threads` is not given: one core is left to what runs beside them,
/// the storage engine's fsync and compaction threads and the kernel's network processing.
/// Measured on two cores (`bench/redis-compare.sh`, 2026-11-24): one worker serves pipelined
/// GETs about 7% faster than two, which spend their time waking and stealing from each other,
/// and is no slower on any other test.
fn default_worker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let is_server = matches!(cli.command, Cmd::Serve(_));
    init_logging(is_server);
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Cmd::Serve(Serve {
        threads,
        idle_spin_us,
        ..
    }) = &cli.command
    {
        builder.worker_threads(threads.unwrap_or_else(default_worker_threads).max(1));
        let spin = Duration::from_micros(*idle_spin_us);
        kvstore::server::idle::install(&mut builder, kvstore::server::idle::SpinPolicy::new(spin));
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(error) => {
            eprintln!("kvstore: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        match cli.command {
            Cmd::Serve(s) => match cli::serve(serve_options(s)).await {
                Ok(()) => 0,
                Err(error) => {
                    tracing::error!("{error:#}");
                    eprintln!("kvstore: {error:#}");
                    1
                }
            },
            Cmd::Ping(conn) => client(conn, Command::Ping).await,
            Cmd::Get {
                conn,
                key,
                consistency,
            } => {
                client(
                    conn,
                    Command::Get {
                        key: key.into(),
                        consistency,
                    },
                )
                .await
            }
            Cmd::Put {
                conn,
                key,
                value,
                ttl_ms,
                if_absent,
                if_present,
                if_version,
            } => {
                let value = if value == "-" {
                    let mut buf = Vec::new();
                    if let Err(error) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)
                    {
                        eprintln!("kvstore: reading the value from stdin: {error}");
                        return cli::exit::USAGE;
                    }
                    Bytes::from(buf)
                } else {
                    Bytes::from(value)
                };
                let condition = match (if_absent, if_present, if_version) {
                    (true, _, _) => Condition::IfAbsent,
                    (_, true, _) => Condition::IfPresent,
                    (_, _, Some(v)) => Condition::IfVersion(v),
                    _ => Condition::None,
                };
                client(
                    conn,
                    Command::Put {
                        key: key.into(),
                        value,
                        ttl_ms,
                        condition,
                    },
                )
                .await
            }
            Cmd::Keyspace {
                addr,
                timeout_ms,
                action,
            } => {
                use kvstore::cli_map::MapCommand;
                let command = match action {
                    KeyspaceAction::Create {
                        name,
                        partitions,
                        replicas,
                        read_consistency,
                        max_bytes,
                        max_ops,
                    } => MapCommand::Create(kvstore::partition::map::KeyspaceSpec {
                        name,
                        partitions,
                        replicas,
                        read_consistency,
                        limits: kvstore::partition::map::Limits {
                            bytes_max: max_bytes,
                            ops_max: max_ops,
                        },
                    }),
                    KeyspaceAction::Limit {
                        name,
                        max_bytes,
                        max_ops,
                    } => MapCommand::Limit {
                        name,
                        bytes_max: max_bytes.map(|l| l.0),
                        ops_max: max_ops.map(|l| l.0),
                    },
                    KeyspaceAction::List => MapCommand::List,
                    KeyspaceAction::Describe { name } => MapCommand::Describe(name),
                    KeyspaceAction::Drop { name } => MapCommand::Drop(name),
                };
                kvstore::cli_map::run(&addr, timeout_ms, command).await
            }
            Cmd::Cluster { http, addr, action } => {
                use kvstore::cli_map::{run as map, MapCommand};
                use kvstore::partition::NodeState;
                let action = match action {
                    ClusterAction::Drain { id } => {
                        return map(&addr, 15_000, MapCommand::SetState(id, NodeState::Draining))
                            .await
                    }
                    ClusterAction::Undrain { id } => {
                        return map(&addr, 15_000, MapCommand::SetState(id, NodeState::Up)).await
                    }
                    ClusterAction::RemoveNode { id } => {
                        return map(&addr, 15_000, MapCommand::SetState(id, NodeState::Removed))
                            .await
                    }
                    ClusterAction::Rebalance => {
                        return map(&addr, 15_000, MapCommand::Rebalance).await
                    }
                    ClusterAction::Map => return map(&addr, 15_000, MapCommand::Show).await,
                    ClusterAction::Status { json } => {
                        return map(&addr, 15_000, MapCommand::Status { json }).await
                    }
                    ClusterAction::Groups => cli::ClusterCommand::Status,
                    ClusterAction::AddReplica { id, peer, voter } => {
                        cli::ClusterCommand::AddNode { id, peer, voter }
                    }
                    ClusterAction::RemoveReplica { id } => cli::ClusterCommand::RemoveNode { id },
                    ClusterAction::TransferLeader { id } => {
                        cli::ClusterCommand::TransferLeader { id }
                    }
                };
                cli::run_cluster(&http, action).await
            }
            Cmd::Del { conn, key } => client(conn, Command::Del { key: key.into() }).await,
            Cmd::Load {
                conn,
                clients,
                seconds,
                value_bytes,
                no_verify,
            } => {
                let options = kvstore::cli_load::LoadOptions {
                    keyspace: conn.keyspace,
                    clients,
                    duration: (seconds > 0).then(|| Duration::from_secs(seconds)),
                    value_bytes,
                    verify: !no_verify,
                };
                kvstore::cli_load::run(&conn.addr, options, kvstore::service::shutdown_signal())
                    .await
            }
            Cmd::Incr { conn, key, by } => {
                client(
                    conn,
                    Command::Incr {
                        key: key.into(),
                        by,
                    },
                )
                .await
            }
            Cmd::Scan {
                conn,
                prefix,
                start,
                end,
                limit,
                keys_only,
            } => {
                let range = ScanRange {
                    start: start.map(Bytes::from),
                    end: end.map(Bytes::from),
                    prefix: prefix.map(Bytes::from),
                };
                client(
                    conn,
                    Command::Scan {
                        range,
                        limit,
                        keys_only,
                    },
                )
                .await
            }
        }
    });
    ExitCode::from(code as u8)
}

async fn client(conn: Conn, command: Command) -> i32 {
    cli::run_client(&conn.addr, &conn.keyspace, conn.timeout_ms, command).await
}

fn serve_options(s: Serve) -> ServeOptions {
    ServeOptions {
        data_dir: s.data_dir,
        listen: s.listen,
        resp_listen: Some(s.resp_listen),
        http_listen: Some(s.http_listen),
        storage: storage::Config {
            fsync: s.fsync,
            segment_bytes_max: s.segment_bytes_max,
            ..storage::Config::default()
        },
        server: ServerConfig {
            connections_max: s.connections_max,
            frame_bytes_max: s.frame_bytes_max,
            resp_bulk_bytes_max: s.frame_bytes_max,
            idle_timeout_ms: s.idle_timeout_ms,
            read_timeout_ms: s.read_timeout_ms,
            request_timeout_ms: s.request_timeout_ms,
            read_consistency: s.read_consistency,
            ..ServerConfig::default()
        },
        ready_file: s.ready_file,
        cluster: s.node_id.map(|node_id| cli::ClusterOptions {
            node_id,
            peers: s.peers.unwrap_or_default(),
            join: s.join,
            down_after_ms: s.down_after_ms,
            peer_listen: s.peer_listen.expect("clap requires --peer-listen"),
            tick_ms: s.tick_ms,
            compact_entries: s.compact_entries,
            compact_bytes: s.compact_bytes,
            default_partitions: s.default_partitions,
            default_replicas: s.default_replicas,
        }),
    }
}

/// Servers log at info by default; client commands only warn. `RUST_LOG` overrides both.
fn init_logging(is_server: bool) {
    kvstore::service::init_logging(if is_server { "info" } else { "warn" });
}
