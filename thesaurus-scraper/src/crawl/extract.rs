//! What a crawler takes from an HTML page: its title, its visible prose and its links.
//!
//! Prose is the text a reader reads: scripts, styles, navigation, headers and footers, forms
//! and code (`pre`, `code`) are left out; block elements end a paragraph. Links come from
//! `<a href>` and `<area href>`, resolved against the page (or its `<base href>`) and
//! canonicalised, without `rel="nofollow"` ones. A page whose `<meta name="robots">` says
//! `noindex` gives no text, `nofollow` no links. html5ever parses whatever it is given, so a
//! malformed page gives what can be read of it and never a panic.

use scraper::{Html, Node};
use url::Url;

use super::canon;

/// The most links kept from one page.
pub const LINKS_PER_PAGE_MAX: usize = 2_000;
/// The most bytes of prose kept from one page.
pub const TEXT_BYTES_MAX: usize = 1 << 20;
/// The deepest nesting of elements parsed. html5ever's tree building slows with depth
/// (100,000 nested `<div>`s, 600 KB, take over a minute), so a deeper page is refused
/// before it is parsed; real pages nest a few dozen deep.
pub const NESTING_MAX: usize = 1_024;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    #[error("elements nested over {NESTING_MAX} deep ({0} at least)")]
    TooDeep(usize),
}

/// Container elements that need their end tag: what deep nesting is made of.
const CONTAINERS: [&[u8]; 16] = [
    b"div",
    b"span",
    b"section",
    b"article",
    b"table",
    b"ul",
    b"ol",
    b"dl",
    b"blockquote",
    b"b",
    b"i",
    b"em",
    b"strong",
    b"font",
    b"center",
    b"a",
];

/// The deepest nesting of container elements, counted by a scan of the tags (`<x` opens,
/// `</x` closes): cheap, and not fooled by elements whose end tags are optional.
pub fn nesting(html: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut i = 0;
    while let Some(at) = html[i..].iter().position(|&b| b == b'<') {
        i += at + 1;
        let close = html.get(i) == Some(&b'/');
        let start = i + usize::from(close);
        let len = html[start..]
            .iter()
            .take(12)
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let name = html[start..start + len].to_ascii_lowercase();
        if CONTAINERS.contains(&name.as_slice()) {
            if close {
                depth = depth.saturating_sub(1);
            } else {
                depth += 1;
                deepest = deepest.max(depth);
            }
        }
    }
    deepest
}

/// What a page gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extracted {
    pub title: String,
    /// Paragraphs separated by `\n`, spaces collapsed.
    pub text: String,
    /// Canonical, distinct, in page order.
    pub links: Vec<Url>,
}

/// Elements whose content is not prose.
fn skipped(name: &str) -> bool {
    matches!(
        name,
        "script"
            | "style"
            | "noscript"
            | "template"
            | "nav"
            | "header"
            | "footer"
            | "aside"
            | "form"
            | "button"
            | "select"
            | "textarea"
            | "iframe"
            | "svg"
            | "math"
            | "pre"
            | "code"
            | "head"
            | "title"
    )
}

/// Elements that end a paragraph.
fn block(name: &str) -> bool {
    matches!(
        name,
        "p" | "div"
            | "br"
            | "li"
            | "ul"
            | "ol"
            | "dl"
            | "dt"
            | "dd"
            | "h1"
            | "h2"
            | "h3"
            | "h4"
            | "h5"
            | "h6"
            | "tr"
            | "td"
            | "th"
            | "table"
            | "blockquote"
            | "section"
            | "article"
            | "main"
            | "body"
            | "hr"
            | "figcaption"
            | "caption"
    )
}

pub fn extract(html: &str, url: &Url) -> Result<Extracted, ExtractError> {
    let depth = nesting(html.as_bytes());
    if depth > NESTING_MAX {
        return Err(ExtractError::TooDeep(depth));
    }
    let doc = Html::parse_document(html);
    let mut out = Extracted::default();
    let mut base = url.clone();
    let (mut noindex, mut nofollow) = (false, false);
    // First pass over the head's few elements: the title, <base>, <meta name=robots>.
    for node in doc.tree.root().descendants() {
        let Node::Element(e) = node.value() else {
            continue;
        };
        match e.name() {
            "title" if out.title.is_empty() => {
                let t: String = node
                    .children()
                    .filter_map(|c| c.value().as_text().map(|t| t.to_string()))
                    .collect();
                out.title = collapse(&t);
            }
            "base" => {
                if let Some(b) = e.attr("href").and_then(|h| url.join(h).ok()) {
                    base = b;
                }
            }
            "meta"
                if e.attr("name")
                    .is_some_and(|n| n.eq_ignore_ascii_case("robots")) =>
            {
                let content = e.attr("content").unwrap_or_default().to_ascii_lowercase();
                noindex |= content.contains("noindex") || content.contains("none");
                nofollow |= content.contains("nofollow") || content.contains("none");
            }
            "body" => break,
            _ => {}
        }
    }

    let mut seen = std::collections::HashSet::new();
    let mut text = String::new();
    let mut para = String::new();
    // An explicit stack (not recursion): a page may nest deeper than a thread's stack.
    let mut stack = vec![(doc.tree.root(), true)];
    while let Some((node, entering)) = stack.pop() {
        match node.value() {
            Node::Element(e) => {
                let name = e.name();
                if entering {
                    if !nofollow
                        && matches!(name, "a" | "area")
                        && out.links.len() < LINKS_PER_PAGE_MAX
                        && !e.attr("rel").is_some_and(|r| r.contains("nofollow"))
                    {
                        if let Some(link) = e.attr("href").and_then(|h| canon::resolve(&base, h)) {
                            if seen.insert(link.as_str().to_string()) {
                                out.links.push(link);
                            }
                        }
                    }
                    if skipped(name) || e.attr("hidden").is_some() {
                        // Links inside navigation still count; its text does not.
                        if !nofollow && matches!(name, "nav" | "header" | "footer" | "aside") {
                            collect_links(node, &base, &mut seen, &mut out.links);
                        }
                        continue;
                    }
                    stack.push((node, false));
                    for child in node.children().rev() {
                        stack.push((child, true));
                    }
                } else if block(name) {
                    end_paragraph(&mut text, &mut para);
                }
            }
            Node::Text(t) if entering && text.len() + para.len() < TEXT_BYTES_MAX => {
                para.push_str(t);
            }
            Node::Document | Node::Fragment if entering => {
                stack.push((node, false));
                for child in node.children().rev() {
                    stack.push((child, true));
                }
            }
            _ => {}
        }
    }
    end_paragraph(&mut text, &mut para);
    if !noindex {
        text.truncate(floor_char_boundary(&text, TEXT_BYTES_MAX));
        out.text = text;
    }
    Ok(out)
}

