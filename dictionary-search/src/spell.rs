//! "Did you mean": corrections for a misspelled word.
//!
//! Candidates are the headwords and inflected forms within Damerau–Levenshtein distance 1,
//! and within 2 among those with the typed word's first letter (for words of more than four
//! letters), found by running Levenshtein automata (with transpositions) over an fst of the
//! words, so the dictionary is never scanned; and the words that sound like it. Each candidate is then scored the way
//! people actually misspell, not by raw distance:
//!
//! - a weighted edit distance in which the edits people make cost less: a key next to the
//!   intended one on a QWERTY keyboard, a vowel for another vowel, a doubled or undoubled
//!   letter (`ocurred`), a swapped pair, the common confusions (`c`/`s`, `i`/`y`, …);
//! - sound: the typed word's consonant skeleton (spelled out by rules: `ph` is F, `c` before
//!   `e` is S, …) against the candidate's, taken from its CMUdict pronunciation where it has
//!   one — so `fonetik` finds `phonetic`;
//! - frequency: a common word is the likelier intent.
//!
//! Pure: the [`Speller`] is built once per dataset from the entries.

use fst::{Automaton, IntoStreamer, Streamer};
use levenshtein_automata::LevenshteinAutomatonBuilder;

use crate::entry::Entry;
use crate::index::{Index, QueryError, QUERY_CHARS_MAX};

/// Candidates scored at most (the automaton's matches past it are not looked at).
pub const SPELL_CANDIDATES_MAX: usize = 2_000;
/// Words this short are corrected within distance 1 only (distance 2 matches half of them).
pub const SHORT_WORD_CHARS: usize = 4;

/// The score's weights (lower scores are better).
/// Tuned on every fifth pair of the evaluation list (`dictionary-search eval-spelling --every
/// 5`): real misspellings are mostly slips of the hand, so sound counts for less than the
/// kind of edit, and frequency breaks near-ties.
const FREQUENCY_WEIGHT: f32 = 0.25;
const SOUND_BONUS: f32 = 0.2;

/// Words from the sound index considered, per sound, most frequent first.
pub const SOUND_CANDIDATES_MAX: usize = 64;
/// The most a sound-alike candidate may differ in spelling (weighted distance).
const SOUND_DISTANCE_MAX: f32 = 3.5;

/// One word the speller can propose: a headword, or an inflected form of one (`occurred`).
struct Word {
    key: String,
    display: String,
    frequency: f32,
    sound: String,
}

/// The speller's lexicon (headwords and their forms, in an fst of its own), the automata
/// builders (costly to make, cheap to use), and the words by sound.
pub struct Speller {
    words: Vec<Word>,
    /// Every word (for [`Index::knows`]).
    keys: fst::Map<Vec<u8>>,
    /// Single words and phrases apart: a word is corrected to a word, a phrase to a phrase,
    /// and the automaton walks only the one it needs.
    single: fst::Map<Vec<u8>>,
    phrases: fst::Map<Vec<u8>>,
    /// The single words people use (a frequency above 0): two edits away, a word nobody
    /// writes is almost never the one meant, and this fst is a third the size.
    common: fst::Map<Vec<u8>>,
    by_sound: std::collections::HashMap<String, Vec<u32>>,
    within_1: LevenshteinAutomatonBuilder,
    within_2: LevenshteinAutomatonBuilder,
}

