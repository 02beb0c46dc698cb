//! Url Shortener: short links that redirect, with click counts, on the partitioned store.
//!
//! The suite's fourth case study, made from `templates/case-study` with
//! `scripts/new-case-study.sh url-shortener` (the guide is `docs/new-case-study.md`). A
//! classic design problem with three parts that the store's partitioning and replication
//! answer: short codes that never collide although several processes hand them out
//! ([`code`]: blocks of ids from one atomic counter, scrambled into base 62), redirects that
//! are read-heavy and served from any replica ([`store`], with the [`cache`] in front), and
//! click counters that survive a store node's death ([`clicks`]: counted in memory,
//! flushed as replicated increments). Pure cores ([`code`], [`keys`], [`cache`],
//! [`clicks`]) do no IO; [`store`] is the only module that talks to the store, [`server`]
//! the only one that speaks HTTP.

pub mod cache;
pub mod clicks;
pub mod code;
pub mod keys;
pub mod server;
pub mod store;
