//! The keyspace `url-shortener` and its keys: pure, no IO.
//!
//! Every key of this case study is made here, so its layout reads in one place and its hash
//! tags are chosen on purpose. A key's slot is Redis Cluster's: the CRC16 of the part inside
//! its first `{…}`, or of the whole key. Keys that share a tag share a partition, so they can
//! be scanned in order and written in one atomic batch; keys with different tags spread over
//! the partitions.
//!
//! ```text
//! item:{<name>}      one item (the example: replace it with your data model)
//! ```

/// The keyspace of this case study.
pub const KEYSPACE: &str = "url-shortener";
/// Its partitions, when this service creates it.
pub const PARTITIONS_DEFAULT: u32 = 8;
/// The longest item name taken.
pub const NAME_BYTES_MAX: usize = 256;
/// The largest item value taken.
pub const VALUE_BYTES_MAX: usize = 64 * 1024;

/// The key of item `name`: its own tag, so items spread over every partition.
pub fn item(name: &str) -> Vec<u8> {
    format!("item:{{{name}}}").into_bytes()
}

/// Checks an item's name: not empty, not too long, no braces (they would change the tag).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the name is empty".into());
    }
    if name.len() > NAME_BYTES_MAX {
        return Err(format!("the name is over {NAME_BYTES_MAX} bytes"));
    }
    if name.contains(['{', '}']) {
        return Err("the name may not contain { or }".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvstore::partition::slot;

    #[test]
    fn an_item_s_key_hashes_by_its_name_alone() {
        assert_eq!(slot(&item("a")), slot(b"a"));
        assert_ne!(slot(&item("a")), slot(&item("b")));
    }

    #[test]
    fn names_that_would_break_the_layout_are_refused() {
        assert!(check_name("ok").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a{b}").is_err());
        assert!(check_name(&"x".repeat(NAME_BYTES_MAX + 1)).is_err());
    }
}
