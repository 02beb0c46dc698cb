//! The HTTP side of a search replica: the JSON API, the web pages, `/health` and `/metrics`.
//!
//! Every answer comes from the replica's current [`Index`] (swapped whole when the dataset
//! changes; see [`replica`]). Bad input gets a 4xx with a typed JSON error
//! (`{"error":{"code":…,"message":…}}`): a query that is empty, too long, not UTF-8 or a
//! pattern over its limits. Answers carry an `ETag` of the dataset version and a
//! `Cache-Control`, so a cache in front (or the browser) revalidates with a 304 until the
//! dataset changes.

// Helpers return `Result<_, Response>`: the error is the handler's whole (early) answer, made
// once per request; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

pub mod metrics;
pub mod page;
pub mod query;
pub mod replica;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use crate::index::{Index, QueryError, SUGGEST_LIMIT};
use query::{percent_decode, InputError, Params};
use replica::Replica;

/// How long a client or cache may reuse an answer without asking again.
pub const CACHE_MAX_AGE_S: u64 = 300;
/// Results a list endpoint returns when the request names no `limit`, and at most.
pub const LIST_LIMIT_DEFAULT: usize = 20;
pub const LIST_LIMIT_MAX: usize = 100;

pub struct App {
    pub replica: Arc<Replica>,
    metrics: metrics::Metrics,
    shutting_down: AtomicBool,
}

impl App {
    pub fn new(replica: Arc<Replica>) -> Arc<App> {
        Arc::new(App {
            replica,
            metrics: metrics::Metrics::default(),
            shutting_down: AtomicBool::new(false),
        })
    }
}

/// Serves until `shutdown` resolves, then lets requests in flight finish.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router(app.clone());
    let app_for_shutdown = app.clone();
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            app_for_shutdown.shutting_down.store(true, Ordering::SeqCst);
        })
        .await
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/api/suggest", get(api_suggest))
        .route("/api/spell", get(api_spell))
        .route("/api/entry/{*word}", get(api_entry))
        .route("/api/search", get(api_search))
        .route("/api/pattern", get(api_pattern))
        .route("/api/anagram", get(api_anagram))
        .route("/api/rhymes", get(api_rhymes))
        .route("/api/about", get(api_about))
        .route("/", get(home))
        .route("/go", get(go))
        .route("/entry/{*word}", get(entry_page))
        .route("/search", get(search_page))
        .route("/find", get(find_page))
        .route("/about", get(about_page))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(app.clone(), observe))
        .with_state(app)
}

/// Counts every request and its latency by route.
async fn observe(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let started = Instant::now();
    let response = next.run(request).await;
    app.metrics
        .observe(route, response.status().as_u16(), started.elapsed());
    response
}

