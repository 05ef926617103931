//! Backup → restore round trips, deduplication, damage and hostile trees.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation
)]

use std::fs;
use std::path::Path;

use cairn_archive::{Config, DirStorage};
use cairn_backup::*;
use cairn_keys::ArchiveKey;
use cairn_seal::{ArchiveId, BlockKind};

mod common;
use common::{bytes, key, repo, small_chunks};

/// `make_tree` in a temporary folder, backed up once into a memory store: (the source folder,
/// the repository, its snapshot).
fn backed_up() -> (tempfile::TempDir, Repository<MemoryStore>, Snapshot) {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let repo = repo(MemoryStore::new());
    repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    (src, repo, snap)
}

/// A small tree: nested dirs, an empty dir, an empty file, a big file, a symlink, modes.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("docs/deep/er")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("empty.txt"), b"").unwrap();
    fs::write(root.join("root.txt"), bytes(3, 20_000)).unwrap();
    fs::write(root.join("docs/a.txt"), b"hello world\n".repeat(100)).unwrap();
    fs::write(root.join("docs/deep/er/big.bin"), bytes(1, 300_000)).unwrap();
    fs::write(root.join("docs/deep/small.bin"), bytes(2, 5000)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::symlink("docs/a.txt", root.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("abs-link")).unwrap();
        fs::set_permissions(root.join("docs/a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::set_permissions(root.join("docs/deep"), fs::Permissions::from_mode(0o750)).unwrap();
    }
}

/// Compares two trees: names, types, contents, permission bits, file mtimes, link targets.
fn assert_same(a: &Path, b: &Path) {
    let mut names: Vec<_> = fs::read_dir(a)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut other: Vec<_> = fs::read_dir(b)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    other.sort();
    assert_eq!(names, other, "{}", a.display());
    for n in names {
        let (pa, pb) = (a.join(&n), b.join(&n));
        let (ma, mb) = (
            fs::symlink_metadata(&pa).unwrap(),
            fs::symlink_metadata(&pb).unwrap(),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", pa.display());
        if ma.file_type().is_symlink() {
            assert_eq!(fs::read_link(&pa).unwrap(), fs::read_link(&pb).unwrap());
            continue;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                ma.permissions().mode() & 0o7777,
                mb.permissions().mode() & 0o7777,
                "{}",
                pa.display()
            );
        }
        assert_eq!(
            ma.modified().unwrap(),
            mb.modified().unwrap(),
            "{}",
            pa.display()
        );
        if ma.is_dir() {
            assert_same(&pa, &pb);
        } else {
            assert_eq!(
                fs::read(&pa).unwrap(),
                fs::read(&pb).unwrap(),
                "{}",
                pa.display()
            );
        }
    }
}

fn round_trip<B: BlockStore>(store: B) {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let repo = repo(store);
    let first = repo
        .backup(&BackupOptions::new("host-a", [src.path()]))
        .unwrap();
    assert!(first.blocks_sent > 5);
    let snaps = repo.snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    // The snapshot records how its files were cut.
    let c = small_chunks();
    assert_eq!(
        snaps[0].1.chunker,
        ChunkerRecord {
            algorithm: CHUNKER_KEYED_V2,
            min: c.min() as u32,
            avg: c.avg() as u32,
            max: c.max() as u32,
        }
    );
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("restore");
    repo.restore(&snaps[0].1, &target).unwrap();
    assert_same(src.path(), &target);
    // Nothing changed: nothing is sent again (every block, and every tree, is already there).
    let (id0, s0) = &snaps[0];
    let again = repo
        .backup(&BackupOptions::new("host-a", [src.path()]).parent(Some((id0, s0))))
        .unwrap();
    assert_eq!(again.blocks_sent, 0);
    // One byte changed inside the big file: a few chunks and the trees above it.
    let big = src.path().join("docs/deep/er/big.bin");
    let mut data = fs::read(&big).unwrap();
    data[150_000] ^= 1;
    fs::write(&big, data).unwrap();
    let snaps = repo.snapshots().unwrap();
    let (id1, s1) = snaps.last().unwrap();
    let edited = repo
        .backup(&BackupOptions::new("host-a", [src.path()]).parent(Some((id1, s1))))
        .unwrap();
    assert!(
        edited.blocks_sent >= 4 && edited.blocks_sent <= 8,
        "{edited:?}"
    );
    let snaps = repo.snapshots().unwrap();
    assert_eq!(
        snaps.iter().map(|(_, s)| s.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert_eq!(snaps[2].1.parent, Some(snaps[1].0));
    let target2 = out.path().join("restore2");
    repo.restore(&snaps[2].1, &target2).unwrap();
    assert_same(src.path(), &target2);
    let report = repo.check(true).unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert_eq!(report.snapshots, 3);
}

#[test]
fn round_trip_in_memory() {
    round_trip(MemoryStore::new());
}

#[test]
fn round_trip_on_a_local_archive() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(*b"backup test repo");
    round_trip(
        ArchiveStore::open(DirStorage::open(dir.path().join("repo")).unwrap(), config).unwrap(),
    );
    // Reopened, the repository still lists and restores its snapshots.
    let store =
        ArchiveStore::open(DirStorage::open(dir.path().join("repo")).unwrap(), config).unwrap();
    let repo = repo(store);
    assert_eq!(repo.snapshots().unwrap().len(), 3);
    assert!(repo.check(true).unwrap().errors.is_empty());
}

/// A memory store that records how many ids each `missing` question carried, and says whether
/// it answers locally as told: the engine's two ways of asking.
struct Asked {
    inner: MemoryStore,
    local: bool,
    questions: std::sync::Mutex<Vec<usize>>,
}

impl Asked {
    fn new(local: bool) -> Self {
        Self {
            inner: MemoryStore::new(),
            local,
            questions: std::sync::Mutex::default(),
        }
    }

    fn largest_question(&self) -> usize {
        self.questions
            .lock()
            .unwrap()
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
    }
}

impl BlockStore for Asked {
    fn missing(&self, ids: &[cairn_seal::BlockId]) -> Result<Vec<cairn_seal::BlockId>, StoreError> {
        self.questions.lock().unwrap().push(ids.len());
        self.inner.missing(ids)
    }
    fn put_blocks(&self, blocks: Vec<(cairn_seal::BlockId, Vec<u8>)>) -> Result<(), StoreError> {
        self.inner.put_blocks(blocks)
    }
    fn get_block(&self, id: &cairn_seal::BlockId) -> Result<Vec<u8>, StoreError> {
        self.inner.get_block(id)
    }
    fn put_snapshot(&self, id: &cairn_seal::BlockId, sealed: Vec<u8>) -> Result<(), StoreError> {
        self.inner.put_snapshot(id, sealed)
    }
    fn list_snapshots(&self) -> Result<Vec<cairn_seal::BlockId>, StoreError> {
        self.inner.list_snapshots()
    }
    fn get_snapshot(&self, id: &cairn_seal::BlockId) -> Result<Vec<u8>, StoreError> {
        self.inner.get_snapshot(id)
    }
    fn answers_locally(&self) -> bool {
        self.local
    }
}

#[test]
fn round_trip_with_batched_questions() {
    // A store behind a round trip (as the agent's): questions are batched.
    round_trip(Asked::new(false));
}

/// Files to fill three groups (512 files each at most) of one-block files: with two workers, a
/// group still waits for a worker while the first ones are read.
fn three_groups(root: &Path) {
    for f in 0..1100u64 {
        fs::write(root.join(format!("f{f:04}")), bytes(f, 2000)).unwrap();
    }
}

/// Backs `src` up into a fresh repository on a pool of two workers (packing off: one block per
/// small file): the repository and the summary.
fn on_two_workers(src: &Path, local: bool) -> (Repository<Asked>, BackupSummary) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let repo = repo(Asked::new(local)).with_packing(false);
    let summary = pool
        .install(|| repo.backup(&BackupOptions::new("h", [src])))
        .unwrap();
    (repo, summary)
}

#[test]
fn both_ways_of_asking_store_the_same_blocks() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    three_groups(src.path());
    let mut roots = Vec::new();
    for local in [true, false] {
        let (repo, summary) = on_two_workers(src.path(), local);
        let (_, snap) = repo.snapshots().unwrap().remove(0);
        let questions = repo.store().questions.lock().unwrap().clone();
        if local {
            // While a group waits for a worker, each block is asked about as soon as it is
            // named and sealed at once; after that (the last groups, the trees) in batches.
            assert!(questions.iter().filter(|&&n| n == 1).count() >= 500);
        } else {
            assert!(questions.iter().filter(|&&n| n == 1).count() < 10);
        }
        assert!(repo.store().largest_question() > 1);
        let out = tempfile::tempdir().unwrap();
        repo.restore(&snap, out.path()).unwrap();
        assert_same(src.path(), out.path());
        roots.push((
            snap.root,
            summary.blocks_sent,
            summary.bytes_sent,
            repo.store().inner.block_count(),
        ));
    }
    // The same key and archive name the same blocks: the same trees, and the same blocks sent.
    assert_eq!(roots[0], roots[1]);
}

