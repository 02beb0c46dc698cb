//! # log-aggregator
//!
//! The suite's third case study: collect the logs of a handful of machines, store them in
//! the partitioned kvstore (by stream and time), index and search them, losing nothing.
//!
//! Built so far: [`syslog`], the codecs for what standard clients send (RFC 6587 framing over
//! TCP, RFC 5424 and RFC 3164 messages), pure and tested on real `logger` output; and
//! [`layout`], where records live in the store (by stream and time bucket, deduplicated by
//! their origin), and [`record`], what is stored of each. The agent, the aggregator node,
//! the index and the page follow (issue 19).

pub mod agent;
pub mod bench;
pub mod feed;
pub mod generate;
pub mod index;
pub mod ingest;
pub mod layout;
pub mod query;
pub mod record;
pub mod server;
pub mod store;
pub mod syslog;
