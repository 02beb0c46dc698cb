//! Routing: the Raft group a request is for, by a cluster map. A cluster node routes every
//! request it gets with it, and [`crate::client::cluster::ClusterClient`] routes with the same
//! function before it sends, so both agree on every key.
//!
//! A single-key request goes to the partition that owns its key's slot; a batch to the one
//! partition all its keys share (or it is refused: a batch is atomic only inside one Raft
//! group); a scan to the partition its hash tag settles, or to the partition it names. The
//! node then serves it if it leads that group (or, for a follower read, hosts it), and
//! otherwise answers with a redirect to the leader it knows of.

use crate::partition::map::{GroupId, META_GROUP, META_KEYSPACE};
use crate::partition::{self, ClusterMap, KeyspaceInfo};
use crate::wire::{BatchOp, Consistency, ErrorCode, Request, Response};

/// Where a request goes: its group and the slot of its keys (`None`: a scan of a named
/// partition, or a request without a key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub group: GroupId,
    pub slot: Option<u16>,
}

/// The group `request` is for, or the error response that refuses it.
pub fn route(map: &ClusterMap, request: &Request) -> Result<Route, Response> {
    let keyspace = match request {
        Request::Get { keyspace, .. }
        | Request::Put { keyspace, .. }
        | Request::Delete { keyspace, .. }
        | Request::Incr { keyspace, .. }
        | Request::Scan { keyspace, .. }
        | Request::Batch { keyspace, .. } => keyspace,
        // Map changes are the meta group's to make.
        Request::MapChange { .. } => {
            return Ok(Route {
                group: META_GROUP,
                slot: None,
            })
        }
        Request::Hello { .. } | Request::Ping { .. } | Request::ClusterMap { .. } => {
            return Err(Response::error(
                ErrorCode::Internal,
                "this request has no partition",
            ))
        }
    };
    if keyspace == META_KEYSPACE {
        if request.is_write() {
            return Err(Response::error(
                ErrorCode::InvalidArgument,
                format!("the keyspace {META_KEYSPACE} is the store's own: it is read-only here"),
            ));
        }
        return Ok(Route {
            group: META_GROUP,
            slot: None,
        });
    }
    if map.version == 0 {
        return Err(Response::error(
            ErrorCode::Unavailable,
            "this node has no cluster map yet (it is waiting to be added); try another node",
        ));
    }
    let ks = map.keyspace(keyspace).map_err(|e| {
        Response::error(
            ErrorCode::UnknownKeyspace,
            format!("{e} (create it with `kvstore keyspace create`)"),
        )
    })?;
    let at = |slot: u16| Route {
        group: ks.group_of_slot(slot),
        slot: Some(slot),
    };
    match request {
        Request::Get { key, .. }
        | Request::Put { key, .. }
        | Request::Delete { key, .. }
        | Request::Incr { key, .. } => Ok(at(partition::slot(key))),
        Request::Batch { ops, .. } => {
            let keys: Vec<&[u8]> = ops
                .iter()
                .map(|op| match op {
                    BatchOp::Put { key, .. } | BatchOp::Delete { key, .. } => &key[..],
                })
                .collect();
            match keys.first() {
                None => Ok(Route {
                    group: ks.group(0),
                    slot: None,
                }),
                Some(first) => {
                    let slot = same_partition(ks, &keys).map_err(|message| {
                        Response::error(ErrorCode::CrossPartition, format!("a batch {message}"))
                    })?;
                    debug_assert_eq!(
                        ks.group_of_slot(slot),
                        ks.group_of_slot(partition::slot(first))
                    );
                    Ok(at(slot))
                }
            }
        }
        Request::Scan {
            range, partition, ..
        } => {
            let settled = partition::scan_slot(
                range.prefix.as_deref(),
                range.start.as_deref(),
                range.end.as_deref(),
            );
            match (settled, partition) {
                (Some(slot), _) => Ok(at(slot)),
                (None, Some(p)) if *p < ks.partitions => Ok(Route {
                    group: ks.group(*p),
                    slot: None,
                }),
                (None, Some(p)) => Err(Response::error(
                    ErrorCode::InvalidArgument,
                    format!(
                        "partition {p} of keyspace {:?}, which has {}",
                        ks.name, ks.partitions
                    ),
                )),
                (None, None) if ks.partitions == 1 => Ok(Route {
                    group: ks.group(0),
                    slot: None,
                }),
                (None, None) => Err(Response::error(
                    ErrorCode::CrossPartition,
                    format!(
                        "a scan without a hash tag spans the {} partitions of keyspace {:?}: \
                         name one (the scan's partition field; ClusterClient scans them all \
                         and merges the pages) or give the prefix a hash tag, e.g. {{user1}}:",
                        ks.partitions, ks.name
                    ),
                )),
            }
        }
        Request::Hello { .. }
        | Request::Ping { .. }
        | Request::ClusterMap { .. }
        | Request::MapChange { .. } => {
            unreachable!("answered above")
        }
    }
}

