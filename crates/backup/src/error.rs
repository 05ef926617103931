//! Errors.

use std::io;
use std::path::PathBuf;

/// A block store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No block or snapshot with that id.
    #[error("not found")]
    NotFound,
    /// The underlying archive failed.
    #[error("archive: {0}")]
    Archive(#[from] cairn_archive::ArchiveError),
    /// Another failure (a remote store's transport, say).
    #[error("store: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A backup, restore or check failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing local files failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The block store failed.
    #[error("block store: {0}")]
    Store(#[from] StoreError),
    /// A block did not open: wrong key, or it was changed (its id is recomputed on open).
    #[error("block {0} failed authentication")]
    Block(String),
    /// A tree or snapshot object is malformed, or names something unsafe (`..`, `/`, NUL).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A snapshot's authentication tag does not match (it was not made with this key).
    #[error("snapshot authentication failed")]
    SnapshotAuth,
    /// The restore target exists and is not an empty directory.
    #[error("restore target {0} is not empty")]
    TargetNotEmpty(PathBuf),
    /// The store shows no snapshot as new as the client's head: it withheld or rolled back
    /// snapshots (B-8).
    #[error(
        "the store shows {}, older than this client's head (snapshot {head}): refusing a rolled-back view",
        store.map_or_else(|| "no snapshot".to_owned(), |s| format!("snapshots up to {s}"))
    )]
    Rollback {
        /// The client's head sequence number.
        head: u64,
        /// The newest sequence number the store shows, if any.
        store: Option<u64>,
    },
    /// The store's newest snapshot does not descend from the client's head (B-8).
    #[error(
        "the store's snapshot chain does not lead back to this client's head (snapshot {head}): refusing a forked view"
    )]
    Fork {
        /// The client's head sequence number.
        head: u64,
    },
    /// A path to restore names nothing in the snapshot (or goes through a file or symlink, or
    /// has `.`, `..` or unsafe components).
    #[error("no such path in the snapshot: {0}")]
    PathNotFound(String),
    /// A check subset `n/of` needs `1 <= n <= of`.
    #[error("invalid check subset {n}/{of}: need 1 <= n <= of")]
    InvalidSubset {
        /// The subset asked for.
        n: u32,
        /// The number of subsets.
        of: u32,
    },
    /// The sealer refused its input.
    #[error("{0}")]
    Seal(#[from] cairn_seal::SealError),
    /// The chunker refused its configuration.
    #[error("{0}")]
    Chunk(#[source] cairn_chunk::ChunkError),
    /// The file cache's database failed.
    #[error("file cache: {0}")]
    Cache(#[from] redb::Error),
    /// An invariant of the engine did not hold: a bug, or a worker panicked.
    #[error("{0}")]
    Internal(&'static str),
    /// The folders asked for cannot make one snapshot (none, relative, repeated or nested).
    #[error("{0}")]
    Usage(String),
}

impl BackupError {
    /// A chunker's error while it read `path`: reading failed ([`BackupError::Io`], as any
    /// other read of the file), or it refused its configuration.
    pub(crate) fn chunk(path: &std::path::Path, e: cairn_chunk::ChunkError) -> Self {
        match e {
            cairn_chunk::ChunkError::Io(source) => Self::io(path, source),
            other => Self::Chunk(other),
        }
    }

    pub(crate) fn io(path: &std::path::Path, source: io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
