//! The agent, one per machine: follows files, takes syslog and NDJSON, keeps everything in
//! a disk buffer, and ships it in batches to the aggregators, at least once.

pub mod buffer;
pub mod config;
pub mod http;
pub mod run;
pub mod tail;
