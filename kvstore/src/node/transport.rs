//! Node-to-node messaging over TCP, in the binary protocol's frames.
//!
//! Every node keeps one outgoing connection per peer, fed by a bounded queue: the Raft thread
//! never waits on the network, it drops a message when a peer's queue is full (Raft resends
//! what matters: heartbeats repeat, appends are retried from the follower's progress). A
//! write that does not finish within [`PEER_WRITE_TIMEOUT`] (a blackholed link, a peer that
//! stopped reading) drops the connection, which is made again. A sender
//! task takes everything queued at the moment it wakes and writes it as one `RAFT` frame, so a
//! busy link costs one system call per batch rather than per message.
//!
//! A connection starts with a `PEER_HELLO` frame: the sender's node id, the addresses its
//! clients use (binary protocol, RESP), so a follower can redirect clients to the leader, and
//! its [`Timing`]. Then it carries `RAFT` frames one way. A receiver refuses a peer whose
//! timing differs from its own: leader leases are safe only if every node counts the same
//! ticks of the same length. The layouts are in `docs/wire-protocol.md` ("Peers").

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::raft::codec::{put_message, put_u32, Reader};
use crate::raft::GroupId;
use crate::raft::{Message, NodeId};
use crate::wire::frame::{decode_frame, encode_frame_with, Frame};

/// Opcode of the first frame on a peer connection.
pub const PEER_HELLO: u16 = 0x0100;
/// Opcode of a batch of Raft messages.
pub const RAFT: u16 = 0x0101;
/// Opcode of a request for the cluster map, instead of a hello: what a node joining with
/// `--join PEER_ADDRESS` asks first. Empty body; answered with one [`PEER_MAP_OK`] frame (the
/// encoded map, empty if the node has none), then the connection closes.
pub const PEER_MAP: u16 = 0x0102;
pub const PEER_MAP_OK: u16 = 0x0103;
/// Longest wait for the answer to [`PEER_MAP`].
pub const PEER_MAP_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest frame between peers: an append or a snapshot chunk is up to 1 MiB, and a batch
/// holds several.
pub const PEER_FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
/// A sender stops adding messages to a batch past this many bytes.
pub const PEER_BATCH_BYTES_TARGET: usize = 4 * 1024 * 1024;
/// Messages queued for one peer before new ones are dropped.
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Wait between attempts to connect to a peer that is down.
const RECONNECT_DELAY: Duration = Duration::from_millis(100);
/// A peer that does not accept within this long counts as down for this attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// A write to a peer that makes no progress for this long (no chunk of
/// [`PEER_WRITE_CHUNK_BYTES`] goes out): the link is blackholed or the peer stopped reading.
/// The connection is dropped and made again. A slow link is not a dead one: the limit is on
/// progress, not on a whole batch of megabytes.
pub const PEER_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Bytes written at a time under [`PEER_WRITE_TIMEOUT`].
pub const PEER_WRITE_CHUNK_BYTES: usize = 64 * 1024;

/// Writes `bytes`, failing with `TimedOut` if a chunk makes no progress in time.
async fn write_with_progress(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    for chunk in bytes.chunks(PEER_WRITE_CHUNK_BYTES) {
        match tokio::time::timeout(PEER_WRITE_TIMEOUT, stream.write_all(chunk)).await {
            Ok(result) => result?,
            Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
        }
    }
    Ok(())
}

/// Where a node's clients connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Advertised {
    /// Binary protocol.
    pub client: String,
    /// RESP, if the node serves it.
    pub resp: Option<String>,
    /// Where its peers connect (a node added to a running cluster learns the others' from
    /// their first message).
    pub peer: String,
}

/// The timing a leader lease rests on (see `raft::Config::lease_ticks`): every node of a
/// cluster must agree on it, so peers compare it when they connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub tick_us: u64,
    pub election_ticks_min: u32,
    pub lease_ticks: u32,
}

impl Timing {
    pub fn of(config: &crate::raft::Config) -> Timing {
        Timing {
            tick_us: config.tick_us,
            election_ticks_min: config.election_ticks_min,
            lease_ticks: config.lease_ticks,
        }
    }
}

