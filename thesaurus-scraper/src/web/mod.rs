//! The local web the crawler crawls (`thesaurus-scraper serve-web`): several hosts, each on
//! its own loopback address, serving real text (GCIDE, FOLDOC and the Jargon File one page per
//! headword; Debian's HTML documentation as it is) with a robots.txt, a sitemap and seeded
//! faults, and a politeness oracle at `/__stats`.
//!
//! Every host answers, besides its pages:
//!
//! - `/robots.txt` and `/sitemap.xml`;
//! - `/__stats`: per host, requests, status counts, robots violations (disallowed paths
//!   fetched), the smallest gap between two requests and how many were shorter than the
//!   Crawl-delay, the most requests in flight at once and how many overlapped another;
//! - `/__pages`: the host's HTML pages (a test's answer key for "every reachable page");
//! - `/__health`.
//!
//! Requests for `/robots.txt` and the `/__…` endpoints do not count toward politeness.

pub mod fault;
pub mod render;
pub mod site;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use fault::{Faults, HostOptions, Robots};
use site::{Site, Source};

/// One host of the local web, as given on the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct HostSpec {
    pub addr: SocketAddr,
    pub source: Source,
    pub options: HostOptions,
}

impl HostSpec {
    /// `ADDR:PORT=SOURCE[,key=value…]`, e.g. `127.0.0.2:8081=gcide,crawl_delay=0.2`. The
    /// address must be loopback: this web is never served beyond the machine.
    pub fn parse(spec: &str) -> Result<HostSpec, String> {
        let (addr, rest) = spec
            .split_once('=')
            .ok_or_else(|| format!("{spec:?}: expected ADDR:PORT=SOURCE[,key=value…]"))?;
        let addr: SocketAddr = addr
            .parse()
            .map_err(|e| format!("{addr:?} is not an address: {e}"))?;
        if !addr.ip().is_loopback() {
            return Err(format!(
                "{addr}: the local web serves loopback addresses only"
            ));
        }
        let mut parts = rest.split(',');
        let source = Source::parse(parts.next().unwrap_or_default())?;
        let options = HostOptions::parse(parts)?;
        Ok(HostSpec {
            addr,
            source,
            options,
        })
    }
}

/// What a host has seen: the politeness oracle.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostStats {
    pub requests: u64,
    pub status: BTreeMap<u16, u64>,
    pub bytes: u64,
    pub robots_fetches: u64,
    pub robots_violations: u64,
    /// The first few disallowed paths fetched.
    pub robots_violation_paths: Vec<String>,
    pub min_gap_ms: Option<f64>,
    pub gaps_below_crawl_delay: u64,
    pub max_in_flight: usize,
    /// Requests being answered now.
    pub in_flight: usize,
    /// Requests that arrived while another to this host was in flight.
    pub overlapping_requests: u64,
    pub faults: BTreeMap<&'static str, u64>,
}

/// How many violation paths a host keeps.
const VIOLATION_PATHS_MAX: usize = 20;
/// How many paths a host remembers the flaky attempts of.
const FLAKY_PATHS_MAX: usize = 1_000_000;

/// A host being served.
pub struct Host {
    /// `addr:port` as crawlers see it.
    pub name: String,
    pub site: Site,
    pub robots: Robots,
    pub faults: Faults,
    seed: u64,
    sitemap: String,
    huge: std::sync::OnceLock<bytes::Bytes>,
    attempts: Mutex<HashMap<String, u32>>,
    in_flight: AtomicUsize,
    stats: Mutex<(HostStats, Option<Instant>)>,
}

impl Host {
    pub fn new(name: String, site: Site, options: &HostOptions, seed: u64) -> Host {
        let mut sitemap = String::from(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n",
        );
        // A sitemap may list 50,000 URLs; a bigger site's sitemap names its first 50,000.
        for path in site.html_paths().iter().take(50_000) {
            sitemap.push_str(&format!("<url><loc>http://{name}{path}</loc></url>\n"));
        }
        sitemap.push_str("</urlset>\n");
        Host {
            name,
            site,
            robots: options.robots.clone(),
            faults: options.faults.clone(),
            seed,
            sitemap,
            huge: std::sync::OnceLock::new(),
            attempts: Mutex::new(HashMap::new()),
            in_flight: AtomicUsize::new(0),
            stats: Mutex::new((HostStats::default(), None)),
        }
    }

    pub fn stats(&self) -> HostStats {
        let mut stats = self.stats.lock().expect("stats lock").0.clone();
        stats.in_flight = self.in_flight.load(Ordering::SeqCst);
        stats
    }

