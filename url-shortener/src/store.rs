//! The store, through `kvstore`'s lean client only: the keyspace `url-shortener` and the reads and
//! writes of this case study. Which consistency each read asks for is decided here, with
//! its reason (see `docs/new-case-study.md`, "Consistency").

use kvstore::client::cluster::ClusterClient;
use kvstore::client::ClientError;
use kvstore::partition::map::KeyspaceSpec;
use kvstore::wire::{Condition, Consistency, ErrorCode};

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
    /// Anything else the store or the network said.
    #[error("the store: {0}")]
    Client(ClientError),
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

/// Creates the keyspace with `partitions` if it is missing (safe from many processes at once:
/// one creation applies, the others find it in the map).
pub async fn ensure_keyspace(client: &ClusterClient, partitions: u32) -> Result<()> {
    let mut spec = KeyspaceSpec::new(keys::KEYSPACE);
    spec.partitions = partitions;
    spec.read_consistency = Consistency::Linearizable;
    client.ensure_keyspace(spec).await?;
    Ok(())
}

/// Reads an item. Linearizable: a client that wrote an item and reads it back must see it
/// (a follower read would be cheaper, and may be right for your data: say why).
pub async fn get_item(client: &ClusterClient, name: &str) -> Result<Option<Vec<u8>>> {
    let got = client
        .get(keys::KEYSPACE, &keys::item(name), Consistency::Linearizable)
        .await?;
    Ok(got.map(|v| v.value.to_vec()))
}

/// Writes an item; it is acknowledged once a majority of its partition's replicas have it.
pub async fn put_item(client: &ClusterClient, name: &str, value: &[u8]) -> Result<()> {
    client
        .put(keys::KEYSPACE, &keys::item(name), value, Condition::None)
        .await?;
    Ok(())
}
