//! URL canonicalisation: one spelling per page, so that the URL-seen set sees a page once
//! however it is linked.
//!
//! On top of what the `url` crate's WHATWG parsing does (scheme and host lowercased, default
//! port dropped, `.` and `..` resolved, an empty path made `/`), a canonical URL here has:
//! no fragment; percent-escapes of unreserved characters decoded and the others in uppercase
//! hex; an empty query removed; `index.html` kept as written (a server may serve both). Only
//! `http` and `https` are crawled.

use url::Url;

/// The most bytes a URL may have; longer ones are dropped (real crawlers cap at 2 KB).
pub const URL_BYTES_MAX: usize = 2048;

/// Resolves `href` against `base` and canonicalises it; `None` for what is not crawlable
/// (`mailto:`, `javascript:`, a bad URL, an over-long one).
pub fn resolve(base: &Url, href: &str) -> Option<Url> {
    let href = href.trim();
    if href.is_empty() || href == "#" {
        return None;
    }
    let url = base.join(href).ok()?;
    canonical(url)
}

/// Canonicalises an absolute URL.
pub fn canonical(mut url: Url) -> Option<Url> {
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return None;
    }
    url.set_fragment(None);
    let path = normalise_escapes(url.path());
    url.set_path(&path);
    if let Some(q) = url.query() {
        if q.is_empty() {
            url.set_query(None);
        } else {
            let q = normalise_escapes(q);
            url.set_query(Some(&q));
        }
    }
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (url.as_str().len() <= URL_BYTES_MAX).then_some(url)
}

/// Decodes `%XX` of unreserved characters (`A-Z a-z 0-9 - . _ ~`), uppercases the hex of the
/// others; a `%` that starts no escape is encoded as `%25`.
fn normalise_escapes(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(v) if v.is_ascii_alphanumeric() || b"-._~".contains(&v) => {
                    out.push(char::from(v))
                }
                Some(v) => out.push_str(&format!("%{v:02X}")),
                None => {
                    out.push_str("%25");
                    i += 1;
                    continue;
                }
            }
            i += 3;
        } else {
            out.push(char::from(b[i]));
            i += 1;
        }
    }
    out
}

/// The host a URL's politeness is kept for: `host:port` (the port always written), the
/// frontier's hash tag.
pub fn host_key(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    )
}

/// What identifies a URL within its host: path and query.
pub fn path_key(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(base: &str, href: &str) -> Option<String> {
        resolve(&Url::parse(base).unwrap(), href).map(|u| u.to_string())
    }

    #[test]
    fn one_spelling_per_page() {
        let base = "http://127.0.0.2:8081/w/goose.html";
        let want = Some("http://127.0.0.2:8081/w/gander.html".to_string());
        for href in [
            "gander.html",
            "/w/gander.html",
            "./gander.html",
            "../w/gander.html",
            "gander.html#etymology",
            "HTTP://127.0.0.2:8081/w/gander.html",
            "/w/%67ander.html",
            "/w/gander.html?",
            "http://user:pw@127.0.0.2:8081/w/gander.html",
        ] {
            assert_eq!(canon(base, href), want, "{href}");
        }
    }

    #[test]
    fn escapes_are_uppercase_and_queries_kept() {
        let base = "http://h:80/";
        assert_eq!(
            canon(base, "/w/caf%c3%a9.html").unwrap(),
            "http://h/w/caf%C3%A9.html"
        );
        assert_eq!(canon(base, "/a?moved=1").unwrap(), "http://h/a?moved=1");
        assert_eq!(canon(base, "/100%").unwrap(), "http://h/100%25");
        assert_eq!(canon(base, "/a b").unwrap(), "http://h/a%20b");
    }

    #[test]
    fn what_is_not_crawlable_is_dropped() {
        let base = "http://h/";
        for href in [
            "mailto:a@b",
            "javascript:void(0)",
            "ftp://h/x",
            "",
            "#",
            "http://",
        ] {
            assert_eq!(canon(base, href), None, "{href}");
        }
        let long = format!("/{}", "a".repeat(URL_BYTES_MAX));
        assert_eq!(canon(base, &long), None);
    }

    #[test]
    fn host_keys_always_name_the_port() {
        let u = Url::parse("http://127.0.0.2/a?b=c").unwrap();
        assert_eq!(host_key(&u), "127.0.0.2:80");
        assert_eq!(path_key(&u), "/a?b=c");
        let u = Url::parse("https://Example.ORG:8443/").unwrap();
        assert_eq!(host_key(&u), "example.org:8443");
    }
}
