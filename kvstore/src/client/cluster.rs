//! A client for a cluster: it finds the leader, follows redirects, and retries a write until it
//! gets a definite answer, without ever applying it twice.
//!
//! The client has a random session id and numbers its requests; a retry reuses the number,
//! so a write whose first attempt did land is answered from the leader's session table instead
//! of being applied again. That turns "no answer" (a timeout, a dropped connection, a leader
//! that crashed) into a retry rather than an unknown outcome, as long as the deadline
//! ([`ClusterConfig::deadline_ms`]) allows. Only when the deadline passes without a definite
//! answer does a write report `outcome_unknown`.
//!
//! A cluster remembers the replies of a session's last [`SESSION_WINDOW`] request ids, so one
//! client (shared by many tasks behind an `Arc`: every method takes `&self`) has up to that
//! many writes in flight: a write takes id `n` only once every id up to `n - SESSION_WINDOW`
//! has finished. Reads never wait and use ids outside the session.
//!
//! What it does on each answer:
//! - `NotLeader` with an address: connect there and retry at once;
//! - `NotLeader` without one, `Unavailable`, `Busy`: wait a little and retry, on the next node;
//! - connection refused or lost, a timeout: next node, retry;
//! - anything else is the answer.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{Mutex, Notify};

use super::{ops, Client, ClientConfig, ClientError, Result};
use crate::wire::{
    Condition, Consistency, ErrorCode, Request, Response, Versioned, SESSION_WINDOW,
};

/// Settings of a cluster client.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Settings of each connection; its `request_timeout_ms` bounds one attempt.
    pub connection: ClientConfig,
    /// A request is retried until this long after it was first sent.
    pub deadline_ms: u64,
    /// First wait before retrying when the cluster has no leader; doubles up to 8 times that.
    pub backoff_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> ClusterConfig {
        ClusterConfig {
            connection: ClientConfig {
                request_timeout_ms: 2_000,
                connect_timeout_ms: 1_000,
                ..ClientConfig::default()
            },
            deadline_ms: 15_000,
            backoff_ms: 25,
        }
    }
}

/// A client of a cluster. Share it behind an `Arc`; requests from many tasks run concurrently.
#[derive(Debug)]
pub struct ClusterClient {
    config: ClusterConfig,
    /// Known client addresses of the nodes; redirects add to it.
    addresses: std::sync::Mutex<Vec<String>>,
    /// The node tried next (an index into `addresses`).
    next: AtomicUsize,
    current: Mutex<Option<(String, Client)>>,
    /// The writes in flight, by request id (see [`Window`]).
    writes: Window,
    /// The next read's request id, below [`READ_ID_BIT`].
    read_seq: AtomicU64,
    client_id: u64,
}

/// Set in the request ids of reads, which are not part of the session.
const READ_ID_BIT: u64 = 1 << 63;

/// The session window on the client's side: a write may take request id `n` only once every
/// id up to `n - SESSION_WINDOW` has its answer (or was given up), which is what lets the
/// cluster refuse an id that old as "unknown" rather than apply it twice. A count of writes
/// in flight would not do: with one slow write outstanding, the others would keep finishing
/// and new ids would run past the slow one's window.
#[derive(Debug)]
struct Window {
    state: std::sync::Mutex<WindowState>,
    /// Woken when the lowest id in flight finishes.
    moved: Notify,
}

#[derive(Debug)]
struct WindowState {
    next: u64,
    in_flight: std::collections::BTreeSet<u64>,
}

impl Default for Window {
    fn default() -> Window {
        Window {
            state: std::sync::Mutex::new(WindowState {
                next: 1,
                in_flight: Default::default(),
            }),
            moved: Notify::new(),
        }
    }
}

/// A write's place in the window: its request id, given back when dropped (also when the
/// write's future is cancelled).
struct Turn<'a> {
    window: &'a Window,
    seq: u64,
}

