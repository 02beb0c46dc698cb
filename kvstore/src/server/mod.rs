//! The listeners of a `kvstore serve` process: the binary protocol, the Redis-compatible port
//! and the HTTP admin port (health, metrics, status), with a shared connection limit, idle and
//! read timeouts, and graceful shutdown.
//!
//! `run` takes already-bound listeners (tests bind port 0 and pass them in) and a shutdown
//! future. On shutdown the listeners stop accepting, each connection finishes the request it
//! is executing and flushes its replies, and the engine is fsynced before `run` returns.
//! Connection handling lives in [`binary`] and [`resp`]; the data model they call is
//! [`crate::db`].

pub mod binary;
pub mod cluster_node;
pub mod control;
pub mod http;
pub mod idle;
pub mod limits;
pub mod overview;
pub mod replicated;
pub mod resp;
pub mod resp_cluster;
pub mod suite;
pub mod writes;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::db::Db;
use crate::metrics::{Listener, Metrics};

/// Limits of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Open client connections, over both client ports together.
    pub connections_max: usize,
    /// Largest binary-protocol frame accepted (header included).
    pub frame_bytes_max: usize,
    /// Largest RESP bulk string accepted.
    pub resp_bulk_bytes_max: usize,
    /// A connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// A request that has started arriving must be complete within this long.
    pub read_timeout_ms: u64,
    /// How long shutdown waits for connections to finish their current request.
    pub shutdown_grace_ms: u64,
    /// Replies buffered before they are written out, even in the middle of a pipeline.
    pub write_buffer_bytes_max: usize,
    /// Runs of writes waiting for the write queue before connections must wait to submit.
    pub write_queue_jobs_max: usize,
    /// Cluster nodes: how long a write may wait to commit, or a read for its read index,
    /// before the client is told the outcome is unknown (writes) or to retry (reads).
    pub request_timeout_ms: u64,
    /// Cluster nodes: the consistency of reads that name none (RESP reads; the binary
    /// protocol's requests always name one).
    pub read_consistency: crate::node::Consistency,
    pub server_name: String,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            connections_max: 1024,
            frame_bytes_max: crate::wire::frame::FRAME_BYTES_MAX_DEFAULT,
            resp_bulk_bytes_max: crate::wire::frame::FRAME_BYTES_MAX_DEFAULT,
            idle_timeout_ms: 300_000,
            read_timeout_ms: 10_000,
            shutdown_grace_ms: 10_000,
            write_buffer_bytes_max: 256 * 1024,
            write_queue_jobs_max: 4096,
            request_timeout_ms: 5_000,
            read_consistency: crate::node::Consistency::Linearizable,
            server_name: format!("kvstore {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What every connection handler shares.
#[derive(Debug)]
pub struct Context {
    pub db: Db,
    pub config: ServerConfig,
    pub metrics: Metrics,
    pub started: Instant,
    /// State shared by RESP connections (SCAN cursors).
    pub resp: crate::resp::commands::Shared,
    /// Where connections send their single-key writes; see [`writes`].
    pub writes: writes::WriteQueue,
    /// The cluster node this server fronts, if it is one: writes then go through Raft
    /// ([`replicated`]).
    pub node: Option<crate::node::Node>,
    /// The keyspaces' limits as this node enforces them ([`limits`]).
    pub limits: Arc<limits::KeyspaceLimits>,
    /// The client the landing page reads the service registry with ([`suite`]), made at
    /// its first use.
    pub suite_client: std::sync::OnceLock<Arc<crate::client::cluster::ClusterClient>>,
    connections: Arc<Semaphore>,
    shutdown: watch::Receiver<bool>,
}

impl Context {
    /// The engine as of now: a cluster node's state machine replaces its engine when it
    /// installs a snapshot, so code that outlives one request asks here, not `db`.
    pub fn current_db(&self) -> Db {
        match &self.node {
            // The lowest group's (the meta group's on a node that hosts it): the node's
            // status and metrics pages show it as the node's engine.
            Some(node) => node
                .groups()
                .first()
                .and_then(|&g| node.db(g))
                .unwrap_or_else(|| self.db.clone()),
            None => self.db.clone(),
        }
    }

    /// True once shutdown has begun.
    pub fn shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves when shutdown begins.
    pub async fn shutdown_signal(&self) {
        let mut rx = self.shutdown.clone();
        let _ = rx.wait_for(|down| *down).await;
    }
}

/// The bound listeners of one server.
#[derive(Debug)]
pub struct Listeners {
    pub binary: TcpListener,
    pub resp: Option<TcpListener>,
    pub http: Option<TcpListener>,
}

/// Serves until `shutdown` resolves, then drains connections and fsyncs.
pub async fn run(
    listeners: Listeners,
    db: Db,
    node: Option<crate::node::Node>,
    config: ServerConfig,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mode = match db.engine().config().fsync {
        crate::storage::FsyncPolicy::Always => writes::Mode::Shared,
        _ => writes::Mode::Inline,
    };
    let writes = writes::WriteQueue::start(db.clone(), mode, config.write_queue_jobs_max);
    let ctx = Arc::new(Context {
        db,
        connections: Arc::new(Semaphore::new(config.connections_max)),
        config,
        metrics: Metrics::default(),
        started: Instant::now(),
        resp: crate::resp::commands::Shared::default(),
        writes,
        node,
        limits: Arc::default(),
        suite_client: std::sync::OnceLock::new(),
        shutdown: shutdown_rx,
    });

    let mut tasks = JoinSet::new();
    if let Some(node) = ctx.node.clone() {
        // Not in `tasks`: it never ends by itself, and it holds no connection.
        tokio::spawn(limits::refresh(ctx.limits.clone(), node));
    }
    tasks.spawn(accept_loop(ctx.clone(), listeners.binary, Listener::Binary));
    if let Some(resp) = listeners.resp {
        tasks.spawn(accept_loop(ctx.clone(), resp, Listener::Resp));
    }
    if let Some(http) = listeners.http {
        let ctx = ctx.clone();
        tasks.spawn(async move { http::serve(ctx, http).await });
    }

    shutdown.await;
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    let _ = shutdown_tx.send(true);
    let grace = Duration::from_millis(ctx.config.shutdown_grace_ms);
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "connections still open after the grace period; closing them"
        );
        tasks.abort_all();
    }
    ctx.current_db().engine().sync()?;
    tracing::info!("shutdown complete: all writes flushed to disk");
    Ok(())
}

