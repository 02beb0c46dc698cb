//! GCIDE, the GNU Collaborative International Dictionary of English, in dictd format
//! (Debian's `dict-gcide`): `gcide.index` lines `headword<TAB>offset<TAB>length` (numbers in
//! dictd's base 64, `A`–`Z` `a`–`z` `0`–`9` `+` `/`) into `gcide.dict.dz`, which is gzip
//! (dictzip adds only an index for random access), read whole here.
//!
//! An entry is the 1913 Webster's layout in plain text:
//!
//! ```text
//! Goose \Goose\ (g[=oo]s), n.; pl. {Geese} (g[=e]s). [OE. gos, AS.
//!    g[=o]s, …] (Zool.)
//!    [1913 Webster]
//!    1. Any large web-footed bird of the subfamily …
//!       [1913 Webster]
//!
//!             A quotation, indented.               --Author.
//! ```
//!
//! The header (the first line, and further lines while a `[` is open) gives the headword,
//! the part of speech, inflected forms in braces and the etymology in brackets; then come
//! senses (`1.`, `(a)`, or one unnumbered paragraph), quotations indented deeper than their
//! sense, `Syn:` lists, `Note:` paragraphs and phrases (`{To think better of}, …`), each
//! ending with a source marker line (`[1913 Webster]`). `{x}` marks a cross-reference and
//! `[=o]` a character (ō). Blocks marked `[WordNet 1.5]` are dropped: WordNet 3.0 is read
//! directly.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use crate::entry::Pos;
use crate::error::{Result, SourceError};

/// An entry of the index: a headword and where its text is in the dict file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    pub headword: String,
    pub offset: u64,
    pub length: u64,
    /// Its line in the index (1-based), for errors.
    pub line: usize,
}

/// What one GCIDE entry says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GcideEntry {
    pub headword: String,
    pub pos: Option<Pos>,
    pub senses: Vec<GcideSense>,
    pub etymology: Option<String>,
    pub forms: Vec<String>,
    pub synonyms: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GcideSense {
    pub definition: String,
    pub examples: Vec<String>,
}

/// The most an entry's text may be (the longest in GCIDE 0.53 is about 150 KB).
pub const ENTRY_BYTES_MAX: u64 = 1 << 20;

/// Decodes dictd's base 64 number.
pub fn decode_b64(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 10 {
        return None;
    }
    s.bytes().try_fold(0u64, |n, c| {
        let digit = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        Some(n * 64 + u64::from(digit))
    })
}

/// Parses `gcide.index`, skipping dictd's own `00-database-…` entries.
pub fn parse_index(text: &str, path: &Path) -> Result<Vec<IndexEntry>> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let err = |what: &str| SourceError::parse(path, n + 1, what);
        let mut fields = line.split('\t');
        let (Some(headword), Some(offset), Some(length), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(err("expected headword<TAB>offset<TAB>length"));
        };
        if headword.starts_with("00-database-") || headword.starts_with("00database") {
            continue;
        }
        let offset = decode_b64(offset).ok_or_else(|| err("the offset is not dictd base 64"))?;
        let length = decode_b64(length).ok_or_else(|| err("the length is not dictd base 64"))?;
        if length > ENTRY_BYTES_MAX {
            return Err(err(&format!(
                "an entry of {length} bytes is over ENTRY_BYTES_MAX ({ENTRY_BYTES_MAX})"
            )));
        }
        entries.push(IndexEntry {
            headword: headword.to_string(),
            offset,
            length,
            line: n + 1,
        });
    }
    Ok(entries)
}

/// Reads a dictzip (or plain gzip) file whole.
pub fn read_dict(path: &Path) -> Result<Vec<u8>> {
    let file = std::fs::File::open(path).map_err(SourceError::io(path))?;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file))
        .read_to_end(&mut out)
        .map_err(SourceError::io(path))?;
    Ok(out)
}

