//! Counting, the map side of the build: unigram counts, co-occurrence counts within a window
//! (over the lemmas of content words, both directions, so the matrix is symmetric), and the
//! pairs the lexical patterns find with a few evidence sentences each. Pure; words are
//! interned while counting and written out by shard ([`Partial`]) for the store.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::text;

/// Evidence sentences kept per pattern pair.
pub const EVIDENCE_PER_PAIR: usize = 3;

/// Interned counts of some pages.
#[derive(Debug, Default)]
pub struct Counts {
    ids: HashMap<String, u32>,
    words: Vec<String>,
    pub unigrams: Vec<u64>,
    /// (word, context) → count; both orders are counted.
    pub pairs: HashMap<(u32, u32), u64>,
    /// (a, b) with a < b by id → pattern matches.
    pub patterns: HashMap<(u32, u32), u64>,
    pub evidence: HashMap<(u32, u32), Vec<String>>,
    pub tokens: u64,
    pub pages: u64,
}

impl Counts {
    fn id(&mut self, w: &str) -> u32 {
        if let Some(&i) = self.ids.get(w) {
            return i;
        }
        let i = self.words.len() as u32;
        self.ids.insert(w.to_string(), i);
        self.words.push(w.to_string());
        self.unigrams.push(0);
        i
    }

    pub fn word(&self, id: u32) -> &str {
        &self.words[id as usize]
    }

    /// Counts one page's text. `headword` is the page's if it is a dictionary entry.
    pub fn add_page(
        &mut self,
        text: &str,
        headword: Option<&str>,
        window: usize,
        lemma: &dyn Fn(&str) -> String,
    ) {
        self.pages += 1;
        for sentence in text::sentences(text) {
            let ids: Vec<u32> = text::tokens(sentence)
                .iter()
                .filter(|t| text::is_content(t))
                .map(|t| {
                    let l = lemma(t);
                    self.id(&l)
                })
                .collect();
            self.tokens += ids.len() as u64;
            for (i, &w) in ids.iter().enumerate() {
                self.unigrams[w as usize] += 1;
                for &c in &ids[i + 1..(i + 1 + window).min(ids.len())] {
                    if c != w {
                        *self.pairs.entry((w, c)).or_default() += 1;
                        *self.pairs.entry((c, w)).or_default() += 1;
                    }
                }
            }
            for found in text::patterns(sentence, headword, lemma) {
                let (a, b) = (self.id(&found.a), self.id(&found.b));
                let key = (a.min(b), a.max(b));
                *self.patterns.entry(key).or_default() += 1;
                let ev = self.evidence.entry(key).or_default();
                if ev.len() < EVIDENCE_PER_PAIR && !ev.contains(&found.evidence) {
                    ev.push(found.evidence);
                }
            }
        }
    }

    /// The counts split by the shard that owns each row's word (`shard_of`), as
    /// [`Partial`]s of at most `entries_max` pair and pattern entries each.
    pub fn into_partials(
        self,
        shards: u32,
        entries_max: usize,
        shard_of: impl Fn(&str) -> u32,
    ) -> Vec<(u32, Vec<Partial>)> {
        let owner: Vec<u32> = self.words.iter().map(|w| shard_of(w)).collect();
        let mut by_shard: Vec<Vec<Partial>> =
            (0..shards).map(|_| vec![Partial::default()]).collect();
        let words = &self.words;
        let push = |parts: &mut Vec<Partial>| -> usize {
            if parts.last().is_some_and(|p| p.entries() >= entries_max) {
                parts.push(Partial::default());
            }
            parts.len() - 1
        };
        for (i, &n) in self.unigrams.iter().enumerate() {
            let parts = &mut by_shard[owner[i] as usize];
            let at = push(parts);
            parts[at].unigrams.push((words[i].clone(), n));
        }
        for ((w, c), n) in self.pairs {
            let parts = &mut by_shard[owner[w as usize] as usize];
            let at = push(parts);
            parts[at]
                .pairs
                .push((words[w as usize].clone(), words[c as usize].clone(), n));
        }
        let mut evidence = self.evidence;
        for ((a, b), n) in self.patterns {
            let ev = evidence.remove(&(a, b)).unwrap_or_default();
            // Each side's shard gets the pair, so both words' rows know it.
            for (x, y) in [(a, b), (b, a)] {
                let parts = &mut by_shard[owner[x as usize] as usize];
                let at = push(parts);
                parts[at].patterns.push((
                    words[x as usize].clone(),
                    words[y as usize].clone(),
                    n,
                    ev.clone(),
                ));
            }
        }
        if let Some(first) = by_shard.first_mut().and_then(|p| p.first_mut()) {
            first.tokens = self.tokens;
            first.pages = self.pages;
        }
        by_shard
            .into_iter()
            .enumerate()
            .map(|(i, p)| (i as u32, p))
            .collect()
    }
}

