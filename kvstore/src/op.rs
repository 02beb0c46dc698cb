//! The typed operations both client protocols translate to, and the one executor that runs
//! them against a [`Store`].
//!
//! Each protocol translates a request at the edge, where it arrived: a binary-protocol request
//! is already typed ([`Op::Request`]); a Redis write command is parsed and checked the way
//! Redis checks it, then becomes an `Op` and a note of how its outcome is to be answered
//! (`resp::commands::plan_write`). A single node runs the `Op` at once; a cluster node logs it
//! and every replica runs it when the entry applies. Either way the same [`execute`] computes
//! the effect and a typed [`Outcome`], which the edge turns into its protocol's reply. So the
//! replicated state machine knows operations, not listeners, and a router can find every
//! operation's keys ([`Op::keys`]) before deciding where it goes.
//!
//! Executing is deterministic given the store's contents and its "now" (a replica passes the
//! entry's time): nothing here reads a clock or the network.

use bytes::{BufMut, Bytes, BytesMut};

use crate::db::{self, DbError, Keyspace, Store};
use crate::storage::StorageError;
use crate::wire::frame::{decode_frame, FrameError};
use crate::wire::{self, ErrorCode, Request, Response};

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A binary-protocol request (on a cluster node only the writes are logged).
    Request(Request),
    /// Delete every key of `keys` that exists and count them (Redis DEL, UNLINK).
    DeleteKeys { keyspace: String, keys: Vec<Bytes> },
    /// Give `key` a TTL relative to now (0 or less deletes it), or none (Redis EXPIRE,
    /// PEXPIRE, PERSIST).
    SetExpiry {
        keyspace: String,
        key: Bytes,
        ttl_ms: Option<i64>,
    },
    /// Delete every key of the keyspace (Redis FLUSHDB, FLUSHALL).
    Flush { keyspace: String },
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The answer to an [`Op::Request`], errors included (`Response::Error`).
    Response(Response),
    /// [`Op::DeleteKeys`]: how many existed.
    Deleted { count: u64 },
    /// [`Op::SetExpiry`]: whether the key existed (and so changed).
    Expiry { changed: bool },
    /// [`Op::Flush`].
    Flushed,
    /// A Redis-only operation failed.
    Failed { code: ErrorCode, message: String },
}

impl Op {
    /// Whether the operation changes data (and so, on a cluster, goes through the log).
    pub fn is_write(&self) -> bool {
        match self {
            Op::Request(request) => request.is_write(),
            Op::DeleteKeys { .. } | Op::SetExpiry { .. } | Op::Flush { .. } => true,
        }
    }

