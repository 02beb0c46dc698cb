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
//! Each link is also a numbered sequence: every message queued for a peer takes the next
//! number, whether it is sent or dropped, and a `RAFT` frame carries the number of its first
//! message. The Raft thread pings every peer once a heartbeat interval ([`Transport::ping_all`],
//! a frame that may carry no message). So a receiver knows two things per peer: that the
//! peer's Raft thread was alive a moment ago, and whether it has missed anything the peer sent
//! since the connection was made (a gap in the numbers, or a new connection). Quiesced groups
//! rest on both (see `docs/raft.md`, "Quiescence").
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
/// A receiver tells its node that a peer is alive at most this often (a gap, at once).
pub const PEER_HEARD_REPORT_INTERVAL: Duration = Duration::from_millis(10);
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

/// What a peer's queue holds.
#[derive(Debug)]
enum Outgoing {
    /// A message and its number on the link.
    Message(u64, GroupId, Message),
    /// A ping from the Raft thread, carrying the number the next message will take.
    Ping(u64),
}

impl Outgoing {
    /// The link number of this item: a message's own, or a ping's next.
    fn seq(&self) -> u64 {
        match self {
            Outgoing::Message(seq, ..) | Outgoing::Ping(seq) => *seq,
        }
    }
}

/// One peer: its address, its queue, and the number the next message to it takes.
struct Peer {
    address: String,
    queue: mpsc::Sender<Outgoing>,
    next_seq: u64,
}

