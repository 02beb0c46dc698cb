//! Renders one dictd entry (GCIDE, FOLDOC, the Jargon File) as the prose of an HTML page:
//! paragraphs, with each `{cross-reference}` a link to its own page when the site has one.
//!
//! For GCIDE two kinds of block are removed first, so that the thesaurus is not copied from
//! its own answer key: blocks that came from WordNet (they end with a `[WordNet 1.5]` marker;
//! WordNet is what the thesaurus is scored against) and `Syn:` lists (a ready-made thesaurus).
//! Source markers (`[1913 Webster]`) are dropped and GCIDE's character codes (`[=o]`) decoded.

use dictionary_search::source::gcide;

/// How one site's entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// GCIDE: source markers, WordNet blocks, `Syn:` lists and character codes.
    Gcide,
    /// FOLDOC and the Jargon File: plain text with `{links}`.
    Plain,
}

/// The URL path segment of a headword: lowercase, spaces as `_`, every byte outside RFC 3986's
/// unreserved characters percent-encoded in uppercase hex (so the link is already canonical).
pub fn slug(headword: &str) -> String {
    let mut out = String::with_capacity(headword.len());
    for c in headword.trim().to_lowercase().chars() {
        match c {
            'a'..='z' | '0'..='9' | '-' | '.' | '~' => out.push(c),
            ' ' => out.push('_'),
            _ => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
        }
    }
    out
}

/// The key a headword or a cross-reference is found under: lowercase, GCIDE's stress and
/// syllable marks (`Life"less*ly`) removed, spaces collapsed. An underscore is a space, as
/// in Wikipedia's titles: the page's path writes a space as `_` ([`slug`]), and a path is
/// the same URL whether `_` is written plain or as `%5F`, so `mod_autoindex` and
/// `mod autoindex` can only be one page.
pub fn key(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|c| !matches!(c, '"' | '*' | '`'))
        .map(|c| if c == '_' { ' ' } else { c })
        .collect();
    cleaned
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

/// The entry's paragraphs, each a list of its lines, after the removals its flavour asks for.
pub fn paragraphs(text: &str, flavour: Flavour) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let kept: Vec<&str> = match flavour {
        Flavour::Plain => lines,
        Flavour::Gcide => without_wordnet(&lines),
    };
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    let mut skip_indent: Option<usize> = None;
    for line in kept {
        let indent = line.len() - line.trim_start().len();
        if let Some(at) = skip_indent {
            if !line.trim().is_empty() && indent > at {
                continue;
            }
            skip_indent = None;
        }
        if flavour == Flavour::Gcide && line.trim_start().starts_with("Syn:") {
            skip_indent = Some(indent);
            continue;
        }
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(join(&current));
                current.clear();
            }
            continue;
        }
        current.push(line.trim());
    }
    if !current.is_empty() {
        out.push(join(&current));
    }
    out
}

fn join(lines: &[&str]) -> String {
    lines.join(" ")
}

/// GCIDE's lines without the blocks that came from WordNet, and without source markers. A
/// block is everything since the previous marker (or the entry's start) up to its marker.
fn without_wordnet<'t>(lines: &[&'t str]) -> Vec<&'t str> {
    let mut out = Vec::with_capacity(lines.len());
    let mut block_start = 0;
    for (i, line) in lines.iter().enumerate() {
        let Some(source) = gcide::source_marker(line) else {
            continue;
        };
        if !source.contains("WordNet") {
            out.extend(&lines[block_start..i]);
        }
        block_start = i + 1;
    }
    out.extend(&lines[block_start..]);
    out
}

