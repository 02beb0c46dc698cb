//! Lemmas: from an inflected form to the headwords it is a form of, as WordNet's `morphy`
//! finds them: first the exception lists (`ran` → `run`, `geese` → `goose`, `better` →
//! `good`), then the detachment rules of each part of speech (`-ies` → `-y`, `-ing` → `-e`
//! or nothing, …), keeping a candidate only if it is a headword with that part of speech.
//! Pure: the caller supplies the lookups.

use crate::entry::Pos;

/// Morphy's suffix rules: (part of speech, ending, replacement). From WordNet's `morph.c`.
pub const RULES: &[(Pos, &str, &str)] = &[
    (Pos::Noun, "s", ""),
    (Pos::Noun, "ses", "s"),
    (Pos::Noun, "xes", "x"),
    (Pos::Noun, "zes", "z"),
    (Pos::Noun, "ches", "ch"),
    (Pos::Noun, "shes", "sh"),
    (Pos::Noun, "men", "man"),
    (Pos::Noun, "ies", "y"),
    (Pos::Verb, "s", ""),
    (Pos::Verb, "ies", "y"),
    (Pos::Verb, "es", "e"),
    (Pos::Verb, "es", ""),
    (Pos::Verb, "ed", "e"),
    (Pos::Verb, "ed", ""),
    (Pos::Verb, "ing", "e"),
    (Pos::Verb, "ing", ""),
    (Pos::Adjective, "er", ""),
    (Pos::Adjective, "est", ""),
    (Pos::Adjective, "er", "e"),
    (Pos::Adjective, "est", "e"),
];

/// The headwords `word` (lowercase) is an inflected form of, each once, exceptions first.
/// `exceptions(form)` gives the bases an exception list names; `has(base, pos)` says whether
/// `base` is a headword with part of speech `pos`. The word itself is not included.
pub fn lemmas<'a>(
    word: &str,
    exceptions: impl Fn(&str) -> &'a [String],
    has: impl Fn(&str, Pos) -> bool,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |base: String| {
        if base != word && !out.contains(&base) {
            out.push(base);
        }
    };
    for base in exceptions(word) {
        add(base.clone());
    }
    for &(pos, ending, replacement) in RULES {
        if let Some(stem) = word.strip_suffix(ending) {
            if stem.is_empty() {
                continue;
            }
            let base = format!("{stem}{replacement}");
            if has(&base, pos) {
                add(base);
            }
        }
    }
    // A doubled final consonant: `running` → `runn` → `run`, `bigger` → `big`.
    for &(pos, ending) in &[
        (Pos::Verb, "ing"),
        (Pos::Verb, "ed"),
        (Pos::Adjective, "er"),
        (Pos::Adjective, "est"),
    ] {
        if let Some(stem) = word.strip_suffix(ending) {
            let b = stem.as_bytes();
            if b.len() >= 3 && b[b.len() - 1] == b[b.len() - 2] {
                let base = &stem[..stem.len() - 1];
                if has(base, pos) {
                    add(base.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn check(word: &str, expected: &[&str]) {
        let exceptions: HashMap<&str, Vec<String>> = HashMap::from([
            ("ran", vec!["run".to_string()]),
            ("geese", vec!["goose".to_string()]),
            ("better", vec!["good".to_string(), "well".to_string()]),
        ]);
        let headwords = [
            ("run", Pos::Verb),
            ("run", Pos::Noun),
            ("goose", Pos::Noun),
            ("good", Pos::Adjective),
            ("city", Pos::Noun),
            ("box", Pos::Noun),
            ("bake", Pos::Verb),
            ("walk", Pos::Verb),
            ("big", Pos::Adjective),
            ("woman", Pos::Noun),
        ];
        let none: Vec<String> = Vec::new();
        let got = lemmas(
            word,
            |w| exceptions.get(w).map_or(&none[..], |v| &v[..]),
            |w, p| headwords.contains(&(w, p)),
        );
        assert_eq!(got, expected, "lemmas of {word}");
    }

    #[test]
    fn exceptions_and_rules_find_the_headword() {
        check("ran", &["run"]);
        check("geese", &["goose"]);
        check("better", &["good", "well"]);
        check("cities", &["city"]);
        check("boxes", &["box"]);
        check("baking", &["bake"]);
        check("walked", &["walk"]);
        check("runs", &["run"]);
        check("running", &["run"]);
        check("bigger", &["big"]);
        check("women", &["woman"]);
        check("xylophones", &[]);
        check("run", &[]);
    }
}
