//! Backup, restore and check.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cairn_chunk::{Algorithm, Chunker, ChunkerConfig};
use cairn_keys::{ArchiveKey, ChunkerKey, SnapshotKey};
use cairn_seal::{ArchiveId, BlockId, BlockKind, Identified, SealConfig, Sealer};

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::cache::{CachedFile, FileCache, PackedIndex};
use crate::error::BackupError;
use crate::progress::{Meter, Phase, Progress};
use crate::snapshot::{
    CHUNKER_KEYED_V1, CHUNKER_KEYED_V2, CHUNKER_UNKEYED_FASTCDC2020, ChunkerRecord, Snapshot,
};
use crate::store::BlockStore;
use crate::tree::{Entry, EntryKind, Tree, Xattrs, is_safe_name};

/// Ids asked about (and blocks sent) per round trip, for trees.
const BATCH: usize = 256;
/// Plaintext bytes a worker holds before asking the store what it lacks and sending (the
/// memory bound per worker), and the most blocks it holds (small files: one round trip, and
/// one commit, per batch rather than per 16 blocks), for a store behind a round trip. A store
/// that [answers locally](BlockStore::answers_locally) is asked about each block at once while
/// every worker has files of its own ([`Outbox`]), and the block sealed while it is still in the
/// worker's cache: measured on the peer benchmark's corpus, about 5 % less CPU time for a
/// first backup than batches of 4 MiB (`docs/design/0008-seal-while-hot.md`).
const PENDING_BYTES: usize = 4 << 20;
/// Batches of a big file's blocks handed to the pool at most, per worker, once some workers
/// have no files left ([`Repository::backup_stream`]): about `HANDED * 4 MiB` of blocks per core
/// waiting to be sealed, at most.
const HANDED: usize = 1;
/// Chunks fetched per store request when restoring a file.
const RESTORE_BATCH: usize = 16;
/// Most chunks, and bytes, of one group of small files restored from one fetch.
const RESTORE_GROUP_CHUNKS: usize = 256;
const RESTORE_GROUP_BYTES: u64 = 16 << 20;
/// Input bytes per group of small files handled by one worker.
const GROUP_BYTES: u64 = 16 << 20;
/// Files per group.
const GROUP_FILES: usize = 512;
/// Files shorter than this are packed: stored end to end with other small files of their group
/// in one data block (`EntryKind::Packed`), compressed together.
pub const PACK_BELOW: usize = 64 << 10;
/// A pack is closed once it holds this many bytes (so it holds less than
/// `PACK_TARGET + PACK_BELOW`).
pub const PACK_TARGET: usize = 1 << 20;

/// Groups of files (to back up or restore) that no worker has started yet. While some wait,
/// every worker has files of its own.
struct Waiting(AtomicUsize);

impl Waiting {
    fn new(groups: usize) -> Self {
        Waiting(AtomicUsize::new(groups))
    }

    /// A worker starts a group.
    fn start_one(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether some group still waits for a worker.
    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// The file phase's shared counters: groups of files no worker has started yet, and batches of
/// blocks handed from one worker to the others.
struct FilePhase {
    waiting: Waiting,
    handed: AtomicUsize,
}

/// A worker's named blocks not yet sent, and whether its blocks are sealed one by one instead.
///
/// For a store that [answers locally](BlockStore::answers_locally), a block is best sealed as
/// soon as it is named, by the worker that named it, while it is still in that core's cache
/// (`docs/design/0008-seal-while-hot.md`), but only while every worker has files of its own:
/// once no group of files is waiting for a worker, blocks are batched again, and a big file's
/// batches are handed to the workers left without files ([`Repository::backup_stream`]), so that a
/// big file read last, or alone, is sealed on every core.
struct Outbox<'w> {
    blocks: Vec<Identified>,
    /// The file phase's counters; `None` outside it (trees): batched, and never handed on.
    phase: Option<&'w FilePhase>,
}

impl<'w> Outbox<'w> {
    /// An outbox for trees and anything else outside the file phase: always batched.
    fn batched() -> Self {
        Outbox {
            blocks: Vec::new(),
            phase: None,
        }
    }

    /// An outbox for a worker of the file phase.
    fn for_files(phase: &'w FilePhase) -> Self {
        Outbox {
            blocks: Vec::new(),
            phase: Some(phase),
        }
    }

    /// Whether the blocks should go to the store now: once they are [`PENDING_BYTES`] or
    /// [`BATCH`] blocks.
    fn full(&self) -> bool {
        self.blocks.len() >= BATCH
            || self
                .blocks
                .iter()
                .map(|b| b.plaintext().len())
                .sum::<usize>()
                >= PENDING_BYTES
    }
}

/// A file's contents hashed two ways, for file events: SHA-256 (what threat intelligence and
/// SIEMs match) and BLAKE3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ContentHash {
    /// SHA-256 of the contents.
    pub sha256: [u8; 32],
    /// BLAKE3 (unkeyed) of the contents.
    pub blake3: [u8; 32],
}

#[derive(Default)]
struct Hashing {
    sha256: sha2::Sha256,
    blake3: blake3::Hasher,
}

impl Hashing {
    fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.sha256, bytes);
        self.blake3.update(bytes);
    }

    /// The hashes of one whole buffer.
    fn of(data: &[u8]) -> ContentHash {
        let mut h = Self::default();
        h.update(data);
        h.finish()
    }

    fn finish(self) -> ContentHash {
        ContentHash {
            sha256: sha2::Digest::finalize(self.sha256).into(),
            blake3: *self.blake3.finalize().as_bytes(),
        }
    }
}

/// What reading one file produced: its size, its chunk ids, and its content hashes (with content
/// hashes on).
type FileRead = (u64, Vec<BlockId>, Option<ContentHash>);

/// What one group of files produced: (slot, where its bytes are, content hashes) per file, and
/// its counters.
type GroupResult = (Vec<(usize, EntryKind, Option<ContentHash>)>, BackupSummary);

/// The pack id of a packed file whose pack is still open.
const PLACEHOLDER: BlockId = BlockId::from_bytes([0; 32]);

/// The pack a group of small files is filling: its bytes, and which of the group's files
/// (indexes into the group's output) lie in it.
#[derive(Default)]
struct OpenPack {
    bytes: Vec<u8>,
    members: Vec<usize>,
}

/// Reads on from `file` onto `data` until the end or until `data` holds one byte more than the
/// minimum chunk (then the file is cut as a stream): never more than that in memory, however
/// much the file grew since the walk.
fn read_head(
    chunker: &Chunker,
    path: &Path,
    file: &mut File,
    data: &mut Vec<u8>,
) -> Result<(), BackupError> {
    let limit = chunker.config().min() + 1;
    let want = limit.saturating_sub(data.len()) as u64;
    Read::by_ref(file)
        .take(want)
        .read_to_end(data)
        .map_err(|e| BackupError::io(path, e))?;
    Ok(())
}

/// A file to back up, as the walk found it.
struct FileJob {
    path: std::path::PathBuf,
    key: Vec<u8>,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    /// Device and inode, for files with more than one link.
    inode: Option<(u64, u64)>,
}

/// A directory as the walk found it.
#[derive(Default)]
struct DirNode {
    entries: Vec<ScanEntry>,
}

struct ScanEntry {
    name: Vec<u8>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime_ns: i64,
    link_group: u32,
    xattrs: Xattrs,
    kind: ScanKind,
}

enum ScanKind {
    /// A file as the walk found it, before numbering.
    NewFile(Box<FileJob>),
    /// A numbered file: its slot in the jobs.
    File(usize),
    Dir(DirNode),
    Symlink(Vec<u8>),
}