/// The sending side: one queue and task per peer.
pub struct Transport {
    id: NodeId,
    me: Advertised,
    timing: Timing,
    runtime: tokio::runtime::Handle,
    peers: Mutex<BTreeMap<NodeId, Peer>>,
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
        if peers.get(&id).is_some_and(|p| p.address == address) || id == self.id {
            return;
        }
        let (tx, rx) = mpsc::channel(PEER_QUEUE_MESSAGES_MAX);
        let hello = hello_frame(self.id, &self.me, self.timing);
        let stats = self.stats.clone();
        self.runtime
            .spawn(send_loop(id, address.clone(), hello, rx, stats));
        // Replacing the sender ends the old task (its queue closes); the new one connects
        // afresh, which its receiver takes as a gap, so numbering may go on.
        let next_seq = peers.get(&id).map_or(0, |p| p.next_seq);
        peers.insert(
            id,
            Peer {
                address,
                queue: tx,
                next_seq,
            },
        );
    }

    /// The peers' addresses.
    pub fn peers(&self) -> BTreeMap<NodeId, String> {
        let peers = self.peers.lock().expect("peers lock");
        peers
            .iter()
            .map(|(id, p)| (*id, p.address.clone()))
            .collect()
    }

    /// Queues `m` for its destination, or drops it if that peer's queue is full or unknown.
    /// Either way it takes the link's next number, so the peer sees the gap of a drop.
    pub fn send(&self, group: GroupId, m: Message) {
        let mut peers = self.peers.lock().expect("peers lock");
        let sent = match peers.get_mut(&m.to) {
            Some(peer) => {
                let seq = peer.next_seq;
                peer.next_seq += 1;
                peer.queue
                    .try_send(Outgoing::Message(seq, group, m))
                    .is_ok()
            }
            None => false,
        };
        let counter = if sent {
            &self.stats.messages_sent
        } else {
            &self.stats.messages_dropped
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Pings every peer: tells it this node's Raft thread is alive, and the number of the
    /// next message (so a peer that missed the last ones learns it). Called by the Raft thread
    /// once a heartbeat interval; dropped for a peer whose queue is full (frames are flowing).
    pub fn ping_all(&self) {
        let peers = self.peers.lock().expect("peers lock");
        for peer in peers.values() {
            let _ = peer.queue.try_send(Outgoing::Ping(peer.next_seq));
        }
    }
}

/// The receiving end of one link's numbering: which number the next frame should start at.
/// A new connection has no expectation, so its first frame is a gap: what was queued for
/// the old connection, or sent before this node restarted, may be lost.
#[derive(Debug, Default)]
struct LinkSeq {
    expected: Option<u64>,
}

impl LinkSeq {
    /// A frame whose messages are numbered from `first`, `count` of them: whether the link
    /// lost something before it.
    fn frame(&mut self, first: u64, count: u64) -> bool {
        let gap = self.expected != Some(first);
        self.expected = Some(first + count);
        gap
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
    // An item taken from the queue that did not follow on from the batch before it.
    let mut held: Option<Outgoing> = None;
    loop {
        let first = match held.take() {
            Some(item) => item,
            None => match queue.recv().await {
                Some(item) => item,
                None => break, // replaced or shut down
            },
        };
        // `seq u64 | count u32 | (group u64, message)*`: the messages are numbered from
        // `seq` on, consecutively, so a batch ends where the numbers skip (a message dropped
        // at a full queue) and the next frame shows the gap.
        body.clear();
        body.put_u64_le(first.seq());
        body.put_u32_le(0); // count, patched below
        let mut count = 0u32;
        let mut next_seq = first.seq();
        let mut next = Some(first);
        while let Some(item) = next.take() {
            if item.seq() != next_seq {
                held = Some(item);
                break;
            }
            if let Outgoing::Message(_, group, m) = item {
                body.put_u64_le(group);
                put_message(&mut body, &m);
                count += 1;
                next_seq += 1;
            }
            if body.len() < PEER_BATCH_BYTES_TARGET {
                next = queue.try_recv().ok();
            }
        }
        body[8..12].copy_from_slice(&count.to_le_bytes());
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
    /// A `RAFT` frame from peer `id` arrived (its messages, if any, were delivered just
    /// before): its Raft thread was alive a moment ago. `gap`: this node may have missed
    /// messages it sent (a gap in the link's numbers, a new connection, or a message this
    /// node had to drop). `false` if the news could not be taken (the node is overloaded):
    /// the receiver then reports the gap again with the next frame.
    fn heard(&self, _id: NodeId, _gap: bool) -> bool {
        true
    }
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
    let mut link = LinkSeq::default();
    // A gap not yet reported to the node (see `Inbox::heard`), and when it last heard.
    let mut gap = false;
    let mut reported: Option<std::time::Instant> = None;
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
                    link = LinkSeq::default();
                }
                (RAFT, Some(peer)) => {
                    let (first, batch) = decode_batch(&frame).map_err(PeerError::Frame)?;
                    gap |= link.frame(first, batch.len() as u64);
                    for (group, m) in batch {
                        if m.from != peer {
                            return Err(PeerError::Frame(format!(
                                "node {peer} sent a message from node {}",
                                m.from
                            )));
                        }
                        stats.messages_received.fetch_add(1, Ordering::Relaxed);
                        gap |= !inbox.deliver(group, m);
                    }
                    // A busy link brings many frames a millisecond: news of its liveness is
                    // worth one event now and then; a gap, always.
                    let due = reported.is_none_or(|at| at.elapsed() >= PEER_HEARD_REPORT_INTERVAL);
                    if (gap || due) && inbox.heard(peer, gap) {
                        gap = false;
                        reported = Some(std::time::Instant::now());
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
/// Decodes a `RAFT` frame: the link number of its first message, and its messages.
pub fn decode_batch(frame: &Frame) -> Result<(u64, Vec<(GroupId, Message)>), String> {
    let mut r = Reader::new(&frame.body);
    let first = r.u64()?;
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
    Ok((first, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::Body;

    #[derive(Default)]
    struct Collect {
        messages: Mutex<Vec<Message>>,
        hellos: Mutex<Vec<NodeId>>,
        /// Every `heard` call: (peer, gap).
        heard: Mutex<Vec<(NodeId, bool)>>,
        /// Messages to refuse (an overloaded node) before taking any.
        refuse: AtomicU64,
    }

    impl Inbox for Collect {
        fn deliver(&self, _group: GroupId, m: Message) -> bool {
            let refuse = self.refuse.load(Ordering::SeqCst);
            if refuse > 0 {
                self.refuse.store(refuse - 1, Ordering::SeqCst);
                return false;
            }
            self.messages.lock().unwrap().push(m);
            true
        }
        fn heard(&self, id: NodeId, gap: bool) -> bool {
            self.heard.lock().unwrap().push((id, gap));
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

    /// Node 1's transport, sending to node 2 at `address`.
    fn sender_to(address: String, timing: Timing) -> Transport {
        let sender = Transport::new(
            1,
            Advertised::default(),
            timing,
            tokio::runtime::Handle::current(),
        );
        sender.set_peer(2, address);
        sender
    }

    fn heartbeat() -> Message {
        Message {
            from: 1,
            to: 2,
            term: 1,
            body: Body::Heartbeat {
                commit: 0,
                round: 1,
            },
        }
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
        let sender = sender_to(address, ours);
        let heartbeat = heartbeat();
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
        let sender = sender_to(address, timing(50_000));
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

    #[test]
    fn a_link_reports_a_gap_at_a_new_connection_and_where_its_numbers_skip() {
        let mut link = LinkSeq::default();
        assert!(link.frame(5, 2), "the first frame of a connection");
        assert!(!link.frame(7, 0), "a ping that follows on");
        assert!(!link.frame(7, 3));
        assert!(link.frame(12, 1), "messages 10 and 11 were dropped");
        assert!(!link.frame(13, 0));
    }

    /// Waits until `inbox` has had `n` calls of `heard`, pinging meanwhile.
    async fn heard_calls(sender: &Transport, inbox: &Collect, n: usize) -> Vec<(NodeId, bool)> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if inbox.heard.lock().unwrap().len() >= n {
                break;
            }
            sender.ping_all();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        inbox.heard.lock().unwrap().clone()
    }

    /// Pings tell the receiver the sender is alive; the first frame of a connection, and one
    /// after a message the receiver could not take, say it may have missed something.
    #[tokio::test]
    async fn pings_are_heard_and_a_lost_message_is_reported_as_a_gap() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let inbox = Arc::new(Collect::default());
        let stats = Arc::new(TransportStats::default());
        tokio::spawn(serve(
            listener,
            inbox.clone(),
            timing(50_000),
            stats,
            std::future::pending(),
        ));
        let sender = sender_to(address, timing(50_000));
        // After what `before` does, the next two reports are a gap, then plain liveness.
        async fn gap_then_alive(sender: &Transport, inbox: &Collect, before: impl FnOnce()) {
            let n = inbox.heard.lock().unwrap().len();
            before();
            let heard = heard_calls(sender, inbox, n + 2).await;
            assert_eq!(heard[n..n + 2], [(1, true), (1, false)], "{heard:?}");
        }
        // The first frame of a connection.
        gap_then_alive(&sender, &inbox, || {}).await;
        // The receiver is overloaded for one message: the frame that carried it is a gap.
        gap_then_alive(&sender, &inbox, || {
            inbox.refuse.store(1, Ordering::SeqCst);
            sender.send(7, heartbeat());
        })
        .await;
        // A number taken by a message that never left (as at a full queue) shows as a gap
        // in the next frame's numbers.
        gap_then_alive(&sender, &inbox, || {
            sender.peers.lock().unwrap().get_mut(&2).unwrap().next_seq += 1;
            sender.send(7, heartbeat());
        })
        .await;
        assert_eq!(inbox.messages.lock().unwrap().len(), 1);
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
