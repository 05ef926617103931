//! The batches of one folder's backup: the walk's directories collected until they hold
//! [`BATCH_FILES`] files, then the cache's lookups, hard links, extended attributes, the files
//! read (`read`), the cache's entries and the directories' trees, batch after batch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicUsize;

use cairn_chunk::Chunker;
use cairn_seal::{BlockId, BlockKind};

use crate::cache::{CacheWrite, CacheWriter, CachedFile, FileCache, PackedIndex};
use crate::error::BackupError;
use crate::progress::Meter;
use crate::store::BlockStore;
use crate::tree::{Entry, EntryKind, Tree};
use crate::warning::{Warning, WarningKind};

use super::Repository;
use super::backup::BackupSummary;
use super::read::{GROUP_BYTES, GROUP_FILES, GroupResult, ReadFile};
use super::schedule::{FilePhase, Outbox, Waiting};
use super::walk::{FileJob, Listed, ScanKind, ScannedDir, WALK_AHEAD, list_file_xattrs, walk};

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

impl<'a> Run<'a> {
    /// A backup cut by `chunker`, with `cache` (trusted for its lookups only if `trusted`;
    /// rewritten either way), reporting to `meter`.
    pub(super) fn new(
        chunker: &'a Chunker,
        cache: Option<&'a FileCache>,
        trusted: bool,
        meter: Meter<'a>,
    ) -> Self {
        Self {
            chunker,
            cache: cache.filter(|_| trusted),
            writer: cache.map(CacheWriter::new),
            packed: None,
            links: HashMap::new(),
            meter,
        }
    }

    /// After the snapshot `id` is stored: the cache's last, durable write.
    pub(super) fn finish(self, id: &BlockId) -> Result<(), BackupError> {
        match self.writer {
            Some(writer) => writer.finish(id),
            None => Ok(()),
        }
    }
}

/// The walk's directories not yet encoded and the files they hold: a batch.
#[derive(Default)]
struct Batch {
    dirs: Vec<ScannedDir>,
    jobs: Vec<FileJob>,
}