impl std::fmt::Display for Timing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ticks of {} µs, elections after {} ticks, leases of {} ticks",
            self.tick_us, self.election_ticks_min, self.lease_ticks
        )
    }
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub messages_sent: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub messages_received: AtomicU64,
    pub batches_sent: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Peer connections refused because the peer's timing differs from this node's.
    pub timing_mismatches: AtomicU64,
    /// Writes to a peer that did not finish within [`PEER_WRITE_TIMEOUT`].
    pub write_timeouts: AtomicU64,
}

type Outgoing = (GroupId, Message);

/// The sending side: one queue and task per peer.
pub struct Transport {
    id: NodeId,
    me: Advertised,
    timing: Timing,
    runtime: tokio::runtime::Handle,
    peers: Mutex<BTreeMap<NodeId, (String, mpsc::Sender<Outgoing>)>>,
    pub stats: Arc<TransportStats>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("id", &self.id).finish()
    }
}

impl Transport {
    pub fn new(
        id: NodeId,
        me: Advertised,
        timing: Timing,
        runtime: tokio::runtime::Handle,
    ) -> Transport {
        Transport {
            id,
            me,
            timing,
            runtime,
            peers: Mutex::new(BTreeMap::new()),
            stats: Arc::default(),
        }
    }

    /// Whether messages to `id` have somewhere to go.
    pub fn knows(&self, id: NodeId) -> bool {
        self.peers.lock().expect("peers lock").contains_key(&id)
    }

    /// Sets (or changes) the address of peer `id`; messages to it start flowing.
    pub fn set_peer(&self, id: NodeId, address: String) {
        let mut peers = self.peers.lock().expect("peers lock");
        if peers.get(&id).is_some_and(|(a, _)| *a == address) || id == self.id {
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        let hello = hello_frame(self.id, &self.me, self.timing);
        let stats = self.stats.clone();
        self.runtime
            .spawn(send_loop(id, address.clone(), hello, rx, stats));
        // Replacing the sender ends the old task (its queue closes).
        peers.insert(id, (address, tx));
    }

    /// The peers' addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        let peers = self.peers.lock().expect("peers lock");
        peers.iter().map(|(id, (a, _))| (*id, a.clone())).collect()
    }

