//! The thesaurus: from the crawl's stored text to words and their neighbours.
//!
//! [`text`] tokenises and finds lexical patterns, [`wordnet`] gives lemmas (and the gold
//! standard), [`counts`] counts (the map side), [`vectors`] weighs and compares (PPMI,
//! cosine, the combined score), [`build`] runs the map/reduce through the store, [`eval`]
//! scores the result against WordNet and the Moby thesaurus.

pub mod build;
pub mod counts;
pub mod eval;
pub mod lookup;
pub mod text;
pub mod vectors;
pub mod wordnet;
