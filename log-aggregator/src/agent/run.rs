//! `log-aggregator agent --config FILE`: the agent's sources, its disk buffer and its
//! shipper, wired together.
//!
//! Every source turns what it takes into protocol lines (NDJSON, each naming its `source`
//! and `position`, see [`crate::ingest`]) and appends them to the disk buffer through
//! [`Intake`]; the shipper sends the buffer's lines in batches (gzip) to an aggregator, and
//! only on its acknowledgement (the aggregator answers once the store has them) moves the
//! buffer's acknowledged mark and the files' checkpoints. An aggregator that does not
//! answer, or answers 429/503, is left for the next, with a backoff; meanwhile the buffer
//! grows, up to its cap, where the overflow policy applies: `block` stops the sources
//! (files are not read on, syslog TCP is not read, HTTP pushes get 503), `drop_oldest`
//! deletes the oldest unsent segment and counts it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{watch, Notify};

use super::buffer::{Buffer, Full};
use super::config::{Config, Overflow};
use super::tail::{Checkpoints, FileRecord, Identity, Tailer};
use crate::ingest::{self, Arrival};
use crate::record::Record;
use crate::server::now_ms;
use crate::syslog::frame::{Decoded, Decoder};
use crate::syslog::message::{self, Level};

/// How often files are polled.
pub const POLL_MS: u64 = 250;
/// How long one push to an aggregator may take.
pub const PUSH_TIMEOUT_MS: u64 = 30_000;
/// The longest wait between two tries when no aggregator takes a batch.
pub const BACKOFF_MAX_MS: u64 = 5_000;
/// How long a stopping agent keeps shipping what it buffered.
pub const DRAIN_ON_STOP_MS: u64 = 5_000;

/// A line of the agent protocol (what the aggregator's NDJSON push takes).
#[derive(Debug, Serialize)]
pub struct ProtocolLine<'a> {
    pub ts: i64,
    pub host: &'a str,
    pub service: &'a str,
    pub level: Level,
    pub message: &'a str,
    pub source: &'a str,
    pub position: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<&'a str>,
    #[serde(flatten)]
    pub labels: &'a BTreeMap<String, String>,
}

impl ProtocolLine<'_> {
    pub fn bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a line serialises")
    }
}

/// A record (from syslog or an NDJSON push) as a protocol line of `source` at `position`.
pub fn record_line(r: &Record, source: &str, position: u64) -> Vec<u8> {
    ProtocolLine {
        ts: r.ts,
        host: &r.host,
        service: &r.service,
        level: r.level,
        message: &r.message,
        source,
        position,
        end: None,
        truncated: r.truncated,
        parse_error: r.parse_error.as_deref(),
        labels: &r.labels,
    }
    .bytes()
}

/// The level a plain log line names near its start (`ERROR`, `[warn]`, `level=debug`…),
/// else info.
pub fn level_of(text: &str) -> Level {
    let head: String = text.chars().take(80).collect();
    head.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| w.len() >= 3)
        .find_map(|w| match w {
            "EMERG" | "ALERT" | "CRIT" | "CRITICAL" | "FATAL" | "ERROR" | "ERR" | "WARN"
            | "WARNING" | "NOTICE" | "INFO" | "DEBUG" | "TRACE" | "error" | "warn" | "warning"
            | "debug" | "fatal" | "critical" | "trace" => Level::from_name(w),
            _ => None,
        })
        .unwrap_or(Level::Info)
}

/// The disk buffer, shared by the sources (appending) and the shipper.
pub struct Intake {
    buffer: Mutex<Buffer>,
    overflow: Overflow,
    /// New lines for the shipper.
    pub appended: Notify,
}

