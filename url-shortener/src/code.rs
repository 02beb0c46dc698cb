//! Short codes: pure, no IO.
//!
//! A generated code is a number from a cluster-wide sequence, scrambled and written in
//! base 62, always [`CODE_LEN`] characters: `id → permute(id) → base62`. Two different ids
//! can never give one code, because [`permute`] is a bijection on `0..CODE_SPACE` (a Feistel
//! network over 42 bits, walked until it lands inside the space). So uniqueness across nodes
//! comes from the ids alone: each process takes a block of ids from the store with one
//! atomic increment ([`Block`]) and hands them out without asking anyone. The scrambling
//! only makes codes look random (so they do not reveal how many links exist, nor the next
//! one); it is not a secret.
//!
//! Custom aliases share the namespace: they are written only if absent, and a generated code
//! that happens to equal an alias already taken is skipped.

/// The alphabet of codes: digits, then upper case, then lower case (URL-safe, no escaping).
pub const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters in a generated code.
pub const CODE_LEN: usize = 7;
/// How many generated codes exist: 62^7, about 3.5 million million.
pub const CODE_SPACE: u64 = 62u64.pow(CODE_LEN as u32);
/// A custom alias's length, at least and at most.
pub const ALIAS_LEN: (usize, usize) = (3, 32);
/// Paths the service itself answers: never a code.
pub const RESERVED: &[&str] = &["api", "health", "metrics", "favicon.ico", "robots.txt"];

/// Bits of the Feistel network: the smallest even width whose range holds [`CODE_SPACE`].
const FEISTEL_BITS: u32 = 42;
const HALF_BITS: u32 = FEISTEL_BITS / 2;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
const ROUNDS: u64 = 4;
/// The network's key: fixed, so a code always means the same id (it scrambles, it does not
/// protect).
const KEY: u64 = 0x5EED_C0DE_2026_1207;

