//! Tree objects: one directory's entries, encoded canonically (`docs/format/backup.md`).

use cairn_seal::{BlockId, MAX_PLAINTEXT_LEN};

use crate::error::BackupError;

/// Tree object magic and version.
pub const TREE_MAGIC: [u8; 4] = *b"CRNT";
/// Tree format version written (3: packed files). Version 2 trees (no packed files) are read.
pub const TREE_VERSION: u8 = 3;
/// The oldest tree version read.
pub const TREE_VERSION_MIN: u8 = 2;
/// Most extended attributes on one entry.
pub const MAX_XATTRS: usize = 1024;
/// Longest extended attribute value, in bytes (Linux's limit).
pub const MAX_XATTR_VALUE: usize = 64 << 10;

/// Extended attributes of an entry: (name, value) pairs.
pub type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// Entry flag: a hard-link group follows.
const FLAG_LINK: u8 = 1;
/// Entry flag: extended attributes follow.
const FLAG_XATTRS: u8 = 2;
/// Longest entry name, in bytes.
pub const MAX_NAME_LEN: usize = 255;
/// Most entries in one tree.
pub const MAX_ENTRIES: usize = 1 << 20;

/// What an entry is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file: its size and the ids of its chunks, in order.
    File {
        /// Size in bytes.
        size: u64,
        /// Chunk ids.
        chunks: Vec<BlockId>,
    },
    /// A small regular file stored inside a pack: bytes `offset..offset + size` of the data
    /// block `pack`, which holds several small files end to end (`docs/format/backup.md`).
    Packed {
        /// Size in bytes (at least 1).
        size: u64,
        /// The file's own id: the block id its contents would have as a data block of their
        /// own. Equal contents have equal ids, packed or not (renames are recognised by it).
        id: BlockId,
        /// The pack's block id.
        pack: BlockId,
        /// Where the file starts in the pack's plaintext.
        offset: u32,
    },
    /// A directory: the id of its tree object.
    Dir {
        /// Subtree id.
        tree: BlockId,
    },
    /// A symbolic link: its target, as stored (never followed on restore).
    Symlink {
        /// Target bytes.
        target: Vec<u8>,
    },
}

impl EntryKind {
    /// Whether this is a regular file (chunked or packed).
    #[must_use]
    pub const fn is_file(&self) -> bool {
        matches!(self, Self::File { .. } | Self::Packed { .. })
    }

    /// A regular file's size; `None` for anything else.
    #[must_use]
    pub const fn file_size(&self) -> Option<u64> {
        match self {
            Self::File { size, .. } | Self::Packed { size, .. } => Some(*size),
            _ => None,
        }
    }

    /// The data blocks a regular file's bytes are read from: its chunks, or its pack; empty
    /// for anything else.
    #[must_use]
    pub fn data_blocks(&self) -> &[BlockId] {
        match self {
            Self::File { chunks, .. } => chunks,
            Self::Packed { pack, .. } => std::slice::from_ref(pack),
            _ => &[],
        }
    }

    /// What identifies a regular file's contents: its size and chunk ids, or, for a packed
    /// file, its size and its own id. A one-chunk file and a packed file with the same
    /// contents have the same key. `None` for anything else.
    #[must_use]
    pub fn content_key(&self) -> Option<(u64, &[BlockId])> {
        match self {
            Self::File { size, chunks } => Some((*size, chunks)),
            Self::Packed { size, id, .. } => Some((*size, std::slice::from_ref(id))),
            _ => None,
        }
    }
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name: not empty, not `.` or `..`, no `/` or NUL, at most 255 bytes.
    pub name: Vec<u8>,
    /// Permission bits (and file type bits as the OS reports them).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Hard links: files of one snapshot with the same nonzero group are one file (inode) with
    /// several names; 0 for none. Only files have a group.
    pub link_group: u32,
    /// Extended attributes (name, value), sorted by name, names unique and without NUL.
    pub xattrs: Xattrs,
    /// What it is.
    pub kind: EntryKind,
}

/// Whether `name` is safe to create inside a directory: the only check restore needs to never
/// write outside its target.
pub fn is_safe_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name != b"."
        && name != b".."
        && !name.iter().any(|&b| b == b'/' || b == 0 || b == b'\\')
}

/// A directory: entries sorted by name, names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tree {
    /// The entries.
    pub entries: Vec<Entry>,
}

