//! What a restore gives back beyond the bytes: no partial file under a real name when it fails,
//! holes where the file had them, symlinks with their own time and (as root) owner.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use cairn_backup::*;
use cairn_seal::ArchiveId;

mod common;
use common::{bytes, key};

fn repo() -> Repository<MemoryStore> {
    common::repo(MemoryStore::new())
}

fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// Bytes the file system holds for `path` (its allocated blocks).
fn allocated(path: &Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn a_failed_restore_leaves_no_partial_file_under_a_real_name() {
    let src = tempfile::tempdir().unwrap();
    let big = bytes(1, 1 << 20);
    fs::write(src.path().join("big.bin"), &big).unwrap();
    fs::write(src.path().join("small.txt"), b"small").unwrap();
    let repo = repo();
    repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    // Damage one block of the big file, far from its start: the restore has written part of
    // it when the damage is found.
    let sealer = cairn_seal::Sealer::new(
        &key(),
        ArchiveId::from_bytes([3; 16]),
        cairn_seal::SealConfig::default(),
    );
    let sealed = repo.store().get_block(&snap.root).unwrap();
    let tree = Tree::decode(
        &sealer
            .open(cairn_seal::BlockKind::TREE, &snap.root, &sealed)
            .unwrap(),
    )
    .unwrap();
    let entry = tree.entries.iter().find(|e| e.name == b"big.bin").unwrap();
    let EntryKind::File { chunks, .. } = &entry.kind else {
        panic!("not chunked: {entry:?}");
    };
    assert!(chunks.len() > 100);
    repo.store()
        .replace_block(&chunks[chunks.len() - 10], vec![0; 64]);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("r");
    assert!(repo.restore(&snap, &target).is_err());
    let left = names(&target);
    assert!(
        !left
            .iter()
            .any(|n| n == "big.bin" || n.starts_with(".cairn-partial")),
        "{left:?}"
    );
}

#[test]
fn a_sparse_file_restores_sparse() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("disk.img");
    // 1 MiB of data, a 64 MiB hole, 1 MiB of data, an 8 MiB hole at the end.
    {
        use std::os::unix::fs::FileExt;
        let f = fs::File::create(&path).unwrap();
        f.write_all_at(&bytes(2, 1 << 20), 0).unwrap();
        f.write_all_at(&bytes(3, 1 << 20), 65 << 20).unwrap();
        f.set_len(74 << 20).unwrap();
    }
    // The precondition: this file system keeps holes.
    assert!(allocated(&path) < 4 << 20, "{}", allocated(&path));
    let repo = repo();
    repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snap, out.path()).unwrap();
    let restored = out.path().join("disk.img");
    assert_eq!(fs::metadata(&restored).unwrap().len(), 74 << 20);
    assert!(fs::read(&restored).unwrap() == fs::read(&path).unwrap());
    assert!(
        allocated(&restored) < 4 << 20,
        "restored fully allocated: {} bytes",
        allocated(&restored)
    );
}

#[test]
fn symlinks_restore_with_their_own_time_and_owner() {
    use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};
    let src = tempfile::tempdir().unwrap();
    let link = src.path().join("link");
    std::os::unix::fs::symlink("target/that/need/not/exist", &link).unwrap();
    fs::write(src.path().join("file"), b"f").unwrap();
    let when = Timespec {
        tv_sec: 1_500_000_000,
        tv_nsec: 123_456_789,
    };
    utimensat(
        CWD,
        &link,
        &Timestamps {
            last_access: when,
            last_modification: when,
        },
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
    let root = rustix::process::geteuid().is_root();
    if root {
        std::os::unix::fs::lchown(&link, Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::lchown(src.path().join("file"), Some(4321), Some(8765)).unwrap();
    }
    let repo = repo();
    repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snap, out.path()).unwrap();
    let was = fs::symlink_metadata(&link).unwrap();
    let now = fs::symlink_metadata(out.path().join("link")).unwrap();
    assert!(now.file_type().is_symlink());
    assert_eq!(
        (now.mtime(), now.mtime_nsec()),
        (1_500_000_000, 123_456_789)
    );
    assert_eq!(
        (now.mtime(), now.mtime_nsec()),
        (was.mtime(), was.mtime_nsec())
    );
    if root {
        assert_eq!((now.uid(), now.gid()), (1234, 5678));
        let file = fs::metadata(out.path().join("file")).unwrap();
        assert_eq!((file.uid(), file.gid()), (4321, 8765));
    }
}
