//! A search replica's in-memory indexes over the whole dictionary, built from the entries
//! (as read from the store) and rebuilt whole when the dataset version changes:
//!
//! - the headwords in an fst map (key → entry id), and their reversals (for `*ology`);
//! - autocomplete: the fst's prefix range ranked by frequency, with the top
//!   [`SUGGEST_LIMIT`] precomputed for prefixes of up to [`TOP_PREFIX_CHARS`] characters, the
//!   ones that match the most words;
//! - lemmas: every entry's inflected forms inverted (`geese` → `goose`) plus morphy's rules
//!   ([`crate::morph`]);
//! - patterns (`c?t`, `un*able`) as an automaton over the fst; anagrams by sorted letters;
//!   rhymes by the pronunciation from the last stressed vowel on.
//!
//! Each query has a named limit on its input and its work. Pure: no IO, no clock.

use std::collections::HashMap;

use fst::{Automaton, IntoStreamer, Streamer};

use crate::entry::{Entry, Pos};
use crate::source::cmudict::is_vowel;

/// Suggestions a query returns at most.
pub const SUGGEST_LIMIT: usize = 10;
/// Prefixes this short have their suggestions precomputed (they match the most words).
pub const TOP_PREFIX_CHARS: usize = 4;
/// The longest query (in characters) any search takes.
pub const QUERY_CHARS_MAX: usize = 64;
/// The longest pattern (in characters).
pub const PATTERN_CHARS_MAX: usize = 32;
/// Matches a pattern collects before ranking; past it the answer says it is truncated.
pub const PATTERN_MATCHES_MAX: usize = 5_000;
/// The longest word whose anagrams are looked up.
pub const ANAGRAM_CHARS_MAX: usize = 32;

/// What went wrong with a query (the API answers each with a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("the query is empty")]
    Empty,
    #[error("the query is {chars} characters long; the limit is {limit}")]
    TooLong { chars: usize, limit: usize },
    #[error("the pattern has no letter: it would match the whole dictionary")]
    PatternTooBroad,
    #[error("the query does not parse: {0}")]
    BadQuery(String),
}

/// One headword's place in the rankings.
#[derive(Debug, Clone)]
struct Ranked {
    key: String,
    frequency: f32,
}

/// The indexes of one dataset version.
pub struct Index {
    pub version: String,
    entries: Vec<Entry>,
    ranks: Vec<Ranked>,
    keys: fst::Map<Vec<u8>>,
    reversed: fst::Map<Vec<u8>>,
    top: HashMap<String, Vec<u32>>,
    forms: HashMap<String, Vec<String>>,
    pos: HashMap<String, Vec<Pos>>,
    anagrams: HashMap<String, Vec<u32>>,
    rhymes: HashMap<String, Vec<u32>>,
    assonances: HashMap<String, Vec<u32>>,
    pub(crate) spelling: crate::spell::Speller,
    fulltext: crate::fulltext::FullText,
}

/// A full-text hit: the entry and its highlighted snippet.
#[derive(Debug, Clone)]
pub struct SearchHit<'a> {
    pub entry: &'a Entry,
    pub score: f32,
    pub snippet_html: String,
}

/// A pattern's matches, best first.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternMatches {
    pub words: Vec<String>,
    /// More keys matched than [`PATTERN_MATCHES_MAX`]: the best of those were ranked.
    pub truncated: bool,
}

/// Perfect rhymes and near rhymes (same vowels, other consonants), best first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Rhymes {
    pub perfect: Vec<String>,
    pub near: Vec<String>,
}

fn check_query(q: &str, limit: usize) -> Result<String, QueryError> {
    let q = q.trim();
    if q.is_empty() {
        return Err(QueryError::Empty);
    }
    let chars = q.chars().count();
    if chars > limit {
        return Err(QueryError::TooLong { chars, limit });
    }
    Ok(q.to_lowercase())
}

