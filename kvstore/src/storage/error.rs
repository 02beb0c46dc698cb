//! Errors of the storage engine. Each variant carries the facts needed to act on it: the path,
//! the offset, what was expected and what was found.

use std::path::PathBuf;

/// Everything that can go wrong in the storage engine.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("I/O error while {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "data directory {path} has storage format version {found}, but this build reads only \
         version {supported}; open it with a matching kvstore build or restore a backup"
    )]
    UnsupportedFormat {
        path: PathBuf,
        found: String,
        supported: u32,
    },

    #[error(
        "{path} holds kvstore segment files but no format file ({format_file}); refusing to guess \
         its format: check that --data-dir points at a kvstore data directory"
    )]
    MissingFormatFile {
        path: PathBuf,
        format_file: &'static str,
    },

    #[error(
        "data directory {path} is locked by another process (is another kvstore running on it?)"
    )]
    Locked { path: PathBuf },

    #[error(
        "corrupt data in {path} at byte offset {offset}: {reason}; only a torn write at the very \
         end of the newest segment is repaired automatically, so this was left alone (restore \
         the file from a replica or a backup)"
    )]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },

    #[error("invalid storage configuration: {0}")]
    InvalidConfig(String),

    #[error("key is {len} bytes, over the limit of {max} bytes (key_bytes_max)")]
    KeyTooLarge { len: usize, max: u32 },

    #[error("value is {len} bytes, over the limit of {max} bytes (value_bytes_max)")]
    ValueTooLarge { len: usize, max: u32 },

    #[error("version {given} is not above the last written version {last}; versions must grow")]
    VersionNotIncreasing { given: u64, last: u64 },

    #[error(
        "the engine stopped accepting writes after an earlier failure ({reason}); restart the \
         process to recover from the log"
    )]
    Poisoned { reason: String },
}

impl StorageError {
    /// Whether every replica meets this error alike for the same request (a key or value
    /// over its limit), rather than because of its own disk (an IO error, corruption, a
    /// poisoned engine). Only the former may become a request's reply on a replica: the
    /// latter would make this replica skip a write the others applied.
    pub fn is_deterministic(&self) -> bool {
        matches!(
            self,
            StorageError::KeyTooLarge { .. } | StorageError::ValueTooLarge { .. }
        )
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> StorageError {
        let path = path.into();
        move |source| StorageError::Io {
            action,
            path,
            source,
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
