//! The backup engine: a [`Repository`] (a block store and one archive's keys) and its jobs, one
//! module each: the walk ([`walk`]), what differs between platforms ([`platform`]), the worker
//! scheduler ([`schedule`]), backup ([`backup`]: one snapshot; [`batch`]: a folder's batches of
//! files; [`read`]: one group of files on a worker), restore ([`restore`]) and check ([`check`]).

use std::sync::Arc;

use cairn_chunk::{Algorithm, Chunker, ChunkerConfig};
use cairn_keys::{ArchiveKey, ChunkerKey, SnapshotKey};
use cairn_seal::{ArchiveId, BlockId, BlockKind, SealConfig, Sealer};

use crate::error::BackupError;
use crate::progress::Progress;
use crate::snapshot::{
    CHUNKER_KEYED_V1, CHUNKER_KEYED_V2, CHUNKER_UNKEYED_FASTCDC2020, ChunkerRecord, Snapshot,
};
use crate::store::BlockStore;

mod backup;
mod batch;
mod check;
mod platform;
mod read;
mod restore;
mod schedule;
mod walk;

pub use backup::{BackupOptions, BackupSummary};
pub use batch::BATCH_FILES;
pub use check::{CheckReport, DataCheck};
pub use read::{ContentHash, PACK_BELOW, PACK_TARGET};
pub use restore::RestoreSummary;

/// A repository: a block store and the keys of one archive.
pub struct Repository<B: BlockStore> {
    store: B,
    sealer: Sealer,
    chunker: Chunker,
    chunker_key: ChunkerKey,
    snapshot_key: SnapshotKey,
    progress: Option<Arc<dyn Progress>>,
    content_hashes: bool,
    skip_foreign: bool,
    /// Files shorter than this are packed ([`PACK_BELOW`], or 0: packing off).
    pack_below: u64,
}

impl<B: BlockStore> Repository<B> {
    /// A repository over `store` for the archive of `key`.
    pub fn new(store: B, key: &ArchiveKey, archive: ArchiveId) -> Self {
        Self {
            store,
            sealer: Sealer::new(key, archive, SealConfig::default()),
            chunker: Chunker::new(&key.chunker_key(), ChunkerConfig::DEFAULT),
            chunker_key: key.chunker_key(),
            snapshot_key: key.snapshot_key(),
            progress: None,
            content_hashes: false,
            skip_foreign: false,
            pack_below: PACK_BELOW as u64,
        }
    }

    /// Reports the progress of every backup, restore and check to `progress`.
    #[must_use]
    pub fn with_progress(mut self, progress: Arc<dyn Progress>) -> Self {
        self.progress = Some(progress);
        self
    }

    /// Hashes (SHA-256 and BLAKE3) the contents of every file a backup reads, from the same read, into
    /// [`BackupSummary::content_hashes`] (what the agent's file events carry).
    #[must_use]
    pub fn with_content_hashes(mut self, on: bool) -> Self {
        self.content_hashes = on;
        self
    }

    /// Packs small files (the default) or gives every file blocks of its own (`false`): for a
    /// deployment that will not compress different files together
    /// (`docs/design/0005-packed-small-files.md`). Either way, restore reads both.
    #[must_use]
    pub fn with_packing(mut self, on: bool) -> Self {
        self.pack_below = if on { PACK_BELOW as u64 } else { 0 };
        self
    }

    /// Lists, checks and chains only the snapshots this key made, counting the others instead of
    /// failing on them: for a store shared by several keys (the devices of one user on a
    /// server). A damaged snapshot of this key is then counted with them, not reported; a
    /// damaged head is still caught by [`check_chain`](crate::check_chain) (B-8).
    #[must_use]
    pub fn with_foreign_snapshots_skipped(mut self, on: bool) -> Self {
        self.skip_foreign = on;
        self
    }

    /// A repository with a chunker configuration other than the default (tests use small
    /// chunks).
    pub fn with_chunker(
        store: B,
        key: &ArchiveKey,
        archive: ArchiveId,
        config: ChunkerConfig,
    ) -> Self {
        let mut repo = Self::new(store, key, archive);
        repo.chunker = Chunker::new(&key.chunker_key(), config);
        repo
    }