impl Window {
    async fn enter(&self) -> Turn<'_> {
        loop {
            let moved = self.moved.notified();
            tokio::pin!(moved);
            // Registered before the check, so a wake-up between the two is not lost.
            moved.as_mut().enable();
            {
                let mut state = self.state.lock().expect("window lock");
                let lowest = state.in_flight.first().copied().unwrap_or(state.next);
                if state.next < lowest + SESSION_WINDOW {
                    let seq = state.next;
                    state.next += 1;
                    state.in_flight.insert(seq);
                    return Turn { window: self, seq };
                }
            }
            moved.await;
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut state = self.window.state.lock().expect("window lock");
        let was_lowest = state.in_flight.first() == Some(&self.seq);
        state.in_flight.remove(&self.seq);
        drop(state);
        if was_lowest {
            self.window.moved.notify_waiters();
        }
    }
}

impl ClusterClient {
    /// A client of the cluster whose nodes include `addresses` (binary-protocol addresses);
    /// nothing is connected until the first request.
    pub fn new(addresses: Vec<String>, config: ClusterConfig) -> ClusterClient {
        assert!(!addresses.is_empty(), "a cluster client needs an address");
        let client_id = random_id();
        ClusterClient {
            config,
            addresses: std::sync::Mutex::new(addresses),
            next: AtomicUsize::new(0),
            current: Mutex::new(None),
            writes: Window::default(),
            read_seq: AtomicU64::new(1),
            client_id,
        }
    }