    /// Counts a request on arrival; the guard counts it out of flight when dropped.
    fn arrive(&self, path: &str) -> InFlight<'_> {
        let now = Instant::now();
        let before = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let mut guard = self.stats.lock().expect("stats lock");
        let (stats, last) = &mut *guard;
        stats.requests += 1;
        if path == "/robots.txt" {
            stats.robots_fetches += 1;
        } else {
            if self.robots.disallows(path) {
                stats.robots_violations += 1;
                if stats.robots_violation_paths.len() < VIOLATION_PATHS_MAX {
                    stats.robots_violation_paths.push(path.to_string());
                }
            }
            if before > 0 {
                stats.overlapping_requests += 1;
            }
            stats.max_in_flight = stats.max_in_flight.max(before + 1);
            if let Some(prev) = *last {
                let gap = now.duration_since(prev).as_secs_f64() * 1000.0;
                stats.min_gap_ms = Some(stats.min_gap_ms.map_or(gap, |m| m.min(gap)));
                if self.robots.crawl_delay.is_some_and(|d| gap < d * 1000.0) {
                    stats.gaps_below_crawl_delay += 1;
                }
            }
            *last = Some(now);
        }
        InFlight { host: self }
    }

    fn finish(&self, status: StatusCode, bytes: usize, fault: Option<&'static str>) {
        let mut guard = self.stats.lock().expect("stats lock");
        let stats = &mut guard.0;
        *stats.status.entry(status.as_u16()).or_default() += 1;
        stats.bytes += bytes as u64;
        if let Some(f) = fault {
            *stats.faults.entry(f).or_default() += 1;
        }
    }

    fn hit(&self, path: &str, kind: &str, rate: f64) -> bool {
        rate > 0.0 && fault::fraction(self.seed, &self.name, path, kind) < rate
    }

    /// The answer to one request for `path` (decoded) with `query`.
    async fn answer(&self, path: &str, query: &str) -> (Response, Option<&'static str>) {
        let f = &self.faults;
        let text = |status: StatusCode, body: &'static str| {
            (status, [(header::CONTENT_TYPE, "text/plain")], body).into_response()
        };
        if path == "/robots.txt" {
            if let Some(status) = self
                .robots
                .status
                .and_then(|s| StatusCode::from_u16(s).ok())
            {
                return (
                    text(status, "robots.txt is not available (injected)\n"),
                    Some("robots"),
                );
            }
            let body = self.robots.text(&self.name);
            return (
                ([(header::CONTENT_TYPE, "text/plain")], body).into_response(),
                None,
            );
        }
        if path == "/sitemap.xml" {
            let body = self.sitemap.clone();
            return (
                ([(header::CONTENT_TYPE, "application/xml")], body).into_response(),
                None,
            );
        }
        if let Some(rest) = path.strip_prefix("/loop/") {
            // /loop/<id>/<n>.html → /loop/<id>/<n+1>.html, forever.
            let next = rest
                .strip_suffix(".html")
                .and_then(|r| r.split_once('/'))
                .and_then(|(id, n)| Some((id, n.parse::<u64>().ok()?)));
            return match next {
                Some((id, n)) => (
                    redirect(StatusCode::FOUND, &format!("/loop/{id}/{}.html", n + 1)),
                    Some("loop"),
                ),
                None => (text(StatusCode::NOT_FOUND, "no such page\n"), None),
            };
        }
        if path.starts_with("/missing/") {
            return (
                text(StatusCode::NOT_FOUND, "no such page\n"),
                Some("missing"),
            );
        }
        if path.starts_with("/huge/") {
            let body = self
                .huge
                .get_or_init(|| bytes::Bytes::from(fault::huge_page(f.huge_mb)))
                .clone();
            return (
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
                Some("huge"),
            );
        }
        if path.starts_with("/file/") {
            let body: Vec<u8> = (0..65_536u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect();
            return (
                ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response(),
                Some("binary"),
            );
        }
        if self.hit(path, "dead", f.dead) {
            return (
                text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error (injected)\n",
                ),
                Some("dead"),
            );
        }
        if !query.contains("moved=1") && self.hit(path, "redirect", f.redirect) {
            return (
                redirect(
                    StatusCode::MOVED_PERMANENTLY,
                    &format!("{}?moved=1", encode_path(path)),
                ),
                Some("redirect"),
            );
        }
        if self.hit(path, "flaky", f.flaky) {
            let n = {
                let mut attempts = self.attempts.lock().expect("attempts lock");
                if attempts.len() >= FLAKY_PATHS_MAX {
                    attempts.clear();
                }
                let n = attempts.entry(path.to_string()).or_insert(0);
                *n += 1;
                *n
            };
            if n <= f.flaky_k {
                let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "try again (injected)\n");
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return (r, Some("flaky"));
            }
        }
        let mut fault = None;
        if self.hit(path, "slow", f.slow) {
            tokio::time::sleep(Duration::from_millis(f.slow_ms)).await;
            fault = Some("slow");
        }
        let Some(mut page) = self.site.page(path) else {
            return (text(StatusCode::NOT_FOUND, "no such page\n"), fault);
        };
        if page.is_html() {
            let links = fault::trap_links(f, self.seed, &self.name, path);
            fault::insert_links(&mut page.body, &links);
            if self.hit(path, "malformed", f.malformed) {
                page.body = fault::malformed(&page.body);
                fault = Some("malformed");
            }
        }
        (
            ([(header::CONTENT_TYPE, page.content_type)], page.body).into_response(),
            fault,
        )
    }
}

