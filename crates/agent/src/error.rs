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
    /// The server's history of this device's archive is shorter than, or different from,
    /// the chain head this agent wrote last (B-8): snapshots were cut, withheld or deleted, an
    /// older copy of the server's data was put back, or the history was replaced. Nothing is
    /// read from (or written to) such an archive; an operator must look at the server.
    #[error("the server's history of this archive cannot be trusted: {0}")]
    History(cairn_backup::BackupError),
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
    /// [`AgentError::History`] for the engine's rollback and fork errors; any other error as
    /// [`AgentError::Backup`].
    pub(crate) fn history(e: cairn_backup::BackupError) -> Self {
        use cairn_backup::BackupError::{Fork, Rollback};
        match e {
            e @ (Rollback { .. } | Fork { .. }) => Self::History(e),
            other => Self::Backup(other),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
