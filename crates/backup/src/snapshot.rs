//! Snapshot records: what was backed up, when, from where; authenticated with the snapshot key.

use cairn_keys::SnapshotKey;
use cairn_seal::BlockId;
use subtle::ConstantTimeEq;

use crate::error::BackupError;
use crate::tree::ObjectReader;
use crate::warning::{MAX_RECORDED_WARNINGS, Warning, WarningKind};

/// Snapshot magic.
pub const SNAPSHOT_MAGIC: [u8; 4] = *b"CRNS";
/// Snapshot format version written: 3 adds the backup's warnings.
pub const SNAPSHOT_VERSION: u8 = 3;
/// The oldest snapshot version read (2: no warnings field).
pub const SNAPSHOT_VERSION_MIN: u8 = 2;
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
    /// How many warnings the backup had ([`crate::Warning`]: entries skipped, files that
    /// changed while read, special files), exact.
    pub warnings_total: u64,
    /// The first [`MAX_RECORDED_WARNINGS`] of them.
    pub warnings: Vec<Warning>,
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
    push_bytes(out, s.as_bytes())
}

fn push_list(out: &mut Vec<u8>, list: &[String]) -> Result<(), BackupError> {
    let n = u16::try_from(list.len()).map_err(|_| BackupError::Malformed("snapshot list"))?;
    out.extend_from_slice(&n.to_le_bytes());
    list.iter().try_for_each(|s| push_str(out, s))
}

fn push_bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), BackupError> {
    let n = u16::try_from(b.len()).map_err(|_| BackupError::Malformed("snapshot string"))?;
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b);
    Ok(())
}

#[cfg(unix)]
fn path_bytes(p: &std::path::Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

#[cfg(not(unix))]
fn path_bytes(p: &std::path::Path) -> Vec<u8> {
    p.to_string_lossy().into_owned().into_bytes()
}

#[cfg(unix)]
fn path_of(b: &[u8]) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b).into()
}

#[cfg(not(unix))]
fn path_of(b: &[u8]) -> std::path::PathBuf {
    String::from_utf8_lossy(b).into_owned().into()
}

/// A detail cut to at most `max` bytes on a character boundary (a person's text, not data).
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest detail text a record keeps of one warning.
const MAX_DETAIL: usize = 512;