struct InFlight<'h> {
    host: &'h Host,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.host.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

fn redirect(status: StatusCode, to: &str) -> Response {
    (status, [(header::LOCATION, to.to_string())], "").into_response()
}

/// Percent-encodes a decoded path again (keeps `/` and the unreserved bytes).
fn encode_path(path: &str) -> String {
    site::url_path(path.trim_start_matches('/'))
}

/// Decodes `%XX` escapes; `None` if they are malformed or not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Every host's stats, by host name.
pub fn all_stats(hosts: &[Arc<Host>]) -> BTreeMap<String, HostStats> {
    hosts.iter().map(|h| (h.name.clone(), h.stats())).collect()
}

#[derive(Clone)]
struct Served {
    me: Arc<Host>,
    all: Arc<Vec<Arc<Host>>>,
}

async fn handle(State(s): State<Served>, request: Request) -> Response {
    let uri = request.uri().clone();
    let raw_path = uri.path();
    let query = uri.query().unwrap_or("");
    match raw_path {
        "/__stats" => return axum::Json(all_stats(&s.all)).into_response(),
        "/__pages" => return axum::Json(s.me.site.html_paths()).into_response(),
        "/__health" => return "ok\n".into_response(),
        _ => {}
    }
    let Some(path) = percent_decode(raw_path) else {
        let _in_flight = s.me.arrive(raw_path);
        s.me.finish(StatusCode::BAD_REQUEST, 0, None);
        return (
            StatusCode::BAD_REQUEST,
            "the path's percent-encoding is not UTF-8\n",
        )
            .into_response();
    };
    let in_flight = s.me.arrive(&path);
    let (response, fault) = s.me.answer(&path, query).await;
    let bytes = axum::body::HttpBody::size_hint(response.body())
        .exact()
        .unwrap_or(0) as usize;
    s.me.finish(response.status(), bytes, fault);
    drop(in_flight);
    if request.method() == axum::http::Method::HEAD {
        let (parts, _) = response.into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    response
}

/// Opens every host's site and binds its address; returns the hosts, as bound (a port 0 is
/// chosen by the system), with their listeners.
pub async fn bind(
    specs: &[HostSpec],
    seed: u64,
) -> anyhow::Result<Vec<(Arc<Host>, tokio::net::TcpListener)>> {
    let mut out = Vec::new();
    for spec in specs {
        let listener = tokio::net::TcpListener::bind(spec.addr)
            .await
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", spec.addr))?;
        let addr = listener.local_addr()?;
        let source = spec.source.clone();
        let slice = spec.options.slice.clone();
        let site = tokio::task::spawn_blocking(move || Site::open(&source, &slice)).await??;
        tracing::info!(host = %addr, site = %site.describe(), "local web host ready");
        out.push((
            Arc::new(Host::new(addr.to_string(), site, &spec.options, seed)),
            listener,
        ));
    }
    Ok(out)
}

/// Serves bound hosts until `shutdown` resolves.
pub async fn serve(
    hosts: Vec<(Arc<Host>, tokio::net::TcpListener)>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let all: Arc<Vec<Arc<Host>>> = Arc::new(hosts.iter().map(|(h, _)| h.clone()).collect());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (host, listener) in hosts {
        let router = axum::Router::new().fallback(handle).with_state(Served {
            me: host,
            all: all.clone(),
        });
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    shutdown.await;
    tracing::info!("stopping the local web");
    let _ = stop_tx.send(true);
    for t in tasks {
        t.await??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_specs_parse_and_refuse_other_addresses() {
        let spec = HostSpec::parse("127.0.0.2:0=jargon,crawl_delay=0.1,flaky=0.5").unwrap();
        assert_eq!(spec.addr.to_string(), "127.0.0.2:0");
        assert_eq!(spec.options.robots.crawl_delay, Some(0.1));
        assert!(HostSpec::parse("10.0.0.1:80=gcide")
            .unwrap_err()
            .contains("loopback"));
        assert!(HostSpec::parse("127.0.0.2:80")
            .unwrap_err()
            .contains("expected"));
        assert!(HostSpec::parse("127.0.0.2:80=gopher").is_err());
    }

    #[test]
    fn percent_decoding_refuses_bad_escapes() {
        assert_eq!(
            percent_decode("/w/caf%C3%A9.html").as_deref(),
            Some("/w/café.html")
        );
        assert_eq!(percent_decode("/w/a%2"), None);
        assert_eq!(percent_decode("/w/%FF"), None);
    }
}