/// A big file read when no other file waits is cut by one worker and its batches are sealed by
/// the others: what those batches sent is counted, and the file restores.
#[test]
fn a_big_file_alone_is_handed_out_in_batches() {
    let src = tempfile::tempdir().unwrap();
    // About 6 MiB in chunks of 1-16 KiB: batches of 256 blocks, several handed to the pool.
    let data: Vec<u8> = (0..6u64 << 20)
        .map(|i| {
            if i % 3000 < 1500 {
                b"abcdefgh"[(i % 8) as usize]
            } else {
                ((i * 2_654_435_761) >> 13) as u8
            }
        })
        .collect();
    fs::write(src.path().join("big.bin"), &data).unwrap();
    for local in [true, false] {
        let (repo, summary) = on_two_workers(src.path(), local);
        let stored = repo.store().inner.block_count() as u64;
        assert!(stored > 3 * 256, "{stored}");
        // Every block is new: each one sent is counted once, whichever worker sealed it.
        assert_eq!(summary.blocks_sent, stored);
        assert!(repo.store().largest_question() > 1);
        let (_, snap) = repo.snapshots().unwrap().remove(0);
        let out = tempfile::tempdir().unwrap();
        repo.restore(&snap, out.path()).unwrap();
        assert_eq!(fs::read(out.path().join("big.bin")).unwrap(), data);
        // Restored alone, its chunks are opened a batch ahead of the one written: a damaged
        // last chunk (in the last batch) still fails the restore.
        let chunks = match &root_tree(&repo, &snap).entries[0].kind {
            EntryKind::File { chunks, .. } => chunks.clone(),
            other => panic!("{other:?}"),
        };
        let last = chunks.last().unwrap();
        let mut bad = repo.store().inner.get_block(last).unwrap();
        let n = bad.len() / 2;
        bad[n] ^= 1;
        repo.store().inner.replace_block(last, bad);
        let out = tempfile::tempdir().unwrap();
        assert!(matches!(
            repo.restore(&snap, out.path()),
            Err(BackupError::Block(_))
        ));
    }
}

/// A store that fails every full batch (256 blocks): a big file whose only full batches are
/// handed to the pool fails the backup with that error, though its worker sent the rest itself.
#[test]
fn a_handed_batch_that_fails_fails_the_backup() {
    struct Failing(MemoryStore);
    impl BlockStore for Failing {
        fn missing(
            &self,
            ids: &[cairn_seal::BlockId],
        ) -> Result<Vec<cairn_seal::BlockId>, StoreError> {
            self.0.missing(ids)
        }
        fn put_blocks(
            &self,
            blocks: Vec<(cairn_seal::BlockId, Vec<u8>)>,
        ) -> Result<(), StoreError> {
            if blocks.len() >= 256 {
                return Err(StoreError::Other("disk full".into()));
            }
            self.0.put_blocks(blocks)
        }
        fn get_block(&self, id: &cairn_seal::BlockId) -> Result<Vec<u8>, StoreError> {
            self.0.get_block(id)
        }
        fn put_snapshot(
            &self,
            id: &cairn_seal::BlockId,
            sealed: Vec<u8>,
        ) -> Result<(), StoreError> {
            self.0.put_snapshot(id, sealed)
        }
        fn list_snapshots(&self) -> Result<Vec<cairn_seal::BlockId>, StoreError> {
            self.0.list_snapshots()
        }
        fn get_snapshot(&self, id: &cairn_seal::BlockId) -> Result<Vec<u8>, StoreError> {
            self.0.get_snapshot(id)
        }
        fn answers_locally(&self) -> bool {
            true
        }
    }
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("big.bin"), bytes(7, 2_300_000)).unwrap();
    // Two full batches and less than a third: both handed (two may be, on two workers).
    let (fine, _) = on_two_workers(src.path(), true);
    assert!((512..768).contains(&fine.store().inner.block_count()));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let repo = repo(Failing(MemoryStore::new()));
    let err = pool
        .install(|| repo.backup(&BackupOptions::new("h", [src.path()])))
        .unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    assert!(repo.store().0.list_snapshots().unwrap().is_empty());
}

