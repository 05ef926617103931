//! The storage service: one append-only `cairn-archive` log per user, holding sealed blocks and
//! snapshot records exactly as they arrived. The server checks framing (each block's public
//! header, see `cairn-seal`), that a block's header names the id it is stored under, and that
//! an id is never given a second, different body (B-16); it never sees content.
//!
//! Records use the backup engine's kinds (1 block, 2 snapshot), so a user's server archive has
//! the same layout as a local repository.
//!
//! Every method blocks (fsync, object-store calls): call it from `spawn_blocking`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cairn_archive::{Archive, ArchiveError, Config};
use cairn_seal::BlockId;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use tokio::runtime::Handle;

use crate::db::{Db, DbError};
use crate::segments::ObjectSegments;

/// Record kind of a sealed data block.
pub const KIND_BLOCK: u8 = 1;
/// Record kind of a sealed snapshot record.
pub const KIND_SNAPSHOT: u8 = 2;

/// What the storage service refuses or fails with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// An id already holds different bytes (or a record of the other kind).
    #[error("id {0} already holds a different record")]
    Conflict(BlockId),
    /// A requested id is not stored.
    #[error("not found")]
    NotFound,
    /// The tenant's quota would be passed.
    #[error("quota exceeded")]
    Quota,
    /// The upload is not a well-framed batch of sealed blocks (`docs/format/wire.md`).
    #[error("malformed upload")]
    Malformed,
    /// The log failed.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Opening segment storage failed.
    #[error("segment storage: {0}")]
    Io(#[from] std::io::Error),
    /// The metadata database failed.
    #[error(transparent)]
    Db(#[from] DbError),
    /// A lock was poisoned by a panic.
    #[error("archive lock poisoned")]
    Poisoned,
}

/// The result of an upload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stored {
    /// Records appended.
    pub stored: usize,
    /// Records already present with identical bytes (nothing done).
    pub already_present: usize,
    /// Bytes appended (charged to the tenant's quota).
    pub bytes: u64,
}

type UserKey = (String, String);

/// One user's archive once opened. Each user has one slot, and its lock is held while the
/// archive opens, so two first requests never open (and recover) the same log side by side: a
/// second opener's recovery could cut the tail the first one's upload was appending.
type Slot = Arc<Mutex<Option<Arc<Mutex<Archive<ObjectSegments>>>>>>;

/// Every user's archive, opened on first use.
pub struct Archives {
    db: Db,
    staging: PathBuf,
    store: Arc<dyn ObjectStore>,
    /// The same store when it is a local file system (sealing links instead of copying).
    local: Option<Arc<LocalFileSystem>>,
    runtime: Handle,
    segment_target: u64,
    open: Mutex<HashMap<UserKey, Slot>>,
}

impl std::fmt::Debug for Archives {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archives")
            .field("staging", &self.staging)
            .field("store", &self.store.to_string())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, StoreError> {
    m.lock().map_err(|_| StoreError::Poisoned)
}

impl Archives {
    /// Archives staged under `staging`, sealed segments in `store` under
    /// `tenants/<tenant>/users/<user>/`.
    pub fn new(db: Db, staging: PathBuf, store: Arc<dyn ObjectStore>, runtime: Handle) -> Self {
        Self {
            db,
            staging,
            store,
            runtime,
            local: None,
            segment_target: cairn_archive::DEFAULT_SEGMENT_TARGET,
            open: Mutex::default(),
        }
    }

    /// [`Archives::new`] over a local file-system store: sealed segments are published by hard
    /// link when staging and store share a file system (written once, not copied).
    pub fn new_local(
        db: Db,
        staging: PathBuf,
        store: Arc<LocalFileSystem>,
        runtime: Handle,
    ) -> Self {
        let mut this = Self::new(
            db,
            staging,
            Arc::clone(&store) as Arc<dyn ObjectStore>,
            runtime,
        );
        this.local = Some(store);
        this
    }

