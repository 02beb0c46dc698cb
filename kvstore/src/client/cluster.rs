//! A client for a cluster: it routes each request to its partition's leader, follows
//! redirects, and retries a write until it gets a definite answer, without ever applying it
//! twice.
//!
//! **Routing.** On its first request the client fetches the cluster map from any node it was
//! given (`ClusterMap`), and from then on computes each request's partition itself
//! ([`crate::partition::route`], the function the nodes use) and sends it to that group's
//! leader as far as it knows: the last redirect for the group, else the map's leader hint,
//! else another replica. A redirect updates the group's leader; an unknown keyspace, or a
//! node it cannot reach, makes it fetch a newer map. A scan with no hash tag on a keyspace of
//! many partitions is run on every partition and merged in key order, paged with a
//! continuation token of its own. A node without partitions (a single node, `SINGLE_NODE=1`)
//! has no map: the client then sends everything to whichever node answers.
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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::sync::Notify;

use super::{ops, Client, ClientConfig, ClientError, Result};
use crate::partition::change::MapChange;
use crate::partition::map::GroupId;
use crate::partition::map::KeyspaceSpec;
use crate::partition::ClusterMap;
use crate::wire::{
    Condition, Consistency, Entry, ErrorCode, Request, Response, Versioned, SESSION_WINDOW,
};

/// The most puts in one batch of [`ClusterClient::put_many`].
pub const PUT_MANY_BATCH_OPS: usize = 1_000;
/// The most key and value bytes in one batch of [`ClusterClient::put_many`] (well under a
/// frame's 4 MiB).
pub const PUT_MANY_BATCH_BYTES: usize = 1 << 20;
/// How long a node the client could not reach is tried last.
const DOWN_FOR: Duration = Duration::from_secs(2);
/// The least time between two fetches of the map made because something looked stale.
const MAP_REFRESH_MIN: Duration = Duration::from_millis(200);
/// The format byte of a merged scan's continuation token.
const MERGED_SCAN_FORMAT: u8 = 0xA1;
/// Entries a merged scan page returns when the caller names no limit (the server's default).
const MERGED_SCAN_LIMIT_DEFAULT: u32 = 100;

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
    /// The node tried next when routing names none (an index into `addresses`).
    next: AtomicUsize,
    /// Turns of the replicas that follower reads are spread over.
    next_replica: AtomicUsize,
    /// One multiplexed connection per node, by address.
    connections: tokio::sync::Mutex<HashMap<String, Client>>,
    /// The map and what redirects taught.
    routing: std::sync::RwLock<Routing>,
    /// One map fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    /// The writes in flight, by request id (see [`Window`]).
    writes: Window,
    /// The next read's request id, below [`READ_ID_BIT`].
    read_seq: AtomicU64,
    client_id: u64,
}

/// What the client knows of where partitions are.
#[derive(Debug, Default)]
struct Routing {
    /// The cluster map, once fetched (`None` before, or from a node without one).
    map: Option<Arc<ClusterMap>>,
    /// When the map was last fetched (`None`: never).
    fetched_at: Option<Instant>,
    /// Each group's leader's address, from redirects.
    leaders: HashMap<GroupId, String>,
    /// Each group's epoch as `StaleEpoch` answers taught it, where it is newer than the map's.
    epochs: HashMap<GroupId, u64>,
    /// Nodes that could not be reached, until when they are tried last.
    down: HashMap<String, Instant>,
}

