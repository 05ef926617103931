//! Backup: the walk's files read in groups on the CPU pool (small files packed, the others cut
//! into chunks), their blocks sealed and sent, then the trees bottom-up and the snapshot.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use cairn_chunk::Chunker;
use cairn_seal::{BlockId, BlockKind};

use crate::cache::{CacheWrite, CacheWriter, CachedFile, FileCache, PackedIndex};
use crate::error::BackupError;
use crate::progress::{Meter, Phase};
use crate::snapshot::Snapshot;
use crate::store::BlockStore;
use crate::tree::{Entry, EntryKind, Tree};
use crate::warning::{MAX_RECORDED_WARNINGS, READ_ATTEMPTS, Warning, WarningKind};

use super::Repository;
use super::platform::{identity, mtime_ns, name_bytes, now_ns, owner};
use super::schedule::{FilePhase, HANDED, Outbox, Waiting};
use super::walk::{FileJob, Listed, ScanKind, ScannedDir, WALK_AHEAD, list_file_xattrs, walk};

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

/// What reading one file into chunks of its own produced.
pub(super) struct FileRead {
    size: u64,
    chunks: Vec<BlockId>,
    /// With content hashes on.
    hash: Option<ContentHash>,
}

/// One file of a group, read.
struct ReadFile {
    /// Its slot in the batch.
    slot: usize,
    /// Where its bytes are.
    kind: EntryKind,
    /// With content hashes on.
    hash: Option<ContentHash>,
}

/// What one group of files produced.
pub(super) struct GroupResult {
    /// Each file read.
    files: Vec<ReadFile>,
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
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
}

fn stamp(meta: &fs::Metadata) -> Stamp {
    Stamp {
        size: meta.len(),
        mtime_ns: mtime_ns(meta),
        ctime_ns: identity(meta).ctime_ns,
    }
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
    /// Adds what a part of the backup (a group of files) counted and noted.
    fn add(&mut self, part: BackupSummary) {
        self.warnings.extend(part.warnings);
        self.bytes_read += part.bytes_read;
        self.blocks_sent += part.blocks_sent;
        self.bytes_sent += part.bytes_sent;
        self.files_packed += part.files_packed;
        self.files_deduplicated += part.files_deduplicated;
    }

    /// Whether the backup completed with warnings: an entry could not be read, or a file kept
    /// changing while it was read (special files left out do not count).
    #[must_use]
    pub fn completed_with_warnings(&self) -> bool {
        self.warnings.iter().any(|w| w.kind.is_warning())
    }
}

/// What one backup is to record: its folders, the host it names, the snapshot it follows
/// and the file cache it may trust.
///
/// ```
/// # use cairn_backup::BackupOptions;
/// let options = BackupOptions::new("laptop", ["/home/ana/Documents", "/home/ana/Pictures"]);
/// assert_eq!(options.folders().len(), 2);
/// ```
#[derive(Clone)]
pub struct BackupOptions<'a> {
    folders: Vec<PathBuf>,
    host: String,
    parent: Option<(BlockId, &'a Snapshot)>,
    cache: Option<&'a FileCache>,
}

impl<'a> BackupOptions<'a> {
    /// A backup of `folders` for `host`, the first of its chain (no parent), without a file
    /// cache. One folder is the snapshot's root. Several must be absolute, distinct and not
    /// inside one another; the snapshot's root is then `/`, holding each folder at its absolute
    /// path: the directories above the folders, and the folders themselves, are recorded with
    /// their mode and owner (times 0, so that activity beside the folders changes nothing) and
    /// only the entries that lead to a folder (a restore recreates `TARGET/home/ana/Documents`
    /// for `/home/ana/Documents`). The snapshot's `paths` name every folder.
    pub fn new<P: Into<PathBuf>>(
        host: impl Into<String>,
        folders: impl IntoIterator<Item = P>,
    ) -> Self {
        Self {
            folders: folders.into_iter().map(Into::into).collect(),
            host: host.into(),
            parent: None,
            cache: None,
        }
    }