fn round_fn(half: u64, round: u64) -> u64 {
    // SplitMix64's finaliser over the half, the round and the key.
    let mut z = half ^ KEY.wrapping_add(round.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & HALF_MASK
}

fn feistel(x: u64) -> u64 {
    let (mut l, mut r) = (x >> HALF_BITS, x & HALF_MASK);
    for round in 0..ROUNDS {
        (l, r) = (r, l ^ round_fn(r, round));
    }
    (l << HALF_BITS) | r
}

fn feistel_inverse(x: u64) -> u64 {
    let (mut l, mut r) = (x >> HALF_BITS, x & HALF_MASK);
    for round in (0..ROUNDS).rev() {
        (l, r) = (r ^ round_fn(l, round), l);
    }
    (l << HALF_BITS) | r
}

/// A bijection of `0..CODE_SPACE` onto itself (cycle walking: a Feistel permutation of the
/// 42-bit range, applied again while the result falls outside the space).
pub fn permute(id: u64) -> u64 {
    assert!(id < CODE_SPACE, "id {id} is outside the code space");
    let mut x = feistel(id);
    while x >= CODE_SPACE {
        x = feistel(x);
    }
    x
}

/// The inverse of [`permute`].
pub fn unpermute(x: u64) -> u64 {
    assert!(x < CODE_SPACE, "{x} is outside the code space");
    let mut id = feistel_inverse(x);
    while id >= CODE_SPACE {
        id = feistel_inverse(id);
    }
    id
}

/// The code of sequence number `id` (`id < CODE_SPACE`).
pub fn encode(id: u64) -> String {
    let mut n = permute(id);
    let mut out = [b'0'; CODE_LEN];
    for slot in out.iter_mut().rev() {
        *slot = ALPHABET[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out.to_vec()).expect("ASCII")
}

/// The sequence number a generated code stands for, if it is one.
pub fn decode(code: &str) -> Option<u64> {
    if code.len() != CODE_LEN {
        return None;
    }
    let mut n = 0u64;
    for c in code.bytes() {
        let digit = ALPHABET.iter().position(|&a| a == c)? as u64;
        n = n * 62 + digit;
    }
    Some(unpermute(n))
}

/// Whether `code` could name a link (generated or custom): what a redirect looks up.
pub fn plausible(code: &str) -> bool {
    (ALIAS_LEN.0..=ALIAS_LEN.1.max(CODE_LEN)).contains(&code.len())
        && code
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        && !RESERVED.contains(&code)
}

/// Checks a custom alias: 3 to 32 letters, digits, `-` or `_`, and not a reserved path.
pub fn check_alias(alias: &str) -> Result<(), String> {
    let (lo, hi) = ALIAS_LEN;
    if !(lo..=hi).contains(&alias.len()) {
        return Err(format!("an alias is {lo} to {hi} characters"));
    }
    if !alias
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
    {
        return Err("an alias is letters, digits, '-' and '_' only".into());
    }
    if RESERVED.contains(&alias) {
        return Err(format!("{alias:?} is a path the service answers itself"));
    }
    Ok(())
}

/// A block of sequence numbers a process owns: `[next, end)`. The store's counter is the
/// end of the last block handed out; an increment by the block's size both reserves a block
/// and says where it ends, atomically, so no two processes ever own one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Block {
    pub next: u64,
    pub end: u64,
}

impl Block {
    /// The block an increment by `size` that returned `counter` reserved.
    pub fn reserved(counter: u64, size: u64) -> Block {
        Block {
            next: counter - size,
            end: counter,
        }
    }

    /// The next number, or `None` when the block is used up.
    pub fn take(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_seven_url_safe_characters_and_decode_to_their_id() {
        for id in (0..20_000).chain([CODE_SPACE - 1, CODE_SPACE / 2, 1 << 40]) {
            let code = encode(id);
            assert_eq!(code.len(), CODE_LEN);
            assert!(code.bytes().all(|c| c.is_ascii_alphanumeric()), "{code}");
            assert_eq!(decode(&code), Some(id), "{code}");
        }
    }

    #[test]
    fn different_ids_never_share_a_code_and_neighbours_do_not_look_alike() {
        let codes: HashSet<String> = (0..200_000).map(encode).collect();
        assert_eq!(codes.len(), 200_000);
        // Consecutive ids differ in most places (the sequence is not readable from codes).
        let (a, b) = (encode(1000), encode(1001));
        let same = a.bytes().zip(b.bytes()).filter(|(x, y)| x == y).count();
        assert!(same <= 3, "{a} {b}");
    }

    #[test]
    fn the_permutation_is_a_bijection_of_a_small_window_of_the_space() {
        // Every value permute gives is inside the space, and unpermute undoes it.
        for id in (CODE_SPACE - 5_000..CODE_SPACE).chain(0..5_000) {
            let x = permute(id);
            assert!(x < CODE_SPACE);
            assert_eq!(unpermute(x), id);
        }
    }

    #[test]
    fn aliases_and_lookups_refuse_what_is_not_a_code() {
        assert!(check_alias("my-talk_2026").is_ok());
        assert!(check_alias("ab").is_err());
        assert!(check_alias(&"a".repeat(33)).is_err());
        assert!(check_alias("a/b").is_err());
        assert!(check_alias("metrics").is_err());
        assert!(plausible(&encode(7)));
        assert!(plausible("my-talk_2026"));
        assert!(!plausible("health"));
        assert!(!plausible("a.b"));
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("abc!efg"), None);
    }

    #[test]
    fn a_block_hands_out_each_of_its_numbers_once() {
        let mut b = Block::reserved(3000, 1000);
        let got: Vec<u64> = std::iter::from_fn(|| b.take()).collect();
        assert_eq!(got, (2000..3000).collect::<Vec<_>>());
        assert_eq!(b.take(), None);
        assert_eq!(Block::default().take(), None);
    }
}
