//! # log-aggregator
//!
//! The suite's third case study: collect the logs of a handful of machines, store them in
//! the partitioned kvstore (by stream and time), index and search them, losing nothing.
//!
//! Built so far: [`syslog`], the codecs for what standard clients send (RFC 6587 framing over
//! TCP, RFC 5424 and RFC 3164 messages), pure and tested on real `logger` output. The agent,
//! the aggregator node, storage in the store, the index and the page follow (issue 19).

pub mod syslog;