    /// Seals segments at about `bytes` (clamped to the archive's bounds).
    #[must_use]
    pub fn with_segment_target(mut self, bytes: u64) -> Self {
        self.segment_target = bytes.clamp(
            cairn_archive::MIN_SEGMENT_TARGET,
            cairn_archive::MAX_SEGMENT_TARGET,
        );
        self
    }

    fn archive(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Arc<Mutex<Archive<ObjectSegments>>>, StoreError> {
        let key = (tenant.to_owned(), user.to_owned());
        let slot = Arc::clone(lock(&self.open)?.entry(key).or_default());
        let mut slot = lock(&slot)?;
        if let Some(a) = slot.as_ref() {
            return Ok(Arc::clone(a));
        }
        // Ids are canonical (`[a-z0-9-]{1,63}`, checked by the router), so they are safe as
        // path and object-name segments.
        let archive_id = self.runtime.block_on(self.db.archive_id(tenant, user))?;
        let mut segments = ObjectSegments::open(
            &self.staging.join(tenant).join(user),
            Arc::clone(&self.store),
            ObjectPath::from(format!("tenants/{tenant}/users/{user}")),
            self.runtime.clone(),
        )?;
        if let Some(local) = &self.local {
            segments = segments.with_local(Arc::clone(local));
        }
        let config = Config::new(archive_id)
            .with_index_cache(true)
            .with_segment_target(self.segment_target)?;
        let (log, _recovery) = Archive::open(segments, config)?;
        // The first open in this process: make the user's charged total what the log holds
        // (a crash between a charge and its append leaves a charge for nothing). Under the
        // slot's lock, so that no upload to this archive runs meanwhile.
        let mut actual: u64 = 0;
        for kind in [KIND_BLOCK, KIND_SNAPSHOT] {
            actual += log
                .records_of_kind(kind)?
                .iter()
                .map(|(_, loc)| u64::from(loc.len))
                .sum::<u64>();
        }
        let actual = i64::try_from(actual).map_err(|_| StoreError::Quota)?;
        let delta = self
            .runtime
            .block_on(self.db.reconcile(tenant, user, actual))?;
        if delta != 0 {
            tracing::warn!(
                tenant,
                user,
                delta,
                "stored total corrected to what the archive holds"
            );
        }
        let archive = Arc::new(Mutex::new(log));
        *slot = Some(Arc::clone(&archive));
        Ok(archive)
    }

    /// Which of `ids` the user's archive lacks, in the order asked.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn missing(
        &self,
        tenant: &str,
        user: &str,
        ids: &[BlockId],
    ) -> Result<Vec<BlockId>, StoreError> {
        let archive = self.archive(tenant, user)?;
        let log = lock(&archive)?;
        let mut out = Vec::new();
        for id in ids {
            if log.locate(id.as_bytes())?.is_none() {
                out.push(*id);
            }
        }
        Ok(out)
    }