    /// The snapshot this one follows (the head of this client's chain, if any): the new one's
    /// sequence number is the parent's plus one, and it is cut with the parent's chunker.
    #[must_use]
    pub fn parent(mut self, parent: Option<(&BlockId, &'a Snapshot)>) -> Self {
        self.parent = parent.map(|(id, s)| (*id, s));
        self
    }

    /// A file cache: a file whose device, inode, size, mtime and ctime match it is not read;
    /// its chunk ids are reused. The cache is trusted only if it was written with the parent
    /// (so every id it holds is in the store); otherwise every file is read. It is rewritten
    /// while the backup runs and records the new snapshot at the end.
    #[must_use]
    pub fn cache(mut self, cache: &'a FileCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The folders.
    #[must_use]
    pub fn folders(&self) -> &[PathBuf] {
        &self.folders
    }

    /// The folders as one snapshot can hold them.
    fn check_folders(&self) -> Result<(), BackupError> {
        let roots = &self.folders;
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
        Ok(())
    }
}

/// Files the backup collects from the walk before it reads them as one batch (in groups, on
/// the CPU pool), writes their cache entries and encodes the directories they complete: the
/// most file metadata a backup holds at once, however many files the folders hold.
pub const BATCH_FILES: usize = 32 * GROUP_FILES;

/// A file with more than one link, as the backup first met it: its link group, and what its
/// first name became (which its other names share).
struct Link {
    group: u32,
    first: PathBuf,
    state: LinkState,
}

enum LinkState {
    /// Its first name is in the batch being read, at this slot.
    Reading(usize),
    /// Read (or vouched for by the cache); `uncacheable` if the cache may not vouch for it.
    Done {
        content: EntryKind,
        uncacheable: bool,
    },
    /// Its first name could not be read.
    LeftOut,
}

/// State carried through one backup.
pub(super) struct Run<'a> {
    /// The chunker this snapshot's files are cut with.
    chunker: &'a Chunker,
    /// The cache, when it may be trusted.
    cache: Option<&'a FileCache>,
    /// The cache's update, a batch at a time (trusted or not, the cache is rewritten).
    writer: Option<CacheWriter<'a>>,
    /// The packed files the trusted cache knows (indexed once, when a small file is to be read).
    packed: Option<PackedIndex>,
    /// Files with more than one link, by device and inode: hard links are numbered across the
    /// whole snapshot, in walk order.
    links: HashMap<(u64, u64), Link>,
    meter: Meter<'a>,
}

/// The walk's directories not yet encoded and the files they hold: a batch.
#[derive(Default)]
struct Batch {
    dirs: Vec<ScannedDir>,
    jobs: Vec<FileJob>,
}

impl<B: BlockStore> Repository<B> {
    /// Backs up `options`' folders as a new snapshot.
    ///
    /// The folders are walked on a thread of their own while the files found are read, a batch
    /// of [`BATCH_FILES`] at a time, and each directory's tree is written once its files are:
    /// the memory a backup holds follows the tree's depth and widest directories, not its
    /// number of files (`benches/walk.sh` measures a million files).
    ///
    /// # Errors
    /// [`BackupError::Usage`] for folders that are not absolute, repeat, or nest; what a backup
    /// can fail with otherwise. An entry below a folder that cannot be read is a warning, not
    /// an error ([`BackupSummary::warnings`]).
    pub fn backup(&self, options: &BackupOptions<'_>) -> Result<BackupSummary, BackupError> {
        options.check_folders()?;
        let roots = options.folders.as_slice();
        let parent = options.parent.as_ref().map(|(id, s)| (id, *s));
        let cache = options.cache;
        let mut summary = BackupSummary::default();
        let trusted = match (cache, parent) {
            (Some(c), Some((id, _))) => c.snapshot()?.as_ref() == Some(id),
            _ => false,
        };
        let continued = parent.and_then(|(_, s)| self.parent_chunker(&s.chunker));
        let chunker = continued.as_ref().unwrap_or(&self.chunker);
        let mut run = Run {
            chunker,
            cache: cache.filter(|_| trusted),
            writer: cache.map(CacheWriter::new),
            packed: None,
            links: HashMap::new(),
            meter: Meter::new(self.progress.as_deref(), Phase::Backup, 0, 0),
        };
        let root_tree = match roots {
            [root] => self.backup_dir(root, &mut summary, &mut run)?,
            _ => {
                let mut trees = BTreeMap::new();
                for root in roots {
                    trees.insert(root.clone(), self.backup_dir(root, &mut summary, &mut run)?);
                }
                self.above_folders(trees, &mut summary)?
            }
        };
        let snapshot = Snapshot {
            seq: parent.map_or(0, |(_, s)| s.seq + 1),
            parent: parent.map(|(id, _)| *id),
            root: root_tree,
            time_ns: now_ns(),
            host: options.host.clone(),
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
        let sealed = self.sealer.seal(BlockKind::SNAPSHOT, &plain)?;
        let id = sealed.id();
        self.store.put_snapshot(&id, sealed.as_bytes().to_vec())?;
        summary.snapshot = Some(id);
        summary.record = Some(snapshot);
        if let Some(writer) = run.writer {
            writer.finish(&id)?;
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
                let o = owner(&meta);
                // Times are not recorded for these (0): a directory above the folders changes
                // its time whenever anything beside them does, which would make every backup
                // a new tree and a change.
                let name = child
                    .file_name()
                    .ok_or_else(|| BackupError::Usage(format!("{}: no name", child.display())))?;
                tree.entries.push(Entry {
                    name: name_bytes(name),
                    mode: o.mode,
                    uid: o.uid,
                    gid: o.gid,
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
        Ok(FileRead {
            size,
            chunks: ids,
            hash,
        })
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
        let mut out: Vec<ReadFile> = Vec::with_capacity(group.len());
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
                    if let Some(FileRead { size, chunks, hash }) = read {
                        meter.add(1, size);
                        out.push(ReadFile {
                            slot,
                            kind: EntryKind::File { size, chunks },
                            hash,
                        });
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
                out.push(ReadFile {
                    slot,
                    kind: EntryKind::File {
                        size: 0,
                        chunks: Vec::new(),
                    },
                    hash,
                });
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
                    if let EntryKind::Packed { pack: p, .. } = &out[first].kind
                        && *p == PLACEHOLDER
                    {
                        // In the open pack: resolved when it closes.
                        pack.members.push(out.len());
                    }
                    Some(out[first].kind.clone())
                }
                _ => None,
            };
            if let Some(kind) = copy {
                pack.bytes.truncate(offset);
                part.files_deduplicated += 1;
                out.push(ReadFile { slot, kind, hash });
                continue;
            }
            local.insert(id, out.len());
            pack.members.push(out.len());
            part.files_packed += 1;
            let offset =
                u32::try_from(offset).map_err(|_| BackupError::Internal("pack too large"))?;
            out.push(ReadFile {
                slot,
                kind: EntryKind::Packed {
                    size,
                    id,
                    pack: PLACEHOLDER,
                    offset,
                },
                hash,
            });
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
        out: &mut [ReadFile],
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        if pack.members.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut pack.bytes);
        let pack_id = self.queue(BlockKind::DATA, bytes, outbox, summary)?;
        for m in pack.members.drain(..) {
            let kind = &mut out[m].kind;
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
                .map_err(|e| BackupError::chunk(path, e))?
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
            .map_err(|_| BackupError::Internal("a worker panicked"))??;
        summary.bytes_sent += bytes;
        summary.blocks_sent += blocks;
        summary.bytes_read += size;
        Ok(FileRead {
            size,
            chunks: ids,
            hash: hasher.map(Hashing::finish),
        })
    }

    /// Backs up one folder: walked on a thread of its own ([`walk`]), its files read a batch
    /// at a time ([`Repository::read_batch`]), each directory's tree written once its files
    /// are. Returns the folder's tree.
    fn backup_dir(
        &self,
        dir: &Path,
        summary: &mut BackupSummary,
        run: &mut Run<'_>,
    ) -> Result<BlockId, BackupError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(WALK_AHEAD);
        std::thread::scope(|scope| {
            let walker = std::thread::Builder::new()
                .name("cairn-walk".into())
                .spawn_scoped(scope, move || walk(dir, &tx))
                .map_err(|e| BackupError::io(dir, e))?;
            // Dropping the receiver (on an error) stops the walk at its next directory.
            let result = self.backup_walked(rx, summary, run);
            walker
                .join()
                .map_err(|_| BackupError::Internal("the walk panicked"))?;
            result
        })
    }

    /// Reads the walk's directories as they come, a batch at a time. Returns the tree of the
    /// last one (the folder).
    fn backup_walked(
        &self,
        walked: std::sync::mpsc::Receiver<Result<ScannedDir, BackupError>>,
        summary: &mut BackupSummary,
        run: &mut Run<'_>,
    ) -> Result<BlockId, BackupError> {
        // The trees of directories encoded whose parent is not yet: the last ones are the
        // subdirectories of the next directory encoded, in order.
        let mut trees: Vec<BlockId> = Vec::new();
        let mut batch = Batch::default();
        for dir in walked {
            let mut dir = dir?;
            summary.entries += dir.recorded;
            summary.skipped += dir.skipped;
            summary.warnings.append(&mut dir.warnings);
            let (mut files, mut bytes) = (0, 0);
            for entry in &mut dir.entries {
                if let ScanKind::NewFile(_) = entry.kind {
                    let ScanKind::NewFile(job) =
                        std::mem::replace(&mut entry.kind, ScanKind::File(batch.jobs.len()))
                    else {
                        unreachable!("matched above")
                    };
                    files += 1;
                    bytes += job.size;
                    batch.jobs.push(*job);
                }
            }
            run.meter.grow(files, bytes);
            batch.dirs.push(dir);
            if batch.jobs.len() >= BATCH_FILES {
                self.read_batch(std::mem::take(&mut batch), &mut trees, summary, run)?;
            }
        }
        self.read_batch(batch, &mut trees, summary, run)?;
        match trees[..] {
            [root] => Ok(root),
            // The walk stopped before the folder's own directory (it panicked).
            _ => Err(BackupError::Internal("the walk ended early")),
        }
    }

    /// One batch of the walk in three phases: the cache's lookups and the files' extended
    /// attributes; the files (chunk, id, seal, send: groups of files on the CPU pool, each
    /// group batching its blocks); then the batch's directories' trees (one thread), whose ids
    /// are pushed on `trees`.
    fn read_batch(
        &self,
        batch: Batch,
        trees: &mut Vec<BlockId>,
        summary: &mut BackupSummary,
        run: &mut Run<'_>,
    ) -> Result<(), BackupError> {
        let Batch { mut dirs, jobs } = batch;
        let meter = &run.meter;
        // Files the cache vouches for are not read.
        let mut results: Vec<Option<EntryKind>> = vec![None; jobs.len()];
        let mut to_read = Vec::new();
        // One read transaction for every lookup.
        let hits = match run.cache {
            Some(cache) => cache.get_many(jobs.iter().map(|j| j.key.as_slice()))?,
            None => vec![None; jobs.len()],
        };
        let mut unchanged = vec![false; jobs.len()];
        // Unchanged (size, mtime, ctime) files that had no extended attributes still have none.
        let mut no_xattrs = vec![false; jobs.len()];
        // Hard links: each slot's group, and the other names of files met before.
        let mut groups = vec![0u32; jobs.len()];
        let mut firsts = Vec::new();
        let mut followers = Vec::new();
        for ((slot, job), hit) in jobs.iter().enumerate().zip(hits) {
            let mut follower = false;
            if let Some(inode) = job.inode {
                let next = u32::try_from(run.links.len() + 1).unwrap_or(u32::MAX);
                let link = run.links.entry(inode).or_insert_with(|| Link {
                    group: next,
                    first: job.path.clone(),
                    state: LinkState::Reading(slot),
                });
                groups[slot] = link.group;
                follower = !matches!(link.state, LinkState::Reading(s) if s == slot);
                if !follower {
                    firsts.push(inode);
                }
            }
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
            } else if follower {
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
        for entry in dirs.iter_mut().flat_map(|d| d.entries.iter_mut()) {
            if let ScanKind::File(slot) = entry.kind {
                entry.xattrs = listed
                    .get_mut(slot)
                    .and_then(Option::take)
                    .unwrap_or_default();
                entry.link_group = groups.get(slot).copied().unwrap_or(0);
            }
        }
        // Group the files to read: about GROUP_BYTES of input per group, a big file alone.
        let mut read_groups: Vec<Vec<usize>> = Vec::new();
        let mut current = Vec::new();
        let mut current_bytes = 0u64;
        for slot in to_read {
            current_bytes += jobs[slot].size;
            current.push(slot);
            if current_bytes >= GROUP_BYTES || current.len() >= GROUP_FILES {
                read_groups.push(std::mem::take(&mut current));
                current_bytes = 0;
            }
        }
        if !current.is_empty() {
            read_groups.push(current);
        }
        // Small files already packed in the store (moved, renamed or copied since) are
        // referenced where they are; the trusted cache knows them.
        if let (None, Some(cache)) = (&run.packed, run.cache)
            && read_groups
                .iter()
                .flatten()
                .any(|&slot| jobs[slot].size < self.pack_below)
        {
            run.packed = Some(cache.packed()?);
        }
        let empty = PackedIndex::default();
        let known = run.packed.as_ref().unwrap_or(&empty);
        use rayon::prelude::*;
        let chunker = run.chunker;
        let phase = FilePhase {
            waiting: Waiting::new(read_groups.len()),
            handed: AtomicUsize::new(0),
        };
        let done: Vec<Result<GroupResult, BackupError>> = read_groups
            .par_iter()
            .map(|group| self.backup_group(chunker, &jobs, group, known, meter, &phase))
            .collect();
        let mut left_out = vec![false; jobs.len()];
        for d in done {
            let GroupResult {
                files,
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
            summary.add(part);
            for ReadFile { slot, kind, hash } in files {
                results[slot] = Some(kind);
                if let Some(hash) = hash {
                    summary.content_hashes.push((jobs[slot].path.clone(), hash));
                }
            }
        }
        // The first names read in this batch, for their other names (here or later).
        for inode in &firsts {
            let Some(link) = run.links.get_mut(inode) else {
                continue;
            };
            if let LinkState::Reading(slot) = link.state {
                link.state = match results.get(slot).and_then(Clone::clone) {
                    Some(content) if !left_out[slot] => LinkState::Done {
                        content,
                        uncacheable: uncacheable[slot],
                    },
                    _ => LinkState::LeftOut,
                };
            }
        }
        for slot in followers {
            let job = &jobs[slot];
            let Some(link) = job.inode.and_then(|inode| run.links.get(&inode)) else {
                continue;
            };
            match &link.state {
                LinkState::Done {
                    content,
                    uncacheable: first_uncacheable,
                } => {
                    uncacheable[slot] |= *first_uncacheable;
                    meter.add(1, content.file_size().unwrap_or(0));
                    results[slot] = Some(content.clone());
                }
                LinkState::LeftOut | LinkState::Reading(_) => {
                    meter.add(1, 0);
                    left_out[slot] = true;
                    summary.warnings.push(Warning::new(
                        WarningKind::Unreadable,
                        &job.path,
                        format_args!(
                            "another name of {}, which could not be read",
                            link.first.display()
                        ),
                    ));
                }
            }
        }
        let dropped = left_out.iter().filter(|&&l| l).count() as u64;
        summary.entries = summary.entries.saturating_sub(dropped);
        summary.skipped += dropped;
        if let Some(writer) = run.writer.as_mut() {
            let mut seen = Vec::with_capacity(jobs.len());
            for (slot, job) in jobs.into_iter().enumerate() {
                if uncacheable[slot] {
                    continue;
                }
                if let Some(content) = &results[slot] {
                    // An unchanged file is written again only to record that it has no
                    // attributes (an entry from before that flag).
                    let changed = !unchanged[slot] || none_now[slot] != no_xattrs[slot];
                    seen.push(CacheWrite {
                        key: job.key,
                        entry: CachedFile {
                            mtime_ns: job.mtime_ns,
                            ctime_ns: job.ctime_ns,
                            content: content.clone(),
                            no_xattrs: none_now[slot],
                        },
                        changed,
                    });
                }
            }
            writer.write(&mut seen)?;
        }
        let mut outbox = Outbox::batched();
        for dir in dirs {
            let id = self.build_tree(dir, &results, &left_out, trees, &mut outbox, summary)?;
            trees.push(id);
        }
        self.flush(&mut outbox, summary)
    }

    /// Encodes one directory of the walk, queueing its tree block; its subdirectories' trees
    /// are the last ones of `trees` (taken off).
    fn build_tree(
        &self,
        dir: ScannedDir,
        results: &[Option<EntryKind>],
        left_out: &[bool],
        trees: &mut Vec<BlockId>,
        outbox: &mut Outbox<'_>,
        summary: &mut BackupSummary,
    ) -> Result<BlockId, BackupError> {
        let subdirs = dir.subdirs();
        let at = trees
            .len()
            .checked_sub(subdirs)
            .ok_or(BackupError::Internal("subdirectory trees missing"))?;
        let mut children = trees.split_off(at).into_iter();
        let mut tree = Tree::default();
        for e in dir.entries {
            let kind = match e.kind {
                ScanKind::Symlink(target) => EntryKind::Symlink { target },
                ScanKind::Dir => EntryKind::Dir {
                    tree: children
                        .next()
                        .ok_or(BackupError::Internal("subdirectory tree missing"))?,
                },
                // Could not be read: not in the snapshot (its warning says so).
                ScanKind::File(slot) if left_out.get(slot) == Some(&true) => continue,
                ScanKind::File(slot) => results
                    .get(slot)
                    .and_then(Clone::clone)
                    .ok_or(BackupError::Internal("file result missing"))?,
                ScanKind::NewFile(_) => {
                    return Err(BackupError::Internal("file not numbered"));
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