/// Escapes text for HTML.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// One paragraph as HTML: text escaped, each `{x}` a link to `/w/<slug>.html` when `exists`
/// says the site has that page, else in italics.
pub fn paragraph_html(text: &str, flavour: Flavour, exists: &dyn Fn(&str) -> bool) -> String {
    let plain = |s: &str| match flavour {
        Flavour::Gcide => escape(&gcide::clean(s)),
        Flavour::Plain => escape(&s.split_whitespace().collect::<Vec<_>>().join(" ")),
    };
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(len) = rest[open..].find('}') else {
            break;
        };
        out.push_str(&plain(&rest[..open]));
        // `plain` trims its ends: keep the spaces around a link.
        if rest[..open].ends_with(' ') && !out.is_empty() {
            out.push(' ');
        }
        let inner = &rest[open + 1..open + len];
        let word = key(inner);
        let shown = plain(&inner.replace(['"', '*', '`'], ""));
        if !word.is_empty() && exists(&word) {
            out.push_str(&format!("<a href=\"/w/{}.html\">{shown}</a>", slug(&word)));
        } else {
            out.push_str(&format!("<i>{shown}</i>"));
        }
        rest = &rest[open + len + 1..];
        if rest.starts_with(' ') {
            out.push(' ');
        }
    }
    out.push_str(&plain(rest));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Two real GCIDE entries (dict-gcide 0.48.5), the second from WordNet.
    const LIFELESS: &str = "Lifeless \\Life\"less\\, a.\n   Destitute of life, or deprived of life; not containing, or\n   inhabited by, living beings or vegetation; dead. -- {Life\"less*ly}, adv. --\n   {Life\"less*ness}, n.\n\n   Syn: Dead; soulless; inanimate; torpid; inert; inactive;\n        dull; heavy; unanimated; spiritless; frigid; pointless.\n\n   Usage: {Lifeless}, {Dull}, {Inanimate}. In a moral sense.\n   [1913 Webster]\n";
    const LIFELESSNESS_WN: &str = "lifelessness \\life\"less*ness\\ n.\n   not having life.\n\n   Syn: inanimateness.\n        [WordNet 1.5]\n";

    #[test]
    fn gcide_drops_syn_lists_and_source_markers_and_keeps_prose() {
        let paras = paragraphs(LIFELESS, Flavour::Gcide);
        let all = paras.join("\n");
        assert!(!all.contains("Syn:"), "{all}");
        assert!(
            !all.contains("soulless"),
            "the Syn: continuation is gone: {all}"
        );
        assert!(!all.contains("[1913 Webster]"), "{all}");
        assert!(all.contains("Destitute of life"), "{all}");
        assert!(all.contains("Usage:"), "{all}");
        assert_eq!(paras.len(), 2, "{paras:?}");
    }

    #[test]
    fn gcide_drops_blocks_from_wordnet_whole() {
        let text = format!("{LIFELESS}\n{LIFELESSNESS_WN}");
        let all = paragraphs(&text, Flavour::Gcide).join("\n");
        assert!(!all.contains("not having life"), "{all}");
        assert!(!all.contains("inanimateness"), "{all}");
        assert!(all.contains("Destitute of life"), "{all}");
        assert!(paragraphs(LIFELESSNESS_WN, Flavour::Gcide).is_empty());
    }

    #[test]
    fn plain_entries_keep_everything() {
        let jargon = "leaky heap\n n.\n\n    [Cambridge] An {arena} with a {memory leak}.\n";
        let paras = paragraphs(jargon, Flavour::Plain);
        assert_eq!(
            paras,
            vec![
                "leaky heap n.",
                "[Cambridge] An {arena} with a {memory leak}."
            ]
        );
    }

    #[test]
    fn cross_references_link_to_pages_that_exist() {
        let exists = |w: &str| w == "memory leak" || w == "lifelessly";
        let html = paragraph_html(
            "[Cambridge] An {arena} with a {memory leak}.",
            Flavour::Plain,
            &exists,
        );
        assert_eq!(
            html,
            "[Cambridge] An <i>arena</i> with a <a href=\"/w/memory_leak.html\">memory leak</a>."
        );
        let html = paragraph_html("dead. -- {Life\"less*ly}, adv.", Flavour::Gcide, &exists);
        assert_eq!(
            html,
            "dead. -- <a href=\"/w/lifelessly.html\">Lifelessly</a>, adv."
        );
    }

    #[test]
    fn gcide_character_codes_are_decoded_and_html_escaped() {
        let html = paragraph_html("g[=o]s <b> & more", Flavour::Gcide, &|_| false);
        assert_eq!(html, "go\u{304}s &lt;b&gt; &amp; more");
    }

    #[test]
    fn slugs_are_lowercase_ascii_with_the_rest_percent_encoded() {
        assert_eq!(slug("Memory Leak"), "memory_leak");
        assert_eq!(slug("café"), "caf%C3%A9");
        assert_eq!(slug("C++"), "c%2B%2B");
        assert_eq!(key("Life\"less*ly  Thing"), "lifelessly thing");
        assert_eq!(key("mod_autoindex"), "mod autoindex");
        assert_eq!(slug(&key("mod_autoindex")), "mod_autoindex");
    }
}
