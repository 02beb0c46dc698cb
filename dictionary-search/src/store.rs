//! The dictionary in the store: the `dictionary` keyspace, its keys, and loading and reading
//! it through `kvstore`'s `ClusterClient` (the only way this crate reaches the store).
//!
//! Keys (no hash tags: each headword hashes on its own, so the entries spread evenly over the
//! keyspace's partitions and a lookup is one read of one partition):
//!
//! - `e:<headword, lowercase>` → the [`Entry`] as JSON;
//! - `meta:dataset` → [`DatasetInfo`] as JSON, written last by a load: a replica that sees its
//!   `version` change rebuilds its indexes.
//!
//! A load writes every entry (many writes in flight, each retried until it is definite), then
//! deletes entries the new dataset no longer has, then stamps the version. Run again with the
//! same data it finds the version already there and writes nothing; interrupted, it is simply
//! run again (each put is idempotent).

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use kvstore::client::cluster::ClusterClient;
use kvstore::client::{ClientError, ScanOptions};
use kvstore::partition::map::KeyspaceSpec;
use kvstore::wire::{Condition, Consistency, ScanRange};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::entry::Entry;

pub const KEYSPACE: &str = "dictionary";
pub const ENTRY_PREFIX: &str = "e:";
pub const DATASET_KEY: &str = "meta:dataset";
/// Writes a load keeps in flight (the client's session window allows 64).
pub const LOAD_WRITES_IN_FLIGHT: usize = 48;
/// Partitions a reader scans at once.
pub const READ_PARTITIONS_IN_FLIGHT: usize = 8;
/// Entries per scan page when reading the dictionary.
pub const READ_PAGE_ENTRIES: u32 = 500;

