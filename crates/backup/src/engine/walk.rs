//! The walk: one directory tree's metadata, read before any file is (files numbered into
//! jobs afterwards, hard links grouped, extended attributes listed after the cache lookups).

use std::fs;
use std::path::Path;

use crate::error::BackupError;
use crate::tree::Xattrs;
use crate::warning::{Warning, WarningKind};

use super::platform::{identity, links, mtime_ns, name_bytes, owner, read_xattrs};

/// A file to back up, as the walk found it.
pub(super) struct FileJob {
    pub(super) path: std::path::PathBuf,
    pub(super) key: Vec<u8>,
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) ctime_ns: i64,
    /// Device and inode, for files with more than one link.
    pub(super) inode: Option<(u64, u64)>,
}

/// A directory as the walk found it.
#[derive(Default)]
pub(super) struct DirNode {
    pub(super) entries: Vec<ScanEntry>,
}

pub(super) struct ScanEntry {
    pub(super) name: Vec<u8>,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime_ns: i64,
    pub(super) link_group: u32,
    pub(super) xattrs: Xattrs,
    pub(super) kind: ScanKind,
}

pub(super) enum ScanKind {
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
///
/// Only `dir` itself not being readable is an error. Below it, an entry that cannot be read
/// (its metadata, a symlink's target, a subdirectory's listing) is left out with a
/// [`WarningKind::Unreadable`] warning, a directory's or symlink's extended attributes that
/// cannot be read are left out with one, and special files are noted and left out.
pub(super) fn scan_dir(dir: &Path) -> Result<Scanned, BackupError> {
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
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            Err(e) => {
                scanned.skip(Warning::new(WarningKind::Unreadable, path, e));
                continue;
            }
        };
        let (mode, uid, gid) = owner(&meta);
        let xattrs = if meta.is_file() {
            Vec::new()
        } else {
            match read_xattrs(&path) {
                Ok(x) => x,
                Err(BackupError::Io { source, .. }) => {
                    scanned.warnings.push(Warning::new(
                        WarningKind::Unreadable,
                        &path,
                        format_args!("extended attributes not recorded: {source}"),
                    ));
                    Vec::new()
                }
                Err(e) => return Err(e),
            }
        };
        let kind = if meta.file_type().is_symlink() {
            match fs::read_link(&path) {
                Ok(target) => ScanKind::Symlink(name_bytes(target.as_os_str())),
                Err(e) => {
                    scanned.skip(Warning::new(WarningKind::Unreadable, path, e));
                    continue;
                }
            }
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
            let what = special_kind(&meta);
            scanned.skip(Warning::new(
                WarningKind::SpecialFile,
                path,
                format_args!("{what}: not backed up"),
            ));
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
    // Subdirectories that could not be listed are left out (highest slot first, so that the
    // slots still to remove do not move).
    let mut unlisted = Vec::new();
    for ((at, path), child) in subdirs.into_iter().zip(children) {
        match child {
            Ok(child) => {
                scanned.entries += child.entries;
                scanned.skipped += child.skipped;
                scanned.warnings.extend(child.warnings);
                scanned.node.entries[at].kind = ScanKind::Dir(child.node);
            }
            Err(BackupError::Io {
                path: failed,
                source,
            }) if failed == path => {
                unlisted.push(at);
                scanned.entries -= 1;
                scanned.skip(Warning::new(WarningKind::Unreadable, path, source));
            }
            Err(e) => return Err(e),
        }
    }
    for at in unlisted.into_iter().rev() {
        scanned.node.entries.remove(at);
    }
    Ok(scanned)
}

/// What a special file is, for its note.
#[cfg(unix)]
fn special_kind(meta: &fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        "FIFO"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

#[cfg(not(unix))]
fn special_kind(_meta: &fs::Metadata) -> &'static str {
    "special file"
}

/// Moves the files of a scanned tree into `jobs`, in walk order, leaving their slots.
pub(super) fn number_files(node: &mut DirNode, jobs: &mut Vec<FileJob>) {
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
pub(super) fn link_groups(jobs: &[FileJob]) -> (Vec<u32>, Vec<Option<usize>>) {
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
/// (`skip`), which is not asked again, or whose attributes could not be read (then its slot is
/// in the warnings returned: the file is recorded without them).
pub(super) fn list_file_xattrs(jobs: &[FileJob], skip: &[bool]) -> Result<Listed, BackupError> {
    use rayon::prelude::*;
    let listed: Vec<Result<Option<Xattrs>, BackupError>> = jobs
        .par_iter()
        .zip(skip)
        .map(|(job, &skip)| {
            if skip {
                Ok(None)
            } else {
                read_xattrs(&job.path).map(Some)
            }
        })
        .collect();
    let mut out = Vec::with_capacity(listed.len());
    let mut failed = Vec::new();
    for (slot, l) in listed.into_iter().enumerate() {
        match l {
            Ok(l) => out.push(l),
            Err(BackupError::Io { path, source }) => {
                failed.push((
                    slot,
                    Warning::new(
                        WarningKind::Unreadable,
                        path,
                        format_args!("extended attributes not recorded: {source}"),
                    ),
                ));
                out.push(None);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(Listed {
        xattrs: out,
        failed,
    })
}

/// What [`list_file_xattrs`] found.
pub(super) struct Listed {
    /// Each file's extended attributes, by slot (`None`: not listed).
    pub(super) xattrs: Vec<Option<Xattrs>>,
    /// The files whose attributes could not be read, and why.
    pub(super) failed: Vec<(usize, Warning)>,
}

/// Moves each numbered file's extended attributes into its entry.
pub(super) fn set_file_xattrs(node: &mut DirNode, xattrs: &mut [Option<Xattrs>]) {
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
pub(super) fn set_link_groups(node: &mut DirNode, groups: &[u32]) {
    for entry in &mut node.entries {
        match &mut entry.kind {
            ScanKind::Dir(child) => set_link_groups(child, groups),
            ScanKind::File(slot) => entry.link_group = groups.get(*slot).copied().unwrap_or(0),
            ScanKind::NewFile(_) | ScanKind::Symlink(_) => {}
        }
    }
}

/// One directory's scan, with its counters.
#[derive(Default)]
pub(super) struct Scanned {
    pub(super) node: DirNode,
    pub(super) entries: u64,
    pub(super) skipped: u64,
    /// What the walk could not record as it found it.
    pub(super) warnings: Vec<Warning>,
}

impl Scanned {
    /// An entry left out, and why.
    fn skip(&mut self, warning: Warning) {
        self.skipped += 1;
        self.warnings.push(warning);
    }
}