/// Where a request goes: its group, the address to try, the group's epoch (see
/// [`ClusterClient::target`]).
type Target = (Option<GroupId>, Option<String>, Option<u64>);

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
            next_replica: AtomicUsize::new(0),
            connections: Default::default(),
            routing: Default::default(),
            fetching: Default::default(),
            writes: Window::default(),
            read_seq: AtomicU64::new(1),
            client_id,
        }
    }

    /// This client's session id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// The connection to `addr`, made if there is none.
    async fn connection(&self, addr: &str) -> Result<Client> {
        let mut connections = self.connections.lock().await;
        if let Some(client) = connections.get(addr) {
            return Ok(client.clone());
        }
        let mut config = self.config.connection.clone();
        config.client_id = self.client_id;
        let client = Client::connect(addr, config).await?;
        connections.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    async fn drop_connection(&self, addr: &str) {
        self.connections.lock().await.remove(addr);
        let mut routing = self.routing.write().expect("routing lock");
        routing
            .down
            .insert(addr.to_string(), Instant::now() + DOWN_FOR);
        routing.leaders.retain(|_, a| a != addr);
    }

    /// The next seed address, round-robin, preferring nodes not marked down.
    fn any_address(&self) -> String {
        let addresses = self.addresses.lock().expect("addresses lock").clone();
        let routing = self.routing.read().expect("routing lock");
        let now = Instant::now();
        for _ in 0..addresses.len() {
            let i = self.next.fetch_add(1, Ordering::Relaxed) % addresses.len();
            if routing
                .down
                .get(&addresses[i])
                .is_none_or(|&until| until <= now)
            {
                return addresses[i].clone();
            }
        }
        addresses[self.next.fetch_add(1, Ordering::Relaxed) % addresses.len()].clone()
    }

    /// The cluster map, fetched on first use (`None`: the nodes have none, e.g. a single
    /// node).
    pub async fn map(&self) -> Option<Arc<ClusterMap>> {
        self.fetch_map_once().await;
        self.routing.read().expect("routing lock").map.clone()
    }

    /// Takes `map` if it is newer than the one held, and learns its nodes' addresses.
    fn adopt(&self, routing: &mut Routing, map: ClusterMap) -> Arc<ClusterMap> {
        match &routing.map {
            Some(held) if held.version >= map.version => held.clone(),
            _ => {
                tracing::debug!(version = map.version, "learnt a cluster map");
                let mut addresses = self.addresses.lock().expect("addresses lock");
                for n in map.nodes.values() {
                    if !n.client.is_empty() && !addresses.contains(&n.client) {
                        addresses.push(n.client.clone());
                    }
                }
                let map = Arc::new(map);
                routing.map = Some(map.clone());
                map
            }
        }
    }

    /// Makes a change to the cluster map (create or drop a keyspace, drain a node, …; see
    /// [`MapChange`]) through the meta group's leader, and returns the map after it.
    pub async fn change_map(&self, change: &MapChange) -> Result<Arc<ClusterMap>> {
        let request = Request::MapChange {
            change: change.encode(),
        };
        match self.call(request).await? {
            Response::ClusterMapOk { map: Some(bytes) } => {
                let map = ClusterMap::decode(&bytes).map_err(|e| {
                    ClientError::Protocol(format!("the cluster map in the answer: {e}"))
                })?;
                let mut routing = self.routing.write().expect("routing lock");
                routing.fetched_at = Some(Instant::now());
                Ok(self.adopt(&mut routing, map))
            }
            other => Err(ClientError::Protocol(format!(
                "a map change answered with {other:?}"
            ))),
        }
    }

    /// The newest cluster map, read linearizably from the meta group (so it reflects every
    /// change acknowledged before the call), where [`ClusterClient::map`] may give a cached
    /// one. A cluster that has not stored its founding map yet gives the one a node holds.
    pub async fn current_map(&self) -> Result<Arc<ClusterMap>> {
        use crate::partition::map::{MAP_KEY, META_KEYSPACE};
        match self
            .get(META_KEYSPACE, MAP_KEY, Consistency::Linearizable)
            .await?
        {
            Some(stored) => {
                let map = ClusterMap::decode(&stored.value)
                    .map_err(|e| ClientError::Protocol(format!("the stored cluster map: {e}")))?;
                let mut routing = self.routing.write().expect("routing lock");
                routing.fetched_at = Some(Instant::now());
                Ok(self.adopt(&mut routing, map))
            }
            None => {
                // Not stored yet (a cluster that has not made its first change): a node's.
                self.refresh_map(true).await;
                self.routing
                    .read()
                    .expect("routing lock")
                    .map
                    .clone()
                    .ok_or_else(|| ClientError::Protocol("the cluster has no map".into()))
            }
        }
    }

    /// Creates a keyspace (see [`KeyspaceSpec`]); its partitions are placed on the nodes that
    /// are up, and each node founds its replicas within a moment of learning the map.
    pub async fn create_keyspace(&self, spec: KeyspaceSpec) -> Result<Arc<ClusterMap>> {
        self.change_map(&MapChange::CreateKeyspace(spec)).await
    }

    /// Creates a keyspace unless one of that name exists, which then keeps its spec. Safe to
    /// call from many processes at once (applications do, at start): the meta group orders
    /// their creations, one applies, and the others find the keyspace in the map.
    pub async fn ensure_keyspace(&self, spec: KeyspaceSpec) -> Result<Arc<ClusterMap>> {
        let map = self.current_map().await?;
        if map.keyspace(&spec.name).is_ok() {
            return Ok(map);
        }
        let name = spec.name.clone();
        match self.create_keyspace(spec).await {
            Ok(map) => Ok(map),
            Err(e) => {
                let map = self.current_map().await?;
                if map.keyspace(&name).is_ok() {
                    Ok(map)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Drops a keyspace and every key in it.
    pub async fn drop_keyspace(&self, name: &str) -> Result<Arc<ClusterMap>> {
        self.change_map(&MapChange::DropKeyspace(name.to_string()))
            .await
    }

    /// Fetches the map if it never was.
    async fn fetch_map_once(&self) {
        let fetched = self
            .routing
            .read()
            .expect("routing lock")
            .fetched_at
            .is_some();
        if !fetched {
            self.refresh_map(true).await;
        }
    }

    /// Fetches a newer map from some node (at most once per [`MAP_REFRESH_MIN`] unless
    /// `force`); keeps the one it has when none answers.
    async fn refresh_map(&self, force: bool) {
        let _one = self.fetching.lock().await;
        let (known, recent) = {
            let routing = self.routing.read().expect("routing lock");
            let known = routing.map.as_ref().map_or(0, |m| m.version);
            let recent = routing
                .fetched_at
                .is_some_and(|at| at.elapsed() < MAP_REFRESH_MIN);
            (known, recent)
        };
        if recent && !force {
            return;
        }
        let tries = self.addresses.lock().expect("addresses lock").len().max(1);
        for _ in 0..tries {
            let addr = self.any_address();
            let Ok(client) = self.connection(&addr).await else {
                self.drop_connection(&addr).await;
                continue;
            };
            let answer = client
                .call_as(
                    READ_ID_BIT,
                    Request::ClusterMap {
                        known_version: known,
                    },
                )
                .await;
            let mut routing = self.routing.write().expect("routing lock");
            match answer {
                Ok(Response::ClusterMapOk { map }) => {
                    routing.fetched_at = Some(Instant::now());
                    if let Some(Ok(map)) = map.map(|bytes| ClusterMap::decode(&bytes)) {
                        self.adopt(&mut routing, map);
                    }
                    return;
                }
                // A server that predates maps, or another answer: no map.
                Ok(_) | Err(ClientError::Server { .. }) => {
                    routing.fetched_at = Some(Instant::now());
                    return;
                }
                Err(_) => {
                    drop(routing);
                    self.drop_connection(&addr).await;
                }
            }
        }
        self.routing.write().expect("routing lock").fetched_at = Some(Instant::now());
    }

    /// Where `request` goes: its group (if the map routes it), the address to try, and the
    /// group's epoch as this client knows it (sent with the request, so that a node whose
    /// replica is at a later one tells it so).
    fn target(&self, request: &Request) -> Target {
        let routing = self.routing.read().expect("routing lock");
        let Some(map) = &routing.map else {
            return (None, None, None);
        };
        let Ok(route) = crate::partition::route::route(map, request) else {
            return (None, None, None);
        };
        let group = route.group;
        let Some(g) = map.groups.get(&group) else {
            return (Some(group), None, None);
        };
        let learnt = routing.epochs.get(&group).copied().unwrap_or(0);
        let epoch = Some(g.epoch.max(learnt));
        let now = Instant::now();
        let up = |addr: &String| routing.down.get(addr).is_none_or(|&until| until <= now);
        // A read any replica may answer goes to each replica in turn: read-heavy work uses
        // every copy, not only the leader's. (A replica that no longer hosts the group
        // redirects to the leader, as for any request.)
        let follower_read =
            crate::partition::route::read_consistency(map, request) == Consistency::Follower;
        if follower_read {
            let replicas = || {
                g.replicas
                    .iter()
                    .filter_map(|id| map.nodes.get(id))
                    .map(|n| &n.client)
                    .filter(|a| !a.is_empty() && up(a))
            };
            let n = replicas().count();
            if n > 0 {
                let turn = self.next_replica.fetch_add(1, Ordering::Relaxed);
                let addr = replicas().nth(turn % n).cloned();
                return (Some(group), addr, epoch);
            }
        }
        if let Some(addr) = routing.leaders.get(&group).filter(|a| up(a)) {
            return (Some(group), Some(addr.clone()), epoch);
        }
        // The hint first, then the other replicas: any of them redirects to the leader.
        let candidates = g.leader.into_iter().chain(g.replicas.iter().copied());
        let address = candidates
            .filter_map(|id| map.nodes.get(&id))
            .map(|n| n.client.clone())
            .find(|a| !a.is_empty() && up(a));
        (Some(group), address, epoch)
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
        // Whether the keyspace an `UnknownKeyspace` named exists in the meta group's map.
        let mut keyspace_exists: Option<bool> = None;
        self.fetch_map_once().await;
        loop {
            let (group, routed, epoch) = self.target(&request);
            let addr = match prefer.take().or(routed) {
                Some(addr) => addr,
                None => self.any_address(),
            };
            let attempt = match self.connection(&addr).await {
                Ok(client) => {
                    let answer = client.call_routed(seq, request.clone(), epoch).await;
                    (Some(addr), answer)
                }
                Err(error) => (Some(addr), Err(error)),
            };
            let wait = match attempt {
                (_, Ok(response)) => return Ok(response),
                (_, Err(ClientError::Server { code, message })) if code == ErrorCode::NotLeader => {
                    let redirect = message.rsplit_once(" at ").map(|(_, a)| a.to_string());
                    last_error = ClientError::Server { code, message };
                    match redirect {
                        Some(addr) => {
                            self.learn(&addr);
                            if let Some(group) = group {
                                let mut routing = self.routing.write().expect("routing lock");
                                routing.leaders.insert(group, addr.clone());
                            }
                            prefer = Some(addr);
                            false
                        }
                        None => true,
                    }
                }
                (addr, Err(ClientError::Server { code, message }))
                    if code == ErrorCode::StaleEpoch =>
                {
                    // Routed by a stale map: the answer names the group's epoch. Learn it,
                    // look for a newer map (a membership change also moves leaders), and retry
                    // at once; wait only if it taught nothing new.
                    let current = crate::wire::message::stale_epoch_current(&message);
                    let newer = match (group, current) {
                        (Some(group), Some(current)) => {
                            let mut routing = self.routing.write().expect("routing lock");
                            let known = routing.epochs.entry(group).or_insert(0);
                            let newer = current > *known;
                            *known = (*known).max(current);
                            newer
                        }
                        _ => false,
                    };
                    self.refresh_map(false).await;
                    prefer = addr;
                    last_error = ClientError::Server { code, message };
                    !newer
                }
                (_, Err(ClientError::Server { code, message }))
                    if code == ErrorCode::UnknownKeyspace && keyspace_exists != Some(false) =>
                {
                    // Perhaps created since this client, or that node, last learnt the map:
                    // ask the meta group, which knows every acknowledged creation. If it
                    // exists, the nodes learn of it within moments: retry until they have.
                    if keyspace_exists.is_none() {
                        let name = keyspace_of(&request).unwrap_or_default().to_string();
                        let current = Box::pin(self.current_map()).await;
                        let exists = current.is_ok_and(|m| m.keyspaces.contains_key(&name));
                        keyspace_exists = Some(exists);
                    }
                    last_error = ClientError::Server { code, message };
                    if keyspace_exists == Some(false) {
                        return Err(last_error);
                    }
                    true
                }
                (_, Err(ClientError::Server { code, message }))
                    if matches!(code, ErrorCode::Unavailable | ErrorCode::Busy) =>
                {
                    last_error = ClientError::Server { code, message };
                    if group.is_none() {
                        self.refresh_map(false).await;
                    }
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
                    // The routed node may be gone for good: look for a newer map.
                    if group.is_some() {
                        self.refresh_map(false).await;
                    }
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
        consistency: impl Into<Option<Consistency>>,
    ) -> Result<Option<Versioned>> {
        let request = ops::get(keyspace, key, consistency.into());
        Ok(ops::got(self.call(request).await?)?.0)
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

    /// One page of an ordered scan, at the consistency `options` asks for. A scan that its
    /// hash tag does not settle, on a keyspace of several partitions, runs on every partition
    /// and merges them in key order; pass the page's continuation back for the next.
    pub async fn scan(
        &self,
        keyspace: &str,
        options: super::ScanOptions,
    ) -> Result<super::ScanPage> {
        let request = ops::scan(keyspace, options.clone());
        let partitions = match self.map().await {
            Some(map) => match map.keyspace(keyspace) {
                Ok(ks) if crate::partition::route::route(&map, &request).is_err() => ks.partitions,
                _ => 1,
            },
            None => 1,
        };
        if partitions <= 1 {
            return ops::scanned(self.call(request).await?);
        }
        self.merged_scan(keyspace, options, partitions).await
    }

    /// One page of a scan of partition `partition` of `keyspace` alone (0-based, below the
    /// keyspace's partition count), in key order, with its own continuation. A reader of a
    /// whole keyspace (an application building an index from it) scans each partition this
    /// way, several at once, rather than through the merged scan, which must fetch a page
    /// from every partition to return one.
    pub async fn scan_partition(
        &self,
        keyspace: &str,
        partition: u32,
        options: super::ScanOptions,
    ) -> Result<super::ScanPage> {
        let partitions = self.partitions(keyspace).await?;
        if partition >= partitions {
            return Err(ClientError::Protocol(format!(
                "keyspace {keyspace:?} has {partitions} partitions: there is no partition \
                 {partition}"
            )));
        }
        let mut request = ops::scan(keyspace, options);
        if let Request::Scan { partition: p, .. } = &mut request {
            *p = Some(partition);
        }
        ops::scanned(self.call(request).await?)
    }

    /// How many partitions `keyspace` has (1 on a node without a map: `SINGLE_NODE=1`).
    pub async fn partitions(&self, keyspace: &str) -> Result<u32> {
        match self.map().await {
            Some(map) => match map.keyspace(keyspace) {
                Ok(ks) => Ok(ks.partitions),
                Err(_) => Ok(self.current_map().await?.keyspace(keyspace).map_or_else(
                    |e| Err(ClientError::Protocol(e.to_string())),
                    |ks| Ok(ks.partitions),
                )?),
            },
            None => Ok(1),
        }
    }

    /// A scan of every partition, merged (see [`ClusterClient::scan`]). Its continuation
    /// token holds, per partition, whether it is finished and the last key returned from it.
    async fn merged_scan(
        &self,
        keyspace: &str,
        options: super::ScanOptions,
        partitions: u32,
    ) -> Result<super::ScanPage> {
        let mut states = match &options.continuation {
            Some(token) => decode_merged_token(token, partitions)?,
            None => vec![PartitionScan::Fresh; partitions as usize],
        };
        let limit = match options.limit {
            0 => MERGED_SCAN_LIMIT_DEFAULT,
            n => n,
        };
        let calls = states.iter().enumerate().filter_map(|(p, state)| {
            let start = match state {
                PartitionScan::Done => return None,
                PartitionScan::Fresh => options.range.start.clone(),
                PartitionScan::After(last) => {
                    let mut next = BytesMut::with_capacity(last.len() + 1);
                    next.put_slice(last);
                    next.put_u8(0); // the least key after `last`
                    Some(next.freeze())
                }
            };
            let mut request = ops::scan(
                keyspace,
                super::ScanOptions {
                    range: crate::wire::ScanRange {
                        start,
                        ..options.range.clone()
                    },
                    limit,
                    continuation: None,
                    ..options.clone()
                },
            );
            if let Request::Scan { partition, .. } = &mut request {
                *partition = Some(p as u32);
            }
            Some(async move { (p, self.call(request).await) })
        });
        let pages = join_all(calls.collect()).await;
        let mut merged: Vec<(usize, Entry)> = Vec::new();
        let mut finished = vec![false; partitions as usize];
        let mut lag: Option<crate::wire::ReadLag> = None;
        for (p, response) in pages {
            let page = ops::scanned(response?)?;
            finished[p] = page.continuation.is_none();
            if let Some(l) = page.lag {
                let worst = lag.get_or_insert(l);
                worst.entries = worst.entries.max(l.entries);
                worst.ms = match (worst.ms, l.ms) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
            merged.extend(page.entries.into_iter().map(|e| (p, e)));
        }
        merged.sort_by(|a, b| a.1.key.cmp(&b.1.key));
        let cut = merged.len().min(limit as usize);
        let rest = merged.split_off(cut);
        for (p, e) in &merged {
            states[*p] = PartitionScan::After(e.key.clone());
        }
        for (p, done) in finished.iter().enumerate() {
            // Finished only if every entry it returned made it into this page.
            if *done && !rest.iter().any(|(q, _)| *q == p) && states[p] != PartitionScan::Done {
                states[p] = PartitionScan::Done;
            }
        }
        let continuation = states
            .iter()
            .any(|s| *s != PartitionScan::Done)
            .then(|| encode_merged_token(&states));
        Ok(super::ScanPage {
            entries: merged.into_iter().map(|(_, e)| e).collect(),
            continuation,
            lag,
        })
    }

    /// Applies `ops` atomically (all or none), once however often it is retried.
    pub async fn batch(&self, keyspace: &str, ops: Vec<crate::wire::BatchOp>) -> Result<Response> {
        ops::batched(self.call(ops::batch(keyspace, ops)).await?)
    }

    /// Writes many keys: grouped by partition into batches of at most [`PUT_MANY_BATCH_OPS`]
    /// puts and [`PUT_MANY_BATCH_BYTES`] bytes, `in_flight` batches at once (one Raft entry
    /// per batch, not per key). Each batch is atomic; the call as a whole is not: after an
    /// error some batches may have applied, and since every put is unconditional the caller
    /// may simply call again. Returns the number of keys written.
    pub async fn put_many(
        self: &Arc<Self>,
        keyspace: &str,
        entries: Vec<(Bytes, Bytes)>,
        in_flight: usize,
    ) -> Result<u64> {
        let partitions = self.partitions(keyspace).await?;
        let mut by_partition: HashMap<u32, Vec<(Bytes, Bytes)>> = HashMap::new();
        for (key, value) in entries {
            let p = crate::partition::partition_of_slot(crate::partition::slot(&key), partitions);
            by_partition.entry(p).or_default().push((key, value));
        }
        let mut batches: Vec<Vec<crate::wire::BatchOp>> = Vec::new();
        for (_, group) in by_partition {
            let mut batch = Vec::new();
            let mut bytes = 0;
            for (key, value) in group {
                let size = key.len() + value.len();
                if !batch.is_empty()
                    && (batch.len() >= PUT_MANY_BATCH_OPS || bytes + size > PUT_MANY_BATCH_BYTES)
                {
                    batches.push(std::mem::take(&mut batch));
                    bytes = 0;
                }
                bytes += size;
                batch.push(crate::wire::BatchOp::Put {
                    key,
                    value,
                    ttl_ms: None,
                    condition: crate::wire::Condition::None,
                });
            }
            if !batch.is_empty() {
                batches.push(batch);
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        let mut written = 0u64;
        let mut first_error = None;
        let mut collect =
            |done: std::result::Result<Result<u64>, tokio::task::JoinError>| match done {
                Ok(Ok(n)) => written += n,
                Ok(Err(e)) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => {
                    first_error.get_or_insert(ClientError::Protocol(format!("a batch task: {e}")));
                }
            };
        for ops in batches {
            while tasks.len() >= in_flight.max(1) {
                collect(tasks.join_next().await.expect("a batch in flight"));
            }
            let client = self.clone();
            let keyspace = keyspace.to_string();
            tasks.spawn(async move {
                let n = ops.len() as u64;
                match client.batch(&keyspace, ops).await? {
                    Response::BatchOk { applied: true, .. } => Ok(n),
                    other => Err(ClientError::Protocol(format!(
                        "an unconditional batch was not applied: {other:?}"
                    ))),
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            collect(done);
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(written),
        }
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

/// Where a merged scan stands in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
enum PartitionScan {
    Fresh,
    After(Bytes),
    Done,
}

/// The token: the format byte, then one field per partition in the wire protocol's field
/// encoding: 1 (not started), 2 (finished) or 3 with the last key returned from it.
fn encode_merged_token(states: &[PartitionScan]) -> Bytes {
    let mut out = BytesMut::new();
    out.put_u8(MERGED_SCAN_FORMAT);
    let mut w = crate::wire::field::FieldWriter::new(&mut out);
    for state in states {
        match state {
            PartitionScan::Fresh => w.varint(1, 0),
            PartitionScan::Done => w.varint(2, 0),
            PartitionScan::After(key) => w.bytes(3, key),
        }
    }
    out.freeze()
}

fn decode_merged_token(token: &[u8], partitions: u32) -> Result<Vec<PartitionScan>> {
    use crate::wire::field::{FieldReader, Value};
    let bad = || ClientError::Server {
        code: ErrorCode::InvalidArgument,
        message: "not a continuation token of a merged scan of this keyspace".into(),
    };
    let (&format, body) = token.split_first().ok_or_else(bad)?;
    if format != MERGED_SCAN_FORMAT {
        return Err(bad());
    }
    let states = FieldReader::new(Bytes::copy_from_slice(body))
        .map(|field| match field.map_err(|_| bad())? {
            (1, Value::Varint(_)) => Ok(PartitionScan::Fresh),
            (2, Value::Varint(_)) => Ok(PartitionScan::Done),
            (3, Value::Bytes(key)) => Ok(PartitionScan::After(key)),
            _ => Err(bad()),
        })
        .collect::<Result<Vec<_>>>()?;
    if states.len() != partitions as usize {
        return Err(bad());
    }
    Ok(states)
}

/// The keyspace a request names, if it names one.
fn keyspace_of(request: &Request) -> Option<&str> {
    match request {
        Request::Get { keyspace, .. }
        | Request::Put { keyspace, .. }
        | Request::Delete { keyspace, .. }
        | Request::Incr { keyspace, .. }
        | Request::Scan { keyspace, .. }
        | Request::Batch { keyspace, .. } => Some(keyspace),
        Request::Hello { .. }
        | Request::Ping { .. }
        | Request::ClusterMap { .. }
        | Request::MapChange { .. } => None,
    }
}

/// Runs `futures` concurrently and returns their outputs (in the order they finish).
pub(crate) async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Option<std::pin::Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let mut outputs = Vec::with_capacity(futures.len());
    std::future::poll_fn(|cx| {
        for slot in futures.iter_mut() {
            if let Some(f) = slot {
                if let std::task::Poll::Ready(out) = f.as_mut().poll(cx) {
                    outputs.push(out);
                    *slot = None;
                }
            }
        }
        if futures.iter().all(Option::is_none) {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs
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
                            // A node without partitions: no map.
                            Ok(Request::ClusterMap { .. }) => Response::ClusterMapOk { map: None },
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
