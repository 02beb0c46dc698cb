//! WordNet 3.0 for the thesaurus: lemmas (morphy, through the dictionary's own rules) and the
//! synonym sets the thesaurus is scored against. Read from Debian's `wordnet-base`
//! (`/usr/share/wordnet`) with the dictionary's parsers.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use dictionary_search::entry::Pos;
use dictionary_search::morph;
use dictionary_search::source::{wordnet, WORDNET_FILES};

pub const DEFAULT_DIR: &str = "/usr/share/wordnet";

#[derive(Debug, Default)]
pub struct WordNet {
    /// Lemma → the parts of speech it has (bit per `Pos`).
    lemmas: HashMap<String, u8>,
    /// Inflected form → its bases, from the exception lists.
    exceptions: HashMap<String, Vec<String>>,
    /// Single-word lemma → its synonyms (the other single words of its synsets).
    synonyms: HashMap<String, BTreeSet<String>>,
}

fn bit(pos: Pos) -> u8 {
    match pos {
        Pos::Noun => 1,
        Pos::Verb => 2,
        Pos::Adjective => 4,
        Pos::Adverb => 8,
        _ => 16, // not a WordNet part of speech
    }
}

impl WordNet {
    pub fn load(dir: &Path) -> anyhow::Result<WordNet> {
        let read = |name: String| -> anyhow::Result<(String, std::path::PathBuf)> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                anyhow::anyhow!("{}: {e} (Debian's wordnet-base has it)", path.display())
            })?;
            Ok((text, path))
        };
        let mut wn = WordNet::default();
        for (pos, data, exc) in WORDNET_FILES {
            let (text, path) = read(format!("index.{data}"))?;
            for (lemma, _) in wordnet::parse_index(&text, &path)? {
                *wn.lemmas.entry(lemma.replace('_', " ")).or_default() |= bit(pos);
            }
            let (text, path) = read(format!("{exc}.exc"))?;
            for (form, bases) in wordnet::parse_exceptions(&text, &path)? {
                wn.exceptions.entry(form).or_default().extend(bases);
            }
            let (text, path) = read(format!("data.{data}"))?;
            for synset in wordnet::parse_data(&text, &path)? {
                let words: Vec<String> = synset
                    .words
                    .iter()
                    .map(|w| w.to_lowercase())
                    .filter(|w| !w.contains(' '))
                    .collect();
                for w in &words {
                    let set = wn.synonyms.entry(w.clone()).or_default();
                    set.extend(words.iter().filter(|o| *o != w).cloned());
                }
            }
        }
        Ok(wn)
    }

    /// From lemma lists given directly (for tests).
    pub fn from_parts(
        lemmas: &[(&str, Pos)],
        exceptions: &[(&str, &str)],
        synsets: &[&[&str]],
    ) -> WordNet {
        let mut wn = WordNet::default();
        for (l, pos) in lemmas {
            *wn.lemmas.entry(l.to_string()).or_default() |= bit(*pos);
        }
        for (form, base) in exceptions {
            wn.exceptions
                .entry(form.to_string())
                .or_default()
                .push(base.to_string());
        }
        for words in synsets {
            for w in words.iter() {
                wn.synonyms
                    .entry(w.to_string())
                    .or_default()
                    .extend(words.iter().filter(|o| *o != w).map(|o| o.to_string()));
            }
        }
        wn
    }

    /// The lemma a token is counted under: itself if WordNet has it as a lemma, else its
    /// first base by morphy (`geese` → `goose`, `ran` → `run`), else itself.
    pub fn lemma(&self, token: &str) -> String {
        if self.lemmas.contains_key(token) {
            return token.to_string();
        }
        let none: &[String] = &[];
        morph::lemmas(
            token,
            |form| self.exceptions.get(form).map_or(none, Vec::as_slice),
            |base, pos| self.lemmas.get(base).is_some_and(|m| m & bit(pos) != 0),
        )
        .into_iter()
        .next()
        .unwrap_or_else(|| token.to_string())
    }

    pub fn is_lemma(&self, word: &str) -> bool {
        self.lemmas.contains_key(word)
    }

    /// WordNet's synonyms of a single-word lemma (strict gold standard).
    pub fn synonyms(&self, word: &str) -> Option<&BTreeSet<String>> {
        self.synonyms.get(word).filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lemmas_follow_morphy() {
        let wn = WordNet::from_parts(
            &[
                ("goose", Pos::Noun),
                ("run", Pos::Verb),
                ("dog", Pos::Noun),
                ("running", Pos::Noun),
            ],
            &[("geese", "goose"), ("ran", "run")],
            &[&["dog", "domestic_dog"]],
        );
        assert_eq!(wn.lemma("geese"), "goose");
        assert_eq!(wn.lemma("ran"), "run");
        assert_eq!(wn.lemma("dogs"), "dog");
        assert_eq!(wn.lemma("running"), "running");
        assert_eq!(wn.lemma("xyzzy"), "xyzzy");
        assert!(wn.synonyms("dog").unwrap().contains("domestic_dog"));
    }
}
