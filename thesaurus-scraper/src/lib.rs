//! Case study 2: build a thesaurus from scraped web data.
//!
//! - [`web`]: the local web of real text the crawler crawls (the machines have no internet),
//!   with robots.txt, seeded faults and a politeness oracle;
//! - [`crawl`]: the crawler: a URL frontier in the store partitioned by host, worker
//!   processes holding hosts by fenced leases, polite and crash-safe fetching;
//! - [`thesaurus`]: the build (a map/reduce through the store: co-occurrences and lexical
//!   patterns, PPMI, neighbours), reads of the result, and the evaluation;
//! - [`serve`]: the HTTP API and page.
//!
//! The README's thesaurus-scraper section is the design: requirements, estimates, the data
//! model, what happens when each part dies, and how it would grow to a real web crawl.

pub mod crawl;
pub mod serve;
pub mod thesaurus;
pub mod web;