    /// The keys the operation touches (none for one that touches a whole keyspace or range:
    /// a scan, a flush).
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Op::Request(Request::Get { key, .. })
            | Op::Request(Request::Put { key, .. })
            | Op::Request(Request::Delete { key, .. })
            | Op::Request(Request::Incr { key, .. })
            | Op::SetExpiry { key, .. } => vec![&key[..]],
            Op::Request(Request::Batch { ops, .. }) => ops
                .iter()
                .map(|op| match op {
                    wire::BatchOp::Put { key, .. } | wire::BatchOp::Delete { key, .. } => &key[..],
                })
                .collect(),
            Op::DeleteKeys { keys, .. } => keys.iter().map(|k| &k[..]).collect(),
            Op::Request(
                Request::Hello { .. }
                | Request::Ping { .. }
                | Request::Scan { .. }
                | Request::ClusterMap { .. }
                | Request::MapChange { .. },
            )
            | Op::Flush { .. } => Vec::new(),
        }
    }

    /// Appends the operation's bytes (the layout is in `docs/raft.md`, "The replicated state
    /// machine").
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Op::Request(request) => {
                dst.put_u8(TAG_REQUEST);
                request.encode(0, dst)?;
            }
            Op::DeleteKeys { keyspace, keys } => {
                dst.put_u8(TAG_DELETE_KEYS);
                put_bytes(dst, keyspace.as_bytes());
                dst.put_u32_le(keys.len() as u32);
                for key in keys {
                    put_bytes(dst, key);
                }
            }
            Op::SetExpiry {
                keyspace,
                key,
                ttl_ms,
            } => {
                dst.put_u8(TAG_SET_EXPIRY);
                put_bytes(dst, keyspace.as_bytes());
                put_bytes(dst, key);
                dst.put_u8(u8::from(ttl_ms.is_some()));
                dst.put_i64_le(ttl_ms.unwrap_or(0));
            }
            Op::Flush { keyspace } => {
                dst.put_u8(TAG_FLUSH);
                put_bytes(dst, keyspace.as_bytes());
            }
        }
        Ok(())
    }

    /// Reads back what [`Op::encode`] wrote; every length is checked against the bytes.
    pub fn decode(data: &Bytes) -> Result<Op, String> {
        let mut r = Reader { data, at: 0 };
        let op = match r.u8()? {
            TAG_REQUEST => {
                let mut buf = BytesMut::from(&data[1..]);
                let frame = decode_frame(&mut buf, usize::MAX)
                    .map_err(|e| e.to_string())?
                    .ok_or("request frame cut short")?;
                if !buf.is_empty() {
                    return Err("bytes after the request frame".into());
                }
                return Request::decode(&frame)
                    .map(Op::Request)
                    .map_err(|e| e.to_string());
            }
            TAG_DELETE_KEYS => {
                let keyspace = r.text()?;
                let n = r.u32()? as usize;
                if n > r.remaining() / 4 {
                    return Err(format!("{n} keys in {} bytes", r.remaining()));
                }
                let keys = (0..n).map(|_| r.bytes()).collect::<Result<_, _>>()?;
                Op::DeleteKeys { keyspace, keys }
            }
            TAG_SET_EXPIRY => {
                let keyspace = r.text()?;
                let key = r.bytes()?;
                let has_ttl = r.u8()? != 0;
                let ttl = i64::from_le_bytes(r.take(8)?.try_into().expect("8 bytes"));
                Op::SetExpiry {
                    keyspace,
                    key,
                    ttl_ms: has_ttl.then_some(ttl),
                }
            }
            TAG_FLUSH => Op::Flush {
                keyspace: r.text()?,
            },
            tag => return Err(format!("unknown operation tag {tag}")),
        };
        if r.remaining() != 0 {
            return Err("bytes after the operation".into());
        }
        Ok(op)
    }
}

const TAG_REQUEST: u8 = 1;
const TAG_DELETE_KEYS: u8 = 2;
const TAG_SET_EXPIRY: u8 = 3;
const TAG_FLUSH: u8 = 4;

fn put_bytes(dst: &mut BytesMut, bytes: &[u8]) {
    dst.put_u32_le(bytes.len() as u32);
    dst.put_slice(bytes);
}

struct Reader<'a> {
    data: &'a Bytes,
    at: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.data.len() - self.at
    }
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if self.remaining() < n {
            return Err(format!("operation cut short at byte {}", self.at));
        }
        self.at += n;
        Ok(&self.data[self.at - n..self.at])
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<Bytes, String> {
        let len = self.u32()? as usize;
        self.take(len)?;
        Ok(self.data.slice(self.at - len..self.at))
    }
    fn text(&mut self) -> Result<String, String> {
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| "keyspace is not UTF-8".into())
    }
}

