//! The replicated state machine of one Raft group: the part 1 engine, fed committed entries.
//!
//! Applying an entry runs the request it carries ([`super::command`]) with the ordinary code of
//! a single node, inside **one** engine transaction whose version is the entry's index. That
//! transaction also writes two internal records (engine keys starting with a 0 byte, which no
//! keyspace can produce):
//!
//! - `\0applied`: the entry's index and the state machine's clock. Its version is therefore
//!   the applied index, and because it is written atomically with the entry's effects, the
//!   engine alone says which entries it holds. After a crash the node replays the log from
//!   there; an entry at or below it is skipped, so nothing is applied twice.
//! - `\0s` + client id: the session's last applied `seq` and its encoded reply. A retried
//!   request (same client, same seq) gets the remembered reply and changes nothing; an older
//!   one gets an error. So a write is applied at most once however often it is retried.
//!
//! The engine's own fsync need not be on the commit path: the Raft log (the WAL) is durable
//! first and the entries are replayed on restart. Before the log is compacted past an index the
//! engine is synced ([`StateMachine::sync`]).
//!
//! A snapshot is the engine's contents as bytes ([`StateMachine::snapshot`]). Installing one
//! builds a fresh engine in a new directory and then switches the `CURRENT` file to it (an
//! atomic rename), so a crash in the middle leaves the old engine in charge.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use bytes::{BufMut, Bytes, BytesMut};

use super::command::{self, Command};
use crate::db::{Db, Store};
use crate::op::{Op, Outcome};
use crate::raft::{Entry, Index, Payload};
use crate::storage::{self, Engine, FloorClock, StorageError, SystemClock, Txn, Value, Written};
use crate::wire::frame::decode_frame;
use crate::wire::{ErrorCode, Request, Response};

/// The engine key of the applied-index record.
pub const APPLIED_KEY: &[u8] = b"\0applied";
/// Engine keys of session records start with this (then the client id, big-endian): the
/// highest request id applied, then which replies of the window are kept (8 bytes each, see
/// [`Session::kept`]). A record of 8 bytes is the layout before `kept`; any other length is
/// the oldest layout: the last request id and its reply.
const SESSION_PREFIX: &[u8] = b"\0s";
/// Engine keys of remembered replies start with this (then the client id and the request id,
/// big-endian, so one client's replies are one ordered range).
const REPLY_PREFIX: &[u8] = b"\0r";
/// Engine keys of the peer address book start with this (then the node id, big-endian).
const PEER_PREFIX: &[u8] = b"\0peer";
const CURRENT_FILE: &str = "CURRENT";
const SNAPSHOT_MAGIC: &[u8; 8] = b"KVSNAP\0\x01";
/// Versions written per engine write group while installing a snapshot.
const INSTALL_GROUP_VERSIONS: usize = 1024;

/// Errors of the state machine.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("snapshot is corrupt: {0}")]
    CorruptSnapshot(String),
    /// Applying entry `index` met a fault of this replica's storage. The entry is not
    /// applied (nor any after it); the node must stop and apply it again after a restart.
    #[error(
        "applying entry {index} failed on this replica's storage ({reason}); stopping so that \
         a restart applies it again"
    )]
    Apply { index: Index, reason: String },
}

type Result<T, E = StateError> = std::result::Result<T, E>;

/// The reply an applied entry produced, for the client waiting on it (at the node that
/// proposed it), which turns it into its protocol's answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The outcome of a binary-protocol request ([`Outcome::Response`]).
    Wire(Response),
    /// The outcome of any other operation.
    Outcome(Outcome),
    /// A node's peer address was recorded.
    Peer { id: u64, address: String },
}

/// The state machine of one group.
pub struct StateMachine {
    dir: PathBuf,
    config: storage::Config,
    /// The engine in use. Readers clone the [`Db`] out (cheap), so a snapshot install can
    /// swap it under them.
    db: Arc<RwLock<Db>>,
    generation: u64,
    /// The last generation an [`InstallJob`] was given (each builds its own directory).
    last_job_generation: u64,
    applied: Index,
    /// The state machine's clock: the latest `now_ms` of any applied command, so it never
    /// goes back even if leaders' clocks disagree.
    now_ms: u64,
    /// Reads' clock, and the clock this node stamps its proposals with: never behind the
    /// log's time (`now_ms`).
    clock: Arc<FloorClock>,
}

impl std::fmt::Debug for StateMachine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachine")
            .field("dir", &self.dir)
            .field("applied", &self.applied)
            .finish()
    }
}

impl StateMachine {
    /// Opens the state machine in `dir` (created if missing). `config` is the engine's; the
    /// engine never expires keys on its own here (see [`storage::Config::expire_locally`]).
    pub fn open(dir: &Path, config: storage::Config) -> Result<StateMachine> {
        StateMachine::open_with_clock(
            dir,
            config,
            Arc::new(FloorClock::new(Arc::new(SystemClock))),
        )
    }

