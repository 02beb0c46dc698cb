//! End-to-end tests for the suite, and the harness they share.
//!
//! The harness starts real `kvstore` processes on loopback ports chosen at run time (port 0,
//! addresses read back from `--ready-file`), stops them by PID (SIGTERM, SIGKILL, SIGSTOP),
//! and restarts them on the same data directory. Part 2 extends it to whole clusters with
//! partitions; [`linearizability`] is the checker their histories go through.

pub mod browser;
pub mod chaos;
pub mod cluster;
pub mod dictionary;
pub mod harness;
pub mod linearizability;
pub mod logs;
pub mod thesaurus;
pub mod workload;