/// Walks `dir` (metadata only): the entries of one directory one after another, its
/// subdirectories in parallel on the CPU pool. Files are numbered afterwards by [`number_files`];
/// their extended attributes are listed after the cache lookups ([`list_file_xattrs`]).
fn scan_dir(dir: &Path) -> Result<Scanned, BackupError> {
    let mut names: Vec<(Vec<u8>, fs::DirEntry)> = fs::read_dir(dir)
        .map_err(|e| BackupError::io(dir, e))?
        .map(|e| e.map(|e| (name_bytes(&e.file_name()), e)))
        .collect::<Result<_, _>>()
        .map_err(|e| BackupError::io(dir, e))?;
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let mut scanned = Scanned::default();
    let mut subdirs = Vec::new();
    for (bytes, entry) in names {
        let path = entry.path();
        // Relative to the open directory (fstatat on Unix), without following a symlink and
        // without resolving the whole path again.
        let meta = entry.metadata().map_err(|e| BackupError::io(&path, e))?;
        let (mode, uid, gid) = owner(&meta);
        let xattrs = if meta.is_file() {
            Vec::new()
        } else {
            read_xattrs(&path)?
        };
        let kind = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path).map_err(|e| BackupError::io(&path, e))?;
            ScanKind::Symlink(name_bytes(target.as_os_str()))
        } else if meta.is_dir() {
            subdirs.push((scanned.node.entries.len(), path));
            ScanKind::Dir(DirNode::default())
        } else if meta.is_file() {
            let (dev, ino, ctime_ns) = identity(&meta);
            ScanKind::NewFile(Box::new(FileJob {
                key: crate::cache::cache_key(dev, ino, &name_bytes(path.as_os_str())),
                path,
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                ctime_ns,
                inode: (links(&meta) > 1).then_some((dev, ino)),
            }))
        } else {
            scanned.skipped += 1;
            continue;
        };
        scanned.entries += 1;
        scanned.node.entries.push(ScanEntry {
            name: bytes,
            mode,
            uid,
            gid,
            mtime_ns: mtime_ns(&meta),
            link_group: 0,
            xattrs,
            kind,
        });
    }
    use rayon::prelude::*;
    let children: Vec<Result<Scanned, BackupError>> =
        subdirs.par_iter().map(|(_, path)| scan_dir(path)).collect();
    for ((at, _), child) in subdirs.into_iter().zip(children) {
        let child = child?;
        scanned.entries += child.entries;
        scanned.skipped += child.skipped;
        scanned.node.entries[at].kind = ScanKind::Dir(child.node);
    }
    Ok(scanned)
}

/// Moves the files of a scanned tree into `jobs`, in walk order, leaving their slots.
fn number_files(node: &mut DirNode, jobs: &mut Vec<FileJob>) {
    for entry in &mut node.entries {
        match &mut entry.kind {
            ScanKind::Dir(child) => number_files(child, jobs),
            kind @ ScanKind::NewFile(_) => {
                if let ScanKind::NewFile(job) = std::mem::replace(kind, ScanKind::File(jobs.len()))
                {
                    jobs.push(*job);
                }
            }
            ScanKind::File(_) | ScanKind::Symlink(_) => {}
        }
    }
}

/// Hard links: files of this walk that share a device and inode. Returns, per slot, its link
/// group (0 for none; groups numbered from 1 in walk order) and the slot of the group's first
/// file (whose contents the others share).
fn link_groups(jobs: &[FileJob]) -> (Vec<u32>, Vec<Option<usize>>) {
    let mut count: std::collections::HashMap<(u64, u64), u32> = std::collections::HashMap::new();
    for inode in jobs.iter().filter_map(|j| j.inode) {
        *count.entry(inode).or_default() += 1;
    }
    let mut groups = vec![0u32; jobs.len()];
    let mut leader = vec![None; jobs.len()];
    let mut seen: std::collections::HashMap<(u64, u64), (u32, usize)> =
        std::collections::HashMap::new();
    let mut next = 0u32;
    for (slot, job) in jobs.iter().enumerate() {
        let Some(inode) = job.inode.filter(|i| count.get(i).is_some_and(|&n| n > 1)) else {
            continue;
        };
        let (group, first) = *seen.entry(inode).or_insert_with(|| {
            next = next.saturating_add(1);
            (next, slot)
        });
        groups[slot] = group;
        if first != slot {
            leader[slot] = Some(first);
        }
    }
    (groups, leader)
}

/// The extended attributes of each file, by slot; `None` for a file the cache vouches had none
/// (`skip`), which is not asked again.
fn list_file_xattrs(jobs: &[FileJob], skip: &[bool]) -> Result<Vec<Option<Xattrs>>, BackupError> {
    use rayon::prelude::*;
    jobs.par_iter()
        .zip(skip)
        .map(|(job, &skip)| {
            if skip {
                Ok(None)
            } else {
                read_xattrs(&job.path).map(Some)
            }
        })
        .collect()
}

/// Moves each numbered file's extended attributes into its entry.
fn set_file_xattrs(node: &mut DirNode, xattrs: &mut [Option<Xattrs>]) {
    for entry in &mut node.entries {
        match &mut entry.kind {
            ScanKind::Dir(child) => set_file_xattrs(child, xattrs),
            ScanKind::File(slot) => {
                entry.xattrs = xattrs
                    .get_mut(*slot)
                    .and_then(Option::take)
                    .unwrap_or_default();
            }
            ScanKind::NewFile(_) | ScanKind::Symlink(_) => {}
        }
    }
}

/// Sets each numbered file entry's link group.
fn set_link_groups(node: &mut DirNode, groups: &[u32]) {
    for entry in &mut node.entries {
        match &mut entry.kind {
            ScanKind::Dir(child) => set_link_groups(child, groups),
            ScanKind::File(slot) => entry.link_group = groups.get(*slot).copied().unwrap_or(0),
            ScanKind::NewFile(_) | ScanKind::Symlink(_) => {}
        }
    }
}

/// Extended attributes of `path` (not following a symlink), sorted by name. A filesystem
/// without them gives none.
#[cfg(unix)]
fn read_xattrs(path: &Path) -> Result<Xattrs, BackupError> {
    use std::os::unix::ffi::OsStrExt;
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(95) => return Ok(Vec::new()), // EOPNOTSUPP
        Err(e) => return Err(BackupError::io(path, e)),
    };
    let mut out = Vec::new();
    for name in names {
        // A value removed since the listing is skipped; any other failure is reported.
        if let Some(value) = xattr::get(path, &name).map_err(|e| BackupError::io(path, e))? {
            out.push((name.as_bytes().to_vec(), value));
        }
    }
    out.sort_unstable();
    Ok(out)
}

#[cfg(not(unix))]
fn read_xattrs(_path: &Path) -> Result<Xattrs, BackupError> {
    Ok(Vec::new())
}

#[cfg(unix)]
fn links(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.nlink()
}

#[cfg(not(unix))]
fn links(_meta: &fs::Metadata) -> u64 {
    1
}

/// One directory's scan, with its counters.
#[derive(Default)]
struct Scanned {
    node: DirNode,
    entries: u64,
    skipped: u64,
}

/// What a backup did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// The new snapshot's id.
    pub snapshot: Option<BlockId>,
    /// The new snapshot itself (what [`Repository::snapshot`] would read back for `snapshot`).
    pub record: Option<Snapshot>,
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
    /// Unchanged files the cache knew had no extended attributes, so they were not listed.
    pub xattrs_not_listed: u64,
    /// Small files read and packed into a new pack.
    pub files_packed: u64,
    /// Small files read whose contents were already packed (in this backup, or in the store
    /// according to the cache): referenced there, not packed again.
    pub files_deduplicated: u64,
    /// With [`Repository::with_content_hashes`]: each file read by this backup (its path as
    /// walked) with the SHA-256 and BLAKE3 hashes of its contents, computed from the same read
    /// that chunked it. Files the cache vouched for were not read and are not listed.
    pub content_hashes: Vec<(std::path::PathBuf, ContentHash)>,
}

