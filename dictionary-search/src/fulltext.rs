//! Full text and the reverse dictionary ("a fear of heights" finds `acrophobia`): a tantivy
//! index in memory over every entry's headword, definitions and examples, English-stemmed,
//! ranked by BM25 with the headword boosted, phrases in quotes, and a highlighted snippet of
//! the definitions for each hit.
//!
//! The index stores nothing but each document's entry id: the text of a hit, and its
//! snippet, come from the entry the replica holds anyway.

use tantivy::collector::TopDocs;
use tantivy::query::QueryParser;
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{doc, IndexReader, TantivyDocument};

use crate::entry::Entry;
use crate::index::QueryError;

/// Memory the index writer may use while building (tantivy's arena, per thread).
pub const BUILD_HEAP_BYTES: usize = 64 * 1024 * 1024;
/// The longest full-text query, in characters.
pub const SEARCH_QUERY_CHARS_MAX: usize = 200;
/// Hits a search returns at most.
pub const SEARCH_LIMIT_MAX: usize = 50;
/// A snippet's length, in characters.
pub const SNIPPET_CHARS: usize = 160;
/// How much more a match in the headword counts than one in the text. Kept low: the reverse
/// dictionary's user does not know the word, and "fear" in the query must not rank the
/// entry `fear` above `acrophobia`, "a morbid fear of great heights".
pub const HEADWORD_BOOST: f32 = 1.5;

/// Words a plain query need not contain all of (the first pass requires every other word),
/// and that the benchmark's definition queries leave out.
pub const STOP_WORDS: [&str; 30] = [
    "a",
    "an",
    "the",
    "of",
    "to",
    "in",
    "on",
    "for",
    "and",
    "or",
    "by",
    "with",
    "as",
    "at",
    "is",
    "be",
    "that",
    "which",
    "who",
    "from",
    "it",
    "its",
    "one",
    "something",
    "used",
    "not",
    "into",
    "has",
    "have",
    "are",
];
/// One hit: the entry, its score, and the definitions' best passage with the matched terms in
/// `<b>` (the passage's text HTML-escaped).
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: u32,
    pub score: f32,
    pub snippet_html: String,
}

pub struct FullText {
    reader: IndexReader,
    /// Every term may match (BM25 sums what does).
    parser: QueryParser,
    /// Every term must match.
    strict: QueryParser,
    text: Field,
    id: Field,
}

fn body(e: &Entry) -> String {
    let mut text = String::new();
    for s in &e.senses {
        text.push_str(&s.definition);
        text.push_str(". ");
    }
    for s in &e.senses {
        for x in &s.examples {
            text.push_str(x);
            text.push_str(". ");
        }
    }
    text
}

impl FullText {
    /// Indexes `entries` (entry id = position).
    pub fn build(entries: &[Entry]) -> tantivy::Result<FullText> {
        let mut schema = Schema::builder();
        let stemmed = |positions| {
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer("en_stem")
                    .set_index_option(positions),
            )
        };
        let headword = schema.add_text_field("headword", stemmed(IndexRecordOption::WithFreqs));
        let text = schema.add_text_field("text", stemmed(IndexRecordOption::WithFreqsAndPositions));
        let id = schema.add_u64_field("id", NumericOptions::default().set_stored());
        let index = tantivy::Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, BUILD_HEAP_BYTES)?;
        for (i, e) in entries.iter().enumerate() {
            writer
                .add_document(doc!(headword => e.word.clone(), text => body(e), id => i as u64))?;
        }
        writer.commit()?;
        let reader = index.reader()?;
        let mut parser = QueryParser::for_index(&index, vec![headword, text]);
        parser.set_field_boost(headword, HEADWORD_BOOST);
        let mut strict = parser.clone();
        strict.set_conjunction_by_default();
        Ok(FullText {
            reader,
            parser,
            strict,
            text,
            id,
        })
    }

    /// The best `limit` entries for `query` (words, `"a phrase"`, `+must -not`).
    pub fn search(
        &self,
        query: &str,
        limit: usize,
        entries: &[Entry],
    ) -> Result<Vec<Hit>, QueryError> {
        let query = query.trim();
        if query.is_empty() {
            return Err(QueryError::Empty);
        }
        let chars = query.chars().count();
        if chars > SEARCH_QUERY_CHARS_MAX {
            return Err(QueryError::TooLong {
                chars,
                limit: SEARCH_QUERY_CHARS_MAX,
            });
        }
        let parsed = self
            .parser
            .parse_query(query)
            .map_err(|e| QueryError::BadQuery(e.to_string()))?;
        let searcher = self.reader.searcher();
        let limit = limit.clamp(1, SEARCH_LIMIT_MAX);
        let search = |q: &dyn tantivy::query::Query| {
            searcher
                .search(q, &TopDocs::with_limit(limit).order_by_score())
                .map_err(|e| QueryError::BadQuery(e.to_string()))
        };
        // A plain query: first the entries with every word of it (but the little ones), then
        // the rest by BM25 over any of its words.
        let mut top = Vec::new();
        let plain = !query.contains(['"', '+', '-', ':', '(', ')', '*', '^', '~']);
        if plain {
            let content: Vec<&str> = query
                .split_whitespace()
                .filter(|w| !STOP_WORDS.contains(&w.to_lowercase().as_str()))
                .collect();
            if content.len() > 1 {
                if let Ok(q) = self.strict.parse_query(&content.join(" ")) {
                    top = search(&*q)?;
                }
            }
        }
        for hit in search(&*parsed)? {
            if top.len() < limit && !top.iter().any(|(_, a)| *a == hit.1) {
                top.push(hit);
            }
        }
        let mut snippets = SnippetGenerator::create(&searcher, &*parsed, self.text)
            .map_err(|e| QueryError::BadQuery(e.to_string()))?;
        snippets.set_max_num_chars(SNIPPET_CHARS);
        let mut hits = Vec::with_capacity(top.len());
        for (score, address) in top {
            let doc: TantivyDocument = searcher
                .doc(address)
                .map_err(|e| QueryError::BadQuery(e.to_string()))?;
            let Some(id) = doc.get_first(self.id).and_then(|v| v.as_u64()) else {
                continue;
            };
            let entry = &entries[id as usize];
            let definitions: Vec<&str> =
                entry.senses.iter().map(|s| s.definition.as_str()).collect();
            let mut snippet = snippets.snippet(&definitions.join("; ")).to_html();
            if snippet.is_empty() {
                // Matched on the headword or an example alone: the first definition.
                snippet = escape(
                    &definitions
                        .first()
                        .copied()
                        .unwrap_or_default()
                        .chars()
                        .take(SNIPPET_CHARS)
                        .collect::<String>(),
                );
            }
            hits.push(Hit {
                id: id as u32,
                score,
                snippet_html: snippet,
            });
        }
        Ok(hits)
    }
}

/// Text for HTML: `<`, `>`, `&`, `"` and `'` escaped.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