/// Higher first: more frequent, then shorter, then alphabetical.
fn better(a: &Ranked, b: &Ranked) -> std::cmp::Ordering {
    b.frequency
        .total_cmp(&a.frequency)
        .then(a.key.len().cmp(&b.key.len()))
        .then(a.key.cmp(&b.key))
}

/// The sorted letters of a word: words with the same are anagrams.
pub fn anagram_key(word: &str) -> String {
    let mut letters: Vec<char> = word
        .chars()
        .filter(|c| c.is_alphabetic())
        .flat_map(char::to_lowercase)
        .collect();
    letters.sort_unstable();
    letters.into_iter().collect()
}

/// The part of a pronunciation that rhymes: from the last primary-stressed vowel (else the
/// last vowel) to the end, stress marks dropped (`AH1 N` → `AH N`); and its vowels alone.
pub fn rhyme_parts(pronunciation: &str) -> Option<(String, String)> {
    let phones: Vec<&str> = pronunciation.split(' ').collect();
    let at = phones
        .iter()
        .rposition(|p| p.ends_with('1'))
        .or_else(|| phones.iter().rposition(|p| is_vowel(p)))?;
    let strip = |p: &&str| p.trim_end_matches(['0', '1', '2']).to_string();
    let tail: Vec<String> = phones[at..].iter().map(strip).collect();
    let vowels: Vec<String> = phones[at..]
        .iter()
        .filter(|p| is_vowel(p))
        .map(strip)
        .collect();
    Some((tail.join(" "), vowels.join(" ")))
}

impl Index {
    /// Builds every index over `entries` (any order; one per key).
    pub fn build(version: &str, mut entries: Vec<Entry>) -> Index {
        entries.sort_by_cached_key(|e| Entry::key_of(&e.word));
        entries.dedup_by(|a, b| Entry::key_of(&a.word) == Entry::key_of(&b.word));
        let ranks: Vec<Ranked> = entries
            .iter()
            .map(|e| Ranked {
                key: Entry::key_of(&e.word),
                frequency: e.frequency,
            })
            .collect();
        let keys = fst::Map::from_iter(ranks.iter().enumerate().map(|(i, r)| (&r.key, i as u64)))
            .expect("keys are sorted and unique");
        let mut reversed_keys: Vec<(String, u64)> = ranks
            .iter()
            .enumerate()
            .map(|(i, r)| (r.key.chars().rev().collect(), i as u64))
            .collect();
        reversed_keys.sort();
        reversed_keys.dedup_by(|a, b| a.0 == b.0);
        let reversed = fst::Map::from_iter(reversed_keys).expect("sorted and unique");

        let mut top: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, r) in ranks.iter().enumerate() {
            for (at, c) in r.key.char_indices().take(TOP_PREFIX_CHARS) {
                top.entry(r.key[..at + c.len_utf8()].to_string())
                    .or_default()
                    .push(i as u32);
            }
        }
        for ids in top.values_mut() {
            ids.sort_by(|a, b| better(&ranks[*a as usize], &ranks[*b as usize]));
            ids.truncate(SUGGEST_LIMIT);
            ids.shrink_to_fit();
        }

