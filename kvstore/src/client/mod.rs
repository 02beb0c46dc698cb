//! The async client for the binary protocol: one TCP connection, many requests in flight.
//!
//! Any number of tasks may share a [`Client`] (it is cheap to clone). Each request gets a fresh
//! request id and a slot in a table of pending requests; a writer task coalesces queued frames
//! into one write, and a reader task matches responses to slots by request id, so responses may
//! arrive in any order. In-flight requests are bounded (`inflight_max`): callers wait for a slot
//! instead of growing an unbounded queue.
//!
//! Failure semantics matter to callers: if a write times out or the connection drops before its
//! response arrives, the write may or may not have been applied, and the error says so
//! (`outcome_unknown`). Part 2 adds client ids and sequence numbers so a retry applies once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), kvstore::client::ClientError> {
//! use kvstore::client::{Client, ClientConfig};
//! let client = Client::connect("127.0.0.1:7379", ClientConfig::default()).await?;
//! let version = client.put("default", b"greeting", b"hello").await?;
//! let got = client.get("default", b"greeting").await?.expect("just written");
//! assert_eq!(got.version, version);
//! # Ok(()) }
//! ```

pub mod cluster;
mod ops;
pub mod registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::wire::frame::{decode_frame, FRAME_BYTES_MAX_DEFAULT};
use crate::wire::message::{PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN};
use crate::wire::{
    BatchOp, Condition, Consistency, Entry, ErrorCode, ReadLag, Request, Response, ScanRange,
    Versioned,
};

/// Settings of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub connect_timeout_ms: u64,
    /// A request without a response after this long fails with [`ClientError::Timeout`].
    pub request_timeout_ms: u64,
    /// Requests in flight on the connection at once.
    pub inflight_max: usize,
    /// Largest response frame accepted.
    pub frame_bytes_max: usize,
    pub client_name: String,
    /// Names a session (0: none): a cluster then applies each write of this client once,
    /// however often it is retried, as long as its request id is reused for the retry
    /// ([`Client::call_as`]). See [`cluster::ClusterClient`].
    pub client_id: u64,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
            inflight_max: 1024,
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            client_name: format!("kvstore-client/{}", env!("CARGO_PKG_VERSION")),
            client_id: 0,
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("handshake with the server failed: {0}")]
    Handshake(String),
    #[error("the server answered with error {code:?}: {message}")]
    Server { code: ErrorCode, message: String },
    #[error(
        "no response after {after_ms} ms{}",
        if *outcome_unknown { "; the write may or may not have been applied" } else { "" }
    )]
    Timeout {
        after_ms: u64,
        outcome_unknown: bool,
    },
    #[error(
        "connection to the server lost{}",
        if *outcome_unknown { "; the write may or may not have been applied" } else { "" }
    )]
    ConnectionLost { outcome_unknown: bool },
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl ClientError {
    /// For a [`ErrorCode::RateLimited`] answer, how long the server said to wait before the
    /// keyspace takes the request again; `None` for any other error.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Server {
                code: ErrorCode::RateLimited,
                message,
            } => crate::wire::message::rate_limited_wait_ms(message).map(Duration::from_millis),
            _ => None,
        }
    }

    /// True when the request may have been applied even though no success was reported.
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ClientError::Timeout {
                outcome_unknown: true,
                ..
            } | ClientError::ConnectionLost {
                outcome_unknown: true
            }
        )
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

type Pending = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Response>>>>>;

/// A connection to one server. Clone it to share it between tasks.
#[derive(Debug, Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: ClientConfig,
    next_id: AtomicU64,
    /// `None` once the connection is gone: no new request may register.
    pending: Pending,
    outgoing: mpsc::Sender<BytesMut>,
    inflight: Arc<Semaphore>,
    server_name: String,
    server_frame_bytes_max: usize,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // Dropping `outgoing` ends the writer, which shuts the socket and ends the reader.
        self.pending.lock().expect("pending lock").take();
    }
}

