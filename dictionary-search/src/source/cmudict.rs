//! CMUdict pronunciations, from Festival's copy of it (Debian's `festlex-cmu`,
//! `cmudict-0.4.out`), which keeps what rhymes need: syllables and their stress.
//!
//! A line is a Lisp list: `("aardvark" nil (((aa r d) 1) ((v aa r k) 1)))`: the word, a part
//! of speech (`nil`, `n`, `v`, `dt`, …; a word may have a line per part of speech), then each
//! syllable's phones and its stress (1 stressed, 0 not). The first line is the format's name
//! (`MNCL`). Pronunciations come out in ARPAbet as CMUdict writes it, stress on the vowels:
//! `AA1 R D V AA1 R K`; Festival's schwa `ax` is CMUdict's `AH0`.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Result, SourceError};

/// Every word's pronunciations (in ARPAbet), in the file's order, without repeats.
pub fn parse(text: &str, path: &Path) -> Result<HashMap<String, Vec<String>>> {
    let mut words: HashMap<String, Vec<String>> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line == "MNCL" || line.starts_with(';') {
            continue;
        }
        let (word, phones) =
            parse_line(line).map_err(|what| SourceError::parse(path, n + 1, what))?;
        let list = words.entry(word.to_lowercase()).or_default();
        if !list.contains(&phones) {
            list.push(phones);
        }
    }
    Ok(words)
}

fn parse_line(line: &str) -> std::result::Result<(&str, String), String> {
    let rest = line
        .strip_prefix("(\"")
        .ok_or("expected a line starting (\"word\"")?;
    let end = rest
        .find("\" ")
        .ok_or("the word's closing quote is missing")?;
    let (word, rest) = (&rest[..end], &rest[end + 2..]);
    // Past the part of speech: the syllables.
    let (_, mut rest) = rest
        .split_once(' ')
        .ok_or("the line ends after the part of speech")?;
    rest = rest.trim();
    let mut phones = Vec::new();
    // Each syllable: `((ph ph …) stress)`.
    while let Some(at) = rest.find("((") {
        rest = rest[at..].trim_start_matches('(');
        let close = rest.find(')').ok_or("a syllable's phones are not closed")?;
        let syllable = &rest[..close];
        rest = &rest[close + 1..];
        let stress_end = rest.find(')').ok_or("a syllable's stress is not closed")?;
        let stress = rest[..stress_end].trim();
        if !matches!(stress, "0" | "1" | "2") {
            return Err(format!("stress {stress:?} is not 0, 1 or 2"));
        }
        rest = &rest[stress_end + 1..];
        for phone in syllable.split_ascii_whitespace() {
            phones.push(arpabet(phone, stress)?);
        }
    }
    if phones.is_empty() {
        return Err(format!("{word:?} has no syllables"));
    }
    Ok((word, phones.join(" ")))
}

const VOWELS: [&str; 15] = [
    "AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW",
];
const CONSONANTS: [&str; 24] = [
    "B", "CH", "D", "DH", "F", "G", "HH", "JH", "K", "L", "M", "N", "NG", "P", "R", "S", "SH", "T",
    "TH", "V", "W", "Y", "Z", "ZH",
];

/// A Festival phone in ARPAbet, a vowel with its syllable's stress.
fn arpabet(phone: &str, stress: &str) -> std::result::Result<String, String> {
    let upper = match phone {
        "ax" => "AH".to_string(),
        p => p.to_ascii_uppercase(),
    };
    if VOWELS.contains(&upper.as_str()) {
        let stress = if phone == "ax" { "0" } else { stress };
        Ok(format!("{upper}{stress}"))
    } else if CONSONANTS.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "{phone:?} is not a phone of Festival's CMU lexicon"
        ))
    }
}

/// Whether an ARPAbet phone is a vowel (it carries a stress digit).
pub fn is_vowel(phone: &str) -> bool {
    phone.ends_with(['0', '1', '2'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syllables_become_arpabet_with_stress() {
        // Real lines of festlex-cmu's cmudict-0.4.out.
        let text = "MNCL\n(\"a\" dt (((ax) 0)))\n(\"a\" n (((ey) 1)))\n(\"aardvark\" nil (((aa r d) 1) ((v aa r k) 1)))\n(\"aaron\" nil (((eh) 1) ((r ax n) 0)))\n(\"run\" nil (((r ah n) 1)))\n";
        let words = parse(text, Path::new("cmudict")).unwrap();
        assert_eq!(words["a"], ["AH0", "EY1"]);
        assert_eq!(words["aardvark"], ["AA1 R D V AA1 R K"]);
        assert_eq!(words["aaron"], ["EH1 R AH0 N"]);
        assert_eq!(words["run"], ["R AH1 N"]);
    }

    #[test]
    fn a_malformed_line_names_its_line() {
        let err = parse(
            "(\"run\" nil (((r ah n) 1)))\n(\"cat\" nil (((k q t) 1)))\n",
            Path::new("cmudict"),
        )
        .unwrap_err();
        assert_eq!(err.line(), Some(2));
        assert!(err.to_string().contains("\"q\" is not a phone"), "{err}");
        let err = parse("run R AH1 N\n", Path::new("cmudict")).unwrap_err();
        assert!(
            err.to_string()
                .contains("cmudict:1: expected a line starting"),
            "{err}"
        );
        let err = parse("(\"run\" nil (((r ah n) 7)))\n", Path::new("cmudict")).unwrap_err();
        assert!(err.to_string().contains("stress \"7\""), "{err}");
        let err = parse("(\"run\" nil ((( r ah n\n", Path::new("cmudict")).unwrap_err();
        assert!(err.to_string().contains("not closed"), "{err}");
    }
}
