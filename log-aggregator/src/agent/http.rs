//! The agent's HTTP client (and the query benchmark's): one request over one connection,
//! HTTP/1.1, with a deadline. Small on purpose (the agent posts one kind of request to its
//! aggregators); answers are read whole, bounded by [`ANSWER_BYTES_MAX`].

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The longest answer read.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr}: {source}")]
    Io {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} did not answer within {ms} ms")]
    Timeout { addr: String, ms: u64 },
    #[error("{addr} answered something that is not HTTP: {what}")]
    Bad { addr: String, what: String },
}

/// POSTs `body` to `http://{addr}{path}` with `headers`; the status and the body.
pub async fn post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, String), HttpError> {
    request("POST", addr, path, headers, body, timeout).await
}

/// GETs `http://{addr}{path}`; the status and the body.
pub async fn get(addr: &str, path: &str, timeout: Duration) -> Result<(u16, String), HttpError> {
    request("GET", addr, path, &[], b"", timeout).await
}

async fn request(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout: Duration,
) -> Result<(u16, String), HttpError> {
    let ms = timeout.as_millis() as u64;
    match tokio::time::timeout(timeout, exchange(method, addr, path, headers, body)).await {
        Ok(r) => r,
        Err(_) => Err(HttpError::Timeout {
            addr: addr.to_string(),
            ms,
        }),
    }
}

async fn exchange(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), HttpError> {
    let io = |source| HttpError::Io {
        addr: addr.to_string(),
        source,
    };
    let mut conn = TcpStream::connect(addr)
        .await
        .map_err(|source| HttpError::Connect {
            addr: addr.to_string(),
            source,
        })?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await.map_err(io)?;
    conn.write_all(body).await.map_err(io)?;
    let mut answer = Vec::new();
    (&mut conn)
        .take(ANSWER_BYTES_MAX as u64)
        .read_to_end(&mut answer)
        .await
        .map_err(io)?;
    let text = String::from_utf8_lossy(&answer);
    let bad = |what: &str| HttpError::Bad {
        addr: addr.to_string(),
        what: what.to_string(),
    };
    let status_line = text.lines().next().ok_or_else(|| bad("an empty answer"))?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(status_line))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Ok((status, body))
}
