//! WordNet 3.0's database files (Debian's `wordnet-base`, `/usr/share/wordnet`), read whole:
//! the synsets of `data.{noun,verb,adj,adv}`, the sense order of `index.*`, and the
//! morphological exceptions of `*.exc` (`geese goose`). Pure parsers over a file's text; the
//! caller reads the file. Formats: `wndb(5WN)`.
//!
//! A data line is `offset lex_filenum ss_type w_cnt word lex_id … p_cnt ptr… [frames] | gloss`
//! with `w_cnt` and `lex_id` in hexadecimal, a pointer `symbol offset pos source/target` (the
//! last four hex digits: which word of this synset points at which word of the target, `0000`
//! for the whole synset). The gloss is a definition then `; "examples"`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::entry::Pos;
use crate::error::{Result, SourceError};

/// One synset: a set of synonyms sharing a meaning.
#[derive(Debug, Clone, PartialEq)]
pub struct Synset {
    pub offset: u32,
    pub pos: Pos,
    /// Its words as written (`ice_cream` becomes `ice cream`; adjective markers dropped).
    pub words: Vec<String>,
    pub pointers: Vec<Pointer>,
    pub definition: String,
    pub examples: Vec<String>,
}

/// A relation from a synset (or one of its words) to another.
#[derive(Debug, Clone, PartialEq)]
pub struct Pointer {
    pub symbol: String,
    pub offset: u32,
    pub pos: Pos,
    /// 1-based word numbers: (0, 0) for a relation between whole synsets.
    pub source: u16,
    pub target: u16,
}

fn pos_of(ss_type: &str) -> Option<Pos> {
    match ss_type {
        "n" => Some(Pos::Noun),
        "v" => Some(Pos::Verb),
        "a" | "s" => Some(Pos::Adjective),
        "r" => Some(Pos::Adverb),
        _ => None,
    }
}

/// A lemma as written in WordNet's files (underscores for spaces, `(p)` markers on adjectives).
pub fn clean_word(word: &str) -> String {
    let word = match word.find('(') {
        Some(at) if word.ends_with(')') => &word[..at],
        _ => word,
    };
    word.replace('_', " ")
}

/// Parses a `data.*` file. The licence header (lines starting with two spaces) is skipped.
pub fn parse_data(text: &str, path: &Path) -> Result<Vec<Synset>> {
    let mut synsets = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("  ") || line.trim().is_empty() {
            continue;
        }
        synsets.push(parse_data_line(line).map_err(|what| SourceError::parse(path, n + 1, what))?);
    }
    Ok(synsets)
}

fn parse_data_line(line: &str) -> std::result::Result<Synset, String> {
    let (fields, gloss) = match line.split_once(" | ") {
        Some((f, g)) => (f, g.trim_end()),
        None => (line.trim_end().trim_end_matches(" |"), ""),
    };
    let mut it = fields.split_ascii_whitespace();
    let mut next = |what: &str| {
        it.next()
            .ok_or_else(|| format!("the line ends before its {what}"))
    };
    let offset: u32 = next("offset")?
        .parse()
        .map_err(|_| "the synset offset is not a number".to_string())?;
    next("lexicographer file number")?;
    let ss_type = next("synset type")?;
    let pos = pos_of(ss_type).ok_or_else(|| format!("unknown synset type {ss_type:?}"))?;
    let w_cnt = usize::from_str_radix(next("word count")?, 16)
        .map_err(|_| "the word count is not hexadecimal".to_string())?;
    let mut words = Vec::with_capacity(w_cnt);
    for _ in 0..w_cnt {
        words.push(clean_word(next("word")?));
        next("lexical id")?;
    }
    let p_cnt: usize = next("pointer count")?
        .parse()
        .map_err(|_| "the pointer count is not a number".to_string())?;
    let mut pointers = Vec::with_capacity(p_cnt);
    for _ in 0..p_cnt {
        let symbol = next("pointer symbol")?.to_string();
        let offset: u32 = next("pointer offset")?
            .parse()
            .map_err(|_| "a pointer's offset is not a number".to_string())?;
        let pos_field = next("pointer part of speech")?;
        let pos = pos_of(pos_field).ok_or_else(|| format!("unknown pointer pos {pos_field:?}"))?;
        let st = next("pointer source/target")?;
        let number = |s: &str| u16::from_str_radix(s, 16).ok();
        let (source, target) = match (st.get(..2).and_then(number), st.get(2..).and_then(number)) {
            (Some(s), Some(t)) if st.len() == 4 => (s, t),
            _ => {
                return Err(format!(
                    "a pointer's source/target {st:?} is not 4 hex digits"
                ))
            }
        };
        pointers.push(Pointer {
            symbol,
            offset,
            pos,
            source,
            target,
        });
    }
    let (definition, examples) = split_gloss(gloss);
    Ok(Synset {
        offset,
        pos,
        words,
        pointers,
        definition,
        examples,
    })
}

