//! What a backup cannot record as it finds it: entries it cannot read are left out and listed,
//! a file that keeps changing while it is read is stored with a warning, special files are
//! noted. In each case the snapshot is written and its record says so.
#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cairn_backup::*;
use cairn_seal::BlockId;

mod common;
use common::unix::{make_fifo, unprivileged};
use common::{bytes, repo};

/// The kinds and paths (relative to `root`) of `warnings`, sorted.
fn listed(root: &Path, warnings: &[Warning]) -> Vec<(WarningKind, PathBuf)> {
    let mut out: Vec<_> = warnings
        .iter()
        .map(|w| (w.kind, w.path.strip_prefix(root).unwrap().to_path_buf()))
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[test]
fn an_unreadable_file_and_folder_are_left_out_listed_and_the_snapshot_written() {
    unprivileged(
        "an_unreadable_file_and_folder_are_left_out_listed_and_the_snapshot_written",
        || {
            let src = tempfile::tempdir().unwrap();
            let root = src.path();
            fs::create_dir_all(root.join("open/deeper")).unwrap();
            fs::write(root.join("open/deeper/kept.bin"), bytes(1, 200_000)).unwrap();
            fs::write(root.join("kept.txt"), b"kept\n").unwrap();
            fs::write(root.join("secret.txt"), b"cannot be read").unwrap();
            fs::create_dir(root.join("locked")).unwrap();
            fs::write(root.join("locked/inside.txt"), b"behind a locked door").unwrap();
            fs::set_permissions(root.join("secret.txt"), fs::Permissions::from_mode(0o000))
                .unwrap();
            fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o000)).unwrap();
            // The precondition: this process cannot read them.
            assert!(fs::File::open(root.join("secret.txt")).is_err());
            assert!(fs::read_dir(root.join("locked")).is_err());

            let repo = repo(MemoryStore::new());
            let summary = repo.backup(&BackupOptions::new("h", [root])).unwrap();
            assert!(summary.completed_with_warnings());
            let expected = vec![
                (WarningKind::Unreadable, PathBuf::from("locked")),
                (WarningKind::Unreadable, PathBuf::from("secret.txt")),
            ];
            assert_eq!(listed(root, &summary.warnings), expected);
            assert!(
                summary.warnings.iter().all(|w| w.detail.contains("denied")),
                "{:?}",
                summary.warnings
            );
            assert_eq!(summary.skipped, 2);

            // The snapshot was written, its record lists both, and it holds everything else.
            let (_, snap) = repo.snapshots().unwrap().remove(0);
            assert!(snap.has_warnings());
            assert_eq!(snap.warnings_total, 2);
            assert_eq!(listed(root, &snap.warnings), expected);
            let out = tempfile::tempdir().unwrap();
            repo.restore(&snap, out.path()).unwrap();
            assert_eq!(
                fs::read(out.path().join("open/deeper/kept.bin")).unwrap(),
                bytes(1, 200_000)
            );
            assert_eq!(fs::read(out.path().join("kept.txt")).unwrap(), b"kept\n");
            assert!(!out.path().join("secret.txt").exists());
            assert!(!out.path().join("locked").exists());
            fs::set_permissions(root.join("locked"), fs::Permissions::from_mode(0o755)).unwrap();
        },
    );
}

#[test]
fn a_file_with_no_problem_gives_no_warning() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("a.bin"), bytes(4, 3 << 20)).unwrap();
    fs::write(src.path().join("b.txt"), b"b").unwrap();
    let repo = repo(MemoryStore::new());
    let summary = repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    assert!(summary.warnings.is_empty(), "{:?}", summary.warnings);
    assert!(!summary.completed_with_warnings());
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    assert!(!snap.has_warnings());
    assert_eq!(snap.warnings_total, 0);
}

