//! The local file cache (incremental backups): for each file seen by the last backup, its
//! device, inode, size, modification and change times, and where its bytes are (its chunk ids,
//! or its place in a pack). A file whose metadata is unchanged is not read again.
//!
//! The cache is only trusted for the snapshot it was written with: `Repository::backup`
//! ignores (and rewrites) it when the parent snapshot is a different one, so a cache can never
//! name blocks the store does not hold. A backup writes it a batch of files at a time
//! ([`CacheWriter`]).

use std::path::Path;

use cairn_seal::BlockId;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::error::BackupError;
use crate::tree::EntryKind;

const FILES: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("files-v3");
/// The table of version 2 (device and inode little-endian in the key), dropped at the first
/// update.
const FILES_V2: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("files-v2");
/// The table of version 1 (chunk ids only), dropped at the first update.
const FILES_V1: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("files-v1");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta-v1");

/// What the cache remembers of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedFile {
    /// Modification time, ns.
    pub mtime_ns: i64,
    /// Status-change time, ns (catches metadata-preserving rewrites).
    pub ctime_ns: i64,
    /// Where its bytes are, and its size: [`EntryKind::File`] (chunk ids) or
    /// [`EntryKind::Packed`].
    pub content: EntryKind,
    /// The file had no extended attributes at this size, mtime and ctime. Setting or removing
    /// one changes the ctime, so a backup that finds all three unchanged need not list them.
    /// `false` also for "not known" (entries written before the flag existed).
    pub no_xattrs: bool,
}

/// Value tags: what follows the three integers.
const TAG_CHUNKS: u8 = 1;
const TAG_PACKED: u8 = 4;
/// Or-ed into the tag: [`CachedFile::no_xattrs`].
const FLAG_NO_XATTRS: u8 = 0x80;

fn id_at(b: &[u8], at: usize) -> Option<BlockId> {
    let bytes: [u8; 32] = b.get(at..at + 32)?.try_into().ok()?;
    Some(BlockId::from_bytes(bytes))
}

impl CachedFile {
    /// Size in bytes (the content's).
    #[must_use]
    pub fn size(&self) -> u64 {
        self.content.file_size().unwrap_or(0)
    }

    fn encode(&self) -> Vec<u8> {
        let blocks = self.content.data_blocks().len();
        let mut v = Vec::with_capacity(25 + 32 * blocks + 36);
        v.extend_from_slice(&self.size().to_le_bytes());
        v.extend_from_slice(&self.mtime_ns.to_le_bytes());
        v.extend_from_slice(&self.ctime_ns.to_le_bytes());
        let flags = if self.no_xattrs { FLAG_NO_XATTRS } else { 0 };
        match &self.content {
            EntryKind::Packed {
                id, pack, offset, ..
            } => {
                v.push(TAG_PACKED | flags);
                v.extend_from_slice(id.as_bytes());
                v.extend_from_slice(pack.as_bytes());
                v.extend_from_slice(&offset.to_le_bytes());
            }
            other => {
                v.push(TAG_CHUNKS | flags);
                for c in other.data_blocks() {
                    v.extend_from_slice(c.as_bytes());
                }
            }
        }
        v
    }

    /// `None` for anything malformed: the file is then read again.
    fn decode(b: &[u8]) -> Option<Self> {
        let u = |i: usize| -> Option<[u8; 8]> { b.get(i..i + 8)?.try_into().ok() };
        let size = u64::from_le_bytes(u(0)?);
        let mtime_ns = i64::from_le_bytes(u(8)?);
        let ctime_ns = i64::from_le_bytes(u(16)?);
        let rest = b.get(25..)?;
        let tag = *b.get(24)?;
        let content = match tag & !FLAG_NO_XATTRS {
            TAG_CHUNKS if rest.len().is_multiple_of(32) => EntryKind::File {
                size,
                chunks: (0..rest.len() / 32)
                    .map(|i| id_at(rest, 32 * i))
                    .collect::<Option<_>>()?,
            },
            TAG_PACKED if rest.len() == 68 && size > 0 => EntryKind::Packed {
                size,
                id: id_at(rest, 0)?,
                pack: id_at(rest, 32)?,
                offset: u32::from_le_bytes(rest.get(64..68)?.try_into().ok()?),
            },
            _ => return None,
        };
        Some(Self {
            mtime_ns,
            ctime_ns,
            content,
            no_xattrs: tag & FLAG_NO_XATTRS != 0,
        })
    }
}