/// The text of every distinct entry the index points at, in the index's order. Several index
/// lines may point at one entry (`Better` at the entry `Good`, whose comparative it is): it
/// is returned once. GCIDE is UTF-8 with a few stray Windows-1252 bytes (`\x92` for `'` in
/// "Black Friday"): those are decoded as Windows-1252 rather than failing the whole file.
pub fn entry_texts<'i>(
    index: &'i [IndexEntry],
    dict: &[u8],
    index_path: &Path,
) -> Result<Vec<(&'i IndexEntry, String)>> {
    let mut seen = std::collections::HashSet::new();
    let mut texts = Vec::new();
    for e in index {
        if !seen.insert((e.offset, e.length)) {
            continue;
        }
        let range = e.offset as usize..(e.offset + e.length) as usize;
        let bytes = dict.get(range).ok_or_else(|| {
            SourceError::parse(
                index_path,
                e.line,
                format!(
                    "{:?} points at bytes {}..{} past the end of the dict file ({} bytes)",
                    e.headword,
                    e.offset,
                    e.offset + e.length,
                    dict.len()
                ),
            )
        })?;
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text.to_string(),
            Err(_) => {
                tracing::debug!(headword = %e.headword, line = e.line, "decoded stray Windows-1252 bytes");
                decode_mixed(bytes)
            }
        };
        texts.push((e, text));
    }
    Ok(texts)
}

/// UTF-8 where it is valid, Windows-1252 for each byte where it is not.
pub fn decode_mixed(mut bytes: &[u8]) -> String {
    const CP1252: [char; 32] = [
        '€', '\u{81}', '‚', 'ƒ', '„', '…', '†', '‡', 'ˆ', '‰', 'Š', '‹', 'Œ', '\u{8d}', 'Ž',
        '\u{8f}', '\u{90}', '‘', '’', '“', '”', '•', '–', '—', '˜', '™', 'š', '›', 'œ', '\u{9d}',
        'ž', 'Ÿ',
    ];
    let mut out = String::with_capacity(bytes.len());
    loop {
        match std::str::from_utf8(bytes) {
            Ok(rest) => {
                out.push_str(rest);
                return out;
            }
            Err(e) => {
                let (good, bad) = bytes.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(good).expect("valid up to here"));
                let b = bad[0];
                out.push(match b {
                    0x80..=0x9f => CP1252[usize::from(b - 0x80)],
                    _ => char::from(b), // Latin-1
                });
                bytes = &bad[1..];
            }
        }
    }
}

/// A line that only says where a block came from: `[1913 Webster]`, `[PJC]`, `[WordNet 1.5]`.
pub fn source_marker(line: &str) -> Option<&str> {
    // (Its first bracket: one line of GCIDE has a stray word after it, `[1913 Webster] monicker`.)
    let t = line.trim();
    let inner = &t.strip_prefix('[')?[..t.find(']')? - 1];
    is_source(inner).then_some(inner)
}