        let mut forms: HashMap<String, Vec<String>> = HashMap::new();
        let mut pos: HashMap<String, Vec<Pos>> = HashMap::new();
        let mut anagrams: HashMap<String, Vec<u32>> = HashMap::new();
        let mut rhymes: HashMap<String, Vec<u32>> = HashMap::new();
        let mut assonances: HashMap<String, Vec<u32>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let key = &ranks[i].key;
            for f in &e.forms {
                let bases = forms.entry(f.clone()).or_default();
                if !bases.contains(key) {
                    bases.push(key.clone());
                }
            }
            pos.insert(key.clone(), e.parts_of_speech());
            if !key.contains(' ') {
                anagrams.entry(anagram_key(key)).or_default().push(i as u32);
            }
            if let Some((tail, vowels)) = e.pronunciations.first().and_then(|p| rhyme_parts(p)) {
                rhymes.entry(tail).or_default().push(i as u32);
                assonances.entry(vowels).or_default().push(i as u32);
            }
        }
        for ids in anagrams
            .values_mut()
            .chain(rhymes.values_mut())
            .chain(assonances.values_mut())
        {
            ids.sort_by(|a, b| better(&ranks[*a as usize], &ranks[*b as usize]));
        }
        let spelling = crate::spell::Speller::new(&entries);
        let fulltext = crate::fulltext::FullText::build(&entries)
            .expect("an index in memory builds (tantivy fails only on IO)");
        Index {
            version: version.to_string(),
            entries,
            ranks,
            keys,
            reversed,
            top,
            forms,
            pos,
            anagrams,
            rhymes,
            assonances,
            spelling,
            fulltext,
        }
    }

    /// Entries whose definitions and examples match `query` best (BM25; the headword counts
    /// more; `"phrases"` in quotes), each with a highlighted snippet.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<SearchHit<'_>>, QueryError> {
        Ok(self
            .fulltext
            .search(query, limit, &self.entries)?
            .into_iter()
            .map(|h| SearchHit {
                entry: &self.entries[h.id as usize],
                score: h.score,
                snippet_html: h.snippet_html,
            })
            .collect())
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry of exactly this headword (case-insensitively).
    pub fn entry(&self, word: &str) -> Option<&Entry> {
        let id = self.keys.get(Entry::key_of(word.trim()))?;
        Some(&self.entries[id as usize])
    }

    /// The headwords `word` is an inflected form of (`ran` → `run`, `geese` → `goose`).
    pub fn lemmas(&self, word: &str) -> Vec<&Entry> {
        let key = Entry::key_of(word.trim());
        let none = Vec::new();
        crate::morph::lemmas(
            &key,
            |w| self.forms.get(w).map_or(&none[..], |v| &v[..]),
            |w, p| self.pos.get(w).is_some_and(|ps| ps.contains(&p)),
        )
        .iter()
        .filter_map(|w| self.entry(w))
        .collect()
    }

    /// Up to `limit` (at most [`SUGGEST_LIMIT`]) headwords starting with `prefix`, most
    /// frequent first.
    pub fn suggest(&self, prefix: &str, limit: usize) -> Result<Vec<&str>, QueryError> {
        let prefix = check_query(prefix, QUERY_CHARS_MAX)?;
        let limit = limit.min(SUGGEST_LIMIT);
        if prefix.chars().count() <= TOP_PREFIX_CHARS {
            let ids = self.top.get(&prefix).map_or(&[][..], |v| &v[..]);
            return Ok(ids
                .iter()
                .take(limit)
                .map(|i| self.entries[*i as usize].word.as_str())
                .collect());
        }
        let mut best: Vec<u32> = Vec::with_capacity(limit + 1);
        let matcher = fst::automaton::Str::new(&prefix).starts_with();
        let mut stream = self.keys.search(matcher).into_stream();
        while let Some((_, id)) = stream.next() {
            let id = id as u32;
            let at = best.partition_point(|b| {
                better(&self.ranks[*b as usize], &self.ranks[id as usize]).is_lt()
            });
            if at < limit {
                best.insert(at, id);
                best.truncate(limit);
            }
        }
        Ok(best
            .iter()
            .map(|i| self.entries[*i as usize].word.as_str())
            .collect())
    }

    /// Headwords matching a pattern of letters, `?` (one character) and `*` (any run),
    /// most frequent first.
    pub fn pattern(&self, pattern: &str, limit: usize) -> Result<PatternMatches, QueryError> {
        let pattern = check_query(pattern, PATTERN_CHARS_MAX)?;
        if !pattern.chars().any(|c| c != '*' && c != '?') {
            return Err(QueryError::PatternTooBroad);
        }
        // A leading `*` and a literal end: search the reversed keys, which then start with a
        // literal and prune at once.
        let (map, glob) = if pattern.starts_with('*') && !pattern.ends_with(['*', '?']) {
            (
                &self.reversed,
                Glob::new(&pattern.chars().rev().collect::<String>()),
            )
        } else {
            (&self.keys, Glob::new(&pattern))
        };
        let mut ids = Vec::new();
        let mut stream = map.search(&glob).into_stream();
        let mut truncated = false;
        while let Some((_, id)) = stream.next() {
            if ids.len() == PATTERN_MATCHES_MAX {
                truncated = true;
                break;
            }
            ids.push(id as u32);
        }
        ids.sort_by(|a, b| better(&self.ranks[*a as usize], &self.ranks[*b as usize]));
        ids.truncate(limit);
        Ok(PatternMatches {
            words: ids
                .iter()
                .map(|i| self.entries[*i as usize].word.clone())
                .collect(),
            truncated,
        })
    }

    /// Other headwords with exactly the same letters, most frequent first.
    pub fn anagrams(&self, word: &str, limit: usize) -> Result<Vec<&str>, QueryError> {
        let word = check_query(word, ANAGRAM_CHARS_MAX)?;
        let key = anagram_key(&word);
        if key.is_empty() {
            return Err(QueryError::PatternTooBroad);
        }
        let own: String = word.chars().filter(|c| c.is_alphabetic()).collect();
        Ok(self
            .anagrams
            .get(&key)
            .map_or(&[][..], |v| &v[..])
            .iter()
            .map(|i| &self.entries[*i as usize])
            .filter(|e| e.word.to_lowercase() != own)
            .take(limit)
            .map(|e| e.word.as_str())
            .collect())
    }

    /// Perfect and near rhymes of a headword with a pronunciation.
    pub fn rhymes(&self, word: &str, limit: usize) -> Result<Rhymes, QueryError> {
        let word = check_query(word, QUERY_CHARS_MAX)?;
        let Some(entry) = self.entry(&word) else {
            return Ok(Rhymes::default());
        };
        let Some((tail, vowels)) = entry.pronunciations.first().and_then(|p| rhyme_parts(p)) else {
            return Ok(Rhymes::default());
        };
        let own = |i: &&u32| Entry::key_of(&self.entries[**i as usize].word) != word;
        let perfect: Vec<String> = self
            .rhymes
            .get(&tail)
            .map_or(&[][..], |v| &v[..])
            .iter()
            .filter(own)
            .take(limit)
            .map(|i| self.entries[*i as usize].word.clone())
            .collect();
        // Near rhymes: the same vowels from the stressed one on, other consonants; the more
        // phones they share from the end, the nearer.
        let tail_phones: Vec<&str> = tail.split(' ').collect();
        let shared = |i: u32| -> usize {
            let other = self.entries[i as usize].pronunciations.first();
            let Some((t, _)) = other.and_then(|p| rhyme_parts(p)) else {
                return 0;
            };
            t.split(' ')
                .rev()
                .zip(tail_phones.iter().rev())
                .take_while(|(a, b)| a == *b)
                .count()
        };
        let mut near: Vec<(usize, u32)> = self
            .assonances
            .get(&vowels)
            .map_or(&[][..], |v| &v[..])
            .iter()
            .filter(own)
            .filter(|i| {
                let e = &self.entries[**i as usize];
                e.pronunciations
                    .first()
                    .and_then(|p| rhyme_parts(p))
                    .map(|r| r.0)
                    != Some(tail.clone())
            })
            .take(PATTERN_MATCHES_MAX)
            .map(|i| (shared(*i), *i))
            .collect();
        near.sort_by(|a, b| {
            b.0.cmp(&a.0)
                .then(better(&self.ranks[a.1 as usize], &self.ranks[b.1 as usize]))
        });
        Ok(Rhymes {
            perfect,
            near: near
                .into_iter()
                .take(limit)
                .map(|(_, i)| self.entries[i as usize].word.clone())
                .collect(),
        })
    }
}

