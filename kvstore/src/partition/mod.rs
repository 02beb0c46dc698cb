//! Partitioning: which partition a key belongs to, and the cluster map that says where each
//! partition lives.
//!
//! A key's **slot** is Redis Cluster's, exactly: CRC16 (XMODEM) of its *hash tag* (the bytes
//! inside its first `{…}`, when that is not empty) or else of the whole key, mod 16384. A
//! keyspace has a fixed number of partitions `P`, chosen when it is created; partition `p`
//! owns the slots `[p·16384/P, (p+1)·16384/P)`. Because the count never changes, a key's
//! partition never changes either: rebalancing moves whole partitions between nodes and never
//! rehashes a key (DDIA chapter 6, "fixed number of partitions"). Keys that share a tag share
//! a slot, so they live in one partition, in key order: scans and batches over them touch one
//! Raft group.
//!
//! Every partition is a Raft group; [`map::ClusterMap`] names the group of each partition,
//! its replicas, its leader hint and its epoch. The map lives in the `meta` group
//! ([`map::META_GROUP`]); nodes and clients cache it and refresh it when a redirect shows
//! theirs is old. [`placement`] plans where replicas and leaders go.
//!
//! Everything here is pure (no IO), and part of the lean client: a client routes by it.

pub mod change;
pub mod map;
#[cfg(feature = "server")]
pub mod placement;
pub mod route;

pub use map::{ClusterMap, KeyspaceInfo, MapError, NodeInfo, NodeState, PartitionInfo};

/// Slots in the key space, as in Redis Cluster.
pub const SLOTS: u16 = 16384;