/// The inside of a source marker: `1913 Webster`, `PJC`, `WordNet 1.5 +PJC`.
fn is_source(inner: &str) -> bool {
    let known = [
        "Webster", "WordNet", "PJC", "Century", "Chambers", "Johnson", "RHD",
    ];
    inner.len() < 40 && known.iter().any(|k| inner.contains(k))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// `1. text` or `(a) text`: the marker's text and where the text starts.
fn sense_start(line: &str) -> Option<(usize, &str)> {
    let t = line.trim_start();
    let at = indent(line);
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 && digits <= 2 && t[digits..].starts_with(". ") {
        let rest = &t[digits + 2..];
        return Some((at + digits + 2 + indent(rest), rest.trim_start()));
    }
    let b = t.as_bytes();
    if b.len() > 4 && b[0] == b'(' && b[1].is_ascii_lowercase() && &t[2..4] == ") " {
        let rest = &t[4..];
        return Some((at + 4 + indent(rest), rest.trim_start()));
    }
    None
}

#[derive(Debug, PartialEq)]
enum Block {
    Sense,
    Quote,
    Syn,
    Skip,
}

/// Parses one entry's text; `None` for an entry with nothing to show (only a WordNet block).
pub fn parse_entry(text: &str, index_headword: &str) -> Option<GcideEntry> {
    let lines: Vec<&str> = text.lines().collect();
    // The header: the first line, and more while a bracket is open.
    let mut depth = 0i32;
    let mut header_end = 0;
    for (i, line) in lines.iter().enumerate() {
        depth += line.matches('[').count() as i32 - line.matches(']').count() as i32;
        header_end = i + 1;
        if depth <= 0 {
            break;
        }
    }
    let header = lines[..header_end].join(" ");
    let mut entry = parse_header(&header, index_headword);

    let mut block = Block::Skip;
    let mut text_at = 0; // where the current sense's text starts
    let mut current = GcideSense::default();
    let mut quote = String::new();
    let mut syn = String::new();
    let mut senses: Vec<(GcideSense, bool)> = Vec::new(); // (sense, from WordNet)
    let mut unnumbered_allowed = true;
    let mut current_from_wordnet = false;
    let finish_quote = |quote: &mut String, current: &mut GcideSense| {
        let q = strip_citation(&clean(quote));
        if !q.is_empty() {
            current.examples.push(q);
        }
        quote.clear();
    };
    for line in lines.iter().skip(header_end) {
        if let Some(source) = source_marker(line) {
            if block == Block::Quote {
                finish_quote(&mut quote, &mut current);
                block = Block::Sense;
            }
            // A block WordNet alone is the source of duplicates WordNet 3.0's own senses.
            if source.contains("WordNet") && !source.contains("Webster") && block != Block::Syn {
                current_from_wordnet = true;
            }
            continue;
        }
        if line.trim().is_empty() {
            if block == Block::Quote {
                finish_quote(&mut quote, &mut current);
                block = Block::Sense;
            }
            if block == Block::Syn {
                entry.synonyms.extend(split_synonyms(&syn));
                syn.clear();
                block = Block::Skip;
            }
            continue;
        }
        let t = line.trim_start();
        if let Some((at, rest)) = sense_start(line) {
            if block == Block::Quote {
                finish_quote(&mut quote, &mut current);
            }
            push_sense(
                &mut senses,
                std::mem::take(&mut current),
                current_from_wordnet,
            );
            current_from_wordnet = false;
            current.definition = rest.to_string();
            text_at = at;
            block = Block::Sense;
            unnumbered_allowed = false;
            continue;
        }
        if let Some(rest) = t.strip_prefix("Syn:") {
            block = Block::Syn;
            syn = rest.to_string();
            continue;
        }
        if t.starts_with("Note:") || (t.starts_with('{') && indent(line) <= 3) {
            if block == Block::Quote {
                finish_quote(&mut quote, &mut current);
            }
            block = Block::Skip;
            unnumbered_allowed = false;
            continue;
        }
        match block {
            Block::Syn => {
                syn.push(' ');
                syn.push_str(t);
            }
            Block::Sense | Block::Quote if indent(line) >= text_at + 4 => {
                if indent(line) >= 40 || t.starts_with("--") {
                    continue; // the rest of a citation
                }
                block = Block::Quote;
                quote.push(' ');
                quote.push_str(t);
            }
            Block::Sense => {
                current.definition.push(' ');
                current.definition.push_str(t);
            }
            Block::Quote => {}
            Block::Skip if unnumbered_allowed && current.definition.is_empty() => {
                // An unnumbered sense: the entry's one definition.
                current.definition = t.to_string();
                text_at = indent(line);
                block = Block::Sense;
                unnumbered_allowed = false;
            }
            Block::Skip => {}
        }
    }
    if block == Block::Quote {
        finish_quote(&mut quote, &mut current);
    }
    if block == Block::Syn {
        entry.synonyms.extend(split_synonyms(&syn));
    }
    push_sense(&mut senses, current, current_from_wordnet);
    entry.senses = senses
        .into_iter()
        .filter(|(s, from_wordnet)| !from_wordnet && !s.definition.is_empty())
        .map(|(s, _)| s)
        .collect();
    entry.senses.iter_mut().for_each(|s| {
        s.definition = strip_citation(&clean(&s.definition));
    });
    (!entry.senses.is_empty()).then_some(entry)
}

fn push_sense(senses: &mut Vec<(GcideSense, bool)>, sense: GcideSense, from_wordnet: bool) {
    if !sense.definition.trim().is_empty() {
        senses.push((sense, from_wordnet));
    }
}

/// The headword, part of speech, forms and etymology of a header line.
fn parse_header(header: &str, index_headword: &str) -> GcideEntry {
    let mut entry = GcideEntry::default();
    let (headword, rest) = match header.split_once(" \\") {
        Some((h, rest)) => {
            // Past the pronunciation: `\Goose\ (g[=oo]s), n.; …`
            let after = rest.split_once('\\').map_or(rest, |(_, r)| r);
            (h.trim(), after)
        }
        None => (index_headword, header),
    };
    entry.headword = clean(headword);
    let mut rest = rest.trim_start();
    if rest.starts_with('(') {
        rest = rest.split_once(')').map_or("", |(_, r)| r);
    }
    let rest = rest.trim_start_matches([',', ' ']);
    entry.pos = pos_from(rest);
    // Top-level bracket groups: forms (`[imp. {Ran} …]`, `[pl. {Geese}]`) or etymology.
    let mut depth = 0;
    let mut group = String::new();
    let mut outside = String::new();
    for c in rest.chars() {
        match c {
            '[' => {
                if depth > 0 {
                    group.push(c);
                }
                depth += 1;
            }
            ']' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    let g = std::mem::take(&mut group);
                    let lead = g.trim_start();
                    let forms = [
                        "imp.", "pl.", "Compar.", "compar.", "superl.", "p. p.", "p. pr.",
                    ];
                    if forms.iter().any(|f| lead.starts_with(f)) {
                        entry.forms.extend(braced(&g));
                    } else if g.len() > 3 && entry.etymology.is_none() && !is_label(&g) {
                        entry.etymology = Some(clean(&g));
                    }
                } else {
                    group.push(c);
                }
            }
            _ if depth > 0 => group.push(c),
            _ => outside.push(c),
        }
    }
    // `n.; pl. {Geese}` names a form; `adv.; compar. of {Well}` names the base, not a form.
    if let Some((_, plural)) = outside.split_once("pl.") {
        entry.forms.extend(braced(plural));
    }
    entry
        .forms
        .retain(|f| !f.eq_ignore_ascii_case(&entry.headword));
    entry.forms.dedup();
    entry
}

