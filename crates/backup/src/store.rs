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
    /// Stores sealed blocks; durable when this returns `Ok`.
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
    /// Every snapshot id.
    fn list_snapshots(&self) -> Result<Vec<BlockId>, StoreError>;
    /// A sealed snapshot's bytes.
    fn get_snapshot(&self, id: &BlockId) -> Result<Vec<u8>, StoreError>;
}

fn poisoned() -> StoreError {
    StoreError::Other("lock poisoned".into())
}

/// Blocks and snapshots in memory.
#[derive(Debug, Default)]
pub struct MemoryStore {
    blocks: Mutex<HashMap<BlockId, Vec<u8>>>,
    snapshots: Mutex<Vec<(BlockId, Vec<u8>)>>,
}

impl MemoryStore {
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
        log.commit()?;
        Ok(())
    }

    fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        let log = self.log.read().map_err(|_| poisoned())?;
        match log.locate(id.as_bytes())? {
            Some(loc) if loc.kind == KIND_BLOCK => Ok(log.read_committed(&loc)?),
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
