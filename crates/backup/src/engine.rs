//! Backup, restore and check.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_chunk::{Chunker, ChunkerConfig};
use cairn_keys::{ArchiveKey, SnapshotKey};
use cairn_seal::{ArchiveId, BlockId, BlockKind, SealConfig, Sealer};

use crate::cache::{CachedFile, FileCache};
use crate::error::BackupError;
use crate::snapshot::Snapshot;
use crate::store::BlockStore;
use crate::tree::{Entry, EntryKind, Tree, is_safe_name};

/// Ids asked about (and blocks sent) per round trip.
const BATCH: usize = 256;

/// What a backup did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// The new snapshot's id.
    pub snapshot: Option<BlockId>,
    /// Files, directories and symlinks recorded.
    pub entries: u64,
    /// Bytes of file contents read.
    pub bytes_read: u64,
    /// Blocks (data and trees) the store lacked and was sent.
    pub blocks_sent: u64,
    /// Sealed bytes sent.
    pub bytes_sent: u64,
    /// Entries skipped (sockets, devices, fifos).
    pub skipped: u64,
    /// Files whose metadata matched the file cache, so they were not read.
    pub files_unchanged: u64,
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct blocks referenced.
    pub blocks: u64,
    /// Problems, one line each.
    pub errors: Vec<String>,
}

/// State carried through one backup's walk.
struct Walk<'a> {
    /// The cache, when it may be trusted.
    cache: Option<&'a FileCache>,
    /// Every file seen, for the cache's rewrite.
    seen: Vec<(Vec<u8>, CachedFile)>,
}

#[cfg(unix)]
fn identity(meta: &fs::Metadata) -> (u64, u64, i64) {
    use std::os::unix::fs::MetadataExt;
    let ctime = meta
        .ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.ctime_nsec());
    (meta.dev(), meta.ino(), ctime)
}

#[cfg(not(unix))]
fn identity(meta: &fs::Metadata) -> (u64, u64, i64) {
    (0, 0, mtime_ns(meta))
}

/// A repository: a block store and the keys of one archive.
pub struct Repository<B: BlockStore> {
    store: B,
    sealer: Sealer,
    chunker: Chunker,
    snapshot_key: SnapshotKey,
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .map(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        })
        .unwrap_or(0)
}

#[cfg(unix)]
fn owner(meta: &fs::Metadata) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    (meta.mode(), meta.uid(), meta.gid())
}

#[cfg(not(unix))]
fn owner(meta: &fs::Metadata) -> (u32, u32, u32) {
    (
        if meta.permissions().readonly() {
            0o444
        } else {
            0o644
        },
        0,
        0,
    )
}

#[cfg(unix)]
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().to_vec()
}

#[cfg(not(unix))]
fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    name.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn name_os(name: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(name).to_owned()
}

#[cfg(not(unix))]
fn name_os(name: &[u8]) -> std::ffi::OsString {
    String::from_utf8_lossy(name).into_owned().into()
}

