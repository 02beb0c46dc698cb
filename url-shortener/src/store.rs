//! The store, through `kvstore`'s lean client only: the keyspace `links`, its reads and
//! writes, and the consistency each read asks for, with its reason.
//!
//! - A redirect reads the link from **any replica** (`Follower`): links never change once
//!   written, so a replica either has it right or does not have it yet. Only in the second
//!   case (a link created a moment ago, not yet applied there) does it ask again,
//!   linearizably, before answering 404; so a link works as soon as its creator got its code.
//! - A link is created **only if absent**: two creators of one alias cannot both win, and a
//!   generated code that meets a taken alias is skipped.
//! - A count is read **linearizably**: it is what the store holds now (clicks a process has
//!   not flushed yet are not in it).
//! - Ids come in blocks from one **atomic increment** of `seq:{ids}`.

use kvstore::client::cluster::ClusterClient;
use kvstore::client::ClientError;
use kvstore::partition::map::KeyspaceSpec;
use kvstore::wire::{Condition, Consistency, ErrorCode};
use serde::{Deserialize, Serialize};

use crate::code::Block;
use crate::keys;

/// What a store operation can fail with, as the HTTP layer answers it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The keyspace is at its byte limit (`kvstore keyspace limit`): retry later.
    #[error("the keyspace is full: {0}")]
    Full(String),
    /// The keyspace is over its request rate: retry shortly.
    #[error("the keyspace is over its rate: {0}")]
    Busy(String),
    /// A stored link that is not one (written by something else).
    #[error("the link at {key} is not a link: {error}")]
    BadLink { key: String, error: String },
    /// Anything else the store or the network said.
    #[error("the store: {0}")]
    Client(ClientError),
}

impl StoreError {
    /// Whether the request may have been applied although no success came back.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, StoreError::Client(e) if e.outcome_unknown())
    }
}

impl From<ClientError> for StoreError {
    fn from(error: ClientError) -> StoreError {
        match error {
            ClientError::Server {
                code: ErrorCode::OverQuota,
                message,
            } => StoreError::Full(message),
            ClientError::Server {
                code: ErrorCode::RateLimited,
                message,
            } => StoreError::Busy(message),
            other => StoreError::Client(other),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A link as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub url: String,
    pub created_ms: u64,
}

/// Creates the keyspace with `partitions` if it is missing (safe from many processes at once).
pub async fn ensure_keyspace(client: &ClusterClient, partitions: u32) -> Result<()> {
    let mut spec = KeyspaceSpec::new(keys::KEYSPACE);
    spec.partitions = partitions;
    spec.read_consistency = Consistency::Follower;
    client.ensure_keyspace(spec).await?;
    Ok(())
}

/// Reserves the next block of `size` ids for this process.
pub async fn reserve_block(client: &ClusterClient, size: u64) -> Result<Block> {
    let end = client
        .incr(keys::KEYSPACE, keys::SEQUENCE, size as i64)
        .await?;
    Ok(Block::reserved(end as u64, size))
}

/// Writes `link` under `code` if no link has that code; whether it did.
pub async fn create(client: &ClusterClient, code: &str, link: &Link) -> Result<bool> {
    let value = serde_json::to_vec(link).expect("a link serializes");
    let (applied, _) = client
        .put(
            keys::KEYSPACE,
            &keys::link(code),
            &value,
            Condition::IfAbsent,
        )
        .await?;
    Ok(applied)
}

/// How a lookup was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// By whichever replica the client asked.
    Replica,
    /// By the leader, after a replica did not have it yet.
    Leader,
}

/// The link of `code`: from any replica, and from the leader if that replica lacks it.
pub async fn lookup(client: &ClusterClient, code: &str) -> Result<Option<(Link, Served)>> {
    let key = keys::link(code);
    if let Some(v) = client
        .get(keys::KEYSPACE, &key, Consistency::Follower)
        .await?
    {
        return decode(&key, &v.value).map(|l| Some((l, Served::Replica)));
    }
    match client
        .get(keys::KEYSPACE, &key, Consistency::Linearizable)
        .await?
    {
        Some(v) => decode(&key, &v.value).map(|l| Some((l, Served::Leader))),
        None => Ok(None),
    }
}

fn decode(key: &[u8], value: &[u8]) -> Result<Link> {
    serde_json::from_slice(value).map_err(|e| StoreError::BadLink {
        key: String::from_utf8_lossy(key).into_owned(),
        error: e.to_string(),
    })
}

/// The clicks the store holds for `code`, read linearizably.
pub async fn clicks(client: &ClusterClient, code: &str) -> Result<u64> {
    let got = client
        .get(
            keys::KEYSPACE,
            &keys::clicks(code),
            Consistency::Linearizable,
        )
        .await?;
    Ok(got
        .and_then(|v| std::str::from_utf8(&v.value).ok()?.parse().ok())
        .unwrap_or(0))
}

/// Adds `n` clicks to `code`'s counter; the new total.
pub async fn add_clicks(client: &ClusterClient, code: &str, n: u64) -> Result<u64> {
    let total = client
        .incr(keys::KEYSPACE, &keys::clicks(code), n as i64)
        .await?;
    Ok(total as u64)
}