impl Speller {
    pub fn new(entries: &[Entry]) -> Speller {
        let mut words: Vec<Word> = Vec::with_capacity(entries.len() * 3 / 2);
        for e in entries {
            let key = Entry::key_of(&e.word);
            words.push(Word {
                sound: match e.pronunciations.first() {
                    Some(p) => sound_of_pronunciation(p),
                    None => sound_of_spelling(&key),
                },
                key,
                display: e.word.clone(),
                frequency: e.frequency,
            });
            for (i, form) in e.forms.iter().enumerate() {
                words.push(Word {
                    key: form.clone(),
                    display: form.clone(),
                    frequency: e.form_frequencies.get(i).copied().unwrap_or(0.0),
                    sound: sound_of_spelling(form),
                });
            }
        }
        // A headword and a form spelt alike: one word, the headword's (it came first).
        words.sort_by(|a, b| a.key.cmp(&b.key));
        words.dedup_by(|later, first| {
            if later.key == first.key {
                first.frequency = first.frequency.max(later.frequency);
                true
            } else {
                false
            }
        });
        let keys = fst::Map::from_iter(words.iter().enumerate().map(|(i, w)| (&w.key, i as u64)))
            .expect("sorted and unique");
        let part = |phrase: bool| {
            let chosen = words
                .iter()
                .enumerate()
                .filter(|(_, w)| w.key.contains(' ') == phrase);
            fst::Map::from_iter(chosen.map(|(i, w)| (&w.key, i as u64))).expect("sorted and unique")
        };
        let (single, phrases) = (part(false), part(true));
        let common = fst::Map::from_iter(
            words
                .iter()
                .enumerate()
                .filter(|(_, w)| !w.key.contains(' ') && w.frequency > 0.0)
                .map(|(i, w)| (&w.key, i as u64)),
        )
        .expect("sorted and unique");
        let mut by_sound: std::collections::HashMap<String, Vec<u32>> = Default::default();
        for (i, w) in words.iter().enumerate() {
            if !w.key.contains(' ') {
                by_sound.entry(w.sound.clone()).or_default().push(i as u32);
            }
        }
        for ids in by_sound.values_mut() {
            ids.sort_by(|a, b| {
                words[*b as usize]
                    .frequency
                    .total_cmp(&words[*a as usize].frequency)
            });
            ids.truncate(SOUND_CANDIDATES_MAX);
        }
        Speller {
            words,
            keys,
            single,
            phrases,
            common,
            by_sound,
            within_1: LevenshteinAutomatonBuilder::new(1, true),
            within_2: LevenshteinAutomatonBuilder::new(2, true),
        }
    }

    fn score(&self, typed: &str, typed_sound: &str, id: u32) -> f32 {
        let w = &self.words[id as usize];
        let mut score = weighted_distance(typed, &w.key);
        // The same consonant skeleton, or one a single edit away.
        if w.sound == typed_sound || weighted_distance(&w.sound, typed_sound) <= 1.0 {
            score -= SOUND_BONUS;
        }
        score - FREQUENCY_WEIGHT * w.frequency
    }
}

/// A correction and its score (lower is better).
#[derive(Debug, Clone, PartialEq)]
pub struct Correction {
    pub word: String,
    pub score: f32,
}

impl Index {
    /// Whether `word` (lowercase) is a headword or an inflected form of one.
    pub fn knows(&self, word: &str) -> bool {
        self.spelling.keys.contains_key(word)
    }