impl Intake {
    /// Appends `lines` durably. Under `block`, waits while the buffer is full; under
    /// `drop_oldest`, makes room. `Ok(false)`: full, and `wait` said not to.
    pub fn append_blocking(
        &self,
        lines: &[Vec<u8>],
        wait: bool,
        metrics: &Metrics,
    ) -> std::io::Result<bool> {
        if lines.is_empty() {
            return Ok(true);
        }
        loop {
            {
                let mut b = self.buffer.lock().expect("buffer");
                match b.append(lines)? {
                    Ok(()) => {
                        metrics
                            .buffered
                            .fetch_add(lines.len() as u64, Ordering::Relaxed);
                        self.appended.notify_one();
                        return Ok(true);
                    }
                    Err(Full) if self.overflow == Overflow::DropOldest => {
                        let lost = b.drop_oldest()?;
                        metrics.dropped.fetch_add(lost, Ordering::Relaxed);
                        if lost == 0 {
                            // One segment, and it is the one appended to: nothing to drop.
                            drop(b);
                            if !wait {
                                return Ok(false);
                            }
                        } else {
                            tracing::warn!(
                                lines = lost,
                                "the buffer is full: dropped its oldest lines"
                            );
                            continue;
                        }
                    }
                    Err(Full) => {
                        if !wait {
                            return Ok(false);
                        }
                    }
                }
            }
            metrics.blocked.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    pub lines_file: AtomicU64,
    pub lines_syslog: AtomicU64,
    pub lines_http: AtomicU64,
    pub buffered: AtomicU64,
    pub shipped: AtomicU64,
    pub batches: AtomicU64,
    pub retries: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped: AtomicU64,
    pub blocked: AtomicU64,
    pub udp_dropped: AtomicU64,
}

pub struct Agent {
    pub config: Config,
    pub name: String,
    pub host: String,
    pub intake: Intake,
    pub checkpoints: Mutex<Checkpoints>,
    checkpoints_path: PathBuf,
    pub metrics: Metrics,
    pub boot_ms: i64,
    pub stop: watch::Sender<bool>,
    pub files_followed: AtomicU64,
    pub connected: AtomicBool,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

impl Agent {
    pub fn open(config: Config) -> anyhow::Result<Arc<Agent>> {
        let state = &config.state_dir;
        std::fs::create_dir_all(state)
            .with_context(|| format!("creating the state directory {}", state.display()))?;
        let buffer = Buffer::open(&state.join("buffer"), config.buffer_bytes_max)
            .with_context(|| format!("opening the disk buffer in {}", state.display()))?;
        let checkpoints_path = state.join("checkpoints.json");
        let checkpoints = Checkpoints::load(&checkpoints_path)?;
        let host = config.host.clone().unwrap_or_else(hostname);
        let name = config.name.clone().unwrap_or_else(|| host.clone());
        tracing::info!(
            %name,
            pending = buffer.pending(),
            buffer_bytes = buffer.bytes(),
            files = checkpoints.files.len(),
            "agent state opened"
        );
        Ok(Arc::new(Agent {
            name,
            host,
            intake: Intake {
                buffer: Mutex::new(buffer),
                overflow: config.overflow,
                appended: Notify::new(),
            },
            checkpoints: Mutex::new(checkpoints),
            checkpoints_path,
            metrics: Metrics::default(),
            boot_ms: now_ms(),
            stop: watch::channel(false).0,
            files_followed: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            config,
        }))
    }

    fn file_line(&self, r: &FileRecord, tailer: &Tailer, now: i64) -> Vec<u8> {
        let entry = tailer.entry(r.entry);
        let service = entry.service.clone().unwrap_or_else(|| {
            std::path::Path::new(&r.path)
                .file_stem()
                .map_or("file".into(), |s| s.to_string_lossy().to_string())
        });
        let mut labels = entry.labels.clone();
        labels.insert("file".into(), r.path.clone());
        ProtocolLine {
            ts: now,
            host: &self.host,
            service: &service,
            level: level_of(&r.text),
            message: &r.text,
            source: &r.source,
            position: r.position,
            end: Some(r.end),
            truncated: r.truncated,
            parse_error: None,
            labels: &labels,
        }
        .bytes()
    }

    /// Follows the files until told to stop (a thread of its own: file IO blocks).
    pub fn follow_files(self: &Arc<Self>) {
        let mut tailer = Tailer::new(self.config.files.clone());
        let stop = self.stop.subscribe();
        while !*stop.borrow() {
            let now = now_ms();
            let snapshot = self.checkpoints.lock().expect("checkpoints").clone();
            let records = tailer.poll(&snapshot, now);
            self.files_followed
                .store(tailer.followed() as u64, Ordering::Relaxed);
            let lines: Vec<Vec<u8>> = records
                .iter()
                .map(|r| self.file_line(r, &tailer, now))
                .collect();
            let n = lines.len() as u64;
            if let Err(error) = self.intake.append_blocking(&lines, true, &self.metrics) {
                tracing::error!(%error, "appending to the disk buffer failed");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            self.metrics.lines_file.fetch_add(n, Ordering::Relaxed);
            if n == 0 {
                std::thread::sleep(Duration::from_millis(POLL_MS));
            }
        }
    }

    /// Ships the buffer to the aggregators until told to stop (then for at most
    /// [`DRAIN_ON_STOP_MS`] more, while there is something to ship).
    pub async fn ship(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut cursor = self.intake.buffer.lock().expect("buffer").acked();
        let mut next = 0usize;
        let mut backoff = Duration::from_millis(100);
        let mut stop_by: Option<tokio::time::Instant> = None;
        let token = format!("Bearer {}", self.config.token());
        let mut bytes_max = self.config.batch_bytes_max;
        loop {
            if *stop.borrow() && stop_by.is_none() {
                stop_by =
                    Some(tokio::time::Instant::now() + Duration::from_millis(DRAIN_ON_STOP_MS));
            }
            if stop_by.is_some_and(|t| tokio::time::Instant::now() >= t) {
                return;
            }
            let batch = {
                let b = self.intake.buffer.lock().expect("buffer");
                b.read(cursor, bytes_max)
            };
            let batch = match batch {
                Ok(b) => b,
                Err(error) => {
                    tracing::error!(%error, "reading the disk buffer failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if batch.is_empty() {
                if stop_by.is_some() {
                    return;
                }
                tokio::select! {
                    _ = self.intake.appended.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(self.config.batch_wait_ms)) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            let mut batch = batch;
            let small = batch.iter().map(|(_, l)| l.len() + 1).sum::<usize>() < bytes_max / 2;
            if small && stop_by.is_none() {
                // A small batch waits a moment for more, once.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(self.config.batch_wait_ms)) => {}
                    _ = stop.changed() => {}
                }
                let more = self
                    .intake
                    .buffer
                    .lock()
                    .expect("buffer")
                    .read(cursor, bytes_max);
                if let Ok(more) = more {
                    if more.len() > batch.len() {
                        batch = more;
                    }
                }
            }
            let size: usize = batch.iter().map(|(_, l)| l.len() + 1).sum();
            let last = batch.last().expect("not empty").0;
            let mut body = Vec::with_capacity(size);
            for (_, line) in &batch {
                body.extend_from_slice(line);
                body.push(b'\n');
            }
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&body).expect("writing to memory");
            let gz = gz.finish().expect("writing to memory");
            let addr = &self.config.aggregators[next % self.config.aggregators.len()];
            let headers = [
                ("Authorization", token.as_str()),
                ("Content-Type", "application/x-ndjson"),
                ("Content-Encoding", "gzip"),
                ("X-Log-Agent", self.name.as_str()),
            ];
            let answer = super::http::post(
                addr,
                "/api/v1/push",
                &headers,
                &gz,
                Duration::from_millis(PUSH_TIMEOUT_MS),
            )
            .await;
            match answer {
                Ok((200, _)) => {
                    self.acknowledged(&batch, last + 1);
                    cursor = last + 1;
                    backoff = Duration::from_millis(100);
                    bytes_max = self.config.batch_bytes_max;
                    self.connected.store(true, Ordering::Relaxed);
                    self.metrics.batches.fetch_add(1, Ordering::Relaxed);
                    self.metrics
                        .shipped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Ok((413, _)) if batch.len() > 1 => {
                    bytes_max = (size / 2).max(1);
                }
                Ok((status, body))
                    if (400..500).contains(&status) && status != 429 && status != 401 =>
                {
                    // The aggregator refuses these lines for good: kept aside, not retried.
                    tracing::error!(status, %body, lines = batch.len(), "an aggregator refused a batch; keeping it in rejected.ndjson");
                    self.reject(&body, &batch);
                    self.acknowledged(&batch, last + 1);
                    cursor = last + 1;
                }
                other => {
                    self.metrics.retries.fetch_add(1, Ordering::Relaxed);
                    self.connected.store(false, Ordering::Relaxed);
                    match other {
                        Ok((status, body)) => {
                            tracing::warn!(%addr, status, %body, "an aggregator did not take a batch; trying the next")
                        }
                        Err(error) => {
                            tracing::warn!(%addr, %error, "an aggregator did not take a batch; trying the next")
                        }
                    }
                    next += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = stop.changed() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(BACKOFF_MAX_MS));
                }
            }
        }
    }

    /// A batch ending before `through` is acknowledged: the buffer's mark and the files'
    /// checkpoints move (both persisted).
    fn acknowledged(&self, batch: &[(u64, Vec<u8>)], through: u64) {
        let now = now_ms();
        {
            let mut cps = self.checkpoints.lock().expect("checkpoints");
            for (_, line) in batch {
                #[derive(serde::Deserialize)]
                struct Ends {
                    source: String,
                    end: Option<u64>,
                    file: Option<String>,
                }
                let Ok(e) = serde_json::from_slice::<Ends>(line) else {
                    continue;
                };
                let (Some(end), Some(identity)) = (e.end, Identity::parse(&e.source)) else {
                    continue;
                };
                cps.advance(
                    &e.source,
                    e.file.as_deref().unwrap_or(""),
                    &identity,
                    end,
                    now,
                );
            }
            if let Err(error) = cps.save(&self.checkpoints_path, now) {
                tracing::error!(%error, "saving the checkpoints failed");
            }
        }
        if let Err(error) = self.intake.buffer.lock().expect("buffer").ack(through) {
            tracing::error!(%error, "saving the buffer's acknowledged mark failed");
        }
    }

    fn reject(&self, why: &str, batch: &[(u64, Vec<u8>)]) {
        self.metrics
            .rejected
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let path = self.config.state_dir.join("rejected.ndjson");
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            writeln!(f, "{}", json!({"rejected_because": why}))?;
            for (_, line) in batch {
                f.write_all(line)?;
                f.write_all(b"\n")?;
            }
            f.sync_all()
        };
        if let Err(error) = write() {
            tracing::error!(%error, path = %path.display(), "could not keep rejected lines");
        }
    }

    /// Syslog over TCP: each connection's messages, appended in the order they came.
    pub async fn syslog_tcp(self: Arc<Self>, listener: tokio::net::TcpListener) {
        let mut stop = self.stop.subscribe();
        let mut number = 0u64;
        loop {
            let (conn, peer) = tokio::select! {
                a = listener.accept() => match a {
                    Ok(c) => c,
                    Err(_) => continue,
                },
                _ = stop.changed() => return,
            };
            number += 1;
            let agent = self.clone();
            let source = format!("syslog-tcp/{}/{number}", self.boot_ms);
            tokio::spawn(async move {
                agent
                    .syslog_connection(conn, peer.ip().to_string(), source)
                    .await;
            });
        }
    }

    async fn syslog_connection(
        self: Arc<Self>,
        mut conn: tokio::net::TcpStream,
        peer: String,
        source: String,
    ) {
        use tokio::io::AsyncReadExt;
        let mut decoder = Decoder::default();
        let mut buf = bytes::BytesMut::with_capacity(16 * 1024);
        let mut position = 0u64;
        let mut stop = self.stop.subscribe();
        loop {
            let mut lines = Vec::new();
            while let Decoded::Frame(f) = decoder.decode(&mut buf) {
                lines.push(self.syslog_line(&f.bytes, f.truncated, &peer, &source, &mut position));
            }
            let done = tokio::select! {
                r = conn.read_buf(&mut buf) => matches!(r, Ok(0) | Err(_)),
                _ = stop.changed() => true,
            };
            if done {
                if let Some(f) = decoder.finish(&mut buf) {
                    lines.push(self.syslog_line(
                        &f.bytes,
                        f.truncated,
                        &peer,
                        &source,
                        &mut position,
                    ));
                }
            }
            if !lines.is_empty() {
                let agent = self.clone();
                let n = lines.len() as u64;
                // Waits while the buffer is full: this connection is not read meanwhile.
                let ok = tokio::task::spawn_blocking(move || {
                    agent.intake.append_blocking(&lines, true, &agent.metrics)
                })
                .await;
                if !matches!(ok, Ok(Ok(true))) {
                    tracing::error!("appending syslog to the disk buffer failed");
                    return;
                }
                self.metrics.lines_syslog.fetch_add(n, Ordering::Relaxed);
            }
            if done {
                return;
            }
        }
    }

    fn syslog_line(
        &self,
        bytes: &[u8],
        truncated: bool,
        peer: &str,
        source: &str,
        position: &mut u64,
    ) -> Vec<u8> {
        let now = now_ms();
        let origin = crate::layout::Origin {
            agent: &self.name,
            source,
            position: *position,
        };
        let r = Record::from_syslog(message::parse(bytes, now), now, peer, &origin, truncated);
        let line = record_line(&r, source, *position);
        *position += 1;
        line
    }

    /// Syslog over UDP (a datagram that meets a full buffer is dropped and counted).
    pub async fn syslog_udp(self: Arc<Self>, socket: tokio::net::UdpSocket) {
        let mut stop = self.stop.subscribe();
        let mut buf = vec![0u8; 65_535];
        let source = format!("syslog-udp/{}", self.boot_ms);
        let mut position = 0u64;
        loop {
            let (n, peer) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(_) => continue,
                },
                _ = stop.changed() => return,
            };
            let bytes = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
            let line =
                self.syslog_line(bytes, false, &peer.ip().to_string(), &source, &mut position);
            let agent = self.clone();
            let taken = tokio::task::spawn_blocking(move || {
                agent.intake.append_blocking(&[line], false, &agent.metrics)
            })
            .await;
            match taken {
                Ok(Ok(true)) => {
                    self.metrics.lines_syslog.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    self.metrics.udp_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    fn render_metrics(&self) -> String {
        let m = &self.metrics;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (pending, bytes, cap) = {
            let b = self.intake.buffer.lock().expect("buffer");
            (b.pending(), b.bytes(), b.cap())
        };
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, u64)]| {
            crate::server::metrics::line(&mut out, name, kind, help, samples)
        };
        metric(
            "agent_lines_read_total",
            "counter",
            "Lines taken, by source.",
            &[
                ("{source=\"file\"}", get(&m.lines_file)),
                ("{source=\"syslog\"}", get(&m.lines_syslog)),
                ("{source=\"http\"}", get(&m.lines_http)),
            ],
        );
        metric(
            "agent_lines_shipped_total",
            "counter",
            "Lines acknowledged by an aggregator.",
            &[("", get(&m.shipped))],
        );
        metric(
            "agent_batches_total",
            "counter",
            "Batches acknowledged.",
            &[("", get(&m.batches))],
        );
        metric(
            "agent_retries_total",
            "counter",
            "Batches an aggregator did not take (tried again).",
            &[("", get(&m.retries))],
        );
        metric(
            "agent_lines_rejected_total",
            "counter",
            "Lines an aggregator refused for good (in rejected.ndjson).",
            &[("", get(&m.rejected))],
        );
        metric(
            "agent_lines_dropped_total",
            "counter",
            "Lines dropped unsent: drop_oldest at the buffer's cap.",
            &[("", get(&m.dropped))],
        );
        metric(
            "agent_udp_dropped_total",
            "counter",
            "Syslog datagrams dropped with the buffer full.",
            &[("", get(&m.udp_dropped))],
        );
        metric(
            "agent_buffer_lines",
            "gauge",
            "Lines in the disk buffer not yet acknowledged.",
            &[("", pending)],
        );
        metric(
            "agent_buffer_bytes",
            "gauge",
            "Bytes of the disk buffer (its fill).",
            &[("", bytes)],
        );
        metric(
            "agent_buffer_bytes_max",
            "gauge",
            "The disk buffer's cap.",
            &[("", cap)],
        );
        metric(
            "agent_files_followed",
            "gauge",
            "Files followed.",
            &[("", get(&self.files_followed))],
        );
        out
    }
}

impl Identity {
    /// The identity a source string names (see [`Identity::source`]).
    pub fn parse(source: &str) -> Option<Identity> {
        let mut p = source.strip_prefix("file:")?.split(':');
        let id = Identity {
            dev: p.next()?.parse().ok()?,
            ino: p.next()?.parse().ok()?,
            fp_len: p.next()?.parse().ok()?,
            fp_hash: u64::from_str_radix(p.next()?, 16).ok()?,
            generation: p.next()?.parse().ok()?,
        };
        p.next().is_none().then_some(id)
    }
}

async fn http_push(
    State(agent): State<Arc<Agent>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let push = format!("http/{}/{}", agent.boot_ms, now_ms());
    let peer = headers
        .get("x-log-host")
        .and_then(|v| v.to_str().ok())
        .unwrap_or(&agent.host)
        .to_string();
    let arrival = Arrival {
        now_ms: now_ms(),
        peer: &peer,
        agent: None,
        push: &push,
    };
    let records = match ingest::ndjson(&body, &arrival) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                axum::Json(json!({"error": {"code": "too_large", "message": e.to_string()}})),
            )
                .into_response()
        }
    };
    let lines: Vec<Vec<u8>> = records
        .iter()
        .enumerate()
        .map(|(i, r)| record_line(r, &push, i as u64))
        .collect();
    let n = lines.len();
    let a = agent.clone();
    match tokio::task::spawn_blocking(move || a.intake.append_blocking(&lines, false, &a.metrics))
        .await
    {
        Ok(Ok(true)) => {
            agent
                .metrics
                .lines_http
                .fetch_add(n as u64, Ordering::Relaxed);
            axum::Json(json!({"accepted": n})).into_response()
        }
        _ => {
            let mut r = (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": {"code": "buffer_full", "message": "the agent's disk buffer is full; retry later"}})),
            )
                .into_response();
            r.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, 1.into());
            r
        }
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let agent = Agent::open(config)?;
    let mut tasks = Vec::new();
    if let Some(addr) = &agent.config.syslog.tcp {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for syslog on tcp {addr}"))?;
        tracing::info!(%addr, "syslog over TCP");
        tasks.push(tokio::spawn(agent.clone().syslog_tcp(l)));
    }
    if let Some(addr) = &agent.config.syslog.udp {
        let s = tokio::net::UdpSocket::bind(addr)
            .await
            .with_context(|| format!("listening for syslog on udp {addr}"))?;
        tracing::info!(%addr, "syslog over UDP");
        tasks.push(tokio::spawn(agent.clone().syslog_udp(s)));
    }
    if let Some(addr) = &agent.config.http.listen {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, "NDJSON in, /health and /metrics");
        let router = Router::new()
            .route("/api/v1/push", post(http_push))
            .route(
                "/health",
                get(|State(a): State<Arc<Agent>>| async move {
                    let pending = a.intake.buffer.lock().expect("buffer").pending();
                    axum::Json(json!({
                        "status": "ok",
                        "name": a.name,
                        "buffered_lines": pending,
                        "shipping": a.connected.load(Ordering::Relaxed),
                        "files": a.files_followed.load(Ordering::Relaxed),
                    }))
                }),
            )
            .route(
                "/metrics",
                get(|State(a): State<Arc<Agent>>| async move { a.render_metrics() }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(ingest::PUSH_BYTES_MAX))
            .with_state(agent.clone());
        let mut stop = agent.stop.subscribe();
        tasks.push(tokio::spawn(async move {
            let _ = axum::serve(l, router)
                .with_graceful_shutdown(async move {
                    let _ = stop.changed().await;
                })
                .await;
        }));
    }
    let files = {
        let a = agent.clone();
        std::thread::Builder::new()
            .name("files".into())
            .spawn(move || a.follow_files())?
    };
    let shipper = tokio::spawn(agent.clone().ship());
    tracing::info!(name = %agent.name, aggregators = ?agent.config.aggregators, "agent running");
    shutdown.await;
    tracing::info!("stopping: shipping what is buffered for a moment");
    let _ = agent.stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let _ = tokio::task::spawn_blocking(move || files.join()).await;
    let _ = shipper.await;
    let pending = agent.intake.buffer.lock().expect("buffer").pending();
    tracing::info!(pending, "stopped (what is pending stays in the buffer)");
    Ok(())
}