    /// What a snapshot records about the chunker its files were cut with.
    fn chunker_record(chunker: &Chunker) -> Result<ChunkerRecord, BackupError> {
        let algorithm = match chunker.algorithm() {
            Algorithm::KeyedV1 => CHUNKER_KEYED_V1,
            Algorithm::KeyedV2 => CHUNKER_KEYED_V2,
            Algorithm::UnkeyedFastCdc2020 => CHUNKER_UNKEYED_FASTCDC2020,
            _ => {
                return Err(BackupError::Malformed(
                    "chunker algorithm without a snapshot code",
                ));
            }
        };
        let c = chunker.config();
        let size = |n: usize| u32::try_from(n).map_err(|_| BackupError::Malformed("chunk size"));
        Ok(ChunkerRecord {
            algorithm,
            min: size(c.min())?,
            avg: size(c.avg())?,
            max: size(c.max())?,
        })
    }

    /// The keyed chunker a parent snapshot's files were cut with, if it differs from this
    /// repository's: a backup continues with it, so changed files deduplicate against their
    /// previous versions. `None` (use the repository's own) for the same chunker, the unkeyed
    /// comparison mode, or sizes this build does not accept.
    fn parent_chunker(&self, parent: &ChunkerRecord) -> Option<Chunker> {
        if Self::chunker_record(&self.chunker).ok().as_ref() == Some(parent) {
            return None;
        }
        let size = |n: u32| usize::try_from(n).ok();
        let config =
            ChunkerConfig::new(size(parent.min)?, size(parent.avg)?, size(parent.max)?).ok()?;
        match parent.algorithm {
            CHUNKER_KEYED_V1 => Some(Chunker::keyed_v1(&self.chunker_key, config)),
            CHUNKER_KEYED_V2 => Some(Chunker::keyed_v2(&self.chunker_key, config)),
            _ => None,
        }
    }

    /// The store.
    pub fn store(&self) -> &B {
        &self.store
    }

    /// Opens a block of `kind` named `id`: authenticated, and its id recomputed.
    pub(crate) fn open(&self, kind: BlockKind, id: &BlockId) -> Result<Vec<u8>, BackupError> {
        self.unseal(kind, id, self.store.get_block(id)?)
    }

    /// Opens the sealed bytes of a block of `kind` named `id`: authenticated, id recomputed.
    fn unseal(
        &self,
        kind: BlockKind,
        id: &BlockId,
        sealed: Vec<u8>,
    ) -> Result<Vec<u8>, BackupError> {
        self.sealer
            .open_owned(kind, id, sealed)
            .map_err(|_| BackupError::Block(id.to_string()))
    }

    /// The sealed bytes of blocks `ids`, in order, in one store request; an answer with another
    /// number of blocks is an error.
    fn fetch_blocks(&self, ids: &[BlockId]) -> Result<Vec<Vec<u8>>, BackupError> {
        let sealed = self.store.get_blocks(ids)?;
        if sealed.len() != ids.len() {
            return Err(BackupError::Malformed(
                "store answered another number of blocks",
            ));
        }
        Ok(sealed)
    }

    /// One snapshot, authenticated (its id recomputed, its tag checked).
    ///
    /// # Errors
    /// [`BackupError::Store`] (`NotFound` for an unknown id), [`BackupError::Block`] or
    /// [`BackupError::SnapshotAuth`] for one this key did not make.
    pub fn snapshot(&self, id: &BlockId) -> Result<Snapshot, BackupError> {
        let plain = self.unseal(BlockKind::SNAPSHOT, id, self.store.get_snapshot(id)?)?;
        Snapshot::decode(&plain, &self.snapshot_key)
    }

    /// Every snapshot that authenticates with this key, with its id, oldest first. Fails on one
    /// that does not, unless foreign snapshots are skipped
    /// ([`Repository::with_foreign_snapshots_skipped`]).
    ///
    /// # Errors
    /// [`BackupError`].
    pub fn snapshots(&self) -> Result<Vec<(BlockId, Snapshot)>, BackupError> {
        self.snapshots_and_foreign().map(|(own, _)| own)
    }

    /// [`Repository::snapshots`], and how many snapshots of the store were skipped as not made
    /// with this key.
    ///
    /// # Errors
    /// [`BackupError`].
    pub fn snapshots_and_foreign(&self) -> Result<(Vec<(BlockId, Snapshot)>, u64), BackupError> {
        let mut out = Vec::new();
        let mut foreign = 0;
        for id in self.store.list_snapshots()? {
            match self.snapshot(&id) {
                Ok(s) => out.push((id, s)),
                Err(BackupError::Block(_) | BackupError::SnapshotAuth) if self.skip_foreign => {
                    foreign += 1;
                }
                Err(e) => return Err(e),
            }
        }
        out.sort_by_key(|(_, s)| s.seq);
        Ok((out, foreign))
    }
}
