//! The spelling evaluation: real misspellings with their corrections, and how often a speller
//! puts the right word first (and in its first five).
//!
//! The list comes from codespell's dictionary (Debian's `codespell`, installed by
//! `scripts/install-dictionary-data.sh`): misspellings people really made, in code comments,
//! documentation and Wikipedia (codespell began from Wikipedia's list of common
//! misspellings), each with its correction (`recieve->receive`). Kept: one lowercase word to
//! one lowercase word (no alternatives), a correction both spellers know and a misspelling
//! that is not itself a word. Pure: the caller reads the file and supplies what is a word.

/// A misspelling and the word meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub typed: String,
    pub meant: String,
}

/// Parses codespell's `typo->correction` lines, keeping the pairs a fair test can use (see
/// the module documentation). `known(word)` says whether the dictionary has the word.
pub fn codespell_pairs(text: &str, known: impl Fn(&str) -> bool) -> Vec<Pair> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let Some((typed, meant)) = line.split_once("->") else {
            continue;
        };
        let (typed, meant) = (typed.trim(), meant.trim());
        let plain = |w: &str| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase());
        if !plain(typed) || !plain(meant) || typed.len() < 3 {
            continue; // alternatives (`a, b,`), a reason after a comma, capitals, digits
        }
        if known(typed) || !known(meant) {
            continue;
        }
        pairs.push(Pair {
            typed: typed.to_string(),
            meant: meant.to_string(),
        });
    }
    pairs
}

/// Right-first and right-in-five counts over a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Score {
    pub pairs: usize,
    pub first: usize,
    pub top5: usize,
}

impl Score {
    pub fn add(&mut self, meant: &str, suggestions: &[String]) {
        self.pairs += 1;
        if suggestions
            .first()
            .is_some_and(|s| s.eq_ignore_ascii_case(meant))
        {
            self.first += 1;
        }
        if suggestions
            .iter()
            .take(5)
            .any(|s| s.eq_ignore_ascii_case(meant))
        {
            self.top5 += 1;
        }
    }

    pub fn first_rate(&self) -> f64 {
        self.first as f64 / self.pairs.max(1) as f64
    }

    pub fn top5_rate(&self) -> f64 {
        self.top5 as f64 / self.pairs.max(1) as f64
    }
}

/// One line of `aspell -a`'s answers (the ispell pipe protocol): the suggestions for a word,
/// best first (none for `*`, a correct word, or `#`, a word without any).
pub fn aspell_suggestions(line: &str) -> Option<Vec<String>> {
    match line.as_bytes().first() {
        Some(b'*') | Some(b'-') | Some(b'+') | Some(b'#') => Some(Vec::new()),
        Some(b'&') => {
            let (_, list) = line.split_once(": ")?;
            Some(list.split(", ").map(|s| s.trim().to_string()).collect())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codespell_lines_become_fair_pairs() {
        let text = "recieve->receive\nteh->the\nabandonned->abandoned\nalot->a lot,\nacess->access, excess,\nAPI->api\nwere->where\nfo->of\n";
        let known = |w: &str| ["receive", "the", "abandoned", "were", "where", "of"].contains(&w);
        let pairs = codespell_pairs(text, known);
        let typed: Vec<&str> = pairs.iter().map(|p| p.typed.as_str()).collect();
        // `were` is a word; `fo` is too short; alternatives and capitals are left out.
        assert_eq!(typed, ["recieve", "teh", "abandonned"]);
    }

    #[test]
    fn scores_count_first_and_top_five() {
        let mut s = Score::default();
        s.add("receive", &["receive".into(), "relieve".into()]);
        s.add("the", &["tea".into(), "the".into()]);
        s.add("weird", &["wired".into()]);
        assert_eq!((s.pairs, s.first, s.top5), (3, 1, 2));
        assert!((s.first_rate() - 1.0 / 3.0).abs() < 1e-9);
    }

    #[test]
    fn aspell_answers_parse() {
        let line = "& recieve 15 0: receive, receiver, relieve";
        assert_eq!(
            aspell_suggestions(line).unwrap(),
            ["receive", "receiver", "relieve"]
        );
        assert_eq!(aspell_suggestions("*").unwrap(), Vec::<String>::new());
        assert_eq!(
            aspell_suggestions("# xqzt 0").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(aspell_suggestions(""), None);
    }
}