impl<B: BlockStore> Repository<B> {
    /// A repository over `store` for the archive of `key`.
    pub fn new(store: B, key: &ArchiveKey, archive: ArchiveId) -> Self {
        Self {
            store,
            sealer: Sealer::new(key, archive, SealConfig::default()),
            chunker: Chunker::new(&key.chunker_key(), ChunkerConfig::DEFAULT),
            snapshot_key: key.snapshot_key(),
        }
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

    /// The store.
    pub fn store(&self) -> &B {
        &self.store
    }

    /// Backs up the directory `root` as a new snapshot whose parent is `parent` (the head of
    /// this client's chain, if any).
    pub fn backup(
        &self,
        root: &Path,
        host: &str,
        parent: Option<(&BlockId, &Snapshot)>,
    ) -> Result<BackupSummary, BackupError> {
        self.backup_incremental(root, host, parent, None)
    }

    /// [`Repository::backup`] with a file cache: a file whose device, inode, size, mtime and
    /// ctime match the cache is not read; its chunk ids are reused. The cache is trusted only if
    /// it was written with `parent` (so every id it holds is in the store); otherwise every file
    /// is read. It is rewritten with the new snapshot at the end.
    pub fn backup_incremental(
        &self,
        root: &Path,
        host: &str,
        parent: Option<(&BlockId, &Snapshot)>,
        cache: Option<&FileCache>,
    ) -> Result<BackupSummary, BackupError> {
        let mut summary = BackupSummary::default();
        let trusted = match (cache, parent) {
            (Some(c), Some((id, _))) => c.snapshot()?.as_ref() == Some(id),
            _ => false,
        };
        let mut ctx = Walk {
            cache: cache.filter(|_| trusted),
            seen: Vec::new(),
        };
        let root_tree = self.backup_dir(root, &mut summary, &mut ctx)?;
        let snapshot = Snapshot {
            seq: parent.map_or(0, |(_, s)| s.seq + 1),
            parent: parent.map(|(id, _)| *id),
            root: root_tree,
            time_ns: now_ns(),
            host: host.to_owned(),
            paths: vec![root.to_string_lossy().into_owned()],
            tags: Vec::new(),
        };
        let plain = snapshot.encode(&self.snapshot_key)?;
        let sealed = self
            .sealer
            .seal(BlockKind::SNAPSHOT, &plain)
            .map_err(|e| BackupError::Engine(e.to_string()))?;
        let id = sealed.id();
        self.store.put_snapshot(&id, sealed.as_bytes().to_vec())?;
        summary.snapshot = Some(id);
        if let Some(c) = cache {
            c.replace(&ctx.seen, &id)?;
        }
        Ok(summary)
    }

    /// Sends the blocks of `pending` the store lacks.
    fn flush(
        &self,
        pending: &mut Vec<(BlockId, BlockKind, Vec<u8>)>,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        if pending.is_empty() {
            return Ok(());
        }
        let ids: Vec<BlockId> = pending.iter().map(|(id, _, _)| *id).collect();
        let missing: std::collections::HashSet<BlockId> =
            self.store.missing(&ids)?.into_iter().collect();
        let mut out = Vec::new();
        let mut sent = std::collections::HashSet::new();
        for (id, kind, plain) in pending.drain(..) {
            if missing.contains(&id) && sent.insert(id) {
                let sealed = self
                    .sealer
                    .seal(kind, &plain)
                    .map_err(|e| BackupError::Engine(e.to_string()))?;
                summary.bytes_sent += sealed.as_bytes().len() as u64;
                out.push((id, sealed.as_bytes().to_vec()));
            }
        }
        summary.blocks_sent += out.len() as u64;
        if !out.is_empty() {
            self.store.put_blocks(out)?;
        }
        Ok(())
    }

    /// A file's chunks: from the cache if its metadata is unchanged, else by reading it.
    fn file_with_cache(
        &self,
        path: &Path,
        meta: &fs::Metadata,
        summary: &mut BackupSummary,
        ctx: &mut Walk<'_>,
    ) -> Result<(u64, Vec<BlockId>), BackupError> {
        let (dev, ino, ctime_ns) = identity(meta);
        let key = crate::cache::cache_key(dev, ino, &name_bytes(path.as_os_str()));
        let mtime = mtime_ns(meta);
        if let Some(cache) = ctx.cache
            && let Some(hit) = cache.get(&key)?
            && hit.size == meta.len()
            && hit.mtime_ns == mtime
            && hit.ctime_ns == ctime_ns
        {
            summary.files_unchanged += 1;
            let result = (hit.size, hit.chunks.clone());
            ctx.seen.push((key, hit));
            return Ok(result);
        }
        let (size, chunks) = self.backup_file(path, summary)?;
        ctx.seen.push((
            key,
            CachedFile {
                size,
                mtime_ns: mtime,
                ctime_ns,
                chunks: chunks.clone(),
            },
        ));
        Ok((size, chunks))
    }

    fn backup_file(
        &self,
        path: &Path,
        summary: &mut BackupSummary,
    ) -> Result<(u64, Vec<BlockId>), BackupError> {
        let mut file = File::open(path).map_err(|e| BackupError::io(path, e))?;
        let mut stream = self.chunker.stream(&mut file);
        let mut ids = Vec::new();
        let mut size = 0u64;
        let mut pending = Vec::new();
        while let Some((_, chunk)) = stream
            .next_chunk()
            .map_err(|e| BackupError::io(path, std::io::Error::other(e.to_string())))?
        {
            let id = self.sealer.block_id(BlockKind::DATA, chunk);
            size += chunk.len() as u64;
            ids.push(id);
            pending.push((id, BlockKind::DATA, chunk.to_vec()));
            if pending.len() >= BATCH / 16 {
                self.flush(&mut pending, summary)?;
            }
        }
        self.flush(&mut pending, summary)?;
        summary.bytes_read += size;
        Ok((size, ids))
    }

    fn backup_dir(
        &self,
        dir: &Path,
        summary: &mut BackupSummary,
        ctx: &mut Walk<'_>,
    ) -> Result<BlockId, BackupError> {
        let mut names: Vec<(Vec<u8>, std::ffi::OsString)> = fs::read_dir(dir)
            .map_err(|e| BackupError::io(dir, e))?
            .map(|e| e.map(|e| (name_bytes(&e.file_name()), e.file_name())))
            .collect::<Result<_, _>>()
            .map_err(|e| BackupError::io(dir, e))?;
        names.sort_unstable();
        let mut tree = Tree::default();
        for (bytes, name) in names {
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(&path).map_err(|e| BackupError::io(&path, e))?;
            let (mode, uid, gid) = owner(&meta);
            let kind = if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).map_err(|e| BackupError::io(&path, e))?;
                EntryKind::Symlink {
                    target: name_bytes(target.as_os_str()),
                }
            } else if meta.is_dir() {
                EntryKind::Dir {
                    tree: self.backup_dir(&path, summary, ctx)?,
                }
            } else if meta.is_file() {
                let (size, chunks) = self.file_with_cache(&path, &meta, summary, ctx)?;
                EntryKind::File { size, chunks }
            } else {
                summary.skipped += 1;
                continue;
            };
            summary.entries += 1;
            tree.entries.push(Entry {
                name: bytes,
                mode,
                uid,
                gid,
                mtime_ns: mtime_ns(&meta),
                kind,
            });
        }
        let plain = tree.encode()?;
        let id = self.sealer.block_id(BlockKind::TREE, &plain);
        let mut pending = vec![(id, BlockKind::TREE, plain)];
        self.flush(&mut pending, summary)?;
        Ok(id)
    }

    /// Opens a block of `kind` named `id`: authenticated, and its id recomputed.
    fn open(&self, kind: BlockKind, id: &BlockId) -> Result<Vec<u8>, BackupError> {
        let sealed = self.store.get_block(id)?;
        self.sealer
            .open(kind, id, &sealed)
            .map_err(|_| BackupError::Block(id.to_string()))
    }

    /// Every snapshot that authenticates with this key, with its id, oldest first.
    pub fn snapshots(&self) -> Result<Vec<(BlockId, Snapshot)>, BackupError> {
        let mut out = Vec::new();
        for id in self.store.list_snapshots()? {
            let sealed = self.store.get_snapshot(&id)?;
            let plain = self
                .sealer
                .open(BlockKind::SNAPSHOT, &id, &sealed)
                .map_err(|_| BackupError::Block(id.to_string()))?;
            out.push((id, Snapshot::decode(&plain, &self.snapshot_key)?));
        }
        out.sort_by_key(|(_, s)| s.seq);
        Ok(out)
    }

    /// Restores a snapshot into `target`, which must not exist or be an empty directory. Every
    /// block is authenticated and its id recomputed; names that could leave the target are
    /// refused by the tree decoder; symlinks are created, never followed.
    pub fn restore(&self, snapshot: &Snapshot, target: &Path) -> Result<u64, BackupError> {
        if target.exists() {
            let mut entries = fs::read_dir(target).map_err(|e| BackupError::io(target, e))?;
            if entries.next().is_some() {
                return Err(BackupError::TargetNotEmpty(target.to_path_buf()));
            }
        } else {
            fs::create_dir_all(target).map_err(|e| BackupError::io(target, e))?;
        }
        let mut restored = 0;
        self.restore_tree(&snapshot.root, target, &mut restored)?;
        Ok(restored)
    }

    fn restore_tree(
        &self,
        tree_id: &BlockId,
        dir: &Path,
        restored: &mut u64,
    ) -> Result<(), BackupError> {
        let tree = Tree::decode(&self.open(BlockKind::TREE, tree_id)?)?;
        for e in &tree.entries {
            if !is_safe_name(&e.name) {
                return Err(BackupError::Malformed("unsafe entry name"));
            }
            let path = dir.join(name_os(&e.name));
            match &e.kind {
                EntryKind::Dir { tree } => {
                    fs::create_dir(&path).map_err(|err| BackupError::io(&path, err))?;
                    self.restore_tree(tree, &path, restored)?;
                }
                EntryKind::File { size, chunks } => {
                    let mut f = File::options()
                        .write(true)
                        .create_new(true)
                        .open(&path)
                        .map_err(|err| BackupError::io(&path, err))?;
                    let mut written = 0u64;
                    for id in chunks {
                        let data = self.open(BlockKind::DATA, id)?;
                        written += data.len() as u64;
                        f.write_all(&data)
                            .map_err(|err| BackupError::io(&path, err))?;
                    }
                    if written != *size {
                        return Err(BackupError::Malformed("file size"));
                    }
                    f.set_modified(time_of(e.mtime_ns))
                        .map_err(|err| BackupError::io(&path, err))?;
                }
                EntryKind::Symlink { target } => make_symlink(target, &path)?,
            }
            set_mode(&path, e)?;
            *restored += 1;
        }
        // Directory times last, after their contents stopped changing them.
        for e in &tree.entries {
            if matches!(e.kind, EntryKind::Dir { .. }) {
                let path = dir.join(name_os(&e.name));
                let f = File::open(&path).map_err(|err| BackupError::io(&path, err))?;
                f.set_modified(time_of(e.mtime_ns))
                    .map_err(|err| BackupError::io(&path, err))?;
            }
        }
        Ok(())
    }

    /// Checks every snapshot's trees; with `read_data`, opens every data block too (B-14).
    pub fn check(&self, read_data: bool) -> Result<CheckReport, BackupError> {
        let mut report = CheckReport::default();
        let mut seen = std::collections::HashSet::new();
        for (_, snapshot) in self.snapshots()? {
            report.snapshots += 1;
            let mut stack = vec![snapshot.root];
            while let Some(tree_id) = stack.pop() {
                if !seen.insert(tree_id) {
                    continue;
                }
                let tree = match self
                    .open(BlockKind::TREE, &tree_id)
                    .and_then(|t| Tree::decode(&t))
                {
                    Ok(t) => t,
                    Err(e) => {
                        report.errors.push(format!("tree {tree_id}: {e}"));
                        continue;
                    }
                };
                for e in tree.entries {
                    match e.kind {
                        EntryKind::Dir { tree } => stack.push(tree),
                        EntryKind::File { chunks, .. } => {
                            for id in chunks {
                                if !seen.insert(id) {
                                    continue;
                                }
                                let result = if read_data {
                                    self.open(BlockKind::DATA, &id).map(|_| ())
                                } else {
                                    self.store
                                        .missing(&[id])
                                        .map_err(BackupError::from)
                                        .and_then(|m| {
                                            if m.is_empty() {
                                                Ok(())
                                            } else {
                                                Err(BackupError::Block(id.to_string()))
                                            }
                                        })
                                };
                                if let Err(err) = result {
                                    report.errors.push(format!("block {id}: {err}"));
                                }
                            }
                        }
                        EntryKind::Symlink { .. } => {}
                    }
                }
            }
        }
        report.blocks = seen.len() as u64;
        Ok(report)
    }
}

fn time_of(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

#[cfg(unix)]
fn make_symlink(target: &[u8], path: &Path) -> Result<(), BackupError> {
    std::os::unix::fs::symlink(name_os(target), path).map_err(|e| BackupError::io(path, e))
}

#[cfg(not(unix))]
fn make_symlink(_target: &[u8], path: &Path) -> Result<(), BackupError> {
    Err(BackupError::io(
        path,
        std::io::Error::other("symlinks are not restored on this platform"),
    ))
}

#[cfg(unix)]
fn set_mode(path: &Path, e: &Entry) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    if matches!(e.kind, EntryKind::Symlink { .. }) {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(e.mode & 0o7777))
        .map_err(|err| BackupError::io(path, err))
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _e: &Entry) -> Result<(), BackupError> {
    Ok(())
}