/// CRC16-CCITT in its XMODEM form (polynomial 0x1021, initial value 0, no reflection): the
/// checksum Redis Cluster hashes keys with.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// The part of `key` that is hashed: the bytes between its first `{` and the first `}` after
/// it, when there are any; otherwise the whole key (also for `{}`, an empty tag).
pub fn hash_tag(key: &[u8]) -> &[u8] {
    if let Some(open) = key.iter().position(|&b| b == b'{') {
        if let Some(len) = key[open + 1..].iter().position(|&b| b == b'}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

/// The slot of `key`, in `0..16384` (what `CLUSTER KEYSLOT` answers).
pub fn slot(key: &[u8]) -> u16 {
    crc16(hash_tag(key)) % SLOTS
}

/// The first slot of partition `p` of `partitions`.
pub fn first_slot(p: u32, partitions: u32) -> u16 {
    (u64::from(p) * u64::from(SLOTS) / u64::from(partitions.max(1))) as u16
}

/// The slots of partition `p` of `partitions`: `[p·16384/P, (p+1)·16384/P)`.
pub fn slot_range(p: u32, partitions: u32) -> std::ops::Range<u16> {
    let end = if p + 1 >= partitions {
        SLOTS
    } else {
        first_slot(p + 1, partitions)
    };
    first_slot(p, partitions)..end
}

/// The partition (of `partitions`) that owns `slot`.
pub fn partition_of_slot(slot: u16, partitions: u32) -> u32 {
    let partitions = partitions.clamp(1, u32::from(SLOTS));
    // The smallest p whose range ends after `slot`: ⌈(slot+1)·P/16384⌉ − 1.
    let p = ((u64::from(slot) + 1) * u64::from(partitions)).div_ceil(u64::from(SLOTS)) - 1;
    p as u32
}

/// The hash tag every key starting with `prefix` has, if the prefix settles it: it holds a
/// `{`, then a `}` after it with at least one byte between. A scan over such a prefix runs on
/// one partition.
pub fn tag_of_prefix(prefix: &[u8]) -> Option<&[u8]> {
    let open = prefix.iter().position(|&b| b == b'{')?;
    let len = prefix[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &prefix[open + 1..open + 1 + len])
}

/// The slot every key of a scan falls in, when the scan's bounds settle it: a prefix with a
/// complete tag, or a range whose two ends share a prefix with one. `None`: keys of any slot
/// may match, so the scan runs on every partition.
pub fn scan_slot(prefix: Option<&[u8]>, start: Option<&[u8]>, end: Option<&[u8]>) -> Option<u16> {
    if let Some(tag) = prefix.and_then(tag_of_prefix) {
        return Some(crc16(tag) % SLOTS);
    }
    let (start, end) = (start?, end?);
    let common = start.iter().zip(end).take_while(|(a, b)| a == b).count();
    tag_of_prefix(&start[..common]).map(|tag| crc16(tag) % SLOTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The examples of the Redis Cluster specification ("Keys hash tags").
    #[test]
    fn slots_are_redis_clusters() {
        assert_eq!(crc16(b"123456789"), 0x31C3, "the XMODEM check value");
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(
            hash_tag(b"foo{}{bar}"),
            b"foo{}{bar}",
            "an empty first tag: the whole key"
        );
        assert_eq!(hash_tag(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hash_tag(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hash_tag(b"{bar"), b"{bar", "no closing brace");
        assert_eq!(hash_tag(b""), b"");
        // Figures from a real `redis-cli CLUSTER KEYSLOT` (Redis 7).
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"hello"), 866);
        assert_eq!(slot(b""), 0);
    }

    #[test]
    fn partitions_split_the_slots_into_even_contiguous_ranges() {
        assert_eq!(slot_range(0, 64), 0..256);
        assert_eq!(slot_range(63, 64), 16128..16384);
        assert_eq!(slot_range(0, 1), 0..16384);
        assert_eq!(slot_range(2, 3), 10922..16384);
        for partitions in [1u32, 2, 3, 7, 64, 1000, 16384] {
            let mut next = 0u32;
            for p in 0..partitions {
                let range = slot_range(p, partitions);
                assert_eq!(u32::from(range.start), next, "P={partitions} p={p}");
                assert!(range.end > range.start);
                next = u32::from(range.end);
            }
            assert_eq!(next, u32::from(SLOTS));
        }
    }

    #[test]
    fn scans_with_a_tag_run_on_one_slot() {
        let s = slot(b"{user1}");
        assert_eq!(scan_slot(Some(b"{user1}:"), None, None), Some(s));
        assert_eq!(scan_slot(Some(b"x{user1}"), None, None), Some(s));
        assert_eq!(scan_slot(Some(b"{user1"), None, None), None);
        assert_eq!(scan_slot(Some(b"{}x"), None, None), None);
        assert_eq!(
            scan_slot(None, Some(b"{user1}a"), Some(b"{user1}z")),
            Some(s)
        );
        assert_eq!(scan_slot(None, Some(b"{user1}a"), Some(b"{user2}a")), None);
        assert_eq!(scan_slot(None, Some(b"{user1}a"), None), None);
        assert_eq!(scan_slot(None, None, None), None);
    }

    proptest! {
        #[test]
        fn every_slot_has_exactly_the_partition_whose_range_holds_it(
            slot in 0u16..SLOTS, partitions in 1u32..=16384,
        ) {
            let p = partition_of_slot(slot, partitions);
            prop_assert!(p < partitions);
            prop_assert!(slot_range(p, partitions).contains(&slot));
        }

        #[test]
        fn keys_with_a_tag_share_its_slot(tag in "[a-z0-9]{1,12}", a in ".{0,8}", b in ".{0,8}") {
            let tag_key = format!("{{{tag}}}");
            let a = format!("{tag_key}{a}");
            let b = format!("{tag_key}{b}");
            prop_assert_eq!(slot(a.as_bytes()), slot(b.as_bytes()));
            prop_assert_eq!(slot(a.as_bytes()), slot(tag.as_bytes()));
            prop_assert_eq!(scan_slot(Some(tag_key.as_bytes()), None, None), Some(slot(a.as_bytes())));
        }
    }
}