/// A read transaction on the cache's table of files.
struct CacheReader {
    table: Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl CacheReader {
    /// The entry of one file; `None` if absent or malformed (the file is then read).
    fn get(&self, key: &[u8]) -> Result<Option<CachedFile>, BackupError> {
        let Some(table) = &self.table else {
            return Ok(None);
        };
        let value = table.get(key).map_err(db_err)?;
        Ok(value.and_then(|v| CachedFile::decode(v.value())))
    }

    fn packed(&self) -> Result<PackedIndex, BackupError> {
        let mut out = Vec::new();
        if let Some(table) = &self.table {
            for row in table.iter().map_err(db_err)? {
                let (_, value) = row.map_err(db_err)?;
                if let Some(CachedFile {
                    content:
                        EntryKind::Packed {
                            size,
                            id,
                            pack,
                            offset,
                        },
                    ..
                }) = CachedFile::decode(value.value())
                {
                    out.push((id, pack, offset, size));
                }
            }
        }
        out.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        Ok(PackedIndex(out))
    }
}

/// Packed files already in the store: (file id, pack, offset, size), sorted by file id (a
/// sorted list: about half the memory of a hash map for the same entries).
#[derive(Default)]
pub(crate) struct PackedIndex(Vec<(BlockId, BlockId, u32, u64)>);

impl PackedIndex {
    /// Where the file with this id and size is packed: (pack, offset).
    pub(crate) fn get(&self, id: &BlockId, size: u64) -> Option<(BlockId, u32)> {
        let at = self
            .0
            .binary_search_by(|e| e.0.as_bytes().cmp(id.as_bytes()))
            .ok()?;
        let (_, pack, offset, len) = self.0[at];
        (len == size).then_some((pack, offset))
    }
}

/// The cache key: device, inode, then the path. Big-endian, unlike every format Cairn
/// writes, on purpose: redb orders keys by their bytes, so the keys of one device sort by inode
/// number, and a backup's batch of files (often inodes made together) lands on neighbouring
/// pages of the B-tree instead of all over it (measured: `benches/walk.sh`).
pub(crate) fn cache_key(dev: u64, ino: u64, path: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + path.len());
    k.extend_from_slice(&dev.to_be_bytes());
    k.extend_from_slice(&ino.to_be_bytes());
    k.extend_from_slice(path);
    k
}

fn db_err(e: impl Into<redb::Error>) -> BackupError {
    BackupError::Cache(e.into())
}

/// The most memory redb keeps of the cache's pages (its default is 1 GiB): a million files'
/// entries take about 200 MiB on disk, read from the page cache when they are not here.
pub(crate) const CACHE_MEMORY: usize = 64 << 20;

/// The file cache, in a redb database file.
pub struct FileCache {
    db: Database,
}

impl FileCache {
    /// Opens (or creates) the cache at `path`.
    pub fn open(path: &Path) -> Result<Self, BackupError> {
        let db = Database::builder()
            .set_cache_size(CACHE_MEMORY)
            .create(path)
            .map_err(db_err)?;
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

    /// Looks files up, in one read transaction. (Measured: reading the whole table into a
    /// map while the walk runs, or looking files up from the walk's threads, saved no time on
    /// the peer corpus, and cost memory or CPU.)
    ///
    /// The keys are looked up in key order (the answers come back in the order asked): the
    /// B-tree's pages are then visited once each, in order, however little of the table
    /// [`CACHE_MEMORY`] holds.
    pub(crate) fn get_many<'k>(
        &self,
        keys: impl Iterator<Item = &'k [u8]>,
    ) -> Result<Vec<Option<CachedFile>>, BackupError> {
        let reader = self.reader()?;
        let mut keys: Vec<(usize, &[u8])> = keys.enumerate().collect();
        keys.sort_unstable_by(|a, b| a.1.cmp(b.1));
        let mut out = vec![None; keys.len()];
        for (at, key) in keys {
            out[at] = reader.get(key)?;
        }
        Ok(out)
    }

