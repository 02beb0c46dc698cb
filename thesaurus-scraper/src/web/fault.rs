//! A host's rules and seeded faults: its robots.txt (Disallow, Crawl-delay, Sitemap) and the
//! real web's misbehaviour, each for a deterministic fraction of URLs chosen by a hash of
//! (seed, host, path, kind), so that a run replays exactly:
//!
//! | option | what the chosen URLs do |
//! | --- | --- |
//! | `flaky=F,flaky_k=K` | answer 503 with `Retry-After: 1` K times, then the page |
//! | `slow=F,slow_ms=MS` | answer after MS milliseconds |
//! | `redirect=F` | answer 301 to the same path with `?moved=1` (the same page) |
//! | `dead=F` | answer 500, always |
//! | `malformed=F` | answer the page cut short, with unclosed tags and bytes that are not UTF-8 |
//! | `missing=F` | the page links to `/missing/<id>.html`, which is 404 |
//! | `loop=F` | the page links to `/loop/<id>/0.html`, which redirects to `…/1.html`, forever |
//! | `huge=F,huge_mb=MB` | the page links to `/huge/<id>.html`, an HTML page of MB megabytes |
//! | `binary=F` | the page links to `/file/<id>.bin`, `application/octet-stream` |
//! | `robots_status=S` | `/robots.txt` answers status S (a 5xx: robots.txt unreachable) |
//!
//! Host options are `key=value` pairs after the source: `127.0.0.2:8081=gcide,flaky=0.05`.

/// A host's robots rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Robots {
    /// Path prefixes no crawler may fetch.
    pub disallow: Vec<String>,
    /// Seconds between two requests, if set.
    pub crawl_delay: Option<f64>,
    /// Answer `/robots.txt` with this status instead (a 5xx: a host whose robots.txt fails).
    pub status: Option<u16>,
}

impl Robots {
    pub fn text(&self, host: &str) -> String {
        let mut s = String::from("User-agent: *\n");
        for d in &self.disallow {
            s.push_str(&format!("Disallow: {d}\n"));
        }
        if let Some(delay) = self.crawl_delay {
            s.push_str(&format!("Crawl-delay: {delay}\n"));
        }
        s.push_str(&format!("Sitemap: http://{host}/sitemap.xml\n"));
        s
    }

    pub fn disallows(&self, path: &str) -> bool {
        self.disallow.iter().any(|d| path.starts_with(d.as_str()))
    }
}

/// The fractions of URLs that misbehave, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    pub flaky: f64,
    pub flaky_k: u32,
    pub slow: f64,
    pub slow_ms: u64,
    pub redirect: f64,
    pub dead: f64,
    pub malformed: f64,
    pub missing: f64,
    pub loops: f64,
    pub huge: f64,
    pub huge_mb: usize,
    pub binary: f64,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            flaky: 0.0,
            flaky_k: 1,
            slow: 0.0,
            slow_ms: 2000,
            redirect: 0.0,
            dead: 0.0,
            malformed: 0.0,
            missing: 0.0,
            loops: 0.0,
            huge: 0.0,
            huge_mb: 16,
            binary: 0.0,
        }
    }
}

/// The most a huge page may be, in megabytes.
pub const HUGE_MB_MAX: usize = 256;

/// A host's options, parsed from `key=value` pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostOptions {
    pub robots: Robots,
    pub faults: Faults,
    pub slice: super::site::Slice,
}

