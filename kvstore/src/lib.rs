//! `kvstore`: a durable key-value store built in the order of a distributed-systems course.
//!
//! Part 1 (this crate today) is a single node: a log-structured storage engine with an ordered
//! index ([`storage`]), the data model of keyspaces and versioned values on top of it ([`db`]),
//! our own binary protocol ([`wire`]), a Redis-compatible port ([`resp`]), the server that
//! listens on both plus an HTTP admin port ([`server`]), and an async pipelined [`client`].
//! Replication (Raft) and partitioning come next and reuse exactly these parts.
//!
//! Layering, from the bottom: `storage` does file IO and knows nothing of keyspaces; `db` is
//! pure logic over the engine; `wire` and `resp` are pure codecs (bytes in, values out); only
//! `server` and `client` touch sockets. See `ARCHITECTURE.md` for the map and its invariants.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kvstore::client::ClientError> {
//! use kvstore::client::{Client, ClientConfig};
//! let client = Client::connect("127.0.0.1:7379", ClientConfig::default()).await?;
//! client.put("default", b"user:1", b"ada").await?;
//! let value = client.get("default", b"user:1").await?;
//! # Ok(()) }
//! ```

pub mod cli;
pub mod client;
pub mod db;
pub mod metrics;
pub mod node;
pub mod raft;
pub mod resp;
pub mod server;
pub mod storage;
#[cfg(test)]
mod test_dir;
pub mod wire;
