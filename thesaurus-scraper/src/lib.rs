//! Case study 2: build a thesaurus from scraped web data.
//!
//! - [`web`]: the local web of real text the crawler crawls (the machines have no internet),
//!   with robots.txt, seeded faults and a politeness oracle.
//!
//! The crawler (a URL frontier in the kvstore partitioned by host, workers holding hosts by
//! leases) and the thesaurus (co-occurrence statistics aggregated in the store, PPMI and
//! lexical patterns) follow; see the README's design section.

pub mod crawl;
pub mod serve;
pub mod thesaurus;
pub mod web;