fn json_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"error": {"code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

fn input_error(e: InputError) -> Response {
    let code = match e {
        InputError::TooLong { .. } => "too_long",
        InputError::InvalidUtf8 => "invalid_utf8",
        InputError::BadEscape { .. } => "bad_escape",
        InputError::Missing(_) => "missing_parameter",
    };
    json_error(StatusCode::BAD_REQUEST, code, &e.to_string())
}

fn query_error(e: QueryError) -> Response {
    let code = match e {
        QueryError::Empty => "empty",
        QueryError::TooLong { .. } => "too_long",
        QueryError::PatternTooBroad => "pattern_too_broad",
        QueryError::BadQuery(_) => "bad_query",
    };
    json_error(StatusCode::BAD_REQUEST, code, &e.to_string())
}

fn unavailable(app: &App) -> Response {
    let status = app.replica.status();
    let message = if status.no_dataset {
        "the store holds no dictionary yet: run `dictionary-search load --store ADDRS`"
    } else {
        "the index is being built from the store; try again shortly"
    };
    let mut r = json_error(StatusCode::SERVICE_UNAVAILABLE, "not_ready", message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

/// The index, or the 503 to answer with.
fn index(app: &App) -> Result<Arc<Index>, Response> {
    app.replica.index().ok_or_else(|| unavailable(app))
}

/// A JSON answer with the dataset's ETag, or a 304 if the client holds it already.
fn cached(headers: &HeaderMap, ix: &Index, status: StatusCode, body: Value) -> Response {
    let etag = format!("W/\"{}\"", ix.version);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if matches && status == StatusCode::OK {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (status, axum::Json(body)).into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("a hex version"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={CACHE_MAX_AGE_S}")).expect("ASCII"),
    );
    response
}

/// The parameters, the index and the `q` parameter, or the error to answer with.
fn prepare(app: &App, uri: &Uri) -> Result<(Arc<Index>, Params, String), Response> {
    let params = Params::parse(uri.query()).map_err(input_error)?;
    let ix = index(app)?;
    let q = params.require("q").map_err(input_error)?.to_string();
    Ok((ix, params, q))
}

fn words_json(words: impl IntoIterator<Item = impl AsRef<str>>) -> Vec<Value> {
    words
        .into_iter()
        .map(|w| json!({"word": w.as_ref()}))
        .collect()
}

/// Answers a query endpoint: `answer` gets the index, the parameters and `q`, and gives the
/// JSON body (cached by the dataset's ETag) or the query's error (a typed 400).
fn answer(
    app: &App,
    headers: &HeaderMap,
    uri: &Uri,
    answer: impl FnOnce(&Index, &Params, &str) -> Result<Value, QueryError>,
) -> Response {
    let (ix, params, q) = match prepare(app, uri) {
        Ok(p) => p,
        Err(r) => return r,
    };
    match answer(&ix, &params, &q) {
        Ok(body) => cached(headers, &ix, StatusCode::OK, body),
        Err(e) => query_error(e),
    }
}

/// A list endpoint's `limit`.
fn list_limit(params: &Params) -> usize {
    params
        .number("limit", LIST_LIMIT_DEFAULT)
        .min(LIST_LIMIT_MAX)
}

async fn api_suggest(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    answer(&app, &headers, &uri, |ix, params, q| {
        let words = ix.suggest(q, params.number("limit", SUGGEST_LIMIT))?;
        Ok(json!({"suggestions": words_json(words)}))
    })
}

async fn api_spell(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    answer(&app, &headers, &uri, |ix, params, q| {
        let limit = params.number("limit", SUGGEST_LIMIT).min(SUGGEST_LIMIT);
        let corrections: Vec<Value> = ix
            .spell(q, limit)?
            .iter()
            .map(|c| json!({"word": c.word, "score": c.score}))
            .collect();
        Ok(json!({"suggestions": corrections}))
    })
}

/// The word after `prefix` in the path, decoded strictly.
fn path_word(uri: &Uri, prefix: &str) -> Result<String, Response> {
    let raw = uri.path().strip_prefix(prefix).unwrap_or("");
    if raw.len() > query::QUERY_BYTES_MAX {
        return Err(input_error(InputError::TooLong {
            bytes: raw.len(),
            limit: query::QUERY_BYTES_MAX,
        }));
    }
    percent_decode(raw, false).map_err(input_error)
}

/// What looking a word up found.
enum Found<'a> {
    Exact(&'a crate::entry::Entry),
    Lemma(&'a crate::entry::Entry),
    Missing(Vec<String>),
}

fn look_up<'a>(ix: &'a Index, word: &str) -> Result<Found<'a>, QueryError> {
    if word.trim().is_empty() {
        return Err(QueryError::Empty);
    }
    let chars = word.chars().count();
    if chars > crate::index::QUERY_CHARS_MAX {
        return Err(QueryError::TooLong {
            chars,
            limit: crate::index::QUERY_CHARS_MAX,
        });
    }
    if let Some(e) = ix.entry(word) {
        return Ok(Found::Exact(e));
    }
    if let Some(e) = ix.lemmas(word).first() {
        return Ok(Found::Lemma(e));
    }
    let suggestions = ix.spell(word, 5)?.into_iter().map(|c| c.word).collect();
    Ok(Found::Missing(suggestions))
}

async fn api_entry(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    let word = match path_word(&uri, "/api/entry/") {
        Ok(w) => w,
        Err(r) => return r,
    };
    let ix = match index(&app) {
        Ok(ix) => ix,
        Err(r) => return r,
    };
    match look_up(&ix, &word) {
        Ok(Found::Exact(e)) => cached(&headers, &ix, StatusCode::OK, json!({"entry": e})),
        Ok(Found::Lemma(e)) => cached(
            &headers,
            &ix,
            StatusCode::OK,
            json!({"entry": e, "inflection_of": e.word, "query": word}),
        ),
        Ok(Found::Missing(suggestions)) => cached(
            &headers,
            &ix,
            StatusCode::NOT_FOUND,
            json!({
                "error": {"code": "not_found", "message": format!("no entry for {word:?}")},
                "suggestions": words_json(suggestions),
            }),
        ),
        Err(e) => query_error(e),
    }
}

async fn api_search(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    answer(&app, &headers, &uri, |ix, params, q| {
        let results: Vec<Value> = ix
            .search(q, params.number("limit", 10))?
            .iter()
            .map(|h| json!({"word": h.entry.word, "snippet": h.snippet_html, "score": h.score}))
            .collect();
        Ok(json!({"results": results}))
    })
}

async fn api_pattern(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    answer(&app, &headers, &uri, |ix, params, q| {
        let m = ix.pattern(q, list_limit(params))?;
        Ok(json!({"results": words_json(&m.words), "truncated": m.truncated}))
    })
}

async fn api_anagram(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    answer(&app, &headers, &uri, |ix, params, q| {
        let words = ix.anagrams(q, list_limit(params))?;
        Ok(json!({"results": words_json(words)}))
    })
}

async fn api_rhymes(State(app): State<Arc<App>>, headers: HeaderMap, uri: Uri) -> Response {
    answer(&app, &headers, &uri, |ix, params, q| {
        let r = ix.rhymes(q, list_limit(params))?;
        Ok(json!({"perfect": words_json(&r.perfect), "near": words_json(&r.near)}))
    })
}

async fn api_about(State(app): State<Arc<App>>) -> Response {
    let sources: Vec<Value> = crate::source::ATTRIBUTIONS
        .iter()
        .map(|(name, text)| json!({"name": name, "attribution": text}))
        .collect();
    let ix = app.replica.index();
    axum::Json(json!({
        "dataset": ix.as_ref().map(|ix| ix.version.clone()),
        "entries": ix.as_ref().map_or(0, |ix| ix.len()),
        "sources": sources,
    }))
    .into_response()
}

fn html(status: StatusCode, body: String) -> Response {
    (status, Html(body)).into_response()
}

fn page_unavailable(app: &App) -> Response {
    let r = unavailable(app);
    let status = r.status();
    html(
        status,
        page::message(
            "Not ready",
            "The dictionary is being loaded; try again in a moment.",
        ),
    )
}

async fn home(State(app): State<Arc<App>>) -> Response {
    match app.replica.index() {
        Some(ix) => html(StatusCode::OK, page::home(ix.len(), &ix.version)),
        None => page_unavailable(&app),
    }
}

/// The search form's target: a look-up goes to the entry, a search to the results.
async fn go(uri: Uri) -> Response {
    let params = match Params::parse(uri.query()) {
        Ok(p) => p,
        Err(e) => return input_error(e),
    };
    let q = params.get("q").unwrap_or("").trim();
    if q.is_empty() {
        return Redirect::to("/").into_response();
    }
    match params.get("kind") {
        Some("search") => Redirect::to(&format!("/search?q={}", page::url_path(q))).into_response(),
        _ => Redirect::to(&format!("/entry/{}", page::url_path(q))).into_response(),
    }
}

async fn entry_page(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let word = match path_word(&uri, "/entry/") {
        Ok(w) => w,
        Err(_) => {
            return html(
                StatusCode::BAD_REQUEST,
                page::message("Bad request", "The word in the address is not valid."),
            )
        }
    };
    let Some(ix) = app.replica.index() else {
        return page_unavailable(&app);
    };
    match look_up(&ix, &word) {
        Ok(Found::Exact(e)) => html(StatusCode::OK, page::entry(e, None)),
        Ok(Found::Lemma(e)) => html(StatusCode::OK, page::entry(e, Some(&word))),
        Ok(Found::Missing(suggestions)) => {
            html(StatusCode::NOT_FOUND, page::not_found(&word, &suggestions))
        }
        Err(e) => html(
            StatusCode::BAD_REQUEST,
            page::message("Bad request", &e.to_string()),
        ),
    }
}

/// A page's index and parameters, or the page to answer with (a 400 or a 503).
fn page_prepare(app: &App, uri: &Uri) -> Result<(Arc<Index>, Params), Response> {
    let params = Params::parse(uri.query()).map_err(|e| {
        html(
            StatusCode::BAD_REQUEST,
            page::message("Bad request", &e.to_string()),
        )
    })?;
    let ix = app.replica.index().ok_or_else(|| page_unavailable(app))?;
    Ok((ix, params))
}

async fn search_page(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let (ix, params) = match page_prepare(&app, &uri) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = params.get("q").unwrap_or("");
    match ix.search(q, 20) {
        Ok(hits) => html(StatusCode::OK, page::search(q, &hits)),
        Err(e) => html(
            StatusCode::BAD_REQUEST,
            page::message("Bad request", &e.to_string()),
        ),
    }
}

async fn find_page(State(app): State<Arc<App>>, uri: Uri) -> Response {
    let (ix, params) = match page_prepare(&app, &uri) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let kind = match params.get("kind") {
        Some("anagram") => "anagram",
        Some("rhymes") => "rhymes",
        _ => "pattern",
    };
    let q = params.get("q").unwrap_or("").trim();
    let result = if q.is_empty() {
        Ok((Vec::new(), None))
    } else {
        match kind {
            "anagram" => ix
                .anagrams(q, LIST_LIMIT_MAX)
                .map(|w| (w.into_iter().map(str::to_string).collect(), None)),
            "rhymes" => ix.rhymes(q, 40).map(|r| (Vec::new(), Some(r))),
            _ => ix.pattern(q, LIST_LIMIT_MAX).map(|m| (m.words, None)),
        }
        .map_err(|e| e.to_string())
    };
    let status = if result.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    html(status, page::find(kind, q, result))
}

async fn about_page(State(app): State<Arc<App>>) -> Response {
    let ix = app.replica.index();
    let version = ix
        .as_ref()
        .map_or("(not loaded)".to_string(), |ix| ix.version.clone());
    html(
        StatusCode::OK,
        page::about(&version, ix.map_or(0, |ix| ix.len())),
    )
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let status = app.replica.status();
    let ix = app.replica.index();
    let body = json!({
        "status": if app.shutting_down.load(Ordering::SeqCst) { "stopping" } else if ix.is_some() { "ok" } else { "starting" },
        "dataset": ix.as_ref().map(|ix| ix.version.clone()),
        "entries": ix.as_ref().map_or(0, |ix| ix.len()),
        "building": status.building,
        "last_error": status.last_error,
    });
    let code = if ix.is_some() && !app.shutting_down.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(body)).into_response()
}

async fn metrics(State(app): State<Arc<App>>) -> Response {
    let status = app.replica.status();
    let ix = app.replica.index();
    let extra = format!(
        "# HELP dictionary_index_entries Headwords in the index served.\n\
# TYPE dictionary_index_entries gauge\ndictionary_index_entries {}\n\
# HELP dictionary_index_builds_total Indexes built from the store.\n\
# TYPE dictionary_index_builds_total counter\ndictionary_index_builds_total {}\n\
# HELP dictionary_index_build_seconds How long the last build took (read and index).\n\
# TYPE dictionary_index_build_seconds gauge\ndictionary_index_build_seconds {}\n\
# HELP dictionary_index_building Whether a build is under way.\n\
# TYPE dictionary_index_building gauge\ndictionary_index_building {}\n",
        ix.as_ref().map_or(0, |ix| ix.len()),
        status.builds,
        status.build_seconds,
        u8::from(status.building),
    );
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(&extra),
    )
        .into_response()
}
