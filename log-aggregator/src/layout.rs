//! Where log records live in the store: the keyspace `logs`, partitioned by stream and time.
//!
//! A *stream* is one service on one host; a *bucket* is [`BUCKET_MS`] of time. Records are
//! stored in *chunks*, as Loki does: the records of one push for one stream and bucket, as
//! NDJSON compressed with LZ4 ([`crate::store::encode_chunk`]), under
//!
//! ```text
//! c:{<service>|<host>|<bucket>}:<first ts_ms, 13 digits>:<chunk id, 16 hex digits>
//! ```
//!
//! which puts a stream's bucket in one partition (the part in braces is the hash tag), its
//! chunks in time order, so reading a stream's bucket is one ordered scan, and the buckets of
//! a busy stream spread over the partitions as time passes. One key per chunk, not per record:
//! the store's work per line is a share of one write, not a write.
//!
//! Each record carries its dedup id, which names its origin (agent, source, offset or
//! sequence); the chunk id is a hash of its records' ids, so a push sent again after a lost
//! acknowledgement writes the same chunk again, stored once. A replay cut into other chunks
//! (an agent restarted, say) is stored again, and every reader drops the records whose id it
//! has seen: the index, the rebuild, [`crate::store::LogStore::bucket_records`]. A late record
//! simply lands in its bucket.
//!
//! Which streams a bucket holds is kept beside it, `s:{<bucket>}:<service>|<host>`, so a
//! query over all streams finds them with one scan of the bucket's tag. Names are
//! percent-escaped where they would break the layout (`{`, `}`, `|`, `:`, `%`, controls).

/// The keyspace of the logs.
pub const KEYSPACE: &str = "logs";
/// A bucket's span of time.
pub const BUCKET_MS: i64 = 10 * 60 * 1000;
/// The longest service or host name kept (longer ones are cut).
pub const NAME_BYTES_MAX: usize = 128;

/// One service on one host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stream {
    pub service: String,
    pub host: String,
}

/// Where a record came from: replays of it carry the same id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin<'a> {
    pub agent: &'a str,
    /// A file's path and identity, or a listener's name.
    pub source: &'a str,
    /// The byte offset in the file, or the message's sequence number.
    pub position: u64,
}

impl Origin<'_> {
    /// The dedup id: 64-bit FNV-1a of the three, which are separated so that no two origins
    /// spell the same bytes.
    pub fn id(&self) -> u64 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        let position = self.position.to_be_bytes();
        let parts: [&[u8]; 3] = [self.agent.as_bytes(), self.source.as_bytes(), &position];
        for part in parts {
            for byte in (part.len() as u64).to_be_bytes().iter().chain(part) {
                hash ^= u64::from(*byte);
                hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        hash
    }
}

/// The bucket (its start, in Unix milliseconds) a time falls in.
pub fn bucket_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(BUCKET_MS) * BUCKET_MS
}

