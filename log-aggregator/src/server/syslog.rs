//! Syslog straight into an aggregator: a TCP listener (RFC 6587, either framing) and a UDP
//! socket, whose records go through one bounded queue to the store.
//!
//! Syslog has no acknowledgement, so the aggregator is the one that must not lose what it
//! took: a batch that the store refuses is retried (with backoff) until it is stored, and
//! while the queue is full a TCP connection is simply not read, so the sender's TCP window
//! closes and it waits (back-pressure, no drop). UDP cannot be told to wait: a datagram
//! that meets a full queue is dropped and counted (`logs_udp_dropped_total`), which is what
//! every UDP syslog receiver does; use TCP or the agent where that matters.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};

use super::App;
use crate::layout::Origin;
use crate::record::Record;
use crate::syslog::frame::{Decoded, Decoder};
use crate::syslog::message;

/// Records the queue to the store holds at most.
pub const QUEUE_RECORDS_MAX: usize = 20_000;
/// Records in one write to the store at most.
pub const BATCH_RECORDS_MAX: usize = 2_000;
/// How long the first record of a batch waits for others.
pub const BATCH_WAIT_MS: u64 = 20;
/// Writes of queued batches in flight at once.
pub const WRITES_IN_FLIGHT: usize = 8;
/// The room a syslog TCP connection's read buffer starts with: what one read takes, whose
/// whole frames are then queued together.
pub const READ_BUFFER_BYTES: usize = 64 * 1024;
/// The largest UDP datagram read.
pub const DATAGRAM_BYTES_MAX: usize = 65_535;
/// TCP connections served at once.
pub const CONNECTIONS_MAX: usize = 1_024;

/// How a record came, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Tcp,
    Udp,
}

pub type Queued = (Record, Via);

/// Takes records off the queue in batches and stores each, retrying until it is stored.
/// Returns when the queue is closed and empty (shutdown).
pub async fn drain(app: Arc<App>, mut queue: mpsc::Receiver<Queued>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(WRITES_IN_FLIGHT));
    loop {
        // Whatever is queued at once, then what comes within the wait, up to a batch: one
        // wakeup (and one timer) per handful of records, not per record.
        let mut batch = Vec::with_capacity(BATCH_RECORDS_MAX);
        if queue.recv_many(&mut batch, BATCH_RECORDS_MAX).await == 0 {
            break;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(BATCH_WAIT_MS);
        while batch.len() < BATCH_RECORDS_MAX {
            let room = BATCH_RECORDS_MAX - batch.len();
            match tokio::time::timeout_at(deadline, queue.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break, // closed, or waited long enough
                Ok(_) => {}
            }
        }
        let permit = slots.clone().acquire_owned().await.expect("never closed");
        let app = app.clone();
        tokio::spawn(async move {
            store_until_done(&app, batch).await;
            drop(permit);
        });
    }
    // Wait for the writes in flight.
    let _ = slots.acquire_many(WRITES_IN_FLIGHT as u32).await;
}

