//! # log-aggregator
//!
//! The suite's third case study: collect the logs of a handful of machines, store them in
//! the partitioned kvstore (by stream and time), index and search them, losing nothing.
//!
//! - [`agent`]: one per machine. Follows files ([`agent::tail`]: rotation, truncation,
//!   partial and multi-line records), takes syslog and NDJSON, keeps everything in a disk
//!   buffer ([`agent::buffer`]) and ships it at least once, moving its checkpoints only on
//!   an aggregator's acknowledgement.
//! - [`server`]: an aggregator node, stateless in front of the store. Takes pushes ([`ingest`]:
//!   NDJSON, Loki) and syslog ([`syslog`]: RFC 6587 framing, RFC 5424 and 3164), stores them
//!   ([`store`], in the layout of [`layout`]) before it answers, follows what every node
//!   stored ([`feed`]) into its index ([`index`]: tantivy per time bucket) and answers
//!   queries ([`query`]), histograms and live tails, with a page.
//! - [`record`]: what is stored of a line; [`generate`] and [`bench`](mod@bench): a workload and the
//!   query benchmark.

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
