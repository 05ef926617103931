//! Where sealed blocks and snapshots live.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};

use cairn_archive::{Archive, Storage};
use cairn_seal::BlockId;

use crate::error::StoreError;

/// A store of sealed blocks and sealed snapshots, keyed by block id. Implementations: in memory
/// ([`MemoryStore`]), a local repository on `cairn-archive` ([`ArchiveStore`]), and (in the
/// agent) the server over HTTPS.
pub trait BlockStore: Send + Sync {
    /// Which of `ids` the store does not have (one round trip for many ids).
    fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>, StoreError>;
    /// Stores sealed blocks (a later [`BlockStore::get_block`] returns them). They are durable
    /// at the latest when a later [`BlockStore::put_snapshot`] returns `Ok`: the snapshot that
    /// names them is the commit point. An implementation may make them durable sooner (the
    /// server does before it answers; [`ArchiveStore`] commits every 64 MiB).
    fn put_blocks(&self, blocks: Vec<(BlockId, Vec<u8>)>) -> Result<(), StoreError>;
    /// A sealed block's bytes.
    fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, StoreError>;
    /// Several sealed blocks' bytes, in the order asked (one round trip for a remote store;
    /// the default asks one at a time).
    fn get_blocks(&self, ids: &[BlockId]) -> Result<Vec<Vec<u8>>, StoreError> {
        ids.iter().map(|id| self.get_block(id)).collect()
    }
    /// Stores a sealed snapshot; durable when this returns `Ok`.
    fn put_snapshot(&self, id: &BlockId, sealed: Vec<u8>) -> Result<(), StoreError>;
    /// Stores a sealed snapshot with its reference list: `refs`, strictly ascending, is every
    /// block the snapshot reaches (what a server collects garbage by,
    /// `docs/design/0009-retention-and-prune.md` §4). The default drops the list and calls
    /// [`BlockStore::put_snapshot`]: a store the key holder prunes itself needs none.
    fn put_snapshot_with_refs(
        &self,
        id: &BlockId,
        sealed: Vec<u8>,
        refs: &[BlockId],
    ) -> Result<(), StoreError> {
        let _ = refs;
        self.put_snapshot(id, sealed)
    }
    /// Every snapshot id.
    fn list_snapshots(&self) -> Result<Vec<BlockId>, StoreError>;
    /// A sealed snapshot's bytes.
    fn get_snapshot(&self, id: &BlockId) -> Result<Vec<u8>, StoreError>;
    /// Whether [`missing`](Self::missing) answers from memory in this process, with no round
    /// trip. While every worker has files of its own, the engine then asks about each block as
    /// soon as it is named and seals it at once, while its bytes are still in the worker's cache
    /// (and a restore writes each chunk as soon as it is opened); otherwise (the default, and
    /// once workers run out of files) it batches the questions, a few MiB of blocks per worker
    /// and round trip.
    fn answers_locally(&self) -> bool {
        false
    }
}

fn poisoned() -> StoreError {
    StoreError::Other("lock poisoned".into())
}

/// Blocks and snapshots in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    blocks: Mutex<HashMap<BlockId, Vec<u8>>>,
    snapshots: Mutex<Vec<(BlockId, Vec<u8>)>>,
    refs: Mutex<HashMap<BlockId, Vec<BlockId>>>,
}

impl MemoryStore {
    /// The reference list a snapshot was stored with, if it was stored with one.
    pub fn refs_of(&self, snapshot: &BlockId) -> Option<Vec<BlockId>> {
        self.refs.lock().ok()?.get(snapshot).cloned()
    }

    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of blocks stored.
    pub fn block_count(&self) -> usize {
        self.blocks.lock().map(|b| b.len()).unwrap_or(0)
    }

    /// Forgets a snapshot (for tests of a store that withholds one, B-8).
    pub fn forget_snapshot(&self, id: &BlockId) {
        if let Ok(mut s) = self.snapshots.lock() {
            s.retain(|(i, _)| i != id);
        }
    }

    /// Replaces a stored block's bytes (for tests that damage blocks).
    pub fn replace_block(&self, id: &BlockId, bytes: Vec<u8>) {
        if let Ok(mut b) = self.blocks.lock() {
            b.insert(*id, bytes);
        }
    }
}

impl BlockStore for MemoryStore {
    fn answers_locally(&self) -> bool {
        true
    }

    fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>, StoreError> {
        let blocks = self.blocks.lock().map_err(|_| poisoned())?;
        Ok(ids
            .iter()
            .filter(|id| !blocks.contains_key(id))
            .copied()
            .collect())
    }

    fn put_blocks(&self, new: Vec<(BlockId, Vec<u8>)>) -> Result<(), StoreError> {
        let mut blocks = self.blocks.lock().map_err(|_| poisoned())?;
        for (id, bytes) in new {
            blocks.entry(id).or_insert(bytes);
        }
        Ok(())
    }

    fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.blocks
            .lock()
            .map_err(|_| poisoned())?
            .get(id)
            .cloned()
            .ok_or(StoreError::NotFound)
    }

    fn put_snapshot(&self, id: &BlockId, sealed: Vec<u8>) -> Result<(), StoreError> {
        self.snapshots
            .lock()
            .map_err(|_| poisoned())?
            .push((*id, sealed));
        Ok(())
    }

    fn put_snapshot_with_refs(
        &self,
        id: &BlockId,
        sealed: Vec<u8>,
        refs: &[BlockId],
    ) -> Result<(), StoreError> {
        self.put_snapshot(id, sealed)?;
        self.refs
            .lock()
            .map_err(|_| poisoned())?
            .insert(*id, refs.to_vec());
        Ok(())
    }

    fn list_snapshots(&self) -> Result<Vec<BlockId>, StoreError> {
        Ok(self
            .snapshots
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .map(|(id, _)| *id)
            .collect())
    }

    fn get_snapshot(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.snapshots
            .lock()
            .map_err(|_| poisoned())?
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, b)| b.clone())
            .ok_or(StoreError::NotFound)
    }
}

/// Record kinds in the archive log.
const KIND_BLOCK: u8 = 1;
const KIND_SNAPSHOT: u8 = 2;
/// [`ArchiveStore::put_blocks`] commits the log once this many bytes were appended since the
/// last commit: an interrupted backup loses at most this much work, and a first backup syncs
/// every 64 MiB instead of every batch.
const COMMIT_BYTES: u64 = 64 << 20;

/// A repository on disk (or in any `cairn-archive` storage): blocks and snapshots are records
/// of the append-only log, keyed by block id. Needs no server.
pub struct ArchiveStore<S: Storage> {
    /// Readers share it (restore fetches blocks from many threads); writers take it alone.
    log: RwLock<Archive<S>>,
    snapshots: Mutex<Vec<BlockId>>,
    known: Mutex<HashSet<BlockId>>,
}

impl<S: Storage> ArchiveStore<S> {
    /// Opens the repository (running the log's recovery) and lists its snapshots.
    pub fn open(storage: S, config: cairn_archive::Config) -> Result<Self, StoreError> {
        let (log, _recovery) = Archive::open(storage, config)?;
        // From the indexes alone: no payload is read.
        let snapshots = log
            .records_of_kind(KIND_SNAPSHOT)?
            .into_iter()
            .map(|(key, _)| BlockId::from_bytes(key))
            .collect();
        Ok(Self {
            log: RwLock::new(log),
            snapshots: Mutex::new(snapshots),
            known: Mutex::default(),
        })
    }
}

impl<S: Storage> BlockStore for ArchiveStore<S> {
    fn answers_locally(&self) -> bool {
        true
    }

    fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>, StoreError> {
        let log = self.log.read().map_err(|_| poisoned())?;
        let known = self.known.lock().map_err(|_| poisoned())?;
        let mut out = Vec::new();
        for id in ids {
            if !known.contains(id) && log.locate(id.as_bytes())?.is_none() {
                out.push(*id);
            }
        }
        Ok(out)
    }

    fn put_blocks(&self, blocks: Vec<(BlockId, Vec<u8>)>) -> Result<(), StoreError> {
        let mut log = self.log.write().map_err(|_| poisoned())?;
        let mut known = self.known.lock().map_err(|_| poisoned())?;
        for (id, bytes) in blocks {
            if known.insert(id) {
                log.append_owned(KIND_BLOCK, id.as_bytes(), bytes)?;
            }
        }
        // Group commit: one sync per COMMIT_BYTES instead of one per batch (the storage writes
        // behind in the meantime); put_snapshot commits whatever is left.
        if log.uncommitted_bytes() >= COMMIT_BYTES {
            log.commit()?;
        }
        Ok(())
    }

    fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        let log = self.log.read().map_err(|_| poisoned())?;
        match log.locate(id.as_bytes())? {
            Some(loc) if loc.kind == KIND_BLOCK => match log.read_committed(&loc) {
                // Put but not committed yet: read it through the writer's buffer.
                Err(cairn_archive::ArchiveError::Uncommitted) => {
                    drop(log);
                    Ok(self.log.write().map_err(|_| poisoned())?.read(&loc)?)
                }
                read => Ok(read?),
            },
            _ => Err(StoreError::NotFound),
        }
    }

    fn put_snapshot(&self, id: &BlockId, sealed: Vec<u8>) -> Result<(), StoreError> {
        let mut log = self.log.write().map_err(|_| poisoned())?;
        log.append_owned(KIND_SNAPSHOT, id.as_bytes(), sealed)?;
        log.commit()?;
        self.snapshots.lock().map_err(|_| poisoned())?.push(*id);
        Ok(())
    }

    fn list_snapshots(&self) -> Result<Vec<BlockId>, StoreError> {
        Ok(self.snapshots.lock().map_err(|_| poisoned())?.clone())
    }

    fn get_snapshot(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        let log = self.log.read().map_err(|_| poisoned())?;
        match log.locate(id.as_bytes())? {
            Some(loc) if loc.kind == KIND_SNAPSHOT => Ok(log.read_committed(&loc)?),
            _ => Err(StoreError::NotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_archive::{Config, DirStorage};

    fn open(dir: &std::path::Path) -> ArchiveStore<DirStorage> {
        ArchiveStore::open(
            DirStorage::open(dir).unwrap(),
            Config::new(*b"store test repo."),
        )
        .unwrap()
    }

    /// `n` blocks of `len` bytes each, ids from `first`.
    fn blocks(first: u8, n: u8, len: usize) -> Vec<(BlockId, Vec<u8>)> {
        (first..first + n)
            .map(|i| (BlockId::from_bytes([i; 32]), vec![i; len]))
            .collect()
    }

    /// Blocks are readable as soon as they are put; they are durable once 64 MiB were appended
    /// since the last commit, or with the next snapshot; an interruption before either loses
    /// them (and only them), and the store opens cleanly after it.
    #[test]
    fn blocks_commit_in_groups_and_with_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("repo");
        // 70 blocks of 1 MiB: a commit after the 64th MiB, 6 blocks left uncommitted.
        let first = blocks(0, 70, 1 << 20);
        let ids: Vec<BlockId> = first.iter().map(|(id, _)| *id).collect();
        {
            let store = open(&path);
            for batch in first.chunks(4) {
                store.put_blocks(batch.to_vec()).unwrap();
            }
            // Read your writes, committed or not.
            assert_eq!(store.get_block(&ids[1]).unwrap(), vec![1u8; 1 << 20]);
            assert_eq!(store.get_block(&ids[69]).unwrap(), vec![69u8; 1 << 20]);
            assert!(store.missing(&ids).unwrap().is_empty());
        } // interrupted: no snapshot
        let store = open(&path);
        let lost = store.missing(&ids).unwrap();
        assert!(!lost.is_empty() && lost.len() <= 6, "{} lost", lost.len());
        assert!(lost.iter().all(|id| ids[64..].contains(id)), "{lost:?}");
        assert_eq!(store.get_block(&ids[0]).unwrap(), vec![0u8; 1 << 20]);
        // Sent again, then a snapshot: everything is durable.
        let again: Vec<_> = first
            .iter()
            .filter(|(id, _)| lost.contains(id))
            .cloned()
            .collect();
        store.put_blocks(again).unwrap();
        store.put_blocks(blocks(100, 2, 10)).unwrap();
        let snapshot = BlockId::from_bytes([200; 32]);
        store
            .put_snapshot(&snapshot, b"sealed snapshot".to_vec())
            .unwrap();
        drop(store);
        let store = open(&path);
        assert!(store.missing(&ids).unwrap().is_empty());
        assert_eq!(
            store.get_block(&BlockId::from_bytes([101; 32])).unwrap(),
            vec![101u8; 10]
        );
        assert_eq!(store.list_snapshots().unwrap(), vec![snapshot]);
    }
}