    /// Opens it with a clock shared with other groups of the node: the clock its proposals are
    /// stamped with is then never behind any of their logs' times.
    pub fn open_with_clock(
        dir: &Path,
        mut config: storage::Config,
        clock: Arc<FloorClock>,
    ) -> Result<StateMachine> {
        config.expire_locally = false;
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let current = dir.join(CURRENT_FILE);
        let generation = match fs::read_to_string(&current) {
            Ok(text) => text
                .trim()
                .strip_prefix("engine-")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StateError::CorruptSnapshot(format!("bad {current:?}: {text:?}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_current(dir, 1)?;
                1
            }
            Err(e) => return Err(io("reading", &current)(e)),
        };
        remove_other_engines(dir, generation)?;
        let engine = Engine::open(engine_dir(dir, generation), config.clone(), clock.clone())?;
        let (applied, now_ms) = read_applied(&engine)?;
        clock.raise_to(now_ms);
        Ok(StateMachine {
            dir: dir.to_path_buf(),
            config,
            db: Arc::new(RwLock::new(Db::new(engine))),
            generation,
            last_job_generation: generation,
            applied,
            now_ms,
            clock,
        })
    }

    /// The clock reads judge expiry by and this node stamps its proposals with: the wall
    /// clock, never behind the time of the last applied entry.
    pub fn clock(&self) -> Arc<FloorClock> {
        self.clock.clone()
    }

    /// The index of the last entry applied.
    pub fn applied(&self) -> Index {
        self.applied
    }

    /// The current engine, for reads.
    pub fn db(&self) -> Db {
        self.db.read().expect("db lock").clone()
    }

    /// A handle that always reads the current engine, for other threads.
    pub fn shared_db(&self) -> Arc<RwLock<Db>> {
        self.db.clone()
    }

    /// The peer address book: every address logged with [`Command::peer`].
    pub fn peers(&self) -> Result<Vec<(u64, String)>> {
        let db = self.db();
        let mut end = PEER_PREFIX.to_vec();
        end.push(0xFF);
        let entries = db.engine().scan_all(PEER_PREFIX, &end, usize::MAX)?;
        Ok(entries
            .into_iter()
            .filter_map(|e| {
                let id = u64::from_be_bytes(e.key.get(PEER_PREFIX.len()..)?.try_into().ok()?);
                Some((id, String::from_utf8(e.value?.to_vec()).ok()?))
            })
            .collect())
    }

    /// Makes everything applied so far durable in the engine.
    pub fn sync(&self) -> Result<()> {
        Ok(self.db().engine().sync()?)
    }

    /// Applies `entries` (committed, in order) with one engine append, and returns each
    /// command's reply. Entries at or below the applied index are skipped (replay after a
    /// restart). An error means the engine could not append: nothing of the batch was applied.
    pub fn apply(&mut self, entries: &[Entry]) -> Result<Vec<(Index, Reply)>> {
        if entries.is_empty() {
            return Ok(Vec::new()); // a heartbeat's round: nothing to take the engine for
        }
        let db = self.db();
        let mut replies = Vec::new();
        let mut applied = self.applied;
        let mut now_ms = self.now_ms;
        let clock = &self.clock;
        let outcome = db.engine().write_group_at(now_ms, |group| -> Result<()> {
            let from = applied;
            for entry in entries.iter().filter(|e| e.index > from) {
                let command = match &entry.payload {
                    Payload::Command(data) => match Command::decode(data) {
                        Ok(command) => Some(command),
                        // Checksummed in the WAL, so this is another build's format: skipping
                        // it would let this replica drift from the others. Stop instead; a
                        // build that knows the format applies it.
                        Err(error) => {
                            return Err(StateError::Apply {
                                index: entry.index,
                                reason: format!("the entry does not decode ({error})"),
                            })
                        }
                    },
                    Payload::Noop | Payload::Config(_) => None,
                };
                if let Some(c) = &command {
                    now_ms = now_ms.max(c.now_ms);
                }
                // Before the group is published: a read that sees this entry's effects must
                // also judge TTLs at (at least) its time. (If the append then fails, reads
                // merely judge a little later, which is safe.)
                clock.raise_to(now_ms);
                group.set_now_ms(now_ms);
                let ((), _) = group.txn(Some(entry.index), |txn| -> Result<()> {
                    if let Some(command) = command {
                        let reply = execute(&db, txn, command)?;
                        if let Some(reason) = txn.storage_fault() {
                            // The handler may have answered with the error; the entry
                            // must not count as applied here.
                            return Err(StateError::Apply {
                                index: entry.index,
                                reason,
                            });
                        }
                        replies.push((entry.index, reply));
                    }
                    let mut marker = [0u8; 16];
                    marker[..8].copy_from_slice(&entry.index.to_le_bytes());
                    marker[8..].copy_from_slice(&now_ms.to_le_bytes());
                    Ok(txn.put(APPLIED_KEY, marker, 0)?)
                })?;
                applied = entry.index;
            }
            Ok(())
        })?;
        // The entries before a failed one were appended with the group: they count.
        self.applied = applied;
        self.now_ms = now_ms;
        self.clock.raise_to(now_ms);
        outcome.0?;
        Ok(replies)
    }

    /// The engine's contents as snapshot bytes, as of the applied index.
    pub fn snapshot(&self) -> Result<Bytes> {
        let (index, data) = encode_snapshot(&self.db().engine().view()?)?;
        debug_assert_eq!(index, self.applied, "a view taken between applies");
        Ok(data)
    }

    /// A snapshot to build on another thread (see [`SnapshotJob`]).
    pub fn snapshot_job(&self) -> SnapshotJob {
        SnapshotJob {
            db: self.db(),
            dir: self.dir.clone(),
            build: true,
        }
    }

    /// A sync of the engine on another thread, to compact the log with and no snapshot
    /// built (see [`SnapshotJob`]).
    pub fn sync_job(&self) -> SnapshotJob {
        SnapshotJob {
            db: self.db(),
            dir: self.dir.clone(),
            build: false,
        }
    }

    /// Replaces the state with snapshot `data` (as made by [`StateMachine::snapshot`]), here
    /// and now: [`StateMachine::install_job`] run, then adopted.
    pub fn install(&mut self, data: &Bytes) -> Result<()> {
        let built = self.install_job(data.clone()).run()?;
        self.adopt(built)
    }

    /// The slow half of an install, to run on another thread: it builds the next engine from
    /// the snapshot beside the one in use, which this state machine goes on serving (and
    /// nothing else may write meanwhile). [`StateMachine::adopt`] then switches to it.
    pub fn install_job(&mut self, data: Bytes) -> InstallJob {
        self.last_job_generation = self.last_job_generation.max(self.generation) + 1;
        InstallJob {
            data,
            dir: self.dir.clone(),
            generation: self.last_job_generation,
            config: self.config.clone(),
            clock: self.clock.clone(),
        }
    }

    /// Switches to an engine an [`InstallJob`] built: `CURRENT` names it from now on, readers
    /// get it, and the old one's files go.
    pub fn adopt(&mut self, built: Installed) -> Result<()> {
        if built.generation <= self.generation {
            return Err(StateError::CorruptSnapshot(format!(
                "an install built generation {} while generation {} is in use",
                built.generation, self.generation
            )));
        }
        write_current(&self.dir, built.generation)?;
        let engine = built.engine;
        let old = std::mem::replace(&mut *self.db.write().expect("db lock"), Db::new(engine));
        drop(old);
        let old_dir = engine_dir(&self.dir, self.generation);
        // Readers that still hold the old engine keep their open files; the names go now.
        fs::remove_dir_all(&old_dir).map_err(io("removing", &old_dir))?;
        self.generation = built.generation;
        self.applied = built.applied;
        self.now_ms = built.now_ms;
        self.clock.raise_to(built.now_ms);
        Ok(())
    }

    /// Drops an engine built for this state machine that it will not adopt (a newer install
    /// overtook it), and its files, unless its generation is one in use or handed to a later
    /// job (a stale result must never delete what another install owns).
    pub fn discard(&self, built: Installed) {
        let dir = built.engine.dir().to_path_buf();
        let generation = built.generation;
        drop(built);
        let owned = generation == self.generation || generation >= self.last_job_generation;
        if !owned && dir.starts_with(&self.dir) {
            let _ = fs::remove_dir_all(&dir);
        }
    }
}

/// Builds the engine a snapshot describes, in the state machine's next generation directory
/// (synced), without touching the one in use; see [`StateMachine::install_job`].
pub struct InstallJob {
    data: Bytes,
    dir: PathBuf,
    generation: u64,
    config: storage::Config,
    clock: Arc<FloorClock>,
}

/// An engine an [`InstallJob`] built, for [`StateMachine::adopt`].
pub struct Installed {
    engine: Engine,
    generation: u64,
    applied: Index,
    now_ms: u64,
}

impl Installed {
    /// The generation (engine directory) it was built in.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The index of the snapshot it holds.
    pub fn applied(&self) -> Index {
        self.applied
    }
}

impl std::fmt::Debug for Installed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installed")
            .field("generation", &self.generation)
            .field("applied", &self.applied)
            .finish()
    }
}

impl InstallJob {
    /// The generation (engine directory) it builds.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn run(self) -> Result<Installed> {
        let snapshot = decode_snapshot(&self.data)?;
        let dir = engine_dir(&self.dir, self.generation);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io("removing", &dir))?;
        }
        let engine = Engine::open(&dir, self.config, self.clock)?;
        let mut entries = snapshot.entries;
        entries.sort_by_key(|e| e.version);
        let mut versions = entries.chunk_by(|a, b| a.version == b.version).peekable();
        while versions.peek().is_some() {
            engine
                .write_group(|group| -> Result<(), StorageError> {
                    for same in versions.by_ref().take(INSTALL_GROUP_VERSIONS) {
                        group.txn(Some(same[0].version), |txn| {
                            same.iter()
                                .try_for_each(|e| txn.put(&e.key, &e.value, e.expires_at_ms))
                        })?;
                    }
                    Ok(())
                })?
                .0?;
        }
        engine.sync()?;
        let (applied, now_ms) = read_applied(&engine)?;
        if applied != snapshot.index {
            return Err(StateError::CorruptSnapshot(format!(
                "snapshot says index {} but holds applied index {applied}",
                snapshot.index
            )));
        }
        Ok(Installed {
            engine,
            generation: self.generation,
            applied,
            now_ms,
        })
    }
}

