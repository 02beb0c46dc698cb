//! Distributional similarity: PPMI-weighted context vectors and their cosine neighbours,
//! combined with the lexical patterns into one score. Pure.
//!
//! PPMI(w, c) = max(0, ln P(w,c) / (P(w) · P_α(c))), with the context distribution smoothed
//! by α = 0.75 (Levy, Goldberg and Dagan 2015), over words seen at least `min_count` times.
//! Each vector keeps its `features_max` strongest contexts and is scaled to unit length, so a
//! dot product is a cosine. Neighbours come from an inverted index (context → words), skipping
//! contexts shared by more than `postings_max` words (they say little and cost most).
//!
//! The combined score of a pair is `cosine + pattern_weight · ln(1 + pattern matches)`: a pair
//! the patterns name outright, a few times, ranks above most pairs that merely share contexts
//! (real cosines rarely pass 0.5).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::counts::Row;

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Params {
    pub min_count: u64,
    pub features_max: usize,
    pub alpha: f64,
    pub postings_max: usize,
    /// Neighbours kept per word.
    pub k: usize,
    /// Distributional candidates considered per word before combining.
    pub candidates: usize,
    pub pattern_weight: f64,
}

impl Default for Params {
    fn default() -> Params {
        Params {
            min_count: 5,
            features_max: 200,
            alpha: 0.75,
            postings_max: 2_000,
            k: 25,
            candidates: 50,
            pattern_weight: 0.15,
        }
    }
}

/// Unit-length sparse vectors of the vocabulary.
#[derive(Debug, Default)]
pub struct Vectors {
    pub words: Vec<String>,
    pub index: HashMap<String, u32>,
    pub counts: Vec<u64>,
    /// Per word: (context id, weight), sorted by context id.
    pub vecs: Vec<Vec<(u32, f32)>>,
}

impl Vectors {
    pub fn id(&self, w: &str) -> Option<u32> {
        self.index.get(w).copied()
    }
}

/// PPMI vectors from merged rows.
pub fn ppmi(rows: &HashMap<String, Row>, p: &Params) -> Vectors {
    let mut words: Vec<&String> = rows
        .iter()
        .filter(|(_, r)| r.count >= p.min_count)
        .map(|(w, _)| w)
        .collect();
    words.sort();
    let index: HashMap<String, u32> = words
        .iter()
        .enumerate()
        .map(|(i, w)| ((*w).clone(), i as u32))
        .collect();
    // Marginals over the vocabulary (the matrix is symmetric: a row sum is a column sum).
    let sums: Vec<f64> = words
        .iter()
        .map(|w| {
            rows[*w]
                .contexts
                .iter()
                .filter(|(c, _)| index.contains_key(*c))
                .map(|(_, n)| *n as f64)
                .sum()
        })
        .collect();
    let total: f64 = sums.iter().sum();
    let smoothed: Vec<f64> = sums.iter().map(|s| s.powf(p.alpha)).collect();
    let smoothed_total: f64 = smoothed.iter().sum();
    let mut vecs = Vec::with_capacity(words.len());
    for (i, w) in words.iter().enumerate() {
        let mut v: Vec<(u32, f32)> = rows[*w]
            .contexts
            .iter()
            .filter_map(|(c, n)| {
                let j = *index.get(c)? as usize;
                let pwc = *n as f64 / total;
                let pw = sums[i] / total;
                let pc = smoothed[j] / smoothed_total;
                let pmi = (pwc / (pw * pc)).ln();
                (pmi > 0.0).then_some((j as u32, pmi as f32))
            })
            .collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(p.features_max);
        let norm = v.iter().map(|(_, x)| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|(_, x)| *x /= norm);
        }
        v.sort_by_key(|(c, _)| *c);
        vecs.push(v);
    }
    Vectors {
        counts: words.iter().map(|w| rows[*w].count).collect(),
        words: words.into_iter().cloned().collect(),
        index,
        vecs,
    }
}

/// The cosine of two unit vectors sorted by context.
pub fn cosine(a: &[(u32, f32)], b: &[(u32, f32)]) -> f32 {
    let (mut i, mut j, mut dot) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                dot += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    dot
}

/// The contexts two vectors share most (for evidence), strongest first.
pub fn shared_contexts(v: &Vectors, a: u32, b: u32, n: usize) -> Vec<&str> {
    let (va, vb) = (&v.vecs[a as usize], &v.vecs[b as usize]);
    let mut shared: Vec<(u32, f32)> = va
        .iter()
        .filter_map(|(c, x)| {
            let y = vb
                .binary_search_by_key(c, |(k, _)| *k)
                .ok()
                .map(|i| vb[i].1)?;
            Some((*c, x * y))
        })
        .collect();
    shared.sort_by(|x, y| y.1.total_cmp(&x.1));
    shared
        .into_iter()
        .take(n)
        .map(|(c, _)| v.words[c as usize].as_str())
        .collect()
}

/// Context → the words whose vectors have it, with the weight.
pub fn postings(v: &Vectors) -> Vec<Vec<(u32, f32)>> {
    let mut post: Vec<Vec<(u32, f32)>> = vec![Vec::new(); v.words.len()];
    for (w, vec) in v.vecs.iter().enumerate() {
        for &(c, x) in vec {
            post[c as usize].push((w as u32, x));
        }
    }
    post
}

