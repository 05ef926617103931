//! The walk streams into the backup a batch of files at a time ([`BATCH_FILES`]): trees larger
//! than a batch, hard links whose names fall in different batches or different folders, and
//! the file cache written while the backup runs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use cairn_backup::*;
use cairn_seal::BlockId;

mod common;
use common::{bytes, repo};

/// Every file below `root`, by path relative to it, with its bytes.
fn files_of(root: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                dirs.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.push((rel, fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[cfg(unix)]
fn inode(p: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).unwrap().ino()
}

/// Two folders of one snapshot each hold a pair of hard links, with different contents. Link
/// groups are numbered across the snapshot, so each pair is restored as its own file (before,
/// each folder numbered its groups from 1, and restore linked the second folder's pair to the
/// first folder's file: wrong bytes).
#[cfg(unix)]
#[test]
fn hard_links_in_several_folders_stay_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let (docs, pics) = (base.join("docs"), base.join("pics"));
    for (dir, seed) in [(&docs, 1), (&pics, 2)] {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join("one"), bytes(seed, 3000)).unwrap();
        fs::hard_link(dir.join("one"), dir.join("two")).unwrap();
    }
    let repo = repo(MemoryStore::new());
    let first = repo
        .backup(&BackupOptions::new("h", [&docs, &pics]))
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("r");
    repo.restore(first.record.as_ref().unwrap(), &target)
        .unwrap();
    let under = |p: &Path| target.join(p.strip_prefix("/").unwrap());
    for (dir, seed) in [(&docs, 1), (&pics, 2)] {
        let r = under(dir);
        for name in ["one", "two"] {
            let got = fs::read(r.join(name)).unwrap();
            assert!(
                got == bytes(seed, 3000),
                "{}: another file's bytes",
                r.join(name).display()
            );
        }
        assert_eq!(inode(&r.join("one")), inode(&r.join("two")));
    }
    assert_ne!(
        inode(&under(&docs).join("one")),
        inode(&under(&pics).join("one"))
    );
}

/// A tree of more files than one batch, with a hard link whose first name is in the first
/// batch and whose second is in a later one, round-trips; the cache written batch by batch
/// vouches for every file in the next backup; files removed since are gone from the next
/// snapshot and from the cache.
#[test]
fn a_tree_larger_than_a_batch_round_trips_and_caches() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    // `a/` holds the first name, `z/` (walked after more than a batch of files) the second.
    fs::create_dir_all(root.join("a")).unwrap();
    fs::write(root.join("a/first"), bytes(9, 5000)).unwrap();
    let per_dir = 1000;
    let dirs = BATCH_FILES / per_dir + 2;
    for d in 0..dirs {
        let dir = root.join(format!("m/{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..per_dir {
            fs::write(dir.join(format!("{f}")), format!("{d}/{f}")).unwrap();
        }
    }
    fs::create_dir_all(root.join("z")).unwrap();
    #[cfg(unix)]
    fs::hard_link(root.join("a/first"), root.join("z/second")).unwrap();
    let files = files_of(root);
    assert!(files.len() > BATCH_FILES + 1000);

    let state = tempfile::tempdir().unwrap();
    let cache = FileCache::open(&state.path().join("cache.redb")).unwrap();
    let repo = repo(MemoryStore::new());
    let first = repo
        .backup(&BackupOptions::new("h", [root]).cache(&cache))
        .unwrap();
    assert_eq!(first.entries, (files.len() + dirs + 3) as u64, "{first:?}");
    let snap = first.record.clone().unwrap();
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snap, &out.path().join("r")).unwrap();
    assert_eq!(files_of(&out.path().join("r")), files);
    #[cfg(unix)]
    assert_eq!(
        inode(&out.path().join("r/a/first")),
        inode(&out.path().join("r/z/second"))
    );

    // Nothing changed: the cache vouches for every file, nothing is read or sent.
    let id = first.snapshot.unwrap();
    let again = repo
        .backup(
            &BackupOptions::new("h", [root])
                .parent(Some((&id, &snap)))
                .cache(&cache),
        )
        .unwrap();
    assert_eq!(again.files_unchanged, files.len() as u64, "{again:?}");
    assert_eq!((again.bytes_read, again.blocks_sent), (0, 0));

    // A directory of the first batch removed: gone from the snapshot and from the cache (a
    // new file at one of its paths is read, not taken from the cache).
    fs::remove_dir_all(root.join("m/000")).unwrap();
    let snap2 = again.record.clone().unwrap();
    let third = repo
        .backup(
            &BackupOptions::new("h", [root])
                .parent(Some((&again.snapshot.unwrap(), &snap2)))
                .cache(&cache),
        )
        .unwrap();
    assert_eq!(third.files_unchanged, (files.len() - per_dir) as u64);
    let out = tempfile::tempdir().unwrap();
    repo.restore(third.record.as_ref().unwrap(), &out.path().join("r"))
        .unwrap();
    assert_eq!(files_of(&out.path().join("r")), files_of(root));
}

