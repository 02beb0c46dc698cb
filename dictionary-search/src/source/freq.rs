//! Word frequencies for ranking: the TSV `scripts/install-dictionary-data.sh` exports from
//! PyPI's `wordfreq` (`word<TAB>zipf`, `#` comments). Zipf frequency is log10 of a word's
//! occurrences per billion words: 7.7 for "the", 1.7 for "acrophobia".

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Result, SourceError};

/// The highest Zipf frequency a word can have (a sanity bound: "the" is 7.73).
pub const ZIPF_MAX: f32 = 9.0;

pub fn parse(text: &str, path: &Path) -> Result<HashMap<String, f32>> {
    let mut freq = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let err = |what: String| SourceError::parse(path, n + 1, what);
        let (word, zipf) = line
            .split_once('\t')
            .ok_or_else(|| err("expected word<TAB>zipf".into()))?;
        let zipf: f32 = zipf
            .trim()
            .parse()
            .map_err(|_| err(format!("{zipf:?} is not a number")))?;
        if !(0.0..=ZIPF_MAX).contains(&zipf) {
            return Err(err(format!("zipf {zipf} is outside 0 to {ZIPF_MAX}")));
        }
        freq.insert(word.to_lowercase(), zipf);
    }
    Ok(freq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_their_frequencies() {
        let text = "# wordfreq 3.1.1\nthe\t7.73\nacrophobia\t1.68\n";
        let f = parse(text, Path::new("f.tsv")).unwrap();
        assert_eq!(f["the"], 7.73);
        assert_eq!(f["acrophobia"], 1.68);
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let err = parse("the\t7.73\nthe 7.73\n", Path::new("f.tsv")).unwrap_err();
        assert!(
            err.to_string().contains("f.tsv:2: expected word<TAB>zipf"),
            "{err}"
        );
        let err = parse("the\tlots\n", Path::new("f.tsv")).unwrap_err();
        assert!(
            err.to_string().contains("\"lots\" is not a number"),
            "{err}"
        );
        let err = parse("the\t70\n", Path::new("f.tsv")).unwrap_err();
        assert!(err.to_string().contains("outside"), "{err}");
    }
}