/// `[Obs.]`, `[Colloq.]`: a usage label, not an etymology.
fn is_label(g: &str) -> bool {
    let g = g.trim();
    g.len() < 16 && g.ends_with('.') && !g.contains(' ') || matches!(g, "Slang" | "Archaic")
}

fn pos_from(text: &str) -> Option<Pos> {
    let table = [
        ("n.", Pos::Noun),
        ("v.", Pos::Verb),
        ("a.", Pos::Adjective),
        ("adj.", Pos::Adjective),
        ("p. a.", Pos::Adjective),
        ("adv.", Pos::Adverb),
        ("pron.", Pos::Pronoun),
        ("prep.", Pos::Preposition),
        ("conj.", Pos::Conjunction),
        ("interj.", Pos::Interjection),
        ("p. p.", Pos::Verb),
        ("imp.", Pos::Verb),
    ];
    let text = text.trim_start();
    table
        .iter()
        .filter(|(abbr, _)| text.starts_with(abbr))
        .max_by_key(|(abbr, _)| abbr.len())
        .map(|(_, pos)| *pos)
}

/// The words in braces: `{Ran} or {Run}` → Ran, Run.
fn braced(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let word = clean(&rest[start + 1..start + len]);
        if !word.is_empty() {
            out.push(word);
        }
        rest = &rest[start + len + 1..];
    }
    out
}

