//! Errors.

use std::path::PathBuf;

/// What can go wrong in the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The agent's directory is not one this version understands, or is damaged: a missing or
    /// malformed file, a key file readable by others.
    #[error("agent state: {0}")]
    State(String),
    /// The arguments do not make sense (an unknown snapshot, a second folder).
    #[error("{0}")]
    Usage(String),
    /// The server could not be reached, or the TLS handshake failed (a certificate not issued by
    /// the pinned CA fails here).
    #[error("cannot reach the server: {0}")]
    Transport(String),
    /// The server refused the request.
    #[error("the server answered {status} to {what}")]
    Http {
        /// The HTTP status.
        status: u16,
        /// The request.
        what: String,
    },
    /// The server no longer accepts this device's credentials (and a refresh did not help).
    #[error("the server refused this device's credentials")]
    Unauthorized,
    /// The device was deauthorized: the agent has removed its key and state and stopped.
    #[error("this device was deauthorized by an administrator: its key and state were removed")]
    Deauthorized,
    /// The backup engine failed.
    #[error(transparent)]
    Backup(#[from] cairn_backup::BackupError),
    /// Wrapping the archive key for escrow failed.
    #[error("escrow: {0}")]
    Escrow(#[from] cairn_escrow::EscrowError),
    /// Generating the archive key failed.
    #[error("key: {0}")]
    Key(#[from] cairn_keys::KeyError),
    /// The local database (event spool) failed.
    #[error("local database: {0}")]
    Db(String),
}

impl AgentError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
