//! The key type of the in-memory index.
//!
//! A lookup in an index of millions of keys spends its time comparing the searched key with
//! the keys in the tree's nodes. If every key were a separate heap allocation, each of those
//! comparisons would first chase a pointer to memory that is likely not in cache. Keys of up to
//! [`INLINE_KEY_BYTES`] bytes (most keys: a keyspace prefix plus a short name) are therefore
//! stored inside the node itself, which also saves an allocation per key; longer keys live on
//! the heap. Either way the key behaves as a byte slice: it is ordered, compared and looked up
//! exactly as `[u8]` is.

use std::borrow::Borrow;
use std::cmp::Ordering;

/// Keys up to this long are stored inline (the enum is then 32 bytes, like a boxed slice's
/// pointer and length plus the allocation it would need).
pub(super) const INLINE_KEY_BYTES: usize = 30;

#[derive(Clone)]
pub(super) enum IndexKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    Heap(Box<[u8]>),
}

impl IndexKey {
    pub(super) fn as_slice(&self) -> &[u8] {
        match self {
            IndexKey::Inline { len, bytes } => &bytes[..*len as usize],
            IndexKey::Heap(key) => key,
        }
    }
}

impl From<&[u8]> for IndexKey {
    fn from(key: &[u8]) -> IndexKey {
        if key.len() <= INLINE_KEY_BYTES {
            let mut bytes = [0; INLINE_KEY_BYTES];
            bytes[..key.len()].copy_from_slice(key);
            IndexKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            IndexKey::Heap(key.into())
        }
    }
}

impl From<Box<[u8]>> for IndexKey {
    fn from(key: Box<[u8]>) -> IndexKey {
        if key.len() <= INLINE_KEY_BYTES {
            IndexKey::from(&key[..])
        } else {
            IndexKey::Heap(key)
        }
    }
}

impl std::ops::Deref for IndexKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

// `Borrow<[u8]>` lets the index be searched with a plain `&[u8]`; it requires that ordering
// and equality agree with the slice's, which they do by construction.
impl Borrow<[u8]> for IndexKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for IndexKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for IndexKey {}

impl PartialOrd for IndexKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IndexKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::fmt::Debug for IndexKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", bytes::Bytes::copy_from_slice(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn inline_up_to_the_limit_then_heap() {
        assert!(matches!(
            IndexKey::from(&[7u8; 30][..]),
            IndexKey::Inline { len: 30, .. }
        ));
        assert!(matches!(IndexKey::from(&[7u8; 31][..]), IndexKey::Heap(_)));
        assert!(matches!(
            IndexKey::from(Box::<[u8]>::from(&b""[..])),
            IndexKey::Inline { len: 0, .. }
        ));
        assert_eq!(std::mem::size_of::<IndexKey>(), 32);
    }

    proptest! {
        #[test]
        fn orders_and_compares_exactly_as_byte_slices(
            a in proptest::collection::vec(any::<u8>(), 0..40),
            b in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let (ka, kb) = (IndexKey::from(&a[..]), IndexKey::from(&b[..]));
            prop_assert_eq!(ka.cmp(&kb), a.cmp(&b));
            prop_assert_eq!(ka == kb, a == b);
            prop_assert_eq!(&ka[..], &a[..]);
        }
    }
}
