//! placeholder crate root, replaced below
pub mod storage;