impl Snapshot {
    /// Whether the backup completed with warnings (anything but special files noted).
    #[must_use]
    pub fn has_warnings(&self) -> bool {
        self.warnings.iter().any(|w| w.kind.is_warning())
            || self.warnings_total > self.warnings.len() as u64
    }

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
        let listed = u16::try_from(self.warnings.len())
            .ok()
            .filter(|&n| usize::from(n) <= MAX_RECORDED_WARNINGS)
            .filter(|&n| self.warnings_total >= u64::from(n))
            .ok_or(BackupError::Malformed("snapshot warnings"))?;
        out.extend_from_slice(&self.warnings_total.to_le_bytes());
        out.extend_from_slice(&listed.to_le_bytes());
        for w in &self.warnings {
            out.push(w.kind.code());
            push_bytes(&mut out, &path_bytes(&w.path))?;
            push_str(&mut out, cut(&w.detail, MAX_DETAIL))?;
        }
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
        if r.take(4)? != SNAPSHOT_MAGIC {
            return Err(bad("snapshot header"));
        }
        let version = r.u8()?;
        if !(SNAPSHOT_VERSION_MIN..=SNAPSHOT_VERSION).contains(&version) {
            return Err(bad("snapshot version"));
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
        let (mut warnings_total, mut warnings) = (0, Vec::new());
        if version >= 3 {
            warnings_total = u64::from_le_bytes(r.array()?);
            let n = usize::from(r.u16()?);
            if n > MAX_RECORDED_WARNINGS || warnings_total < n as u64 {
                return Err(bad("snapshot warnings"));
            }
            for _ in 0..n {
                let kind = WarningKind::from_code(r.u8()?);
                let len = usize::from(r.u16()?);
                let path = path_of(r.take(len)?);
                let detail = string(&mut r)?;
                if detail.len() > MAX_DETAIL {
                    // The encoder cuts details there: a longer one has no canonical encoding.
                    return Err(bad("snapshot warnings"));
                }
                warnings.push(Warning { kind, path, detail });
            }
        }
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
            warnings_total,
            warnings,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn key() -> SnapshotKey {
        cairn_keys::ArchiveKey::from_bytes([7; 32]).snapshot_key()
    }

    fn record(warnings: Vec<Warning>, total: u64) -> Snapshot {
        Snapshot {
            seq: 4,
            parent: Some(BlockId::from_bytes([1; 32])),
            root: BlockId::from_bytes([2; 32]),
            time_ns: 1_700_000_000_000_000_000,
            host: "h".into(),
            paths: vec!["/home/ana".into()],
            tags: vec![],
            chunker: ChunkerRecord {
                algorithm: CHUNKER_KEYED_V1,
                min: 1024,
                avg: 4096,
                max: 16384,
            },
            warnings_total: total,
            warnings,
        }
    }

    /// Re-tags `body` (a record without its tag) under `key()`.
    fn tagged(mut body: Vec<u8>) -> Vec<u8> {
        let tag = blake3::keyed_hash(key().expose_secret(), &body);
        body.extend_from_slice(tag.as_bytes());
        body
    }

    #[test]
    fn warnings_round_trip_with_any_path_bytes_and_unknown_kinds() {
        #[cfg(unix)]
        let odd: std::path::PathBuf = {
            use std::os::unix::ffi::OsStrExt;
            std::ffi::OsStr::from_bytes(b"/home/ana/\xff\xfe.bin").into()
        };
        #[cfg(not(unix))]
        let odd = std::path::PathBuf::from("/home/ana/odd.bin");
        let warnings = vec![
            Warning::new(
                WarningKind::Unreadable,
                odd,
                "Permission denied (os error 13)",
            ),
            Warning::new(WarningKind::ChangedWhileRead, "/home/ana/log", "changed"),
            Warning::new(
                WarningKind::SpecialFile,
                "/home/ana/fifo",
                "FIFO: not backed up",
            ),
            Warning::new(WarningKind::Other(200), "/x", ""),
        ];
        let snap = record(warnings, 1_000_000);
        let back = Snapshot::decode(&snap.encode(&key()).unwrap(), &key()).unwrap();
        assert_eq!(back, snap);
        assert!(back.has_warnings());
        // A long detail is cut on a character boundary, not refused.
        let long = record(
            vec![Warning::new(
                WarningKind::Unreadable,
                "/a",
                "é".repeat(1000),
            )],
            1,
        );
        let back = Snapshot::decode(&long.encode(&key()).unwrap(), &key()).unwrap();
        assert_eq!(back.warnings[0].detail, "é".repeat(256));
    }

    #[test]
    fn a_version_2_record_reads_as_one_without_warnings() {
        let snap = record(Vec::new(), 0);
        let mut body = snap.encode(&key()).unwrap();
        body.truncate(body.len() - TAG_LEN);
        // Version 3 adds total u64 | count u16 after the tags.
        body.truncate(body.len() - 10);
        body[4] = 2;
        let back = Snapshot::decode(&tagged(body.clone()), &key()).unwrap();
        assert_eq!(back, snap);
        assert!(!back.has_warnings());
        for version in [1, 4] {
            body[4] = version;
            assert!(matches!(
                Snapshot::decode(&tagged(body.clone()), &key()),
                Err(BackupError::Malformed("snapshot version"))
            ));
        }
    }

    #[test]
    fn a_warning_count_above_the_total_or_the_limit_is_refused() {
        let one = || Warning::new(WarningKind::Unreadable, "/a", "x");
        assert!(record(vec![one()], 0).encode(&key()).is_err());
        assert!(
            record(vec![one(); MAX_RECORDED_WARNINGS + 1], u64::MAX)
                .encode(&key())
                .is_err()
        );
        // Written by hand: count 1 over a total of 0.
        let mut body = record(vec![one()], 1).encode(&key()).unwrap();
        body.truncate(body.len() - TAG_LEN);
        let at = body.len() - (1 + 2 + 2 + 2 + 1) - 10;
        body[at..at + 8].copy_from_slice(&0u64.to_le_bytes());
        assert!(matches!(
            Snapshot::decode(&tagged(body), &key()),
            Err(BackupError::Malformed("snapshot warnings"))
        ));
    }

    #[test]
    fn a_detail_longer_than_the_encoder_writes_is_refused() {
        // Found by the backup_objects fuzz target's canonical-encoding check: the encoder cuts a
        // detail to MAX_DETAIL bytes, so a longer one decoded would re-encode differently.
        let snap = record(vec![Warning::new(WarningKind::Unreadable, "/a", "x")], 1);
        let mut body = snap.encode(&key()).unwrap();
        body.truncate(body.len() - TAG_LEN);
        // The record ends with the detail: length u16, then its bytes.
        body.truncate(body.len() - 3);
        let long = MAX_DETAIL + 1;
        body.extend_from_slice(&u16::try_from(long).unwrap().to_le_bytes());
        body.extend(std::iter::repeat_n(b'x', long));
        assert!(matches!(
            Snapshot::decode(&tagged(body), &key()),
            Err(BackupError::Malformed("snapshot warnings"))
        ));
    }
}
