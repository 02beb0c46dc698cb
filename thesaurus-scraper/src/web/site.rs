//! The pages of one local web host: either a dictd dictionary rendered one page per headword
//! (with browse pages that link every headword, so the whole site is reachable from `/`), or a
//! directory served as it is (Debian's HTML documentation).
//!
//! URL layout of a dictionary site:
//!
//! ```text
//! /                        the letters, each with its number of browse pages
//! /browse/<letter>-<n>.html  up to BROWSE_PAGE_WORDS headwords, with previous/next links
//! /w/<slug>.html           one headword: its entries as paragraphs, cross-references linked
//! ```
//!
//! Every page has a navigation header and a licence footer around the prose, as real sites do,
//! so a crawler's text extraction has something to leave out.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};

use dictionary_search::source::gcide;

use super::render::{self, escape, Flavour};

/// Headwords per browse page.
pub const BROWSE_PAGE_WORDS: usize = 200;
/// The most files a directory site lists (its sitemap and page list).
pub const DIR_FILES_MAX: usize = 200_000;

/// A page to send.
#[derive(Debug, Clone)]
pub struct Page {
    pub body: Vec<u8>,
    pub content_type: &'static str,
}

impl Page {
    fn html(body: String) -> Page {
        Page {
            body: body.into_bytes(),
            content_type: "text/html; charset=utf-8",
        }
    }

    pub fn is_html(&self) -> bool {
        self.content_type.starts_with("text/html")
    }
}

/// Where a host's pages come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A dictd dictionary: `<prefix>.index` and `<prefix>.dict.dz`.
    Dictd { prefix: PathBuf, flavour: Flavour },
    /// A directory of files, served as they are.
    Dir(PathBuf),
}

impl Source {
    /// `gcide`, `foldoc`, `jargon` (Debian's dict-* packages under /usr/share/dictd),
    /// `dictd:/path/prefix` or `dir:/path`.
    pub fn parse(spec: &str) -> Result<Source, String> {
        let dictd = |prefix: &str, flavour| Source::Dictd {
            prefix: PathBuf::from(prefix),
            flavour,
        };
        Ok(match spec {
            "gcide" => dictd("/usr/share/dictd/gcide", Flavour::Gcide),
            "foldoc" => dictd("/usr/share/dictd/foldoc", Flavour::Plain),
            "jargon" => dictd("/usr/share/dictd/jargon", Flavour::Plain),
            _ => match spec.split_once(':') {
                Some(("dictd", p)) => dictd(
                    p,
                    if p.contains("gcide") {
                        Flavour::Gcide
                    } else {
                        Flavour::Plain
                    },
                ),
                Some(("dir", p)) => Source::Dir(PathBuf::from(p)),
                _ => {
                    return Err(format!(
                        "{spec:?} is not a source: gcide, foldoc, jargon, dictd:PREFIX or dir:PATH"
                    ))
                }
            },
        })
    }
}

/// Which headwords of a dictionary to serve.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Slice {
    /// Only headwords from this one (inclusive) ...
    pub from: Option<String>,
    /// ... to this one (exclusive), compared as lowercase keys.
    pub to: Option<String>,
    /// At most this many, spread evenly over the range.
    pub pages: Option<usize>,
}

/// A dictionary site: the dict text in memory and, per headword key, where its entries are.
pub struct DictdSite {
    title: String,
    attribution: &'static str,
    flavour: Flavour,
    dict: Vec<u8>,
    /// Key (lowercase headword) → the headword as first written and its entries' byte ranges.
    words: BTreeMap<String, (String, Vec<Range<usize>>)>,
    /// Browse pages per letter: the keys on each.
    letters: BTreeMap<char, Vec<Vec<String>>>,
}

/// A directory site.
pub struct DirSite {
    root: PathBuf,
    /// URL paths of its HTML files, sorted.
    html: Vec<String>,
}

pub enum Site {
    Dictd(DictdSite),
    Dir(DirSite),
}

fn letter_of(key: &str) -> char {
    key.chars()
        .next()
        .filter(char::is_ascii_lowercase)
        .unwrap_or('0')
}

impl Site {
    pub fn open(source: &Source, slice: &Slice) -> anyhow::Result<Site> {
        match source {
            Source::Dictd { prefix, flavour } => {
                Ok(Site::Dictd(DictdSite::open(prefix, *flavour, slice)?))
            }
            Source::Dir(root) => Ok(Site::Dir(DirSite::open(root)?)),
        }
    }