/// Makes a state machine's state durable off the thread that applies its log, for the log
/// to be compacted up to the index it holds: syncs the engine, so that a restart starts from
/// it and replays only the log after that index. With `build`, it also builds a snapshot for
/// a follower that needs one: takes a view of the engine first (a consistent cut at whatever
/// index it has applied by then), encodes it and saves it to the snapshot file of its index.
/// The applying thread goes on meanwhile; it compacts the log once the job is done.
pub struct SnapshotJob {
    db: Db,
    dir: PathBuf,
    build: bool,
}

impl SnapshotJob {
    /// Returns the index the engine holds durably now and, when asked to build one, the
    /// snapshot's bytes at that index, saved (and synced) to its file. The bytes are written
    /// to the file as they are encoded, a buffer at a time, and come back mapped from it
    /// ([`map_snapshot_file`]): building a snapshot as large as the partition takes no more
    /// heap than the buffer.
    pub fn run(self) -> Result<(Index, Option<Bytes>)> {
        let engine = self.db.engine();
        if !self.build {
            // The applied record is written with the entry's effects: what it says is in the
            // engine, and the sync after reading it makes it durable.
            let (index, _) = read_applied(engine)?;
            engine.sync()?;
            return Ok((index, None));
        }
        let view = engine.view()?;
        engine.sync()?;
        let index = snapshot_index(&view)?;
        let path = snapshot_path(&self.dir, index);
        save_snapshot_with(&path, |file| {
            let mut out = std::io::BufWriter::with_capacity(SNAPSHOT_WRITE_BUFFER_BYTES, file);
            write_snapshot(&view, index, &mut out, &path)?;
            out.flush().map_err(io("writing", &path))
        })?;
        Ok((index, Some(map_snapshot_file(&path)?)))
    }
}

/// The buffer between a snapshot's encoder and its file.
const SNAPSHOT_WRITE_BUFFER_BYTES: usize = 1024 * 1024;

/// The applied index a view holds: the index of the snapshot made from it.
fn snapshot_index(view: &storage::View) -> Result<Index> {
    Ok(view.get(APPLIED_KEY)?.map_or(0, |e| e.version))
}

/// A view's entries as snapshot bytes in memory, with the applied index the view holds.
fn encode_snapshot(view: &storage::View) -> Result<(Index, Bytes)> {
    let index = snapshot_index(view)?;
    let mut out = Vec::new();
    write_snapshot(view, index, &mut out, Path::new("(memory)"))?;
    Ok((index, Bytes::from(out)))
}

/// Writes a view's entries as snapshot bytes (the layout `decode_snapshot` reads) to `out`,
/// the checksum computed as they go; `path` names the destination in errors.
fn write_snapshot(
    view: &storage::View,
    index: Index,
    out: &mut impl Write,
    path: &Path,
) -> Result<()> {
    let mut crc = crc32fast::Hasher::new();
    let mut put = |bytes: &[u8]| {
        crc.update(bytes);
        out.write_all(bytes).map_err(io("writing", path))
    };
    put(SNAPSHOT_MAGIC)?;
    put(&index.to_le_bytes())?;
    put(&(view.len() as u64).to_le_bytes())?;
    for e in view.entries() {
        let e = e?;
        let value = e.value.as_deref().unwrap_or_default();
        put(&(e.key.len() as u32).to_le_bytes())?;
        put(&e.key)?;
        put(&e.version.to_le_bytes())?;
        put(&e.expires_at_ms.unwrap_or(0).to_le_bytes())?;
        put(&(value.len() as u32).to_le_bytes())?;
        put(value)?;
    }
    let crc = crc.finalize();
    out.write_all(&crc.to_le_bytes())
        .map_err(io("writing", path))
}

/// Runs one command inside the entry's transaction and returns its reply.
fn execute(db: &Db, txn: &mut Txn<'_>, command: Command) -> Result<Reply, StorageError> {
    let session = match command.session {
        Some((client, seq)) => match Session::load(txn, client, seq)? {
            Lookup::Answered(reply) => return Ok(Reply::Wire(reply)),
            Lookup::New(session) => Some(session),
        },
        None => None,
    };
    if let command::Body::Peer { id, address } = command.body {
        let mut key = PEER_PREFIX.to_vec();
        key.extend_from_slice(&id.to_be_bytes());
        txn.put(&key, address.as_bytes(), 0)?;
        return Ok(Reply::Peer { id, address });
    }
    let store = TxnStore::new(txn);
    let op = match command.body {
        command::Body::Wire(frame) => Request::decode(&frame)
            .map(Op::Request)
            .map_err(|e| Outcome::Response(Response::error(e.error_code(), e.to_string()))),
        command::Body::Op(op) => Ok(op),
        // Logged by an earlier build: translated as the edge translates a Redis write now.
        command::Body::Resp(args) => {
            let args: Vec<&[u8]> = args.iter().map(|a| &a[..]).collect();
            let name = String::from_utf8_lossy(args.first().copied().unwrap_or_default())
                .to_ascii_lowercase();
            let rest = args.get(1..).unwrap_or_default();
            crate::resp::commands::plan_write(&name, rest, store.now_ms())
                .map(|(op, _)| op)
                .map_err(|reply| Outcome::Failed {
                    code: ErrorCode::InvalidArgument,
                    message: match reply {
                        crate::resp::codec::Reply::Error(text) => {
                            let text = text.into_owned();
                            text.strip_prefix("ERR ")
                                .map(str::to_string)
                                .unwrap_or(text)
                        }
                        other => format!("{other:?}"),
                    },
                })
        }
        command::Body::Peer { .. } => unreachable!("handled above"),
    };
    let outcome = match op {
        Ok(op) => crate::op::execute(db, &store, op).0,
        Err(outcome) => outcome,
    };
    // `store` borrowed `txn` mutably; its last use is above, so `txn` is free again here.
    if let Some(session) = session {
        // Every outcome of a session's request is remembered, so a retry never runs it again;
        // only binary-protocol requests carry sessions, so the others cannot occur.
        match &outcome {
            Outcome::Response(response) => session.remember(txn, response)?,
            other => {
                let kept = format!("the operation applied; its outcome ({other:?}) is not kept");
                session.remember(txn, &Response::error(ErrorCode::Internal, kept))?
            }
        }
    }
    Ok(match outcome {
        Outcome::Response(response) => Reply::Wire(response),
        outcome => Reply::Outcome(outcome),
    })
}

/// A session's state as one request sees it (see [`crate::wire::SESSION_WINDOW`]).
struct Session {
    client: u64,
    seq: u64,
    /// The highest request id applied before this one.
    high: u64,
    /// Which replies of the window are kept: bit `i` stands for request id `high - i`. A
    /// partition sees only the ids of the requests routed to it, often far apart, so the
    /// window moves by deleting the replies it kept, never one delete per id it skipped.
    kept: u64,
    /// The record is in the older layout (one reply) and must be rewritten.
    legacy: bool,
}

enum Lookup {
    /// A retry, or a request too old to apply: this is its answer.
    Answered(Response),
    /// A request to run.
    New(Session),
}

impl Session {
    fn key(client: u64) -> Vec<u8> {
        let mut key = SESSION_PREFIX.to_vec();
        key.extend_from_slice(&client.to_be_bytes());
        key
    }

    fn reply_key(client: u64, seq: u64) -> Vec<u8> {
        let mut key = REPLY_PREFIX.to_vec();
        key.extend_from_slice(&client.to_be_bytes());
        key.extend_from_slice(&seq.to_be_bytes());
        key
    }

