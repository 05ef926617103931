//! Reference lists: the blocks a backup says its snapshot reaches are exactly the blocks its
//! trees reach (what a server collects garbage by, `docs/design/0009-retention-and-prune.md`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;

use cairn_backup::*;

mod common;
use common::{bytes, repo};

fn fill(root: &Path, seed: u64) {
    fs::create_dir_all(root.join("a/b/c")).unwrap();
    fs::create_dir_all(root.join("empty")).unwrap();
    fs::write(root.join("big.bin"), bytes(seed, 200_000)).unwrap();
    fs::write(root.join("a/same.bin"), bytes(7, 50_000)).unwrap();
    fs::write(root.join("a/b/copy.bin"), bytes(7, 50_000)).unwrap();
    for i in 0..20 {
        // Small files: packed.
        fs::write(
            root.join(format!("a/b/c/small-{i}.txt")),
            format!("{seed} {i}"),
        )
        .unwrap();
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink("big.bin", root.join("link")).ok();
}

fn assert_listed(repo: &Repository<MemoryStore>, summary: &BackupSummary) {
    let id = summary.snapshot.expect("a snapshot");
    let root = summary.record.as_ref().expect("its record").root;
    let walked = repo.reachable(&root).unwrap();
    assert!(walked.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(summary.refs, walked, "the list is what the trees reach");
    assert_eq!(repo.store().refs_of(&id), Some(walked), "the store got it");
}

#[test]
fn a_backups_list_is_what_its_trees_reach() {
    let src = tempfile::tempdir().unwrap();
    fill(src.path(), 1);
    let repo = repo(MemoryStore::new());
    let first = repo.backup(&BackupOptions::new("h", [src.path()])).unwrap();
    assert_listed(&repo, &first);
    // Data blocks, trees and the pack are all there: more ids than trees.
    assert!(first.refs.len() > 10);

    // A second backup with a parent and unchanged files (ids reused, not read).
    fs::write(src.path().join("big.bin"), bytes(2, 200_000)).unwrap();
    fs::remove_file(src.path().join("a/b/copy.bin")).unwrap();
    let (parent_id, parent) = repo.snapshots().unwrap().remove(0);
    let second = repo
        .backup(&BackupOptions::new("h", [src.path()]).parent(Some((&parent_id, &parent))))
        .unwrap();
    assert_listed(&repo, &second);
    assert_ne!(first.refs, second.refs);
}

#[test]
fn a_list_covers_the_trees_above_several_folders() {
    let src = tempfile::tempdir().unwrap();
    fill(&src.path().join("one"), 3);
    fill(&src.path().join("two/deeper"), 4);
    let repo = repo(MemoryStore::new());
    let summary = repo
        .backup(&BackupOptions::new(
            "h",
            [src.path().join("one"), src.path().join("two/deeper")],
        ))
        .unwrap();
    assert_listed(&repo, &summary);
}
