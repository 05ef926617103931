//! Compares two folders entry by entry: what the quickstart's "verify every byte" and a user's
//! own restore test run.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::AgentError;

/// What a comparison found.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Comparison {
    /// Files compared byte for byte.
    pub files: u64,
    /// Directories compared.
    pub dirs: u64,
    /// Symlinks compared (targets, never followed).
    pub symlinks: u64,
    /// Bytes compared.
    pub bytes: u64,
    /// Differences, one line each (empty when identical).
    pub differences: Vec<String>,
}

impl Comparison {
    /// Whether the two folders are identical.
    pub fn identical(&self) -> bool {
        self.differences.is_empty()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |e| AgentError::io(path, e)
}

#[cfg(unix)]
fn mode(meta: &fs::Metadata) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o7777
}

#[cfg(not(unix))]
fn mode(meta: &fs::Metadata) -> u32 {
    u32::from(meta.permissions().readonly())
}

fn names(dir: &Path) -> Result<Vec<std::ffi::OsString>, AgentError> {
    let mut names = fs::read_dir(dir)
        .map_err(io(dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io(dir))?;
    names.sort();
    Ok(names)
}

fn same_contents(a: &Path, b: &Path) -> Result<(bool, u64), AgentError> {
    let (mut fa, mut fb) = (
        fs::File::open(a).map_err(io(a))?,
        fs::File::open(b).map_err(io(b))?,
    );
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    let mut total = 0u64;
    loop {
        let n = read_full(&mut fa, &mut ba).map_err(io(a))?;
        let m = read_full(&mut fb, &mut bb).map_err(io(b))?;
        if n != m || ba[..n] != bb[..m] {
            return Ok((false, total));
        }
        if n == 0 {
            return Ok((true, total));
        }
        total += n as u64;
    }
}

fn read_full(f: &mut fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match f.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Compares `a` with `b`: the same names at every level, the same kinds, permission bits,
/// file contents and symlink targets. Modification times are not compared.
///
/// # Errors
/// [`AgentError::Io`] if a folder cannot be read.
pub fn compare(a: &Path, b: &Path) -> Result<Comparison, AgentError> {
    let mut out = Comparison::default();
    walk(a, b, &PathBuf::new(), &mut out)?;
    Ok(out)
}

fn walk(a: &Path, b: &Path, rel: &Path, out: &mut Comparison) -> Result<(), AgentError> {
    let (na, nb) = (names(a)?, names(b)?);
    for name in na.iter().filter(|n| !nb.contains(n)) {
        out.differences
            .push(format!("only in the first: {}", rel.join(name).display()));
    }
    for name in nb.iter().filter(|n| !na.contains(n)) {
        out.differences
            .push(format!("only in the second: {}", rel.join(name).display()));
    }
    for name in na.iter().filter(|n| nb.contains(n)) {
        let (pa, pb, r) = (a.join(name), b.join(name), rel.join(name));
        let ma = fs::symlink_metadata(&pa).map_err(io(&pa))?;
        let mb = fs::symlink_metadata(&pb).map_err(io(&pb))?;
        let (ta, tb) = (ma.file_type(), mb.file_type());
        if ta.is_symlink() || tb.is_symlink() {
            out.symlinks += 1;
            let same = ta.is_symlink()
                && tb.is_symlink()
                && fs::read_link(&pa).map_err(io(&pa))? == fs::read_link(&pb).map_err(io(&pb))?;
            if !same {
                out.differences
                    .push(format!("symlinks differ: {}", r.display()));
            }
            continue;
        }
        if mode(&ma) != mode(&mb) {
            out.differences.push(format!(
                "modes differ: {} ({:o} and {:o})",
                r.display(),
                mode(&ma),
                mode(&mb)
            ));
        }
        if ta.is_dir() && tb.is_dir() {
            out.dirs += 1;
            walk(&pa, &pb, &r, out)?;
        } else if ta.is_file() && tb.is_file() {
            out.files += 1;
            let (same, bytes) = same_contents(&pa, &pb)?;
            out.bytes += bytes;
            if !same {
                out.differences
                    .push(format!("contents differ: {}", r.display()));
            }
        } else if ta.is_dir() != tb.is_dir() || ta.is_file() != tb.is_file() {
            out.differences
                .push(format!("kinds differ: {}", r.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn finds_every_kind_of_difference() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        for d in [a.path(), b.path()] {
            fs::create_dir(d.join("sub")).unwrap();
            fs::write(d.join("sub/same.txt"), b"same").unwrap();
        }
        let same = compare(a.path(), b.path()).unwrap();
        assert!(same.identical());
        assert_eq!((same.files, same.dirs, same.bytes), (1, 1, 4));

        fs::write(a.path().join("sub/same.txt"), b"samf").unwrap();
        fs::write(a.path().join("extra"), b"").unwrap();
        fs::create_dir(b.path().join("extra")).unwrap();
        fs::write(b.path().join("only-b"), b"").unwrap();
        let diff = compare(a.path(), b.path()).unwrap();
        assert!(!diff.identical());
        let all = diff.differences.join("\n");
        assert!(all.contains("contents differ: sub/same.txt"), "{all}");
        assert!(all.contains("only in the second: only-b"), "{all}");
        assert!(all.contains("kinds differ: extra"), "{all}");
    }
}