    /// Every packed file the cache knows, by its own id (see [`PackedIndex`]). A file whose
    /// contents are already in a pack of the store (it was moved, copied or renamed) is
    /// referenced there instead of being packed again.
    pub(crate) fn packed(&self) -> Result<PackedIndex, BackupError> {
        self.reader()?.packed()
    }

    fn reader(&self) -> Result<CacheReader, BackupError> {
        let tx = self.db.begin_read().map_err(db_err)?;
        let table = match tx.open_table(FILES) {
            Ok(t) => Some(t),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(db_err(e)),
        };
        Ok(CacheReader { table })
    }

    /// Makes the cache hold exactly `files`, written with `snapshot`: [`CacheWriter::write`]
    /// and [`CacheWriter::finish`] in one go.
    #[cfg(test)]
    pub(crate) fn update(
        &self,
        files: &[(Vec<u8>, CachedFile, bool)],
        snapshot: &BlockId,
    ) -> Result<(), BackupError> {
        let mut writer = CacheWriter::new(self);
        let mut files: Vec<CacheWrite> = files
            .iter()
            .map(|(key, entry, changed)| CacheWrite {
                key: key.clone(),
                entry: entry.clone(),
                changed: *changed,
            })
            .collect();
        writer.write(&mut files)?;
        writer.finish(snapshot)
    }
}

/// One file seen by a backup, for the cache.
pub(crate) struct CacheWrite {
    /// Its key ([`cache_key`]).
    pub(crate) key: Vec<u8>,
    /// What the cache is to remember of it.
    pub(crate) entry: CachedFile,
    /// Whether that differs from what the cache holds (only then is it written).
    pub(crate) changed: bool,
}

/// A backup's writes to the cache, a batch of files at a time while the backup runs, so that
/// the backup does not hold every file's entry until its end.
///
/// Each batch is committed at once, without waiting for the disk ([`redb::Durability::None`]);
/// the cache's snapshot stays the parent's until [`CacheWriter::finish`]. That keeps the cache
/// true for the parent even if the backup stops half-way: an entry it wrote names blocks it has
/// already sent, which the store holds. `finish` drops the entries of files this backup did not
/// see and makes everything durable. (For that it keeps a 64-bit hash of each key seen, 8 bytes
/// per file; two keys with one hash would only keep a gone file's entry, which names blocks the
/// store holds.)
pub(crate) struct CacheWriter<'c> {
    cache: &'c FileCache,
    hasher: std::collections::hash_map::RandomState,
    seen: Vec<u64>,
}

impl<'c> CacheWriter<'c> {
    pub(crate) fn new(cache: &'c FileCache) -> Self {
        Self {
            cache,
            hasher: std::collections::hash_map::RandomState::new(),
            seen: Vec::new(),
        }
    }

