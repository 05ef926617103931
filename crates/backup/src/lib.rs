//! Cairn's backup engine: turns one or several folders into an encrypted, deduplicated snapshot over a block
//! store, and back; checks a repository.
//!
//! Snapshots are trees of directories (with hard links, extended attributes and empty
//! directories) and authenticated snapshot records that name their chunker and parent; a redb
//! file cache lets unchanged files go unread; files are cut, named and sealed on the rayon pool
//! with memory bounded per worker; restore (whole or by path) and check (structure, every block
//! or one subset) run in parallel and authenticate every block; a progress callback reports all
//! three; [`check_chain`] refuses a store that rolled back or forked this client's chain (B-8).
//! `benches/peers/run.sh` measures it against restic, BorgBackup and bupstash.
//!
//! | type | use |
//! | --- | --- |
//! | [`Repository`], [`BackupOptions`] | backup, restore (by path), check (subsets), list snapshots, progress |
//! | [`Repository::diff`], [`Change`] | what changed between two snapshots, from their trees (unchanged subtrees skipped) |
//! | [`check_chain`], [`ChainHead`] | the client's chain head and the B-8 check |
//! | [`BlockStore`], [`MemoryStore`], [`ArchiveStore`] | where sealed blocks and snapshots live |
//! | [`FileCache`] | the local cache that lets unchanged files go unread |
//! | [`Tree`], [`Entry`], [`Snapshot`] | the objects (`docs/format/backup.md`) |
//!
//! # Example
//!
//! ```
//! use cairn_backup::{BackupOptions, MemoryStore, Repository};
//! use cairn_keys::ArchiveKey;
//! use cairn_seal::ArchiveId;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let src = tempfile::tempdir()?;
//! std::fs::write(src.path().join("notes.txt"), b"remember the milk")?;
//!
//! let key = ArchiveKey::generate()?;
//! let repo = Repository::new(MemoryStore::new(), &key, ArchiveId::from_bytes([1; 16]));
//! let summary = repo.backup(&BackupOptions::new("laptop", [src.path()]))?;
//! assert!(summary.blocks_sent >= 2); // one data block, one tree
//!
//! let (_, snapshot) = repo.snapshots()?.remove(0);
//! let out = tempfile::tempdir()?;
//! repo.restore(&snapshot, &out.path().join("restored"))?;
//! assert_eq!(std::fs::read(out.path().join("restored/notes.txt"))?, b"remember the milk");
//! assert!(repo.check(true)?.errors.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! - File contents, trees and snapshots are sealed with `cairn-seal` under the archive's keys,
//!   each with its own kind (a data block cannot be passed off as a tree, B-7); every block is
//!   opened with its id recomputed.
//! - Snapshots also carry a BLAKE3-keyed tag under the snapshot key, checked before decoding.
//! - Restore refuses entry names that are empty, `.`, `..`, or contain `/`, `\` or NUL, writes
//!   only into an empty target with `create_new`, and creates symlinks without following them.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cache;
mod chain;
mod diff;
mod engine;
mod error;
mod progress;
mod snapshot;
mod store;
mod tree;
mod warning;

pub use cache::{CachedFile, FileCache};
pub use chain::{ChainHead, check_chain};
pub use diff::{Change, ChangeKind};
pub use engine::{
    BATCH_FILES, BackupOptions, BackupSummary, CheckReport, ContentHash, DataCheck, PACK_BELOW,
    PACK_TARGET, Repository, RestoreSummary,
};
pub use error::{BackupError, StoreError};
pub use progress::{Phase, Progress, ProgressState};
pub use snapshot::{
    CHUNKER_KEYED_V1, CHUNKER_KEYED_V2, CHUNKER_UNKEYED_FASTCDC2020, ChunkerRecord, SNAPSHOT_MAGIC,
    SNAPSHOT_VERSION, SNAPSHOT_VERSION_MIN, Snapshot, TAG_LEN,
};
pub use store::{ArchiveStore, BlockStore, MemoryStore};
pub use tree::{
    Entry, EntryKind, MAX_ENTRIES, MAX_NAME_LEN, MAX_XATTR_VALUE, MAX_XATTRS, TREE_MAGIC,
    TREE_VERSION, TREE_VERSION_MIN, Tree, Xattrs, is_safe_name,
};
pub use warning::{MAX_RECORDED_WARNINGS, READ_ATTEMPTS, Warning, WarningKind};