    /// Appends records of `kind` (all or nothing): an id already holding identical bytes is
    /// skipped, one holding different bytes fails the whole call with [`StoreError::Conflict`]
    /// before anything is written; the new bytes are charged to the tenant's quota first
    /// ([`StoreError::Quota`] leaves everything as it was). Durable when it returns.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn put(
        &self,
        tenant: &str,
        user: &str,
        kind: u8,
        records: &[(BlockId, &[u8])],
    ) -> Result<Stored, StoreError> {
        let archive = self.archive(tenant, user)?;
        let mut log = lock(&archive)?;
        let mut result = Stored::default();
        let mut fresh: Vec<(BlockId, &[u8])> = Vec::new();
        let mut in_batch: HashMap<BlockId, &[u8]> = HashMap::new();
        for &(id, bytes) in records {
            if let Some(earlier) = in_batch.get(&id) {
                if *earlier != bytes {
                    return Err(StoreError::Conflict(id));
                }
                result.already_present += 1;
                continue;
            }
            in_batch.insert(id, bytes);
            match log.locate(id.as_bytes())? {
                Some(loc) => {
                    if loc.kind != kind || log.read_committed(&loc)? != bytes {
                        return Err(StoreError::Conflict(id));
                    }
                    result.already_present += 1;
                }
                None => fresh.push((id, bytes)),
            }
        }
        if fresh.is_empty() {
            return Ok(result);
        }
        let bytes: u64 = fresh.iter().map(|(_, b)| b.len() as u64).sum();
        let charge = i64::try_from(bytes).map_err(|_| StoreError::Quota)?;
        if !self
            .runtime
            .block_on(self.db.reserve(tenant, user, charge))?
        {
            return Err(StoreError::Quota);
        }
        let appended = (|| {
            for (id, b) in &fresh {
                log.append(kind, id.as_bytes(), b)?;
            }
            log.commit()
        })();
        if let Err(e) = appended {
            // Nothing acknowledged: give the reservation back (the handle is poisoned and the
            // uncommitted tail is cut at the next open).
            let _ = self.runtime.block_on(self.db.release(tenant, user, charge));
            // The next request reopens it (recovery cuts the uncommitted tail); this handle is
            // poisoned and writes nothing more.
            let slot = lock(&self.open)?
                .get(&(tenant.to_owned(), user.to_owned()))
                .cloned();
            if let Some(slot) = slot {
                *lock(&slot)? = None;
            }
            return Err(e.into());
        }
        result.stored = fresh.len();
        result.bytes = bytes;
        Ok(result)
    }