    /// Records one batch of files seen, writing those that changed (in key order: redb then
    /// appends to its B-tree instead of splitting pages all over it, measured: 64-80 ms instead
    /// of 93-131 ms for the 34,500 files of the peer corpus).
    pub(crate) fn write(&mut self, files: &mut [CacheWrite]) -> Result<(), BackupError> {
        use std::hash::BuildHasher;
        self.seen
            .extend(files.iter().map(|f| self.hasher.hash_one(&f.key)));
        if !files.iter().any(|f| f.changed) {
            return Ok(());
        }
        files.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        let mut tx = self.cache.db.begin_write().map_err(db_err)?;
        tx.set_durability(redb::Durability::None).map_err(db_err)?;
        {
            let mut table = tx.open_table(FILES).map_err(db_err)?;
            for f in files.iter().filter(|f| f.changed) {
                table
                    .insert(f.key.as_slice(), f.entry.encode().as_slice())
                    .map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    /// After the backup stored `snapshot`: drops the entries of files it did not see, records
    /// the snapshot, and commits durably.
    pub(crate) fn finish(mut self, snapshot: &BlockId) -> Result<(), BackupError> {
        use std::hash::BuildHasher;
        let tx = self.cache.db.begin_write().map_err(db_err)?;
        {
            for old in [FILES_V1, FILES_V2] {
                match tx.delete_table(old) {
                    Ok(_) | Err(redb::TableError::TableDoesNotExist(_)) => {}
                    Err(e) => return Err(db_err(e)),
                }
            }
            let mut table = tx.open_table(FILES).map_err(db_err)?;
            // Every key seen is in the table; more keys means entries of files that are gone.
            if table.len().map_err(db_err)? > self.seen.len() as u64 {
                self.seen.sort_unstable();
                let (seen, hasher) = (&self.seen, &self.hasher);
                table
                    .retain(|key, _| seen.binary_search(&hasher.hash_one(key)).is_ok())
                    .map_err(db_err)?;
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
            mtime_ns: 1,
            ctime_ns: 2,
            content: EntryKind::File {
                size,
                chunks: vec![BlockId::from_bytes([size.to_le_bytes()[0]; 32])],
            },
            no_xattrs: false,
        }
    }

    /// Both forms of an entry survive the round trip; `packed` indexes the packed ones by
    /// their own id; malformed values are read as absent (the file is read again).
    #[test]
    fn packed_entries_round_trip_and_are_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::open(&dir.path().join("c.redb")).unwrap();
        let packed = CachedFile {
            mtime_ns: -1,
            ctime_ns: 3,
            content: EntryKind::Packed {
                size: 10,
                id: BlockId::from_bytes([4; 32]),
                pack: BlockId::from_bytes([5; 32]),
                offset: 70_000,
            },
            no_xattrs: true,
        };
        assert_eq!(CachedFile::decode(&packed.encode()), Some(packed.clone()));
        // The flag is one bit of the tag, kept apart from the form.
        let chunks = CachedFile {
            no_xattrs: true,
            ..entry(9)
        };
        let mut bytes = chunks.encode();
        assert_eq!(bytes[24], TAG_CHUNKS | FLAG_NO_XATTRS);
        assert_eq!(CachedFile::decode(&bytes), Some(chunks));
        // An entry from before the flag: not known, so the walk lists them.
        bytes[24] = TAG_CHUNKS;
        assert!(!CachedFile::decode(&bytes).unwrap().no_xattrs);
        bytes[24] = 2 | FLAG_NO_XATTRS;
        assert_eq!(CachedFile::decode(&bytes), None);
        let mut bytes = packed.encode();
        bytes.push(0);
        assert_eq!(CachedFile::decode(&bytes), None);
        bytes.truncate(24);
        assert_eq!(CachedFile::decode(&bytes), None);
        let s = BlockId::from_bytes([1; 32]);
        cache
            .update(
                &[
                    (b"p".to_vec(), packed, true),
                    (b"c".to_vec(), entry(7), true),
                ],
                &s,
            )
            .unwrap();
        let index = cache.packed().unwrap();
        assert_eq!(index.0.len(), 1);
        assert_eq!(
            index.get(&BlockId::from_bytes([4; 32]), 10),
            Some((BlockId::from_bytes([5; 32]), 70_000))
        );
        assert_eq!(index.get(&BlockId::from_bytes([4; 32]), 11), None);
        assert_eq!(index.get(&BlockId::from_bytes([6; 32]), 10), None);
    }

    fn count(cache: &FileCache) -> u64 {
        let tx = cache.db.begin_read().unwrap();
        tx.open_table(FILES).unwrap().len().unwrap()
    }

    /// The tables of earlier versions are dropped at the first update (their files are read
    /// once more); the keys sort by device, then inode number.
    #[test]
    fn older_tables_are_dropped_and_keys_sort_by_inode() {
        let dir = tempfile::tempdir().unwrap();
        let cache = FileCache::open(&dir.path().join("c.redb")).unwrap();
        let tx = cache.db.begin_write().unwrap();
        for old in [FILES_V1, FILES_V2] {
            tx.open_table(old)
                .unwrap()
                .insert(b"k".as_slice(), b"v".as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
        cache
            .update(
                &[(b"a".to_vec(), entry(1), true)],
                &BlockId::from_bytes([1; 32]),
            )
            .unwrap();
        let tx = cache.db.begin_read().unwrap();
        for old in [FILES_V1, FILES_V2] {
            assert!(matches!(
                tx.open_table(old),
                Err(redb::TableError::TableDoesNotExist(_))
            ));
        }
        assert!(cache_key(1, 255, b"z") < cache_key(1, 256, b"a"));
        assert!(cache_key(1, u64::MAX, b"z") < cache_key(2, 0, b"a"));
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
