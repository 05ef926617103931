//! Backup: one snapshot of one or several folders ([`BackupOptions`]). Each folder streams
//! through the batches of `batch`, whose files are read in groups by `read`; the directories
//! above several folders and the snapshot record are written here.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use cairn_seal::{BlockId, BlockKind};

use crate::cache::FileCache;
use crate::error::BackupError;
use crate::progress::{Meter, Phase};
use crate::snapshot::Snapshot;
use crate::store::BlockStore;
use crate::tree::{Entry, EntryKind, Tree};
use crate::warning::{MAX_RECORDED_WARNINGS, Warning};

use super::Repository;
use super::batch::Run;
use super::platform::{name_bytes, now_ns, owner};
use super::read::ContentHash;
use super::schedule::Outbox;

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
    /// The blocks the new snapshot reaches (its root, every tree below it and every data
    /// block those name), strictly ascending: its reference list
    /// ([`BlockStore::put_snapshot_with_refs`], `docs/format/wire.md` §5).
    pub refs: Vec<BlockId>,
    /// Everything the backup could not record as it found it, in walk order within each folder
    /// (the snapshot record keeps the first [`MAX_RECORDED_WARNINGS`] and the count).
    pub warnings: Vec<Warning>,
}

impl BackupSummary {
    /// Adds what a part of the backup (a group of files) counted and noted.
    pub(super) fn add(&mut self, part: BackupSummary) {
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

impl<B: BlockStore> Repository<B> {
    /// Backs up `options`' folders as a new snapshot.
    ///
    /// The folders are walked on a thread of their own while the files found are read, a batch
    /// of [`BATCH_FILES`](crate::BATCH_FILES) at a time, and each directory's tree is written once its files are:
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
        let mut run = Run::new(
            chunker,
            cache,
            trusted,
            Meter::new(self.progress.as_deref(), Phase::Backup, 0, 0),
        );
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
        summary.refs.push(root_tree);
        summary.refs.sort_unstable();
        summary.refs.dedup();
        self.store
            .put_snapshot_with_refs(&id, sealed.as_bytes().to_vec(), &summary.refs)?;
        summary.snapshot = Some(id);
        summary.record = Some(snapshot);
        run.finish(&id)?;
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
            tree.reached(&mut summary.refs);
            let id = self.queue(BlockKind::TREE, tree.encode()?, &mut outbox, summary)?;
            trees.insert(dir, id);
        }
        self.flush(&mut outbox, summary)?;
        trees
            .get(Path::new("/"))
            .copied()
            .ok_or_else(|| BackupError::Usage("several folders must be absolute".into()))
    }
}
