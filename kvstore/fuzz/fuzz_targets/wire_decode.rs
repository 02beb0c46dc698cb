//! Fuzz target for the binary wire protocol: arbitrary bytes through frame and message decoding.
//!
//! The property lives in `kvstore::wire::fuzz_decode` (never panic; anything that decodes
//! re-encodes to an equal message) so that a proptest in the crate checks it on every CI run;
//! this file only connects it to libFuzzer and must not grow its own logic.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kvstore::wire::fuzz_decode(data);
});