async fn accept_loop(ctx: Arc<Context>, listener: TcpListener, kind: Listener) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = ctx.shutdown_signal() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Typically EMFILE: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = ctx.connections.clone().try_acquire_owned() else {
            ctx.metrics.connection_rejected(kind);
            tracing::warn!(%peer, limit = ctx.config.connections_max, "connection limit reached; refusing");
            connections.spawn(refuse(stream, kind));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let ctx = ctx.clone();
        connections.spawn(async move {
            ctx.metrics.connection_opened(kind);
            let result = match (kind, ctx.node.clone()) {
                (Listener::Binary, None) => binary::serve_connection(ctx.clone(), stream).await,
                (Listener::Resp, None) => resp::serve_connection(ctx.clone(), stream).await,
                (Listener::Binary, Some(node)) => {
                    replicated::serve_binary(ctx.clone(), node, stream).await
                }
                (Listener::Resp, Some(node)) => {
                    replicated::serve_resp(ctx.clone(), node, stream).await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "connection ended with an error");
            }
            ctx.metrics.connection_closed(kind);
            drop(permit);
        });
    }
    // Let open connections finish their current request (they watch the same signal).
    while connections.join_next().await.is_some() {}
}

/// Tells a client over the limit why it is being closed, in its own protocol.
async fn refuse(mut stream: TcpStream, kind: Listener) {
    use tokio::io::AsyncWriteExt;
    let mut buf = bytes::BytesMut::new();
    match kind {
        Listener::Binary => {
            let response = crate::wire::Response::error(
                crate::wire::ErrorCode::Busy,
                "connection limit reached; try again later",
            );
            let _ = response.encode(0, &mut buf);
        }
        Listener::Resp => buf.extend_from_slice(b"-ERR max number of clients reached\r\n"),
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&buf)).await;
}