/// A `?`/`*` pattern as an automaton over the fst's bytes. It decodes UTF-8 as it goes, so
/// `?` is one character, not one byte. State: the set of pattern positions reached (bit `i`:
/// the first `i` tokens matched), and the character being decoded.
struct Glob {
    tokens: Vec<Token>,
}

#[derive(Clone, Copy, PartialEq)]
enum Token {
    Char(char),
    Any,
    Star,
}

#[derive(Clone, Copy)]
struct GlobState {
    positions: u64,
    /// A character's bytes so far, and how many more it needs.
    partial: u32,
    pending: u8,
}

impl Glob {
    fn new(pattern: &str) -> Glob {
        let tokens = pattern
            .chars()
            .take(PATTERN_CHARS_MAX)
            .map(|c| match c {
                '?' => Token::Any,
                '*' => Token::Star,
                c => Token::Char(c),
            })
            .collect();
        Glob { tokens }
    }

    /// Positions reachable without consuming anything: past each `*`.
    fn closure(&self, mut positions: u64) -> u64 {
        for (i, t) in self.tokens.iter().enumerate() {
            if *t == Token::Star && positions & (1 << i) != 0 {
                positions |= 1 << (i + 1);
            }
        }
        positions
    }

    fn step(&self, positions: u64, c: char) -> u64 {
        let mut next = 0;
        for (i, t) in self.tokens.iter().enumerate() {
            if positions & (1 << i) == 0 {
                continue;
            }
            match t {
                Token::Char(x) if *x == c => next |= 1 << (i + 1),
                Token::Char(_) => {}
                Token::Any => next |= 1 << (i + 1),
                Token::Star => next |= 1 << i,
            }
        }
        self.closure(next)
    }
}