fn escape(name: &str) -> String {
    let mut cut = name.len().min(NAME_BYTES_MAX);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut out = String::with_capacity(cut);
    for c in name[..cut].chars() {
        match c {
            '{' | '}' | '|' | ':' | '%' => out.push_str(&format!("%{:02X}", c as u32)),
            c if c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn unescape(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn tag(stream: &Stream, bucket: i64) -> String {
    format!(
        "{}|{}|{bucket}",
        escape(&stream.service),
        escape(&stream.host)
    )
}

/// The key of a chunk of `stream`'s records whose first (earliest) is at `first_ts_ms`.
pub fn chunk_key(stream: &Stream, first_ts_ms: i64, chunk_id: u64) -> String {
    format!(
        "c:{{{}}}:{:013}:{chunk_id:016x}",
        tag(stream, bucket_of(first_ts_ms)),
        first_ts_ms.max(0)
    )
}

/// A chunk's id: the hash of its records' dedup ids, in order.
pub fn chunk_id(record_ids: impl IntoIterator<Item = u64>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for id in record_ids {
        for byte in id.to_be_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// The prefix of every chunk of a stream in a bucket (scan it for the bucket in time order).
pub fn bucket_prefix(stream: &Stream, bucket: i64) -> String {
    format!("c:{{{}}}:", tag(stream, bucket))
}

/// The key saying that a bucket holds a stream.
pub fn stream_key(bucket: i64, stream: &Stream) -> String {
    format!(
        "s:{{{bucket}}}:{}|{}",
        escape(&stream.service),
        escape(&stream.host)
    )
}

/// The prefix of every stream key of a bucket.
pub fn streams_prefix(bucket: i64) -> String {
    format!("s:{{{bucket}}}:")
}

/// How many journal shards a minute's journal is spread over.
pub const JOURNAL_SHARDS: u32 = 8;
/// A journal minute's span.
pub const JOURNAL_MINUTE_MS: i64 = 60_000;

/// The key of a journal entry: the keys of a push's chunks, by arrival time, so every
/// aggregator can follow what the others wrote (see [`crate::feed`]):
///
/// ```text
/// j:{<arrival minute>|<shard>}:<arrival ms, 13 digits>:<writer>:<sequence, 20 digits>
/// ```
pub fn journal_key(arrival_ms: i64, shard: u32, writer: &str, seq: u64) -> String {
    format!(
        "{}{:013}:{}:{seq:020}",
        journal_prefix(arrival_ms.div_euclid(JOURNAL_MINUTE_MS), shard),
        arrival_ms.max(0),
        escape(writer)
    )
}

/// The prefix of a journal minute's shard (`minute` counts minutes since the epoch).
pub fn journal_prefix(minute: i64, shard: u32) -> String {
    format!("j:{{{minute}|{shard}}}:")
}

/// A journal key's arrival time.
pub fn parse_journal_time(key: &str) -> Option<i64> {
    let (_, rest) = key.strip_prefix("j:{")?.split_once("}:")?;
    rest.get(..13)?.parse().ok()
}

/// A chunk key's parts: the stream, the first record's time and the chunk id.
pub fn parse_chunk_key(key: &str) -> Option<(Stream, i64, u64)> {
    let rest = key.strip_prefix("c:{")?;
    let (tag, rest) = rest.split_once("}:")?;
    let mut t = tag.split('|');
    let (service, host) = (unescape(t.next()?)?, unescape(t.next()?)?);
    let _bucket: i64 = t.next()?.parse().ok()?;
    let (ts, id) = rest.split_once(':')?;
    Some((
        Stream { service, host },
        ts.parse().ok()?,
        u64::from_str_radix(id, 16).ok()?,
    ))
}

/// A stream key's stream.
pub fn parse_stream_key(key: &str) -> Option<Stream> {
    let (_, names) = key.strip_prefix("s:{")?.split_once("}:")?;
    let (service, host) = names.split_once('|')?;
    Some(Stream {
        service: unescape(service)?,
        host: unescape(host)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(service: &str, host: &str) -> Stream {
        Stream {
            service: service.into(),
            host: host.into(),
        }
    }

    #[test]
    fn a_stream_bucket_is_one_partition_in_time_order() {
        let s = stream("nginx", "web-1");
        let t0 = 1_796_623_200_000; // a bucket's start
        let keys: Vec<String> = [t0 + 5, t0 + 70_000, t0 + 599_999]
            .iter()
            .map(|ts| chunk_key(&s, *ts, 7))
            .collect();
        let slots: Vec<u16> = keys
            .iter()
            .map(|k| kvstore::partition::slot(k.as_bytes()))
            .collect();
        assert!(
            slots.windows(2).all(|w| w[0] == w[1]),
            "one hash tag: {keys:?}"
        );
        assert!(
            keys.windows(2).all(|w| w[0] < w[1]),
            "time order is key order"
        );
        assert!(keys.iter().all(|k| k.starts_with(&bucket_prefix(&s, t0))));
        // The next bucket is another tag (and most likely another partition).
        let next = chunk_key(&s, t0 + BUCKET_MS, 7);
        assert!(!next.starts_with(&bucket_prefix(&s, t0)));
        assert_eq!(
            kvstore::partition::slot(stream_key(t0, &s).as_bytes()),
            kvstore::partition::slot(streams_prefix(t0).as_bytes())
        );
    }

    #[test]
    fn keys_round_trip_whatever_the_names() {
        for (service, host) in [
            ("app", "h"),
            ("we{ir}d|na:me%", "host\tname"),
            ("ünï", "ĥost"),
            ("", ""),
        ] {
            let s = stream(service, host);
            let key = chunk_key(&s, 1_796_623_212_345, 0xdead_beef);
            assert_eq!(key.matches('{').count(), 1, "{key}");
            assert_eq!(
                parse_chunk_key(&key),
                Some((s.clone(), 1_796_623_212_345, 0xdead_beef))
            );
            assert_eq!(parse_stream_key(&stream_key(0, &s)), Some(s));
        }
        let long = "x".repeat(NAME_BYTES_MAX * 2);
        let key = chunk_key(&stream(&long, "h"), 0, 1);
        assert_eq!(
            parse_chunk_key(&key).unwrap().0.service.len(),
            NAME_BYTES_MAX
        );
    }

    #[test]
    fn the_same_origin_is_the_same_id_and_others_differ() {
        let o = |agent, source, position| {
            Origin {
                agent,
                source,
                position,
            }
            .id()
        };
        assert_eq!(
            o("a1", "/var/log/syslog", 4096),
            o("a1", "/var/log/syslog", 4096)
        );
        assert_ne!(
            o("a1", "/var/log/syslog", 4096),
            o("a1", "/var/log/syslog", 4097)
        );
        assert_ne!(o("a1", "b", 0), o("a", "1b", 0), "the parts are separated");
        assert_eq!(bucket_of(-1), -BUCKET_MS);
        assert_eq!(bucket_of(BUCKET_MS + 1), BUCKET_MS);
    }

    #[test]
    fn journal_keys_sort_by_arrival_within_a_minute_shard() {
        let t = 1_796_623_200_000;
        let a = journal_key(t + 5, 3, "agg:1", 9);
        let b = journal_key(t + 40, 3, "agg-0", 10);
        assert!(a < b && a.starts_with(&journal_prefix(t / 60_000, 3)));
        assert_eq!(parse_journal_time(&b), Some(t + 40));
        assert_eq!(
            kvstore::partition::slot(a.as_bytes()),
            kvstore::partition::slot(b.as_bytes())
        );
    }
}
