//! `kvstore`: a partitioned, replicated, durable key-value store, built in the order of a
//! distributed-systems course (the order of *Designing Data-Intensive Applications*).
//!
//! Built so far: a single node, that is a log-structured storage engine with an ordered index
//! ([`storage`]) and the data model of keyspaces and versioned values on top of it ([`db`]);
//! its wire protocol ([`wire`]) and a Redis-compatible port ([`resp`]); replication, that is a
//! sans-IO Raft core ([`raft`]) and the node runtime that drives it over a WAL and TCP
//! ([`node`]); the listeners ([`server`]) and the async clients ([`client`]: one connection,
//! or a whole cluster with redirects, retries and at-most-once sessions). Partitioning (many
//! Raft groups per node, a meta group) comes next and builds on the node runtime.
//!
//! Layering, from the bottom: `storage` does file IO and knows nothing of keyspaces or Raft;
//! `db` is pure logic over the engine; `wire`, `resp` and `raft` are pure (bytes or messages
//! in, values out: no sockets, no clocks); `node`, `server` and `client` do the network IO.
//! See `ARCHITECTURE.md` for the map and its invariants, and `docs/` for the byte layouts.
//!
//! **Two builds.** The default feature `server` is the whole store (and the `kvstore`
//! binary). An application links the lean client instead, which compiles only `wire` and
//! `client` (four dependencies):
//!
//! ```toml
//! kvstore = { path = "../kvstore", default-features = false }
//! ```
//!
//! A service adds the feature `service` for what every binary of the suite does alike: its
//! logging and its graceful stop ([`service`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), kvstore::client::ClientError> {
//! use kvstore::client::cluster::{ClusterClient, ClusterConfig};
//! use kvstore::wire::{Condition, Consistency};
//! let nodes = vec!["127.0.0.1:7379".to_string(), "127.0.0.1:7479".into()];
//! let store = ClusterClient::new(nodes, ClusterConfig::default());
//! store.put("default", b"user:1", b"ada", Condition::None).await?;
//! let value = store.get("default", b"user:1", Consistency::Linearizable).await?;
//! # Ok(()) }
//! ```

// The lean client (`default-features = false`): what an application links.
pub mod client;
pub mod partition;
#[cfg(feature = "service")]
pub mod service;
pub mod wire;

// The store itself (feature `server`, on by default).
#[cfg(feature = "server")]
pub mod cli;
#[cfg(feature = "server")]
pub mod cli_load;
#[cfg(feature = "server")]
pub mod cli_map;
#[cfg(feature = "server")]
pub mod db;
#[cfg(feature = "server")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod node;
#[cfg(feature = "server")]
pub mod op;
#[cfg(feature = "server")]
pub mod raft;
#[cfg(feature = "server")]
pub mod resp;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod storage;
#[cfg(all(test, feature = "server"))]
mod test_dir;