/// `a morbid fear of great heights` or `move fast; "He ran to the store"` → the definition
/// and the quoted examples.
pub fn split_gloss(gloss: &str) -> (String, Vec<String>) {
    let mut definition = Vec::new();
    let mut examples = Vec::new();
    for part in gloss.split("; ") {
        let part = part.trim();
        if part.starts_with('"') {
            // An example may hold several quotes: `"a"; "b"` arrive as separate parts.
            examples.push(
                part.trim_matches(|c| c == '"' || c == ';')
                    .trim()
                    .to_string(),
            );
        } else if examples.is_empty() && !part.is_empty() {
            definition.push(part);
        }
    }
    (definition.join("; "), examples)
}

/// Parses an `index.*` file: each lemma's synset offsets, most frequent sense first.
pub fn parse_index(text: &str, path: &Path) -> Result<Vec<(String, Vec<u32>)>> {
    let mut lemmas = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("  ") || line.trim().is_empty() {
            continue;
        }
        let err = |what: &str| SourceError::parse(path, n + 1, what);
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        // lemma pos synset_cnt p_cnt [ptr_symbol…] sense_cnt tagsense_cnt offset…
        let number = |i: usize| -> Result<usize> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .ok_or_else(|| err(&format!("field {} is not a count", i + 1)))
        };
        let synset_cnt = number(2)?;
        let p_cnt = number(3)?;
        let first = 4 + p_cnt + 2;
        let offsets = fields
            .get(first..first + synset_cnt)
            .ok_or_else(|| err("the line has fewer synset offsets than it says"))?
            .iter()
            .map(|f| {
                f.parse::<u32>()
                    .map_err(|_| err("a synset offset is not a number"))
            })
            .collect::<Result<Vec<u32>>>()?;
        lemmas.push((clean_word(fields[0]), offsets));
    }
    Ok(lemmas)
}