#[test]
fn damaged_blocks_are_caught() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let store = MemoryStore::new();
    let repo = repo(store);
    repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    // Swap the root tree's bytes for a data block's: the kind is authenticated (B-7).
    let root = Tree::decode(&{
        let sealed = repo.store().get_block(&snap.root).unwrap();
        let sealer = cairn_seal::Sealer::new(
            &key(),
            ArchiveId::from_bytes([3; 16]),
            cairn_seal::SealConfig::default(),
        );
        sealer.open(BlockKind::TREE, &snap.root, &sealed).unwrap()
    })
    .unwrap();
    let some_file = root
        .entries
        .iter()
        .find_map(|e| e.kind.data_blocks().first().copied());
    let data_id = some_file.unwrap();
    let data_bytes = repo.store().get_block(&data_id).unwrap();
    let tree_bytes = repo.store().get_block(&snap.root).unwrap();
    repo.store().replace_block(&snap.root, data_bytes.clone());
    assert!(matches!(
        repo.restore(&snap, &src.path().join("x")),
        Err(BackupError::Block(_))
    ));
    repo.store().replace_block(&snap.root, tree_bytes);
    // Flip a bit of a data block: restore fails on it, check --read-data names it.
    let mut bad = data_bytes;
    let n = bad.len() / 2;
    bad[n] ^= 1;
    repo.store().replace_block(&data_id, bad);
    let out = tempfile::tempdir().unwrap();
    assert!(matches!(
        repo.restore(&snap, &out.path().join("r")),
        Err(BackupError::Block(_))
    ));
    let report = repo.check(true).unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(report.errors[0].contains(&data_id.to_string()));
    // Structure-only check does not read data, so it does not see the flip.
    assert!(repo.check(false).unwrap().errors.is_empty());
    // Subsets: disjoint, together every block, and exactly one of them finds the flip.
    let all = repo.check(true).unwrap().blocks_read;
    let mut read = 0;
    let mut found = 0;
    for n in 1..=3 {
        let r = repo.check_data(DataCheck::Subset { n, of: 3 }).unwrap();
        read += r.blocks_read;
        found += r.errors.len();
    }
    assert_eq!(read, all);
    assert_eq!(found, 1);
    for (n, of) in [(0, 3), (4, 3), (1, 0)] {
        assert!(matches!(
            repo.check_data(DataCheck::Subset { n, of }),
            Err(BackupError::InvalidSubset { .. })
        ));
    }
}

/// Records every progress report.
#[derive(Default)]
struct Recorder {
    updates: std::sync::Mutex<Vec<ProgressState>>,
    finished: std::sync::Mutex<Vec<ProgressState>>,
}

impl Progress for Recorder {
    fn update(&self, state: &ProgressState) {
        self.updates.lock().unwrap().push(*state);
    }
    fn finish(&self, state: &ProgressState) {
        self.finished.lock().unwrap().push(*state);
    }
}

#[test]
fn progress_is_reported() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let recorder = std::sync::Arc::new(Recorder::default());
    let repo = repo(MemoryStore::new()).with_progress(recorder.clone());
    let summary = repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snap, &out.path().join("r")).unwrap();
    repo.check(true).unwrap();
    let finished = recorder.finished.lock().unwrap().clone();
    let phases: Vec<Phase> = finished.iter().map(|s| s.phase).collect();
    assert_eq!(phases, [Phase::Backup, Phase::Restore, Phase::Check]);
    for state in &finished {
        assert_eq!(state.files_done, state.files_total, "{state:?}");
        assert!(state.files_total > 0);
    }
    // Backup and restore count the bytes of every file.
    assert_eq!(finished[0].bytes_done, summary.bytes_read);
    assert_eq!(finished[0].bytes_total, summary.bytes_read);
    assert_eq!(finished[1].bytes_done, summary.bytes_read);
    let updates = recorder.updates.lock().unwrap();
    let backup_updates = updates.iter().filter(|s| s.phase == Phase::Backup).count();
    assert_eq!(backup_updates as u64, finished[0].files_total);
    // Reports come from worker threads in any order; the largest is the total.
    let max_done = updates
        .iter()
        .filter(|s| s.phase == Phase::Backup)
        .map(|s| s.files_done)
        .max();
    assert_eq!(max_done, Some(finished[0].files_total));
    // Everything done: nothing left to wait for.
    assert!(finished[0].rate() > 0.0);
    assert_eq!(finished[0].eta(), Some(std::time::Duration::ZERO));
}

