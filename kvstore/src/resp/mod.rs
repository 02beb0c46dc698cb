//! The Redis-compatible port: RESP2 framing ([`codec`]), Redis glob patterns ([`glob`]), and
//! the mapping of Redis commands onto the store ([`commands`]), so that `redis-cli`,
//! `redis-benchmark` and Redis client libraries work unchanged against the `default` keyspace.

pub mod codec;
pub mod commands;
pub mod glob;
