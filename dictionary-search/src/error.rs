//! The errors of reading the dictionary sources: each says which file, which line (1-based)
//! and what was wrong with it, so a damaged or unexpected file can be found and fixed.

use std::path::{Path, PathBuf};

/// A source file could not be read or did not parse.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("reading {}: {source} (is the package installed? scripts/install-dictionary-data.sh installs every source)", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {what}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        what: String,
    },
}

impl SourceError {
    pub fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SourceError + '_ {
        move |source| SourceError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn parse(path: &Path, line: usize, what: impl Into<String>) -> SourceError {
        SourceError::Parse {
            path: path.to_path_buf(),
            line,
            what: what.into(),
        }
    }

    /// The line the error is on, if it is a parse error.
    pub fn line(&self) -> Option<usize> {
        match self {
            SourceError::Parse { line, .. } => Some(*line),
            SourceError::Io { .. } => None,
        }
    }
}

pub type Result<T, E = SourceError> = std::result::Result<T, E>;