async fn store_until_done(app: &App, batch: Vec<Queued>) {
    let (records, vias): (Vec<Record>, Vec<Via>) = batch.into_iter().unzip();
    let mut backoff = Duration::from_millis(50);
    loop {
        match app.store.write(&records, app.now_ms()).await {
            Ok(w) => {
                let m = &app.metrics;
                let tcp = vias.iter().filter(|v| **v == Via::Tcp).count() as u64;
                m.lines_syslog_tcp.fetch_add(tcp, Ordering::Relaxed);
                m.lines_syslog_udp
                    .fetch_add(records.len() as u64 - tcp, Ordering::Relaxed);
                m.bytes.fetch_add(w.bytes as u64, Ordering::Relaxed);
                m.batches.fetch_add(w.batches as u64, Ordering::Relaxed);
                m.queued.fetch_sub(records.len() as u64, Ordering::Relaxed);
                return;
            }
            Err(error) => {
                app.metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, records = records.len(), "storing syslog records failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// Accepts syslog connections until `stop` turns true.
pub async fn serve_tcp(
    app: Arc<App>,
    listener: TcpListener,
    queue: mpsc::Sender<Queued>,
    mut stop: watch::Receiver<bool>,
) {
    let connections = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    let mut number = 0u64;
    loop {
        let permit = tokio::select! {
            p = connections.clone().acquire_owned() => p.expect("never closed"),
            _ = stop.changed() => return,
        };
        let (conn, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(error) => {
                    tracing::warn!(%error, "syslog accept failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        number += 1;
        let source = format!("syslog-tcp/{}/{number}", app.boot_ms);
        let (app, queue, stop) = (app.clone(), queue.clone(), stop.clone());
        tokio::spawn(async move {
            read_connection(app, conn, peer.ip().to_string(), source, queue, stop).await;
            drop(permit);
        });
    }
}

async fn read_connection(
    app: Arc<App>,
    mut conn: tokio::net::TcpStream,
    peer: String,
    source: String,
    queue: mpsc::Sender<Queued>,
    mut stop: watch::Receiver<bool>,
) {
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut frames = Vec::new();
    let mut position = 0u64;
    loop {
        // Every whole frame first, queued together: the queue's reservation waits while it
        // is full, and this connection is not read meanwhile.
        while frames.len() < queue.max_capacity() {
            match decoder.decode(&mut buf) {
                Decoded::Frame(f) => frames.push(f),
                _ => break,
            }
        }
        if !frames.is_empty() {
            if !enqueue(&app, &queue, &peer, &source, &mut position, &mut frames).await {
                return;
            }
            continue; // the buffer may hold more whole frames than the queue has room for
        }
        let read = tokio::select! {
            r = conn.read_buf(&mut buf) => r,
            _ = stop.changed() => Ok(0),
        };
        match read {
            Ok(0) | Err(_) => {
                if let Some(frame) = decoder.finish(&mut buf) {
                    frames.push(frame);
                    enqueue(&app, &queue, &peer, &source, &mut position, &mut frames).await;
                }
                return;
            }
            Ok(_) => {}
        }
    }
}

/// Parses a connection's `frames` into records and queues them (emptying `frames`), with one
/// reservation of the queue's room for all (at most its capacity); false once the queue is
/// closed.
async fn enqueue(
    app: &App,
    queue: &mpsc::Sender<Queued>,
    peer: &str,
    source: &str,
    position: &mut u64,
    frames: &mut Vec<crate::syslog::frame::Frame>,
) -> bool {
    let Ok(permits) = queue.reserve_many(frames.len()).await else {
        return false;
    };
    let now = app.now_ms();
    app.metrics
        .queued
        .fetch_add(frames.len() as u64, Ordering::Relaxed);
    for (permit, frame) in permits.zip(frames.drain(..)) {
        let origin = Origin {
            agent: &app.name,
            source,
            position: *position,
        };
        *position += 1;
        let record = Record::from_syslog(
            message::parse(&frame.bytes, now),
            now,
            peer,
            &origin,
            frame.truncated,
        );
        permit.send((record, Via::Tcp));
    }
    true
}

/// Reads syslog datagrams until `stop` turns true.
pub async fn serve_udp(
    app: Arc<App>,
    socket: UdpSocket,
    queue: mpsc::Sender<Queued>,
    mut stop: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
    let source = format!("syslog-udp/{}", app.boot_ms);
    let mut position = 0u64;
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(error) => {
                    tracing::warn!(%error, "syslog UDP receive failed");
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let now = app.now_ms();
        // A datagram is one message; a trailing newline is not part of it.
        let bytes = buf[..n].strip_suffix(b"\n").unwrap_or(&buf[..n]);
        let origin = Origin {
            agent: &app.name,
            source: &source,
            position,
        };
        position += 1;
        let record = Record::from_syslog(
            message::parse(bytes, now),
            now,
            &peer.ip().to_string(),
            &origin,
            false,
        );
        app.metrics.queued.fetch_add(1, Ordering::Relaxed);
        if queue.try_send((record, Via::Udp)).is_err() {
            app.metrics.queued.fetch_sub(1, Ordering::Relaxed);
            app.metrics.udp_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}
