//! @@TITLE@@: @@ABOUT@@.
//!
//! A case study of the suite, made from `templates/case-study` by `scripts/new-case-study.sh`
//! (read `docs/new-case-study.md`). Its shape is the suite's: pure cores that do no IO and
//! are unit-tested ([`keys`]: the key layout in the store), the store reached only through
//! `kvstore`'s lean client ([`store`]), and a thin HTTP service at the edge ([`server`]:
//! the API, the page, `/health`, `/metrics`). The binary (`src/main.rs`) parses arguments and
//! wires them together.

pub mod keys;
pub mod server;
pub mod store;