/// What the last complete load wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetInfo {
    pub version: String,
    pub entries: u64,
    /// When the load finished (Unix milliseconds).
    pub loaded_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store: {0}")]
    Client(#[from] ClientError),
    #[error("the entry at key {key:?} is not a dictionary entry: {error}")]
    BadEntry { key: String, error: String },
    #[error("the dataset record is not valid: {0}")]
    BadDataset(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

pub fn entry_key(word: &str) -> String {
    format!("{ENTRY_PREFIX}{}", Entry::key_of(word))
}

/// Creates the `dictionary` keyspace if it is missing (replicas read it at follower
/// consistency: a search replica's index build and lookups may lag a moment behind a load).
pub async fn ensure_keyspace(client: &ClusterClient, partitions: u32) -> Result<()> {
    let mut spec = KeyspaceSpec::new(KEYSPACE);
    spec.partitions = partitions;
    spec.read_consistency = Consistency::Follower;
    client.ensure_keyspace(spec).await?;
    Ok(())
}

/// The dataset record, if a load has completed.
pub async fn dataset_info(
    client: &ClusterClient,
    consistency: Consistency,
) -> Result<Option<DatasetInfo>> {
    match client
        .get(KEYSPACE, DATASET_KEY.as_bytes(), consistency)
        .await?
    {
        Some(v) => serde_json::from_slice(&v.value)
            .map(Some)
            .map_err(|e| StoreError::BadDataset(e.to_string())),
        None => Ok(None),
    }
}

/// What a load did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadReport {
    pub written: u64,
    pub deleted: u64,
    pub bytes: u64,
    /// The store held this version already: nothing was written.
    pub already_loaded: bool,
}

/// Writes `entries` into the store as dataset `version` (see the module documentation).
/// `progress` hears each entry written (its JSON's size).
pub async fn load(
    client: Arc<ClusterClient>,
    entries: &BTreeMap<String, Entry>,
    version: &str,
    force: bool,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<LoadReport> {
    let mut report = LoadReport::default();
    if !force {
        if let Some(info) = dataset_info(&client, Consistency::Linearizable).await? {
            if info.version == version && info.entries == entries.len() as u64 {
                report.already_loaded = true;
                return Ok(report);
            }
        }
    }
    let mut in_flight = JoinSet::new();
    for (key, entry) in entries {
        let value = Bytes::from(serde_json::to_vec(entry).expect("an entry serialises"));
        report.bytes += value.len() as u64;
        let key = Bytes::from(format!("{ENTRY_PREFIX}{key}"));
        let client = client.clone();
        in_flight.spawn(async move {
            let len = value.len() as u64;
            client
                .put(KEYSPACE, &key, &value, Condition::None)
                .await
                .map(|_| len)
        });
        if in_flight.len() >= LOAD_WRITES_IN_FLIGHT {
            let done = in_flight.join_next().await.expect("a write in flight");
            progress(done.expect("a write task does not panic")?);
            report.written += 1;
        }
    }
    while let Some(done) = in_flight.join_next().await {
        progress(done.expect("a write task does not panic")?);
        report.written += 1;
    }
    // Entries of an older dataset that this one lacks.
    for key in keys(&client, Consistency::Linearizable).await? {
        let word = &key[ENTRY_PREFIX.len()..];
        if !entries.contains_key(word) {
            client.delete(KEYSPACE, key.as_bytes()).await?;
            report.deleted += 1;
        }
    }
    let info = DatasetInfo {
        version: version.to_string(),
        entries: entries.len() as u64,
        loaded_at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    let json = serde_json::to_vec(&info).expect("the dataset record serialises");
    client
        .put(KEYSPACE, DATASET_KEY.as_bytes(), &json, Condition::None)
        .await?;
    Ok(report)
}

/// Every entry key in the store, partition by partition.
async fn keys(client: &Arc<ClusterClient>, consistency: Consistency) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    scan_all(client, consistency, true, |key, _| {
        keys.push(String::from_utf8_lossy(&key).into_owned());
        Ok(())
    })
    .await?;
    Ok(keys)
}

/// Reads every entry from the store (several partitions at once); `progress` hears the count
/// read so far after each page.
pub async fn read_all(
    client: Arc<ClusterClient>,
    consistency: Consistency,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<Entry>> {
    let mut entries = Vec::new();
    scan_all(&client, consistency, false, |key, value| {
        let value = value.unwrap_or_default();
        let entry: Entry = serde_json::from_slice(&value).map_err(|e| StoreError::BadEntry {
            key: String::from_utf8_lossy(&key).into_owned(),
            error: e.to_string(),
        })?;
        entries.push(entry);
        if entries.len() % 10_000 == 0 {
            progress(entries.len() as u64);
        }
        Ok(())
    })
    .await?;
    progress(entries.len() as u64);
    entries.sort_by(|a, b| Entry::key_of(&a.word).cmp(&Entry::key_of(&b.word)));
    Ok(entries)
}

/// Scans the entries of every partition, `READ_PARTITIONS_IN_FLIGHT` partitions at a time,
/// handing each key (and value, unless `keys_only`) to `each`.
async fn scan_all(
    client: &Arc<ClusterClient>,
    consistency: Consistency,
    keys_only: bool,
    mut each: impl FnMut(Bytes, Option<Bytes>) -> Result<()>,
) -> Result<()> {
    let partitions = client.partitions(KEYSPACE).await?;
    let all: Vec<u32> = (0..partitions).collect();
    for chunk in all.chunks(READ_PARTITIONS_IN_FLIGHT) {
        let mut scans = JoinSet::new();
        for &p in chunk {
            let client = client.clone();
            scans.spawn(
                async move { (p, scan_partition(&client, p, consistency, keys_only).await) },
            );
        }
        let mut pages = Vec::new();
        while let Some(done) = scans.join_next().await {
            pages.push(done.expect("a scan task does not panic"));
        }
        pages.sort_by_key(|(p, _)| *p);
        for (_, page) in pages {
            for (key, value) in page? {
                each(key, value)?;
            }
        }
    }
    Ok(())
}

/// Every entry of one partition, page by page.
async fn scan_partition(
    client: &ClusterClient,
    partition: u32,
    consistency: Consistency,
    keys_only: bool,
) -> Result<Vec<(Bytes, Option<Bytes>)>> {
    let mut out = Vec::new();
    let mut continuation = None;
    loop {
        let options = ScanOptions {
            range: ScanRange {
                prefix: Some(Bytes::from_static(ENTRY_PREFIX.as_bytes())),
                ..ScanRange::default()
            },
            limit: READ_PAGE_ENTRIES,
            continuation: continuation.take(),
            keys_only,
            consistency: Some(consistency),
        };
        let page = client.scan_partition(KEYSPACE, partition, options).await?;
        out.extend(page.entries.into_iter().map(|e| (e.key, e.value)));
        match page.continuation {
            Some(c) => continuation = Some(c),
            None => return Ok(out),
        }
    }
}