/// The `n` words nearest to `w` by cosine (not `w` itself), best first.
pub fn nearest(
    v: &Vectors,
    post: &[Vec<(u32, f32)>],
    w: u32,
    n: usize,
    postings_max: usize,
) -> Vec<(u32, f32)> {
    let mut acc: HashMap<u32, f32> = HashMap::new();
    for &(c, x) in &v.vecs[w as usize] {
        let list = &post[c as usize];
        if list.len() > postings_max {
            continue;
        }
        for &(o, y) in list {
            if o != w {
                *acc.entry(o).or_default() += x * y;
            }
        }
    }
    let mut best: Vec<(u32, f32)> = acc.into_iter().collect();
    best.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    best.truncate(n);
    best
}

/// A neighbour as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Neighbour {
    pub word: String,
    pub score: f64,
    pub cosine: f64,
    /// Pattern matches naming the pair.
    pub patterns: u64,
    /// Sentences that name the pair, or the contexts the two share.
    pub evidence: Vec<String>,
}

/// A word's neighbours by the combined score, best first: its distributional candidates and
/// its pattern partners.
pub fn neighbours(
    v: &Vectors,
    post: &[Vec<(u32, f32)>],
    row: &Row,
    w: u32,
    p: &Params,
) -> Vec<Neighbour> {
    let mut out: HashMap<String, Neighbour> = HashMap::new();
    for (o, cos) in nearest(v, post, w, p.candidates, p.postings_max) {
        let shared = shared_contexts(v, w, o, 3);
        out.insert(
            v.words[o as usize].clone(),
            Neighbour {
                word: v.words[o as usize].clone(),
                score: f64::from(cos),
                cosine: f64::from(cos),
                patterns: 0,
                evidence: vec![format!("shared contexts: {}", shared.join(", "))],
            },
        );
    }
    for (other, (n, evidence)) in &row.patterns {
        if other == &v.words[w as usize] {
            continue;
        }
        let cos = v
            .id(other)
            .map(|o| f64::from(cosine(&v.vecs[w as usize], &v.vecs[o as usize])))
            .unwrap_or(0.0);
        let e = out.entry(other.clone()).or_insert_with(|| Neighbour {
            word: other.clone(),
            score: cos,
            cosine: cos,
            patterns: 0,
            evidence: Vec::new(),
        });
        e.patterns = *n;
        e.score = cos + p.pattern_weight * (1.0 + *n as f64).ln();
        e.evidence = evidence.clone();
    }
    let mut list: Vec<Neighbour> = out.into_values().collect();
    list.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.word.cmp(&b.word)));
    list.truncate(p.k);
    list
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, &str, u64)]) -> HashMap<String, Row> {
        let mut rows: HashMap<String, Row> = HashMap::new();
        for (a, b, n) in pairs {
            for (x, y) in [(a, b), (b, a)] {
                let r = rows.entry(x.to_string()).or_default();
                r.count += n;
                *r.contexts.entry(y.to_string()).or_default() += n;
            }
        }
        rows
    }

    #[test]
    fn words_in_the_same_contexts_are_near_and_others_far() {
        let r = rows(&[
            ("car", "drive", 10),
            ("car", "road", 8),
            ("car", "wheel", 6),
            ("automobile", "drive", 9),
            ("automobile", "road", 7),
            ("automobile", "wheel", 5),
            ("banana", "eat", 10),
            ("banana", "yellow", 8),
            ("apple", "eat", 9),
            ("apple", "tree", 8),
            ("drive", "fast", 3),
        ]);
        let p = Params {
            min_count: 1,
            ..Params::default()
        };
        let v = ppmi(&r, &p);
        let post = postings(&v);
        let car = v.id("car").unwrap();
        let near = nearest(&v, &post, car, 3, p.postings_max);
        assert_eq!(v.words[near[0].0 as usize], "automobile");
        let norm: f32 = v.vecs[car as usize].iter().map(|(_, x)| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4);
        let banana = v.id("banana").unwrap();
        assert_eq!(cosine(&v.vecs[car as usize], &v.vecs[banana as usize]), 0.0);
        let c = cosine(
            &v.vecs[car as usize],
            &v.vecs[v.id("automobile").unwrap() as usize],
        );
        assert!(c > 0.8, "{c}");
        assert_eq!(
            shared_contexts(&v, car, v.id("automobile").unwrap(), 1).len(),
            1
        );
    }

    #[test]
    fn a_pattern_pair_ranks_above_a_pair_that_only_shares_contexts() {
        let mut r = rows(&[
            ("fool", "silly", 5),
            ("fool", "person", 5),
            ("fool", "jester", 4),
            ("idiot", "silly", 5),
            ("idiot", "crowd", 6),
            ("idiot", "shout", 4),
            ("simpleton", "silly", 2),
            ("simpleton", "creature", 3),
        ]);
        r.get_mut("fool")
            .unwrap()
            .patterns
            .insert("simpleton".into(), (4, vec!["A fool or simpleton.".into()]));
        let p = Params {
            min_count: 1,
            ..Params::default()
        };
        let v = ppmi(&r, &p);
        let post = postings(&v);
        let fool = v.id("fool").unwrap();
        let n = neighbours(&v, &post, &r["fool"], fool, &p);
        assert_eq!(n[0].word, "simpleton", "{n:?}");
        assert_eq!(n[0].evidence, vec!["A fool or simpleton."]);
        assert_eq!(n[0].patterns, 4);
        assert!(n
            .iter()
            .any(|x| x.word == "idiot" && x.evidence[0].starts_with("shared contexts")));
    }
}
