//! Why a file could not be understood as a Go binary: one variant per thing a user can act on.
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GoBinError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("not an ELF file (bad magic or unreadable header): {0}")]
    NotElf(String),
    #[error("not a Go binary: no .gopclntab or Go build info found")]
    NotGo,
    #[error("{0} is too old: Go 1.17 or newer is required (register ABI)")]
    TooOld(String),
    #[error("unsupported architecture {0}: only x86-64 (and arm64 for inspect) are understood")]
    UnsupportedArch(String),
    #[error("cannot tell which Go version built it: {0}")]
    UnknownVersion(String),
    #[error("corrupt or truncated Go binary: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, GoBinError>;

/// Shorthand for a `Corrupt` error built from a format string.
macro_rules! corrupt {
    ($($arg:tt)*) => { $crate::gobin::error::GoBinError::Corrupt(format!($($arg)*)) };
}
pub(crate) use corrupt;
