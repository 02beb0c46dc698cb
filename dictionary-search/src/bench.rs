//! The benchmark's seeded queries and its latency figures, shared by `dictionary-search bench`
//! and the peers' scripts (`bench/peers/`), which read the same query file so that every
//! system answers the same questions.
//!
//! A query file has one query per line, `kind<TAB>query[<TAB>expected]`: `prefix` (what a
//! user has typed of a common word), `spell` (a real misspelling, and the word meant) and
//! `search` (two or three content words of a real WordNet definition, in order). Pure: the
//! caller writes and reads the file.

use crate::entry::{Entry, Source};
use crate::eval::Pair;
use crate::fulltext::STOP_WORDS as STOP;

/// A small, seeded generator (xorshift64*): the same seed gives the same queries everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// `per_kind` queries of each kind, drawn with `seed` from `entries` (sorted by key) and the
/// misspelling `pairs`.
pub fn queries(entries: &[&Entry], pairs: &[Pair], per_kind: usize, seed: u64) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(per_kind * 3);
    // Prefixes of common single words, 2 to 6 letters of them: what people type.
    let common: Vec<&Entry> = entries
        .iter()
        .copied()
        .filter(|e| e.frequency >= 3.0 && e.word.bytes().all(|b| b.is_ascii_lowercase()))
        .collect();
    for _ in 0..per_kind {
        let w = &common[rng.below(common.len())].word;
        let len = 2 + rng.below(5).min(w.len().saturating_sub(2));
        out.push(format!("prefix\t{}", &w[..len.min(w.len())]));
    }
    for _ in 0..per_kind {
        let p = &pairs[rng.below(pairs.len())];
        out.push(format!("spell\t{}\t{}", p.typed, p.meant));
    }
    let defined: Vec<&Entry> = entries
        .iter()
        .copied()
        .filter(|e| e.senses.iter().any(|s| s.source == Source::WordNet))
        .collect();
    while out.len() < per_kind * 3 {
        let e = defined[rng.below(defined.len())];
        let s = &e.senses[rng.below(e.senses.len())];
        let words: Vec<String> = s
            .definition
            .split(|c: char| !c.is_ascii_alphabetic())
            .map(str::to_lowercase)
            .filter(|w| w.len() > 2 && !STOP.contains(&w.as_str()))
            .collect();
        if words.len() < 2 {
            continue;
        }
        let n = 2 + rng.below(2).min(words.len() - 2);
        let at = rng.below(words.len() - n + 1);
        out.push(format!(
            "search\t{}\t{}",
            words[at..at + n].join(" "),
            e.word
        ));
    }
    out
}

/// Latency percentiles of a sample, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    pub count: usize,
    pub p50_us: f64,
    pub p99_us: f64,
    pub max_us: f64,
}

impl Latency {
    pub fn of(mut micros: Vec<f64>) -> Latency {
        micros.sort_by(f64::total_cmp);
        let at = |q: f64| {
            if micros.is_empty() {
                0.0
            } else {
                micros[((micros.len() - 1) as f64 * q).round() as usize]
            }
        };
        Latency {
            count: micros.len(),
            p50_us: at(0.5),
            p99_us: at(0.99),
            max_us: at(1.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_queries() {
        let e = |w: &str, f: f32, d: &str| Entry {
            word: w.into(),
            frequency: f,
            senses: vec![crate::entry::Sense {
                pos: crate::entry::Pos::Noun,
                definition: d.into(),
                examples: vec![],
                source: Source::WordNet,
            }],
            ..Entry::default()
        };
        let entries = [
            e("house", 5.5, "a dwelling that serves as living quarters"),
            e("acrophobia", 1.7, "a morbid fear of great heights"),
        ];
        let refs: Vec<&Entry> = entries.iter().collect();
        let pairs = [Pair {
            typed: "recieve".into(),
            meant: "receive".into(),
        }];
        let a = queries(&refs, &pairs, 5, 7);
        assert_eq!(a, queries(&refs, &pairs, 5, 7));
        assert_ne!(a, queries(&refs, &pairs, 5, 8));
        assert_eq!(a.len(), 15);
        assert!(a[..5].iter().all(|q| q.starts_with("prefix\tho")), "{a:?}");
        assert_eq!(a[5], "spell\trecieve\treceive");
        assert!(a[10..].iter().all(|q| q.starts_with("search\t")), "{a:?}");
    }

    #[test]
    fn percentiles() {
        let l = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(
            (l.count, l.p50_us, l.p99_us, l.max_us),
            (100, 51.0, 99.0, 100.0)
        );
    }
}