/// Runs `op` against `store` (single-key operations) and `whole` (scans, which read the
/// store as a whole): the one definition of what every operation does, on a single node and
/// on every replica. Returns the outcome and the version it wrote, if any.
pub fn execute(whole: &db::Db, store: &impl Store, op: Op) -> (Outcome, Option<u64>) {
    let failed = |error: DbError| {
        if let DbError::Storage(e) = &error {
            tracing::warn!(error = %e, "storage error");
        }
        Outcome::Failed {
            code: classify(&error),
            message: error.to_string(),
        }
    };
    match op {
        Op::Request(request) => match run_request(whole, store, request) {
            Ok((response, version)) => (Outcome::Response(response), version),
            Err(error) => {
                if let DbError::Storage(e) = &error {
                    tracing::warn!(error = %e, "storage error");
                }
                let response = Response::error(classify(&error), error.to_string());
                (Outcome::Response(response), None)
            }
        },
        Op::DeleteKeys { keyspace, keys } => {
            let deleted = Keyspace::new(&keyspace).and_then(|ks| {
                let (mut count, mut version) = (0, None);
                for key in &keys {
                    let (out, w) = store.delete(&ks, key, db::Condition::None)?;
                    count += u64::from(out.existed);
                    version = version.max(w.version);
                }
                Ok((count, version))
            });
            match deleted {
                Ok((count, version)) => (Outcome::Deleted { count }, version),
                Err(error) => (failed(error), None),
            }
        }
        Op::SetExpiry {
            keyspace,
            key,
            ttl_ms,
        } => match Keyspace::new(&keyspace).and_then(|ks| store.set_expiry(&ks, &key, ttl_ms)) {
            Ok((changed, w)) => (Outcome::Expiry { changed }, w.version),
            Err(error) => (failed(error), None),
        },
        Op::Flush { keyspace } => match Keyspace::new(&keyspace).and_then(|ks| store.flush(&ks)) {
            Ok(w) => (Outcome::Flushed, w.version),
            Err(error) => (failed(error), None),
        },
    }
}

/// The error code a data-model error is reported with.
pub fn classify(error: &DbError) -> ErrorCode {
    match error {
        DbError::NotAnInteger | DbError::Overflow => ErrorCode::NotAnInteger,
        DbError::InvalidKeyspace { .. } | DbError::InvalidArgument(_) => ErrorCode::InvalidArgument,
        DbError::Storage(StorageError::KeyTooLarge { .. } | StorageError::ValueTooLarge { .. }) => {
            ErrorCode::InvalidArgument
        }
        DbError::Storage(_) => ErrorCode::Storage,
    }
}

/// Executes a binary-protocol request: its response and the version it wrote.
pub fn run_request(
    whole: &db::Db,
    db: &impl Store,
    request: Request,
) -> Result<(Response, Option<u64>), DbError> {
    Ok(match request {
        Request::Ping { payload } => (Response::Pong { payload }, None),
        // A single node has no cluster map (a cluster node answers before it gets here).
        Request::ClusterMap { .. } => (Response::ClusterMapOk { map: None }, None),
        Request::MapChange { .. } => (
            Response::error(
                ErrorCode::InvalidArgument,
                "a single node has no cluster map to change",
            ),
            None,
        ),
        // The connection answers HELLO itself; nothing else reaches here with one.
        Request::Hello { .. } => (
            Response::error(ErrorCode::Internal, "misrouted HELLO"),
            None,
        ),
        Request::Get {
            keyspace,
            key,
            consistency: _,
        } => {
            // The read barrier (if any) was the caller's: this reads the store as it is.
            let found = db
                .get(&Keyspace::new(&keyspace)?, &key)?
                .map(|item| wire::Versioned {
                    value: item.value,
                    version: item.version,
                    expires_at_ms: item.expires_at_ms,
                });
            (Response::GetOk { found, lag: None }, None)
        }
        Request::Put {
            keyspace,
            key,
            value,
            ttl_ms,
            condition,
        } => {
            let ks = Keyspace::new(&keyspace)?;
            let (out, written) = db.put(&ks, &key, value, ttl_ms, condition.into())?;
            (
                Response::PutOk {
                    applied: out.applied,
                    version: out.version,
                },
                written.version,
            )
        }
        Request::Delete {
            keyspace,
            key,
            condition,
        } => {
            let ks = Keyspace::new(&keyspace)?;
            let (out, written) = db.delete(&ks, &key, condition.into())?;
            let response = Response::DeleteOk {
                applied: out.applied,
                existed: out.existed,
                version: out.version,
            };
            (response, written.version)
        }
        Request::Incr {
            keyspace,
            key,
            delta,
        } => {
            let ks = Keyspace::new(&keyspace)?;
            let ((value, version), written) = db.incr(&ks, &key, delta)?;
            (Response::IncrOk { value, version }, written.version)
        }
        Request::Scan {
            keyspace,
            range,
            limit,
            continuation,
            keys_only,
            consistency: _,
            // Which engine runs the scan is the router's choice, made before it gets here.
            partition: _,
        } => {
            let ks = Keyspace::new(&keyspace)?;
            let range = db::ScanRange {
                start: range.start,
                end: range.end,
                prefix: range.prefix,
            };
            let page = whole.scan(&ks, &range, limit, continuation.as_deref(), keys_only)?;
            let entries = page
                .items
                .into_iter()
                .map(|i| wire::Entry {
                    key: i.key,
                    value: i.value,
                    version: i.version,
                    expires_at_ms: i.expires_at_ms,
                })
                .collect();
            (
                Response::ScanOk {
                    entries,
                    continuation: page.continuation,
                    lag: None,
                },
                None,
            )
        }
        Request::Batch { keyspace, ops } => {
            let ks = Keyspace::new(&keyspace)?;
            let ops: Vec<db::BatchOp> = ops
                .into_iter()
                .map(|op| match op {
                    wire::BatchOp::Put {
                        key,
                        value,
                        ttl_ms,
                        condition,
                    } => db::BatchOp::Put {
                        key,
                        value,
                        ttl_ms,
                        condition: condition.into(),
                    },
                    wire::BatchOp::Delete { key, condition } => db::BatchOp::Delete {
                        key,
                        condition: condition.into(),
                    },
                })
                .collect();
            let (out, written) = db.batch(&ks, &ops)?;
            let response = Response::BatchOk {
                applied: out.applied,
                version: out.version,
                failed_op: out.failed_op,
            };
            (response, written.version)
        }
    })
}