impl Tree {
    /// Pushes on `refs` the blocks this tree names: its subtrees and its files' data blocks
    /// (with repeats; the caller sorts and deduplicates).
    pub fn reached(&self, refs: &mut Vec<BlockId>) {
        // Before the list would grow its allocation, drop the repeats: a backup's list then
        // holds little more than its distinct blocks.
        if refs.len() > (1 << 16) && refs.len() + self.entries.len() > refs.capacity() {
            refs.sort_unstable();
            refs.dedup();
        }
        for e in &self.entries {
            match &e.kind {
                EntryKind::Dir { tree } => refs.push(*tree),
                kind => refs.extend_from_slice(kind.data_blocks()),
            }
        }
    }

    /// Encodes the tree (entries must be sorted, unique and safe; checked).
    pub fn encode(&self) -> Result<Vec<u8>, BackupError> {
        self.check()?;
        let mut out = Vec::with_capacity(16 + self.entries.len() * 64);
        out.extend_from_slice(&TREE_MAGIC);
        out.push(TREE_VERSION);
        let count =
            u32::try_from(self.entries.len()).map_err(|_| BackupError::Malformed("tree size"))?;
        out.extend_from_slice(&count.to_le_bytes());
        for e in &self.entries {
            let name_len =
                u16::try_from(e.name.len()).map_err(|_| BackupError::Malformed("name"))?;
            out.extend_from_slice(&name_len.to_le_bytes());
            out.extend_from_slice(&e.name);
            let (tag, _) = kind_tag(&e.kind);
            out.push(tag);
            out.extend_from_slice(&e.mode.to_le_bytes());
            out.extend_from_slice(&e.uid.to_le_bytes());
            out.extend_from_slice(&e.gid.to_le_bytes());
            out.extend_from_slice(&e.mtime_ns.to_le_bytes());
            let mut flags = 0;
            if e.link_group != 0 {
                flags |= FLAG_LINK;
            }
            if !e.xattrs.is_empty() {
                flags |= FLAG_XATTRS;
            }
            out.push(flags);
            if e.link_group != 0 {
                out.extend_from_slice(&e.link_group.to_le_bytes());
            }
            if !e.xattrs.is_empty() {
                let n = u16::try_from(e.xattrs.len())
                    .map_err(|_| BackupError::Malformed("xattr count"))?;
                out.extend_from_slice(&n.to_le_bytes());
                for (name, value) in &e.xattrs {
                    let name_len =
                        u8::try_from(name.len()).map_err(|_| BackupError::Malformed("xattr"))?;
                    out.push(name_len);
                    out.extend_from_slice(name);
                    let value_len =
                        u32::try_from(value.len()).map_err(|_| BackupError::Malformed("xattr"))?;
                    out.extend_from_slice(&value_len.to_le_bytes());
                    out.extend_from_slice(value);
                }
            }
            match &e.kind {
                EntryKind::File { size, chunks } => {
                    out.extend_from_slice(&size.to_le_bytes());
                    let n = u32::try_from(chunks.len())
                        .map_err(|_| BackupError::Malformed("chunks"))?;
                    out.extend_from_slice(&n.to_le_bytes());
                    for c in chunks {
                        out.extend_from_slice(c.as_bytes());
                    }
                }
                EntryKind::Packed {
                    size,
                    id,
                    pack,
                    offset,
                } => {
                    out.extend_from_slice(&size.to_le_bytes());
                    out.extend_from_slice(id.as_bytes());
                    out.extend_from_slice(pack.as_bytes());
                    out.extend_from_slice(&offset.to_le_bytes());
                }
                EntryKind::Dir { tree } => out.extend_from_slice(tree.as_bytes()),
                EntryKind::Symlink { target } => {
                    let n = u16::try_from(target.len())
                        .map_err(|_| BackupError::Malformed("symlink"))?;
                    out.extend_from_slice(&n.to_le_bytes());
                    out.extend_from_slice(target);
                }
            }
        }
        Ok(out)
    }

