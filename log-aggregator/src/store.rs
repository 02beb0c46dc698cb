//! The aggregator's side of the store: writing a push so that it survives, and reading back
//! what the index and the queries need. The store is reached through `ClusterClient` only.
//!
//! **A push is acknowledged only when the store has it.** [`LogStore::write`] writes, for
//! each stream and bucket the push touches, a chunk of its records (one key, one Raft entry;
//! see [`crate::layout`]) and the bucket's stream key, then, once those are committed, one
//! *journal* entry naming the push's chunks under its arrival time; it returns once every
//! write is committed (replicated to a majority and applied). An aggregator that dies before answering leaves the sender to
//! retry: the same push makes the same chunks, and a replay cut otherwise is dropped by every
//! reader, which keeps one record per dedup id.
//!
//! The journal is how the aggregators learn what the others wrote: each follows it (see
//! [`crate::feed`]), reads the chunks it names and indexes what it has not. Its entries expire
//! after [`JOURNAL_TTL_MS`]; the chunks stay until retention deletes their bucket.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::future::join_all;
use kvstore::client::cluster::ClusterClient;
use kvstore::client::{ClientError, PutOptions, ScanOptions};
use kvstore::partition::map::KeyspaceSpec;
use kvstore::wire::{BatchOp, Condition, Consistency, ScanRange};

use crate::layout::{self, Stream, JOURNAL_MINUTE_MS, JOURNAL_SHARDS, KEYSPACE};
use crate::record::{Read, Record};

/// How long a journal entry lives: long past the time any aggregator takes to read it.
pub const JOURNAL_TTL_MS: u64 = 15 * 60 * 1000;
/// The most record bytes in one chunk; a stream's bigger share of a push is split.
pub const WRITE_BYTES_MAX: usize = 1024 * 1024;
/// The most keys deleted in one store batch.
pub const WRITE_RECORDS_MAX: usize = 2_000;
/// Entries per scan page when reading records back.
pub const READ_PAGE_ENTRIES: u32 = 2_000;
/// Stream keys a node remembers having written (then it forgets and writes again).
pub const KNOWN_STREAMS_MAX: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store: {0}")]
    Client(#[from] ClientError),
    #[error("the value at key {key:?} is not a log record: {error}")]
    BadRecord { key: String, error: String },
    #[error("the store refused a batch of {records} records at op {op:?}")]
    Refused { records: usize, op: Option<u32> },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// How long to wait before trying again: what the store said when the keyspace is over
    /// its rate limit ("… retry after N ms"), else a second.
    pub fn retry_after(&self) -> std::time::Duration {
        match self {
            StoreError::Client(e) => e.retry_after(),
            _ => None,
        }
        .unwrap_or(std::time::Duration::from_secs(1))
    }
}

/// What a write stored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    pub records: usize,
    pub bytes: usize,
    /// Store batches (one per stream and bucket, or more for a large one).
    pub batches: usize,
}

/// A key and its value, about to be written.
type KeyValue = (String, Vec<u8>);

pub struct LogStore {
    client: Arc<ClusterClient>,
    /// This aggregator's name in journal keys.
    writer: String,
    seq: AtomicU64,
    /// (bucket, stream) pairs whose stream key this node has written.
    known: Mutex<HashSet<(i64, Stream)>>,
}

/// Creates the `logs` keyspace if it is missing.
pub async fn ensure_keyspace(client: &ClusterClient, partitions: u32) -> Result<()> {
    let mut spec = KeyspaceSpec::new(KEYSPACE);
    spec.partitions = partitions;
    spec.read_consistency = Consistency::Linearizable;
    client.ensure_keyspace(spec).await?;
    Ok(())
}

/// The first byte of a chunk compressed with LZ4 (a block, its length before it as four
/// little-endian bytes). A chunk of plain NDJSON, as earlier builds wrote, starts with `{`.
pub const CHUNK_LZ4: u8 = 0x01;
/// The most bytes a chunk may say it holds once decompressed: a chunk is written with at
/// most [`WRITE_BYTES_MAX`] of records plus one record of at most about the text limit, so
/// anything larger is not a chunk (and is not allocated).
pub const CHUNK_BYTES_MAX: usize = 4 * WRITE_BYTES_MAX;

/// A chunk's value: its records as NDJSON, compressed with LZ4 behind [`CHUNK_LZ4`]. Log
/// lines repeat themselves (hosts, services, field names, message templates), so a chunk
/// takes a fraction of its lines' bytes in the store: in its Raft log, its engine and the
/// messages to its replicas, three times over; as Loki compresses its chunks.
pub fn encode_chunk(ndjson: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + 4 + ndjson.len() / 2);
    out.push(CHUNK_LZ4);
    out.extend_from_slice(&lz4_flex::block::compress_prepend_size(ndjson));
    out
}