impl HostOptions {
    pub fn parse<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<HostOptions, String> {
        let mut o = HostOptions::default();
        for pair in pairs {
            let (k, v) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let frac = || -> Result<f64, String> {
                v.parse::<f64>()
                    .ok()
                    .filter(|f| (0.0..=1.0).contains(f))
                    .ok_or_else(|| format!("{k}={v}: expected a fraction between 0 and 1"))
            };
            let int = || -> Result<u64, String> {
                v.parse::<u64>()
                    .map_err(|_| format!("{k}={v}: expected a whole number"))
            };
            let f = &mut o.faults;
            match k {
                "disallow" => {
                    o.robots.disallow = v
                        .split(';')
                        .filter(|d| !d.is_empty())
                        .map(String::from)
                        .collect();
                    if let Some(bad) = o.robots.disallow.iter().find(|d| !d.starts_with('/')) {
                        return Err(format!("disallow: {bad:?} does not start with /"));
                    }
                }
                "crawl_delay" => {
                    let d: f64 = v
                        .parse()
                        .ok()
                        .filter(|d: &f64| d.is_finite() && *d >= 0.0 && *d <= 60.0)
                        .ok_or_else(|| format!("crawl_delay={v}: expected seconds, 0 to 60"))?;
                    o.robots.crawl_delay = (d > 0.0).then_some(d);
                }
                "robots_status" => {
                    let status = int()?;
                    if !(200..=599).contains(&status) {
                        return Err(format!("robots_status={v}: expected an HTTP status"));
                    }
                    o.robots.status = Some(status as u16);
                }
                "flaky" => f.flaky = frac()?,
                "flaky_k" => f.flaky_k = int()? as u32,
                "slow" => f.slow = frac()?,
                "slow_ms" => f.slow_ms = int()?,
                "redirect" => f.redirect = frac()?,
                "dead" => f.dead = frac()?,
                "malformed" => f.malformed = frac()?,
                "missing" => f.missing = frac()?,
                "loop" => f.loops = frac()?,
                "huge" => f.huge = frac()?,
                "huge_mb" => {
                    f.huge_mb = int()? as usize;
                    if f.huge_mb == 0 || f.huge_mb > HUGE_MB_MAX {
                        return Err(format!("huge_mb={v}: expected 1 to {HUGE_MB_MAX}"));
                    }
                }
                "binary" => f.binary = frac()?,
                "pages" => o.slice.pages = Some(int()? as usize),
                "from" => o.slice.from = Some(v.to_lowercase()),
                "to" => o.slice.to = Some(v.to_lowercase()),
                _ => return Err(format!("{k:?} is not a host option")),
            }
        }
        Ok(o)
    }
}

/// A number in [0, 1) fixed by (seed, host, path, kind): FNV-1a, then a 64-bit finaliser.
pub fn fraction(seed: u64, host: &str, path: &str, kind: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for part in [host, "|", path, "|", kind] {
        for b in part.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    // splitmix64's finaliser spreads FNV's low-entropy high bits.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A short stable id for a trap link made from a page.
pub fn trap_id(seed: u64, host: &str, path: &str) -> u64 {
    (fraction(seed, host, path, "id") * 1e12) as u64
}

/// The trap links a page carries: dead links, redirect loops, huge pages, binary files.
pub fn trap_links(
    faults: &Faults,
    seed: u64,
    host: &str,
    path: &str,
) -> Vec<(String, &'static str)> {
    let id = trap_id(seed, host, path);
    let mut links = Vec::new();
    let mut add = |rate: f64, kind: &str, href: String, label: &'static str| {
        if rate > 0.0 && fraction(seed, host, path, kind) < rate {
            links.push((href, label));
        }
    };
    add(
        faults.missing,
        "missing",
        format!("/missing/{id}.html"),
        "an old page",
    );
    add(
        faults.loops,
        "loop",
        format!("/loop/{id}/0.html"),
        "a page that moved",
    );
    add(
        faults.huge,
        "huge",
        format!("/huge/{id}.html"),
        "the complete archive",
    );
    add(
        faults.binary,
        "binary",
        format!("/file/{id}.bin"),
        "a download",
    );
    links
}

/// Adds links to an HTML page, before its `</body>` if it has one.
pub fn insert_links(body: &mut Vec<u8>, links: &[(String, &str)]) {
    if links.is_empty() {
        return;
    }
    let mut html = String::from("<ul class=\"more\">");
    for (href, label) in links {
        html.push_str(&format!("<li><a href=\"{href}\">{label}</a></li>"));
    }
    html.push_str("</ul>\n");
    let at = find_ci(body, b"</body>").unwrap_or(body.len());
    body.splice(at..at, html.into_bytes());
}

fn find_ci(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len())
        .rposition(|w| w.eq_ignore_ascii_case(needle))
}

