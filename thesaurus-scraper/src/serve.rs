//! `thesaurus-scraper serve`: the thesaurus and the crawl over HTTP, stateless in front of the
//! store.
//!
//! - `GET /api/synonyms/{word}?k=10`: `{"word","count","neighbours":[{"word","score",
//!   "evidence":[…]},…]}`, best first (404 for a word the thesaurus does not know);
//! - `GET /api/similarity?a=&b=`: `{"a","b","score"}`, for any two words it knows;
//! - `GET /api/crawl/status`: the crawl's pages by state, per host, and its rate;
//! - `GET /api/info`: what the last build made;
//! - `GET /`: a page to look words up and watch the crawl; `/health`; `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::crawl::{self, frontier::Frontier};
use crate::thesaurus::lookup::Thesaurus;

/// The most neighbours one request may ask for (a build keeps this many).
pub const K_MAX: usize = 25;
/// The longest word looked up.
pub const WORD_BYTES_MAX: usize = 100;

#[derive(Default)]
struct Metrics {
    /// (route, status) → requests.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    latency_us_sum: AtomicU64,
    latency_count: AtomicU64,
}

#[derive(Clone)]
struct App {
    thesaurus: Thesaurus,
    frontier: Frontier,
    metrics: Arc<Metrics>,
}

impl App {
    fn count(&self, route: &'static str, status: StatusCode, started: Instant) {
        *self
            .metrics
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route, status.as_u16()))
            .or_default() += 1;
        self.metrics
            .latency_us_sum
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.metrics.latency_count.fetch_add(1, Ordering::Relaxed);
    }
}

/// An answer that is an error: its status and `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

fn error(status: StatusCode, message: String) -> ApiError {
    ApiError(status, message)
}

fn check_word(word: &str) -> Result<(), ApiError> {
    if word.trim().is_empty() || word.len() > WORD_BYTES_MAX {
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!("a word is 1 to {WORD_BYTES_MAX} bytes"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
struct KParam {
    k: Option<String>,
}

#[derive(Serialize)]
struct NeighbourOut {
    word: String,
    score: f64,
    evidence: Vec<String>,
}

async fn synonyms(
    State(app): State<App>,
    Path(word): Path<String>,
    Query(q): Query<KParam>,
) -> Response {
    let started = Instant::now();
    let answer = async {
        check_word(&word)?;
        let k = match q.k.as_deref() {
            None => 10,
            Some(k) => k
                .parse::<usize>()
                .ok()
                .filter(|k| (1..=K_MAX).contains(k))
                .ok_or_else(|| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("k={k}: expected 1 to {K_MAX}"),
                    )
                })?,
        };
        let entry = app
            .thesaurus
            .entry(&word)
            .await
            .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, format!("the store: {e}")))?
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    format!("{word:?} is not in the thesaurus"),
                )
            })?;
        let neighbours: Vec<NeighbourOut> = entry
            .neighbours
            .into_iter()
            .take(k)
            .map(|n| NeighbourOut {
                word: n.word,
                score: (n.score * 1e4).round() / 1e4,
                evidence: n.evidence,
            })
            .collect();
        Ok::<_, ApiError>(
            Json(json!({ "word": entry.word, "count": entry.count, "neighbours": neighbours }))
                .into_response(),
        )
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    app.count("synonyms", answer.status(), started);
    answer
}

#[derive(Deserialize)]
struct PairParams {
    a: Option<String>,
    b: Option<String>,
}

async fn similarity(State(app): State<App>, Query(q): Query<PairParams>) -> Response {
    let started = Instant::now();
    let answer = async {
        let (Some(a), Some(b)) = (q.a, q.b) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "give both words: ?a=…&b=…".into(),
            ));
        };
        check_word(&a)?;
        check_word(&b)?;
        let score = app
            .thesaurus
            .similarity(&a, &b)
            .await
            .map_err(|e| error(StatusCode::SERVICE_UNAVAILABLE, format!("the store: {e}")))?
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    format!("the thesaurus does not know {a:?} or {b:?}"),
                )
            })?;
        Ok::<_, ApiError>(
            Json(json!({ "a": a, "b": b, "score": (score * 1e4).round() / 1e4 })).into_response(),
        )
    }
    .await
    .unwrap_or_else(IntoResponse::into_response);
    app.count("similarity", answer.status(), started);
    answer
}

async fn crawl_status(State(app): State<App>) -> Response {
    let started = Instant::now();
    let answer = match crawl::status(&app.frontier).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("the store: {e}")).into_response(),
    };
    app.count("crawl_status", answer.status(), started);
    answer
}