/// A chunk's records (compressed or, as earlier builds wrote them, plain NDJSON), each with
/// its line of JSON (a slice of the chunk, not a copy).
pub fn decode_chunk(key: &str, value: &Bytes) -> Result<Vec<Read>> {
    let bad = |error: String| StoreError::BadRecord {
        key: key.to_string(),
        error,
    };
    let value = match value.split_first() {
        Some((&CHUNK_LZ4, compressed)) => {
            let size = compressed
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("four bytes")) as usize);
            match size {
                Some(size) if size <= CHUNK_BYTES_MAX => {}
                Some(size) => {
                    return Err(bad(format!(
                        "a compressed chunk of {size} bytes (at most {CHUNK_BYTES_MAX})"
                    )))
                }
                None => return Err(bad("a compressed chunk without its length".into())),
            }
            lz4_flex::block::decompress_size_prepended(compressed)
                .map(Bytes::from)
                .map_err(|e| bad(format!("a compressed chunk that does not decompress: {e}")))?
        }
        _ => value.clone(),
    };
    let mut reads = Vec::new();
    let mut start = 0;
    for line in value.split(|&b| b == b'\n') {
        let end = start + line.len();
        if !line.is_empty() {
            let record = serde_json::from_slice(line).map_err(|e| bad(e.to_string()))?;
            let json = value.slice(start..end);
            reads.push(Read { record, json });
        }
        start = end + 1;
    }
    Ok(reads)
}

impl LogStore {
    pub fn new(client: Arc<ClusterClient>, writer: String) -> LogStore {
        LogStore {
            client,
            writer,
            seq: AtomicU64::new(0),
            known: Mutex::new(HashSet::new()),
        }
    }

    pub fn client(&self) -> &ClusterClient {
        &self.client
    }

    /// Stores `records` (see the module's comment); returns once all of it is committed.
    pub async fn write(&self, records: &[Record], now_ms: i64) -> Result<Written> {
        if records.is_empty() {
            return Ok(Written::default());
        }
        // By stream and bucket, in order (the names borrowed, not copied per record); each
        // cut into chunks within the size limit.
        let mut by_name: BTreeMap<(&str, &str, i64), Vec<&Record>> = BTreeMap::new();
        for r in records {
            by_name
                .entry((&r.service, &r.host, layout::bucket_of(r.ts)))
                .or_default()
                .push(r);
        }
        let groups: BTreeMap<(Stream, i64), Vec<&Record>> = by_name
            .into_iter()
            .map(|((service, host, bucket), group)| {
                let stream = Stream {
                    service: service.to_string(),
                    host: host.to_string(),
                };
                ((stream, bucket), group)
            })
            .collect();
        let mut chunks: Vec<KeyValue> = Vec::new();
        let mut bytes = 0;
        for ((stream, _), group) in &groups {
            let mut start = 0;
            while start < group.len() {
                let mut value = Vec::new();
                let mut end = start;
                while end < group.len() && (end == start || value.len() < WRITE_BYTES_MAX) {
                    serde_json::to_writer(&mut value, group[end]).expect("a record serialises");
                    value.push(b'\n');
                    end += 1;
                }
                let part = &group[start..end];
                let first = part.iter().map(|r| r.ts).min().expect("not empty");
                let id = layout::chunk_id(part.iter().map(|r| r.id));
                bytes += value.len();
                chunks.push((layout::chunk_key(stream, first, id), encode_chunk(&value)));
                start = end;
            }
        }
        let mut new_streams = Vec::new();
        {
            let mut known = self.known.lock().expect("known streams");
            for (stream, bucket) in groups.keys() {
                if !known.contains(&(*bucket, stream.clone())) {
                    new_streams.push((*bucket, stream.clone()));
                }
            }
            if known.len() + new_streams.len() > KNOWN_STREAMS_MAX {
                known.clear();
            }
        }
        let journal = self.journal_entry_of(&chunks, now_ms);
        let batches = chunks.len();
        let chunk_writes = chunks.iter().map(|(key, value)| async move {
            self.client
                .put(KEYSPACE, key.as_bytes(), value, Condition::None)
                .await
                .map(|_| ())
                .map_err(StoreError::from)
        });
        let stream_writes = new_streams.iter().map(|(bucket, stream)| async move {
            let key = layout::stream_key(*bucket, stream);
            self.client
                .put(KEYSPACE, key.as_bytes(), b"", Condition::None)
                .await
                .map(|_| ())
                .map_err(StoreError::from)
        });
        let journal_write = async {
            let options = PutOptions {
                ttl_ms: Some(JOURNAL_TTL_MS),
                condition: Condition::None,
            };
            self.client
                .put_with(KEYSPACE, journal.0.as_bytes(), &journal.1, options)
                .await
                .map(|_| ())
                .map_err(StoreError::from)
        };
        // The journal entry last, once its chunks are committed: a reader that finds the
        // entry finds its chunks (written at once, another aggregator's feed could read the
        // entry, miss a chunk still in flight, take it for deleted, and never index it).
        let (a, b) = tokio::join!(join_all(chunk_writes), join_all(stream_writes));
        for result in a.into_iter().chain(b) {
            result?;
        }
        journal_write.await?;
        self.known
            .lock()
            .expect("known streams")
            .extend(new_streams);
        Ok(Written {
            records: records.len(),
            bytes,
            batches,
        })
    }