#[test]
fn special_files_are_noted_and_left_out() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    fs::write(root.join("plain.txt"), b"plain").unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(root.join("socket")).unwrap();
    make_fifo(&root.join("fifo"));
    let repo = repo(MemoryStore::new());
    let summary = repo.backup(&BackupOptions::new("h", [root])).unwrap();
    let expected = vec![
        (WarningKind::SpecialFile, PathBuf::from("fifo")),
        (WarningKind::SpecialFile, PathBuf::from("socket")),
    ];
    assert_eq!(listed(root, &summary.warnings), expected);
    let details: Vec<&str> = summary.warnings.iter().map(|w| w.detail.as_str()).collect();
    assert!(details.contains(&"FIFO: not backed up"), "{details:?}");
    assert!(details.contains(&"socket: not backed up"), "{details:?}");
    // Noted, not a warning: they hold no data of their own.
    assert!(!summary.completed_with_warnings());
    assert_eq!(summary.skipped, 2);
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    assert_eq!(listed(root, &snap.warnings), expected);
}

/// A store that appends to a file each time it is asked which blocks it lacks: the backup
/// asks while it reads a big file, so the file changes during every read.
struct Meddler {
    inner: MemoryStore,
    target: Mutex<Option<fs::File>>,
}

impl BlockStore for Meddler {
    fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>, StoreError> {
        if let Some(f) = self.target.lock().unwrap().as_mut() {
            f.write_all(b"more").unwrap();
        }
        self.inner.missing(ids)
    }
    fn put_blocks(&self, blocks: Vec<(BlockId, Vec<u8>)>) -> Result<(), StoreError> {
        self.inner.put_blocks(blocks)
    }
    fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.inner.get_block(id)
    }
    fn put_snapshot(&self, id: &BlockId, sealed: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put_snapshot(id, sealed)
    }
    fn list_snapshots(&self) -> Result<Vec<BlockId>, StoreError> {
        self.inner.list_snapshots()
    }
    fn get_snapshot(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.inner.get_snapshot(id)
    }
}

#[test]
fn a_file_that_keeps_changing_while_read_is_stored_with_a_warning_and_read_again_next_time() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    let growing = root.join("growing.log");
    // About 1,000 chunks: the store is asked several times while one read is under way.
    fs::write(&growing, bytes(5, 4 << 20)).unwrap();
    fs::write(root.join("still.txt"), b"still").unwrap();
    let store = Meddler {
        inner: MemoryStore::new(),
        target: Mutex::new(Some(
            fs::OpenOptions::new().append(true).open(&growing).unwrap(),
        )),
    };
    let repo = repo(store);
    let state = tempfile::tempdir().unwrap();
    let cache = FileCache::open(&state.path().join("cache.redb")).unwrap();
    let summary = repo
        .backup(&BackupOptions::new("h", [root]).cache(&cache))
        .unwrap();
    assert!(summary.completed_with_warnings());
    let expected = vec![(WarningKind::ChangedWhileRead, PathBuf::from("growing.log"))];
    assert_eq!(listed(root, &summary.warnings), expected);
    assert!(summary.warnings[0].detail.contains("3 reads"));
    let (id, snap) = repo.snapshots().unwrap().remove(0);
    assert_eq!(snap.warnings_total, 1);
    assert_eq!(listed(root, &snap.warnings), expected);

    // What was stored is what one read saw: the file as it was at some point of that read.
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snap, out.path()).unwrap();
    let stored = fs::read(out.path().join("growing.log")).unwrap();
    let now = fs::read(&growing).unwrap();
    assert!(stored.len() > 4 << 20 && stored.len() < now.len());
    assert!(now.starts_with(&stored));
    assert_eq!(fs::read(out.path().join("still.txt")).unwrap(), b"still");

    // The file cache does not vouch for it: once it stops changing, the next backup reads it
    // again and stores it whole, without a warning.
    *repo.store().target.lock().unwrap() = None;
    let next = repo
        .backup(
            &BackupOptions::new("h", [root])
                .parent(Some((&id, &snap)))
                .cache(&cache),
        )
        .unwrap();
    assert!(next.warnings.is_empty(), "{:?}", next.warnings);
    assert_eq!(next.files_unchanged, 1, "{next:?}");
    assert_eq!(next.bytes_read, now.len() as u64);
    let snaps = repo.snapshots().unwrap();
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snaps.last().unwrap().1, out.path()).unwrap();
    assert_eq!(fs::read(out.path().join("growing.log")).unwrap(), now);
}