async fn info(State(app): State<App>) -> Response {
    match app.thesaurus.info().await {
        Ok(Some(i)) => Json(i).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "nothing built yet: run thesaurus-scraper build".into(),
        )
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, format!("the store: {e}")).into_response(),
    }
}

async fn health(State(app): State<App>) -> Response {
    match app.thesaurus.info().await {
        Ok(Some(i)) if i.finished => "ok\n".into_response(),
        Ok(_) => (StatusCode::OK, "ok (nothing built yet)\n").into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("the store: {e}\n")).into_response(),
    }
}

async fn metrics(State(app): State<App>) -> Response {
    let mut out = String::from(
        "# HELP thesaurus_requests_total HTTP requests by route and status.\n# TYPE thesaurus_requests_total counter\n",
    );
    for ((route, status), n) in app.metrics.requests.lock().expect("metrics lock").iter() {
        out.push_str(&format!(
            "thesaurus_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
        ));
    }
    out.push_str(&format!(
        "# HELP thesaurus_request_seconds Time spent answering.\n# TYPE thesaurus_request_seconds summary\nthesaurus_request_seconds_sum {}\nthesaurus_request_seconds_count {}\n",
        app.metrics.latency_us_sum.load(Ordering::Relaxed) as f64 / 1e6,
        app.metrics.latency_count.load(Ordering::Relaxed)
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    thesaurus: Thesaurus,
    frontier: Frontier,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let app = App {
        thesaurus,
        frontier,
        metrics: Arc::new(Metrics::default()),
    };
    let router = axum::Router::new()
        .route("/", get(page))
        .route("/api/synonyms/{word}", get(synonyms))
        .route("/api/similarity", get(similarity))
        .route("/api/crawl/status", get(crawl_status))
        .route("/api/info", get(info))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(app);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

const PAGE: &str = r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Thesaurus</title>
<style>
body{font:16px/1.4 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
input{font-size:1.1rem;padding:.3rem .5rem;width:16rem} button{font-size:1rem}
li{margin:.3rem 0} .score{color:#666;font-size:.9rem} .ev{color:#555;font-size:.85rem;margin-left:1rem}
table{border-collapse:collapse;font-size:.9rem} td,th{padding:.15rem .6rem;text-align:right;border-bottom:1px solid #ddd}
td:first-child,th:first-child{text-align:left} #error{color:#a00}
</style></head>
<body>
<h1>Thesaurus</h1>
<p>Built from the text of a crawled web: words that share contexts, and words the text names as synonyms.</p>
<form id="f"><input id="w" name="w" placeholder="a word, e.g. goose" autofocus> <button>Look up</button></form>
<p id="error"></p>
<ol id="results"></ol>
<h2>The crawl</h2>
<div id="crawl">loading…</div>
<script>
const $ = id => document.getElementById(id);
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
async function lookup(word){
  $('error').textContent=''; $('results').innerHTML='';
  const r = await fetch('/api/synonyms/'+encodeURIComponent(word)+'?k=15');
  const j = await r.json();
  if(!r.ok){ $('error').textContent=j.error; return; }
  $('results').innerHTML = j.neighbours.map(n =>
    '<li><b>'+esc(n.word)+'</b> <span class="score">'+n.score.toFixed(3)+'</span>'+
    n.evidence.map(e=>'<div class="ev">'+esc(e)+'</div>').join('')+'</li>').join('');
}
$('f').onsubmit = e => { e.preventDefault(); const w=$('w').value.trim(); if(w){ history.replaceState(null,'','#'+encodeURIComponent(w)); lookup(w);} };
if(location.hash.length>1){ const w=decodeURIComponent(location.hash.slice(1)); $('w').value=w; lookup(w); }
async function crawl(){
  try{
    const s = await (await fetch('/api/crawl/status')).json();
    let h='<table><tr><th>host</th><th>queued</th><th>done</th><th>duplicate</th><th>redirected</th><th>failed</th><th>skipped</th><th>robots</th></tr>';
    for(const [host,x] of Object.entries(s.hosts)){ const c=x.counts;
      h+='<tr><td>'+esc(host)+'</td><td>'+x.queued+'</td><td>'+c.done+'</td><td>'+c.duplicate+'</td><td>'+c.redirected+'</td><td>'+c.failed+'</td><td>'+c.skipped+'</td><td>'+c.disallowed+'</td></tr>'; }
    h+='</table><p>'+s.queued+' queued, '+s.rate.toFixed(1)+' URLs/s</p>';
    $('crawl').innerHTML=h;
  }catch(e){ $('crawl').textContent='the crawl status is unavailable'; }
}
crawl(); setInterval(crawl, 2000);
</script>
</body></html>
"#;