fn split_synonyms(text: &str) -> Vec<String> {
    clean(text)
        .split([';', ','])
        .map(|s| {
            s.trim()
                .trim_start_matches("Syn.")
                .trim_start_matches(" --")
                .trim_start_matches("--")
                .trim()
                .trim_end_matches('.')
                .to_string()
        })
        .filter(|s| !s.is_empty() && s.split(' ').count() <= 3 && !s.contains("See "))
        .collect()
}

/// ` --Carlyle.` at the end of a definition: a citation, not part of it.
fn strip_citation(text: &str) -> String {
    match text.rfind(" --") {
        Some(at) if text.len() - at < 40 => text[..at].trim_end().to_string(),
        _ => text.to_string(),
    }
}

/// Plain text: cross-reference braces removed, `[=o]` characters decoded, spaces collapsed.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(['[', '{', '}']) {
        out.push_str(&rest[..start]);
        let c = rest.as_bytes()[start];
        rest = &rest[start + 1..];
        if c != b'[' {
            continue; // a brace
        }
        match rest.find(']') {
            // A source marker inside the text (`… Sciuropterus [1913 Webster]), especially`).
            Some(end) if is_source(&rest[..end]) => {
                rest = &rest[end + 1..];
            }
            Some(end) if end <= 6 && !rest[..end].contains(' ') => {
                match entity(&rest[..end]) {
                    Some(decoded) => out.push_str(&decoded),
                    None => {
                        out.push('[');
                        out.push_str(&rest[..=end]);
                    }
                }
                rest = &rest[end + 1..];
            }
            _ => out.push('['),
        }
    }
    out.push_str(rest);
    out.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" )", ")")
}

/// GCIDE's character codes: `=o` macron, `o^` breve, `^o` circumflex, `'e` acute, `` `e ``
/// grave, `"o` diaeresis, `~n` tilde, `.a` dot, `,c` cedilla, and named letters. `None` for
/// anything else (a label such as `[R.]` stays as written).
fn entity(code: &str) -> Option<String> {
    let named = match code {
        "ae" => Some("æ"),
        "AE" => Some("Æ"),
        "oe" => Some("œ"),
        "OE" => Some("Œ"),
        "eth" => Some("ð"),
        "thorn" => Some("þ"),
        "root" => Some("√"),
        "deg" => Some("°"),
        "ng" => Some("ŋ"),
        "sect" => Some("§"),
        "imac" => Some("ī"),
        "aum" => Some("ä"),
        "th" => Some("θ"),
        "frac12" => Some("½"),
        _ => None,
    };
    if let Some(n) = named {
        return Some(n.to_string());
    }
    let mark = |m: char| match m {
        '=' | '-' => Some('\u{0304}'),
        '^' => Some('\u{0302}'),
        '\'' => Some('\u{0301}'),
        '`' => Some('\u{0300}'),
        '"' => Some('\u{0308}'),
        '~' => Some('\u{0303}'),
        '.' => Some('\u{0307}'),
        ',' => Some('\u{0327}'),
        _ => None,
    };
    let chars: Vec<char> = code.chars().collect();
    match chars.as_slice() {
        [m, rest @ ..] if !rest.is_empty() && rest.iter().all(char::is_ascii_alphabetic) => {
            let mark = mark(*m)?;
            let mut s: String = rest.iter().collect();
            s.push(mark);
            Some(s)
        }
        [rest @ .., '^'] if !rest.is_empty() && rest.iter().all(char::is_ascii_alphabetic) => {
            let mut s: String = rest.iter().collect();
            s.push('\u{0306}'); // breve
            Some(s)
        }
        _ => None,
    }
}