/// Writes the buffered replies of a connection, first waiting until `durable` is on disk.
pub(crate) async fn flush(
    ctx: &Context,
    listener: Listener,
    stream: &mut TcpStream,
    wbuf: &mut bytes::BytesMut,
    durable: Option<u64>,
) -> std::io::Result<()> {
    use tokio::io::AsyncWriteExt;
    if let Some(version) = durable {
        if let Err(error) = ctx.db.engine().wait_durable_async(version).await {
            // Never acknowledge what is not durable: drop the connection, so that the client
            // reports the outcome of its writes as unknown.
            tracing::error!(%error, "write not durable; closing connection without acknowledging");
            return Err(std::io::Error::other(error.to_string()));
        }
    }
    if !wbuf.is_empty() {
        stream.write_all(wbuf).await?;
        ctx.metrics.bytes(listener, 0, wbuf.len());
        wbuf.clear();
    }
    Ok(())
}

/// Room a connection's read buffer has before each read (it grows beyond this for requests
/// that need it, up to the frame or bulk limit).
const READ_BYTES_MIN: usize = 16 * 1024;

/// What waiting for more request bytes came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Read {
    /// Bytes were added to the buffer.
    More,
    /// The connection should end: the peer closed it, it timed out, or the server is shutting
    /// down between requests. Already logged and counted.
    Closed,
}

/// Reads more request bytes into `rbuf`. Waits at most the idle timeout when no request has
/// started, the (shorter) read timeout when one has, so a client that stalls mid-request does
/// not hold its connection slot.
pub(crate) async fn read_more(
    ctx: &Context,
    listener: Listener,
    stream: &mut TcpStream,
    rbuf: &mut bytes::BytesMut,
) -> std::io::Result<Read> {
    use tokio::io::AsyncReadExt;
    if ctx.shutting_down() {
        return Ok(Read::Closed); // between requests: the in-flight work is done
    }
    let partial = !rbuf.is_empty();
    let timeout = Duration::from_millis(if partial {
        ctx.config.read_timeout_ms
    } else {
        ctx.config.idle_timeout_ms
    });
    // Parsed requests are split off the front of the buffer, so its spare room shrinks round
    // after round; without this, reads would shrink with it (to 64 bytes at the end) and cut
    // a client's pipeline into several rounds. `reserve` reclaims the space in place once the
    // last round's requests are dropped.
    rbuf.reserve(READ_BYTES_MIN);
    let read = tokio::select! {
        read = tokio::time::timeout(timeout, stream.read_buf(rbuf)) => read,
        _ = ctx.shutdown_signal() => return Ok(Read::Closed),
    };
    // The peer's address only for the log lines: asking costs a system call.
    let peer = || stream.peer_addr().ok();
    let Ok(read) = read else {
        ctx.metrics.timeout(listener);
        let what = if partial {
            "stalled mid-request"
        } else {
            "idle"
        };
        let timeout_ms = timeout.as_millis() as u64;
        tracing::info!(
            peer = ?peer(),
            ?listener,
            what,
            timeout_ms,
            "closing connection: timeout"
        );
        return Ok(Read::Closed);
    };
    let n = read?;
    ctx.metrics.bytes(listener, n, 0);
    if n > 0 {
        return Ok(Read::More);
    }
    if partial {
        ctx.metrics.protocol_error(listener);
        let pending_bytes = rbuf.len();
        tracing::info!(
            peer = ?peer(),
            ?listener,
            pending_bytes,
            "peer closed the connection mid-request"
        );
    }
    Ok(Read::Closed)
}

/// A database error as a wire error code and message.
pub(crate) use crate::op::classify;

/// What a binary-protocol connection does with a request before running it: the handshake,
/// the same on a single node and on a cluster node.
pub(crate) enum Handshake {
    /// Run the request.
    Run(crate::wire::Request),
    /// Answer this instead (and close the connection after it, if `close`).
    Answer {
        response: crate::wire::Response,
        close: bool,
    },
}