/// A page broken the ways real pages are: cut short, tags left open, stray closing tags,
/// bytes that are not UTF-8 and a lone `<`.
pub fn malformed(body: &[u8]) -> Vec<u8> {
    let mut cut = body.len() * 2 / 3;
    while cut > 0 && body[cut - 1] >= 0x80 {
        cut -= 1; // stop before a multi-byte character, not inside it
    }
    let mut out = body[..cut].to_vec();
    out.extend_from_slice(b"</table></td><div><p><b>unclosed <a href=\"/w/");
    out.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    out.extend_from_slice(b" < & <p");
    out
}

/// A huge but valid HTML page of about `mb` megabytes.
pub fn huge_page(mb: usize) -> Vec<u8> {
    let para = b"<p>All work and no play makes Jack a dull boy. All work and no play makes Jack a dull boy.</p>\n";
    let mut out = Vec::with_capacity(mb << 20);
    out.extend_from_slice(b"<!DOCTYPE html>\n<html><head><title>Archive</title></head><body>\n");
    while out.len() < mb << 20 {
        out.extend_from_slice(para);
    }
    out.extend_from_slice(b"</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_refuse_nonsense() {
        let o = HostOptions::parse([
            "disallow=/private;/tmp",
            "crawl_delay=0.25",
            "flaky=0.1",
            "flaky_k=2",
            "pages=300",
            "from=lif",
        ])
        .unwrap();
        assert_eq!(o.robots.disallow, vec!["/private", "/tmp"]);
        assert_eq!(o.robots.crawl_delay, Some(0.25));
        assert_eq!(o.faults.flaky, 0.1);
        assert_eq!(o.faults.flaky_k, 2);
        assert_eq!(o.slice.pages, Some(300));
        assert_eq!(o.slice.from.as_deref(), Some("lif"));
        assert!(HostOptions::parse(["flaky=2"])
            .unwrap_err()
            .contains("fraction"));
        assert!(HostOptions::parse(["colour=red"])
            .unwrap_err()
            .contains("not a host option"));
        assert!(HostOptions::parse(["disallow=private"])
            .unwrap_err()
            .contains("start with /"));
        assert!(HostOptions::parse(["huge_mb=100000"]).is_err());
        assert!(HostOptions::parse(["flaky"])
            .unwrap_err()
            .contains("key=value"));
    }

    #[test]
    fn robots_text_names_its_rules_and_sitemap() {
        let r = Robots {
            disallow: vec!["/private".into()],
            crawl_delay: Some(0.5),
            status: None,
        };
        assert_eq!(
            r.text("127.0.0.2:8081"),
            "User-agent: *\nDisallow: /private\nCrawl-delay: 0.5\nSitemap: http://127.0.0.2:8081/sitemap.xml\n"
        );
        assert!(r.disallows("/private/a.html"));
        assert!(!r.disallows("/public.html"));
    }

    #[test]
    fn fractions_are_deterministic_uniform_and_seeded() {
        let f = |seed, p: &str| fraction(seed, "h", p, "flaky");
        assert_eq!(f(1, "/a"), f(1, "/a"));
        assert_ne!(f(1, "/a"), f(2, "/a"));
        let n = 20_000;
        let below = (0..n)
            .filter(|i| f(7, &format!("/w/{i}.html")) < 0.1)
            .count();
        assert!((1_600..2_400).contains(&below), "{below} of {n} below 0.1");
    }

    #[test]
    fn trap_links_go_before_the_end_of_the_body() {
        let faults = Faults {
            missing: 1.0,
            binary: 1.0,
            ..Faults::default()
        };
        let links = trap_links(&faults, 1, "h", "/a.html");
        assert_eq!(links.len(), 2);
        let mut body = b"<html><body><p>x</p></BODY></html>".to_vec();
        insert_links(&mut body, &links);
        let s = String::from_utf8(body).unwrap();
        assert!(s.contains("/missing/"), "{s}");
        assert!(
            s.find("/file/").unwrap() < s.find("</BODY>").unwrap(),
            "{s}"
        );
    }

    #[test]
    fn malformed_pages_are_not_utf8_and_huge_pages_are_big() {
        let bad = malformed("<html><body><p>é é é é é é</p></body></html>".as_bytes());
        assert!(std::str::from_utf8(&bad).is_err());
        assert!(huge_page(1).len() >= 1 << 20);
    }
}