/// One shard's part of one mapper's counts, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    pub unigrams: Vec<(String, u64)>,
    pub pairs: Vec<(String, String, u64)>,
    pub patterns: Vec<(String, String, u64, Vec<String>)>,
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub pages: u64,
}

impl Partial {
    pub fn entries(&self) -> usize {
        self.unigrams.len() + self.pairs.len() + self.patterns.len()
    }
}

/// A word's merged row: what the reduce side knows of it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row {
    pub count: u64,
    pub contexts: HashMap<String, u64>,
    /// Pattern partner → (matches, evidence).
    pub patterns: HashMap<String, (u64, Vec<String>)>,
}

/// Merges partials into rows (the reduce of one shard).
pub fn merge(rows: &mut HashMap<String, Row>, part: Partial) {
    for (w, n) in part.unigrams {
        rows.entry(w).or_default().count += n;
    }
    for (w, c, n) in part.pairs {
        *rows.entry(w).or_default().contexts.entry(c).or_default() += n;
    }
    for (w, o, n, ev) in part.patterns {
        let e = rows.entry(w).or_default().patterns.entry(o).or_default();
        e.0 += n;
        for s in ev {
            if e.1.len() < EVIDENCE_PER_PAIR && !e.1.contains(&s) {
                e.1.push(s);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn a_window_counts_both_directions_over_content_words() {
        let mut c = Counts::default();
        c.add_page("The quick brown fox jumps.", None, 2, &id);
        let pair = |a: &str, b: &str| {
            let (a, b) = (c.ids[a], c.ids[b]);
            c.pairs.get(&(a, b)).copied().unwrap_or(0)
        };
        assert_eq!(c.tokens, 4, "'the' is a stop word");
        assert_eq!(pair("quick", "brown"), 1);
        assert_eq!(pair("brown", "quick"), 1);
        assert_eq!(pair("quick", "fox"), 1);
        assert_eq!(pair("quick", "jumps"), 0, "outside ±2");
    }

    #[test]
    fn partials_split_by_owner_and_merge_back_to_the_same_counts() {
        let mut c = Counts::default();
        c.add_page(
            "A fool or simpleton. The fool laughed.\nA simpleton laughed.",
            None,
            2,
            &id,
        );
        let parts = c.into_partials(3, 2, |w| (w.len() % 3) as u32);
        let mut rows = HashMap::new();
        for (shard, ps) in parts {
            for p in ps {
                assert!(p.entries() <= 2);
                for (w, _) in &p.unigrams {
                    assert_eq!(w.len() as u32 % 3, shard);
                }
                merge(&mut rows, p);
            }
        }
        assert_eq!(rows["fool"].count, 2);
        assert_eq!(rows["fool"].contexts["simpleton"], 1);
        assert_eq!(rows["fool"].contexts["laughed"], 1);
        assert_eq!(rows["simpleton"].patterns["fool"].0, 1);
        assert_eq!(
            rows["fool"].patterns["simpleton"].1,
            vec!["A fool or simpleton."]
        );
    }
}