    /// This client's session id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    async fn connection(&self, prefer: Option<&str>) -> Result<(String, Client)> {
        let mut current = self.current.lock().await;
        if let Some((addr, client)) = &*current {
            if prefer.is_none_or(|p| p == addr) {
                return Ok((addr.clone(), client.clone()));
            }
        }
        let addr = match prefer {
            Some(p) => p.to_string(),
            None => {
                let addresses = self.addresses.lock().expect("addresses lock");
                let i = self.next.fetch_add(1, Ordering::Relaxed) % addresses.len();
                addresses[i].clone()
            }
        };
        let mut config = self.config.connection.clone();
        config.client_id = self.client_id;
        let client = Client::connect(addr.as_str(), config).await?;
        *current = Some((addr.clone(), client.clone()));
        Ok((addr, client))
    }

    async fn drop_connection(&self, addr: &str) {
        let mut current = self.current.lock().await;
        if current.as_ref().is_some_and(|(a, _)| a == addr) {
            *current = None;
        }
    }

    /// Sends `request` until it gets a definite answer or the deadline passes.
    pub async fn call(&self, request: Request) -> Result<Response> {
        let write = !matches!(
            request,
            Request::Get { .. } | Request::Scan { .. } | Request::Ping { .. }
        );
        // Writes number their requests densely, inside the session window; reads take ids of
        // their own, with the top bit set, so they use up none of it.
        let (seq, _turn) = match write {
            true => {
                let turn = self.writes.enter().await;
                (turn.seq, Some(turn))
            }
            false => (
                READ_ID_BIT | self.read_seq.fetch_add(1, Ordering::Relaxed),
                None,
            ),
        };
        let started = Instant::now();
        let deadline = Duration::from_millis(self.config.deadline_ms);
        let mut backoff = Duration::from_millis(self.config.backoff_ms);
        let backoff_max = backoff * 8;
        let mut prefer: Option<String> = None;
        let mut last_error;
        let mut outcome_unknown = false;
        loop {
            let attempt = match self.connection(prefer.as_deref()).await {
                Ok((addr, client)) => {
                    let result = client.call_as(seq, request.clone()).await;
                    (Some(addr), result)
                }
                Err(error) => (None, Err(error)),
            };
            prefer = None;
            let wait = match attempt {
                (_, Ok(response)) => return Ok(response),
                (_, Err(ClientError::Server { code, message })) if code == ErrorCode::NotLeader => {
                    let redirect = message.rsplit_once(" at ").map(|(_, a)| a.to_string());
                    last_error = ClientError::Server { code, message };
                    match redirect {
                        Some(addr) => {
                            self.learn(&addr);
                            prefer = Some(addr);
                            false
                        }
                        None => true,
                    }
                }
                (_, Err(ClientError::Server { code, message }))
                    if matches!(code, ErrorCode::Unavailable | ErrorCode::Busy) =>
                {
                    last_error = ClientError::Server { code, message };
                    true
                }
                (addr, Err(error))
                    if matches!(
                        error,
                        ClientError::Connect { .. }
                            | ClientError::Handshake(_)
                            | ClientError::ConnectionLost { .. }
                            | ClientError::Timeout { .. }
                    ) || matches!(&error, ClientError::Server { code, .. }
                        if matches!(code, ErrorCode::Timeout | ErrorCode::ShuttingDown)) =>
                {
                    outcome_unknown |= error.outcome_unknown()
                        || matches!(&error, ClientError::Server { code, .. }
                            if *code == ErrorCode::Timeout);
                    if let Some(addr) = addr {
                        self.drop_connection(&addr).await;
                    }
                    last_error = error;
                    true
                }
                (_, Err(error)) => return Err(error),
            };
            if started.elapsed() >= deadline {
                return Err(if outcome_unknown {
                    ClientError::Timeout {
                        after_ms: started.elapsed().as_millis() as u64,
                        outcome_unknown: true,
                    }
                } else {
                    last_error
                });
            }
            if wait {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(backoff_max);
            }
        }
    }

    fn learn(&self, addr: &str) {
        let mut addresses = self.addresses.lock().expect("addresses lock");
        if !addresses.iter().any(|a| a == addr) {
            addresses.push(addr.to_string());
        }
    }

    /// Reads `key` at `consistency`.
    pub async fn get(
        &self,
        keyspace: &str,
        key: &[u8],
        consistency: Consistency,
    ) -> Result<Option<Versioned>> {
        Ok(ops::got(self.call(ops::get(keyspace, key, consistency)).await?)?.0)
    }

    /// Writes `key = value` if `condition` holds; returns whether it applied and the version.
    pub async fn put(
        &self,
        keyspace: &str,
        key: &[u8],
        value: &[u8],
        condition: Condition,
    ) -> Result<(bool, u64)> {
        ops::put_done(
            self.call(ops::put(keyspace, key, value, None, condition))
                .await?,
        )
    }

    /// Writes with a TTL and/or a condition.
    pub async fn put_with(
        &self,
        keyspace: &str,
        key: &[u8],
        value: &[u8],
        options: super::PutOptions,
    ) -> Result<super::WriteResult> {
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
    ) -> Result<super::WriteResult> {
        let options = super::PutOptions::if_version(expected_version);
        self.put_with(keyspace, key, value, options).await
    }

    /// One page of an ordered scan, at the consistency `options` asks for.
    pub async fn scan(
        &self,
        keyspace: &str,
        options: super::ScanOptions,
    ) -> Result<super::ScanPage> {
        ops::scanned(self.call(ops::scan(keyspace, options)).await?)
    }

    /// Applies `ops` atomically (all or none), once however often it is retried.
    pub async fn batch(&self, keyspace: &str, ops: Vec<crate::wire::BatchOp>) -> Result<Response> {
        ops::batched(self.call(ops::batch(keyspace, ops)).await?)
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, keyspace: &str, key: &[u8]) -> Result<bool> {
        ops::deleted(self.call(ops::delete(keyspace, key)).await?)
    }

    /// Adds `delta` to the counter at `key`; returns the new value.
    pub async fn incr(&self, keyspace: &str, key: &[u8], delta: i64) -> Result<i64> {
        ops::counted(self.call(ops::incr(keyspace, key, delta)).await?)
    }
}