impl Automaton for &Glob {
    type State = GlobState;

    fn start(&self) -> GlobState {
        GlobState {
            positions: self.closure(1),
            partial: 0,
            pending: 0,
        }
    }

    fn is_match(&self, s: &GlobState) -> bool {
        s.pending == 0 && s.positions & (1 << self.tokens.len()) != 0
    }

    fn can_match(&self, s: &GlobState) -> bool {
        s.positions != 0
    }

    fn accept(&self, s: &GlobState, byte: u8) -> GlobState {
        let (partial, pending) = if s.pending > 0 {
            (s.partial << 6 | u32::from(byte & 0x3f), s.pending - 1)
        } else if byte < 0x80 {
            (u32::from(byte), 0)
        } else if byte >= 0xf0 {
            (u32::from(byte & 0x07), 3)
        } else if byte >= 0xe0 {
            (u32::from(byte & 0x0f), 2)
        } else {
            (u32::from(byte & 0x1f), 1)
        };
        if pending > 0 {
            return GlobState {
                positions: s.positions,
                partial,
                pending,
            };
        }
        let c = char::from_u32(partial).unwrap_or(char::REPLACEMENT_CHARACTER);
        GlobState {
            positions: self.step(s.positions, c),
            partial: 0,
            pending: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(word: &str, frequency: f32, pron: &str) -> Entry {
        Entry {
            word: word.to_string(),
            frequency,
            pronunciations: if pron.is_empty() {
                vec![]
            } else {
                vec![pron.to_string()]
            },
            senses: vec![crate::entry::Sense {
                pos: Pos::Noun,
                definition: format!("the {word}"),
                examples: vec![],
                source: crate::entry::Source::WordNet,
            }],
            ..Entry::default()
        }
    }

    fn index() -> Index {
        let words = [
            ("cat", 5.0, "K AE1 T"),
            ("cot", 3.0, "K AA1 T"),
            ("cut", 5.2, "K AH1 T"),
            ("hat", 4.5, "HH AE1 T"),
            ("act", 4.9, "AE1 K T"),
            ("catalogue", 3.5, ""),
            ("cataract", 2.5, ""),
            ("café", 3.0, ""),
            ("biology", 4.0, ""),
            ("geology", 3.6, ""),
            ("unbelievable", 4.2, ""),
            ("unable", 4.4, ""),
            ("bat", 4.0, "B AE1 T"),
            ("cap", 4.4, "K AE1 P"),
        ];
        Index::build(
            "v1",
            words.iter().map(|(w, f, p)| entry(w, *f, p)).collect(),
        )
    }

    #[test]
    fn suggestions_are_the_most_frequent_words_with_the_prefix() {
        let ix = index();
        assert_eq!(
            ix.suggest("ca", 10).unwrap(),
            ["cat", "cap", "catalogue", "café", "cataract"]
        );
        assert_eq!(ix.suggest("cata", 10).unwrap(), ["catalogue", "cataract"]);
        // Past the precomputed prefixes: the fst's range, ranked the same way.
        assert_eq!(ix.suggest("catar", 10).unwrap(), ["cataract"]);
        assert_eq!(
            ix.suggest("unb", 10).unwrap(),
            ix.suggest("unbe", 10).unwrap()
        );
        assert_eq!(ix.suggest("unbel", 10).unwrap(), ["unbelievable"]);
        assert_eq!(ix.suggest("CAT", 2).unwrap(), ["cat", "catalogue"]);
        assert!(ix.suggest("zzzz", 10).unwrap().is_empty());
        assert_eq!(ix.suggest("  ", 10), Err(QueryError::Empty));
        let long = "a".repeat(QUERY_CHARS_MAX + 1);
        assert_eq!(
            ix.suggest(&long, 10),
            Err(QueryError::TooLong {
                chars: QUERY_CHARS_MAX + 1,
                limit: QUERY_CHARS_MAX
            })
        );
    }

    #[test]
    fn patterns_match_whole_words_with_wildcards() {
        let ix = index();
        assert_eq!(ix.pattern("c?t", 10).unwrap().words, ["cut", "cat", "cot"]);
        assert_eq!(
            ix.pattern("*ology", 10).unwrap().words,
            ["biology", "geology"]
        );
        assert_eq!(
            ix.pattern("un*able", 10).unwrap().words,
            ["unable", "unbelievable"]
        );
        assert_eq!(
            ix.pattern("caf?", 10).unwrap().words,
            ["café"],
            "? is one character"
        );
        assert_eq!(
            ix.pattern("c*t", 10).unwrap().words,
            ["cut", "cat", "cot", "cataract"]
        );
        assert_eq!(ix.pattern("*", 10), Err(QueryError::PatternTooBroad));
        assert!(!ix.pattern("*a*", 10).unwrap().truncated);
    }

    #[test]
    fn anagrams_share_their_letters() {
        let ix = index();
        assert_eq!(ix.anagrams("cat", 10).unwrap(), ["act"]);
        assert_eq!(ix.anagrams("TAC", 10).unwrap(), ["cat", "act"]);
        assert!(ix.anagrams("dog", 10).unwrap().is_empty());
    }

    #[test]
    fn rhymes_come_from_the_stressed_vowel_on() {
        let ix = index();
        let r = ix.rhymes("cat", 10).unwrap();
        assert_eq!(r.perfect, ["hat", "bat"]);
        // Same vowel, other consonants: sharing the final T makes "act" the nearer.
        assert_eq!(r.near, ["act", "cap"]);
        assert_eq!(
            rhyme_parts("K AE1 T AH0 L AO2 G").unwrap().0,
            "AE T AH L AO G"
        );
        assert_eq!(ix.rhymes("catalogue", 10).unwrap(), Rhymes::default());
    }
}
