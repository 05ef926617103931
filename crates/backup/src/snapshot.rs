//! Snapshot records: what was backed up, when, from where; authenticated with the snapshot key.

use cairn_keys::SnapshotKey;
use cairn_seal::BlockId;
use subtle::ConstantTimeEq;

use crate::error::BackupError;
use crate::tree::ObjectReader;

/// Snapshot magic.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"CRNS";
/// Snapshot format version.
pub const SNAPSHOT_VERSION: u8 = 2;
/// Length of the authentication tag.
pub const TAG_LEN: usize = 32;

/// One snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Position in this client's chain of snapshots: 0, 1, 2, …
    pub seq: u64,
    /// The previous snapshot of the chain (none for the first).
    pub parent: Option<BlockId>,
    /// The root tree.
    pub root: BlockId,
    /// When, in nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// The host it was taken on.
    pub host: String,
    /// The paths that were backed up.
    pub paths: Vec<String>,
    /// Free-form tags.
    pub tags: Vec<String>,
    /// How the files were cut into blocks: deduplication works only between snapshots cut by
    /// the same algorithm with the same sizes, so a client continues with its parent's.
    pub chunker: ChunkerRecord,
}

/// The chunker a snapshot's files were cut with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkerRecord {
    /// [`CHUNKER_KEYED_V2`], [`CHUNKER_KEYED_V1`] or [`CHUNKER_UNKEYED_FASTCDC2020`].
    pub algorithm: u8,
    /// Minimum chunk length.
    pub min: u32,
    /// Target average chunk length.
    pub avg: u32,
    /// Maximum chunk length.
    pub max: u32,
}

/// [`ChunkerRecord::algorithm`] of `cairn-chunk`'s `KeyedV1`.
pub const CHUNKER_KEYED_V1: u8 = 1;
/// [`ChunkerRecord::algorithm`] of `cairn-chunk`'s `KeyedV2` (the default).
pub const CHUNKER_KEYED_V2: u8 = 2;
/// [`ChunkerRecord::algorithm`] of the unkeyed FastCDC 2020 comparison mode (never for archives
/// a user keeps, but recorded honestly if a test uses it).
pub const CHUNKER_UNKEYED_FASTCDC2020: u8 = 0xF0;

fn push_str(out: &mut Vec<u8>, s: &str) -> Result<(), BackupError> {
    let n = u16::try_from(s.len()).map_err(|_| BackupError::Malformed("snapshot string"))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn push_list(out: &mut Vec<u8>, list: &[String]) -> Result<(), BackupError> {
    let n = u16::try_from(list.len()).map_err(|_| BackupError::Malformed("snapshot list"))?;
    out.extend_from_slice(&n.to_le_bytes());
    list.iter().try_for_each(|s| push_str(out, s))
}

impl Snapshot {
    /// The encoding followed by `BLAKE3-keyed(snapshot key, encoding)`.
    pub fn encode(&self, key: &SnapshotKey) -> Result<Vec<u8>, BackupError> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&SNAPSHOT_MAGIC);
        out.push(SNAPSHOT_VERSION);
        out.extend_from_slice(&self.seq.to_le_bytes());
        match &self.parent {
            Some(p) => {
                out.push(1);
                out.extend_from_slice(p.as_bytes());
            }
            None => out.push(0),
        }
        out.extend_from_slice(self.root.as_bytes());
        out.extend_from_slice(&self.time_ns.to_le_bytes());
        out.push(self.chunker.algorithm);
        for size in [self.chunker.min, self.chunker.avg, self.chunker.max] {
            out.extend_from_slice(&size.to_le_bytes());
        }
        push_str(&mut out, &self.host)?;
        push_list(&mut out, &self.paths)?;
        push_list(&mut out, &self.tags)?;
        let tag = blake3::keyed_hash(key.expose_secret(), &out);
        out.extend_from_slice(tag.as_bytes());
        Ok(out)
    }

    /// Checks the tag (constant time) before reading anything, then decodes.
    pub fn decode(bytes: &[u8], key: &SnapshotKey) -> Result<Self, BackupError> {
        let body_len = bytes
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(BackupError::SnapshotAuth)?;
        let (body, tag) = bytes.split_at(body_len);
        let want = blake3::keyed_hash(key.expose_secret(), body);
        if !bool::from(want.as_bytes().ct_eq(tag)) {
            return Err(BackupError::SnapshotAuth);
        }
        let bad = BackupError::Malformed;
        let mut r = ObjectReader(body);
        if r.take(4)? != SNAPSHOT_MAGIC || r.u8()? != SNAPSHOT_VERSION {
            return Err(bad("snapshot header"));
        }
        let seq = u64::from_le_bytes(r.array()?);
        let parent = match r.u8()? {
            0 => None,
            1 => Some(BlockId::from_bytes(r.array()?)),
            _ => return Err(bad("snapshot parent")),
        };
        let root = BlockId::from_bytes(r.array()?);
        let time_ns = i64::from_le_bytes(r.array()?);
        let chunker = ChunkerRecord {
            algorithm: r.u8()?,
            min: u32::from_le_bytes(r.array()?),
            avg: u32::from_le_bytes(r.array()?),
            max: u32::from_le_bytes(r.array()?),
        };
        let string = |r: &mut ObjectReader<'_>| -> Result<String, BackupError> {
            let n = usize::from(r.u16()?);
            String::from_utf8(r.take(n)?.to_vec()).map_err(|_| bad("snapshot string"))
        };
        let host = string(&mut r)?;
        let list = |r: &mut ObjectReader<'_>| -> Result<Vec<String>, BackupError> {
            let n = usize::from(r.u16()?);
            (0..n).map(|_| string(r)).collect()
        };
        let paths = list(&mut r)?;
        let tags = list(&mut r)?;
        if !r.0.is_empty() {
            return Err(bad("trailing bytes"));
        }
        Ok(Self {
            seq,
            parent,
            root,
            time_ns,
            host,
            paths,
            tags,
            chunker,
        })
    }
}