    fn load(txn: &Txn<'_>, client: u64, seq: u64) -> Result<Lookup, StorageError> {
        let mut session = Session {
            client,
            seq,
            high: 0,
            kept: 0,
            legacy: false,
        };
        let le = |bytes: &[u8]| u64::from_le_bytes(bytes.try_into().expect("8 bytes"));
        match txn.get(&Session::key(client))? {
            Some(record) if record.value.len() == 16 => {
                session.high = le(&record.value[..8]);
                session.kept = le(&record.value[8..]);
            }
            Some(record) if record.value.len() == 8 => {
                // Written before `kept`: any reply of the window may be kept.
                session.high = le(&record.value[..]);
                session.kept = u64::MAX;
            }
            Some(record) => {
                // The older layout remembers only the last request and its reply.
                if let Some((last, reply)) = decode_reply(&record.value) {
                    if seq == last {
                        return Ok(Lookup::Answered(reply));
                    }
                    session.high = last;
                    session.legacy = true;
                }
            }
            None => {}
        }
        if let Some(record) = txn.get(&Session::reply_key(client, seq))? {
            if let Some((_, reply)) = decode_reply(&record.value) {
                return Ok(Lookup::Answered(reply));
            }
        }
        let window = if session.legacy {
            1
        } else {
            crate::wire::SESSION_WINDOW
        };
        if seq.saturating_add(window) <= session.high {
            // Its reply is gone (or was never kept), and whether it applied is not known
            // here: the client must treat the outcome as unknown.
            return Ok(Lookup::Answered(Response::error(
                ErrorCode::Timeout,
                format!(
                    "request {seq} of client {client} is older than the window of its last \
                     {window} requests (the highest applied is {}); it was applied already or \
                     never will be",
                    session.high
                ),
            )));
        }
        Ok(Lookup::New(session))
    }

    /// Records this request's reply, moves the window and forgets the replies behind it.
    fn remember(self, txn: &mut Txn<'_>, response: &Response) -> Result<(), StorageError> {
        let mut record = BytesMut::new();
        record.put_u64_le(self.seq);
        if response.encode(self.seq, &mut record).is_err() {
            // Too large to keep: keep that it applied, so a retry does not run it again.
            record.truncate(8);
            Response::error(
                ErrorCode::Timeout,
                "applied; the reply was too large to keep",
            )
            .encode(self.seq, &mut record)
            .expect("a short error encodes");
        }
        txn.put(&Session::reply_key(self.client, self.seq), &record, 0)?;
        // The window moves up by `shift`: a kept reply whose bit moves past the window's last
        // (bit `i` becomes `i + shift`) leaves it and is deleted, one point delete each; this
        // request's own reply is inside the window (`load` refused it otherwise).
        const _: () = assert!(crate::wire::SESSION_WINDOW == u64::BITS as u64);
        let high = self.high.max(self.seq);
        let shift = high - self.high;
        let leaving = if shift >= 64 {
            self.kept
        } else {
            self.kept & !(u64::MAX >> shift)
        };
        let mut bits = leaving;
        while bits != 0 {
            let i = u64::from(bits.trailing_zeros());
            bits &= bits - 1;
            if let Some(seq) = self.high.checked_sub(i) {
                txn.delete(&Session::reply_key(self.client, seq))?;
            }
        }
        let moved = if shift >= 64 { 0 } else { self.kept << shift };
        let kept = moved | 1 << (high - self.seq);
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&high.to_le_bytes());
        value[8..].copy_from_slice(&kept.to_le_bytes());
        txn.put(&Session::key(self.client), value, 0)?;
        Ok(())
    }
}

/// A remembered reply: the request id, then the response frame.
fn decode_reply(value: &[u8]) -> Option<(u64, Response)> {
    let seq = u64::from_le_bytes(value.get(..8)?.try_into().ok()?);
    let mut buf = BytesMut::from(&value[8..]);
    let frame = decode_frame(&mut buf, usize::MAX).ok()??;
    Some((seq, Response::decode(&frame).ok()?))
}

/// The data model over one transaction that is already open: every operation the request
/// makes joins it. A part that fails is rolled back to where it began, as if it had been a
/// transaction of its own.
struct TxnStore<'t, 'a> {
    txn: std::cell::RefCell<&'t mut Txn<'a>>,
}

impl<'t, 'a> TxnStore<'t, 'a> {
    fn new(txn: &'t mut Txn<'a>) -> Self {
        TxnStore {
            txn: std::cell::RefCell::new(txn),
        }
    }
}

impl Store for TxnStore<'_, '_> {
    fn now_ms(&self) -> u64 {
        self.txn.borrow().now_ms()
    }

    fn read(&self, key: &[u8]) -> Result<Option<Value>, StorageError> {
        self.txn.borrow().get(key)
    }

    fn transact<T, E: From<StorageError>>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<(T, Written), E> {
        let mut txn = self.txn.borrow_mut();
        let savepoint = txn.savepoint();
        match f(&mut txn) {
            Ok(value) => {
                let version = (!txn.is_empty()).then(|| txn.version());
                Ok((value, Written { version }))
            }
            Err(e) => {
                txn.rollback(savepoint);
                Err(e)
            }
        }
    }
}

fn read_applied(engine: &Engine) -> Result<(Index, u64)> {
    Ok(match engine.get(APPLIED_KEY)? {
        Some(Value { value, version, .. }) if value.len() == 16 => {
            let now = u64::from_le_bytes(value[8..].try_into().expect("8 bytes"));
            (version, now)
        }
        Some(_) => {
            return Err(StateError::CorruptSnapshot(
                "the applied-index record is malformed".into(),
            ))
        }
        None => (0, 0),
    })
}

struct SnapshotEntry {
    key: Bytes,
    version: u64,
    expires_at_ms: u64,
    value: Bytes,
}

struct DecodedSnapshot {
    index: Index,
    entries: Vec<SnapshotEntry>,
}

fn decode_snapshot(data: &Bytes) -> Result<DecodedSnapshot> {
    let corrupt = |what: &str| StateError::CorruptSnapshot(what.to_string());
    if data.len() < SNAPSHOT_MAGIC.len() + 20 {
        return Err(corrupt("shorter than its header"));
    }
    let (body, crc) = data.split_at(data.len() - 4);
    if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
        return Err(corrupt("checksum mismatch"));
    }
    if &body[..8] != SNAPSHOT_MAGIC {
        return Err(corrupt("not a kvstore snapshot, or an unknown version"));
    }
    let mut at = 8;
    let mut take = |n: usize| -> Result<Bytes> {
        if body.len() - at < n {
            return Err(corrupt("cut short"));
        }
        at += n;
        Ok(data.slice(at - n..at))
    };
    let u64_of = |b: Bytes| u64::from_le_bytes(b[..].try_into().expect("8 bytes"));
    let u32_of = |b: Bytes| u32::from_le_bytes(b[..].try_into().expect("4 bytes")) as usize;
    let index = u64_of(take(8)?);
    let count = u64_of(take(8)?);
    let mut entries = Vec::new();
    for _ in 0..count {
        let key_len = u32_of(take(4)?);
        let key = take(key_len)?;
        let version = u64_of(take(8)?);
        let expires_at_ms = u64_of(take(8)?);
        let value_len = u32_of(take(4)?);
        let value = take(value_len)?;
        entries.push(SnapshotEntry {
            key,
            version,
            expires_at_ms,
            value,
        });
    }
    if at != body.len() {
        return Err(corrupt("bytes after the last entry"));
    }
    Ok(DecodedSnapshot { index, entries })
}

