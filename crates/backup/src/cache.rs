//! The local file cache (incremental backups): for each file seen by the last backup, its
//! device, inode, size, modification and change times, and its chunk ids. A file whose metadata
//! is unchanged is not read again.
//!
//! The cache is only trusted for the snapshot it was written with: `Repository::backup_incremental`
//! ignores (and rewrites) it when the parent snapshot is a different one, so a cache can never
//! name blocks the store does not hold.

use std::path::Path;

use cairn_seal::BlockId;
use redb::{Database, ReadableDatabase, ReadableTableMetadata, TableDefinition};

use crate::error::BackupError;

const FILES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("files-v1");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta-v1");

/// What the cache remembers of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedFile {
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Status-change time, ns (catches metadata-preserving rewrites).
    pub ctime_ns: i64,
    /// The chunk ids.
    pub chunks: Vec<BlockId>,
}

impl CachedFile {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(24 + 32 * self.chunks.len());
        v.extend_from_slice(&self.size.to_le_bytes());
        v.extend_from_slice(&self.mtime_ns.to_le_bytes());
        v.extend_from_slice(&self.ctime_ns.to_le_bytes());
        for c in &self.chunks {
            v.extend_from_slice(c.as_bytes());
        }
        v
    }

    fn decode(b: &[u8]) -> Option<Self> {
        if b.len() < 24 || !(b.len() - 24).is_multiple_of(32) {
            return None;
        }
        let u = |i: usize| -> [u8; 8] {
            let mut x = [0u8; 8];
            x.copy_from_slice(&b[i..i + 8]);
            x
        };
        let chunks = b[24..]
            .chunks_exact(32)
            .map(|c| {
                let mut id = [0u8; 32];
                id.copy_from_slice(c);
                BlockId::from_bytes(id)
            })
            .collect();
        Some(Self {
            size: u64::from_le_bytes(u(0)),
            mtime_ns: i64::from_le_bytes(u(8)),
            ctime_ns: i64::from_le_bytes(u(16)),
            chunks,
        })
    }
}

/// The cache key: device, inode, then the path.
pub(crate) fn cache_key(dev: u64, ino: u64, path: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + path.len());
    k.extend_from_slice(&dev.to_le_bytes());
    k.extend_from_slice(&ino.to_le_bytes());
    k.extend_from_slice(path);
    k
}

fn db_err(e: impl std::fmt::Display) -> BackupError {
    BackupError::Engine(format!("file cache: {e}"))
}

/// The file cache, in a redb database file.
pub struct FileCache {
    db: Database,
}

impl FileCache {
    /// Opens (or creates) the cache at `path`.
    pub fn open(path: &Path) -> Result<Self, BackupError> {
        let db = Database::create(path).map_err(db_err)?;
        Ok(Self { db })
    }

    /// The snapshot the cache was last written with.
    pub fn snapshot(&self) -> Result<Option<BlockId>, BackupError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(META) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(db_err(e)),
        };
        let value = table.get("snapshot").map_err(db_err)?;
        Ok(value
            .and_then(|v| <[u8; 32]>::try_from(v.value()).ok())
            .map(BlockId::from_bytes))
    }

    /// Looks files up, in one read transaction.
    pub(crate) fn get_many<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> Result<Vec<Option<CachedFile>>, BackupError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(FILES) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(keys.map(|_| None).collect()),
            Err(e) => return Err(db_err(e)),
        };
        keys.map(|key| {
            let value = table.get(key).map_err(db_err)?;
            Ok(value.and_then(|v| CachedFile::decode(v.value())))
        })
        .collect()
    }

    /// Makes the cache hold exactly `files` (key, entry, whether the entry changed), written
    /// with `snapshot`, in one transaction. Only changed entries are written when nothing else
    /// needs to go; if the cache holds entries for files that are gone, it is rebuilt.
    pub(crate) fn update(
        &self,
        files: &[(Vec<u8>, CachedFile, bool)],
        snapshot: &BlockId,
    ) -> Result<(), BackupError> {
        let tx = self.db.begin_write().map_err(db_err)?;
        {
            let mut table = tx.open_table(FILES).map_err(db_err)?;
            for (k, v, _) in files.iter().filter(|(_, _, changed)| *changed) {
                table
                    .insert(k.as_slice(), v.encode().as_slice())
                    .map_err(db_err)?;
            }
            // Every key of `files` is now in the table; more keys means stale entries.
            if table.len().map_err(db_err)? > files.len() as u64 {
                drop(table);
                tx.delete_table(FILES).map_err(db_err)?;
                let mut table = tx.open_table(FILES).map_err(db_err)?;
                for (k, v, _) in files {
                    table
                        .insert(k.as_slice(), v.encode().as_slice())
                        .map_err(db_err)?;
                }
            }
            let mut meta = tx.open_table(META).map_err(db_err)?;
            meta.insert("snapshot", snapshot.as_bytes().as_slice())
                .map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: u64) -> CachedFile {
        CachedFile {
            size,
            mtime_ns: 1,
            ctime_ns: 2,
            chunks: vec![BlockId::from_bytes([size.to_le_bytes()[0]; 32])],
        }
    }

    fn count(cache: &FileCache) -> u64 {
        let tx = cache.db.begin_read().unwrap();
        tx.open_table(FILES).unwrap().len().unwrap()
    }

    /// Unchanged entries are not rewritten, changed ones are, and entries of files that are
    /// gone do not survive an update.
    #[test]
    fn update_writes_changes_and_drops_the_gone() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::open(&dir.path().join("c.redb")).unwrap();
        let s1 = BlockId::from_bytes([1; 32]);
        let s2 = BlockId::from_bytes([2; 32]);
        let (a, b) = (b"a".to_vec(), b"b".to_vec());
        cache
            .update(
                &[(a.clone(), entry(1), true), (b.clone(), entry(2), true)],
                &s1,
            )
            .unwrap();
        assert_eq!(cache.snapshot().unwrap(), Some(s1));
        assert_eq!(count(&cache), 2);
        // `a` changed, `b` is gone.
        cache.update(&[(a.clone(), entry(3), true)], &s2).unwrap();
        assert_eq!(cache.snapshot().unwrap(), Some(s2));
        assert_eq!(count(&cache), 1);
        let got = cache
            .get_many([a.as_slice(), b.as_slice()].into_iter())
            .unwrap();
        assert_eq!(got, vec![Some(entry(3)), None]);
        // An entry marked unchanged is left as it is.
        cache.update(&[(a.clone(), entry(9), false)], &s1).unwrap();
        assert_eq!(
            cache.get_many([a.as_slice()].into_iter()).unwrap(),
            vec![Some(entry(3))]
        );
    }
}