    /// Queues `m` for its destination, or drops it if that peer's queue is full or unknown.
    pub fn send(&self, group: GroupId, m: Message) {
        let peers = self.peers.lock().expect("peers lock");
        let sent = match peers.get(&m.to) {
            Some((_, tx)) => tx.try_send((group, m)).is_ok(),
            None => false,
        };
        let counter = if sent {
            &self.stats.messages_sent
        } else {
            &self.stats.messages_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

fn hello_frame(id: NodeId, me: &Advertised, timing: Timing) -> BytesMut {
    let mut frame = BytesMut::new();
    encode_frame_with(PEER_HELLO, 0, &mut frame, |dst| {
        let mut body = Vec::new();
        body.put_u64_le(id);
        for s in [
            me.client.as_str(),
            me.resp.as_deref().unwrap_or(""),
            me.peer.as_str(),
        ] {
            put_u32(&mut body, s.len());
            body.extend_from_slice(s.as_bytes());
        }
        body.put_u64_le(timing.tick_us);
        body.put_u32_le(timing.election_ticks_min);
        body.put_u32_le(timing.lease_ticks);
        dst.extend_from_slice(&body);
    })
    .expect("a hello is small");
    frame
}

async fn send_loop(
    peer: NodeId,
    address: String,
    hello: BytesMut,
    mut queue: mpsc::Receiver<Outgoing>,
    stats: Arc<TransportStats>,
) {
    // Connect (and introduce ourselves) at once rather than at the first message, so every
    // peer learns where this node's clients connect even if it never has to send to it.
    let mut stream: Option<TcpStream> = connect(peer, &address, &hello, &stats).await;
    let mut body = Vec::new();
    let mut frame = BytesMut::new();
    while let Some(first) = queue.recv().await {
        body.clear();
        body.put_u32_le(0); // count, patched below
        let mut count = 0u32;
        let mut next = Some(first);
        while let Some((group, m)) = next.take() {
            body.put_u64_le(group);
            put_message(&mut body, &m);
            count += 1;
            if body.len() < PEER_BATCH_BYTES_TARGET {
                next = queue.try_recv().ok();
            }
        }
        body[..4].copy_from_slice(&count.to_le_bytes());
        frame.clear();
        if encode_frame_with(RAFT, 0, &mut frame, |dst| dst.extend_from_slice(&body)).is_err() {
            continue;
        }
        if stream.is_none() {
            stream = connect(peer, &address, &hello, &stats).await;
            if stream.is_none() {
                // Drop what queued up meanwhile: it is stale, and Raft sends again.
                tokio::time::sleep(RECONNECT_DELAY).await;
                while queue.try_recv().is_ok() {
                    stats.messages_dropped.fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
        }
        let Some(s) = stream.as_mut() else { continue };
        match write_with_progress(s, &frame).await {
            Ok(()) => {
                stats.batches_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) if error.kind() != std::io::ErrorKind::TimedOut => {
                tracing::info!(peer, %address, %error, "lost the connection to peer");
                stream = None;
            }
            Err(_) => {
                // Part of the frame may be out: the connection cannot carry another one.
                stats.write_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    peer,
                    %address,
                    timeout_ms = PEER_WRITE_TIMEOUT.as_millis() as u64,
                    "a write to the peer did not finish; reconnecting"
                );
                stream = None;
            }
        }
    }
}

/// One attempt to connect to `peer` and send the hello.
async fn connect(
    peer: NodeId,
    address: &str,
    hello: &[u8],
    stats: &TransportStats,
) -> Option<TcpStream> {
    let attempt = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await;
    match attempt.unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into())) {
        Ok(mut s) => {
            let _ = s.set_nodelay(true);
            if write_with_progress(&mut s, hello).await.is_ok() {
                tracing::info!(peer, %address, "connected to peer");
                return Some(s);
            }
            None
        }
        Err(error) => {
            stats.connect_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer, %address, %error, "peer unreachable");
            None
        }
    }
}

/// What the receiving side hands to the node.
pub trait Inbox: Send + Sync + 'static {
    /// A Raft message arrived; `false` if it had to be dropped (the node is overloaded).
    fn deliver(&self, group: GroupId, m: Message) -> bool;
    /// Peer `id` introduced itself.
    fn hello(&self, id: NodeId, advertised: Advertised);
    /// The cluster map this node knows, encoded (for [`PEER_MAP`]).
    fn map(&self) -> bytes::Bytes;
}

/// Accepts peer connections until `shutdown` resolves; a peer whose hello carries another
/// timing than `timing` is refused.
pub async fn serve(
    listener: TcpListener,
    inbox: Arc<dyn Inbox>,
    timing: Timing,
    stats: Arc<TransportStats>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let inbox = inbox.clone();
                    let stats = stats.clone();
                    tokio::spawn(async move {
                        match receive(stream, inbox, timing, &stats).await {
                            Err(error @ PeerError::Timing { .. }) => {
                                stats.timing_mismatches.fetch_add(1, Ordering::Relaxed);
                                tracing::error!(%addr, %error, "refused a peer");
                            }
                            Err(error) => tracing::info!(%addr, %error, "peer connection closed"),
                            Ok(()) => {}
                        }
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "accepting a peer connection failed");
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            },
        }
    }
}

/// Why a peer connection was closed.
#[derive(Debug, thiserror::Error)]
enum PeerError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("bad frame from peer: {0}")]
    Frame(String),
    #[error(
        "node {peer} runs with {theirs}, this node with {ours}; leader leases are safe only \
         if every node has the same timing (give every node the same --tick-ms)"
    )]
    Timing {
        peer: NodeId,
        theirs: Timing,
        ours: Timing,
    },
}

