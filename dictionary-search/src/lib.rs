//! # dictionary-search
//!
//! The suite's first case study: the search of an English dictionary website, built on real
//! dictionary data and served from the partitioned kvstore.
//!
//! - [`source`] parses each source in its own format (WordNet 3.0, GCIDE, CMUdict, word
//!   frequencies) with typed errors that name the file and line ([`error`]);
//! - [`dataset`] merges them into one [`entry::Entry`] per headword and versions the result;
//! - [`store`] writes the entries into the store's `dictionary` keyspace (one key per
//!   headword) and reads them back, through `kvstore`'s `ClusterClient` only.
//!
//! Pure cores (parsing, merging) and IO at the edges: the binary reads files and talks to the
//! store; everything else is tested without either.

pub mod bench;
pub mod dataset;
pub mod entry;
pub mod error;
pub mod eval;
pub mod fulltext;
pub mod index;
pub mod morph;
pub mod server;
pub mod source;
pub mod spell;
pub mod store;
