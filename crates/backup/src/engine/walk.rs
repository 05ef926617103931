//! The walk: a directory tree's metadata, read on a thread of its own and handed to the backup
//! one directory at a time, each after its subdirectories (post-order), through a bounded
//! channel. The walk holds only the directories on its way down (their entries so far and the
//! names left to visit), the channel at most [`WALK_AHEAD`] directories: memory follows the
//! tree's depth and widest directories, not its number of files.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;

use crate::error::BackupError;
use crate::tree::Xattrs;
use crate::warning::{Warning, WarningKind};

use super::platform::{identity, links, mtime_ns, name_bytes, owner, read_xattrs};

/// Directories the walk may run ahead of the backup (each may hold many files: a directory of
/// 1,000 files is about 400 KiB of metadata here).
pub(super) const WALK_AHEAD: usize = 16;

/// A file to back up, as the walk found it.
pub(super) struct FileJob {
    pub(super) path: PathBuf,
    pub(super) key: Vec<u8>,
    pub(super) size: u64,
    pub(super) mtime_ns: i64,
    pub(super) ctime_ns: i64,
    /// Device and inode, for files with more than one link.
    pub(super) inode: Option<(u64, u64)>,
}

/// One entry of a directory as the walk found it.
pub(super) struct ScanEntry {
    pub(super) name: Vec<u8>,
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mtime_ns: i64,
    /// Set by the backup, which numbers hard links across the whole snapshot.
    pub(super) link_group: u32,
    /// A directory's or symlink's, from the walk; a file's, listed by the backup after its
    /// cache lookup.
    pub(super) xattrs: Xattrs,
    pub(super) kind: ScanKind,
}

pub(super) enum ScanKind {
    /// A file as the walk found it, before the backup gives it a slot.
    NewFile(Box<FileJob>),
    /// A file with its slot in the backup's batch of files to read.
    File(usize),
    /// A subdirectory: handed on before this directory, so its tree is the backup's, in order.
    Dir,
    Symlink(Vec<u8>),
}

/// One directory as the walk hands it on: its entries in name order, and what the walk
/// counted and noted since the directory handed on before it.
#[derive(Default)]
pub(super) struct ScannedDir {
    pub(super) entries: Vec<ScanEntry>,
    /// Entries recorded (files, directories and symlinks).
    pub(super) recorded: u64,
    /// Entries left out: special files and entries that could not be read.
    pub(super) skipped: u64,
    /// What the walk could not record as it found it.
    pub(super) warnings: Vec<Warning>,
}

impl ScannedDir {
    /// An entry left out, and why.
    fn skip(&mut self, warning: Warning) {
        self.skipped += 1;
        self.warnings.push(warning);
    }

    /// How many of the entries are subdirectories.
    pub(super) fn subdirs(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| matches!(e.kind, ScanKind::Dir))
            .count()
    }
}

/// A directory on the walk's way down: its entries so far, and the names left to visit.
struct Open {
    dir: ScannedDir,
    rest: std::vec::IntoIter<(Vec<u8>, fs::DirEntry)>,
}

/// A directory's entries, sorted by name.
fn list(dir: &Path) -> Result<std::vec::IntoIter<(Vec<u8>, fs::DirEntry)>, std::io::Error> {
    let mut names: Vec<(Vec<u8>, fs::DirEntry)> = fs::read_dir(dir)?
        .map(|e| e.map(|e| (name_bytes(&e.file_name()), e)))
        .collect::<Result<_, _>>()?;
    names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(names.into_iter())
}

/// Walks `root` (metadata only), handing each directory to `out` after its subdirectories; the
/// last one handed on is `root`'s. Returns when the walk is done or `out`'s receiver is gone.
///
/// Only `root` itself not being listable is an error (sent as the only item). Below it, an
/// entry that cannot be read (its metadata, a symlink's target, a subdirectory's listing) is
/// left out with a [`WarningKind::Unreadable`] warning, a directory's or symlink's extended
/// attributes that cannot be read are left out with one, and special files are noted and left
/// out. A file's extended attributes are listed later, by the backup, for files the cache does
/// not vouch for.
pub(super) fn walk(root: &Path, out: &SyncSender<Result<ScannedDir, BackupError>>) {
    let rest = match list(root) {
        Ok(rest) => rest,
        Err(e) => {
            let _ = out.send(Err(BackupError::io(root, e)));
            return;
        }
    };
    let mut stack = vec![Open {
        dir: ScannedDir::default(),
        rest,
    }];
    while let Some(top) = stack.last_mut() {
        let Some((name, entry)) = top.rest.next() else {
            let Some(done) = stack.pop() else { break };
            if out.send(Ok(done.dir)).is_err() {
                return;
            }
            continue;
        };
        let scanned = &mut top.dir;
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
                Err(e) => {
                    let _ = out.send(Err(e));
                    return;
                }
            }
        };
        let mut subdir = None;
        let kind = if meta.file_type().is_symlink() {
            match fs::read_link(&path) {
                Ok(target) => ScanKind::Symlink(name_bytes(target.as_os_str())),
                Err(e) => {
                    scanned.skip(Warning::new(WarningKind::Unreadable, path, e));
                    continue;
                }
            }
        } else if meta.is_dir() {
            match list(&path) {
                Ok(rest) => subdir = Some(rest),
                Err(e) => {
                    scanned.skip(Warning::new(WarningKind::Unreadable, path, e));
                    continue;
                }
            }
            ScanKind::Dir
        } else if meta.is_file() {
            let id = identity(&meta);
            ScanKind::NewFile(Box::new(FileJob {
                key: crate::cache::cache_key(id.dev, id.ino, &name_bytes(path.as_os_str())),
                path,
                size: meta.len(),
                mtime_ns: mtime_ns(&meta),
                ctime_ns: id.ctime_ns,
                inode: (links(&meta) > 1).then_some((id.dev, id.ino)),
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
        let o = owner(&meta);
        scanned.recorded += 1;
        scanned.entries.push(ScanEntry {
            name,
            mode: o.mode,
            uid: o.uid,
            gid: o.gid,
            mtime_ns: mtime_ns(&meta),
            link_group: 0,
            xattrs,
            kind,
        });
        if let Some(rest) = subdir {
            stack.push(Open {
                dir: ScannedDir::default(),
                rest,
            });
        }
    }
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

/// The extended attributes of each file to list, by slot; `None` for a file the cache vouches
/// had none (`skip`), which is not asked again, or whose attributes could not be read (then its
/// slot is in the warnings returned: the file is recorded without them).
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
