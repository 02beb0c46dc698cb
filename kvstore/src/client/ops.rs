//! The typed operations both clients offer, as a request to build and an answer to read:
//! [`super::Client`] sends them on its one connection, [`super::cluster::ClusterClient`]
//! through its redirects and retries. One definition of each keeps the two from drifting.

use bytes::Bytes;

use super::{unexpected, Result, ScanOptions, ScanPage};
use crate::wire::{BatchOp, Condition, Consistency, ReadLag, Request, Response, Versioned};

pub(super) fn get(keyspace: &str, key: &[u8], consistency: Option<Consistency>) -> Request {
    Request::Get {
        keyspace: keyspace.into(),
        key: Bytes::copy_from_slice(key),
        consistency,
    }
}

/// The value found (if any), and how stale it may be (a follower read).
pub(super) fn got(response: Response) -> Result<(Option<Versioned>, Option<ReadLag>)> {
    match response {
        Response::GetOk { found, lag } => Ok((found, lag)),
        other => Err(unexpected(other)),
    }
}

pub(super) fn put(
    keyspace: &str,
    key: &[u8],
    value: &[u8],
    ttl_ms: Option<u64>,
    condition: Condition,
) -> Request {
    Request::Put {
        keyspace: keyspace.into(),
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(value),
        ttl_ms,
        condition,
    }
}

/// A put's answer as the clients report it.
pub(super) fn written(response: Response) -> Result<super::WriteResult> {
    let (applied, version) = put_done(response)?;
    Ok(super::WriteResult { applied, version })
}

/// Whether the put applied, and the key's version.
pub(super) fn put_done(response: Response) -> Result<(bool, u64)> {
    match response {
        Response::PutOk { applied, version } => Ok((applied, version)),
        other => Err(unexpected(other)),
    }
}

pub(super) fn delete(keyspace: &str, key: &[u8]) -> Request {
    Request::Delete {
        keyspace: keyspace.into(),
        key: Bytes::copy_from_slice(key),
        condition: Condition::None,
    }
}

/// Whether the deleted key existed.
pub(super) fn deleted(response: Response) -> Result<bool> {
    match response {
        Response::DeleteOk { existed, .. } => Ok(existed),
        other => Err(unexpected(other)),
    }
}

pub(super) fn incr(keyspace: &str, key: &[u8], delta: i64) -> Request {
    Request::Incr {
        keyspace: keyspace.into(),
        key: Bytes::copy_from_slice(key),
        delta,
    }
}

/// The counter's new value.
pub(super) fn counted(response: Response) -> Result<i64> {
    match response {
        Response::IncrOk { value, .. } => Ok(value),
        other => Err(unexpected(other)),
    }
}

pub(super) fn scan(keyspace: &str, options: ScanOptions) -> Request {
    Request::Scan {
        keyspace: keyspace.into(),
        range: options.range,
        limit: options.limit,
        continuation: options.continuation,
        keys_only: options.keys_only,
        consistency: options.consistency,
        partition: None,
    }
}

/// One page of a scan.
pub(super) fn scanned(response: Response) -> Result<ScanPage> {
    match response {
        Response::ScanOk {
            entries,
            continuation,
            lag,
        } => Ok(ScanPage {
            entries,
            continuation,
            lag,
        }),
        other => Err(unexpected(other)),
    }
}

pub(super) fn batch(keyspace: &str, ops: Vec<BatchOp>) -> Request {
    Request::Batch {
        keyspace: keyspace.into(),
        ops,
    }
}

/// A batch's answer (`BatchOk`: whether it applied, and each op's result).
pub(super) fn batched(response: Response) -> Result<Response> {
    match response {
        r @ Response::BatchOk { .. } => Ok(r),
        other => Err(unexpected(other)),
    }
}