/// Writes snapshot `data` to `path` durably (a temporary file, fsync, rename, fsync of the
/// directory), for a restart to find.
pub fn save_snapshot_file(path: &Path, data: &[u8]) -> Result<()> {
    save_snapshot_with(path, |file| {
        file.write_all(data).map_err(io("writing", path))
    })
}

/// [`save_snapshot_file`], with `write` filling the file.
fn save_snapshot_with(path: &Path, write: impl FnOnce(&mut fs::File) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    write(&mut file)?;
    put_snapshot_file_in_place(&file, &tmp, path)
}

/// Makes the snapshot written to `file` (at `written`) durable as `path`: fsync, rename into
/// place, fsync of the directory. It is never written again after this (it may be mapped).
pub fn put_snapshot_file_in_place(file: &fs::File, written: &Path, path: &Path) -> Result<()> {
    file.sync_all().map_err(io("syncing", written))?;
    fs::rename(written, path).map_err(io("renaming", written))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The snapshot file at `path`, mapped into memory: its pages live in the page cache, read
/// when they are touched (a chunk sent to a follower) and given back under memory pressure,
/// instead of the whole snapshot sitting on the heap for as long as the group keeps it.
///
/// Why mapping it is sound: a snapshot file is written whole under a temporary name, synced
/// and renamed into place ([`save_snapshot_with`]), and never written or truncated after that,
/// only deleted (which leaves a mapping intact); so the mapped bytes never change under the
/// readers of the returned `Bytes`.
pub fn map_snapshot_file(path: &Path) -> Result<Bytes> {
    let file = fs::File::open(path).map_err(io("opening", path))?;
    let len = file
        .metadata()
        .map_err(io("reading the size of", path))?
        .len();
    if len == 0 {
        return Ok(Bytes::new()); // (an empty file cannot be mapped; decoding refuses it)
    }
    // SAFETY: the file is never modified once in place; see above.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io("mapping", path))?;
    Ok(Bytes::from_owner(map))
}

/// Where a snapshot from the leader is gathered, piece by piece, before it is in place.
pub fn incoming_snapshot_path(dir: &Path) -> PathBuf {
    dir.join("snapshot-incoming")
}

/// Where the snapshot at `index` of the group in `dir` is kept: `snapshot-<index>`. Files are
/// named by index so that the one the WAL's snapshot mark names survives until a newer mark is
/// durable.
pub fn snapshot_path(dir: &Path, index: Index) -> PathBuf {
    dir.join(format!("snapshot-{index:020}"))
}

/// Removes the snapshot files of `dir` older than `index` (once a mark at `index` is durable).
pub fn remove_snapshots_before(dir: &Path, index: Index) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        let name = entry.file_name();
        let older = name
            .to_str()
            .and_then(|n| n.strip_prefix("snapshot-"))
            .and_then(|n| n.parse::<Index>().ok())
            .is_some_and(|i| i < index);
        if older {
            fs::remove_file(entry.path()).map_err(io("removing", &entry.path()))?;
        }
    }
    Ok(())
}

/// Reads a snapshot file written by [`save_snapshot_file`], checking it whole.
pub fn load_snapshot_file(path: &Path) -> Result<(Index, Bytes)> {
    let data = map_snapshot_file(path)?;
    let index = decode_snapshot(&data)?.index;
    Ok((index, data))
}

fn engine_dir(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("engine-{generation}"))
}

fn write_current(dir: &Path, generation: u64) -> Result<()> {
    let path = dir.join(CURRENT_FILE);
    let tmp = dir.join("CURRENT.tmp");
    let mut file = fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    writeln!(file, "engine-{generation}").map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
    sync_dir(dir)
}

