//! Fetching one URL: a GET through a pooled HTTP/1.1 client (hyper), with a timeout, a limit
//! on the body, and no redirects followed (a redirect is the frontier's business: its target
//! is a URL of its own, queued behind the host's Crawl-delay).
//!
//! The body is read only for HTML (`text/html`, `application/xhtml+xml`), and only up to
//! [`Limits::body_bytes_max`]: a bigger page is cut off and reported, never held whole.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper::header;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// The crawler's name, in its User-Agent and as robots.txt groups name it.
pub const AGENT: &str = "thesaurus-scraper";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The most body bytes read from one page.
    pub body_bytes_max: usize,
    /// The most time from sending the request to the body's last byte.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            body_bytes_max: 4 << 20,
            timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What came back.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    Response(Answer),
    /// No HTTP answer: the connection failed or the time ran out.
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    /// The body, for HTML within the limit (and for robots.txt); `None` otherwise.
    pub body: Option<Bytes>,
    /// The body was longer than the limit.
    pub too_large: bool,
    /// Body bytes read.
    pub bytes: usize,
}

impl Answer {
    pub fn is_html(&self) -> bool {
        let t = self.content_type.to_ascii_lowercase();
        t.starts_with("text/html") || t.starts_with("application/xhtml+xml")
    }
}

#[derive(Clone)]
pub struct Fetcher {
    client: Client<HttpConnector, Empty<Bytes>>,
    pub limits: Limits,
}

impl Fetcher {
    pub fn new(limits: Limits) -> Fetcher {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(limits.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build(connector);
        Fetcher { client, limits }
    }

    /// GETs `url`; `any_type` reads the body whatever its type (robots.txt is text/plain).
    pub async fn get(&self, url: &str, any_type: bool) -> Fetched {
        match tokio::time::timeout(self.limits.timeout, self.get_inner(url, any_type)).await {
            Ok(Ok(answer)) => Fetched::Response(answer),
            Ok(Err(e)) => Fetched::Error(e),
            Err(_) => Fetched::Error(format!(
                "no answer within {} s",
                self.limits.timeout.as_secs_f64()
            )),
        }
    }

    async fn get_inner(&self, url: &str, any_type: bool) -> Result<Answer, String> {
        let request = hyper::Request::get(url)
            .header(
                header::USER_AGENT,
                concat!("thesaurus-scraper/", env!("CARGO_PKG_VERSION")),
            )
            .header(
                header::ACCEPT,
                "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1",
            )
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("a request for {url:?}: {e}"))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("{e:?}").chars().take(300).collect::<String>())?;
        let header = |name: header::HeaderName| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut answer = Answer {
            status: response.status().as_u16(),
            content_type: header(header::CONTENT_TYPE).unwrap_or_default(),
            location: header(header::LOCATION),
            retry_after: header(header::RETRY_AFTER),
            ..Answer::default()
        };
        // A page's body is read when it is a successful HTML page; robots.txt's always.
        let wanted = any_type || answer.is_html() && response.status().is_success();
        if !wanted {
            return Ok(answer); // the body is dropped unread, with its connection
        }
        let mut body = response.into_body();
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("reading the body: {e}"))?;
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > self.limits.body_bytes_max {
                    answer.too_large = true;
                    answer.bytes = buf.len() + data.len();
                    return Ok(answer);
                }
                buf.extend_from_slice(&data);
            }
        }
        answer.bytes = buf.len();
        answer.body = Some(buf.freeze());
        Ok(answer)
    }
}
