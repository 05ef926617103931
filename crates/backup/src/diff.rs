//! What changed between two snapshots, from their trees alone (no file is read). Trees are
//! named by their contents, so a subtree whose id did not change is skipped without being
//! fetched: the cost follows the size of the change, not of the tree.

use std::cmp::Ordering;

use cairn_seal::{BlockId, BlockKind};

use crate::engine::Repository;
use crate::error::BackupError;
use crate::snapshot::Snapshot;
use crate::store::BlockStore;
use crate::tree::{Entry, EntryKind, Tree};

/// How an entry changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// In the new snapshot only.
    Added,
    /// A file whose contents changed (or a symlink whose target changed).
    Modified,
    /// Same contents; mode, owner, modification time or extended attributes changed.
    Attributes,
    /// In the old snapshot only.
    Removed,
}

/// One difference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// The path below the snapshot's root, components joined with `/`.
    pub path: Vec<u8>,
    /// How it changed.
    pub kind: ChangeKind,
    /// The entry: the new one, or the old one for [`ChangeKind::Removed`].
    pub entry: Entry,
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(prefix.len() + 1 + name.len());
    if !prefix.is_empty() {
        p.extend_from_slice(prefix);
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Whether two entries hold the same contents: files by [`EntryKind::content_key`] (so a
/// small file that moved into or between packs is unchanged), symlinks by target.
fn same_contents(a: &EntryKind, b: &EntryKind) -> bool {
    match (a, b) {
        (EntryKind::Symlink { target: t1 }, EntryKind::Symlink { target: t2 }) => t1 == t2,
        _ => a.content_key().is_some() && a.content_key() == b.content_key(),
    }
}

fn same_attributes(a: &Entry, b: &Entry) -> bool {
    a.mode == b.mode
        && a.uid == b.uid
        && a.gid == b.gid
        && a.mtime_ns == b.mtime_ns
        && a.xattrs == b.xattrs
}

impl<B: BlockStore> Repository<B> {
    /// Every entry added, modified, changed in attributes only, or removed from `old` (none: a
    /// first snapshot, everything is added) to `new`, in path order. Directories are reported
    /// when added or removed (with everything under them), not when only their contents
    /// change.
    ///
    /// # Errors
    /// [`BackupError`] if a tree does not open or decode.
    pub fn diff(&self, old: Option<&Snapshot>, new: &Snapshot) -> Result<Vec<Change>, BackupError> {
        let mut out = Vec::new();
        self.diff_trees(old.map(|s| &s.root), Some(&new.root), &[], &mut out)?;
        Ok(out)
    }

    fn tree(&self, id: Option<&BlockId>) -> Result<Vec<Entry>, BackupError> {
        match id {
            Some(id) => Ok(Tree::decode(&self.open(BlockKind::TREE, id)?)?.entries),
            None => Ok(Vec::new()),
        }
    }

    fn diff_trees(
        &self,
        old: Option<&BlockId>,
        new: Option<&BlockId>,
        prefix: &[u8],
        out: &mut Vec<Change>,
    ) -> Result<(), BackupError> {
        if old == new {
            return Ok(());
        }
        let (old, new) = (self.tree(old)?, self.tree(new)?);
        let (mut a, mut b) = (old.into_iter().peekable(), new.into_iter().peekable());
        loop {
            let order = match (a.peek(), b.peek()) {
                (None, None) => return Ok(()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => x.name.cmp(&y.name),
            };
            match order {
                Ordering::Less => {
                    if let Some(e) = a.next() {
                        self.removed(e, prefix, out)?;
                    }
                }
                Ordering::Greater => {
                    if let Some(e) = b.next() {
                        self.added(e, prefix, out)?;
                    }
                }
                Ordering::Equal => {
                    if let (Some(x), Some(y)) = (a.next(), b.next()) {
                        self.changed(x, y, prefix, out)?;
                    }
                }
            }
        }
    }

    fn added(&self, e: Entry, prefix: &[u8], out: &mut Vec<Change>) -> Result<(), BackupError> {
        let path = join(prefix, &e.name);
        let sub = match &e.kind {
            EntryKind::Dir { tree } => Some(*tree),
            _ => None,
        };
        out.push(Change {
            path: path.clone(),
            kind: ChangeKind::Added,
            entry: e,
        });
        match sub {
            Some(tree) => self.diff_trees(None, Some(&tree), &path, out),
            None => Ok(()),
        }
    }

    fn removed(&self, e: Entry, prefix: &[u8], out: &mut Vec<Change>) -> Result<(), BackupError> {
        let path = join(prefix, &e.name);
        if let EntryKind::Dir { tree } = &e.kind {
            self.diff_trees(Some(tree), None, &path, out)?;
        }
        out.push(Change {
            path,
            kind: ChangeKind::Removed,
            entry: e,
        });
        Ok(())
    }

    fn changed(
        &self,
        old: Entry,
        new: Entry,
        prefix: &[u8],
        out: &mut Vec<Change>,
    ) -> Result<(), BackupError> {
        match (&old.kind, &new.kind) {
            (EntryKind::Dir { tree: t1 }, EntryKind::Dir { tree: t2 }) => {
                let path = join(prefix, &new.name);
                self.diff_trees(Some(t1), Some(t2), &path, out)
            }
            (EntryKind::Dir { .. }, _) | (_, EntryKind::Dir { .. }) => {
                self.removed(old, prefix, out)?;
                self.added(new, prefix, out)
            }
            // A file stays a file whether it is chunked or packed.
            (k1, k2)
                if !(k1.is_file() && k2.is_file())
                    && std::mem::discriminant(k1) != std::mem::discriminant(k2) =>
            {
                self.removed(old, prefix, out)?;
                self.added(new, prefix, out)
            }
            (k1, k2) => {
                let kind = if !same_contents(k1, k2) {
                    ChangeKind::Modified
                } else if !same_attributes(&old, &new) {
                    ChangeKind::Attributes
                } else {
                    return Ok(());
                };
                out.push(Change {
                    path: join(prefix, &new.name),
                    kind,
                    entry: new,
                });
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::fs;

    use cairn_keys::ArchiveKey;
    use cairn_seal::ArchiveId;

    use super::*;
    use crate::BackupOptions;
    use crate::MemoryStore;

    fn kinds(changes: &[Change]) -> Vec<(String, ChangeKind)> {
        changes
            .iter()
            .map(|c| (String::from_utf8_lossy(&c.path).into_owned(), c.kind))
            .collect()
    }

    #[test]
    fn diff_reports_each_kind_of_change() {
        let src = tempfile::tempdir().unwrap();
        let root = src.path();
        fs::create_dir_all(root.join("docs/old")).unwrap();
        fs::write(root.join("docs/a.txt"), b"one").unwrap();
        fs::write(root.join("docs/old/gone.txt"), b"bye").unwrap();
        fs::write(root.join("keep.txt"), b"same").unwrap();
        fs::write(root.join("mode.txt"), b"mode").unwrap();
        let key = ArchiveKey::generate().unwrap();
        let repo = Repository::new(MemoryStore::new(), &key, ArchiveId::from_bytes([3; 16]));
        repo.backup(&BackupOptions::new("h", [root])).unwrap();
        let first = repo.snapshots().unwrap().remove(0);

        let everything = repo.diff(None, &first.1).unwrap();
        assert_eq!(everything.len(), 6, "{:?}", kinds(&everything));
        assert!(everything.iter().all(|c| c.kind == ChangeKind::Added));

        fs::write(root.join("docs/a.txt"), b"two!").unwrap();
        fs::remove_dir_all(root.join("docs/old")).unwrap();
        fs::write(root.join("docs/new.txt"), b"hello").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(root.join("mode.txt"), fs::Permissions::from_mode(0o600)).unwrap();
        }
        repo.backup(&BackupOptions::new("h", [root]).parent(Some((&first.0, &first.1))))
            .unwrap();
        let second = repo.snapshots().unwrap().pop().unwrap();
        let mut want = vec![
            ("docs/a.txt".to_owned(), ChangeKind::Modified),
            ("docs/new.txt".to_owned(), ChangeKind::Added),
            ("docs/old/gone.txt".to_owned(), ChangeKind::Removed),
            ("docs/old".to_owned(), ChangeKind::Removed),
        ];
        if cfg!(unix) {
            want.push(("mode.txt".to_owned(), ChangeKind::Attributes));
        }
        assert_eq!(kinds(&repo.diff(Some(&first.1), &second.1).unwrap()), want);
        // Nothing changed: nothing reported.
        assert!(repo.diff(Some(&second.1), &second.1).unwrap().is_empty());
    }
}
