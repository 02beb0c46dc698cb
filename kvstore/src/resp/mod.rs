//! The Redis-compatible port: RESP2 framing ([`codec`]), Redis glob patterns ([`glob`]), the
//! table of the commands it knows ([`table`]: reads, writes and where their keys are) and the
//! mapping of those commands onto the store ([`commands`]), so that `redis-cli`,
//! `redis-benchmark` and Redis client libraries work unchanged against the `default` keyspace.

pub mod codec;
pub mod commands;
pub mod glob;
pub mod table;