    /// The records of `kind` under `ids`, in order; [`StoreError::NotFound`] if any is absent.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn get(
        &self,
        tenant: &str,
        user: &str,
        kind: u8,
        ids: &[BlockId],
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let archive = self.archive(tenant, user)?;
        let log = lock(&archive)?;
        ids.iter()
            .map(|id| match log.locate(id.as_bytes())? {
                Some(loc) if loc.kind == kind => Ok(log.read_committed(&loc)?),
                _ => Err(StoreError::NotFound),
            })
            .collect()
    }

    /// The ids of every snapshot record, from the indexes alone.
    ///
    /// # Errors
    /// [`StoreError`].
    pub fn snapshots(&self, tenant: &str, user: &str) -> Result<Vec<BlockId>, StoreError> {
        let archive = self.archive(tenant, user)?;
        let log = lock(&archive)?;
        let mut seen = HashSet::new();
        Ok(log
            .records_of_kind(KIND_SNAPSHOT)?
            .into_iter()
            .map(|(key, _)| BlockId::from_bytes(key))
            .filter(|id| seen.insert(*id))
            .collect())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_possible_truncation
)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::local::LocalFileSystem;

    fn sealed(i: u32) -> (BlockId, Vec<u8>) {
        let root = cairn_keys::ArchiveKey::from_bytes([3; 32]);
        let sealer = cairn_seal::Sealer::new(
            &root,
            cairn_seal::ArchiveId::from_bytes([1; 16]),
            cairn_seal::SealConfig::default(),
        );
        // Incompressible-ish content so that segments fill.
        let plain: Vec<u8> = (0..70_000u32)
            .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
            .collect();
        let b = sealer.seal(cairn_seal::BlockKind::DATA, &plain).unwrap();
        (b.id(), b.into_bytes())
    }

    /// A runtime, a data folder with `segments/`, and a database holding tenant `t` and its
    /// user `u`.
    fn fixture() -> (tokio::runtime::Runtime, tempfile::TempDir, Db) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let db = rt
            .block_on(Db::open_sqlite(&dir.path().join("m.sqlite")))
            .unwrap();
        rt.block_on(db.add_tenant("t", 1 << 30)).unwrap();
        rt.block_on(db.add_user("t", "u", "user")).unwrap();
        std::fs::create_dir_all(dir.path().join("segments")).unwrap();
        (rt, dir, db)
    }

    /// Segments seal into the object store, and a reopened service (a restart) reads every
    /// record back from there; staged copies of published segments are gone. Both ways of
    /// publishing: the object store's create-only put, and the local store's hard link.
    #[test]
    fn sealed_segments_live_in_the_object_store() {
        sealed_segments_published(false);
        sealed_segments_published(true);
    }

    fn sealed_segments_published(link: bool) {
        let (rt, dir, db) = fixture();
        let store = || -> Arc<dyn ObjectStore> {
            Arc::new(
                LocalFileSystem::new_with_prefix(dir.path().join("segments"))
                    .unwrap()
                    .with_fsync(true),
            )
        };
        let open = || {
            if link {
                Archives::new_local(
                    db.clone(),
                    dir.path().join("staging"),
                    Arc::new(
                        LocalFileSystem::new_with_prefix(dir.path().join("segments"))
                            .unwrap()
                            .with_fsync(true),
                    ),
                    rt.handle().clone(),
                )
            } else {
                Archives::new(
                    db.clone(),
                    dir.path().join("staging"),
                    store(),
                    rt.handle().clone(),
                )
            }
            .with_segment_target(cairn_archive::MIN_SEGMENT_TARGET)
        };
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..40).map(sealed).collect();
        let archives = open();
        for chunk in blocks.chunks(5) {
            let refs: Vec<(BlockId, &[u8])> = chunk.iter().map(|(i, b)| (*i, &b[..])).collect();
            let stored = archives.put("t", "u", KIND_BLOCK, &refs).unwrap();
            assert_eq!(stored.stored, 5);
        }
        drop(archives);
        let published: Vec<object_store::ObjectMeta> = rt
            .block_on(async {
                use futures_util::TryStreamExt;
                store()
                    .list(Some(&ObjectPath::from("tenants/t/users/u")))
                    .try_collect()
                    .await
            })
            .unwrap();
        assert!(published.len() >= 2, "{published:?}");
        let archives = open();
        let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
        let got = archives.get("t", "u", KIND_BLOCK, &ids).unwrap();
        for ((_, want), got) in blocks.iter().zip(&got) {
            assert_eq!(want, got);
        }
        assert!(archives.missing("t", "u", &ids).unwrap().is_empty());
        let staged = std::fs::read_dir(dir.path().join("staging/t/u"))
            .unwrap()
            .count();
        assert_eq!(staged, 1, "only the active segment stays staged");
        let head = rt.block_on(store().head(&published[0].location)).unwrap();
        assert!(head.size > 0);
    }

    /// Concurrent first requests for one archive: one opens it, the others wait for that open
    /// (none recovers the log beside another's appends), and every acknowledged block is there
    /// after a restart.
    #[test]
    fn concurrent_first_uploads_share_one_open() {
        let (rt, dir, db) = fixture();
        let open = || {
            Archives::new_local(
                db.clone(),
                dir.path().join("staging"),
                Arc::new(LocalFileSystem::new_with_prefix(dir.path().join("segments")).unwrap()),
                rt.handle().clone(),
            )
        };
        let blocks: Vec<(BlockId, Vec<u8>)> = (0..16).map(sealed).collect();
        let archives = open();
        let start = std::sync::Barrier::new(8);
        std::thread::scope(|scope| {
            for part in blocks.chunks(2) {
                let (archives, start) = (&archives, &start);
                scope.spawn(move || {
                    let refs: Vec<(BlockId, &[u8])> =
                        part.iter().map(|(i, b)| (*i, &b[..])).collect();
                    start.wait();
                    assert_eq!(archives.put("t", "u", KIND_BLOCK, &refs).unwrap().stored, 2);
                });
            }
        });
        assert_eq!(lock(&archives.open).unwrap().len(), 1);
        drop(archives);
        let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
        let got = open().get("t", "u", KIND_BLOCK, &ids).unwrap();
        for ((_, want), got) in blocks.iter().zip(&got) {
            assert_eq!(want, got);
        }
    }
}
