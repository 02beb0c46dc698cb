//! The keyspace `links` and its keys: pure, no IO.
//!
//! ```text
//! l:{<code>}     a link: JSON {"url", "created_ms"}; written once, if absent, never changed
//! c:{<code>}     its clicks: a counter (the store's INCR), same tag, so the same partition
//! seq:{ids}      the end of the last block of ids handed out (see `code::Block`)
//! ```
//!
//! A link and its counter share the tag `{<code>}`: one partition holds everything about a
//! link, and links spread evenly over the partitions by their (scrambled) codes. The id
//! counter is one key in one partition; it is touched once per block of ids (a thousand
//! links), not once per link.

/// The keyspace of the URL shortener.
pub const KEYSPACE: &str = "links";
/// Its partitions, when this service creates it.
pub const PARTITIONS_DEFAULT: u32 = 8;
/// The id counter's key.
pub const SEQUENCE: &[u8] = b"seq:{ids}";
/// The longest URL taken (what browsers and servers commonly accept).
pub const URL_BYTES_MAX: usize = 2048;

/// The key of link `code`.
pub fn link(code: &str) -> Vec<u8> {
    format!("l:{{{code}}}").into_bytes()
}

/// The key of link `code`'s click counter.
pub fn clicks(code: &str) -> Vec<u8> {
    format!("c:{{{code}}}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvstore::partition::slot;

    #[test]
    fn a_link_and_its_counter_share_a_partition_and_links_spread() {
        assert_eq!(slot(&link("aZ3kQ9x")), slot(&clicks("aZ3kQ9x")));
        assert_eq!(slot(&link("aZ3kQ9x")), slot(b"aZ3kQ9x"));
        let slots: std::collections::HashSet<u16> = (0..1000)
            .map(|i| slot(&link(&crate::code::encode(i))))
            .collect();
        assert!(slots.len() > 900, "{}", slots.len());
    }
}
