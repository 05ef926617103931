//! Restore: directories and symlinks first (one thread), files in parallel (small files in
//! groups fetched together, a big file a batch at a time), hard links, then directories'
//! modes and times.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use cairn_seal::{BlockId, BlockKind};

use crate::error::BackupError;
use crate::progress::{Meter, Phase};
use crate::snapshot::Snapshot;
use crate::store::BlockStore;
use crate::tree::{Entry, EntryKind, Tree, is_safe_name};

use super::Repository;
use super::platform::{
    make_symlink, name_os, set_mode, set_owner, set_symlink_time, set_xattrs, time_of, write_sparse,
};
use super::read::{PACK_BELOW, PACK_TARGET};
use super::schedule::Waiting;

/// Chunks fetched per store request when restoring a file.
pub(super) const RESTORE_BATCH: usize = 16;
/// Most chunks, and bytes, of one group of small files restored from one fetch.
pub(super) const RESTORE_GROUP_CHUNKS: usize = 256;
pub(super) const RESTORE_GROUP_BYTES: u64 = 16 << 20;

impl<B: BlockStore> Repository<B> {
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
            set_owner(path, entry)?;
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
    /// of its pack for a packed one. The file is written under a temporary name in its
    /// directory and renamed to its own once complete (contents, attributes, owner, mode,
    /// time): a restore that fails leaves no partial file under a real name, and removes the
    /// temporary one.
    fn write_file<D: AsRef<[u8]> + Send + Sync>(
        &self,
        path: &Path,
        e: &Entry,
        per_request: usize,
        open: impl FnMut(&[BlockId]) -> Result<Vec<D>, BackupError> + Send,
    ) -> Result<u64, BackupError> {
        if !e.kind.is_file() {
            return Err(BackupError::Malformed("not a file"));
        }
        let (partial, f) = create_partial(path)?;
        let written = self
            .write_contents(&partial, f, e, per_request, open)
            .and_then(|skipped| {
                // `rename` would replace: the name must still be free (restore writes into an
                // empty directory, and a tree's names are unique).
                if path.symlink_metadata().is_ok() {
                    return Err(BackupError::io(
                        path,
                        std::io::Error::from(std::io::ErrorKind::AlreadyExists),
                    ));
                }
                fs::rename(&partial, path).map_err(|err| BackupError::io(path, err))?;
                Ok(skipped)
            });
        written.map_err(|err| {
            let _ = fs::remove_file(&partial);
            // Errors name the file restored, not its temporary name.
            match err {
                BackupError::Io { path: at, source } if at == partial => {
                    BackupError::io(path, source)
                }
                other => other,
            }
        })
    }

    /// [`Repository::write_file`]'s contents and metadata, into the open file at `path`.
    fn write_contents<D: AsRef<[u8]> + Send + Sync>(
        &self,
        path: &Path,
        mut f: File,
        e: &Entry,
        per_request: usize,
        mut open: impl FnMut(&[BlockId]) -> Result<Vec<D>, BackupError> + Send,
    ) -> Result<u64, BackupError> {
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
                    // if one is idle (else by this one, right after). Pages of zeros are
                    // left as holes (a sparse file restores sparse).
                    let at = written;
                    let file = &f;
                    let (wrote, next) = rayon::join(
                        || -> Result<u64, BackupError> {
                            let mut n = 0;
                            for data in &blocks {
                                let data = data.as_ref();
                                write_sparse(file, at + n, data)
                                    .map_err(|err| BackupError::io(path, err))?;
                                n += data.len() as u64;
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
                // A hole at the end was not written.
                f.set_len(written)
                    .map_err(|err| BackupError::io(path, err))?;
            }
            _ => return Err(BackupError::Malformed("not a file")),
        }
        let skipped = set_xattrs(path, &e.xattrs)?;
        f.set_modified(time_of(e.mtime_ns))
            .map_err(|err| BackupError::io(path, err))?;
        set_owner(path, e)?;
        set_mode(path, e)?;
        Ok(skipped)
    }
}

/// A new file beside `path` for its contents until they are complete: `.cairn-partial-N` in
/// the same directory (the first `N` free), created owner-only.
fn create_partial(path: &Path) -> Result<(std::path::PathBuf, File), BackupError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let partial = dir.join(format!(".cairn-partial-{n}"));
        let mut options = File::options();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        match options.open(&partial) {
            Ok(f) => return Ok((partial, f)),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(err) => return Err(BackupError::io(path, err)),
        }
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
pub(super) struct Plan {
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
                set_owner(&path, &e)?;
                // Nothing changes a symlink after this: its time is set now.
                set_symlink_time(&path, e.mtime_ns)?;
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
