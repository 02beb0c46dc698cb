//! Glob matching for `KEYS` and `SCAN ... MATCH`, with the semantics of Redis's
//! `stringmatchlen` (case-sensitive).
//!
//! This module owns pattern syntax only: `*` (any run of bytes), `?` (one byte), `[abc]`,
//! `[^abc]`, `[a-z]` (one byte from a set; `\` escapes inside), and `\x` (a literal `x`). It
//! must not allocate or recurse: patterns come from clients, and Redis's recursive matcher
//! needs a nesting cap to survive `*a*a*a*...`. Here a single backtracking point (the last
//! `*` seen) gives the same answers in O(pattern x text) time and O(1) space.
//!
//! Malformed patterns are matched the way Redis does rather than rejected: an unclosed `[`
//! takes the rest of the pattern as its set, a trailing `\` is a literal backslash, and in a
//! set `x-` followed by any byte is a range (so `[a-]` is the range `a..=]`).

/// Whether `text` matches `pattern` as a whole.
///
/// One deliberate difference from `stringmatchlen`: there, an empty text never matches a
/// non-empty pattern, not even `*` (Redis's `KEYS *` and `SCAN` special-case `*` to hide
/// this). Here an empty text matches any pattern made only of `*`.
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // After a mismatch, retry from the last `*`: pattern just after it, text one byte further.
    let mut last_star: Option<(usize, usize)> = None;
    loop {
        if t == text.len() {
            // Only stars can match the empty rest. Backtracking cannot help: an earlier star
            // taking more bytes leaves even less text for the rest of the pattern.
            return pattern[p..].iter().all(|&b| b == b'*');
        }
        match pattern.get(p) {
            Some(b'*') => {
                while pattern.get(p) == Some(&b'*') {
                    p += 1;
                }
                if p == pattern.len() {
                    return true; // a trailing star matches whatever is left
                }
                last_star = Some((p, t));
                continue;
            }
            Some(_) => {
                let (matched, next) = match_one(pattern, p, text[t]);
                if matched {
                    p = next;
                    t += 1;
                    continue;
                }
            }
            None => {} // pattern used up but text is not: a mismatch
        }
        // Mismatch: let the last star swallow one more byte, or give up if there is none.
        let Some((star_p, star_t)) = last_star else {
            return false;
        };
        last_star = Some((star_p, star_t + 1));
        p = star_p;
        t = star_t + 1;
    }
}

/// Matches the single pattern element at `pattern[p]` (not a `*`) against `byte`, returning
/// whether it matched and where the next element starts.
fn match_one(pattern: &[u8], p: usize, byte: u8) -> (bool, usize) {
    match pattern[p] {
        b'?' => (true, p + 1),
        b'[' => match_set(pattern, p + 1, byte),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == byte, p + 2),
        literal => (literal == byte, p + 1),
    }
}