    /// The page at a decoded URL path, `None` if there is none.
    pub fn page(&self, path: &str) -> Option<Page> {
        match self {
            Site::Dictd(site) => site.page(path),
            Site::Dir(site) => site.page(path),
        }
    }

    /// The URL paths of every HTML page, percent-encoded as they are linked.
    pub fn html_paths(&self) -> Vec<String> {
        match self {
            Site::Dictd(site) => site.html_paths(),
            Site::Dir(site) => site.html.clone(),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Site::Dictd(site) => format!("{}, {} headwords", site.title, site.words.len()),
            Site::Dir(site) => format!("{}, {} HTML files", site.root.display(), site.html.len()),
        }
    }
}

impl DictdSite {
    pub fn open(prefix: &Path, flavour: Flavour, slice: &Slice) -> anyhow::Result<DictdSite> {
        let index_path = prefix.with_extension("index");
        let dict_path = prefix.with_extension("dict.dz");
        let index_text = std::fs::read(&index_path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", index_path.display()))?;
        let index = gcide::parse_index(&gcide::decode_mixed(&index_text), &index_path)?;
        let dict = gcide::read_dict(&dict_path)?;
        let name = prefix
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let (title, attribution) = match name.as_str() {
            "gcide" => ("GCIDE", "The GNU Collaborative International Dictionary of English (GCIDE), from Webster's Revised Unabridged Dictionary (1913) and other sources, under the GNU General Public Licence."),
            "foldoc" => ("FOLDOC", "The Free On-line Dictionary of Computing, © Denis Howe, under the GNU Free Documentation Licence."),
            "jargon" => ("The Jargon File", "The Jargon File 4.4.7, in the public domain."),
            _ => ("A dictionary", "From a dictd dictionary."),
        };
        let mut words: BTreeMap<String, (String, Vec<Range<usize>>)> = BTreeMap::new();
        for e in &index {
            let k = render::key(&e.headword);
            if k.is_empty() || k.contains('/') {
                continue;
            }
            let range = e.offset as usize..(e.offset + e.length) as usize;
            if range.end > dict.len() {
                anyhow::bail!(
                    "{}:{}: {:?} points past the end of {}",
                    index_path.display(),
                    e.line,
                    e.headword,
                    dict_path.display()
                );
            }
            let (_, ranges) = words
                .entry(k)
                .or_insert_with(|| (e.headword.clone(), Vec::new()));
            if !ranges.contains(&range) {
                ranges.push(range);
            }
        }
        let in_range = |k: &String| {
            slice.from.as_ref().is_none_or(|f| k >= f) && slice.to.as_ref().is_none_or(|t| k < t)
        };
        words.retain(|k, _| in_range(k));
        if let Some(n) = slice.pages {
            let total = words.len();
            if n < total {
                let keep: std::collections::HashSet<usize> =
                    (0..n).map(|i| i * total / n.max(1)).collect();
                let mut i = 0;
                words.retain(|_, _| {
                    i += 1;
                    keep.contains(&(i - 1))
                });
            }
        }
        let mut letters: BTreeMap<char, Vec<Vec<String>>> = BTreeMap::new();
        for k in words.keys() {
            let pages = letters.entry(letter_of(k)).or_default();
            match pages.last_mut() {
                Some(page) if page.len() < BROWSE_PAGE_WORDS => page.push(k.clone()),
                _ => pages.push(vec![k.clone()]),
            }
        }
        Ok(DictdSite {
            title: title.to_string(),
            attribution,
            flavour,
            dict,
            words,
            letters,
        })
    }

    fn frame(&self, title: &str, main: &str) -> String {
        let mut nav = format!("<a href=\"/\">{}</a>", escape(&self.title));
        for (letter, pages) in &self.letters {
            if !pages.is_empty() {
                nav.push_str(&format!(
                    " <a href=\"/browse/{letter}-1.html\">{}</a>",
                    letter.to_ascii_uppercase()
                ));
            }
        }
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{} — {}</title></head>\n<body>\n<header><nav>{nav}</nav></header>\n<main>\n{main}</main>\n<footer><p>{}</p></footer>\n</body></html>\n",
            escape(title),
            escape(&self.title),
            escape(self.attribution)
        )
    }

