//! The merged dictionary entry: everything the sources say about one headword, as the store
//! keeps it (JSON, one key per headword) and as the API and the page show it.

use serde::{Deserialize, Serialize};

/// A part of speech, as the sources name it (GCIDE's abbreviations are mapped onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pos {
    Noun,
    Verb,
    Adjective,
    Adverb,
    Pronoun,
    Preposition,
    Conjunction,
    Interjection,
    Other,
}

impl Pos {
    pub fn name(self) -> &'static str {
        match self {
            Pos::Noun => "noun",
            Pos::Verb => "verb",
            Pos::Adjective => "adjective",
            Pos::Adverb => "adverb",
            Pos::Pronoun => "pronoun",
            Pos::Preposition => "preposition",
            Pos::Conjunction => "conjunction",
            Pos::Interjection => "interjection",
            Pos::Other => "other",
        }
    }
}

/// Where a sense comes from (each has its licence: see [`crate::source::ATTRIBUTIONS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    WordNet,
    Gcide,
}

/// One meaning of a headword.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sense {
    pub pos: Pos,
    pub definition: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
    pub source: Source,
}

/// Everything known about one headword.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Entry {
    /// The headword as written (`ice cream`, `Paris`); its key is its lowercase form.
    pub word: String,
    /// WordNet's senses first (most frequent first), then GCIDE's in its order.
    pub senses: Vec<Sense>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub synonyms: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub antonyms: Vec<String>,
    /// Similar, see-also and derivationally related words.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<String>,
    /// GCIDE's etymologies, one per entry that gives one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub etymology: Vec<String>,
    /// CMUdict pronunciations in ARPAbet (`R AH1 N`), the first the most common.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pronunciations: Vec<String>,
    /// Inflected forms (`geese` for `goose`), from WordNet's exceptions and GCIDE's headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forms: Vec<String>,
    /// Each form's Zipf frequency, in the order of `forms` (spelling correction ranks
    /// `occurred` by how common `occurred` is, not `occur`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub form_frequencies: Vec<f32>,
    /// Zipf frequency (log10 of occurrences per billion words; 0 when unknown).
    pub frequency: f32,
}

impl Entry {
    /// The key of a headword: its lowercase form.
    pub fn key_of(word: &str) -> String {
        word.to_lowercase()
    }

    /// The parts of speech of its senses, in order of first appearance.
    pub fn parts_of_speech(&self) -> Vec<Pos> {
        let mut seen = Vec::new();
        for s in &self.senses {
            if !seen.contains(&s.pos) {
                seen.push(s.pos);
            }
        }
        seen
    }
}