/// Parses an exception list (`geese goose`: an inflected form and its base forms), in order
/// (a merge must not depend on a hash map's order).
pub fn parse_exceptions(text: &str, path: &Path) -> Result<BTreeMap<String, Vec<String>>> {
    let mut exceptions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let mut words = line.split_ascii_whitespace();
        let Some(form) = words.next() else { continue };
        let bases: Vec<String> = words.map(clean_word).collect();
        if bases.is_empty() {
            return Err(SourceError::parse(
                path,
                n + 1,
                format!("the exception {form:?} names no base form"),
            ));
        }
        exceptions
            .entry(clean_word(form))
            .or_default()
            .extend(bases);
    }
    Ok(exceptions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> &'static Path {
        Path::new("data.test")
    }

    // Real lines of WordNet 3.0's data.noun, data.verb and data.adj.
    const ACROPHOBIA: &str = "14382766 26 n 01 acrophobia 0 002 @ 14382238 n 0000 + 00078329 a 0101 | a morbid fear of great heights  ";
    const GOOD_ADJ: &str = "01123148 00 a 01 good 1 018 ^ 00227507 a 0000 ^ 00230335 a 0000 ^ 00995775 a 0000 ^ 01129977 a 0000 ^ 01612053 a 0000 ^ 01993141 a 0000 = 04723816 n 0000 + 05142180 n 0102 ! 01125429 a 0101 & 01123879 a 0000 & 01124192 a 0000 & 01124342 a 0000 & 01124441 a 0000 & 01124574 a 0000 & 01124768 a 0000 & 01125006 a 0000 & 01125154 a 0000 & 01125241 a 0000 | having desirable or positive qualities especially those suitable for a thing specified; \"good news from the hospital\"; \"a good report card\"; \"when she was good she was very very good\"; \"a good knife is one good for cutting\"; \"this stump will make a good picnic table\"; \"a good check\"; \"a good joke\"; \"a good exterior paint\"; \"a good secretary\"; \"a good dress for the office\"  ";

    #[test]
    fn a_noun_synset_with_its_pointers_and_definition() {
        let s = parse_data(ACROPHOBIA, path()).unwrap().remove(0);
        assert_eq!(s.offset, 14382766);
        assert_eq!(s.pos, Pos::Noun);
        assert_eq!(s.words, ["acrophobia"]);
        assert_eq!(s.definition, "a morbid fear of great heights");
        assert!(s.examples.is_empty());
        assert_eq!(s.pointers.len(), 2);
        assert_eq!(s.pointers[1].symbol, "+");
        assert_eq!((s.pointers[1].source, s.pointers[1].target), (1, 1));
    }

    #[test]
    fn an_adjective_gloss_splits_into_definition_and_examples() {
        let s = parse_data(GOOD_ADJ, path()).unwrap().remove(0);
        assert_eq!(
            s.definition,
            "having desirable or positive qualities especially those suitable for a thing specified"
        );
        assert_eq!(s.examples.len(), 10);
        assert_eq!(
            s.examples[..2],
            ["good news from the hospital", "a good report card"]
        );
        assert_eq!(s.pointers.len(), 18);
        let antonym = s.pointers.iter().find(|p| p.symbol == "!").unwrap();
        assert_eq!(
            (antonym.offset, antonym.source, antonym.target),
            (1125429, 1, 1)
        );
    }

    #[test]
    fn words_lose_underscores_and_adjective_markers() {
        assert_eq!(clean_word("ice_cream"), "ice cream");
        assert_eq!(clean_word("galore(ip)"), "galore");
    }

    #[test]
    fn the_licence_header_is_skipped_and_a_malformed_line_names_its_line() {
        let text = format!("  1 This software and database is being provided\n{ACROPHOBIA}\n14382767 26 n 0Z x 0 000 | y\n");
        let err = parse_data(&text, path()).unwrap_err();
        assert_eq!(err.line(), Some(3));
        assert!(
            err.to_string()
                .contains("data.test:3: the word count is not hexadecimal"),
            "{err}"
        );
        let truncated = "14382766 26 n 01 acrophobia 0 002 @ 14382238";
        let err = parse_data(truncated, path()).unwrap_err();
        assert!(
            err.to_string()
                .contains("ends before its pointer part of speech"),
            "{err}"
        );
    }

    #[test]
    fn index_lines_give_the_senses_in_order() {
        let text = "acrophobia n 1 2 @ + 1 0 14382766  \nrun n 16 4 @ ~ + ; 16 7 00189565 00791078 07460104 08460585 00558883 00308871 00293916 15262120 13995935 13760129 09415938 07472929 07443010 07407777 05045841 00309011  \n";
        let index = parse_index(text, path()).unwrap();
        assert_eq!(index[0], ("acrophobia".to_string(), vec![14382766]));
        assert_eq!(index[1].1.len(), 16);
        assert_eq!(index[1].1[0], 189565);
        let err = parse_index("run n 16 4 @ ~ + ; 16 3 00189565\n", path()).unwrap_err();
        assert!(
            err.to_string()
                .contains(":1: the line has fewer synset offsets"),
            "{err}"
        );
    }

    #[test]
    fn exceptions_map_forms_to_bases() {
        let exc = parse_exceptions("better good well\ngeese goose\n", path()).unwrap();
        assert_eq!(exc["better"], ["good", "well"]);
        assert_eq!(exc["geese"], ["goose"]);
        let err = parse_exceptions("geese goose\nlonely\n", path()).unwrap_err();
        assert_eq!(err.line(), Some(2));
    }
}
