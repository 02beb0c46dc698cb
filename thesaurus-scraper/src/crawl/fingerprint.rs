//! Content fingerprints, so that the same text under many URLs is processed once: an exact
//! fingerprint (128 bits of FNV-1a over the normalised text) and a simhash (Charikar's, over
//! word 3-shingles) for near duplicates, which differ in a few of its 64 bits.
//!
//! Near duplicates are found through bands: split the simhash into [`BANDS`] pieces of 16
//! bits; two hashes within [`NEAR_BITS`] bits of each other agree on at least one whole band
//! (pigeonhole: 3 differing bits touch at most 3 of the 4 bands), so a page need only be
//! compared with the pages that share one of its bands.

/// Bands a simhash is split into for lookup.
pub const BANDS: u32 = 4;
/// Simhashes this close (in differing bits) are near duplicates.
pub const NEAR_BITS: u32 = 3;

fn fnv1a(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // A finaliser, so that nearby inputs spread over all the bits.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

/// Words, lowercased, for fingerprinting (punctuation and spacing do not matter).
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

/// The exact fingerprint: 32 hex digits, equal for texts equal up to case and spacing.
pub fn exact(text: &str) -> String {
    let normal: Vec<String> = words(text).collect();
    let joined = normal.join(" ");
    format!(
        "{:016x}{:016x}",
        fnv1a(1, joined.as_bytes()),
        fnv1a(2, joined.as_bytes())
    )
}

/// Charikar's simhash over word 3-shingles (single words for texts of fewer than three).
pub fn simhash(text: &str) -> u64 {
    let w: Vec<String> = words(text).collect();
    let mut counts = [0i64; 64];
    let mut add = |feature: &str| {
        let h = fnv1a(3, feature.as_bytes());
        for (bit, c) in counts.iter_mut().enumerate() {
            *c += if h >> bit & 1 == 1 { 1 } else { -1 };
        }
    };
    if w.len() < 3 {
        w.iter().for_each(|x| add(x));
    } else {
        for s in w.windows(3) {
            add(&s.join(" "));
        }
    }
    counts
        .iter()
        .enumerate()
        .filter(|(_, c)| **c > 0)
        .fold(0u64, |h, (bit, _)| h | 1 << bit)
}

/// Band `i` (0-based) of a simhash.
pub fn band(hash: u64, i: u32) -> u16 {
    (hash >> (16 * i)) as u16
}

pub fn near(a: u64, b: u64) -> bool {
    (a ^ b).count_ones() <= NEAR_BITS
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "SQLite is an in-process library that implements a self-contained, \
        serverless, zero-configuration, transactional SQL database engine. The code for \
        SQLite is in the public domain and is thus free for use for any purpose, commercial \
        or private. SQLite is the most widely deployed database in the world with more \
        applications than we can count, including several high-profile projects.";

    #[test]
    fn exact_ignores_case_and_spacing_only() {
        assert_eq!(
            exact(TEXT),
            exact(&TEXT.to_uppercase().replace(' ', "\n  "))
        );
        assert_ne!(exact(TEXT), exact(&TEXT.replace("public", "private")));
        assert_eq!(exact(TEXT).len(), 32);
    }

    #[test]
    fn a_small_edit_is_near_and_another_text_is_far() {
        let a = simhash(TEXT);
        let edited = TEXT.replace("several", "many");
        let b = simhash(&format!("{edited} Last updated 2021-10-06."));
        let other = simhash(
            "Any large web-footed bird of the subfamily Anserinae, and belonging to \
             Anser, Branta, Chen, and several allied genera. A silly creature; a simpleton.",
        );
        assert!((a ^ b).count_ones() < (a ^ other).count_ones());
        assert!(
            (a ^ other).count_ones() > 16,
            "{}",
            (a ^ other).count_ones()
        );
        assert!(near(a, a));
        // Pigeonhole: near hashes share a band.
        let flipped = a ^ 0b1 ^ 1 << 20 ^ 1 << 40;
        assert!(near(a, flipped));
        assert!((0..BANDS).any(|i| band(a, i) == band(flipped, i)));
    }
}