/// A session id that is very unlikely to collide: the time, the process id and a counter.
fn random_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 32)
        ^ COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15);
    // splitmix64's finaliser, so nearby inputs give unrelated ids; never 0 (no session).
    let mut z = mixed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A stand-in node on loopback that answers the handshake and then every write with the
    /// next error of `script` (repeating the last). Returns its address.
    async fn scripted_node(script: Vec<(ErrorCode, &'static str)>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let mut answered = 0;
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = BytesMut::new();
                'connection: loop {
                    while let Ok(Some(frame)) = crate::wire::frame::decode_frame(&mut buf, 1 << 20)
                    {
                        let response = match Request::decode(&frame) {
                            Ok(Request::Hello { .. }) => Response::HelloOk {
                                version: 1,
                                server_name: "scripted".into(),
                                frame_bytes_max: 1 << 20,
                            },
                            _ => {
                                let (code, message) = script[answered.min(script.len() - 1)];
                                answered += 1;
                                Response::error(code, message)
                            }
                        };
                        let mut out = BytesMut::new();
                        response.encode(frame.request_id, &mut out).unwrap();
                        if stream.write_all(&out).await.is_err() {
                            break 'connection;
                        }
                    }
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
            }
        });
        addr
    }

    fn client(addr: String) -> ClusterClient {
        ClusterClient::new(
            vec![addr],
            ClusterConfig {
                deadline_ms: 300,
                backoff_ms: 5,
                ..ClusterConfig::default()
            },
        )
    }

    /// A stand-in node that answers every write and read, and records the ids of the writes.
    async fn recording_node() -> (String, Arc<std::sync::Mutex<Vec<u64>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let writes = Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = writes.clone();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut buf = BytesMut::new();
            loop {
                while let Ok(Some(frame)) = crate::wire::frame::decode_frame(&mut buf, 1 << 20) {
                    let response = match Request::decode(&frame).unwrap() {
                        Request::Hello { .. } => Response::HelloOk {
                            version: 1,
                            server_name: "recording".into(),
                            frame_bytes_max: 1 << 20,
                        },
                        Request::Put { .. } => {
                            seen.lock().unwrap().push(frame.request_id);
                            Response::PutOk {
                                applied: true,
                                version: 1,
                            }
                        }
                        _ => Response::GetOk {
                            found: None,
                            lag: None,
                        },
                    };
                    let mut out = BytesMut::new();
                    response.encode(frame.request_id, &mut out).unwrap();
                    stream.write_all(&out).await.unwrap();
                }
                if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return;
                }
            }
        });
        (addr, writes)
    }

    /// With one slow write in flight, the others may finish and start again, but no id may run
    /// a whole window past the slow one: the cluster would refuse it.
    #[tokio::test]
    async fn no_write_starts_a_window_past_the_oldest_in_flight() {
        let window = Window::default();
        let slow = window.enter().await;
        assert_eq!(slow.seq, 1);
        let mut ids = Vec::new();
        for _ in 1..SESSION_WINDOW {
            let turn = window.enter().await; // 2..=64, each finished at once
            ids.push(turn.seq);
        }
        assert_eq!(ids.last(), Some(&SESSION_WINDOW));
        let blocked = tokio::time::timeout(Duration::from_millis(50), window.enter()).await;
        assert!(blocked.is_err(), "id 65 waits while id 1 is in flight");
        drop(slow);
        let next = tokio::time::timeout(Duration::from_secs(5), window.enter())
            .await
            .expect("id 1 finished: the window moves");
        assert_eq!(next.seq, SESSION_WINDOW + 1);
    }

    #[tokio::test]
    async fn reads_use_up_none_of_the_session_window() {
        let (addr, writes) = recording_node().await;
        let client = client(addr);
        for _ in 0..3 {
            client
                .put("default", b"k", b"v", Condition::None)
                .await
                .unwrap();
            for _ in 0..100 {
                client
                    .get("default", b"k", Consistency::Linearizable)
                    .await
                    .unwrap();
            }
        }
        assert_eq!(
            *writes.lock().unwrap(),
            [1, 2, 3],
            "dense ids for the writes"
        );
    }

    #[tokio::test]
    async fn a_write_whose_outcome_was_unknown_once_stays_unknown_at_the_deadline() {
        // The first attempt's node stopped after logging the write (answered as `Timeout`:
        // outcome unknown); every retry then finds no leader until the deadline passes.
        let addr = scripted_node(vec![
            (
                ErrorCode::Timeout,
                "the outcome is unknown: the node stopped",
            ),
            (ErrorCode::Unavailable, "no leader"),
        ])
        .await;
        let error = client(addr)
            .put("default", b"k", b"v", Condition::None)
            .await
            .unwrap_err();
        assert!(error.outcome_unknown(), "{error}");
    }

    #[tokio::test]
    async fn a_write_refused_before_it_reached_any_log_fails_definitely() {
        let addr = scripted_node(vec![
            (ErrorCode::ShuttingDown, "the node has stopped"),
            (ErrorCode::Unavailable, "no leader"),
        ])
        .await;
        let error = client(addr)
            .put("default", b"k", b"v", Condition::None)
            .await
            .unwrap_err();
        assert!(!error.outcome_unknown(), "{error}");
    }
}
