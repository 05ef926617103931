//! What differs between platforms: file identity, owners and modes, times, names as bytes,
//! extended attributes and symlinks. Everything else in the engine is portable.

use std::fs;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::BackupError;
use crate::tree::{Entry, EntryKind, Xattrs};

/// Extended attributes of `path` (not following a symlink), sorted by name. A filesystem
/// without them gives none.
#[cfg(unix)]
pub(super) fn read_xattrs(path: &Path) -> Result<Xattrs, BackupError> {
    use std::os::unix::ffi::OsStrExt;
    let names = match xattr::list(path) {
        Ok(names) => names,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
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

/// Whether `e` says the filesystem or file type does not support the operation: EOPNOTSUPP or
/// ENOTSUP (one number on Linux, two on macOS), by name rather than by Linux's number.
#[cfg(unix)]
fn unsupported(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    let errno = Errno::from_io_error(e);
    errno == Some(Errno::OPNOTSUPP) || errno == Some(Errno::NOTSUP)
}

#[cfg(not(unix))]
pub(super) fn read_xattrs(_path: &Path) -> Result<Xattrs, BackupError> {
    Ok(Vec::new())
}

#[cfg(unix)]
pub(super) fn links(meta: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.nlink()
}

#[cfg(not(unix))]
pub(super) fn links(_meta: &fs::Metadata) -> u64 {
    1
}

/// Which file an entry is, and when its inode last changed: what the file cache keys and
/// compares on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Identity {
    pub(super) dev: u64,
    pub(super) ino: u64,
    /// The inode's change time (the modification time where there is none).
    pub(super) ctime_ns: i64,
}

#[cfg(unix)]
pub(super) fn identity(meta: &fs::Metadata) -> Identity {
    use std::os::unix::fs::MetadataExt;
    let ctime_ns = meta
        .ctime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.ctime_nsec());
    Identity {
        dev: meta.dev(),
        ino: meta.ino(),
        ctime_ns,
    }
}

#[cfg(not(unix))]
pub(super) fn identity(meta: &fs::Metadata) -> Identity {
    Identity {
        dev: 0,
        ino: 0,
        ctime_ns: mtime_ns(meta),
    }
}

pub(super) fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_nanos()).ok())
        .unwrap_or(0)
}

pub(super) fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .map(|t| match t.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
        })
        .unwrap_or(0)
}

/// An entry's mode (type and permission bits) and owner, as a tree records them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Owner {
    pub(super) mode: u32,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

#[cfg(unix)]
pub(super) fn owner(meta: &fs::Metadata) -> Owner {
    use std::os::unix::fs::MetadataExt;
    Owner {
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    }
}

#[cfg(not(unix))]
pub(super) fn owner(meta: &fs::Metadata) -> Owner {
    Owner {
        mode: if meta.permissions().readonly() {
            0o444
        } else {
            0o644
        },
        uid: 0,
        gid: 0,
    }
}

#[cfg(unix)]
pub(super) fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    name.as_bytes().to_vec()
}

#[cfg(not(unix))]
pub(super) fn name_bytes(name: &std::ffi::OsStr) -> Vec<u8> {
    name.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
pub(super) fn name_os(name: &[u8]) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(name).to_owned()
}

#[cfg(not(unix))]
pub(super) fn name_os(name: &[u8]) -> std::ffi::OsString {
    String::from_utf8_lossy(name).into_owned().into()
}

