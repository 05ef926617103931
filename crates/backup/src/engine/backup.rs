//! Backup: the walk's files read in groups on the CPU pool (small files packed, the others cut
//! into chunks), their blocks sealed and sent, then the trees bottom-up and the snapshot.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_chunk::Chunker;
use cairn_seal::{BlockId, BlockKind};

use crate::cache::{CachedFile, FileCache, PackedIndex};
use crate::error::BackupError;
use crate::progress::{Meter, Phase};
use crate::snapshot::Snapshot;
use crate::store::BlockStore;
use crate::tree::{Entry, EntryKind, Tree};
use crate::warning::{MAX_RECORDED_WARNINGS, READ_ATTEMPTS, Warning, WarningKind};

use super::Repository;
use super::platform::{identity, mtime_ns, name_bytes, now_ns, owner};
use super::schedule::{FilePhase, HANDED, Outbox, Waiting};
use super::walk::{
    DirNode, FileJob, Listed, ScanKind, Scanned, link_groups, list_file_xattrs, number_files,
    scan_dir, set_file_xattrs, set_link_groups,
};

/// Input bytes per group of small files handled by one worker.
pub(super) const GROUP_BYTES: u64 = 16 << 20;
/// Files per group.
pub(super) const GROUP_FILES: usize = 512;
/// Files shorter than this are packed: stored end to end with other small files of their group
/// in one data block (`EntryKind::Packed`), compressed together.
pub const PACK_BELOW: usize = 64 << 10;
/// A pack is closed once it holds this many bytes (so it holds less than
/// `PACK_TARGET + PACK_BELOW`).
pub const PACK_TARGET: usize = 1 << 20;

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
pub(super) struct Hashing {
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
pub(super) type FileRead = (u64, Vec<BlockId>, Option<ContentHash>);

/// What one group of files produced.
pub(super) struct GroupResult {
    /// (slot, where its bytes are, content hashes) per file read.
    files: Vec<(usize, EntryKind, Option<ContentHash>)>,
    /// Its counters and warnings.
    part: BackupSummary,
    /// Files that could not be read (left out of the snapshot).
    skipped: Vec<usize>,
    /// Files stored as last read while they kept changing: not vouched for by the cache.
    changed: Vec<usize>,
}

/// A file's read, checked against the file's own metadata before and after it.
enum Checked {
    /// Read (`None`: packed onto the group's pack), `changed` if it kept changing.
    Read {
        read: Option<FileRead>,
        changed: bool,
    },
    /// Could not be read; the warning is recorded.
    Skipped,
}

/// What says a file changed: its size, modification and change times (of the open file).
fn stamp(meta: &fs::Metadata) -> (u64, i64, i64) {
    (meta.len(), mtime_ns(meta), identity(meta).2)
}

/// The pack id of a packed file whose pack is still open.
pub(super) const PLACEHOLDER: BlockId = BlockId::from_bytes([0; 32]);

/// The pack a group of small files is filling: its bytes, and which of the group's files
/// (indexes into the group's output) lie in it.
#[derive(Default)]
pub(super) struct OpenPack {
    bytes: Vec<u8>,
    members: Vec<usize>,
}

/// Reads on from `file` onto `data` until the end or until `data` holds one byte more than the
/// minimum chunk (then the file is cut as a stream): never more than that in memory, however
/// much the file grew since the walk.
pub(super) fn read_head(
    chunker: &Chunker,
    path: &Path,
    file: &File,
    data: &mut Vec<u8>,
) -> Result<(), BackupError> {
    let limit = chunker.config().min() + 1;
    let want = limit.saturating_sub(data.len()) as u64;
    Read::take(file, want)
        .read_to_end(data)
        .map_err(|e| BackupError::io(path, e))?;
    Ok(())
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
    /// Entries left out: special files (sockets, devices, FIFOs) and entries that could not be
    /// read; each is in [`BackupSummary::warnings`].
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
    /// Everything the backup could not record as it found it, in walk order within each folder
    /// (the snapshot record keeps the first [`MAX_RECORDED_WARNINGS`] and the count).
    pub warnings: Vec<Warning>,
}

impl BackupSummary {
    /// Whether the backup completed with warnings: an entry could not be read, or a file kept
    /// changing while it was read (special files left out do not count).
    #[must_use]
    pub fn completed_with_warnings(&self) -> bool {
        self.warnings.iter().any(|w| w.kind.is_warning())
    }
}

/// State carried through one backup's walk.
pub(super) struct Walk<'a> {
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

impl<B: BlockStore> Repository<B> {
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
            warnings_total: summary.warnings.len() as u64,
            warnings: summary
                .warnings
                .iter()
                .filter(|w| w.path.as_os_str().len() <= usize::from(u16::MAX))
                .take(MAX_RECORDED_WARNINGS)
                .cloned()
                .collect(),
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