/// Every entry of the dictionary, by lowercase headword (several entries per headword: one
/// per part of speech or etymology, in the file's order).
pub fn parse_all(
    index: &[IndexEntry],
    dict: &[u8],
    index_path: &Path,
) -> Result<HashMap<String, Vec<GcideEntry>>> {
    let mut by_word: HashMap<String, Vec<GcideEntry>> = HashMap::new();
    for (first, text) in entry_texts(index, dict, index_path)? {
        if let Some(entry) = parse_entry(&text, &first.headword) {
            by_word
                .entry(entry.headword.to_lowercase())
                .or_default()
                .push(entry);
        }
    }
    Ok(by_word)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Real entries of GCIDE 0.53 (dict-gcide), shortened where marked.
    const GOOSE: &str = "Goose \\Goose\\ (g[=oo]s), n.; pl. {Geese} (g[=e]s). [OE. gos, AS.
   g[=o]s, pl. g[=e]s; akin to D. & G. gans, Icel. g[=a]s, Dan.
   gaas, Sw. g[*a]s, Russ. guse. OIr. geiss, L. anser, for
   hanser, Gr. chh`n, Skr. ha[.m]sa. [root]233. Cf. {Gander},
   {Gannet}, {Ganza}, {Gosling}.] (Zool.)
   [1913 Webster]
   1. Any large web-footen bird of the subfamily {Anserin[ae]},
      and belonging to {Anser}, {Branta}, {Chen}, and several
      allied genera. See {Anseres}.
      [1913 Webster]

   Note: The common domestic goose is believed to have been
         derived from the European graylag goose ({Anser
         anser}).
";

    const BETTER_V: &str = "Better \\Bet\"ter\\, v. t. [imp. & p. p. {Bettered}; p. pr. & vb.
   n. {Bettering}.] [AS. beterian, betrian, fr. betera better.
   See {Better}, a.]
   1. To improve or ameliorate; to increase the good qualities
      of.
      [1913 Webster]

            Love betters what is best.            --Wordsworth.
      [1913 Webster]

            He thought to better his circumstances. --Thackeray.
      [1913 Webster]

   2. To improve the condition of, morally, physically,
      financially, socially, or otherwise.
      [1913 Webster]

   Syn: To improve; meliorate; ameliorate; mend; amend.
        [1913 Webster]
";

    const AARDVARK: &str = "aardvark \\aard\"vark`\\ ([aum]rd\"v[aum]rk`), n. [D., earth-pig.]
   (Zool.)
   An edentate mammal, of the genus {Orycteropus} ({Orycteropus
   afer}), somewhat resembling a pig, common in some parts of
   Southern Africa. [Spelled also {Aard-vark}.]

   Syn: Syn. --ant bear, anteater, {Orycteropus afer}, oryctere,
        orycterope
        [1913 Webster WordNet 1.5]
";

    #[test]
    fn a_header_gives_pos_forms_and_etymology() {
        let e = parse_entry(GOOSE, "Goose").unwrap();
        assert_eq!(e.headword, "Goose");
        assert_eq!(e.pos, Some(Pos::Noun));
        assert_eq!(e.forms, ["Geese"]);
        let etymology = e.etymology.unwrap();
        assert!(
            etymology.starts_with("OE. gos, AS. g\u{6f}\u{304}s"),
            "{etymology}"
        );
        assert!(
            etymology.ends_with("Cf. Gander, Gannet, Ganza, Gosling."),
            "{etymology}"
        );
        assert_eq!(e.senses.len(), 1, "the Note is not a sense");
        assert!(e.senses[0]
            .definition
            .starts_with("Any large web-footen bird of the subfamily Anserinæ, and"));
    }

    #[test]
    fn numbered_senses_keep_their_quotations_and_synonyms() {
        let e = parse_entry(BETTER_V, "Better").unwrap();
        assert_eq!(e.pos, Some(Pos::Verb));
        assert_eq!(e.forms, ["Bettered", "Bettering"]);
        assert_eq!(
            e.etymology.as_deref(),
            Some("AS. beterian, betrian, fr. betera better. See Better, a.")
        );
        assert_eq!(e.senses.len(), 2);
        assert_eq!(
            e.senses[0].definition,
            "To improve or ameliorate; to increase the good qualities of."
        );
        assert_eq!(
            e.senses[0].examples,
            [
                "Love betters what is best.",
                "He thought to better his circumstances."
            ]
        );
        assert_eq!(
            e.senses[1].definition,
            "To improve the condition of, morally, physically, financially, socially, or otherwise."
        );
        assert_eq!(
            e.synonyms,
            ["To improve", "meliorate", "ameliorate", "mend", "amend"]
        );
    }

    #[test]
    fn an_unnumbered_entry_has_one_sense() {
        let e = parse_entry(AARDVARK, "aardvark").unwrap();
        assert_eq!(e.headword, "aardvark");
        assert_eq!(e.pos, Some(Pos::Noun));
        assert_eq!(e.etymology.as_deref(), Some("D., earth-pig."));
        assert_eq!(e.senses.len(), 1);
        assert!(e.senses[0]
            .definition
            .starts_with("(Zool.) An edentate mammal, of the genus Orycteropus"));
        assert!(
            e.synonyms.contains(&"anteater".to_string()),
            "{:?}",
            e.synonyms
        );
    }

    #[test]
    fn characters_and_cross_references_become_plain_text() {
        assert_eq!(clean("G[=o]d, {Gather}"), "G\u{6f}\u{304}d, Gather");
        assert_eq!(clean("caf['e]  [Obs.]"), "cafe\u{301} [Obs.]");
        assert_eq!(clean("r[i^]n"), "ri\u{306}n");
        assert_eq!(clean("[root]11"), "√11");
        assert_eq!(
            clean("(Pteromus [1913 Webster]), especially"),
            "(Pteromus), especially"
        );
    }

    #[test]
    fn index_numbers_are_dictd_base_64() {
        assert_eq!(decode_b64("A"), Some(0));
        assert_eq!(decode_b64("Bc"), Some(64 + 28));
        assert_eq!(decode_b64("DwG+"), Some(((3 * 64 + 48) * 64 + 6) * 64 + 62));
        assert_eq!(decode_b64("a-b"), None);
        let index =
            parse_index("00-database-info\tKj\tuk\nrun\tDwG+\tG/\n", Path::new("i")).unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!((index[0].headword.as_str(), index[0].line), ("run", 2));
        let err = parse_index("run\tDwG+\n", Path::new("gcide.index")).unwrap_err();
        assert!(err
            .to_string()
            .contains("gcide.index:1: expected headword<TAB>offset<TAB>length"));
        let err = parse_index("run\tD?\tG/\n", Path::new("gcide.index")).unwrap_err();
        assert!(err.to_string().contains("offset is not dictd base 64"));
    }

    #[test]
    fn an_index_past_the_end_of_the_dict_names_its_line() {
        let index = parse_index("goose\tA\tZ\nrun\tBA\tZ\n", Path::new("gcide.index")).unwrap();
        let dict = vec![b'x'; 64];
        let err = entry_texts(&index, &dict, Path::new("gcide.index")).unwrap_err();
        assert!(
            err.to_string()
                .contains("gcide.index:2: \"run\" points at bytes 64..89 past the end"),
            "{err}"
        );
        // A stray Windows-1252 byte (as in GCIDE's "Black Friday") is decoded, not fatal.
        let mut text = b"The stock market\x92s drop, caf\xc3\xa9 \xe9t\xe9 ".to_vec();
        text.resize(25 + 64, b' ');
        let texts = entry_texts(&index[..1], &text[..25], Path::new("gcide.index")).unwrap();
        assert_eq!(texts[0].1, "The stock market\u{2019}s drop, ");
        assert_eq!(
            decode_mixed(&text[..34]),
            "The stock market\u{2019}s drop, caf\u{e9} \u{e9}t\u{e9}"
        );
    }
}