#[test]
fn hostile_trees_and_snapshots_are_refused() {
    let entry = |name: &[u8]| Entry {
        name: name.to_vec(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime_ns: 0,
        link_group: 0,
        xattrs: Vec::new(),
        kind: EntryKind::Symlink {
            target: b"x".to_vec(),
        },
    };
    // The new fields have their own rules: a link group only on files, xattrs sorted, unique,
    // named without NUL and not empty.
    let file = |name: &[u8]| Entry {
        kind: EntryKind::File {
            size: 0,
            chunks: vec![],
        },
        ..entry(name)
    };
    let packed = |name: &[u8], size: u64, offset: u32| Entry {
        kind: EntryKind::Packed {
            size,
            id: cairn_seal::BlockId::from_bytes([1; 32]),
            pack: cairn_seal::BlockId::from_bytes([2; 32]),
            offset,
        },
        ..entry(name)
    };
    assert!(
        Tree {
            entries: vec![packed(b"p", 64 << 20, 0)]
        }
        .encode()
        .is_ok()
    );
    let bad_entries = [
        Entry {
            link_group: 3,
            ..entry(b"l")
        },
        Entry {
            xattrs: vec![(b"user.b".to_vec(), vec![]), (b"user.a".to_vec(), vec![])],
            ..file(b"f")
        },
        Entry {
            xattrs: vec![(b"user.a".to_vec(), vec![1]), (b"user.a".to_vec(), vec![2])],
            ..file(b"f")
        },
        Entry {
            xattrs: vec![(b"user.\0".to_vec(), vec![])],
            ..file(b"f")
        },
        Entry {
            xattrs: vec![(Vec::new(), vec![])],
            ..file(b"f")
        },
        // A packed file is not empty and lies inside the largest block.
        packed(b"p", 0, 0),
        packed(b"p", 64 << 20, 1),
        packed(b"p", 1, u32::MAX),
        // An end that overflows u64 (found by the fuzz target `backup_objects`).
        packed(b"p", u64::MAX - 3000, 4096),
    ];
    for e in bad_entries {
        assert!(
            Tree {
                entries: vec![e.clone()]
            }
            .encode()
            .is_err(),
            "{e:?}"
        );
    }
    // A good one round-trips; flag bits the format does not define are refused.
    let good = Tree {
        entries: vec![Entry {
            link_group: 7,
            xattrs: vec![
                (b"user.a".to_vec(), b"1".to_vec()),
                (b"user.b".to_vec(), vec![]),
            ],
            ..file(b"f")
        }],
    };
    let bytes = good.encode().unwrap();
    assert_eq!(Tree::decode(&bytes).unwrap(), good);
    let flags_at = 4 + 1 + 4 + 2 + 1 + 1 + 4 + 4 + 4 + 8;
    assert_eq!(bytes[flags_at], 3);
    let mut unknown = bytes.clone();
    unknown[flags_at] |= 4;
    assert!(Tree::decode(&unknown).is_err());
    for name in [&b".."[..], b".", b"", b"a/b", b"/etc", b"a\0b", b"..\\x"] {
        let t = Tree {
            entries: vec![entry(name)],
        };
        assert!(t.encode().is_err(), "{name:?}");
        // Forge the bytes by encoding a safe name of the same length and patching it in.
        let placeholder = vec![b'q'; name.len().max(1)];
        let mut bytes = Tree {
            entries: vec![entry(&placeholder)],
        }
        .encode()
        .unwrap();
        if !name.is_empty() {
            let at = 4 + 1 + 4 + 2;
            bytes[at..at + name.len()].copy_from_slice(name);
            assert!(Tree::decode(&bytes).is_err(), "{name:?}");
        }
    }
    // Unsorted or duplicate names.
    let dup = Tree {
        entries: vec![entry(b"a"), entry(b"a")],
    };
    assert!(dup.encode().is_err());
    let mut bytes = Tree {
        entries: vec![entry(b"a"), entry(b"b")],
    }
    .encode()
    .unwrap();
    let second = bytes.iter().rposition(|&b| b == b'b').unwrap();
    bytes[second] = b'a';
    assert!(Tree::decode(&bytes).is_err());
    // Every truncation of a valid tree is refused.
    let good = Tree {
        entries: vec![entry(b"a"), entry(b"bb")],
    }
    .encode()
    .unwrap();
    for cut in 0..good.len() {
        assert!(Tree::decode(&good[..cut]).is_err());
    }
    // Snapshots: another key's tag, and any flipped byte, are refused.
    let s = Snapshot {
        seq: 1,
        parent: None,
        root: cairn_seal::BlockId::from_bytes([1; 32]),
        time_ns: 5,
        host: "h".into(),
        paths: vec!["/p".into()],
        tags: vec![],
        chunker: ChunkerRecord {
            algorithm: CHUNKER_KEYED_V1,
            min: 1,
            avg: 2,
            max: 3,
        },
        warnings_total: 0,
        warnings: vec![],
    };
    let enc = s.encode(&key().snapshot_key()).unwrap();
    assert_eq!(Snapshot::decode(&enc, &key().snapshot_key()).unwrap(), s);
    let other = ArchiveKey::from_bytes([8; 32]).snapshot_key();
    assert!(matches!(
        Snapshot::decode(&enc, &other),
        Err(BackupError::SnapshotAuth)
    ));
    for i in 0..enc.len() {
        let mut b = enc.clone();
        b[i] ^= 1;
        assert!(
            Snapshot::decode(&b, &key().snapshot_key()).is_err(),
            "byte {i}"
        );
    }
}

/// A chain started with another keyed chunker (v1 here, at other sizes) goes on with it, so
/// changed files deduplicate against their previous versions; a new chain takes the default.
#[test]
fn a_backup_continues_with_its_parents_chunker() {
    let (src, other, mut parent) = backed_up();
    let v1 = ChunkerRecord {
        algorithm: CHUNKER_KEYED_V1,
        min: 2048,
        avg: 8192,
        max: 32768,
    };
    parent.chunker = v1;
    let parent_id = other.snapshots().unwrap()[0].0;
    let repo = repo(MemoryStore::new());
    let a = repo
        .backup(&BackupOptions::new("h", [src.path()]).parent(Some((&parent_id, &parent))))
        .unwrap();
    let a_record = a.record.clone().unwrap();
    assert_eq!(a_record.chunker, v1);
    // Cut the same way again: nothing new to send.
    let b = repo
        .backup(
            &BackupOptions::new("h", [src.path()]).parent(Some((&a.snapshot.unwrap(), &a_record))),
        )
        .unwrap();
    assert_eq!(b.record.as_ref().unwrap().chunker, v1);
    assert_eq!(b.blocks_sent, 0, "{b:?}");
    // A new chain is cut by the repository's own chunker, so the big file's chunks are new.
    let c = repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    assert_eq!(
        c.record.as_ref().unwrap().chunker.algorithm,
        CHUNKER_KEYED_V2
    );
    assert!(c.blocks_sent > 5, "{c:?}");
}

/// Several folders in one snapshot: each restored at its absolute path below the target,
/// with nothing else of the directories above them; incremental like one folder; bad sets are
/// usage errors.
#[test]
fn several_folders_make_one_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fs::canonicalize(tmp.path()).unwrap();
    let (docs, pics) = (base.join("home/docs"), base.join("home/pics"));
    make_tree(&docs);
    fs::create_dir_all(&pics).unwrap();
    fs::write(pics.join("cat.jpg"), bytes(5, 40_000)).unwrap();
    fs::write(base.join("home/not-chosen.txt"), b"left out").unwrap();
    let repo = repo(MemoryStore::new());
    let folders = [docs.clone(), pics.clone()];
    let first = repo
        .backup(&BackupOptions::new("h", folders.iter()))
        .unwrap();
    let snap = first.record.clone().unwrap();
    assert_eq!(snap.paths, [docs.to_string_lossy(), pics.to_string_lossy()]);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("r");
    repo.restore(&snap, &target).unwrap();
    let under = |p: &Path| target.join(p.strip_prefix("/").unwrap());
    assert_same(&docs, &under(&docs));
    assert_same(&pics, &under(&pics));
    // Only what leads to the folders: the unchosen file is not there.
    let home: Vec<_> = fs::read_dir(under(&base.join("home")))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(home.len(), 2, "{home:?}");
    // Nothing changed: nothing sent. A change in one folder: only its path of trees.
    let again = repo
        .backup(
            &BackupOptions::new("h", folders.iter())
                .parent(Some((&first.snapshot.unwrap(), &snap))),
        )
        .unwrap();
    assert_eq!(again.blocks_sent, 0, "{again:?}");
    fs::write(pics.join("dog.jpg"), bytes(6, 10_000)).unwrap();
    let snap2 = again.record.clone().unwrap();
    let third = repo
        .backup(
            &BackupOptions::new("h", folders.iter())
                .parent(Some((&again.snapshot.unwrap(), &snap2))),
        )
        .unwrap();
    let changes = repo
        .diff(Some(&snap2), third.record.as_ref().unwrap())
        .unwrap();
    let paths: Vec<String> = changes
        .iter()
        .map(|c| String::from_utf8_lossy(&c.path).into_owned())
        .collect();
    let want = format!("{}/dog.jpg", pics.strip_prefix("/").unwrap().display());
    assert_eq!(paths, [want]);
    // Nested, repeated or relative folders cannot share a snapshot.
    for bad in [
        vec![docs.clone(), docs.join("deep")],
        vec![docs.clone(), docs.clone()],
        vec![docs.clone(), "relative".into()],
        vec![],
    ] {
        assert!(
            matches!(
                repo.backup(&BackupOptions::new("h", bad.iter())),
                Err(BackupError::Usage(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn restore_refuses_a_non_empty_target() {
    let (_src, repo, snap) = backed_up();
    let out = tempfile::tempdir().unwrap();
    fs::write(out.path().join("existing"), b"x").unwrap();
    assert!(matches!(
        repo.restore(&snap, out.path()),
        Err(BackupError::TargetNotEmpty(_))
    ));
}

#[test]
fn file_cache_skips_unchanged_files() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let state = tempfile::tempdir().unwrap();
    let cache = FileCache::open(&state.path().join("cache.redb")).unwrap();
    let repo = repo(MemoryStore::new());
    let first = repo
        .backup(&BackupOptions::new("h", [src.path()]).cache(&cache))
        .unwrap();
    assert_eq!(first.files_unchanged, 0);
    let (id, snap) = repo.snapshots().unwrap().remove(0);
    assert_eq!(cache.snapshot().unwrap(), Some(id));
    // Nothing changed: no file is read, nothing is sent.
    let second = repo
        .backup(
            &BackupOptions::new("h", [src.path()])
                .parent(Some((&id, &snap)))
                .cache(&cache),
        )
        .unwrap();
    assert_eq!(second.bytes_read, 0, "{second:?}");
    assert_eq!(second.blocks_sent, 0);
    // empty.txt, root.txt, docs/a.txt, docs/deep/small.bin, docs/deep/er/big.bin
    assert_eq!(second.files_unchanged, 5);
    // One file changed: only it is read.
    let snaps = repo.snapshots().unwrap();
    let (id2, snap2) = snaps.last().unwrap();
    fs::write(src.path().join("docs/deep/small.bin"), bytes(7, 5000)).unwrap();
    let third = repo
        .backup(
            &BackupOptions::new("h", [src.path()])
                .parent(Some((id2, snap2)))
                .cache(&cache),
        )
        .unwrap();
    assert_eq!(third.bytes_read, 5000, "{third:?}");
    assert_eq!(third.files_unchanged, second.files_unchanged - 1);
    // The restored result is the current tree.
    let snaps = repo.snapshots().unwrap();
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snaps.last().unwrap().1, &out.path().join("r"))
        .unwrap();
    assert_same(src.path(), &out.path().join("r"));
    // A cache written with another snapshot is not trusted: every file is read again.
    let (id0, snap0) = &snaps[0];
    let stale = repo
        .backup(
            &BackupOptions::new("h", [src.path()])
                .parent(Some((id0, snap0)))
                .cache(&cache),
        )
        .unwrap();
    assert_eq!(stale.files_unchanged, 0);
    assert!(stale.bytes_read > 300_000);
}

/// Many small files and a few large ones: processed in groups on the CPU pool, all restored.
#[test]
fn many_files_through_the_pool() {
    let src = tempfile::tempdir().unwrap();
    for d in 0..30u64 {
        let dir = src.path().join(format!("dir-{d:02}"));
        fs::create_dir(&dir).unwrap();
        for f in 0..40u64 {
            fs::write(
                dir.join(format!("f{f:03}.txt")),
                bytes(d * 100 + f, (f as usize * 37) % 3000),
            )
            .unwrap();
        }
    }
    for b in 0..3u64 {
        fs::write(
            src.path().join(format!("big-{b}.bin")),
            bytes(9000 + b, 700_000),
        )
        .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let store = ArchiveStore::open(
        DirStorage::open(dir.path().join("repo")).unwrap(),
        Config::new(*b"many files repo!"),
    )
    .unwrap();
    let repo = repo(store);
    let summary = repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    assert_eq!(summary.entries, 30 + 30 * 40 + 3);
    assert_eq!(
        summary.bytes_read,
        (0..30u64)
            .map(|_| (0..40u64).map(|f| f * 37 % 3000).sum::<u64>())
            .sum::<u64>()
            + 3 * 700_000
    );
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snap, &out.path().join("r")).unwrap();
    assert_same(src.path(), &out.path().join("r"));
    assert!(repo.check(true).unwrap().errors.is_empty());
}

/// B-8: the client keeps its chain head and refuses a store that withholds its newest
/// snapshot, or whose newest snapshot does not descend from the head.
#[test]
fn rolled_back_or_forked_chains_are_refused() {
    let src = tempfile::tempdir().unwrap();
    make_tree(src.path());
    let repo = repo(MemoryStore::new());
    let head_of = |repo: &Repository<MemoryStore>| {
        let snaps = repo.snapshots().unwrap();
        let (id, s) = check_chain(&snaps, None).unwrap().unwrap().clone();
        ChainHead { seq: s.seq, id }
    };
    repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    let h0 = head_of(&repo);
    let snaps = repo.snapshots().unwrap();
    let (id0, s0) = &snaps[0];
    repo.backup(&BackupOptions::new("h", [src.path()]).parent(Some((id0, s0))))
        .unwrap();
    let h1 = head_of(&repo);
    assert_eq!(h1.seq, 1);
    // The head round-trips through its text form.
    assert_eq!(h1.to_string().parse::<ChainHead>().unwrap(), h1);
    assert!("1 zz".parse::<ChainHead>().is_err());
    // An honest store: the newest is returned, from the head or from an older head.
    let snaps = repo.snapshots().unwrap();
    assert_eq!(check_chain(&snaps, Some(&h1)).unwrap().unwrap().0, h1.id);
    assert_eq!(check_chain(&snaps, Some(&h0)).unwrap().unwrap().0, h1.id);
    // A fork: another writer with the same key continues from s0, not from our head.
    let mut forked = snaps.clone();
    let mut other = snaps[1].1.clone();
    other.time_ns += 1;
    let other_id = cairn_seal::BlockId::from_bytes([9; 32]);
    let mut newer = other.clone();
    newer.seq = 2;
    newer.parent = Some(other_id);
    forked.retain(|(id, _)| *id != h1.id);
    forked.push((other_id, other));
    forked.push((cairn_seal::BlockId::from_bytes([10; 32]), newer));
    assert!(matches!(
        check_chain(&forked, Some(&h1)),
        Err(BackupError::Fork { head: 1 })
    ));
    // A rollback: the store withholds the newest snapshot.
    repo.store().forget_snapshot(&h1.id);
    let snaps = repo.snapshots().unwrap();
    assert!(matches!(
        check_chain(&snaps, Some(&h1)),
        Err(BackupError::Rollback {
            head: 1,
            store: Some(0)
        })
    ));
    // And a store that shows nothing at all.
    assert!(matches!(
        check_chain(&[], Some(&h0)),
        Err(BackupError::Rollback {
            head: 0,
            store: None
        })
    ));
}

/// Restore by path: a directory's contents, a single file, a symlink; paths through a symlink
/// or a file, or with `..`, are refused and write nothing.
#[test]
fn restore_by_path() {
    let (src, repo, snap) = backed_up();
    let out = tempfile::tempdir().unwrap();
    // A directory: its contents.
    let t = out.path().join("deep");
    repo.restore_path(&snap, "docs/deep", &t).unwrap();
    assert_same(&src.path().join("docs/deep"), &t);
    // A file, with redundant slashes.
    let t = out.path().join("file");
    assert_eq!(
        repo.restore_path(&snap, "/docs//deep/er/big.bin", &t)
            .unwrap()
            .entries,
        1
    );
    assert_eq!(
        fs::read(t.join("big.bin")).unwrap(),
        fs::read(src.path().join("docs/deep/er/big.bin")).unwrap()
    );
    // A symlink is restored as a symlink, never followed.
    #[cfg(unix)]
    {
        let t = out.path().join("link");
        repo.restore_path(&snap, "link", &t).unwrap();
        assert_eq!(
            fs::read_link(t.join("link")).unwrap(),
            Path::new("docs/a.txt")
        );
    }
    for bad in [
        "link/a.txt",
        "root.txt/x",
        "docs/../root.txt",
        "docs/./a.txt",
        "nope",
        "docs/nope",
    ] {
        let t = out.path().join("refused");
        assert!(
            matches!(
                repo.restore_path(&snap, bad, &t),
                Err(BackupError::PathNotFound(_))
            ),
            "{bad}"
        );
        assert!(!t.exists(), "{bad} created the target");
    }
}

/// Hard links come back as one file with several names (read once at backup), and extended
/// attributes come back on files and directories.
#[cfg(unix)]
#[test]
fn hard_links_and_xattrs_round_trip() {
    use std::os::unix::fs::MetadataExt;
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    fs::create_dir_all(root.join("a/b")).unwrap();
    fs::write(root.join("a/one"), bytes(5, 50_000)).unwrap();
    fs::hard_link(root.join("a/one"), root.join("a/b/two")).unwrap();
    fs::hard_link(root.join("a/one"), root.join("three")).unwrap();
    fs::write(root.join("plain"), b"plain").unwrap();
    // Extended attributes, where the filesystem takes them (tmpfs and ext4 do).
    let with_xattrs = xattr::set(root.join("plain"), "user.cairn.test", b"v1").is_ok();
    if with_xattrs {
        xattr::set(root.join("plain"), "user.cairn.empty", b"").unwrap();
        xattr::set(root.join("a"), "user.cairn.dir", b"d").unwrap();
        xattr::set(root.join("a/one"), "user.cairn.linked", b"l").unwrap();
    }
    let repo = repo(MemoryStore::new());
    let summary = repo.backup(&BackupOptions::new("h", [root])).unwrap();
    // The linked file's 50,000 bytes were read once, not three times.
    assert_eq!(summary.bytes_read, 50_000 + 5);
    let (_, snap) = repo.snapshots().unwrap().remove(0);
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("r");
    let restored = repo.restore(&snap, &target).unwrap();
    assert_eq!(restored.xattrs_skipped, 0);
    assert_same(root, &target);
    let ino = |p: &str| fs::metadata(target.join(p)).unwrap().ino();
    assert_eq!(ino("a/one"), ino("a/b/two"));
    assert_eq!(ino("a/one"), ino("three"));
    assert_ne!(ino("a/one"), ino("plain"));
    assert_eq!(fs::metadata(target.join("three")).unwrap().nlink(), 3);
    if with_xattrs {
        let get = |p: &str, n: &str| xattr::get(target.join(p), n).unwrap();
        assert_eq!(get("plain", "user.cairn.test"), Some(b"v1".to_vec()));
        assert_eq!(get("plain", "user.cairn.empty"), Some(Vec::new()));
        assert_eq!(get("a", "user.cairn.dir"), Some(b"d".to_vec()));
        assert_eq!(get("three", "user.cairn.linked"), Some(b"l".to_vec()));
    } else {
        eprintln!("this filesystem takes no user xattrs: only hard links were checked");
    }
    // Restoring only one name of a linked file gives a plain file.
    let one = out.path().join("one");
    repo.restore_path(&snap, "a/b/two", &one).unwrap();
    assert_eq!(fs::read(one.join("two")).unwrap(), bytes(5, 50_000));
}

/// An unchanged file the cache knows had no extended attributes is not asked for them again;
/// one that had some is, and keeps them; one given an attribute since (which moves its ctime) is
/// read again with it.
#[cfg(unix)]
#[test]
fn unchanged_files_are_listed_for_xattrs_only_when_they_had_some() {
    let src = tempfile::tempdir().unwrap();
    let root = src.path();
    for name in ["plain", "tagged", "later"] {
        fs::write(root.join(name), name.as_bytes()).unwrap();
    }
    if xattr::set(root.join("tagged"), "user.cairn.test", b"v1").is_err() {
        eprintln!("this filesystem takes no user xattrs: not checked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cache = FileCache::open(&dir.path().join("cache.redb")).unwrap();
    let repo = repo(MemoryStore::new());
    let first = repo
        .backup(&BackupOptions::new("h", [root]).cache(&cache))
        .unwrap();
    // The next backup, with the previous one as its parent.
    let after = |prev: &BackupSummary| {
        let (id, snap) = (prev.snapshot.unwrap(), prev.record.clone().unwrap());
        repo.backup(
            &BackupOptions::new("h", [root])
                .parent(Some((&id, &snap)))
                .cache(&cache),
        )
        .unwrap()
    };
    assert_eq!(first.xattrs_not_listed, 0);
    let xattrs_of = |summary: &BackupSummary, name: &str| {
        let tree = root_tree(&repo, summary.record.as_ref().unwrap());
        tree.entries
            .iter()
            .find(|e| e.name == name.as_bytes())
            .unwrap()
            .xattrs
            .clone()
    };
    let tagged = vec![(b"user.cairn.test".to_vec(), b"v1".to_vec())];
    assert_eq!(xattrs_of(&first, "tagged"), tagged);
    // Nothing changed: "plain" and "later" are vouched for, "tagged" is listed again.
    let second = after(&first);
    assert_eq!(second.files_unchanged, 3);
    assert_eq!(second.xattrs_not_listed, 2);
    assert_eq!(xattrs_of(&second, "tagged"), tagged);
    assert!(xattrs_of(&second, "plain").is_empty());
    // An attribute set since moves the ctime: the file is read, and listed.
    xattr::set(root.join("later"), "user.cairn.new", b"n").unwrap();
    let third = after(&second);
    assert_eq!(third.files_unchanged, 2);
    assert_eq!(third.xattrs_not_listed, 1);
    assert_eq!(
        xattrs_of(&third, "later"),
        vec![(b"user.cairn.new".to_vec(), b"n".to_vec())]
    );
    assert_eq!(xattrs_of(&third, "tagged"), tagged);
}

/// The fuzz target's seeds are valid objects, so fuzzing starts from inside the decoders.
#[test]
fn fuzz_seeds_decode() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/backup_objects");
    let tree = fs::read(seeds.join("tree")).unwrap();
    assert_eq!(tree[0] & 1, 0);
    let decoded = Tree::decode(&tree[1..]).unwrap();
    assert_eq!(decoded.encode().unwrap(), &tree[1..]);
    assert!(!decoded.entries[0].xattrs.is_empty());
    assert!(matches!(
        decoded.entries[1].kind,
        EntryKind::Packed { offset: 4096, .. }
    ));
    // A version 2 tree (before packs) still decodes; it re-encodes as the current version.
    let v2 = fs::read(seeds.join("tree-v2")).unwrap();
    assert_eq!(v2[5], 2);
    let old = Tree::decode(&v2[1..]).unwrap();
    let mut expected = v2[1..].to_vec();
    expected[4] = TREE_VERSION;
    assert_eq!(old.encode().unwrap(), expected);
    // A packed entry in a version 2 tree is refused: version 2 has no such type.
    let mut forged = tree[1..].to_vec();
    forged[4] = 2;
    assert!(Tree::decode(&forged).is_err());
    let snapshot = fs::read(seeds.join("snapshot-tagged")).unwrap();
    assert_eq!(snapshot[0], 3);
    let key = ArchiveKey::from_bytes([7; 32]).snapshot_key();
    let mut bytes = snapshot[1..].to_vec();
    bytes.extend_from_slice(blake3::keyed_hash(key.expose_secret(), &bytes).as_bytes());
    Snapshot::decode(&bytes, &key).unwrap();
}

/// The root tree of a snapshot, opened with the test key.
fn root_tree<B: BlockStore>(repo: &Repository<B>, snap: &Snapshot) -> Tree {
    let sealer = cairn_seal::Sealer::new(
        &key(),
        ArchiveId::from_bytes([3; 16]),
        cairn_seal::SealConfig::default(),
    );
    let sealed = repo.store().get_block(&snap.root).unwrap();
    Tree::decode(&sealer.open(BlockKind::TREE, &snap.root, &sealed).unwrap()).unwrap()
}

/// Small files are packed together (fewer, larger blocks), a copy is stored once, a moved file
/// is referenced where its bytes already are, and everything restores and checks.
#[test]
fn small_files_are_packed_deduplicated_and_restored() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..200u64 {
        let dir = src.path().join(format!("d{}", i % 4));
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join(format!("f{i:03}")),
            bytes(i, 100 + (i as usize * 997) % 30_000),
        )
        .unwrap();
    }
    // Two copies of one file, and a file just at the packing limit (not packed).
    fs::write(src.path().join("d0/copy-a"), bytes(5000, 12_345)).unwrap();
    fs::write(src.path().join("d0/copy-b"), bytes(5000, 12_345)).unwrap();
    fs::write(src.path().join("limit"), bytes(6000, PACK_BELOW)).unwrap();
    let state = tempfile::tempdir().unwrap();
    let cache = FileCache::open(&state.path().join("cache.redb")).unwrap();
    let repo = repo(MemoryStore::new());
    let first = repo
        .backup(&BackupOptions::new("h", [src.path()]).cache(&cache))
        .unwrap();
    assert_eq!(first.files_packed, 201, "{first:?}");
    assert_eq!(first.files_deduplicated, 1, "{first:?}");
    // 3 MiB of small files in a handful of packs, plus `limit`'s chunks and 5 trees.
    assert!(first.blocks_sent < 30, "{first:?}");
    let snap = first.record.clone().unwrap();
    let d0 = root_tree(&repo, &snap);
    assert!(matches!(
        d0.entries.iter().find(|e| e.name == b"limit").unwrap().kind,
        EntryKind::File { .. }
    ));
    let out = tempfile::tempdir().unwrap();
    repo.restore(&snap, &out.path().join("r")).unwrap();
    assert_same(src.path(), &out.path().join("r"));
    assert!(repo.check(true).unwrap().errors.is_empty());

    // A file moved to another folder is not read into a new pack: its entry points into the
    // pack that already holds it, and the diff shows one removal and one addition with the
    // same contents (what the agent reports as a rename).
    fs::rename(src.path().join("d1/f001"), src.path().join("d2/moved")).unwrap();
    let id = first.snapshot.unwrap();
    let second = repo
        .backup(
            &BackupOptions::new("h", [src.path()])
                .parent(Some((&id, &snap)))
                .cache(&cache),
        )
        .unwrap();
    assert_eq!(second.files_packed, 0, "{second:?}");
    assert_eq!(second.files_deduplicated, 1, "{second:?}");
    // Only trees: the root, d1 and d2.
    assert_eq!(second.blocks_sent, 3, "{second:?}");
    let snap2 = second.record.clone().unwrap();
    let changes = repo.diff(Some(&snap), &snap2).unwrap();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert_eq!(
        changes[0].entry.kind.content_key(),
        changes[1].entry.kind.content_key()
    );
    let out2 = tempfile::tempdir().unwrap();
    repo.restore(&snap2, &out2.path().join("r")).unwrap();
    assert_same(src.path(), &out2.path().join("r"));

    // With packing off, every small file gets blocks of its own. A file of one chunk (here:
    // at most the test chunker's 1 KiB minimum) keeps its id, so the diff against the packed
    // snapshot shows only the files the small test chunker cut into several chunks.
    let unpacked = repo.with_packing(false);
    let third = unpacked
        .backup(&BackupOptions::new("h", [src.path()]))
        .unwrap();
    assert_eq!(third.files_packed, 0, "{third:?}");
    assert!(third.blocks_sent > 200, "{third:?}");
    let d = unpacked.diff(Some(&snap2), &third.record.unwrap()).unwrap();
    assert!(!d.is_empty());
    assert!(
        d.iter()
            .all(|c| c.kind == ChangeKind::Modified && c.entry.kind.file_size().unwrap() > 1024),
        "{d:?}"
    );
}

/// A tree whose packed file claims bytes past the end of its pack: restore refuses it (nothing
/// short is written as if whole), and check --read-data names the pack.
#[test]
fn a_packed_file_outside_its_pack_is_refused() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..3u64 {
        fs::write(src.path().join(format!("f{i}")), bytes(i, 1000)).unwrap();
    }
    let repo = repo(MemoryStore::new());
    let first = repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    let snap = first.record.clone().unwrap();
    let mut tree = root_tree(&repo, &snap);
    let EntryKind::Packed { offset, pack, .. } = &mut tree.entries[2].kind else {
        panic!("not packed: {tree:?}");
    };
    assert_eq!(*offset, 2000);
    *offset = 2001;
    let pack = *pack;
    let sealer = cairn_seal::Sealer::new(
        &key(),
        ArchiveId::from_bytes([3; 16]),
        cairn_seal::SealConfig::default(),
    );
    let sealed = sealer
        .seal(BlockKind::TREE, &tree.encode().unwrap())
        .unwrap();
    repo.store()
        .put_blocks(vec![(sealed.id(), sealed.as_bytes().to_vec())])
        .unwrap();
    let hostile = Snapshot {
        seq: 1,
        parent: first.snapshot,
        root: sealed.id(),
        ..snap
    };
    let out = tempfile::tempdir().unwrap();
    assert!(matches!(
        repo.restore(&hostile, &out.path().join("r")),
        Err(BackupError::Malformed("packed file outside its pack"))
    ));
    let record = sealer
        .seal(
            BlockKind::SNAPSHOT,
            &hostile.encode(&key().snapshot_key()).unwrap(),
        )
        .unwrap();
    repo.store()
        .put_snapshot(&record.id(), record.as_bytes().to_vec())
        .unwrap();
    let report = repo.check(true).unwrap();
    assert_eq!(report.errors.len(), 1, "{report:?}");
    assert!(
        report.errors[0].contains(&pack.to_string())
            && report.errors[0].contains("shorter than the packed files"),
        "{report:?}"
    );
}
