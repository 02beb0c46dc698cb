//! From a page's prose to what the thesaurus counts: sentences, lowercase tokens, stop words,
//! and the lexical patterns that name synonyms outright. Pure.
//!
//! Patterns (each gives a pair and the sentence as evidence):
//! - `X or Y`, between two content words (`a simpleton or fool`);
//! - `X, also called Y`, `also known as Y`, `called also Y`, `otherwise called Y`: the
//!   sentence's first content word and Y;
//! - one-word definitions on a dictionary page: a sense that is one word, or a list of single
//!   words separated by `;` (`4. A silly creature; a simpleton.`), pairs it with the
//!   page's headword.

/// English stop words (NLTK's list, which the PPMI literature uses), sorted for search.
pub const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "ain",
    "all",
    "also",
    "am",
    "an",
    "and",
    "any",
    "are",
    "aren",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "couldn",
    "d",
    "did",
    "didn",
    "do",
    "does",
    "doesn",
    "doing",
    "don",
    "down",
    "during",
    "each",
    "etc",
    "few",
    "for",
    "from",
    "further",
    "had",
    "hadn",
    "has",
    "hasn",
    "have",
    "haven",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "isn",
    "it",
    "its",
    "itself",
    "just",
    "ll",
    "m",
    "ma",
    "may",
    "me",
    "might",
    "more",
    "most",
    "must",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "o",
    "of",
    "off",
    "on",
    "once",
    "one",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "re",
    "s",
    "same",
    "shall",
    "she",
    "should",
    "so",
    "some",
    "such",
    "t",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "thus",
    "to",
    "too",
    "under",
    "until",
    "up",
    "upon",
    "us",
    "ve",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "y",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

pub fn is_stop(word: &str) -> bool {
    STOP_WORDS.binary_search(&word).is_ok()
}

/// A content word: not a stop word, two letters or more, letters only.
pub fn is_content(word: &str) -> bool {
    word.chars().count() >= 2 && !is_stop(word) && word.chars().all(char::is_alphabetic)
}

/// The most bytes of a sentence kept as evidence.
pub const EVIDENCE_BYTES_MAX: usize = 240;

/// Sentences: paragraphs (lines) split after `.`, `!` or `?` followed by a space.
pub fn sentences(text: &str) -> impl Iterator<Item = &str> {
    text.lines().flat_map(|para| {
        let mut out = Vec::new();
        let mut start = 0;
        let b = para.as_bytes();
        for i in 0..b.len() {
            if matches!(b[i], b'.' | b'!' | b'?') && b.get(i + 1) == Some(&b' ') {
                // Not after a single capital ("J. Smith") or a number ("1. ").
                let prev = para[start..i].split_whitespace().last().unwrap_or("");
                let initial = prev.chars().count() == 1 || prev.chars().all(|c| c.is_ascii_digit());
                if !initial {
                    out.push(para[start..=i].trim());
                    start = i + 1;
                }
            }
        }
        out.push(para[start..].trim());
        out.into_iter().filter(|s| !s.is_empty())
    })
}

/// Lowercase tokens: runs of letters; anything else (space, punctuation, an apostrophe, a
/// hyphen) separates them, so `web-footed` is `web` and `footed`.
pub fn tokens(sentence: &str) -> Vec<String> {
    sentence
        .split(|c: char| !c.is_alphabetic())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// A pair a pattern found, with its sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub a: String,
    pub b: String,
    pub evidence: String,
}

fn evidence(sentence: &str) -> String {
    let mut s = sentence.to_string();
    if s.len() > EVIDENCE_BYTES_MAX {
        let mut at = EVIDENCE_BYTES_MAX;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push('…');
    }
    s
}