async fn receive(
    mut stream: TcpStream,
    inbox: Arc<dyn Inbox>,
    timing: Timing,
    stats: &TransportStats,
) -> Result<(), PeerError> {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut from = None;
    loop {
        loop {
            let frame = match decode_frame(&mut buf, PEER_FRAME_BYTES_MAX) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => return Err(PeerError::Frame(e.to_string())),
            };
            match (frame.opcode, from) {
                (PEER_MAP, None) => {
                    let mut out = BytesMut::new();
                    crate::wire::frame::encode_frame(
                        PEER_MAP_OK,
                        frame.request_id,
                        &inbox.map(),
                        &mut out,
                    )
                    .map_err(|e| PeerError::Frame(e.to_string()))?;
                    write_with_progress(&mut stream, &out).await?;
                    return Ok(());
                }
                (PEER_HELLO, _) => {
                    let (id, advertised, theirs) =
                        decode_hello(&frame).map_err(PeerError::Frame)?;
                    if theirs != timing {
                        return Err(PeerError::Timing {
                            peer: id,
                            theirs,
                            ours: timing,
                        });
                    }
                    inbox.hello(id, advertised);
                    from = Some(id);
                }
                (RAFT, Some(peer)) => {
                    for (group, m) in decode_batch(&frame).map_err(PeerError::Frame)? {
                        if m.from != peer {
                            return Err(PeerError::Frame(format!(
                                "node {peer} sent a message from node {}",
                                m.from
                            )));
                        }
                        stats.messages_received.fetch_add(1, Ordering::Relaxed);
                        inbox.deliver(group, m);
                    }
                }
                (opcode, _) => {
                    return Err(PeerError::Frame(format!(
                        "unexpected opcode {opcode:#06x} (a hello must come first)"
                    )))
                }
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
}

/// Asks the node at peer address `addr` for its cluster map ([`PEER_MAP`]): how a joining
/// node, which knows only one member's peer address, finds the rest of the cluster.
pub async fn fetch_map(addr: &str) -> Result<bytes::Bytes, String> {
    let ask = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connecting to {addr}: {e}"))?;
        let mut out = BytesMut::new();
        crate::wire::frame::encode_frame(PEER_MAP, 1, &[], &mut out).map_err(|e| e.to_string())?;
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            if let Some(frame) =
                decode_frame(&mut buf, PEER_FRAME_BYTES_MAX).map_err(|e| e.to_string())?
            {
                if frame.opcode != PEER_MAP_OK {
                    return Err(format!("{addr} answered opcode {:#06x}", frame.opcode));
                }
                return Ok(frame.body);
            }
            if stream.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 {
                return Err(format!("{addr} closed the connection without an answer"));
            }
        }
    };
    tokio::time::timeout(PEER_MAP_TIMEOUT, ask)
        .await
        .map_err(|_| format!("{addr} did not answer within {PEER_MAP_TIMEOUT:?}"))?
}

fn decode_hello(frame: &Frame) -> Result<(NodeId, Advertised, Timing), String> {
    let mut r = Reader::new(&frame.body);
    let id = r.u64()?;
    let mut text = || -> Result<String, String> {
        String::from_utf8(r.bytes()?.to_vec()).map_err(|_| "address is not UTF-8".to_string())
    };
    let client = text()?;
    let resp = Some(text()?).filter(|s| !s.is_empty());
    let peer = text()?;
    let timing = Timing {
        tick_us: r.u64()?,
        election_ticks_min: r.u32()? as u32,
        lease_ticks: r.u32()? as u32,
    };
    if r.remaining() != 0 {
        return Err("bytes after the hello's timing".into());
    }
    Ok((id, Advertised { client, resp, peer }, timing))
}