    /// Reads a small file (the walk saw fewer than [`PACK_BELOW`] bytes) onto the end of
    /// `pack`. Returns `Ok(None)` if it was packed (its bytes are `pack[offset..]`, where
    /// `offset` is the pack's length before the call), or what it became if it grew past the
    /// packing size since the walk (then nothing was added to `pack`).
    fn read_small(
        &self,
        chunker: &Chunker,
        path: &Path,
        file: &File,
        pack: &mut Vec<u8>,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<Option<FileRead>, BackupError> {
        // A pack is read into once, never moved: room for the largest it can become.
        if pack.capacity() == 0 {
            pack.reserve_exact(PACK_TARGET + PACK_BELOW);
        }
        let offset = pack.len();
        // At most PACK_BELOW bytes: one more than that means it grew.
        Read::take(file, PACK_BELOW as u64)
            .read_to_end(pack)
            .map_err(|e| BackupError::io(path, e))?;
        if pack.len() - offset < PACK_BELOW {
            summary.bytes_read += (pack.len() - offset) as u64;
            return Ok(None);
        }
        let mut head = pack.split_off(offset);
        read_head(chunker, path, file, &mut head)?;
        self.backup_read(chunker, path, head, file, outbox, summary)
            .map(Some)
    }

    fn backup_file(
        &self,
        chunker: &Chunker,
        path: &Path,
        file: &File,
        expected_size: u64,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<FileRead, BackupError> {
        // A file no longer than the minimum chunk is one chunk: read it whole, in one read
        // (plus the one that sees the end), without the streaming chunker's window.
        if expected_size <= chunker.config().min() as u64 {
            let mut data = Vec::with_capacity(usize::try_from(expected_size).unwrap_or(0) + 1);
            read_head(chunker, path, file, &mut data)?;
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
        file: &File,
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

    /// Reads one file of a group: a small one onto the end of `pack` (`Read { read: None }`:
    /// its bytes are `pack[offset..]` for the `offset` on entry), another cut into chunks. The
    /// open file's size, modification and change times are compared before and after the
    /// read: a file that changed is read again, up to [`READ_ATTEMPTS`] reads, then stored as
    /// last read with a [`WarningKind::ChangedWhileRead`] warning. A file that cannot be opened
    /// or read is left out with a [`WarningKind::Unreadable`] warning (its blocks already sent
    /// are unreferenced, nothing else changed). Store errors are errors.
    fn read_checked(
        &self,
        chunker: &Chunker,
        job: &FileJob,
        pack: &mut Vec<u8>,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<Checked, BackupError> {
        let small = job.size != 0 && job.size < self.pack_below;
        let offset = pack.len();
        let path = job.path.as_path();
        let unreadable = |pack: &mut Vec<u8>, e: std::io::Error, summary: &mut BackupSummary| {
            pack.truncate(offset);
            summary
                .warnings
                .push(Warning::new(WarningKind::Unreadable, path, e));
            Ok(Checked::Skipped)
        };
        let mut attempt = 1;
        loop {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) => return unreadable(pack, e, summary),
            };
            let before = match file.metadata() {
                Ok(m) => stamp(&m),
                Err(e) => return unreadable(pack, e, summary),
            };
            let read = if small {
                self.read_small(chunker, path, &file, pack, outbox, summary)
            } else {
                self.backup_file(chunker, path, &file, job.size, outbox, summary)
                    .map(Some)
            };
            let read = match read {
                Ok(r) => r,
                Err(BackupError::Io { path: at, source }) if at == path => {
                    return unreadable(pack, source, summary);
                }
                Err(e) => return Err(e),
            };
            let after = match file.metadata() {
                Ok(m) => stamp(&m),
                Err(e) => return unreadable(pack, e, summary),
            };
            if before == after {
                return Ok(Checked::Read {
                    read,
                    changed: false,
                });
            }
            if attempt >= READ_ATTEMPTS {
                summary.warnings.push(Warning::new(
                    WarningKind::ChangedWhileRead,
                    path,
                    format_args!(
                        "changed during each of {READ_ATTEMPTS} reads; stored as last read"
                    ),
                ));
                return Ok(Checked::Read {
                    read,
                    changed: true,
                });
            }
            attempt += 1;
            pack.truncate(offset);
        }
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
        let (mut skipped, mut changed) = (Vec::new(), Vec::new());
        for &slot in group {
            let job = &jobs[slot];
            let offset = pack.bytes.len();
            match self.read_checked(chunker, job, &mut pack.bytes, &mut outbox, &mut part)? {
                Checked::Skipped => {
                    meter.add(1, 0);
                    skipped.push(slot);
                    continue;
                }
                Checked::Read { read, changed: c } => {
                    if c {
                        changed.push(slot);
                    }
                    if let Some((size, chunks, hash)) = read {
                        meter.add(1, size);
                        out.push((slot, EntryKind::File { size, chunks }, hash));
                        continue;
                    }
                }
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
        Ok(GroupResult {
            files: out,
            part,
            skipped,
            changed,
        })
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
            warnings,
        } = scan_dir(dir)?;
        summary.entries += entries;
        summary.skipped += skipped;
        summary.warnings.extend(warnings);
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
        let Listed {
            xattrs: mut listed,
            failed: unlisted,
        } = list_file_xattrs(&jobs, &no_xattrs)?;
        // Recorded without their attributes, and not vouched for by the cache (so that the
        // next backup lists them again).
        let mut uncacheable = vec![false; jobs.len()];
        for (slot, warning) in unlisted {
            uncacheable[slot] = true;
            summary.warnings.push(warning);
        }
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
        let mut left_out = vec![false; jobs.len()];
        for d in done {
            let GroupResult {
                files: out,
                part,
                skipped,
                changed,
            } = d?;
            for slot in skipped {
                left_out[slot] = true;
            }
            for slot in changed {
                uncacheable[slot] = true;
            }
            summary.warnings.extend(part.warnings);
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
            let Some(leader) = leaders[slot] else {
                continue;
            };
            if left_out[leader] {
                meter.add(1, 0);
                left_out[slot] = true;
                summary.warnings.push(Warning::new(
                    WarningKind::Unreadable,
                    &jobs[slot].path,
                    format_args!(
                        "another name of {}, which could not be read",
                        jobs[leader].path.display()
                    ),
                ));
                continue;
            }
            uncacheable[slot] |= uncacheable[leader];
            let shared = results[leader].clone();
            if let Some(size) = shared.as_ref().and_then(EntryKind::file_size) {
                meter.add(1, size);
            }
            results[slot] = shared;
        }
        let dropped = left_out.iter().filter(|&&l| l).count() as u64;
        summary.entries = summary.entries.saturating_sub(dropped);
        summary.skipped += dropped;
        for (slot, job) in jobs.iter().enumerate() {
            if uncacheable[slot] {
                continue;
            }
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
        let id = self.build_tree(node, &results, &left_out, &mut outbox, summary)?;
        self.flush(&mut outbox, summary)?;
        Ok(id)
    }

    /// Encodes a scanned directory (children first), queueing its tree blocks.
    fn build_tree(
        &self,
        node: DirNode,
        results: &[Option<EntryKind>],
        left_out: &[bool],
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<BlockId, BackupError> {
        let mut tree = Tree::default();
        for e in node.entries {
            let kind = match e.kind {
                ScanKind::Symlink(target) => EntryKind::Symlink { target },
                ScanKind::Dir(child) => EntryKind::Dir {
                    tree: self.build_tree(child, results, left_out, outbox, summary)?,
                },
                // Could not be read: not in the snapshot (its warning says so).
                ScanKind::File(slot) if left_out.get(slot) == Some(&true) => continue,
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
}