/// The pairs the patterns find in one sentence; `headword` is the page's, if it is a
/// dictionary page. `lemma` maps a token to its lemma.
pub fn patterns(
    sentence: &str,
    headword: Option<&str>,
    lemma: &dyn Fn(&str) -> String,
) -> Vec<Found> {
    let toks = tokens(sentence);
    let mut out = Vec::new();
    let mut add = |a: &str, b: &str| {
        if is_content(a) && is_content(b) {
            let (a, b) = (lemma(a), lemma(b));
            if a != b {
                out.push(Found {
                    a,
                    b,
                    evidence: evidence(sentence),
                });
            }
        }
    };
    // X or Y: three words in a row with nothing between them ("a hacker (or, sometimes"
    // is not one), and not "either X or Y", whose parts are alternatives, not synonyms.
    let raw: Vec<&str> = sentence.split_whitespace().collect();
    let bare = |w: &str| w.chars().all(char::is_alphabetic).then(|| w.to_lowercase());
    for i in 1..raw.len().saturating_sub(1) {
        if raw[i] != "or" || i >= 2 && raw[i - 2].eq_ignore_ascii_case("either") {
            continue;
        }
        let y = raw[i + 1].trim_end_matches(|c: char| ".,;:!?)".contains(c));
        if let (Some(x), Some(y)) = (bare(raw[i - 1]), bare(y)) {
            add(&x, &y);
        }
    }
    // X, also called Y.
    let lower = sentence.to_lowercase();
    for cue in [
        "also called ",
        "also known as ",
        "called also ",
        "otherwise called ",
    ] {
        if let Some(at) = lower.find(cue) {
            let y = tokens(&lower[at + cue.len()..]);
            let x = toks.iter().find(|t| is_content(t));
            if let (Some(x), Some(y)) = (
                x,
                y.iter().find(|t| !matches!(t.as_str(), "a" | "an" | "the")),
            ) {
                add(x, y);
            }
        }
    }
    // One-word definitions on a dictionary page.
    if let Some(h) = headword {
        let body = sentence
            .trim_start_matches(|c: char| {
                c.is_ascii_digit() || c == '.' || c == ' ' || c == '(' || c == ')'
            })
            .trim_end_matches('.');
        let parts: Vec<&str> = body.split(';').map(str::trim).collect();
        if !parts.is_empty() && parts.len() <= 6 {
            let words: Vec<Option<String>> = parts
                .iter()
                .map(|p| {
                    let t = tokens(p);
                    let t: Vec<&String> = t
                        .iter()
                        .filter(|w| !matches!(w.as_str(), "a" | "an" | "the" | "to"))
                        .collect();
                    (t.len() == 1 && p.split_whitespace().count() <= 3).then(|| t[0].clone())
                })
                .collect();
            if words.iter().any(Option::is_some) && parts.len() == words.len() {
                for w in words.into_iter().flatten() {
                    add(h, &w);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn stop_words_are_sorted_and_found() {
        assert!(STOP_WORDS.windows(2).all(|w| w[0] < w[1]));
        assert!(is_stop("the") && !is_stop("goose"));
        assert!(is_content("goose") && !is_content("x") && !is_content("the"));
    }

    #[test]
    fn sentences_split_after_stops_but_not_initials_or_numbers() {
        let s: Vec<&str> =
            sentences("1. A silly creature; a simpleton. Said by J. Smith! Why?\nNext line")
                .collect();
        assert_eq!(
            s,
            vec![
                "1. A silly creature; a simpleton.",
                "Said by J. Smith!",
                "Why?",
                "Next line"
            ]
        );
        assert_eq!(
            tokens("Web-footed, GOOSE's"),
            vec!["web", "footed", "goose", "s"]
        );
    }

    #[test]
    fn or_also_called_and_one_word_definitions() {
        let pairs = |s: &str, h: Option<&str>| -> Vec<(String, String)> {
            patterns(s, h, &id)
                .into_iter()
                .map(|f| (f.a, f.b))
                .collect()
        };
        assert_eq!(
            pairs("A silly person, a fool or simpleton.", None),
            vec![(id("fool"), id("simpleton"))]
        );
        assert_eq!(pairs("Choose either tea or coffee.", None), vec![]);
        assert_eq!(
            pairs("Anyone who is not a hacker (or, sometimes, a user).", None),
            vec![]
        );
        assert_eq!(pairs("Data, or programs.", None), vec![]);
        assert_eq!(
            pairs(
                "Goose barnacle, any pedunculated barnacle; -- called also duck barnacle.",
                None
            ),
            vec![(id("goose"), id("duck"))]
        );
        assert_eq!(
            pairs("4. A silly creature; a simpleton.", Some("goose")),
            vec![(id("goose"), id("simpleton"))]
        );
        assert_eq!(
            pairs("2. Dead; inanimate; torpid.", Some("lifeless")).len(),
            3
        );
        assert_eq!(
            pairs("Any large web-footed bird of the subfamily.", Some("goose")),
            vec![]
        );
        let ev = &patterns("A fool or simpleton.", None, &id)[0].evidence;
        assert_eq!(ev, "A fool or simpleton.");
    }
}