/// Applies the handshake rules to `request`: a HELLO negotiates the version (and names the
/// client's session, for a cluster), anything before a successful HELLO is refused.
pub(crate) fn handshake(
    config: &ServerConfig,
    handshaken: &mut bool,
    session: &mut u64,
    request: crate::wire::Request,
) -> Handshake {
    use crate::wire::message::{negotiate_version, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};
    use crate::wire::{ErrorCode, Request, Response};
    match request {
        Request::Hello {
            min_version,
            max_version,
            client_name,
            client_id,
        } => match negotiate_version(min_version, max_version) {
            Some(version) => {
                *handshaken = true;
                *session = client_id;
                tracing::debug!(client = %client_name, version, "handshake");
                Handshake::Answer {
                    response: Response::HelloOk {
                        version,
                        server_name: config.server_name.clone(),
                        frame_bytes_max: config.frame_bytes_max.min(u32::MAX as usize) as u32,
                    },
                    close: false,
                }
            }
            None => Handshake::Answer {
                response: Response::error(
                    ErrorCode::UnsupportedVersion,
                    format!(
                        "client speaks protocol versions {min_version}..={max_version}, this \
                         server {PROTOCOL_VERSION_MIN}..={PROTOCOL_VERSION_MAX}"
                    ),
                ),
                close: true,
            },
        },
        _ if !*handshaken => Handshake::Answer {
            response: Response::error(
                ErrorCode::HandshakeRequired,
                "the first frame on a connection must be HELLO",
            ),
            close: true,
        },
        request => Handshake::Run(request),
    }
}

/// Frames (and Redis commands) a connection takes from its read buffer per round.
pub(crate) const PIPELINE_FRAMES_MAX: usize = 1024;

/// One frame of a binary-protocol pipeline, cut from the read buffer and checked.
pub(crate) enum Cut {
    /// A request to run (past the handshake), with the frame it came in.
    Run {
        id: u64,
        request: crate::wire::Request,
        frame: crate::wire::Frame,
    },
    /// Answered already: a framing or body error, the handshake, a request before it.
    Answer {
        id: u64,
        response: crate::wire::Response,
        close: bool,
    },
}

/// Cuts the complete frames out of `rbuf` (at most [`PIPELINE_FRAMES_MAX`]), decodes them and
/// applies the handshake: the pipeline core both binary connection loops share, a single
/// node's and a cluster node's, which then differ only in how they run requests. Stops after
/// an answer that closes the connection (a framing error leaves no way to find the next
/// frame).
pub(crate) fn cut_pipeline(
    ctx: &Context,
    rbuf: &mut bytes::BytesMut,
    handshaken: &mut bool,
    session: &mut u64,
) -> Vec<Cut> {
    use crate::wire::{ErrorCode, FrameError, Request, Response};
    let mut cuts = Vec::new();
    while cuts.len() < PIPELINE_FRAMES_MAX {
        let frame = match crate::wire::decode_frame(rbuf, ctx.config.frame_bytes_max) {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(error) => {
                ctx.metrics.protocol_error(crate::metrics::Listener::Binary);
                tracing::info!(%error, "closing connection: unframeable input");
                let (code, id) = match &error {
                    FrameError::TooLarge { request_id, .. } => {
                        (ErrorCode::FrameTooLarge, request_id.unwrap_or(0))
                    }
                    _ => (ErrorCode::Malformed, 0),
                };
                let response = Response::error(code, error.to_string());
                cuts.push(Cut::Answer {
                    id,
                    response,
                    close: true,
                });
                break;
            }
        };
        let id = frame.request_id;
        let request = match Request::decode(&frame) {
            Ok(request) => request,
            Err(error) => {
                ctx.metrics.protocol_error(crate::metrics::Listener::Binary);
                let response = Response::error(error.error_code(), error.to_string());
                cuts.push(Cut::Answer {
                    id,
                    response,
                    close: false,
                });
                continue;
            }
        };
        match handshake(&ctx.config, handshaken, session, request) {
            Handshake::Run(request) => cuts.push(Cut::Run { id, request, frame }),
            Handshake::Answer { response, close } => {
                cuts.push(Cut::Answer {
                    id,
                    response,
                    close,
                });
                if close {
                    break;
                }
            }
        }
    }
    cuts
}