fn collect_links(
    node: ego_tree::NodeRef<'_, Node>,
    base: &Url,
    seen: &mut std::collections::HashSet<String>,
    links: &mut Vec<Url>,
) {
    for d in node.descendants() {
        if links.len() >= LINKS_PER_PAGE_MAX {
            return;
        }
        let Node::Element(e) = d.value() else {
            continue;
        };
        if matches!(e.name(), "a" | "area")
            && !e.attr("rel").is_some_and(|r| r.contains("nofollow"))
        {
            if let Some(link) = e.attr("href").and_then(|h| canon::resolve(base, h)) {
                if seen.insert(link.as_str().to_string()) {
                    links.push(link);
                }
            }
        }
    }
}

fn end_paragraph(text: &mut String, para: &mut String) {
    let p = collapse(para);
    if !p.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&p);
    }
    para.clear();
}

fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn floor_char_boundary(s: &str, at: usize) -> usize {
    if at >= s.len() {
        return s.len();
    }
    (0..=at).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(html: &str) -> Extracted {
        extract(
            html,
            &Url::parse("http://127.0.0.2:8081/w/goose.html").unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn prose_without_navigation_scripts_or_code() {
        let e = page(
            "<html><head><title>Goose — GCIDE</title><style>p{}</style></head><body>\
             <header><nav><a href=\"/\">GCIDE</a> <a href=\"/browse/a-1.html\">A</a></nav></header>\
             <main><h1>Goose</h1><p>Any large <a href=\"gander.html\">web-footed</a> bird.</p>\
             <p>A  silly\n creature;<br>a simpleton.</p><pre>int x;</pre>\
             <script>var a = 1;</script><code>x()</code></main>\
             <footer><p>Licence text.</p></footer></body></html>",
        );
        assert_eq!(e.title, "Goose — GCIDE");
        assert_eq!(
            e.text,
            "Goose\nAny large web-footed bird.\nA silly creature;\na simpleton."
        );
        let links: Vec<&str> = e.links.iter().map(Url::as_str).collect();
        assert_eq!(
            links,
            vec![
                "http://127.0.0.2:8081/",
                "http://127.0.0.2:8081/browse/a-1.html",
                "http://127.0.0.2:8081/w/gander.html"
            ]
        );
    }

    #[test]
    fn base_href_nofollow_and_meta_robots_are_obeyed() {
        let e = page(
            "<html><head><base href=\"http://127.0.0.2:8081/docs/\"></head><body>\
             <a href=\"a.html\">a</a><a rel=\"nofollow\" href=\"b.html\">b</a>\
             <a href=\"a.html#x\">again</a><a href=\"mailto:x@y\">mail</a></body></html>",
        );
        let links: Vec<&str> = e.links.iter().map(Url::as_str).collect();
        assert_eq!(links, vec!["http://127.0.0.2:8081/docs/a.html"]);
        let e = page(
            "<html><head><meta name=\"ROBOTS\" content=\"noindex, nofollow\"></head>\
             <body><p>secret</p><a href=\"/x\">x</a></body></html>",
        );
        assert_eq!((e.text.as_str(), e.links.len()), ("", 0));
    }

    #[test]
    fn malformed_html_gives_what_can_be_read() {
        let bad = "<html><body><p>kept text</table></td><div><p><b>unclosed <a href=\"/w/\u{fffd}\u{fffd} < & <p";
        let e = page(bad);
        assert!(e.text.starts_with("kept text"), "{e:?}");
        let deep = "<div>".repeat(NESTING_MAX) + "deep text";
        assert_eq!(page(&deep).text, "deep text");
        let url = Url::parse("http://h/").unwrap();
        let deeper = "<div><b>".repeat(100_000) + "deep text";
        assert_eq!(extract(&deeper, &url), Err(ExtractError::TooDeep(200_000)));
        // Elements with optional end tags are not nesting.
        assert_eq!(
            nesting("<p>a<p>b<li>c</div><div>".repeat(5_000).as_bytes()),
            1
        );
    }

    #[test]
    fn limits_hold() {
        let many: String = (0..LINKS_PER_PAGE_MAX + 50)
            .map(|i| format!("<a href=\"/p{i}\">x</a>"))
            .collect();
        assert_eq!(page(&many).links.len(), LINKS_PER_PAGE_MAX);
        let long = format!("<p>{}</p>", "word ".repeat(TEXT_BYTES_MAX / 4));
        assert!(page(&long).text.len() <= TEXT_BYTES_MAX);
    }
}
