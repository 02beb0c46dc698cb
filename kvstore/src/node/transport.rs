//! Node-to-node messaging over TCP, in the binary protocol's frames.
//!
//! Every node keeps one outgoing connection per peer, fed by a bounded queue: the Raft thread
//! never waits on the network, it drops a message when a peer's queue is full (Raft resends
//! what matters: heartbeats repeat, appends are retried from the follower's progress). A sender
//! task takes everything queued at the moment it wakes and writes it as one `RAFT` frame, so a
//! busy link costs one system call per batch rather than per message.
//!
//! A connection starts with a `PEER_HELLO` frame: the sender's node id and the addresses its
//! clients use (binary protocol, RESP), so a follower can redirect clients to the leader. Then
//! it carries `RAFT` frames one way. The layouts are in `docs/wire-protocol.md` ("Peers").

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::raft::codec::{put_message, put_u32, Reader};
use crate::raft::{Message, NodeId};
use crate::storage::wal::GroupId;
use crate::wire::frame::{decode_frame, encode_frame_with, Frame};

/// Opcode of the first frame on a peer connection.
pub const PEER_HELLO: u16 = 0x0100;
/// Opcode of a batch of Raft messages.
pub const RAFT: u16 = 0x0101;
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

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct TransportStats {
    pub messages_sent: AtomicU64,
    pub messages_dropped: AtomicU64,
    pub messages_received: AtomicU64,
    pub batches_sent: AtomicU64,
    pub connect_failures: AtomicU64,
}

type Outgoing = (GroupId, Message);

/// The sending side: one queue and task per peer.
pub struct Transport {
    id: NodeId,
    me: Advertised,
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
    pub fn new(id: NodeId, me: Advertised, runtime: tokio::runtime::Handle) -> Transport {
        Transport {
            id,
            me,
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
        let hello = hello_frame(self.id, &self.me);
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

fn hello_frame(id: NodeId, me: &Advertised) -> BytesMut {
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
        match s.write_all(&frame).await {
            Ok(()) => {
                stats.batches_sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                tracing::info!(peer, %address, %error, "lost the connection to peer");
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
            if s.write_all(hello).await.is_ok() {
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
}

/// Accepts peer connections until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    inbox: Arc<dyn Inbox>,
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
                        if let Err(error) = receive(stream, inbox, stats).await {
                            tracing::info!(%addr, %error, "peer connection closed");
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
}

async fn receive(
    mut stream: TcpStream,
    inbox: Arc<dyn Inbox>,
    stats: Arc<TransportStats>,
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
                (PEER_HELLO, _) => {
                    let (id, advertised) = decode_hello(&frame).map_err(PeerError::Frame)?;
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

fn decode_hello(frame: &Frame) -> Result<(NodeId, Advertised), String> {
    let mut r = Reader::new(&frame.body);
    let id = r.u64()?;
    let mut text = || -> Result<String, String> {
        String::from_utf8(r.bytes()?.to_vec()).map_err(|_| "address is not UTF-8".to_string())
    };
    let client = text()?;
    let resp = Some(text()?).filter(|s| !s.is_empty());
    let peer = text()?;
    Ok((id, Advertised { client, resp, peer }))
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