    /// Corrections of `word`, best first: headwords and their inflected forms within a small
    /// edit distance, and words that sound alike. A correctly spelt word is its own first.
    pub fn spell(&self, word: &str, limit: usize) -> Result<Vec<Correction>, QueryError> {
        let typed = word.trim().to_lowercase();
        if typed.is_empty() {
            return Err(QueryError::Empty);
        }
        let chars = typed.chars().count();
        if chars > QUERY_CHARS_MAX {
            return Err(QueryError::TooLong {
                chars,
                limit: QUERY_CHARS_MAX,
            });
        }
        let speller = &self.spelling;
        let typed_sound = sound_of_spelling(&typed);
        let mut candidates: Vec<u32> = Vec::new();
        let map = if typed.contains(' ') {
            &speller.phrases
        } else {
            &speller.single
        };
        // Everything within distance 1, and within 2 where the first letter is right (few
        // people get the first letter wrong as well as two others). Edits that keep the first
        // letter are found by an automaton walking that letter's branch of the fst alone; the
        // edits that change it (a first letter replaced, added, dropped, or swapped with the
        // second) are spelt out and looked up, which is cheaper than walking every branch.
        let first: String = typed.chars().take(1).collect();
        let rest = &typed[first.len()..];
        let mut variants: Vec<String> = Vec::with_capacity(56);
        for c in 'a'..='z' {
            variants.push(format!("{c}{rest}"));
            variants.push(format!("{c}{typed}"));
        }
        variants.push(rest.to_string());
        let mut second = rest.chars();
        if let Some(s) = second.next() {
            variants.push(format!("{s}{first}{}", second.as_str()));
        }
        for v in &variants {
            if let Some(id) = map.get(v) {
                candidates.push(id as u32);
            }
        }
        let mut collect = |stream: &mut dyn FnMut() -> Option<u64>| {
            while let Some(id) = stream() {
                if candidates.len() == SPELL_CANDIDATES_MAX {
                    break;
                }
                candidates.push(id as u32);
            }
        };
        let (builder, branch_map) = if chars <= SHORT_WORD_CHARS {
            (&speller.within_1, map)
        } else if typed.contains(' ') {
            (&speller.within_2, map)
        } else {
            (&speller.within_2, &speller.common)
        };
        let dfa = builder.build_dfa(&typed);
        let branch = (&dfa).intersection(fst::automaton::Str::new(&first).starts_with());
        let mut stream = branch_map.search(branch).into_stream();
        collect(&mut || stream.next().map(|(_, id)| id));
        if chars > SHORT_WORD_CHARS && !typed.contains(' ') {
            // One edit away but rare: the common words' fst above does not hold it.
            let near = speller.within_1.build_dfa(&typed);
            let branch = (&near).intersection(fst::automaton::Str::new(&first).starts_with());
            let mut stream = map.search(branch).into_stream();
            collect(&mut || stream.next().map(|(_, id)| id));
        }
        if chars > SHORT_WORD_CHARS {
            for id in speller
                .by_sound
                .get(&typed_sound)
                .map_or(&[][..], |v| &v[..])
            {
                let w = &speller.words[*id as usize];
                if weighted_distance(&typed, &w.key) <= SOUND_DISTANCE_MAX {
                    candidates.push(*id);
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let mut scored: Vec<(f32, u32)> = candidates
            .into_iter()
            .map(|id| (speller.score(&typed, &typed_sound, id), id))
            .collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        Ok(scored
            .into_iter()
            .take(limit)
            .map(|(score, id)| Correction {
                word: speller.words[id as usize].display.clone(),
                score,
            })
            .collect())
    }
}

/// QWERTY rows: letters next to each other on a row, or above and below, are neighbours.
const ROWS: [&str; 3] = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];

fn key_position(c: char) -> Option<(i32, i32)> {
    ROWS.iter().enumerate().find_map(|(row, keys)| {
        keys.find(c)
            .map(|col| (row as i32, col as i32 * 2 + row as i32))
    })
}

fn adjacent(a: char, b: char) -> bool {
    match (key_position(a), key_position(b)) {
        (Some((ra, ca)), Some((rb, cb))) => (ra - rb).abs() <= 1 && (ca - cb).abs() <= 2,
        _ => false,
    }
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u' | 'y')
}

/// What substituting `b` for `a` costs.
fn substitution(a: char, b: char) -> f32 {
    const CONFUSED: [(char, char); 8] = [
        ('c', 's'),
        ('c', 'k'),
        ('s', 'z'),
        ('i', 'y'),
        ('g', 'j'),
        ('f', 'v'),
        ('m', 'n'),
        ('t', 'd'),
    ];
    if a == b {
        0.0
    } else if is_vowel(a) && is_vowel(b) || CONFUSED.contains(&(a, b)) || CONFUSED.contains(&(b, a))
    {
        0.6
    } else if adjacent(a, b) {
        0.65
    } else {
        1.0
    }
}

/// What it costs that the typed word lacks `c` (between `before` and `after` in the word
/// meant): leaving a letter out is the commonest slip, a doubled one the likeliest.
fn omission(c: char, before: Option<char>, after: Option<char>) -> f32 {
    if before == Some(c) || after == Some(c) {
        0.3
    } else if is_vowel(c) {
        0.5
    } else {
        0.6
    }
}

/// What it costs that the typed word has an extra `c` (after `before`, before `after`).
fn intrusion(c: char, before: Option<char>, after: Option<char>) -> f32 {
    if before == Some(c) || after == Some(c) {
        0.35
    } else if is_vowel(c) {
        0.6
    } else {
        0.8
    }
}

/// Letters that spell the same sound, and what writing one for the other costs.
const SAME_SOUND: [(&str, &str, f32); 7] = [
    ("f", "ph", 0.3),
    ("k", "ck", 0.3),
    ("k", "ch", 0.5),
    ("s", "sc", 0.4),
    ("j", "dg", 0.4),
    ("sh", "ti", 0.5),
    ("w", "wh", 0.4),
];

/// The longest word the distance looks at (characters past it are ignored).
const DISTANCE_CHARS_MAX: usize = 72;

/// The weighted optimal-string-alignment distance from `typed` to `word`: omissions,
/// intrusions, substitutions, swaps and one-sound spellings, each costing what it does in
/// real misspellings (see the functions above).
pub fn weighted_distance(typed: &str, word: &str) -> f32 {
    let mut a = ['\0'; DISTANCE_CHARS_MAX];
    let mut b = ['\0'; DISTANCE_CHARS_MAX];
    let n = fill(&mut a, typed);
    let m = fill(&mut b, word);
    let (a, b) = (&a[..n], &b[..m]);
    let w = m + 1;
    let mut d = [0f32; (DISTANCE_CHARS_MAX + 1) * (DISTANCE_CHARS_MAX + 1)];
    let at = |i: usize, j: usize| i * w + j;
    for i in 1..=n {
        d[at(i, 0)] = d[at(i - 1, 0)]
            + intrusion(a[i - 1], i.checked_sub(2).map(|k| a[k]), a.get(i).copied());
    }
    for j in 1..=m {
        d[at(0, j)] =
            d[at(0, j - 1)] + omission(b[j - 1], j.checked_sub(2).map(|k| b[k]), b.get(j).copied());
    }
    for i in 1..=n {
        for j in 1..=m {
            let (x, y) = (a[i - 1], b[j - 1]);
            let intrude = d[at(i - 1, j)] + intrusion(x, i.checked_sub(2).map(|k| a[k]), Some(y));
            let omit = d[at(i, j - 1)] + omission(y, j.checked_sub(2).map(|k| b[k]), Some(x));
            let mut best = intrude
                .min(omit)
                .min(d[at(i - 1, j - 1)] + substitution(x, y));
            if i > 1 && j > 1 && x == b[j - 2] && a[i - 2] == y {
                best = best.min(d[at(i - 2, j - 2)] + 0.5);
            }
            // Spellings of one sound (`f` for `ph`, `k` for `ck`, and back): only where a
            // rule's last letters are here.
            if matches!(x, 'f' | 'h' | 'k' | 's' | 'c' | 'j' | 'g' | 'i' | 'w')
                || matches!(y, 'f' | 'h' | 'k' | 's' | 'c' | 'j' | 'g' | 'i' | 'w')
            {
                for (p, q, cost) in SAME_SOUND {
                    for (p, q) in [(p, q), (q, p)] {
                        let (lp, lq) = (p.len(), q.len());
                        if i >= lp
                            && j >= lq
                            && a[i - lp..i].iter().copied().eq(p.chars())
                            && b[j - lq..j].iter().copied().eq(q.chars())
                        {
                            best = best.min(d[at(i - lp, j - lq)] + cost);
                        }
                    }
                }
            }
            d[at(i, j)] = best;
        }
    }
    d[at(n, m)]
}

/// Copies a word's characters into `out`; returns how many (at most its length).
fn fill(out: &mut [char; DISTANCE_CHARS_MAX], word: &str) -> usize {
    let mut n = 0;
    for c in word.chars().take(DISTANCE_CHARS_MAX) {
        out[n] = c;
        n += 1;
    }
    n
}

/// A word's consonant skeleton from its spelling, in the classes [`sound_of_pronunciation`]
/// uses (voiced and voiceless merged: P T K F 0 S X, and M N L R W Y H; a leading vowel is A).
pub fn sound_of_spelling(word: &str) -> String {
    let w: Vec<char> = word.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    let at = |i: usize| w.get(i).copied();
    let front = |i: usize| matches!(at(i), Some('e' | 'i' | 'y'));
    let mut out = String::new();
    let mut i = 0;
    // Silent first letters: knee, gnome, pneumonia, write, psychology.
    if matches!(
        (at(0), at(1)),
        (Some('k' | 'g' | 'p'), Some('n')) | (Some('w'), Some('r')) | (Some('p'), Some('s'))
    ) {
        i = 1;
    }
    if at(i).is_some_and(is_vowel) {
        out.push('A');
    }
    while i < w.len() {
        let c = w[i];
        let next = at(i + 1);
        let (class, skip) = match c {
            'a' | 'e' | 'i' | 'o' | 'u' => (None, 1),
            'y' => (
                if next.is_some_and(is_vowel) {
                    Some('Y')
                } else {
                    None
                },
                1,
            ),
            'b' | 'p' if next == Some('h') && c == 'p' => (Some('F'), 2),
            'b' | 'p' => (Some('P'), 1),
            'd' if next == Some('g') && front(i + 2) => (Some('X'), 2),
            'd' | 't' if c == 't' && next == Some('h') => (Some('0'), 2),
            't' if next == Some('i') && matches!(at(i + 2), Some('o' | 'a')) => (Some('X'), 1),
            't' if next == Some('c') && at(i + 2) == Some('h') => (Some('X'), 3),
            'd' | 't' => (Some('T'), 1),
            'c' if next == Some('h') => (Some('X'), 2),
            'c' if next == Some('k') => (Some('K'), 2),
            'c' if front(i + 1) => (Some('S'), 1),
            'c' | 'k' | 'q' => (Some('K'), 1),
            'g' if next == Some('h') => (if i == 0 { Some('K') } else { None }, 2),
            'g' if front(i + 1) => (Some('X'), 1),
            'g' => (Some('K'), 1),
            'f' | 'v' => (Some('F'), 1),
            's' if next == Some('h') => (Some('X'), 2),
            's' | 'z' => (Some('S'), 1),
            'x' => {
                out.push('K');
                (Some('S'), 1)
            }
            'j' => (Some('X'), 1),
            'h' => (
                if next.is_some_and(is_vowel) && !out.ends_with(['S', 'X', '0', 'F']) {
                    Some('H')
                } else {
                    None
                },
                1,
            ),
            'w' => (
                if next.is_some_and(is_vowel) {
                    Some('W')
                } else {
                    None
                },
                1,
            ),
            'm' => (Some('M'), 1),
            'n' => (Some('N'), 1),
            'l' => (Some('L'), 1),
            'r' => (Some('R'), 1),
            _ => (None, 1),
        };
        if let Some(class) = class {
            if !out.ends_with(class) {
                out.push(class);
            }
        }
        i += skip;
    }
    out
}

/// A pronunciation's consonant skeleton, in the classes of [`sound_of_spelling`].
pub fn sound_of_pronunciation(pronunciation: &str) -> String {
    let mut out = String::new();
    for (i, phone) in pronunciation.split(' ').enumerate() {
        let class = match phone.trim_end_matches(['0', '1', '2']) {
            "P" | "B" => Some('P'),
            "T" | "D" => Some('T'),
            "K" | "G" => Some('K'),
            "F" | "V" => Some('F'),
            "TH" | "DH" => Some('0'),
            "S" | "Z" => Some('S'),
            "SH" | "ZH" | "CH" | "JH" => Some('X'),
            "M" => Some('M'),
            "N" | "NG" => Some('N'),
            "L" => Some('L'),
            "R" => Some('R'),
            "W" => Some('W'),
            "Y" => Some('Y'),
            "HH" => Some('H'),
            "ER" => Some('R'),
            _ if i == 0 => Some('A'),
            _ => None,
        };
        if let Some(class) = class {
            if !out.ends_with(class) {
                out.push(class);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slips_people_make_cost_less_than_other_edits() {
        assert_eq!(weighted_distance("cat", "cat"), 0.0);
        // A doubled letter dropped, against another letter dropped.
        assert!(weighted_distance("ocurred", "occurred") < weighted_distance("ocurred", "scurred"));
        // A neighbouring key, against a far one.
        assert!(weighted_distance("cst", "cat") < weighted_distance("cpt", "cat"));
        // Swapped letters cost less than two substitutions.
        assert!(weighted_distance("teh", "the") < 1.0);
        assert!(weighted_distance("recieve", "receive") < 1.0);
        // One sound spelt another way.
        assert!(weighted_distance("fonetik", "phonetic") < weighted_distance("fonetik", "fanatic"));
    }

    #[test]
    fn a_first_letter_replaced_added_dropped_or_swapped_is_still_found() {
        let entry = |w: &str, f: f32| Entry {
            word: w.into(),
            frequency: f,
            senses: vec![crate::entry::Sense {
                pos: crate::entry::Pos::Noun,
                definition: "a thing".into(),
                examples: vec![],
                source: crate::entry::Source::WordNet,
            }],
            ..Entry::default()
        };
        let ix = Index::build(
            "v",
            vec![
                entry("house", 5.0),
                entry("horse", 4.5),
                entry("quiet", 4.0),
            ],
        );
        let first = |typed: &str| ix.spell(typed, 3).unwrap().first().map(|c| c.word.clone());
        for typed in ["bouse", "ohuse", "hhouse", "ouse", "housee", "hoiuse"] {
            assert_eq!(first(typed).as_deref(), Some("house"), "{typed}");
        }
        assert_eq!(
            first("qiuet").as_deref(),
            Some("quiet"),
            "two letters swapped"
        );
        assert_eq!(
            first("uqiet").as_deref(),
            Some("quiet"),
            "the first two swapped"
        );
        assert!(first("zzzzzzz").is_none());
    }

    #[test]
    fn spelling_and_pronunciation_meet_in_one_sound() {
        assert_eq!(
            sound_of_spelling("phonetic"),
            sound_of_pronunciation("F AH0 N EH1 T IH0 K")
        );
        assert_eq!(
            sound_of_spelling("fonetik"),
            sound_of_pronunciation("F AH0 N EH1 T IH0 K")
        );
        assert_eq!(
            sound_of_spelling("knight"),
            sound_of_pronunciation("N AY1 T")
        );
        assert_eq!(
            sound_of_spelling("city"),
            sound_of_pronunciation("S IH1 T IY0")
        );
        assert_eq!(
            sound_of_spelling("nation"),
            sound_of_pronunciation("N EY1 SH AH0 N")
        );
        assert_eq!(
            sound_of_spelling("judge"),
            sound_of_pronunciation("JH AH1 JH")
        );
    }
}