/// `count u32`, then per message `group u64 | message`.
pub fn decode_batch(frame: &Frame) -> Result<Vec<(GroupId, Message)>, String> {
    let mut r = Reader::new(&frame.body);
    // A message takes at least 33 bytes (three ids, a kind) plus its group.
    let count = r.count(33)?;
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let group = r.u64()?;
        out.push((group, r.message()?));
    }
    if r.remaining() != 0 {
        return Err("bytes after the last message".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Body;

    #[derive(Default)]
    struct Collect {
        messages: Mutex<Vec<Message>>,
        hellos: Mutex<Vec<NodeId>>,
    }

    impl Inbox for Collect {
        fn deliver(&self, _group: GroupId, m: Message) -> bool {
            self.messages.lock().unwrap().push(m);
            true
        }
        fn hello(&self, id: NodeId, _advertised: Advertised) {
            self.hellos.lock().unwrap().push(id);
        }
        fn map(&self) -> bytes::Bytes {
            bytes::Bytes::from_static(b"the map")
        }
    }

    fn timing(tick_us: u64) -> Timing {
        Timing::of(&crate::raft::Config {
            tick_us,
            ..crate::raft::Config::new(1)
        })
    }

    /// Node 2 listens with `theirs`; node 1 connects with `ours` and sends a heartbeat.
    /// Returns what node 2 received and how many peers it refused.
    async fn exchange(ours: Timing, theirs: Timing) -> (usize, usize, u64) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let inbox = Arc::new(Collect::default());
        let stats = Arc::new(TransportStats::default());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            inbox.clone(),
            theirs,
            stats.clone(),
            async {
                let _ = stopped.await;
            },
        ));
        let sender = Transport::new(
            1,
            Advertised::default(),
            ours,
            tokio::runtime::Handle::current(),
        );
        sender.set_peer(2, address);
        let heartbeat = Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::Heartbeat {
                commit: 0,
                round: 1,
            },
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            sender.send(7, heartbeat.clone());
            let done = !inbox.messages.lock().unwrap().is_empty()
                || stats.timing_mismatches.load(Ordering::Relaxed) > 0;
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = stop.send(());
        server.await.unwrap();
        let received = inbox.messages.lock().unwrap().len();
        let hellos = inbox.hellos.lock().unwrap().len();
        (
            received,
            hellos,
            stats.timing_mismatches.load(Ordering::Relaxed),
        )
    }

    /// A peer whose socket accepts but never reads (a blackholed link, a stopped process):
    /// once its buffers are full a write blocks. The sender must give up on it within
    /// `PEER_WRITE_TIMEOUT` and connect again, rather than wait for TCP to give up.
    #[tokio::test]
    async fn a_write_to_a_peer_that_never_reads_times_out_and_the_link_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(AtomicU64::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        {
            let (accepted, held) = (accepted.clone(), held.clone());
            tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    held.lock().unwrap().push(stream); // kept open, never read
                }
            });
        }
        let sender = Transport::new(
            1,
            Advertised::default(),
            timing(50_000),
            tokio::runtime::Handle::current(),
        );
        sender.set_peer(2, address);
        let entry = crate::raft::Entry {
            index: 1,
            term: 1,
            payload: crate::raft::Payload::Command(bytes::Bytes::from(vec![7u8; 1 << 20])),
        };
        let append = Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::Append {
                prev_index: 0,
                prev_term: 0,
                entries: vec![entry],
                commit: 0,
            },
        };
        let deadline =
            tokio::time::Instant::now() + PEER_WRITE_TIMEOUT * 4 + Duration::from_secs(2);
        while tokio::time::Instant::now() < deadline {
            sender.send(1, append.clone());
            if sender.stats.write_timeouts.load(Ordering::Relaxed) >= 1
                && accepted.load(Ordering::SeqCst) >= 2
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "no write timed out and reconnected: {} connections, {} timeouts",
            accepted.load(Ordering::SeqCst),
            sender.stats.write_timeouts.load(Ordering::Relaxed)
        );
    }

    #[tokio::test]
    async fn a_joining_node_gets_the_map_from_a_peer_address() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let inbox: Arc<dyn Inbox> = Arc::new(Collect::default());
        let stats = Arc::new(TransportStats::default());
        tokio::spawn(serve(
            listener,
            inbox,
            timing(50_000),
            stats,
            std::future::pending(),
        ));
        assert_eq!(fetch_map(&address).await.unwrap(), "the map");
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nobody = closed.local_addr().unwrap().to_string();
        drop(closed);
        assert!(fetch_map(&nobody).await.unwrap_err().contains("connecting"));
    }

    #[tokio::test]
    async fn peers_with_the_same_timing_talk() {
        let (received, hellos, refused) = exchange(timing(50_000), timing(50_000)).await;
        assert!(received >= 1);
        assert_eq!((hellos, refused), (1, 0));
    }

    #[tokio::test]
    async fn a_peer_with_another_tick_length_is_refused() {
        let (received, hellos, refused) = exchange(timing(20_000), timing(50_000)).await;
        assert_eq!(
            (received, hellos),
            (0, 0),
            "nothing from it reaches the node"
        );
        assert!(refused >= 1);
    }
}