/// A store whose snapshot writes fail while `fail` is set.
struct NoSnapshots {
    inner: MemoryStore,
    fail: AtomicBool,
}

impl BlockStore for NoSnapshots {
    fn missing(&self, ids: &[BlockId]) -> Result<Vec<BlockId>, StoreError> {
        self.inner.missing(ids)
    }
    fn put_blocks(&self, blocks: Vec<(BlockId, Vec<u8>)>) -> Result<(), StoreError> {
        self.inner.put_blocks(blocks)
    }
    fn get_block(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.inner.get_block(id)
    }
    fn put_snapshot(&self, id: &BlockId, sealed: Vec<u8>) -> Result<(), StoreError> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(StoreError::Other("the connection dropped".into()));
        }
        self.inner.put_snapshot(id, sealed)
    }
    fn list_snapshots(&self) -> Result<Vec<BlockId>, StoreError> {
        self.inner.list_snapshots()
    }
    fn get_snapshot(&self, id: &BlockId) -> Result<Vec<u8>, StoreError> {
        self.inner.get_snapshot(id)
    }
    fn answers_locally(&self) -> bool {
        true
    }
}

/// A backup that fails at its very end (the snapshot is not stored) leaves the cache true for
/// its parent, and what it read is not read again: its entries name blocks it sent.
#[test]
fn a_backup_that_fails_leaves_the_cache_true_for_its_parent() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("old.bin"), bytes(1, 100_000)).unwrap();
    let state = tempfile::tempdir().unwrap();
    let cache = FileCache::open(&state.path().join("cache.redb")).unwrap();
    let repo = repo(NoSnapshots {
        inner: MemoryStore::new(),
        fail: AtomicBool::new(false),
    });
    let first = repo
        .backup(&BackupOptions::new("h", [src.path()]).cache(&cache))
        .unwrap();
    let (id, snap) = (first.snapshot.unwrap(), first.record.unwrap());
    fs::write(src.path().join("new.bin"), bytes(2, 200_000)).unwrap();
    repo.store().fail.store(true, Ordering::Relaxed);
    let options = BackupOptions::new("h", [src.path()])
        .parent(Some((&id, &snap)))
        .cache(&cache);
    let failed = repo.backup(&options).unwrap_err();
    assert!(
        failed.to_string().contains("the connection dropped"),
        "{failed}"
    );
    assert_eq!(cache.snapshot().unwrap(), Some(id));
    repo.store().fail.store(false, Ordering::Relaxed);
    let retried = repo.backup(&options).unwrap();
    assert_eq!(retried.files_unchanged, 2, "{retried:?}");
    assert_eq!(retried.bytes_read, 0);
    let out = tempfile::tempdir().unwrap();
    repo.restore(retried.record.as_ref().unwrap(), &out.path().join("r"))
        .unwrap();
    assert_eq!(files_of(&out.path().join("r")), files_of(src.path()));
}