    /// Decodes a tree, refusing anything not in canonical form (unsorted or duplicate names,
    /// unsafe names, trailing bytes, unknown entry types).
    pub fn decode(bytes: &[u8]) -> Result<Self, BackupError> {
        let bad = |what| BackupError::Malformed(what);
        let mut r = Reader(bytes);
        if r.take(4)? != TREE_MAGIC {
            return Err(bad("tree header"));
        }
        let version = r.u8()?;
        if !(TREE_VERSION_MIN..=TREE_VERSION).contains(&version) {
            return Err(bad("tree version"));
        }
        let count = r.u32()? as usize;
        if count > MAX_ENTRIES {
            return Err(bad("tree size"));
        }
        let mut entries = Vec::with_capacity(count.min(bytes.len() / 32));
        for _ in 0..count {
            let name_len = usize::from(r.u16()?);
            let name = r.take(name_len)?.to_vec();
            let tag = r.u8()?;
            let mode = r.u32()?;
            let uid = r.u32()?;
            let gid = r.u32()?;
            let mtime_ns = i64::from_le_bytes(r.array()?);
            let flags = r.u8()?;
            if flags & !(FLAG_LINK | FLAG_XATTRS) != 0 {
                return Err(bad("entry flags"));
            }
            let link_group = if flags & FLAG_LINK != 0 {
                match r.u32()? {
                    0 => return Err(bad("link group")),
                    g => g,
                }
            } else {
                0
            };
            let mut xattrs = Vec::new();
            if flags & FLAG_XATTRS != 0 {
                let n = usize::from(r.u16()?);
                if n == 0 || n > MAX_XATTRS {
                    return Err(bad("xattr count"));
                }
                for _ in 0..n {
                    let name_len = usize::from(r.u8()?);
                    let name = r.take(name_len)?.to_vec();
                    let value_len = r.u32()? as usize;
                    if value_len > MAX_XATTR_VALUE {
                        return Err(bad("xattr value"));
                    }
                    xattrs.push((name, r.take(value_len)?.to_vec()));
                }
            }
            let kind = match tag {
                1 => {
                    let size = u64::from_le_bytes(r.array()?);
                    let n = r.u32()? as usize;
                    if n > r.0.len() / 32 {
                        return Err(bad("chunk list"));
                    }
                    let chunks = (0..n)
                        .map(|_| r.array().map(BlockId::from_bytes))
                        .collect::<Result<_, _>>()?;
                    EntryKind::File { size, chunks }
                }
                2 => EntryKind::Dir {
                    tree: BlockId::from_bytes(r.array()?),
                },
                4 if version >= 3 => EntryKind::Packed {
                    size: u64::from_le_bytes(r.array()?),
                    id: BlockId::from_bytes(r.array()?),
                    pack: BlockId::from_bytes(r.array()?),
                    offset: r.u32()?,
                },
                3 => {
                    let n = usize::from(r.u16()?);
                    EntryKind::Symlink {
                        target: r.take(n)?.to_vec(),
                    }
                }
                _ => return Err(bad("entry type")),
            };
            entries.push(Entry {
                name,
                mode,
                uid,
                gid,
                mtime_ns,
                link_group,
                xattrs,
                kind,
            });
        }
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        let tree = Self { entries };
        tree.check()?;
        Ok(tree)
    }

    fn check(&self) -> Result<(), BackupError> {
        for (i, e) in self.entries.iter().enumerate() {
            if !is_safe_name(&e.name) {
                return Err(BackupError::Malformed("unsafe entry name"));
            }
            if i > 0 && self.entries[i - 1].name >= e.name {
                return Err(BackupError::Malformed("entries not sorted and unique"));
            }
            if e.link_group != 0 && !e.kind.is_file() {
                return Err(BackupError::Malformed("link group on a non-file"));
            }
            if let EntryKind::Packed { size, offset, .. } = e.kind
                && (size == 0
                    || u64::from(offset)
                        .checked_add(size)
                        .is_none_or(|end| end > MAX_PLAINTEXT_LEN as u64))
            {
                return Err(BackupError::Malformed("packed file range"));
            }
            if e.xattrs.len() > MAX_XATTRS {
                return Err(BackupError::Malformed("xattr count"));
            }
            for (j, (name, value)) in e.xattrs.iter().enumerate() {
                if name.is_empty() || name.len() > 255 || name.contains(&0) {
                    return Err(BackupError::Malformed("xattr name"));
                }
                if value.len() > MAX_XATTR_VALUE {
                    return Err(BackupError::Malformed("xattr value"));
                }
                if j > 0 && e.xattrs[j - 1].0 >= *name {
                    return Err(BackupError::Malformed("xattrs not sorted and unique"));
                }
            }
        }
        Ok(())
    }
}

fn kind_tag(kind: &EntryKind) -> (u8, ()) {
    match kind {
        EntryKind::File { .. } => (1, ()),
        EntryKind::Dir { .. } => (2, ()),
        EntryKind::Packed { .. } => (4, ()),
        EntryKind::Symlink { .. } => (3, ()),
    }
}

pub(crate) struct Reader<'a>(pub(crate) &'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], BackupError> {
        if n > self.0.len() {
            return Err(BackupError::Malformed("truncated object"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], BackupError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, BackupError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, BackupError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, BackupError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

pub(crate) use Reader as ObjectReader;
