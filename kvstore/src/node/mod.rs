//! The node runtime (in progress).
pub mod command;
pub mod state;