/// Options of a conditional or expiring put.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    pub ttl_ms: Option<u64>,
    pub condition: Condition,
}

impl PutOptions {
    /// Compare-and-set: only if the key's version is `expected_version` (0: absent).
    pub fn if_version(expected_version: u64) -> PutOptions {
        PutOptions {
            ttl_ms: None,
            condition: Condition::IfVersion(expected_version),
        }
    }
}

/// The result of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteResult {
    pub applied: bool,
    /// The new version if applied; otherwise the key's current version (0 if absent).
    pub version: u64,
}

/// A page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    pub entries: Vec<Entry>,
    /// Pass back as `continuation` to get the next page; `None` when finished.
    pub continuation: Option<Bytes>,
    /// For a follower read from a cluster node: how stale the page may be.
    pub lag: Option<ReadLag>,
}

/// What to scan.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    pub range: ScanRange,
    /// Entries per page; 0 lets the server choose.
    pub limit: u32,
    pub continuation: Option<Bytes>,
    pub keys_only: bool,
    /// `None`: the keyspace's read consistency.
    pub consistency: Option<Consistency>,
}

impl Client {
    /// Connects and performs the version handshake.
    pub async fn connect(addr: impl ToSocketAddrs, config: ClientConfig) -> Result<Client> {
        let connect_timeout = Duration::from_millis(config.connect_timeout_ms);
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(source)) => {
                return Err(ClientError::Connect {
                    addr: "server".into(),
                    source,
                })
            }
            Err(_) => {
                let source = std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out");
                return Err(ClientError::Connect {
                    addr: "server".into(),
                    source,
                });
            }
        };
        let addr = stream
            .peer_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        let _ = stream.set_nodelay(true);
        let (mut rd, mut wr) = stream.into_split();

        // Handshake, synchronously, before the tasks start.
        let mut buf = BytesMut::new();
        let hello = Request::Hello {
            min_version: PROTOCOL_VERSION_MIN,
            max_version: PROTOCOL_VERSION_MAX,
            client_name: config.client_name.clone(),
            client_id: config.client_id,
        };
        hello
            .encode(0, &mut buf)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let io = |source| ClientError::Connect {
            addr: addr.clone(),
            source,
        };
        wr.write_all(&buf).await.map_err(io)?;
        let mut rbuf = BytesMut::with_capacity(16 * 1024);
        let frame = loop {
            match decode_frame(&mut rbuf, config.frame_bytes_max) {
                Ok(Some(frame)) => break frame,
                Ok(None) => {}
                Err(e) => return Err(ClientError::Handshake(e.to_string())),
            }
            let read = tokio::time::timeout(connect_timeout, rd.read_buf(&mut rbuf)).await;
            match read {
                Ok(Ok(0)) => {
                    return Err(ClientError::Handshake(
                        "server closed the connection".into(),
                    ))
                }
                Ok(Ok(_)) => {}
                Ok(Err(source)) => return Err(io(source)),
                Err(_) => return Err(ClientError::Handshake("no answer to HELLO".into())),
            }
        };
        let (server_name, server_frame_bytes_max) = match Response::decode(&frame) {
            Ok(Response::HelloOk {
                server_name,
                frame_bytes_max,
                ..
            }) => {
                let max = match frame_bytes_max {
                    0 => FRAME_BYTES_MAX_DEFAULT,
                    n => n as usize,
                };
                (server_name, max)
            }
            Ok(Response::Error { code, message }) => {
                return Err(ClientError::Handshake(format!("{code:?}: {message}")))
            }
            Ok(other) => return Err(ClientError::Handshake(format!("unexpected {other:?}"))),
            Err(e) => return Err(ClientError::Handshake(e.to_string())),
        };

        let pending: Pending = Arc::new(Mutex::new(Some(HashMap::new())));
        let (outgoing, mut queue) = mpsc::channel::<BytesMut>(config.inflight_max.max(1));
        // Writer: coalesce whatever is queued into one write.
        tokio::spawn(async move {
            let mut out = BytesMut::with_capacity(64 * 1024);
            while let Some(first) = queue.recv().await {
                out.extend_from_slice(&first);
                while out.len() < 256 * 1024 {
                    match queue.try_recv() {
                        Ok(more) => out.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                if wr.write_all(&out).await.is_err() {
                    break;
                }
                out.clear();
            }
            let _ = wr.shutdown().await;
        });
        // Reader: route responses to their callers; on EOF or error, fail everyone waiting.
        let reader_pending = pending.clone();
        let frame_bytes_max = config.frame_bytes_max;
        tokio::spawn(async move {
            loop {
                loop {
                    let frame = match decode_frame(&mut rbuf, frame_bytes_max) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(error) => {
                            tracing::warn!(%error, "bad frame from server; dropping connection");
                            reader_pending.lock().expect("pending lock").take();
                            return;
                        }
                    };
                    let response = Response::decode(&frame).unwrap_or_else(|e| Response::Error {
                        code: ErrorCode::Malformed,
                        message: format!("undecodable response: {e}"),
                    });
                    let waiter = reader_pending
                        .lock()
                        .expect("pending lock")
                        .as_mut()
                        .and_then(|p| p.remove(&frame.request_id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(response);
                    }
                }
                match rd.read_buf(&mut rbuf).await {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            // Dropping the senders wakes every waiter with "connection lost".
            reader_pending.lock().expect("pending lock").take();
        });

        Ok(Client {
            shared: Arc::new(Shared {
                inflight: Arc::new(Semaphore::new(config.inflight_max.max(1))),
                config,
                next_id: AtomicU64::new(1),
                pending,
                outgoing,
                server_name,
                server_frame_bytes_max,
            }),
        })
    }

    /// The name the server gave in the handshake.
    pub fn server_name(&self) -> &str {
        &self.shared.server_name
    }

    /// Sends any request and returns the server's response (errors included, as `Err`).
    pub async fn call(&self, request: Request) -> Result<Response> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        self.call_as(id, request).await
    }

    /// [`Client::call`] with a request id chosen by the caller: a session's sequence number,
    /// reused when a write is retried. Ids must not repeat among requests in flight.
    pub async fn call_as(&self, id: u64, request: Request) -> Result<Response> {
        self.call_routed(id, request, None).await
    }

    /// [`Client::call_as`], carrying `epoch`, the epoch of the key's partition in the
    /// caller's cluster map (see [`crate::wire::message::ROUTING_EPOCH_FIELD`]): a node whose
    /// replica is at a later one answers `StaleEpoch`.
    pub async fn call_routed(
        &self,
        id: u64,
        request: Request,
        epoch: Option<u64>,
    ) -> Result<Response> {
        let writes = !matches!(
            request,
            Request::Get { .. }
                | Request::Scan { .. }
                | Request::Ping { .. }
                | Request::Hello { .. }
        );
        let lost = || ClientError::ConnectionLost {
            outcome_unknown: writes,
        };
        let _permit = self.shared.inflight.acquire().await.map_err(|_| lost())?;
        let mut buf = BytesMut::new();
        request
            .encode_routed(id, epoch, &mut buf)
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        if buf.len() > self.shared.server_frame_bytes_max {
            return Err(ClientError::Protocol(format!(
                "request of {} bytes is over the server's frame limit of {} bytes",
                buf.len(),
                self.shared.server_frame_bytes_max
            )));
        }
        let (tx, rx) = oneshot::channel();
        match self.shared.pending.lock().expect("pending lock").as_mut() {
            Some(p) => p.insert(id, tx),
            None => {
                return Err(ClientError::ConnectionLost {
                    outcome_unknown: false,
                })
            }
        };
        if self.shared.outgoing.send(buf).await.is_err() {
            self.forget(id);
            return Err(ClientError::ConnectionLost {
                outcome_unknown: false,
            });
        }
        let timeout_ms = self.shared.config.request_timeout_ms;
        let response = match tokio::time::timeout(Duration::from_millis(timeout_ms), rx).await {
            Ok(Ok(response)) => response,
            Ok(Err(_)) => return Err(lost()),
            Err(_) => {
                self.forget(id);
                return Err(ClientError::Timeout {
                    after_ms: timeout_ms,
                    outcome_unknown: writes,
                });
            }
        };
        match response {
            Response::Error { code, message } => Err(ClientError::Server { code, message }),
            other => Ok(other),
        }
    }

    fn forget(&self, id: u64) {
        if let Some(p) = self.shared.pending.lock().expect("pending lock").as_mut() {
            p.remove(&id);
        }
    }

    /// Round trip to the server.
    pub async fn ping(&self) -> Result<()> {
        match self
            .call(Request::Ping {
                payload: Bytes::new(),
            })
            .await?
        {
            Response::Pong { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Reads `key` at its keyspace's read consistency (linearizable unless the keyspace was
    /// created with another).
    pub async fn get(&self, keyspace: &str, key: &[u8]) -> Result<Option<Versioned>> {
        self.get_with(keyspace, key, None).await
    }

    /// Reads `key` at the chosen consistency (`None`: the keyspace's).
    pub async fn get_with(
        &self,
        keyspace: &str,
        key: &[u8],
        consistency: impl Into<Option<Consistency>>,
    ) -> Result<Option<Versioned>> {
        Ok(self.get_lagged(keyspace, key, consistency).await?.0)
    }

    /// Reads `key` at the chosen consistency (`None`: the keyspace's), with how stale the
    /// answer may be when it was a follower read from a cluster node (`None` otherwise).
    pub async fn get_lagged(
        &self,
        keyspace: &str,
        key: &[u8],
        consistency: impl Into<Option<Consistency>>,
    ) -> Result<(Option<Versioned>, Option<ReadLag>)> {
        ops::got(
            self.call(ops::get(keyspace, key, consistency.into()))
                .await?,
        )
    }

    /// Writes `key = value` unconditionally; returns the new version.
    pub async fn put(&self, keyspace: &str, key: &[u8], value: &[u8]) -> Result<u64> {
        let r = self
            .put_with(keyspace, key, value, PutOptions::default())
            .await?;
        Ok(r.version)
    }

    /// Writes with a TTL and/or a condition.
    pub async fn put_with(
        &self,
        keyspace: &str,
        key: &[u8],
        value: &[u8],
        options: PutOptions,
    ) -> Result<WriteResult> {
        let request = ops::put(keyspace, key, value, options.ttl_ms, options.condition);
        ops::written(self.call(request).await?)
    }

    /// Compare-and-set: writes only if the key's version is `expected_version` (0: absent).
    pub async fn cas(
        &self,
        keyspace: &str,
        key: &[u8],
        expected_version: u64,
        value: &[u8],
    ) -> Result<WriteResult> {
        let options = PutOptions::if_version(expected_version);
        self.put_with(keyspace, key, value, options).await
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, keyspace: &str, key: &[u8]) -> Result<bool> {
        ops::deleted(self.call(ops::delete(keyspace, key)).await?)
    }

    /// Adds `delta` to the counter at `key`; returns the new value.
    pub async fn incr(&self, keyspace: &str, key: &[u8], delta: i64) -> Result<i64> {
        ops::counted(self.call(ops::incr(keyspace, key, delta)).await?)
    }

    /// One page of an ordered scan.
    pub async fn scan(&self, keyspace: &str, options: ScanOptions) -> Result<ScanPage> {
        ops::scanned(self.call(ops::scan(keyspace, options)).await?)
    }

    /// Applies `ops` atomically (all or none).
    pub async fn batch(&self, keyspace: &str, ops: Vec<BatchOp>) -> Result<Response> {
        ops::batched(self.call(ops::batch(keyspace, ops)).await?)
    }
}

fn unexpected(response: Response) -> ClientError {
    ClientError::Protocol(format!("unexpected response {response:?}"))
}