/// The slot of `keys` if they all fall in one partition of `ks`; else a message naming
/// the first two that differ ("… keys are in different partitions: …").
pub fn same_partition(ks: &KeyspaceInfo, keys: &[&[u8]]) -> Result<u16, String> {
    let first = keys.first().map_or(0, |k| partition::slot(k));
    let group = ks.group_of_slot(first);
    for (i, key) in keys.iter().enumerate().skip(1) {
        let slot = partition::slot(key);
        if ks.group_of_slot(slot) != group {
            return Err(format!(
                "is atomic within one partition, and its keys are in different ones: key 0 \
                 ({}) is in slot {first} (partition {}), key {i} ({}) in slot {slot} \
                 (partition {}); give the keys one hash tag, e.g. {{user1}}:a and {{user1}}:b",
                String::from_utf8_lossy(keys[0]),
                partition::partition_of_slot(first, ks.partitions),
                String::from_utf8_lossy(key),
                partition::partition_of_slot(slot, ks.partitions),
            ));
        }
    }
    Ok(first)
}

/// The consistency a read is served at: the one it names, else its keyspace's (`keyspace
/// create --read-consistency`, linearizable unless told), else linearizable (an unknown
/// keyspace is refused when the read is routed).
pub fn read_consistency(map: &ClusterMap, request: &Request) -> Consistency {
    match request {
        Request::Get {
            keyspace,
            consistency,
            ..
        }
        | Request::Scan {
            keyspace,
            consistency,
            ..
        } => consistency.unwrap_or_else(|| {
            map.keyspace(keyspace)
                .map_or(Consistency::Linearizable, |k| k.read_consistency)
        }),
        _ => Consistency::Linearizable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::map::NodeInfo;
    use crate::wire::{Condition, Consistency, ScanRange};
    use bytes::Bytes;

    fn map(partitions: u32) -> ClusterMap {
        let nodes = (1..=3)
            .map(|id| NodeInfo {
                id,
                ..Default::default()
            })
            .collect();
        ClusterMap::bootstrap(nodes, partitions, 3)
    }

    fn get(key: &'static [u8]) -> Request {
        Request::Get {
            keyspace: "default".into(),
            key: Bytes::from_static(key),
            consistency: Some(Consistency::Linearizable),
        }
    }

    fn scan(prefix: Option<&'static [u8]>, partition: Option<u32>) -> Request {
        Request::Scan {
            keyspace: "default".into(),
            range: ScanRange {
                prefix: prefix.map(Bytes::from_static),
                ..ScanRange::default()
            },
            limit: 0,
            continuation: None,
            keys_only: false,
            consistency: Some(Consistency::Linearizable),
            partition,
        }
    }

    fn code(result: Result<Route, Response>) -> ErrorCode {
        match result {
            Err(Response::Error { code, .. }) => code,
            other => panic!("not an error: {other:?}"),
        }
    }

    #[test]
    fn requests_go_to_the_partition_of_their_keys() {
        let m = map(64);
        let r = route(&m, &get(b"123456789")).unwrap();
        assert_eq!(
            r,
            Route {
                group: 1 + 12739 / 256,
                slot: Some(12739)
            }
        );
        let put = |key: &'static [u8]| BatchOp::Put {
            key: Bytes::from_static(key),
            value: Bytes::new(),
            ttl_ms: None,
            condition: Condition::None,
        };
        let batch = |ops| Request::Batch {
            keyspace: "default".into(),
            ops,
        };
        let same = route(&m, &batch(vec![put(b"{u1}a"), put(b"{u1}b")])).unwrap();
        assert_eq!(same.slot, Some(partition::slot(b"u1")));
        let across = route(&m, &batch(vec![put(b"{u1}a"), put(b"{u2}b")]));
        let Err(Response::Error { code, message }) = across else {
            panic!("a batch across partitions was routed");
        };
        assert_eq!(code, ErrorCode::CrossPartition);
        assert!(
            message.contains(&format!("slot {}", partition::slot(b"u2"))),
            "{message}"
        );
        assert_eq!(code_of_keyspace(&m, "nope"), ErrorCode::UnknownKeyspace);
    }

    fn code_of_keyspace(m: &ClusterMap, ks: &str) -> ErrorCode {
        code(route(
            m,
            &Request::Get {
                keyspace: ks.into(),
                key: Bytes::from_static(b"k"),
                consistency: Some(Consistency::Linearizable),
            },
        ))
    }

    #[test]
    fn scans_run_on_the_partition_their_tag_or_their_request_names() {
        let m = map(64);
        let tagged = route(&m, &scan(Some(b"{user1}:"), None)).unwrap();
        assert_eq!(tagged.slot, Some(partition::slot(b"user1")));
        assert_eq!(route(&m, &scan(None, Some(5))).unwrap().group, 6);
        assert_eq!(
            code(route(&m, &scan(None, None))),
            ErrorCode::CrossPartition
        );
        assert_eq!(
            code(route(&m, &scan(Some(b"user"), Some(64)))),
            ErrorCode::InvalidArgument
        );
        assert_eq!(route(&map(1), &scan(None, None)).unwrap().group, 1);
    }

    #[test]
    fn the_meta_keyspace_is_read_only_and_a_node_without_a_map_says_so() {
        let m = map(4);
        let meta_get = Request::Get {
            keyspace: META_KEYSPACE.into(),
            key: Bytes::from_static(b"cluster-map"),
            consistency: Some(Consistency::Linearizable),
        };
        assert_eq!(route(&m, &meta_get).unwrap().group, META_GROUP);
        let meta_put = Request::Put {
            keyspace: META_KEYSPACE.into(),
            key: Bytes::from_static(b"cluster-map"),
            value: Bytes::new(),
            ttl_ms: None,
            condition: Condition::None,
        };
        assert_eq!(code(route(&m, &meta_put)), ErrorCode::InvalidArgument);
        assert_eq!(
            code(route(&ClusterMap::default(), &get(b"k"))),
            ErrorCode::Unavailable
        );
    }
}