/// Removes engine directories left by an install that crashed before switching `CURRENT`.
fn remove_other_engines(dir: &Path, keep: u64) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("engine-") && *name != *format!("engine-{keep}") {
            tracing::info!(dir = %entry.path().display(), "removing an abandoned engine");
            fs::remove_dir_all(entry.path()).map_err(io("removing", &entry.path()))?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StateError {
    let path = path.to_path_buf();
    move |source| StateError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resp::codec::Reply as RespReply;
    use crate::storage::Clock;
    use crate::wire::Condition;

    fn dir() -> crate::test_dir::TestDir {
        crate::test_dir::TestDir::new("state")
    }

    fn config() -> storage::Config {
        storage::Config {
            fsync: storage::FsyncPolicy::Never,
            maintenance: storage::Maintenance::Manual,
            ..storage::Config::default()
        }
    }

    fn entry(index: Index, data: Bytes) -> Entry {
        Entry {
            index,
            term: 1,
            payload: Payload::Command(data),
        }
    }

    fn put(key: &str, value: &str, ttl_ms: Option<u64>) -> Request {
        Request::Put {
            keyspace: "default".into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ttl_ms,
            condition: Condition::None,
        }
    }

    fn incr(key: &str) -> Request {
        Request::Incr {
            keyspace: "default".into(),
            key: Bytes::copy_from_slice(key.as_bytes()),
            delta: 1,
        }
    }

    fn wire(session: Option<(u64, u64)>, now_ms: u64, request: &Request) -> Bytes {
        Command::wire(session, now_ms, request, session.map_or(0, |s| s.1)).unwrap()
    }

    fn get(sm: &StateMachine, key: &str) -> Option<crate::db::Item> {
        let ks = crate::db::Keyspace::new("default").unwrap();
        sm.db().get(&ks, key.as_bytes()).unwrap()
    }

    const NOW: u64 = 1_900_000_000_000;

    #[test]
    fn entries_apply_at_their_index_and_survive_a_reopen_without_applying_twice() {
        let d = dir();
        let entries = vec![
            Entry {
                index: 1,
                term: 1,
                payload: Payload::Noop,
            },
            entry(2, wire(None, NOW, &put("a", "1", None))),
            entry(3, wire(None, NOW, &incr("n"))),
        ];
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let replies = sm.apply(&entries).unwrap();
        assert_eq!(sm.applied(), 3);
        assert_eq!(replies.len(), 2);
        assert!(matches!(
            &replies[1],
            (
                3,
                Reply::Wire(Response::IncrOk {
                    value: 1,
                    version: 3
                })
            )
        ));
        assert_eq!(get(&sm, "a").unwrap().version, 2);
        sm.sync().unwrap();
        drop(sm);
        let mut sm = StateMachine::open(&d, config()).unwrap();
        assert_eq!(sm.applied(), 3);
        // The log is replayed from before the applied index: those entries change nothing.
        let replies = sm
            .apply(&[entries[2].clone(), entry(4, wire(None, NOW, &incr("n")))])
            .unwrap();
        assert_eq!(replies.len(), 1, "entry 3 was skipped");
        assert_eq!(&get(&sm, "n").unwrap().value[..], b"2");
        assert_eq!(sm.applied(), 4);
    }

    #[test]
    fn a_retried_request_applies_once_and_gets_the_first_reply() {
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let first = entry(1, wire(Some((77, 100)), NOW, &incr("n")));
        let retry = entry(2, wire(Some((77, 100)), NOW, &incr("n")));
        let other_client = entry(3, wire(Some((78, 100)), NOW, &incr("n")));
        let replies = sm.apply(&[first, retry, other_client]).unwrap();
        let values: Vec<_> = replies
            .iter()
            .map(|(_, r)| match r {
                Reply::Wire(Response::IncrOk { value, version }) => (*value, *version),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(values, vec![(1, 1), (1, 1), (2, 3)]);
        assert_eq!(&get(&sm, "n").unwrap().value[..], b"2");
        // A request older than the client's window is refused, not applied.
        let seq = 100 - crate::wire::SESSION_WINDOW;
        let old = entry(4, wire(Some((77, seq)), NOW, &incr("n")));
        let replies = sm.apply(&[old]).unwrap();
        assert!(matches!(
            &replies[0].1,
            Reply::Wire(Response::Error { code: ErrorCode::Timeout, message })
                if message.contains("older")
        ));
        assert_eq!(&get(&sm, "n").unwrap().value[..], b"2");
    }

    #[test]
    fn a_session_remembers_a_window_of_replies_so_a_client_can_have_many_writes_in_flight() {
        use crate::wire::SESSION_WINDOW;
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let mut index = 0;
        let mut apply = |sm: &mut StateMachine, seq: u64| {
            index += 1;
            let replies = sm
                .apply(&[entry(index, wire(Some((7, seq)), NOW, &incr("n")))])
                .unwrap();
            match &replies[0].1 {
                Reply::Wire(r) => r.clone(),
                other => panic!("{other:?}"),
            }
        };
        // Writes 1..=4 in flight at once, arriving out of order.
        for seq in [2, 1, 4, 3] {
            assert!(matches!(apply(&mut sm, seq), Response::IncrOk { .. }));
        }
        assert_eq!(&get(&sm, "n").unwrap().value[..], b"4");
        // Retries of any of them get their own first reply and change nothing.
        for (seq, value) in [(1, 2), (2, 1), (3, 4), (4, 3)] {
            let reply = apply(&mut sm, seq);
            assert!(
                matches!(reply, Response::IncrOk { value: v, .. } if v == value),
                "retry of {seq}: {reply:?}"
            );
        }
        assert_eq!(&get(&sm, "n").unwrap().value[..], b"4");
        // Far ahead: the window moves on; a write older than it is refused as unknown.
        let far = 4 + SESSION_WINDOW;
        assert!(matches!(
            apply(&mut sm, far),
            Response::IncrOk { value: 5, .. }
        ));
        let old = apply(&mut sm, 4);
        assert!(
            matches!(
                &old,
                Response::Error {
                    code: ErrorCode::Timeout,
                    ..
                }
            ),
            "{old:?}"
        );
        // Inside the window, a seq never seen before still applies (it was in flight).
        assert!(matches!(
            apply(&mut sm, far - 1),
            Response::IncrOk { value: 6, .. }
        ));
        assert_eq!(&get(&sm, "n").unwrap().value[..], b"6");
        // The replies that fell out of the window are gone from the engine.
        let all = sm.db().engine().scan_all(b"", b"", usize::MAX).unwrap();
        let replies = all.iter().filter(|e| e.key.starts_with(b"\0r")).count();
        assert!(replies <= SESSION_WINDOW as usize, "{replies} replies kept");
    }

    /// A client spreads its requests over many partitions, so one partition sees its ids far
    /// apart (64 partitions: about 64 apart). Moving the window then must not cost a point
    /// delete per id skipped: only replies actually kept are deleted.
    #[test]
    fn a_session_whose_ids_arrive_far_apart_writes_no_more_than_one_whose_ids_are_dense() {
        use crate::wire::SESSION_WINDOW;
        let bytes_per_request = |step: u64| {
            let d = dir();
            let mut sm = StateMachine::open(&d, config()).unwrap();
            let requests = 3 * SESSION_WINDOW;
            let mut before = 0;
            for i in 1..=requests {
                if i == SESSION_WINDOW + 1 {
                    // Measured once the window is full and moving.
                    before = sm.db().engine().stats().disk_bytes;
                }
                let e = entry(i, wire(Some((7, i * step)), NOW, &incr("n")));
                sm.apply(&[e]).unwrap();
            }
            let after = sm.db().engine().stats().disk_bytes;
            // Every reply still in the window is there; none behind it is.
            let all = sm.db().engine().scan_all(b"", b"", usize::MAX).unwrap();
            let replies = all.iter().filter(|e| e.key.starts_with(b"\0r")).count() as u64;
            assert_eq!(replies, SESSION_WINDOW.div_ceil(step), "step {step}");
            (after - before) / (requests - SESSION_WINDOW)
        };
        let dense = bytes_per_request(1);
        let sparse = bytes_per_request(SESSION_WINDOW);
        assert!(
            sparse * 2 <= dense * 3,
            "{sparse} bytes per request far apart against {dense} dense"
        );
    }

    #[test]
    fn an_entry_this_build_cannot_decode_stops_the_apply_rather_than_being_skipped() {
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let mut unknown_kind = wire(None, NOW, &incr("n")).to_vec();
        unknown_kind[1] = 99; // a kind from a newer build
        let error = sm
            .apply(&[
                entry(1, wire(None, NOW, &incr("n"))),
                entry(2, Bytes::from(unknown_kind)),
            ])
            .unwrap_err();
        assert!(
            matches!(error, StateError::Apply { index: 2, .. }),
            "{error}"
        );
        assert_eq!(sm.applied(), 1, "the entry before it applied; it did not");
    }

    #[test]
    fn a_session_record_of_the_older_layout_still_answers_its_last_request() {
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        sm.apply(&[entry(1, wire(None, NOW, &put("n", "41", None)))])
            .unwrap();
        // What an earlier build wrote: the last request id, then its reply.
        let mut record = BytesMut::new();
        record.put_u64_le(9);
        let reply = Response::IncrOk {
            value: 41,
            version: 1,
        };
        reply.encode(9, &mut record).unwrap();
        let key = Session::key(5);
        sm.db()
            .engine()
            .write(Some(2), |txn| txn.put(&key, &record, 0))
            .unwrap();
        let mut apply = |index, seq| {
            let replies = sm
                .apply(&[entry(index, wire(Some((5, seq)), NOW, &incr("n")))])
                .unwrap();
            format!("{:?}", replies[0].1)
        };
        assert!(apply(3, 9).contains("value: 41"), "the remembered reply");
        assert!(
            apply(4, 8).contains("Timeout"),
            "older than the last: unknown"
        );
        assert!(apply(5, 10).contains("value: 42"), "a new request applies");
        assert!(
            apply(6, 10).contains("value: 42"),
            "and is remembered the new way"
        );
        assert_eq!(&get(&sm, "n").unwrap().value[..], b"42");
    }

    #[test]
    fn a_failed_batch_leaves_no_trace_but_still_advances_the_applied_index() {
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let batch = Request::Batch {
            keyspace: "default".into(),
            ops: vec![
                crate::wire::BatchOp::Put {
                    key: Bytes::from_static(b"x"),
                    value: Bytes::from_static(b"1"),
                    ttl_ms: None,
                    condition: Condition::None,
                },
                crate::wire::BatchOp::Put {
                    key: Bytes::from_static(b"y"),
                    value: Bytes::from_static(b"1"),
                    ttl_ms: None,
                    condition: Condition::IfPresent,
                },
            ],
        };
        let replies = sm.apply(&[entry(1, wire(None, NOW, &batch))]).unwrap();
        assert!(matches!(
            replies[0].1,
            Reply::Wire(Response::BatchOk {
                applied: false,
                failed_op: Some(1),
                ..
            })
        ));
        assert!(
            get(&sm, "x").is_none(),
            "the staged first op was rolled back"
        );
        assert_eq!(sm.applied(), 1);
    }

    #[test]
    fn a_storage_fault_while_applying_stops_the_apply_and_a_restart_applies_the_entry() {
        use crate::storage::fault::{FailNth, IoOp};
        let d = dir();
        // Values past the inline limit are read from the segment file, where reads fail.
        let big = "x".repeat(config().inline_value_bytes_max as usize + 10);
        let mut faulty = config();
        faulty.faults = Some(Arc::new(FailNth::from(IoOp::Read, 1)));
        let mut sm = StateMachine::open(&d, faulty).unwrap();
        sm.apply(&[
            entry(1, wire(None, NOW, &put("r", &big, None))),
            entry(2, wire(None, NOW, &put("w", &big, None))),
        ])
        .unwrap();
        // The first entry of the batch applies; each of the others reads a value and fails.
        let batch = [
            entry(3, wire(None, NOW, &put("ok", "1", None))),
            entry(4, Command::resp(NOW, &[b"INCR", b"r"])),
            entry(5, wire(None, NOW, &incr("w"))),
        ];
        let error = sm.apply(&batch).unwrap_err();
        assert!(
            matches!(&error, StateError::Apply { index: 4, reason } if reason.contains("injected")),
            "{error}"
        );
        assert_eq!(sm.applied(), 3, "entry 3 applied, entry 4 not");
        let error = sm.apply(&batch[2..]).unwrap_err();
        assert!(
            matches!(error, StateError::Apply { index: 5, .. }),
            "{error}"
        );
        drop(sm);
        // A restart (the disk is fine again) applies them.
        let mut sm = StateMachine::open(&d, config()).unwrap();
        assert_eq!(sm.applied(), 3);
        let replies = sm.apply(&batch).unwrap();
        assert_eq!(replies.len(), 2, "entry 3 is not applied twice");
        assert!(
            matches!(
                &replies[0],
                (
                    4,
                    Reply::Wire(Response::Error {
                        code: ErrorCode::NotAnInteger,
                        ..
                    })
                )
            ),
            "{replies:?}"
        );
        assert!(matches!(
            &replies[1],
            (
                5,
                Reply::Wire(Response::Error {
                    code: ErrorCode::NotAnInteger,
                    ..
                })
            )
        ));
    }

    #[test]
    fn reads_judge_expiry_by_the_same_clock_as_the_writes_that_follow() {
        // The log's clock runs ahead of this machine's (a leader with a fast clock): a key
        // the log already treats as expired must read as expired here too, or a read could
        // see a key that the next SET NX, applied at the log's time, finds gone.
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let ahead = SystemClock.now_ms() + 3_600_000;
        sm.apply(&[
            entry(1, wire(None, ahead, &put("k", "1", Some(1_000)))),
            entry(2, wire(None, ahead + 2_000, &put("other", "x", None))),
        ])
        .unwrap();
        assert!(get(&sm, "k").is_none(), "expired at the log's time");
        // And the clock that stamps this node's next proposals is not behind the log either.
        assert!(sm.clock().now_ms() >= ahead + 2_000);
        let replies = sm
            .apply(&[entry(3, wire(None, SystemClock.now_ms(), &incr("k")))])
            .unwrap();
        assert!(matches!(
            &replies[0],
            (3, Reply::Wire(Response::IncrOk { value: 1, .. }))
        ));
    }

    #[test]
    fn expiry_is_judged_at_the_entrys_time_not_the_replicas_clock() {
        // Entries from long ago: on this machine's clock the key expired long since, but at
        // the entries' time it was alive, so the increment must see it.
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let then = 1_000_000;
        sm.apply(&[
            entry(1, wire(None, then, &put("k", "41", Some(10_000)))),
            entry(2, wire(None, then + 5_000, &incr("k"))),
        ])
        .unwrap();
        let all = sm.db().engine().scan_all(b"", b"", 100).unwrap();
        let k = all.iter().find(|e| e.key.ends_with(b"k")).unwrap();
        assert_eq!(k.value.as_deref(), Some(&b"42"[..]));
        assert_eq!(k.expires_at_ms, Some(then + 10_000));
        assert!(get(&sm, "k").is_none(), "reads still hide it by the clock");
        // And after its deadline in log time, it is gone for writes too.
        sm.apply(&[entry(3, wire(None, then + 10_000, &incr("k")))])
            .unwrap();
        let all = sm.db().engine().scan_all(b"", b"", 100).unwrap();
        let k = all.iter().find(|e| e.key.ends_with(b"k")).unwrap();
        assert_eq!(k.value.as_deref(), Some(&b"1"[..]));
    }

    /// One command of the batching property test: a request on one of three keys, some with
    /// a TTL of a few milliseconds so that keys expire between the entries.
    #[derive(Debug, Clone)]
    enum Op {
        Put(u8, Option<u64>, Condition),
        Incr(u8),
        Delete(u8),
        Resp(Vec<String>),
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let key = 0u8..3;
        let ttl = proptest::option::of(1u64..6);
        let condition = prop_oneof![
            Just(Condition::None),
            Just(Condition::IfAbsent),
            Just(Condition::IfPresent),
            (0u64..12).prop_map(Condition::IfVersion),
        ];
        let resp = (0u8..3, 1u64..6, 0..6).prop_map(|(k, t, kind)| {
            let k = format!("k{k}");
            let words: &[&str] = match kind {
                0 => &["SET", &k, "r", "NX"],
                1 => &["SET", &k, "r", "PX", &t.to_string()],
                2 => &["INCR", &k],
                3 => &["PSETEX", &k, &t.to_string(), "p"],
                4 => &["PEXPIRE", &k, &t.to_string()],
                _ => &["SET", &k, "s", "XX"],
            };
            Op::Resp(words.iter().map(|w| w.to_string()).collect())
        });
        prop_oneof![
            (key.clone(), ttl, condition).prop_map(|(k, t, c)| Op::Put(k, t, c)),
            key.clone().prop_map(Op::Incr),
            key.prop_map(Op::Delete),
            resp,
        ]
    }

    fn op_entry(index: Index, now_ms: u64, op: &Op) -> Entry {
        let key = |k: &u8| format!("k{k}");
        let data = match op {
            Op::Put(k, ttl, condition) => {
                let mut request = put(&key(k), &format!("v{index}"), *ttl);
                if let Request::Put { condition: c, .. } = &mut request {
                    *c = *condition;
                }
                wire(None, now_ms, &request)
            }
            Op::Incr(k) => wire(None, now_ms, &incr(&key(k))),
            Op::Delete(k) => wire(
                None,
                now_ms,
                &Request::Delete {
                    keyspace: "default".into(),
                    key: Bytes::from(key(k)),
                    condition: Condition::IfPresent,
                },
            ),
            Op::Resp(words) => {
                // Planned as the RESP edge plans it, then logged as an operation.
                let args: Vec<&[u8]> = words.iter().map(|w| w.as_bytes()).collect();
                let name = words[0].to_ascii_lowercase();
                let (op, _) = crate::resp::commands::plan_write(&name, &args[1..], now_ms)
                    .expect("the generated commands are well formed");
                Command::op(None, now_ms, &op)
            }
        };
        entry(index, data)
    }

    /// Applies `entries` in batches of the given sizes (the rest in one) and returns every
    /// reply and the engine's whole contents, expired records included.
    fn apply_in_batches(entries: &[Entry], sizes: &[usize]) -> (Vec<String>, Vec<String>) {
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let mut replies = Vec::new();
        let mut rest = entries;
        for &size in sizes.iter().chain(std::iter::once(&usize::MAX)) {
            let (batch, after) = rest.split_at(size.min(rest.len()));
            replies.extend(
                sm.apply(batch)
                    .unwrap()
                    .into_iter()
                    .map(|r| format!("{r:?}")),
            );
            rest = after;
        }
        let state = sm.db().engine().scan_all(b"", b"", usize::MAX).unwrap();
        let state = state.iter().map(|e| format!("{e:?}")).collect();
        (replies, state)
    }

    proptest::proptest! {
        /// Replicas apply the same log in different batches (a leader entry by entry as rounds
        /// commit, a follower catching up many at once): every batching must give the same
        /// replies and the same engine, however the keys' TTLs fall between the entries.
        #[test]
        fn every_batching_of_the_log_gives_the_same_state(
            ops in proptest::collection::vec((op(), 0u64..4), 1..40),
            sizes in proptest::collection::vec(1usize..8, 0..10),
        ) {
            let mut now = NOW;
            let entries: Vec<Entry> = ops
                .iter()
                .enumerate()
                .map(|(i, (op, step))| {
                    now += step;
                    op_entry(i as Index + 1, now, op)
                })
                .collect();
            let one_by_one = apply_in_batches(&entries, &vec![1; entries.len()]);
            proptest::prop_assert_eq!(&apply_in_batches(&entries, &sizes), &one_by_one);
            proptest::prop_assert_eq!(&apply_in_batches(&entries, &[]), &one_by_one);
        }
    }

    #[test]
    fn a_snapshot_installs_elsewhere_exactly_and_survives_a_reopen() {
        let (a, b) = (dir(), dir());
        let mut sm = StateMachine::open(&a, config()).unwrap();
        let mut entries = Vec::new();
        for i in 1..=50u64 {
            let request = match i % 3 {
                0 => incr("n"),
                1 => put(&format!("k{i}"), &format!("v{i}"), Some(1_000_000)),
                _ => Request::Delete {
                    keyspace: "default".into(),
                    key: Bytes::from(format!("k{}", i - 1)),
                    condition: Condition::None,
                },
            };
            entries.push(entry(i, wire(Some((9, i)), NOW, &request)));
        }
        sm.apply(&entries).unwrap();
        let data = sm.snapshot().unwrap();

        // The receiver had a divergent, older state of its own: it must all go.
        let mut other = StateMachine::open(&b, config()).unwrap();
        other
            .apply(&[entry(1, wire(None, NOW, &put("stale", "x", None)))])
            .unwrap();
        other.install(&data).unwrap();
        assert_eq!(other.applied(), 50);
        assert!(get(&other, "stale").is_none());
        assert_eq!(other.snapshot().unwrap(), data, "identical contents");
        // The session table came along: a retry of the last request is not applied again.
        let retry = entry(51, wire(Some((9, 48)), NOW, &incr("n")));
        other.apply(&[retry]).unwrap();
        assert_eq!(&get(&other, "n").unwrap().value[..], b"16");
        drop(other);
        let reopened = StateMachine::open(&b, config()).unwrap();
        assert_eq!(reopened.applied(), 51);
        let engines: Vec<_> = fs::read_dir(&b)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with("engine-"))
            .collect();
        assert_eq!(engines, vec!["engine-2".to_string()]);
    }

    #[test]
    fn a_damaged_snapshot_is_refused_and_the_old_state_kept() {
        let (a, b) = (dir(), dir());
        let mut sm = StateMachine::open(&a, config()).unwrap();
        sm.apply(&[entry(1, wire(None, NOW, &put("a", "1", None)))])
            .unwrap();
        let data = sm.snapshot().unwrap();
        let mut other = StateMachine::open(&b, config()).unwrap();
        other
            .apply(&[entry(1, wire(None, NOW, &put("mine", "1", None)))])
            .unwrap();
        for at in [0, 9, data.len() / 2, data.len() - 1] {
            let mut bad = data.to_vec();
            bad[at] ^= 0x40;
            let error = other.install(&Bytes::from(bad)).unwrap_err();
            assert!(matches!(error, StateError::CorruptSnapshot(_)), "{error}");
        }
        assert!(other.install(&data.slice(..data.len() - 3)).is_err());
        assert!(get(&other, "mine").is_some());
    }

    /// The worker's snapshot goes to its file a buffer at a time and comes back mapped from
    /// it: the same bytes as one encoded in memory.
    #[test]
    fn a_snapshot_job_streams_to_its_file_and_maps_the_same_bytes() {
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let big = "x".repeat(40 * 1024);
        let entries: Vec<Entry> = (1..=60u64)
            .map(|i| entry(i, wire(None, NOW, &put(&format!("k{i}"), &big, None))))
            .collect();
        sm.apply(&entries).unwrap();
        let (index, mapped) = sm.snapshot_job().run().unwrap();
        let mapped = mapped.expect("a snapshot was asked for");
        assert_eq!(index, 60);
        assert!(mapped.len() > 2 * SNAPSHOT_WRITE_BUFFER_BYTES);
        assert_eq!(mapped, sm.snapshot().unwrap());
        assert_eq!(fs::read(snapshot_path(&d, index)).unwrap(), mapped[..]);
        assert_eq!(load_snapshot_file(&snapshot_path(&d, index)).unwrap().0, 60);
    }

    /// A compaction that builds no snapshot syncs the engine and says which index it holds;
    /// it writes no file.
    #[test]
    fn a_sync_job_says_what_the_engine_holds_and_writes_no_snapshot() {
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        let entries: Vec<Entry> = (1..=7u64)
            .map(|i| entry(i, wire(None, NOW, &put(&format!("k{i}"), "v", None))))
            .collect();
        sm.apply(&entries).unwrap();
        assert_eq!(sm.sync_job().run().unwrap(), (7, None));
        let files: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.starts_with("snapshot"))
            .collect();
        assert!(files.is_empty(), "{files:?}");
        drop(sm);
        let sm = StateMachine::open(&d, config()).unwrap();
        assert_eq!(sm.applied(), 7);
        assert!(get(&sm, "k7").is_some());
    }

    #[test]
    fn snapshot_files_round_trip_and_are_checked() {
        let d = dir();
        let mut sm = StateMachine::open(&d, config()).unwrap();
        sm.apply(&[entry(1, wire(None, NOW, &put("a", "1", None)))])
            .unwrap();
        let data = sm.snapshot().unwrap();
        let path = d.join("snapshot");
        save_snapshot_file(&path, &data).unwrap();
        assert_eq!(load_snapshot_file(&path).unwrap(), (1, data.clone()));
        fs::write(&path, &data[..data.len() - 1]).unwrap();
        assert!(load_snapshot_file(&path).is_err());
    }

    #[test]
    fn redis_writes_apply_as_the_operations_planned_at_the_edge_and_older_entries_too() {
        use crate::resp::commands::{plan_write, render};
        let commands: [&[&[u8]]; 3] = [
            &[b"SET", b"k", b"v", b"PX", b"5000"],
            &[b"INCR", b"n"],
            &[b"DEL", b"k", b"n", b"none"],
        ];
        for older_layout in [false, true] {
            let d = dir();
            let mut sm = StateMachine::open(&d, config()).unwrap();
            let mut forms = Vec::new();
            let entries: Vec<Entry> = commands
                .iter()
                .enumerate()
                .map(|(i, args)| {
                    let name = String::from_utf8_lossy(args[0]).to_ascii_lowercase();
                    let (op, form) = plan_write(&name, &args[1..], NOW).unwrap();
                    forms.push(form);
                    let data = match older_layout {
                        false => Command::op(None, NOW, &op),
                        true => Command::resp(NOW, args),
                    };
                    entry(i as Index + 1, data)
                })
                .collect();
            let replies: Vec<RespReply> = sm
                .apply(&entries)
                .unwrap()
                .into_iter()
                .zip(forms)
                .map(|((_, reply), form)| match reply {
                    Reply::Wire(response) => render(form, Outcome::Response(response)),
                    Reply::Outcome(outcome) => render(form, outcome),
                    other => panic!("unexpected {other:?}"),
                })
                .collect();
            assert_eq!(
                replies,
                vec![
                    RespReply::ok(),
                    RespReply::Integer(1),
                    RespReply::Integer(2)
                ],
                "older layout: {older_layout}"
            );
            assert_eq!(sm.applied(), 3);
        }
    }
}