    fn page(&self, path: &str) -> Option<Page> {
        if path == "/" || path == "/index.html" {
            let mut main = format!("<h1>{}</h1>\n<ul>\n", escape(&self.title));
            for (letter, pages) in &self.letters {
                main.push_str(&format!(
                    "<li><a href=\"/browse/{letter}-1.html\">{}</a> ({} pages)</li>\n",
                    letter.to_ascii_uppercase(),
                    pages.len()
                ));
            }
            main.push_str("</ul>\n");
            return Some(Page::html(self.frame("Index", &main)));
        }
        if let Some(rest) = path.strip_prefix("/browse/") {
            let (letter, n) = rest.strip_suffix(".html")?.split_once('-')?;
            let letter = letter.chars().next().filter(|_| letter.len() == 1)?;
            let n: usize = n.parse().ok()?;
            let pages = self.letters.get(&letter)?;
            let keys = pages.get(n.checked_sub(1)?)?;
            let mut main = format!(
                "<h1>{} ({n} of {})</h1>\n<ul>\n",
                letter.to_ascii_uppercase(),
                pages.len()
            );
            for k in keys {
                main.push_str(&format!(
                    "<li><a href=\"/w/{}.html\">{}</a></li>\n",
                    render::slug(k),
                    escape(&self.words[k].0)
                ));
            }
            main.push_str("</ul>\n<p>");
            if n > 1 {
                main.push_str(&format!(
                    "<a href=\"/browse/{letter}-{}.html\">previous</a> ",
                    n - 1
                ));
            }
            if n < pages.len() {
                main.push_str(&format!(
                    "<a href=\"/browse/{letter}-{}.html\">next</a>",
                    n + 1
                ));
            }
            main.push_str("</p>\n");
            return Some(Page::html(self.frame(&letter.to_string(), &main)));
        }
        let word = path.strip_prefix("/w/")?.strip_suffix(".html")?;
        let k = word.replace('_', " ");
        let (headword, ranges) = self.words.get(&k)?;
        let exists = |w: &str| self.words.contains_key(w);
        let mut main = format!("<article>\n<h1>{}</h1>\n", escape(headword));
        for range in ranges {
            let text = gcide::decode_mixed(&self.dict[range.clone()]);
            for para in render::paragraphs(&text, self.flavour) {
                main.push_str("<p>");
                main.push_str(&render::paragraph_html(&para, self.flavour, &exists));
                main.push_str("</p>\n");
            }
        }
        main.push_str("</article>\n");
        Some(Page::html(self.frame(headword, &main)))
    }

    fn html_paths(&self) -> Vec<String> {
        let mut paths = vec!["/".to_string()];
        for (letter, pages) in &self.letters {
            for n in 1..=pages.len() {
                paths.push(format!("/browse/{letter}-{n}.html"));
            }
        }
        paths.extend(
            self.words
                .keys()
                .map(|k| format!("/w/{}.html", render::slug(k))),
        );
        paths
    }
}