/// Sets extended attributes on `path` (not following a symlink). Returns how many were skipped
/// because this process lacks the privilege for their namespace (see [`RestoreSummary`]).
#[cfg(unix)]
pub(super) fn set_xattrs(path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<u64, BackupError> {
    let mut skipped = 0;
    for (name, value) in xattrs {
        let os_name = name_os(name);
        if let Err(e) = xattr::set(path, &os_name, value) {
            let privileged = !name.starts_with(b"user.");
            // EPERM, EACCES, EOPNOTSUPP: the namespace needs privileges (or the target
            // filesystem or file type does not take it).
            let errno = rustix::io::Errno::from_io_error(&e);
            let refused = unsupported(&e)
                || errno == Some(rustix::io::Errno::PERM)
                || errno == Some(rustix::io::Errno::ACCESS);
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
pub(super) fn set_xattrs(_path: &Path, xattrs: &[(Vec<u8>, Vec<u8>)]) -> Result<u64, BackupError> {
    Ok(xattrs.len() as u64)
}

pub(super) fn time_of(ns: i64) -> SystemTime {
    let d = Duration::from_nanos(ns.unsigned_abs());
    if ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

#[cfg(unix)]
pub(super) fn make_symlink(target: &[u8], path: &Path) -> Result<(), BackupError> {
    std::os::unix::fs::symlink(name_os(target), path).map_err(|e| BackupError::io(path, e))
}

#[cfg(not(unix))]
pub(super) fn make_symlink(_target: &[u8], path: &Path) -> Result<(), BackupError> {
    Err(BackupError::io(
        path,
        std::io::Error::other("symlinks are not restored on this platform"),
    ))
}

/// Sets the owner and group of `path` (not following a symlink) to the entry's, when this
/// process runs as root (as restic and tar do); otherwise it cannot give a file away and the
/// restored entries belong to the user restoring. Goes before [`set_mode`]: a change of owner
/// clears the set-user-id and set-group-id bits.
#[cfg(unix)]
pub(super) fn set_owner(path: &Path, e: &Entry) -> Result<(), BackupError> {
    use rustix::fs::{AtFlags, CWD, Gid, Uid, chownat};
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    chownat(
        CWD,
        path,
        Some(Uid::from_raw(e.uid)),
        Some(Gid::from_raw(e.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|err| BackupError::io(path, err.into()))
}

#[cfg(not(unix))]
pub(super) fn set_owner(_path: &Path, _e: &Entry) -> Result<(), BackupError> {
    Ok(())
}

/// Sets a symlink's own modification time (its access time is left as it is).
#[cfg(unix)]
pub(super) fn set_symlink_time(path: &Path, mtime_ns: i64) -> Result<(), BackupError> {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, UTIME_OMIT, utimensat};
    let times = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: mtime_ns.div_euclid(1_000_000_000),
            tv_nsec: mtime_ns.rem_euclid(1_000_000_000),
        },
    };
    utimensat(CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|err| BackupError::io(path, err.into()))
}

#[cfg(not(unix))]
pub(super) fn set_symlink_time(_path: &Path, _mtime_ns: i64) -> Result<(), BackupError> {
    Ok(())
}

/// Writes `data` at `offset` of a new `file`, leaving its zeros unwritten a page (4 KiB,
/// aligned in the file) or a page's part at a time: what is not written of a new file reads as
/// zeros, and a page no write touched stays a hole where the file system supports them. The
/// caller sets the file's length at the end (zeros at the end are not written either).
#[cfg(unix)]
pub(super) fn write_sparse(file: &fs::File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt;
    const PAGE: usize = 4096;
    static ZEROS: [u8; PAGE] = [0; PAGE];
    // Pieces of `data` that end on the file's page boundaries: the first up to the boundary
    // after `offset`, then whole pages.
    let into_page = usize::try_from(offset % PAGE as u64).unwrap_or(0);
    let mut piece = PAGE - into_page;
    // The start (in `data`) of the bytes still to write, if any.
    let mut run = None;
    let mut lo = 0;
    while lo < data.len() {
        let hi = (lo + piece).min(data.len());
        if data[lo..hi] == ZEROS[..hi - lo] {
            if let Some(start) = run.take() {
                file.write_all_at(&data[start..lo], offset + start as u64)?;
            }
        } else if run.is_none() {
            run = Some(lo);
        }
        lo = hi;
        piece = PAGE;
    }
    if let Some(start) = run {
        file.write_all_at(&data[start..], offset + start as u64)?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub(super) fn write_sparse(file: &fs::File, offset: u64, data: &[u8]) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = file;
    f.seek(SeekFrom::Start(offset))?;
    f.write_all(data)
}

#[cfg(unix)]
pub(super) fn set_mode(path: &Path, e: &Entry) -> Result<(), BackupError> {
    use std::os::unix::fs::PermissionsExt;
    if matches!(e.kind, EntryKind::Symlink { .. }) {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(e.mode & 0o7777))
        .map_err(|err| BackupError::io(path, err))
}

#[cfg(not(unix))]
pub(super) fn set_mode(_path: &Path, _e: &Entry) -> Result<(), BackupError> {
    Ok(())
}