/// Matches a `[...]` set whose content starts at `pattern[start]`, mirroring the loop in
/// Redis's `stringmatchlen`.
fn match_set(pattern: &[u8], start: usize, byte: u8) -> (bool, usize) {
    let negated = pattern.get(start) == Some(&b'^');
    let mut i = if negated { start + 1 } else { start };
    let mut matched = false;
    loop {
        let rest = &pattern[i.min(pattern.len())..];
        match rest {
            // Unclosed set: Redis lets it consume the rest of the pattern.
            [] => break,
            [b']', ..] => {
                i += 1;
                break;
            }
            [b'\\', escaped, ..] => {
                matched |= *escaped == byte;
                i += 2;
            }
            [low, b'-', high, ..] => {
                // Redis accepts reversed ranges such as [z-a].
                let (low, high) = if low <= high {
                    (*low, *high)
                } else {
                    (*high, *low)
                };
                matched |= (low..=high).contains(&byte);
                i += 3;
            }
            [literal, ..] => {
                matched |= *literal == byte;
                i += 1;
            }
        }
    }
    (matched != negated, i.min(pattern.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// (pattern, text, expected)
    const CASES: &[(&str, &str, bool)] = &[
        // Examples from the Redis KEYS documentation.
        ("h?llo", "hello", true),
        ("h?llo", "hallo", true),
        ("h?llo", "hxllo", true),
        ("h?llo", "hllo", false),
        ("h*llo", "hllo", true),
        ("h*llo", "heeeello", true),
        ("h[ae]llo", "hello", true),
        ("h[ae]llo", "hallo", true),
        ("h[ae]llo", "hillo", false),
        ("h[^e]llo", "hallo", true),
        ("h[^e]llo", "hbllo", true),
        ("h[^e]llo", "hello", false),
        ("h[a-b]llo", "hallo", true),
        ("h[a-b]llo", "hbllo", true),
        ("h[a-b]llo", "hcllo", false),
        // Stars.
        ("*", "", true),
        ("**", "", true),
        ("*", "anything", true),
        ("a*", "a", true),
        ("*a", "a", true),
        ("*a", "ba", true),
        ("*a", "ab", false),
        ("a*b*c", "aXbYc", true),
        ("a*b*c", "aXbY", false),
        ("*ab*", "xxaxabyy", true),
        ("user:*:name", "user:42:name", true),
        ("user:*:name", "user:42:email", false),
        ("", "", true),
        ("", "a", false),
        ("a", "", false),
        ("?", "", false),
        // Escapes.
        ("\\*", "*", true),
        ("\\*", "a", false),
        ("a\\?", "a?", true),
        ("a\\?", "ab", false),
        ("\\", "\\", true),
        ("a\\", "a\\", true),
        ("[\\]]", "]", true),
        ("[\\-]", "-", true),
        // Sets, including Redis's handling of odd ones.
        ("[z-a]", "m", true),
        ("[a-]", "]", true),
        ("[abc", "b", true),
        ("[abc", "bc", false),
        ("[]", "]", false),
        ("[^]", "x", true),
        ("[a-c-e]", "d", false),
        ("[a-c-e]", "-", true),
        ("*[0-9]", "abc7", true),
        ("*[0-9]", "abc", false),
    ];

    #[test]
    fn table() {
        for &(pattern, text, expected) in CASES {
            assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                expected,
                "pattern {pattern:?} text {text:?}"
            );
        }
    }

    #[test]
    fn pathological_patterns_finish_quickly() {
        // Exponential for naive recursion; a few hundred thousand steps here.
        let pattern = "*a".repeat(50) + "b";
        let text = "a".repeat(500);
        assert!(!glob_match(pattern.as_bytes(), text.as_bytes()));
        let pattern = "*".repeat(10_000) + "x";
        assert!(glob_match(pattern.as_bytes(), "yyyyx".as_bytes()));
    }

    /// A reference matcher written as directly as possible (recursive, exponential), used to
    /// check the iterative one on small inputs. Only the unambiguous syntax is generated.
    fn reference(pattern: &[u8], text: &[u8]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some((b'*', rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
            Some((b'?', rest)) => !text.is_empty() && reference(rest, &text[1..]),
            Some((&literal, rest)) => text.first() == Some(&literal) && reference(rest, &text[1..]),
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_reference_matcher(pattern in "[ab*?]{0,8}", text in "[ab]{0,10}") {
            prop_assert_eq!(
                glob_match(pattern.as_bytes(), text.as_bytes()),
                reference(pattern.as_bytes(), text.as_bytes())
            );
        }

        #[test]
        fn arbitrary_patterns_never_panic(
            pattern in proptest::collection::vec(any::<u8>(), 0..16),
            text in proptest::collection::vec(any::<u8>(), 0..16),
        ) {
            let _ = glob_match(&pattern, &text);
        }

        #[test]
        fn every_text_matches_itself_escaped(text in proptest::collection::vec(any::<u8>(), 0..16)) {
            let escaped: Vec<u8> = text.iter().flat_map(|&b| [b'\\', b]).collect();
            prop_assert!(glob_match(&escaped, &text));
        }
    }
}