/// The content type of a file, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("txt" | "rst") => "text/plain; charset=utf-8",
        Some("css") => "text/css",
        Some("js") => "text/javascript",
        Some("json") => "application/json",
        Some("xml") => "application/xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("svg") => "image/svg+xml",
        Some("pdf") => "application/pdf",
        Some("gz") => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Percent-encodes a relative file path for a URL (keeps `/` and RFC 3986's unreserved bytes).
pub fn url_path(rel: &str) -> String {
    let mut out = String::with_capacity(rel.len() + 1);
    out.push('/');
    for b in rel.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

impl DirSite {
    pub fn open(root: &Path) -> anyhow::Result<DirSite> {
        let root = root
            .canonicalize()
            .map_err(|e| anyhow::anyhow!("the site directory {}: {e}", root.display()))?;
        let mut html = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let path = entry.path();
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    stack.push(path);
                } else if content_type(&path).starts_with("text/html") {
                    if html.len() >= DIR_FILES_MAX {
                        anyhow::bail!(
                            "{} has over DIR_FILES_MAX ({DIR_FILES_MAX}) HTML files",
                            root.display()
                        );
                    }
                    let rel = path.strip_prefix(&root)?.to_string_lossy().to_string();
                    html.push(url_path(&rel));
                }
            }
        }
        html.sort();
        Ok(DirSite { root, html })
    }

    fn page(&self, path: &str) -> Option<Page> {
        // Only plain components: no `..`, no root, nothing that leaves the directory.
        let rel = Path::new(path.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return None;
        }
        let mut file = self.root.join(rel);
        if file.is_dir() {
            let index = file.join("index.html");
            if index.is_file() {
                file = index;
            } else {
                return Some(Page::html(self.listing(path, &file)?));
            }
        }
        let real = file.canonicalize().ok()?;
        if !real.starts_with(&self.root) {
            return None;
        }
        let body = std::fs::read(&real).ok()?;
        Some(Page {
            body,
            content_type: content_type(&real),
        })
    }

    fn listing(&self, path: &str, dir: &Path) -> Option<String> {
        let mut names: Vec<(String, bool)> = std::fs::read_dir(dir)
            .ok()?
            .filter_map(|e| e.ok())
            .map(|e| {
                let dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
                (e.file_name().to_string_lossy().to_string(), dir)
            })
            .collect();
        names.sort();
        let base = if path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        let mut body = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {0}</title></head>\n<body><h1>Index of {0}</h1>\n<ul>\n",
            escape(path)
        );
        for (name, is_dir) in names {
            let slash = if is_dir { "/" } else { "" };
            let href = url_path(&format!("{}{name}{slash}", base.trim_start_matches('/')));
            body.push_str(&format!(
                "<li><a href=\"{href}\">{}{slash}</a></li>\n",
                escape(&name)
            ));
        }
        body.push_str("</ul>\n</body></html>\n");
        Some(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_by_name_and_by_path() {
        assert_eq!(
            Source::parse("foldoc").unwrap(),
            Source::Dictd {
                prefix: "/usr/share/dictd/foldoc".into(),
                flavour: Flavour::Plain
            }
        );
        assert_eq!(
            Source::parse("dir:/usr/share/doc/sqlite3").unwrap(),
            Source::Dir("/usr/share/doc/sqlite3".into())
        );
        assert!(Source::parse("ftp:/x")
            .unwrap_err()
            .contains("not a source"));
    }

    #[test]
    fn a_directory_site_serves_its_files_and_nothing_outside() {
        let dir = std::env::temp_dir().join(format!("ts-site-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub dir")).unwrap();
        std::fs::write(dir.join("index.html"), "<p>home</p>").unwrap();
        std::fs::write(dir.join("sub dir/a.html"), "<p>a</p>").unwrap();
        std::fs::write(dir.join("sub dir/data.bin"), [0u8, 1, 2]).unwrap();
        let site = Site::open(&Source::Dir(dir.clone()), &Slice::default()).unwrap();
        assert_eq!(site.html_paths(), vec!["/index.html", "/sub%20dir/a.html"]);
        assert_eq!(site.page("/").unwrap().body, b"<p>home</p>");
        assert_eq!(site.page("/sub dir/a.html").unwrap().body, b"<p>a</p>");
        assert_eq!(
            site.page("/sub dir/data.bin").unwrap().content_type,
            "application/octet-stream"
        );
        let listing = String::from_utf8(site.page("/sub dir").unwrap().body).unwrap();
        assert!(listing.contains("href=\"/sub%20dir/a.html\""), "{listing}");
        assert!(site.page("/../etc/passwd").is_none());
        assert!(site.page("/sub dir/../../etc/passwd").is_none());
        assert!(site.page("/missing.html").is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Every page the site lists is served, at the path a crawler normalises it to (RFC 3986
    /// decodes `%5F` to `_`): FOLDOC has headwords with underscores (`mod_autoindex`) as well
    /// as spaces, and both must be reachable, each under one URL.
    #[test]
    fn every_listed_page_of_a_dictionary_is_served_at_its_normalised_path() {
        let prefix = std::path::Path::new("/usr/share/dictd/foldoc");
        let site = DictdSite::open(prefix, Flavour::Plain, &Slice::default())
            .expect("FOLDOC (scripts/install-web-data.sh installs it)");
        let paths = site.html_paths();
        assert!(
            paths.iter().any(|p| p.contains("autoindex")),
            "{}",
            paths.len()
        );
        let mut seen = std::collections::HashSet::new();
        for p in &paths {
            let normal = crate::web::percent_decode(p).unwrap();
            assert!(seen.insert(normal.clone()), "{p} is listed twice");
            assert!(site.page(&normal).is_some(), "{p} is listed but not served");
        }
    }
}