    /// The journal entry of a push: its chunks' keys, one a line, under its arrival time.
    fn journal_entry_of(&self, chunks: &[KeyValue], now_ms: i64) -> KeyValue {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let shard = (seq % u64::from(JOURNAL_SHARDS)) as u32;
        let key = layout::journal_key(now_ms, shard, &self.writer, seq);
        let mut value = Vec::new();
        for (chunk, _) in chunks {
            value.extend_from_slice(chunk.as_bytes());
            value.push(b'\n');
        }
        (key, value)
    }

    /// The journal keys of shard `shard` that arrived at or after `from_ms` in the minute
    /// `minute`, in order.
    pub async fn journal_keys(&self, minute: i64, shard: u32, from_ms: i64) -> Result<Vec<String>> {
        let prefix = layout::journal_prefix(minute, shard);
        let start = format!(
            "{prefix}{:013}",
            from_ms.max(minute * JOURNAL_MINUTE_MS).max(0)
        );
        let entries = self
            .scan_all(
                ScanRange {
                    start: Some(Bytes::from(start)),
                    end: None,
                    prefix: Some(Bytes::from(prefix)),
                },
                true,
            )
            .await?;
        Ok(entries.into_iter().map(|(k, _)| k).collect())
    }

    /// The records of the chunks a journal entry names (none if it expired meanwhile).
    pub async fn journal_entry(&self, key: &str) -> Result<Vec<Read>> {
        let Some(entry) = self
            .client
            .get(KEYSPACE, key.as_bytes(), Consistency::Linearizable)
            .await?
        else {
            return Ok(Vec::new());
        };
        let chunks: Vec<String> = String::from_utf8_lossy(&entry.value)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect();
        let reads = chunks.iter().map(|chunk| async move {
            self.client
                .get(KEYSPACE, chunk.as_bytes(), Consistency::Linearizable)
                .await
                .map_err(StoreError::from)
                .and_then(|v| match v {
                    Some(v) => decode_chunk(chunk, &v.value),
                    // Deleted since (retention): nothing to index.
                    None => Ok(Vec::new()),
                })
        });
        let mut records = Vec::new();
        for chunk in join_all(reads).await {
            records.extend(chunk?);
        }
        Ok(records)
    }

    /// The streams with records in `bucket`.
    pub async fn streams(&self, bucket: i64) -> Result<Vec<Stream>> {
        let entries = self
            .scan_all(
                ScanRange {
                    start: None,
                    end: None,
                    prefix: Some(Bytes::from(layout::streams_prefix(bucket))),
                },
                true,
            )
            .await?;
        Ok(entries
            .iter()
            .filter_map(|(k, _)| layout::parse_stream_key(k))
            .collect())
    }

    /// Every record of `stream` in `bucket`, each dedup id once, in time order.
    pub async fn bucket_records(&self, stream: &Stream, bucket: i64) -> Result<Vec<Read>> {
        let chunks = self
            .scan_all(
                ScanRange {
                    start: None,
                    end: None,
                    prefix: Some(Bytes::from(layout::bucket_prefix(stream, bucket))),
                },
                false,
            )
            .await?;
        let mut seen = HashSet::new();
        let mut records = Vec::new();
        for (key, value) in chunks {
            for r in decode_chunk(&key, &value)? {
                if seen.insert(r.record.id) {
                    records.push(r);
                }
            }
        }
        records.sort_by_key(|r| (r.record.ts, r.record.seq, r.record.id));
        Ok(records)
    }

    /// Deletes every chunk and stream key of `bucket`; returns how many chunks went.
    pub async fn delete_bucket(&self, bucket: i64) -> Result<usize> {
        let mut deleted = 0;
        for stream in self.streams(bucket).await? {
            deleted += self.delete_stream_bucket(&stream, bucket).await?;
        }
        Ok(deleted)
    }