/// What a check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct blocks referenced (trees and data).
    pub blocks: u64,
    /// Data blocks opened (all of them with `read_data`, a subset's with a subset).
    pub blocks_read: u64,
    /// Problems, one line each.
    pub errors: Vec<String>,
    /// Snapshots skipped as not made with this key (with foreign snapshots skipped).
    pub foreign_snapshots: u64,
}

/// State carried through one backup's walk.
struct Walk<'a> {
    /// The chunker this snapshot's files are cut with.
    chunker: &'a Chunker,
    /// The cache, when it may be trusted.
    cache: Option<&'a FileCache>,
    /// Every file seen, for the cache's update: key, entry, and whether it differs from the
    /// cache's.
    seen: Vec<(Vec<u8>, CachedFile, bool)>,
    /// The packed files the trusted cache knows (indexed once, when a small file is to be read).
    packed: Option<PackedIndex>,
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
    chunker_key: ChunkerKey,
    snapshot_key: SnapshotKey,
    progress: Option<Arc<dyn Progress>>,
    content_hashes: bool,
    skip_foreign: bool,
    /// Files shorter than this are packed ([`PACK_BELOW`], or 0: packing off).
    pack_below: u64,
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
        self.backup_folders(&[root.to_path_buf()], host, parent, cache)
    }

    /// [`Repository::backup_incremental`] of several folders into one snapshot. One folder is
    /// the snapshot's root, as with `backup_incremental`. Several must be absolute, distinct and
    /// not inside one another; the snapshot's root is then `/`, holding each folder at its
    /// absolute path: the directories above the folders, and the folders themselves, are
    /// recorded with their mode and owner (times 0, so that activity beside the folders changes
    /// nothing) and only the entries that lead to a folder (a restore recreates `TARGET/home/ana/Documents`
    /// for `/home/ana/Documents`). The snapshot's `paths` name every folder.
    ///
    /// # Errors
    /// [`BackupError::Usage`] for folders that are not absolute, repeat, or nest; what a backup
    /// can fail with otherwise.
    pub fn backup_folders(
        &self,
        roots: &[PathBuf],
        host: &str,
        parent: Option<(&BlockId, &Snapshot)>,
        cache: Option<&FileCache>,
    ) -> Result<BackupSummary, BackupError> {
        if roots.is_empty() {
            return Err(BackupError::Usage("no folder to back up".into()));
        }
        if roots.len() > 1 {
            for (i, a) in roots.iter().enumerate() {
                if !a.is_absolute() || a.parent().is_none() {
                    return Err(BackupError::Usage(format!(
                        "{}: several folders must be absolute paths below /",
                        a.display()
                    )));
                }
                if let Some(b) = roots[i + 1..]
                    .iter()
                    .find(|b| a.starts_with(b) || b.starts_with(a))
                {
                    return Err(BackupError::Usage(format!(
                        "{} and {} repeat or nest",
                        a.display(),
                        b.display()
                    )));
                }
            }
        }
        let mut summary = BackupSummary::default();
        let trusted = match (cache, parent) {
            (Some(c), Some((id, _))) => c.snapshot()?.as_ref() == Some(id),
            _ => false,
        };
        let continued = parent.and_then(|(_, s)| self.parent_chunker(&s.chunker));
        let chunker = continued.as_ref().unwrap_or(&self.chunker);
        let mut ctx = Walk {
            chunker,
            cache: cache.filter(|_| trusted),
            seen: Vec::new(),
            packed: None,
        };
        let root_tree = match roots {
            [root] => self.backup_dir(root, &mut summary, &mut ctx)?,
            _ => {
                let mut trees = BTreeMap::new();
                for root in roots {
                    trees.insert(root.clone(), self.backup_dir(root, &mut summary, &mut ctx)?);
                }
                self.above_folders(trees, &mut summary)?
            }
        };
        let snapshot = Snapshot {
            seq: parent.map_or(0, |(_, s)| s.seq + 1),
            parent: parent.map(|(id, _)| *id),
            root: root_tree,
            time_ns: now_ns(),
            host: host.to_owned(),
            paths: roots
                .iter()
                .map(|r| r.to_string_lossy().into_owned())
                .collect(),
            tags: Vec::new(),
            chunker: Self::chunker_record(chunker)?,
        };
        let plain = snapshot.encode(&self.snapshot_key)?;
        let sealed = self
            .sealer
            .seal(BlockKind::SNAPSHOT, &plain)
            .map_err(|e| BackupError::Engine(e.to_string()))?;
        let id = sealed.id();
        self.store.put_snapshot(&id, sealed.as_bytes().to_vec())?;
        summary.snapshot = Some(id);
        summary.record = Some(snapshot);
        if let Some(c) = cache {
            c.update(&ctx.seen, &id)?;
        }
        Ok(summary)
    }

    /// The trees of the directories above several folders, up to `/`, given each folder's
    /// tree: each directory holds only the entries that lead to a folder, with its own metadata.
    /// Returns the tree of `/`.
    fn above_folders(
        &self,
        mut trees: BTreeMap<PathBuf, BlockId>,
        summary: &mut BackupSummary,
    ) -> Result<BlockId, BackupError> {
        let mut outbox = Outbox::batched();
        // Deepest first, so that a directory's children are done before it.
        let mut dirs: Vec<PathBuf> = trees
            .keys()
            .flat_map(|r| r.ancestors().skip(1).map(Path::to_path_buf))
            .collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        dirs.dedup();
        for dir in dirs {
            if trees.contains_key(&dir) {
                continue;
            }
            let mut tree = Tree::default();
            for (child, id) in trees.range(dir.clone()..) {
                if !child.starts_with(&dir) {
                    break;
                }
                if child.parent() != Some(dir.as_path()) {
                    continue;
                }
                let meta = fs::metadata(child).map_err(|e| BackupError::io(child, e))?;
                let (mode, uid, gid) = owner(&meta);
                // Times are not recorded for these (0): a directory above the folders changes
                // its time whenever anything beside them does, which would make every backup
                // a new tree and a change.
                let name = child
                    .file_name()
                    .ok_or_else(|| BackupError::Usage(format!("{}: no name", child.display())))?;
                tree.entries.push(Entry {
                    name: name_bytes(name),
                    mode,
                    uid,
                    gid,
                    mtime_ns: 0,
                    link_group: 0,
                    xattrs: Vec::new(),
                    kind: EntryKind::Dir { tree: *id },
                });
            }
            tree.entries.sort_by(|a, b| a.name.cmp(&b.name));
            let id = self.queue(BlockKind::TREE, tree.encode()?, &mut outbox, summary)?;
            trees.insert(dir, id);
        }
        self.flush(&mut outbox, summary)?;
        trees
            .get(Path::new("/"))
            .copied()
            .ok_or_else(|| BackupError::Usage("several folders must be absolute".into()))
    }

    /// Whether blocks go one at a time, each handled by the worker that has it while it is in
    /// that core's cache (sealed at once in a backup, written at once in a restore): for a store
    /// that [answers locally](BlockStore::answers_locally) (a question costs no round trip),
    /// while every worker has files of its own (some group is `waiting`). Otherwise in batches,
    /// which idle workers share.
    fn one_at_a_time(&self, waiting: Option<&Waiting>) -> bool {
        self.store.answers_locally() && waiting.is_some_and(Waiting::any)
    }

    /// Whether a block named into `outbox` is sealed and sent at once ([`Outbox`]).
    fn at_once(&self, outbox: &Outbox<'_>) -> bool {
        self.one_at_a_time(outbox.phase.map(|p| &p.waiting))
    }

    /// Sends the blocks of `outbox` the store lacks.
    fn flush(
        &self,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        self.send(std::mem::take(&mut outbox.blocks), summary)
    }

    /// Names a block and sends it at once if the store lacks it, sealed straight from `plaintext`
    /// (no copy): for a store that [answers locally](BlockStore::answers_locally), where a
    /// question costs no round trip. Returns the block's id.
    fn send_now(
        &self,
        kind: BlockKind,
        plaintext: &[u8],
        summary: &mut BackupSummary,
    ) -> Result<BlockId, BackupError> {
        let block = self.sealer.identify_borrowed(kind, plaintext);
        let id = block.id();
        self.send(vec![block], summary)?;
        Ok(id)
    }

    /// Seals and sends the blocks the store lacks (each once).
    fn send<P: AsRef<[u8]> + Sync>(
        &self,
        blocks: Vec<Identified<P>>,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let ids: Vec<BlockId> = blocks.iter().map(Identified::id).collect();
        let missing: std::collections::HashSet<BlockId> =
            self.store.missing(&ids)?.into_iter().collect();
        let mut sent = std::collections::HashSet::new();
        let to_seal: Vec<Identified<P>> = blocks
            .into_iter()
            .filter(|b| missing.contains(&b.id()) && sent.insert(b.id()))
            .collect();
        // Compress and encrypt on the pool: a big file's blocks are sealed by every core, not
        // only by the worker that cut it.
        use rayon::prelude::*;
        let out: Vec<(BlockId, Vec<u8>)> = to_seal
            .par_iter()
            .map(|block| {
                self.sealer
                    .seal_identified(block)
                    .map(|sealed| (block.id(), sealed.into_bytes()))
                    .map_err(|e| BackupError::Engine(e.to_string()))
            })
            .collect::<Result<_, _>>()?;
        drop(to_seal);
        summary.bytes_sent += out.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        summary.blocks_sent += out.len() as u64;
        if !out.is_empty() {
            self.store.put_blocks(out)?;
        }
        Ok(())
    }

    /// Reads a small file (the walk saw fewer than [`PACK_BELOW`] bytes) onto the end of
    /// `pack`. Returns `Ok(None)` if it was packed (its bytes are `pack[offset..]`, where
    /// `offset` is the pack's length before the call), or what it became if it grew past the
    /// packing size since the walk (then nothing was added to `pack`).
    fn read_small(
        &self,
        chunker: &Chunker,
        path: &Path,
        pack: &mut Vec<u8>,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<Option<FileRead>, BackupError> {
        let mut file = File::open(path).map_err(|e| BackupError::io(path, e))?;
        // A pack is read into once, never moved: room for the largest it can become.
        if pack.capacity() == 0 {
            pack.reserve_exact(PACK_TARGET + PACK_BELOW);
        }
        let offset = pack.len();
        // At most PACK_BELOW bytes: one more than that means it grew.
        (&mut file)
            .take(PACK_BELOW as u64)
            .read_to_end(pack)
            .map_err(|e| BackupError::io(path, e))?;
        if pack.len() - offset < PACK_BELOW {
            summary.bytes_read += (pack.len() - offset) as u64;
            return Ok(None);
        }
        let mut head = pack.split_off(offset);
        read_head(chunker, path, &mut file, &mut head)?;
        self.backup_read(chunker, path, head, file, outbox, summary)
            .map(Some)
    }

    fn backup_file(
        &self,
        chunker: &Chunker,
        path: &Path,
        expected_size: u64,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<FileRead, BackupError> {
        let mut file = File::open(path).map_err(|e| BackupError::io(path, e))?;
        // A file no longer than the minimum chunk is one chunk: read it whole, in one read
        // (plus the one that sees the end), without the streaming chunker's window.
        if expected_size <= chunker.config().min() as u64 {
            let mut data = Vec::with_capacity(usize::try_from(expected_size).unwrap_or(0) + 1);
            read_head(chunker, path, &mut file, &mut data)?;
            return self.backup_read(chunker, path, data, file, outbox, summary);
        }
        self.backup_stream(chunker, path, file, outbox, summary)
    }

    /// A file whose first bytes (`data`, as [`read_head`] left them) were read, the rest to
    /// come from `file`: one chunk if it fits in the minimum chunk, cut as a stream otherwise.
    fn backup_read(
        &self,
        chunker: &Chunker,
        path: &Path,
        data: Vec<u8>,
        file: File,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<FileRead, BackupError> {
        if data.len() > chunker.config().min() {
            // Longer than one chunk (it grew since the walk): cut what was read and the rest
            // as a stream.
            return self.backup_stream(
                chunker,
                path,
                std::io::Cursor::new(data).chain(file),
                outbox,
                summary,
            );
        }
        let hash = self.content_hashes.then(|| Hashing::of(&data));
        let size = data.len() as u64;
        let mut ids = Vec::new();
        if !data.is_empty() {
            ids.push(self.queue(BlockKind::DATA, data, outbox, summary)?);
        }
        summary.bytes_read += size;
        Ok((size, ids, hash))
    }

    /// Reads one group of files (on a pool worker): small files are packed together, the
    /// others cut into chunks; the group's blocks the store lacks are sealed and sent.
    fn backup_group(
        &self,
        chunker: &Chunker,
        jobs: &[FileJob],
        group: &[usize],
        known: &PackedIndex,
        meter: &Meter<'_>,
        phase: &FilePhase,
    ) -> Result<GroupResult, BackupError> {
        phase.waiting.start_one();
        let mut part = BackupSummary::default();
        let mut outbox = Outbox::for_files(phase);
        let mut out: Vec<(usize, EntryKind, Option<ContentHash>)> = Vec::with_capacity(group.len());
        let mut pack = OpenPack::default();
        // This group's packed files by id: a second copy is the first one's bytes.
        let mut local: std::collections::HashMap<BlockId, usize> = std::collections::HashMap::new();
        for &slot in group {
            let job = &jobs[slot];
            if job.size == 0 || job.size >= self.pack_below {
                let (size, chunks, hash) =
                    self.backup_file(chunker, &job.path, job.size, &mut outbox, &mut part)?;
                meter.add(1, size);
                out.push((slot, EntryKind::File { size, chunks }, hash));
                continue;
            }
            let offset = pack.bytes.len();
            if let Some((size, chunks, hash)) =
                self.read_small(chunker, &job.path, &mut pack.bytes, &mut outbox, &mut part)?
            {
                meter.add(1, size);
                out.push((slot, EntryKind::File { size, chunks }, hash));
                continue;
            }
            let data = &pack.bytes[offset..];
            let size = data.len() as u64;
            meter.add(1, size);
            let hash = self.content_hashes.then(|| Hashing::of(data));
            if data.is_empty() {
                // Emptied since the walk.
                out.push((
                    slot,
                    EntryKind::File {
                        size: 0,
                        chunks: Vec::new(),
                    },
                    hash,
                ));
                continue;
            }
            let id = self.sealer.block_id(BlockKind::DATA, data);
            let copy = match (known.get(&id, size), local.get(&id)) {
                (Some((in_pack, at)), _) => Some(EntryKind::Packed {
                    size,
                    id,
                    pack: in_pack,
                    offset: at,
                }),
                (_, Some(&first)) => {
                    if let EntryKind::Packed { pack: p, .. } = &out[first].1
                        && *p == PLACEHOLDER
                    {
                        // In the open pack: resolved when it closes.
                        pack.members.push(out.len());
                    }
                    Some(out[first].1.clone())
                }
                _ => None,
            };
            if let Some(kind) = copy {
                pack.bytes.truncate(offset);
                part.files_deduplicated += 1;
                out.push((slot, kind, hash));
                continue;
            }
            local.insert(id, out.len());
            pack.members.push(out.len());
            part.files_packed += 1;
            let offset =
                u32::try_from(offset).map_err(|_| BackupError::Engine("pack too large".into()))?;
            out.push((
                slot,
                EntryKind::Packed {
                    size,
                    id,
                    pack: PLACEHOLDER,
                    offset,
                },
                hash,
            ));
            if pack.bytes.len() >= PACK_TARGET {
                self.close_pack(&mut pack, &mut out, &mut outbox, &mut part)?;
            }
        }
        self.close_pack(&mut pack, &mut out, &mut outbox, &mut part)?;
        self.flush(&mut outbox, &mut part)?;
        Ok((out, part))
    }

    /// Queues a closed pack and records where its members are. A pack of one file is that
    /// file's own block (its id is the file's id): it is recorded as a one-chunk file.
    fn close_pack(
        &self,
        pack: &mut OpenPack,
        out: &mut [(usize, EntryKind, Option<ContentHash>)],
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        if pack.members.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut pack.bytes);
        let pack_id = self.queue(BlockKind::DATA, bytes, outbox, summary)?;
        for m in pack.members.drain(..) {
            let kind = &mut out[m].1;
            match kind {
                EntryKind::Packed {
                    size, id, offset, ..
                } if *offset == 0 && *id == pack_id => {
                    *kind = EntryKind::File {
                        size: *size,
                        chunks: vec![pack_id],
                    };
                }
                EntryKind::Packed { pack, .. } => *pack = pack_id,
                _ => {}
            }
        }
        Ok(())
    }

    /// Cuts a file's bytes into blocks. While [`Repository::at_once`], each is sealed and sent as
    /// soon as it is cut, straight from the read buffer. Otherwise they are queued in `outbox`
    /// and sent in batches; a full batch is handed to the pool while fewer than [`HANDED`] per
    /// worker are, so that idle workers seal it while this one reads and cuts on, and sent by
    /// this worker itself when the others are that far behind.
    fn backup_stream<R: Read>(
        &self,
        chunker: &Chunker,
        path: &Path,
        reader: R,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<FileRead, BackupError> {
        let mut stream = chunker.stream(reader);
        let mut ids = Vec::new();
        let mut size = 0u64;
        let mut hasher = self.content_hashes.then(Hashing::default);
        let most_handed = HANDED * rayon::current_num_threads();
        // What the handed batches sent (sealed bytes, blocks), or the first error one met.
        let handed_out: std::sync::Mutex<Result<(u64, u64), BackupError>> =
            std::sync::Mutex::new(Ok((0, 0)));
        rayon::in_place_scope(|scope| -> Result<(), BackupError> {
            while let Some((_, chunk)) = stream
                .next_chunk()
                .map_err(|e| BackupError::io(path, std::io::Error::other(e.to_string())))?
            {
                size += chunk.len() as u64;
                if let Some(h) = hasher.as_mut() {
                    h.update(chunk);
                }
                if self.at_once(outbox) {
                    ids.push(self.send_now(BlockKind::DATA, chunk, summary)?);
                    continue;
                }
                let block = self.sealer.identify(BlockKind::DATA, chunk.to_vec());
                ids.push(block.id());
                outbox.blocks.push(block);
                if !outbox.full() {
                    continue;
                }
                let batch = std::mem::take(&mut outbox.blocks);
                let Some(phase) = outbox
                    .phase
                    .filter(|p| p.handed.load(Ordering::Relaxed) < most_handed)
                else {
                    self.send(batch, summary)?;
                    continue;
                };
                phase.handed.fetch_add(1, Ordering::Relaxed);
                let handed_out = &handed_out;
                scope.spawn(move |_| {
                    let mut part = BackupSummary::default();
                    let sent = self.send(batch, &mut part);
                    if let Ok(mut out) = handed_out.lock() {
                        match (&mut *out, sent) {
                            (Ok((bytes, blocks)), Ok(())) => {
                                *bytes += part.bytes_sent;
                                *blocks += part.blocks_sent;
                            }
                            (Ok(_), Err(e)) => *out = Err(e),
                            (Err(_), _) => {}
                        }
                    }
                    phase.handed.fetch_sub(1, Ordering::Relaxed);
                });
            }
            Ok(())
        })?;
        let (bytes, blocks) = handed_out
            .into_inner()
            .map_err(|_| BackupError::Engine("a worker panicked".into()))??;
        summary.bytes_sent += bytes;
        summary.blocks_sent += blocks;
        summary.bytes_read += size;
        Ok((size, ids, hasher.map(Hashing::finish)))
    }

    /// Backs up one directory tree in three phases: walk (metadata only, one thread), files
    /// (chunk, id, seal, send: groups of files on the CPU pool, each group batching its
    /// blocks), trees (bottom-up, one thread).
    fn backup_dir(
        &self,
        dir: &Path,
        summary: &mut BackupSummary,
        ctx: &mut Walk<'_>,
    ) -> Result<BlockId, BackupError> {
        let Scanned {
            mut node,
            entries,
            skipped,
        } = scan_dir(dir)?;
        summary.entries += entries;
        summary.skipped += skipped;
        let mut jobs = Vec::new();
        number_files(&mut node, &mut jobs);
        let (groups, leaders) = link_groups(&jobs);
        set_link_groups(&mut node, &groups);
        let meter = Meter::new(
            self.progress.as_deref(),
            Phase::Backup,
            jobs.len() as u64,
            jobs.iter().map(|j| j.size).sum(),
        );
        // Files the cache vouches for are not read.
        let mut results: Vec<Option<EntryKind>> = vec![None; jobs.len()];
        let mut to_read = Vec::new();
        // One read transaction for every lookup.
        let hits = match ctx.cache {
            Some(cache) => cache.get_many(jobs.iter().map(|j| j.key.as_slice()))?,
            None => vec![None; jobs.len()],
        };
        let mut unchanged = vec![false; jobs.len()];
        // Unchanged (size, mtime, ctime) files that had no extended attributes still have none.
        let mut no_xattrs = vec![false; jobs.len()];
        let mut followers = Vec::new();
        for ((slot, job), hit) in jobs.iter().enumerate().zip(hits) {
            if let Some(hit) = hit
                && hit.size() == job.size
                && hit.mtime_ns == job.mtime_ns
                && hit.ctime_ns == job.ctime_ns
            {
                summary.files_unchanged += 1;
                meter.add(1, hit.size());
                unchanged[slot] = true;
                no_xattrs[slot] = hit.no_xattrs;
                results[slot] = Some(hit.content);
            } else if leaders[slot].is_some() {
                // Another name of a file read once, through its first name.
                followers.push(slot);
            } else {
                to_read.push(slot);
            }
        }
        let mut listed = list_file_xattrs(&jobs, &no_xattrs)?;
        summary.xattrs_not_listed += listed.iter().filter(|l| l.is_none()).count() as u64;
        // What the cache will say: vouched for, or listed and found empty.
        let none_now: Vec<bool> = listed
            .iter()
            .zip(&no_xattrs)
            .map(|(l, &vouched)| vouched || l.as_ref().is_some_and(Vec::is_empty))
            .collect();
        set_file_xattrs(&mut node, &mut listed);
        // Group the files to read: about GROUP_BYTES of input per group, a big file alone.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut current = Vec::new();
        let mut current_bytes = 0u64;
        for slot in to_read {
            current_bytes += jobs[slot].size;
            current.push(slot);
            if current_bytes >= GROUP_BYTES || current.len() >= GROUP_FILES {
                groups.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
        }
        if !current.is_empty() {
            groups.push(current);
        }
        // Small files already packed in the store (moved, renamed or copied since) are
        // referenced where they are; the trusted cache knows them.
        if let (None, Some(cache)) = (&ctx.packed, ctx.cache)
            && groups
                .iter()
                .flatten()
                .any(|&slot| jobs[slot].size < self.pack_below)
        {
            ctx.packed = Some(cache.packed()?);
        }
        let empty = PackedIndex::default();
        let known = ctx.packed.as_ref().unwrap_or(&empty);
        use rayon::prelude::*;
        let chunker = ctx.chunker;
        let phase = FilePhase {
            waiting: Waiting::new(groups.len()),
            handed: AtomicUsize::new(0),
        };
        let done: Vec<Result<GroupResult, BackupError>> = groups
            .par_iter()
            .map(|group| self.backup_group(chunker, &jobs, group, known, &meter, &phase))
            .collect();
        for d in done {
            let (out, part) = d?;
            summary.bytes_read += part.bytes_read;
            summary.blocks_sent += part.blocks_sent;
            summary.bytes_sent += part.bytes_sent;
            summary.files_packed += part.files_packed;
            summary.files_deduplicated += part.files_deduplicated;
            for (slot, kind, hash) in out {
                results[slot] = Some(kind);
                if let Some(hash) = hash {
                    summary.content_hashes.push((jobs[slot].path.clone(), hash));
                }
            }
        }
        for slot in followers {
            let shared = leaders[slot].and_then(|leader| results[leader].clone());
            if let Some(size) = shared.as_ref().and_then(EntryKind::file_size) {
                meter.add(1, size);
            }
            results[slot] = shared;
        }
        for (slot, job) in jobs.iter().enumerate() {
            if let Some(content) = &results[slot] {
                let cached = CachedFile {
                    mtime_ns: job.mtime_ns,
                    ctime_ns: job.ctime_ns,
                    content: content.clone(),
                    no_xattrs: none_now[slot],
                };
                // An unchanged file is written again only to record that it has no attributes
                // (an entry from before that flag).
                let write = !unchanged[slot] || none_now[slot] != no_xattrs[slot];
                ctx.seen.push((job.key.clone(), cached, write));
            }
        }
        let mut outbox = Outbox::batched();
        let id = self.build_tree(node, &results, &mut outbox, summary)?;
        self.flush(&mut outbox, summary)?;
        Ok(id)
    }

    /// Encodes a scanned directory (children first), queueing its tree blocks.
    fn build_tree(
        &self,
        node: DirNode,
        results: &[Option<EntryKind>],
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<BlockId, BackupError> {
        let mut tree = Tree::default();
        for e in node.entries {
            let kind = match e.kind {
                ScanKind::Symlink(target) => EntryKind::Symlink { target },
                ScanKind::Dir(child) => EntryKind::Dir {
                    tree: self.build_tree(child, results, outbox, summary)?,
                },
                ScanKind::File(slot) => results
                    .get(slot)
                    .and_then(Clone::clone)
                    .ok_or(BackupError::Engine("file result missing".into()))?,
                ScanKind::NewFile(_) => {
                    return Err(BackupError::Engine("file not numbered".into()));
                }
            };
            tree.entries.push(Entry {
                name: e.name,
                mode: e.mode,
                uid: e.uid,
                gid: e.gid,
                mtime_ns: e.mtime_ns,
                link_group: e.link_group,
                xattrs: e.xattrs,
                kind,
            });
        }
        self.queue(BlockKind::TREE, tree.encode()?, outbox, summary)
    }

    /// Names a plaintext and queues it in `outbox`, sending the queue at once while
    /// [`Repository::at_once`], else once it is [full](Outbox::full); returns the block's id.
    fn queue(
        &self,
        kind: BlockKind,
        plaintext: Vec<u8>,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<BlockId, BackupError> {
        let block = self.sealer.identify(kind, plaintext);
        let id = block.id();
        outbox.blocks.push(block);
        if self.at_once(outbox) || outbox.full() {
            self.flush(outbox, summary)?;
        }
        Ok(id)
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

    /// Restores a snapshot into `target`, which must not exist or be an empty directory. Every
    /// block is authenticated and its id recomputed; names that could leave the target are
    /// refused by the tree decoder; symlinks are created, never followed.
    pub fn restore(
        &self,
        snapshot: &Snapshot,
        target: &Path,
    ) -> Result<RestoreSummary, BackupError> {
        self.restore_path(snapshot, "", target)
    }

    /// Restores the part of a snapshot at `path` (`/`-separated names from the snapshot's root;
    /// empty for all of it) into `target`, which must not exist or be an empty directory: a
    /// directory's contents go into `target`, a file or symlink goes into `target` under its own
    /// name. Every name on the way must be a directory entry that restore could create itself: a
    /// path through a symlink, or with `.`, `..` or empty components, is refused.
    pub fn restore_path(
        &self,
        snapshot: &Snapshot,
        path: &str,
        target: &Path,
    ) -> Result<RestoreSummary, BackupError> {
        let mut tree_id = snapshot.root;
        let mut found: Option<Entry> = None;
        for name in path.split('/').filter(|c| !c.is_empty()) {
            if !is_safe_name(name.as_bytes()) {
                return Err(BackupError::PathNotFound(path.to_owned()));
            }
            if let Some(entry) = &found {
                // Only a directory has children; a symlink is never followed.
                match entry.kind {
                    EntryKind::Dir { tree } => tree_id = tree,
                    _ => return Err(BackupError::PathNotFound(path.to_owned())),
                }
            }
            let tree = Tree::decode(&self.open(BlockKind::TREE, &tree_id)?)?;
            found = Some(
                tree.entries
                    .into_iter()
                    .find(|e| e.name == name.as_bytes())
                    .ok_or_else(|| BackupError::PathNotFound(path.to_owned()))?,
            );
        }
        if target.exists() {
            let mut entries = fs::read_dir(target).map_err(|e| BackupError::io(target, e))?;
            if entries.next().is_some() {
                return Err(BackupError::TargetNotEmpty(target.to_path_buf()));
            }
        } else {
            fs::create_dir_all(target).map_err(|e| BackupError::io(target, e))?;
        }
        // 1. Directories and symlinks, walking the trees (one thread).
        let mut plan = Plan::default();
        match found {
            None => self.restore_tree(&snapshot.root, target, &mut plan)?,
            Some(Entry {
                kind: EntryKind::Dir { tree },
                ..
            }) => self.restore_tree(&tree, target, &mut plan)?,
            Some(entry) => plan.add(target.join(name_os(&entry.name)), entry)?,
        }
        let Plan {
            files,
            dirs,
            links,
            restored,
            symlink_xattrs_skipped: plan_symlink_xattrs_skipped,
            ..
        } = plan;
        let skipped = std::sync::atomic::AtomicU64::new(0);
        // 2. Files, in parallel on the CPU pool: fetch, authenticate, write.
        let size_of = |e: &Entry| e.kind.file_size().unwrap_or(0);
        let meter = Meter::new(
            self.progress.as_deref(),
            Phase::Restore,
            files.len() as u64,
            files.iter().map(|(_, e)| size_of(e)).sum(),
        );
        // Small files in groups, each group's blocks fetched together (one round trip for many
        // files from a remote store) and each pack opened once; a file of many chunks alone,
        // fetched a batch at a time. A group holds at most RESTORE_GROUP_BYTES of blocks,
        // counting a pack as the largest one backup writes.
        let mut groups: Vec<&[(std::path::PathBuf, Entry)]> = Vec::new();
        let (mut start, mut chunks, mut bytes) = (0, 0, 0u64);
        let mut packs = std::collections::HashSet::new();
        for (i, (_, e)) in files.iter().enumerate() {
            let (n, cost) = match &e.kind {
                EntryKind::Packed { pack, .. } if packs.contains(pack) => (0, 0),
                EntryKind::Packed { .. } => (1, (PACK_TARGET + PACK_BELOW) as u64),
                other => (other.data_blocks().len(), size_of(e)),
            };
            if i > start
                && (chunks + n > RESTORE_GROUP_CHUNKS || bytes + cost > RESTORE_GROUP_BYTES)
            {
                groups.push(&files[start..i]);
                (start, chunks, bytes) = (i, 0, 0);
                packs.clear();
            }
            // (A file of a pack the group holds costs nothing, so never splits a group.)
            if let EntryKind::Packed { pack, .. } = &e.kind {
                packs.insert(*pack);
            }
            chunks += n;
            bytes += cost;
        }
        if start < files.len() {
            groups.push(&files[start..]);
        }
        use rayon::prelude::*;
        // Groups no worker has started yet: while some wait, every worker has files of its own.
        let waiting = Waiting::new(groups.len());
        groups
            .par_iter()
            .map(|group| {
                waiting.start_one();
                let n = match group {
                    [(path, entry)] => self.restore_file(path, entry, &waiting)?,
                    _ => self.restore_group(group)?,
                };
                skipped.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
                meter.add(
                    group.len() as u64,
                    group.iter().map(|(_, e)| size_of(e)).sum(),
                );
                Ok(())
            })
            .collect::<Result<Vec<()>, BackupError>>()?;
        // 3. The other names of hard-linked files, once their first name is written.
        for (path, first) in &links {
            fs::hard_link(first, path).map_err(|err| BackupError::io(path, err))?;
        }
        // 4. Directory modes, times and attributes, deepest first, after their contents
        // stopped changing.
        let mut xattrs_skipped = skipped.into_inner();
        for (path, entry) in dirs.iter().rev() {
            xattrs_skipped += set_xattrs(path, &entry.xattrs)?;
            set_mode(path, entry)?;
            let f = File::open(path).map_err(|err| BackupError::io(path, err))?;
            f.set_modified(time_of(entry.mtime_ns))
                .map_err(|err| BackupError::io(path, err))?;
        }
        xattrs_skipped += plan_symlink_xattrs_skipped;
        Ok(RestoreSummary {
            entries: restored,
            xattrs_skipped,
        })
    }

    /// Creates the directories and symlinks under `dir` and lists its files and directories.
    fn restore_tree(
        &self,
        tree_id: &BlockId,
        dir: &Path,
        plan: &mut Plan,
    ) -> Result<(), BackupError> {
        let tree = Tree::decode(&self.open(BlockKind::TREE, tree_id)?)?;
        for e in tree.entries {
            if !is_safe_name(&e.name) {
                return Err(BackupError::Malformed("unsafe entry name"));
            }
            let path = dir.join(name_os(&e.name));
            if let EntryKind::Dir { tree } = &e.kind {
                plan.restored += 1;
                fs::create_dir(&path).map_err(|err| BackupError::io(&path, err))?;
                let tree = *tree;
                plan.dirs.push((path.clone(), e));
                self.restore_tree(&tree, &path, plan)?;
            } else {
                plan.add(path, e)?;
            }
        }
        Ok(())
    }

    /// Writes one file: every chunk authenticated (its id recomputed) before it is written.
    /// Its extended attributes go on before its mode (a read-only mode would refuse them);
    /// returns how many were skipped.
    ///
    /// Chunks are fetched a few per request ([`RESTORE_BATCH`]: one round trip for many
    /// blocks from a remote store, memory bounded by that many chunks per worker) and opened on
    /// the pool, so that workers without files of their own (no group `waiting`) open a big
    /// file's chunks too. From a store that answers locally while other files wait, one at a
    /// time instead: each written while it is still in this worker's cache.
    fn restore_file(&self, path: &Path, e: &Entry, waiting: &Waiting) -> Result<u64, BackupError> {
        let per_request = if self.one_at_a_time(Some(waiting)) {
            1
        } else {
            RESTORE_BATCH
        };
        self.write_file(path, e, per_request, |ids| {
            // (`fetch_blocks` answers one block per id or fails.)
            let sealed = self.fetch_blocks(ids)?;
            use rayon::prelude::*;
            ids.par_iter()
                .zip(sealed)
                .map(|(id, bytes)| self.unseal(BlockKind::DATA, id, bytes))
                .collect()
        })
    }

    /// Restores several small files from one fetch of all their blocks; each block (a pack
    /// shared by many of them, too) is opened once.
    fn restore_group(&self, group: &[(std::path::PathBuf, Entry)]) -> Result<u64, BackupError> {
        let mut ids = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (_, e) in group {
            ids.extend(
                e.kind
                    .data_blocks()
                    .iter()
                    .filter(|id| seen.insert(**id))
                    .copied(),
            );
        }
        let fetched = self.fetch_blocks(&ids)?;
        let blocks: std::collections::HashMap<BlockId, Vec<u8>> = ids
            .into_iter()
            .zip(fetched)
            .map(|(id, sealed)| Ok((id, self.unseal(BlockKind::DATA, &id, sealed)?)))
            .collect::<Result<_, BackupError>>()?;
        let mut skipped = 0;
        for (path, e) in group {
            skipped += self.write_file(path, e, RESTORE_BATCH, |ids| {
                ids.iter()
                    .map(|id| {
                        blocks
                            .get(id)
                            .map(Vec::as_slice)
                            .ok_or(BackupError::Malformed("block missing from its batch"))
                    })
                    .collect()
            })?;
        }
        Ok(skipped)
    }

    /// Writes one file from its blocks' plaintexts, `open`ed (fetched, authenticated, id
    /// recomputed) `per_request` at a time: all of them in order for a chunked file, the slice
    /// of its pack for a packed one.
    fn write_file<D: AsRef<[u8]> + Send + Sync>(
        &self,
        path: &Path,
        e: &Entry,
        per_request: usize,
        mut open: impl FnMut(&[BlockId]) -> Result<Vec<D>, BackupError> + Send,
    ) -> Result<u64, BackupError> {
        if !e.kind.is_file() {
            return Err(BackupError::Malformed("not a file"));
        }
        let mut f = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|err| BackupError::io(path, err))?;
        match &e.kind {
            EntryKind::Packed {
                size, pack, offset, ..
            } => {
                let opened = open(std::slice::from_ref(pack))?;
                let data = opened
                    .first()
                    .ok_or(BackupError::Malformed("pack missing"))?
                    .as_ref();
                let start = *offset as usize;
                let bytes = usize::try_from(*size)
                    .ok()
                    .and_then(|n| data.get(start..start.checked_add(n)?))
                    .ok_or(BackupError::Malformed("packed file outside its pack"))?;
                f.write_all(bytes)
                    .map_err(|err| BackupError::io(path, err))?;
            }
            EntryKind::File { size, chunks } => {
                let mut written = 0u64;
                let mut batches = chunks.chunks(per_request.max(1));
                // The next batch opened, with how many blocks were asked for; `None` after the
                // last.
                let mut open_next = || {
                    batches
                        .next()
                        .map(|batch| open(batch).map(|o| (batch.len(), o)))
                        .transpose()
                };
                let mut opened = open_next()?;
                while let Some((asked, blocks)) = opened.take() {
                    if blocks.len() != asked {
                        return Err(BackupError::Malformed(
                            "store answered another number of blocks",
                        ));
                    }
                    // This batch is written while the next one is opened, by another worker
                    // if one is idle (else by this one, right after).
                    let (wrote, next) = rayon::join(
                        || -> Result<u64, BackupError> {
                            let mut n = 0;
                            for data in &blocks {
                                let data = data.as_ref();
                                n += data.len() as u64;
                                f.write_all(data)
                                    .map_err(|err| BackupError::io(path, err))?;
                            }
                            Ok(n)
                        },
                        &mut open_next,
                    );
                    written += wrote?;
                    opened = next?;
                }
                if written != *size {
                    return Err(BackupError::Malformed("file size"));
                }
            }
            _ => return Err(BackupError::Malformed("not a file")),
        }
        let skipped = set_xattrs(path, &e.xattrs)?;
        f.set_modified(time_of(e.mtime_ns))
            .map_err(|err| BackupError::io(path, err))?;
        set_mode(path, e)?;
        Ok(skipped)
    }

    /// Checks every snapshot's trees; with `read_data`, opens every data block too (B-14).
    /// Without it, data blocks are only asked for, in batches.
    pub fn check(&self, read_data: bool) -> Result<CheckReport, BackupError> {
        self.check_data(if read_data {
            DataCheck::All
        } else {
            DataCheck::Presence
        })
    }

    /// [`Repository::check`] with a choice of how much data to read (a subset lets a large
    /// repository be read over several runs).
    pub fn check_data(&self, mode: DataCheck) -> Result<CheckReport, BackupError> {
        if let DataCheck::Subset { n, of } = mode
            && (of == 0 || n == 0 || n > of)
        {
            return Err(BackupError::InvalidSubset { n, of });
        }
        let mut report = CheckReport::default();
        let mut seen = std::collections::HashSet::new();
        let mut data = Vec::new();
        // Packs: the end of the last file each one holds.
        let mut ends: std::collections::HashMap<BlockId, u64> = std::collections::HashMap::new();
        let (own, foreign) = self.snapshots_and_foreign()?;
        report.foreign_snapshots = foreign;
        for (_, snapshot) in own {
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
                            data.extend(chunks.into_iter().filter(|id| seen.insert(*id)));
                        }
                        EntryKind::Packed {
                            size, pack, offset, ..
                        } => {
                            // The pack must hold every byte its files claim.
                            let end = ends.entry(pack).or_insert(0);
                            *end = (*end).max(u64::from(offset).saturating_add(size));
                            if seen.insert(pack) {
                                data.push(pack);
                            }
                        }
                        EntryKind::Symlink { .. } => {}
                    }
                }
            }
        }
        report.blocks = seen.len() as u64;
        let (read, ask): (Vec<BlockId>, Vec<BlockId>) =
            data.into_iter().partition(|id| mode.reads(id));
        // Blocks not read are asked for, BATCH ids per round trip.
        for batch in ask.chunks(BATCH) {
            match self.store.missing(batch) {
                Ok(missing) => {
                    for id in missing {
                        let err = BackupError::Block(id.to_string());
                        report.errors.push(format!("block {id}: {err}"));
                    }
                }
                // A store that cannot answer: every id of the batch is unverified.
                Err(e) => {
                    let err = BackupError::from(e);
                    for id in batch {
                        report.errors.push(format!("block {id}: {err}"));
                    }
                }
            }
        }
        // Blocks read are opened on the CPU pool: authenticated, id recomputed.
        let meter = Meter::new(self.progress.as_deref(), Phase::Check, read.len() as u64, 0);
        use rayon::prelude::*;
        // RESTORE_BATCH blocks per fetch; a batch the store cannot answer whole (one block
        // missing) is asked again block by block, so that each error names its block.
        let failed: Vec<String> = read
            .par_chunks(RESTORE_BATCH)
            .flat_map_iter(|batch| {
                let opened: Vec<Result<Vec<u8>, BackupError>> = match self.fetch_blocks(batch) {
                    Ok(sealed) => batch
                        .iter()
                        .zip(sealed)
                        .map(|(id, bytes)| self.unseal(BlockKind::DATA, id, bytes))
                        .collect(),
                    _ => batch
                        .iter()
                        .map(|id| self.open(BlockKind::DATA, id))
                        .collect(),
                };
                batch
                    .iter()
                    .zip(opened)
                    .filter_map(|(id, result)| {
                        meter.add(1, result.as_ref().map_or(0, |d| d.len() as u64));
                        match result {
                            Err(err) => Some(format!("block {id}: {err}")),
                            Ok(d) if ends.get(id).is_some_and(|&end| end > d.len() as u64) => Some(
                                format!("block {id}: shorter than the packed files it holds"),
                            ),
                            Ok(_) => None,
                        }
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        report.errors.extend(failed);
        report.blocks_read = read.len() as u64;
        Ok(report)
    }
}

/// What a restore did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    /// Files, directories and symlinks restored.
    pub entries: u64,
    /// Extended attributes outside the `user.` namespace that this process may not set
    /// (`security.`, `trusted.`, `system.` need privileges): skipped and counted, never silently.
    /// A `user.` attribute that cannot be set fails the restore.
    pub xattrs_skipped: u64,
}

/// What a restore will write, gathered while walking the trees.
#[derive(Default)]
struct Plan {
    /// Files to write (in parallel).
    files: Vec<(std::path::PathBuf, Entry)>,
    /// Directories created, for their modes and times at the end.
    dirs: Vec<(std::path::PathBuf, Entry)>,
    /// Later names of hard-linked files: (this name, the first name).
    links: Vec<(std::path::PathBuf, std::path::PathBuf)>,
    /// The first name restored of each link group.
    groups: std::collections::HashMap<u32, std::path::PathBuf>,
    /// Extended attributes skipped on symlinks.
    symlink_xattrs_skipped: u64,
    restored: u64,
}

impl Plan {
    /// A file or symlink at `path`.
    fn add(&mut self, path: std::path::PathBuf, e: Entry) -> Result<(), BackupError> {
        self.restored += 1;
        match &e.kind {
            EntryKind::Symlink { target } => {
                make_symlink(target, &path)?;
                self.symlink_xattrs_skipped += set_xattrs(&path, &e.xattrs)?;
            }
            k if k.is_file() && e.link_group != 0 => match self.groups.get(&e.link_group) {
                Some(first) => self.links.push((path, first.clone())),
                None => {
                    self.groups.insert(e.link_group, path.clone());
                    self.files.push((path, e));
                }
            },
            EntryKind::File { .. } | EntryKind::Packed { .. } => self.files.push((path, e)),
            EntryKind::Dir { .. } => return Err(BackupError::Malformed("directory as a file")),
        }
        Ok(())
    }
}

/// Sets extended attributes on `path` (not following a symlink). Returns how many were skipped
/// because this process lacks the privilege for their namespace (see [`RestoreSummary`]).
#[cfg(unix)]
fn set_xattrs(path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<u64, BackupError> {
    let mut skipped = 0;
    for (name, value) in xattrs {
        let os_name = name_os(name);
        if let Err(e) = xattr::set(path, &os_name, value) {
            let privileged = !name.starts_with(b"user.");
            // EPERM, EACCES, EOPNOTSUPP: the namespace needs privileges (or the target
            // filesystem or file type does not take it).
            let refused = matches!(e.raw_os_error(), Some(1 | 13 | 95));
            if privileged && refused {
                skipped += 1;
            } else {
                return Err(BackupError::io(path, e));
            }
        }
    }
    Ok(skipped)
}

#[cfg(not(unix))]
fn set_xattrs(_path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<u64, BackupError> {
    Ok(xattrs.len() as u64)
}

/// How much data a check reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataCheck {
    /// Only ask the store whether each data block is there.
    Presence,
    /// Open every data block (authenticate it and recompute its id).
    All,
    /// Open the `n`-th of `of` subsets (1-based; by block id, so the subsets are disjoint and
    /// together cover every block) and ask about the rest.
    Subset {
        /// Which subset, from 1.
        n: u32,
        /// How many subsets.
        of: u32,
    },
}

impl DataCheck {
    fn reads(self, id: &BlockId) -> bool {
        match self {
            Self::Presence => false,
            Self::All => true,
            Self::Subset { n, of } => {
                let mut first = [0u8; 8];
                first.copy_from_slice(&id.as_bytes()[..8]);
                u64::from_le_bytes(first) % u64::from(of) == u64::from(n - 1)
            }
        }
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