impl<B: BlockStore> Repository<B> {
    /// Backs up one folder: walked on a thread of its own ([`walk`]), its files read a batch
    /// at a time ([`Repository::read_batch`]), each directory's tree written once its files
    /// are. Returns the folder's tree.
    pub(super) fn backup_dir(
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

    /// One batch of the walk: the cache's lookups and the hard links ([`Repository::look_up`]),
    /// the files' extended attributes ([`Repository::list_xattrs`]), the files themselves
    /// (chunk, id, seal, send: groups of files on the CPU pool, [`Repository::read_files`]),
    /// other names of files met before ([`Repository::share_links`]), the cache's entries
    /// ([`Repository::write_cache`]), then the batch's directories' trees (one thread), whose
    /// ids are pushed on `trees`.
    fn read_batch(
        &self,
        batch: Batch,
        trees: &mut Vec<BlockId>,
        summary: &mut BackupSummary,
        run: &mut Run<'_>,
    ) -> Result<(), BackupError> {
        let Batch { mut dirs, jobs } = batch;
        let (mut slots, plan) = self.look_up(&jobs, summary, run)?;
        self.list_xattrs(&jobs, &mut dirs, &mut slots, summary)?;
        self.read_files(&jobs, plan.to_read, &mut slots, summary, run)?;
        share_links(
            &jobs,
            &plan.firsts,
            &plan.followers,
            &mut slots,
            summary,
            run,
        );
        let dropped = slots.left_out.iter().filter(|&&l| l).count() as u64;
        summary.entries = summary.entries.saturating_sub(dropped);
        summary.skipped += dropped;
        if let Some(writer) = run.writer.as_mut() {
            write_cache(jobs, &slots, writer)?;
        }
        let mut outbox = Outbox::batched();
        for dir in dirs {
            let id = self.build_tree(
                dir,
                &slots.results,
                &slots.left_out,
                trees,
                &mut outbox,
                summary,
            )?;
            trees.push(id);
        }
        self.flush(&mut outbox, summary)
    }

    /// The cache's answers for a batch's files (one read transaction, in key order) and their
    /// hard links: which files are unchanged, which are other names of files met before, and
    /// which are to be read.
    fn look_up(
        &self,
        jobs: &[FileJob],
        summary: &mut BackupSummary,
        run: &mut Run<'_>,
    ) -> Result<(Slots, Plan), BackupError> {
        let mut slots = Slots::new(jobs.len());
        let mut plan = Plan::default();
        let hits = match run.cache {
            Some(cache) => cache.get_many(jobs.iter().map(|j| j.key.as_slice()))?,
            None => vec![None; jobs.len()],
        };
        for ((slot, job), hit) in jobs.iter().enumerate().zip(hits) {
            let mut follower = false;
            if let Some(inode) = job.inode {
                let next = u32::try_from(run.links.len() + 1).unwrap_or(u32::MAX);
                let link = run.links.entry(inode).or_insert_with(|| Link {
                    group: next,
                    first: job.path.clone(),
                    state: LinkState::Reading(slot),
                });
                slots.groups[slot] = link.group;
                follower = !matches!(link.state, LinkState::Reading(s) if s == slot);
                if !follower {
                    plan.firsts.push(inode);
                }
            }
            if let Some(hit) = hit
                && hit.size() == job.size
                && hit.mtime_ns == job.mtime_ns
                && hit.ctime_ns == job.ctime_ns
            {
                summary.files_unchanged += 1;
                run.meter.add(1, hit.size());
                slots.unchanged[slot] = true;
                slots.no_xattrs[slot] = hit.no_xattrs;
                slots.results[slot] = Some(hit.content);
            } else if follower {
                // Another name of a file read once, through its first name.
                plan.followers.push(slot);
            } else {
                plan.to_read.push(slot);
            }
        }
        Ok((slots, plan))
    }

    /// Lists the extended attributes of a batch's files (but those the cache vouches had none)
    /// into their entries, with their link groups. A file whose attributes cannot be read is
    /// recorded without them, with a warning, and not vouched for by the cache.
    fn list_xattrs(
        &self,
        jobs: &[FileJob],
        dirs: &mut [ScannedDir],
        slots: &mut Slots,
        summary: &mut BackupSummary,
    ) -> Result<(), BackupError> {
        let Listed {
            xattrs: mut listed,
            failed: unlisted,
        } = list_file_xattrs(jobs, &slots.no_xattrs)?;
        for (slot, warning) in unlisted {
            slots.uncacheable[slot] = true;
            summary.warnings.push(warning);
        }
        summary.xattrs_not_listed += listed.iter().filter(|l| l.is_none()).count() as u64;
        // What the cache will say: vouched for, or listed and found empty.
        slots.none_now = listed
            .iter()
            .zip(&slots.no_xattrs)
            .map(|(l, &vouched)| vouched || l.as_ref().is_some_and(Vec::is_empty))
            .collect();
        for entry in dirs.iter_mut().flat_map(|d| d.entries.iter_mut()) {
            if let ScanKind::File(slot) = entry.kind {
                entry.xattrs = listed
                    .get_mut(slot)
                    .and_then(Option::take)
                    .unwrap_or_default();
                entry.link_group = slots.groups.get(slot).copied().unwrap_or(0);
            }
        }
        Ok(())
    }

    /// Reads the files `to_read` in groups (about [`GROUP_BYTES`] of input or
    /// [`GROUP_FILES`] files each, a big file alone) on the CPU pool.
    fn read_files(
        &self,
        jobs: &[FileJob],
        to_read: Vec<usize>,
        slots: &mut Slots,
        summary: &mut BackupSummary,
        run: &mut Run<'_>,
    ) -> Result<(), BackupError> {
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
        if let (None, Some(cache)) = (&run.packed, run.cache)
            && groups
                .iter()
                .flatten()
                .any(|&slot| jobs[slot].size < self.pack_below)
        {
            run.packed = Some(cache.packed()?);
        }
        let empty = PackedIndex::default();
        let known = run.packed.as_ref().unwrap_or(&empty);
        use rayon::prelude::*;
        let (chunker, meter) = (run.chunker, &run.meter);
        let phase = FilePhase {
            waiting: Waiting::new(groups.len()),
            handed: AtomicUsize::new(0),
        };
        let done: Vec<Result<GroupResult, BackupError>> = groups
            .par_iter()
            .map(|group| self.backup_group(chunker, jobs, group, known, meter, &phase))
            .collect();
        for d in done {
            let GroupResult {
                files,
                part,
                skipped,
                changed,
            } = d?;
            for slot in skipped {
                slots.left_out[slot] = true;
            }
            for slot in changed {
                slots.uncacheable[slot] = true;
            }
            summary.add(part);
            for ReadFile { slot, kind, hash } in files {
                slots.results[slot] = Some(kind);
                if let Some(hash) = hash {
                    summary.content_hashes.push((jobs[slot].path.clone(), hash));
                }
            }
        }
        Ok(())
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
        tree.reached(&mut summary.refs);
        self.queue(BlockKind::TREE, tree.encode()?, outbox, summary)
    }
}

/// What a batch's files became, by slot.
struct Slots {
    /// Where each file's bytes are (`None`: not known yet).
    results: Vec<Option<EntryKind>>,
    /// The cache vouched for it.
    unchanged: Vec<bool>,
    /// The cache vouched it had no extended attributes.
    no_xattrs: Vec<bool>,
    /// It has none now (vouched for, or listed and found empty).
    none_now: Vec<bool>,
    /// The cache may not vouch for it next time (it changed while read, or its attributes
    /// could not be listed).
    uncacheable: Vec<bool>,
    /// It could not be read: not in the snapshot (its warning says so).
    left_out: Vec<bool>,
    /// Its link group (0: none).
    groups: Vec<u32>,
}

impl Slots {
    fn new(n: usize) -> Self {
        Self {
            results: vec![None; n],
            unchanged: vec![false; n],
            no_xattrs: vec![false; n],
            none_now: vec![false; n],
            uncacheable: vec![false; n],
            left_out: vec![false; n],
            groups: vec![0; n],
        }
    }
}

/// Which of a batch's files are read, and which share another name's contents.
#[derive(Default)]
struct Plan {
    /// To read, in walk order.
    to_read: Vec<usize>,
    /// The inodes whose first name is in this batch.
    firsts: Vec<(u64, u64)>,
    /// Other names of files met before (in this batch or an earlier one), not vouched for by
    /// the cache.
    followers: Vec<usize>,
}

/// Records what the first names read in this batch became, then gives every other name its
/// first name's contents (or leaves it out, with a warning, if the first could not be read).
fn share_links(
    jobs: &[FileJob],
    firsts: &[(u64, u64)],
    followers: &[usize],
    slots: &mut Slots,
    summary: &mut BackupSummary,
    run: &mut Run<'_>,
) {
    for inode in firsts {
        let Some(link) = run.links.get_mut(inode) else {
            continue;
        };
        if let LinkState::Reading(slot) = link.state {
            link.state = match slots.results.get(slot).and_then(Clone::clone) {
                Some(content) if !slots.left_out[slot] => LinkState::Done {
                    content,
                    uncacheable: slots.uncacheable[slot],
                },
                _ => LinkState::LeftOut,
            };
        }
    }
    for &slot in followers {
        let job = &jobs[slot];
        let Some(link) = job.inode.and_then(|inode| run.links.get(&inode)) else {
            continue;
        };
        match &link.state {
            LinkState::Done {
                content,
                uncacheable,
            } => {
                slots.uncacheable[slot] |= *uncacheable;
                run.meter.add(1, content.file_size().unwrap_or(0));
                slots.results[slot] = Some(content.clone());
            }
            LinkState::LeftOut | LinkState::Reading(_) => {
                run.meter.add(1, 0);
                slots.left_out[slot] = true;
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
}

/// Writes a batch's files to the cache: the entries that changed, and every file as seen.
fn write_cache(
    jobs: Vec<FileJob>,
    slots: &Slots,
    writer: &mut CacheWriter<'_>,
) -> Result<(), BackupError> {
    let mut seen = Vec::with_capacity(jobs.len());
    for (slot, job) in jobs.into_iter().enumerate() {
        if slots.uncacheable[slot] {
            continue;
        }
        if let Some(content) = &slots.results[slot] {
            // An unchanged file is written again only to record that it has no attributes
            // (an entry from before that flag).
            let changed = !slots.unchanged[slot] || slots.none_now[slot] != slots.no_xattrs[slot];
            seen.push(CacheWrite {
                key: job.key,
                entry: CachedFile {
                    mtime_ns: job.mtime_ns,
                    ctime_ns: job.ctime_ns,
                    content: content.clone(),
                    no_xattrs: slots.none_now[slot],
                },
                changed,
            });
        }
    }
    writer.write(&mut seen)
}