    /// Deletes `stream`'s chunks of `bucket`, then its stream key; how many chunks went.
    pub async fn delete_stream_bucket(&self, stream: &Stream, bucket: i64) -> Result<usize> {
        let keys = self
            .scan_all(
                ScanRange {
                    start: None,
                    end: None,
                    prefix: Some(Bytes::from(layout::bucket_prefix(stream, bucket))),
                },
                true,
            )
            .await?;
        for chunk in keys.chunks(WRITE_RECORDS_MAX) {
            let ops = chunk
                .iter()
                .map(|(k, _)| BatchOp::Delete {
                    key: Bytes::from(k.clone()),
                    condition: Condition::None,
                })
                .collect();
            self.client.batch(KEYSPACE, ops).await?;
        }
        self.client
            .delete(KEYSPACE, layout::stream_key(bucket, stream).as_bytes())
            .await?;
        Ok(keys.len())
    }

    /// Every entry of `range` (one partition: the range is within one hash tag), paged.
    async fn scan_all(&self, range: ScanRange, keys_only: bool) -> Result<Vec<(String, Bytes)>> {
        let mut out = Vec::new();
        let mut continuation = None;
        loop {
            let page = self
                .client
                .scan(
                    KEYSPACE,
                    ScanOptions {
                        range: range.clone(),
                        limit: READ_PAGE_ENTRIES,
                        continuation,
                        keys_only,
                        consistency: Some(Consistency::Linearizable),
                    },
                )
                .await?;
            out.extend(page.entries.into_iter().map(|e| {
                (
                    String::from_utf8_lossy(&e.key).into_owned(),
                    e.value.unwrap_or_default(),
                )
            }));
            match page.continuation {
                Some(c) => continuation = Some(c),
                None => return Ok(out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::message::Level;

    fn record(i: u64) -> Record {
        Record {
            ts: 1_796_623_200_000 + i as i64,
            host: "web-1".into(),
            service: "nginx".into(),
            level: Level::Info,
            message: format!("GET /api/items/{i} 200 12ms"),
            id: i,
            seq: i,
            parse_error: None,
            truncated: false,
            labels: BTreeMap::new(),
        }
    }

    fn decode_records(key: &str, value: &[u8]) -> Result<Vec<Record>> {
        let chunk = decode_chunk(key, &Bytes::copy_from_slice(value))?;
        Ok(chunk.into_iter().map(|r| r.record).collect())
    }

    fn ndjson(records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        for r in records {
            serde_json::to_writer(&mut out, r).unwrap();
            out.push(b'\n');
        }
        out
    }

    #[test]
    fn a_chunk_is_compressed_and_reads_back_as_its_records() {
        let records: Vec<Record> = (0..500).map(record).collect();
        let plain = ndjson(&records);
        let chunk = encode_chunk(&plain);
        assert_eq!(chunk[0], CHUNK_LZ4);
        assert!(
            chunk.len() * 3 < plain.len(),
            "{} bytes of lines took {}",
            plain.len(),
            chunk.len()
        );
        assert_eq!(decode_records("c:k", &chunk).unwrap(), records);
    }

    /// Each record comes with its line of the chunk: the JSON the index keeps, exactly what
    /// encoding the record would give.
    #[test]
    fn a_chunk_s_records_come_with_their_json() {
        let records: Vec<Record> = (0..50).map(record).collect();
        let plain = Bytes::from(ndjson(&records));
        for value in [Bytes::from(encode_chunk(&plain)), plain.clone()] {
            let reads = decode_chunk("c:k", &value).unwrap();
            assert_eq!(reads.len(), records.len());
            for (read, r) in reads.iter().zip(&records) {
                assert_eq!(&read.record, r);
                assert_eq!(read.json, serde_json::to_vec(r).unwrap());
            }
        }
    }

    #[test]
    fn a_chunk_of_plain_ndjson_as_earlier_builds_wrote_still_reads() {
        let records: Vec<Record> = (0..3).map(record).collect();
        assert_eq!(decode_records("c:k", &ndjson(&records)).unwrap(), records);
    }

    #[test]
    fn a_damaged_chunk_is_a_clear_error_and_allocates_nothing_it_claims() {
        let chunk = encode_chunk(&ndjson(&[record(1)]));
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (chunk[..chunk.len() - 3].to_vec(), "does not decompress"),
            (vec![CHUNK_LZ4, 1, 2], "without its length"),
            // Says it holds 4 GiB: refused before anything is allocated.
            (vec![CHUNK_LZ4, 0xff, 0xff, 0xff, 0xff, 0], "at most"),
            (b"not json".to_vec(), "expected"),
        ];
        for (value, says) in cases {
            let error = decode_records("c:k", &value).unwrap_err().to_string();
            assert!(error.contains("c:k") && error.contains(says), "{error}");
        }
    }
}