impl From<wire::Condition> for db::Condition {
    fn from(c: wire::Condition) -> db::Condition {
        match c {
            wire::Condition::None => db::Condition::None,
            wire::Condition::IfAbsent => db::Condition::IfAbsent,
            wire::Condition::IfPresent => db::Condition::IfPresent,
            wire::Condition::IfVersion(v) => db::Condition::IfVersion(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn any_op() -> impl Strategy<Value = Op> {
        let bytes = || proptest::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from);
        prop_oneof![
            (bytes(), bytes(), proptest::option::of(1u64..1000)).prop_map(
                |(key, value, ttl_ms)| {
                    Op::Request(Request::Put {
                        keyspace: "default".into(),
                        key,
                        value,
                        ttl_ms,
                        condition: wire::Condition::IfAbsent,
                    })
                }
            ),
            proptest::collection::vec(bytes(), 0..5).prop_map(|keys| Op::DeleteKeys {
                keyspace: "ks".into(),
                keys,
            }),
            (bytes(), proptest::option::of(any::<i64>())).prop_map(|(key, ttl_ms)| {
                Op::SetExpiry {
                    keyspace: "default".into(),
                    key,
                    ttl_ms,
                }
            }),
            Just(Op::Flush {
                keyspace: "default".into()
            }),
        ]
    }

    proptest! {
        #[test]
        fn operations_round_trip_and_damage_is_an_error_not_a_panic(
            op in any_op(),
            cut in 0usize..64,
            flip in any::<(usize, u8)>(),
        ) {
            let mut buf = BytesMut::new();
            op.encode(&mut buf).unwrap();
            let data = buf.freeze();
            prop_assert_eq!(Op::decode(&data).unwrap(), op.clone());
            let short = data.slice(..cut.min(data.len().saturating_sub(1)));
            prop_assert!(Op::decode(&short).is_err());
            let mut bad = data.to_vec();
            let at = flip.0 % bad.len();
            bad[at] ^= flip.1 | 1;
            let _ = Op::decode(&Bytes::from(bad));
        }
    }

    #[test]
    fn every_operation_names_its_keys() {
        let del = Op::DeleteKeys {
            keyspace: "default".into(),
            keys: vec![Bytes::from("a"), Bytes::from("b")],
        };
        assert_eq!(del.keys(), [&b"a"[..], b"b"]);
        assert!(Op::Flush {
            keyspace: "default".into()
        }
        .keys()
        .is_empty());
        assert!(del.is_write());
    }
}
