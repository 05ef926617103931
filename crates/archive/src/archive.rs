//! The archive: open (with recovery), append, commit (group commit), seal, look up, read.

use std::collections::{BTreeMap, HashMap};

use crate::error::{ArchiveError, FormatError};
use crate::format::{
    COMMIT_PAYLOAD_LEN, ELIDED_PAYLOAD_LEN, ElidedPayload, INDEX_ENTRY_LEN, IndexEntry,
    KIND_COMMIT, Key, MAX_PAYLOAD_LEN, RECORD_HEADER_LEN, RECORD_OVERHEAD, RESERVED_KINDS,
    RecordHeader, SEGMENT_HEADER_LEN, SegmentHeader, TRAILER_LEN, Trailer, chain_link, chain_start,
    decode_index, decode_record, record_crc,
};
use crate::index::{MAX_SEALED_SEGMENTS, SealedIndex};
use crate::storage::{SegmentWriter, Storage};

/// Smallest segment target size.
pub const MIN_SEGMENT_TARGET: u64 = 4 << 10;
/// Largest segment target size.
pub const MAX_SEGMENT_TARGET: u64 = 4 << 30;
/// Default segment target size: 64 MiB, a good object-store object.
pub const DEFAULT_SEGMENT_TARGET: u64 = 64 << 20;
const COMMIT_PAYLOAD_LEN_U32: u32 = 8;
const _: () = assert!(COMMIT_PAYLOAD_LEN_U32 as usize == COMMIT_PAYLOAD_LEN);
const ELIDED_PAYLOAD_LEN_U32: u32 = 36;
const _: () = assert!(ELIDED_PAYLOAD_LEN_U32 as usize == ELIDED_PAYLOAD_LEN);
/// Writes smaller than this are gathered in memory before reaching storage.
const WRITE_BUFFER: usize = 1 << 20;

/// How an archive is laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    archive_id: [u8; 16],
    segment_target: u64,
    cache_sealed_indexes: bool,
}

impl Config {
    /// An archive with the default segment size.
    pub fn new(archive_id: [u8; 16]) -> Self {
        Self {
            archive_id,
            segment_target: DEFAULT_SEGMENT_TARGET,
            cache_sealed_indexes: false,
        }
    }

    /// Keep each sealed segment's index in memory once it has been searched (48 bytes per
    /// record of the segments searched, instead of one read per binary-search step). Off by
    /// default, which bounds memory at 8 bytes per record however large the archive; a client
    /// restoring or checking its own archive turns it on.
    #[must_use]
    pub fn with_index_cache(mut self, on: bool) -> Self {
        self.cache_sealed_indexes = on;
        self
    }

    /// Seal a segment once a commit leaves it at least this long (4 KiB ..= 4 GiB).
    pub fn with_segment_target(mut self, bytes: u64) -> Result<Self, ArchiveError> {
        if !(MIN_SEGMENT_TARGET..=MAX_SEGMENT_TARGET).contains(&bytes) {
            return Err(ArchiveError::Config(
                "segment target must be 4 KiB ..= 4 GiB",
            ));
        }
        self.segment_target = bytes;
        Ok(self)
    }

    /// The archive id.
    pub fn archive_id(&self) -> [u8; 16] {
        self.archive_id
    }
}

/// Where a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// Segment number.
    pub segment: u64,
    /// Offset of the record in the segment.
    pub offset: u64,
    /// Payload length.
    pub len: u32,
    /// Record kind.
    pub kind: u8,
    /// The record was elided by a compaction ([`Archive::compact`]): only its length and digest
    /// are left, and reading it is [`ArchiveError::Elided`].
    pub elided: bool,
}

/// What a commit made durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Sequence number of the commit record; every record before it is durable.
    pub seq: u64,
    /// The hash-chain head over every data record so far (what a client remembers, B-8).
    pub chain_head: [u8; 32],
    /// Data records in the archive.
    pub data_records: u64,
}

/// What [`Archive::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes cut from the end of the active segment (a torn or garbage tail, or records written
    /// but never committed).
    pub truncated_bytes: u64,
    /// Whole records among them (written, not committed, so never acknowledged).
    pub dropped_records: u64,
    /// An active segment with a partial header was removed (it held nothing committed). An
    /// empty one, the normal state right after a seal, is replaced without being reported.
    pub removed_empty_segment: bool,
    /// Sealed segments whose trailer or index was damaged; their records were indexed by
    /// scanning instead (run `verify`).
    pub rescanned_segments: Vec<u64>,
    /// Sealed segments whose header is damaged (their records are still indexed).
    pub damaged_headers: Vec<u64>,
    /// Superseded generations of compacted segments, and unfinished ones, that were removed:
    /// what a crash during a compaction leaves (`docs/format/archive.md`, "Compaction").
    pub removed_generations: Vec<String>,
    /// Superseded generations kept because the newest generation of their segment is damaged
    /// (its trailer or header): they are not read, but they are not removed either.
    pub kept_generations: Vec<String>,
}

/// A compaction published and not yet finished ([`Archive::prepare_compaction`]).
#[derive(Debug)]
pub struct PreparedCompaction {
    done: Compaction,
    from_generation: u32,
    next: Option<Box<Sealed>>,
}

impl PreparedCompaction {
    /// What the compaction does once finished.
    #[must_use]
    pub fn compaction(&self) -> &Compaction {
        &self.done
    }
}

/// What [`Archive::compact`] did to one sealed segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Compaction {
    /// The segment's number.
    pub segment: u64,
    /// Its generation now (unchanged when nothing was elided).
    pub generation: u32,
    /// Records this compaction elided.
    pub elided: u64,
    /// The segment's length before.
    pub bytes_before: u64,
    /// Its length after.
    pub bytes_after: u64,
}

#[derive(Debug)]
struct Sealed {
    seq: u64,
    generation: u32,
    /// Where the log stood before the segment's first record: sequence number, chain head and
    /// data records (what a scan of the segment starts from).
    first_seq: u64,
    chain_in: [u8; 32],
    data_in: u64,
    name: String,
    index_offset: u64,
    index_count: u64,
    /// Entries kept in memory only for segments whose on-disk index is damaged.
    rescued: Option<Vec<IndexEntry>>,
    /// The on-disk index, read whole on first use, when the config caches indexes.
    cached: std::sync::OnceLock<Vec<IndexEntry>>,
}

struct Active<W> {
    seq: u64,
    name: String,
    writer: W,
    /// Bytes in the segment, counting the unflushed buffer.
    len: u64,
    /// Bytes not yet handed to the writer.
    buffer: Vec<u8>,
    first_seq: u64,
    chain_in: [u8; 32],
    data_in: u64,
    entries: Vec<IndexEntry>,
    by_key: HashMap<Key, usize>,
}

/// An append-only log of records in segments over a [`Storage`].
pub struct Archive<S: Storage> {
    storage: S,
    config: Config,
    sealed: Vec<Sealed>,
    index: SealedIndex,
    active: Active<S::Writer>,
    next_seq: u64,
    chain: [u8; 32],
    data_records: u64,
    last_commit: Commit,
    /// Length of the active segment at the last commit.
    committed_len: u64,
    dirty: bool,
    poisoned: bool,
}

/// The storage name of segment `seq`, sealed or active.
pub fn segment_name(seq: u64, active: bool) -> String {
    if active {
        format!("seg-{seq:016x}.active")
    } else {
        format!("seg-{seq:016x}")
    }
}

/// The storage name of generation `generation` of sealed segment `seq`: `seg-<16 hex>` for
/// generation 0 (as the log wrote it), `seg-<16 hex>.g<generation>` after compactions.
pub fn generation_name(seq: u64, generation: u32) -> String {
    if generation == 0 {
        segment_name(seq, false)
    } else {
        format!("seg-{seq:016x}.g{generation}")
    }
}

/// A storage name the log owns.
#[derive(Debug, PartialEq, Eq)]
enum Name {
    /// A sealed segment's generation.
    Sealed(u64, u32),
    /// The active segment.
    Active(u64),
    /// A compacted generation whose publication did not finish (`<generation name>.tmp`).
    Unfinished,
}

fn parse_name(name: &str) -> Option<Name> {
    let rest = name.strip_prefix("seg-")?;
    let hex = rest.get(..16)?;
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let seq = u64::from_str_radix(hex, 16).ok()?;
    let suffix = &rest[16..];
    if suffix.is_empty() {
        return Some(Name::Sealed(seq, 0));
    }
    if suffix == ".active" {
        return Some(Name::Active(seq));
    }
    let (digits, unfinished) = match suffix.strip_prefix(".g")?.strip_suffix(".tmp") {
        Some(d) => (d, true),
        None => (suffix.strip_prefix(".g")?, false),
    };
    // Decimal, no sign, no leading zero, at least 1.
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let generation: u32 = digits.parse().ok()?;
    Some(if unfinished {
        Name::Unfinished
    } else {
        Name::Sealed(seq, generation)
    })
}

fn corrupt(segment: u64, offset: u64, reason: &'static str) -> ArchiveError {
    ArchiveError::Corrupt {
        segment,
        offset,
        reason,
    }
}

fn to_usize(x: u64) -> Result<usize, ArchiveError> {
    usize::try_from(x).map_err(|_| ArchiveError::Config("size exceeds the address space"))
}

/// The result of scanning a segment's records from the header on.
pub(crate) struct Scan {
    /// Data-record entries up to the last commit.
    pub(crate) entries: Vec<IndexEntry>,
    /// End of the last commit record.
    pub(crate) committed_end: u64,
    /// Chain head at the last commit.
    pub(crate) chain: [u8; 32],
    /// Data records in the archive at the last commit.
    pub(crate) data_records: u64,
    /// Next sequence number after the last commit.
    pub(crate) next_seq: u64,
    /// Records after the last commit (complete ones).
    pub(crate) uncommitted_records: u64,
    /// Where scanning stopped, and why, if not at the end.
    pub(crate) stopped: Option<(u64, &'static str)>,
    /// Whether a plausible record exists beyond the stop (so the stop is damage, not a tail).
    pub(crate) records_after_stop: bool,
}

/// Scans `bytes` (a whole segment) from the header on, checking sequence numbers, the chain
/// at every commit, and commit counts.
///
/// `compacted` (format version 2) allows elided records; in a version 1 segment one stops the
/// scan.
pub(crate) fn scan_segment(
    bytes: &[u8],
    (first_seq, chain, data_records): (u64, [u8; 32], u64),
    limit: usize,
    compacted: bool,
) -> Scan {
    let mut s = Scan {
        entries: Vec::new(),
        committed_end: SEGMENT_HEADER_LEN as u64,
        chain,
        data_records,
        next_seq: first_seq,
        uncommitted_records: 0,
        stopped: None,
        records_after_stop: false,
    };
    let mut pos = SEGMENT_HEADER_LEN;
    let mut chain = chain;
    let mut data = data_records;
    let mut seq = first_seq;
    let mut pending: Vec<IndexEntry> = Vec::new();
    let end = limit.min(bytes.len());
    while pos < end {
        let (header, payload) = match decode_record(&bytes[pos..end]) {
            Ok(r) => r,
            Err(e) => {
                s.stopped = Some((pos as u64, format_reason(e)));
                break;
            }
        };
        if header.seq != seq {
            s.stopped = Some((pos as u64, "sequence number out of order"));
            break;
        }
        let framed = header.framed_len();
        if header.kind == KIND_COMMIT {
            let ok_payload = payload.len() == COMMIT_PAYLOAD_LEN
                && u64::from_le_bytes(payload.try_into().unwrap_or([0; 8])) == data;
            if header.key != chain || !ok_payload {
                s.stopped = Some((pos as u64, "commit does not match the chain"));
                break;
            }
            s.entries.append(&mut pending);
            s.committed_end = (pos + framed) as u64;
            s.chain = chain;
            s.data_records = data;
            s.next_seq = seq + 1;
            s.uncommitted_records = 0;
        } else if header.kind >= RESERVED_KINDS {
            s.stopped = Some((pos as u64, "reserved record kind"));
            break;
        } else {
            if header.elided && !compacted {
                s.stopped = Some((pos as u64, "elided record in a version 1 segment"));
                break;
            }
            let Ok((hb, hash)) = header.chain_input(payload) else {
                s.stopped = Some((pos as u64, "elided record's payload"));
                break;
            };
            chain = chain_link(&chain, &hb, &hash);
            data += 1;
            pending.push(IndexEntry {
                key: header.key,
                offset: pos as u64,
                len: header.len,
                kind: header.kind,
                elided: header.elided,
            });
            s.uncommitted_records += 1;
        }
        seq += 1;
        pos += framed;
    }
    if let Some((at, _)) = s.stopped {
        s.records_after_stop = plausible_record_after(bytes, to_usize_lossy(at) + 1, end, seq);
    }
    s
}

fn to_usize_lossy(x: u64) -> usize {
    usize::try_from(x).unwrap_or(usize::MAX)
}

fn format_reason(e: FormatError) -> &'static str {
    match e {
        FormatError::Truncated => "record runs past the end",
        FormatError::Checksum => "record checksum mismatch",
        FormatError::Length => "record length out of range",
        FormatError::Reserved => "record reserved bits set",
        FormatError::Magic | FormatError::Version => "bad record",
    }
}

/// Whether any complete, checksummed record with a sequence number at or after `min_seq`
/// starts in `bytes[from..end]`: if so, a stop before it is damage in the middle of the log, not
/// a torn tail, and must not be truncated away.
fn plausible_record_after(bytes: &[u8], from: usize, end: usize, min_seq: u64) -> bool {
    let mut p = from;
    while p + RECORD_OVERHEAD <= end {
        let plausible = RecordHeader::decode(&bytes[p..end])
            .is_ok_and(|h| h.seq >= min_seq && h.seq < min_seq.saturating_add(1 << 32));
        if plausible && decode_record(&bytes[p..end]).is_ok() {
            return true;
        }
        p += 1;
    }
    false
}

impl<S: Storage> Archive<S> {
    /// Opens (or creates) the archive in `storage`, running recovery: a torn or garbage tail of
    /// the active segment is cut back to its last commit and reported; damage anywhere else is
    /// an error, never silently cut.
    pub fn open(storage: S, config: Config) -> Result<(Self, Recovery), ArchiveError> {
        let mut recovery = Recovery::default();
        // Every generation of each sealed segment, lowest first.
        let mut generations: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        let mut active_seqs = Vec::new();
        for name in storage.list()? {
            match parse_name(&name) {
                Some(Name::Sealed(seq, generation)) => {
                    generations.entry(seq).or_default().push(generation);
                }
                Some(Name::Active(seq)) => active_seqs.push(seq),
                Some(Name::Unfinished) => {
                    // A compaction that crashed before publishing: the old generation is whole.
                    storage.remove(&name)?;
                    recovery.removed_generations.push(name);
                }
                None => {}
            }
        }
        active_seqs.sort_unstable();
        let mut index = SealedIndex::default();
        let mut sealed = Vec::with_capacity(generations.len());
        let mut next_seq = 0u64;
        let mut chain = chain_start(&config.archive_id);
        let mut data_records = 0u64;
        for (slot, (&seq, found)) in generations.iter_mut().enumerate() {
            if seq != slot as u64 {
                return Err(corrupt(slot as u64, 0, "missing sealed segment"));
            }
            if seq >= MAX_SEALED_SEGMENTS {
                return Err(ArchiveError::Config("too many sealed segments"));
            }
            found.sort_unstable();
            // The highest generation is the segment; the others are what a compaction's crash
            // between its publication and its removal of the old one leaves.
            let generation = found.pop().unwrap_or(0);
            let name = generation_name(seq, generation);
            let (before_damage, before_rescans) = (
                recovery.damaged_headers.len(),
                recovery.rescanned_segments.len(),
            );
            let start = (next_seq, chain, data_records);
            let s = open_sealed(
                &storage,
                &config,
                (seq, generation),
                &name,
                start,
                &mut recovery,
            )?;
            let whole = recovery.damaged_headers.len() == before_damage
                && recovery.rescanned_segments.len() == before_rescans;
            for &old in found.iter() {
                let old = generation_name(seq, old);
                if whole {
                    storage.remove(&old)?;
                    recovery.removed_generations.push(old);
                } else {
                    recovery.kept_generations.push(old);
                }
            }
            next_seq = s.last_seq + 1;
            chain = s.chain;
            data_records = s.data_records;
            index.insert(seq, s.entries.iter().map(|e| e.key));
            sealed.push(Sealed {
                seq,
                generation,
                first_seq: start.0,
                chain_in: start.1,
                data_in: start.2,
                name,
                index_offset: s.index_offset,
                index_count: s.entries.len() as u64,
                rescued: s.rescued.then_some(s.entries),
                cached: std::sync::OnceLock::new(),
            });
        }
        let active_seq = sealed.len() as u64;
        if active_seqs.iter().any(|&s| s != active_seq) || active_seqs.len() > 1 {
            return Err(corrupt(active_seq, 0, "unexpected active segment"));
        }
        let name = segment_name(active_seq, true);
        let mut active = None;
        if !active_seqs.is_empty() {
            let len = to_usize(storage.len(&name)?)?;
            let mut bytes = vec![0u8; len];
            storage.read_at(&name, 0, &mut bytes)?;
            match SegmentHeader::decode(&bytes) {
                Ok(h)
                    if h.archive_id == config.archive_id
                        && h.segment_seq == active_seq
                        && h.first_record_seq == next_seq =>
                {
                    let first_seq = h.first_record_seq;
                    let start = (next_seq, chain, data_records);
                    let scan = scan_segment(&bytes, start, len, false);
                    if scan.stopped.is_some() && scan.records_after_stop {
                        let (at, why) = scan.stopped.unwrap_or((0, ""));
                        return Err(corrupt(active_seq, at, why));
                    }
                    if scan.committed_end < len as u64 {
                        recovery.truncated_bytes = len as u64 - scan.committed_end;
                        recovery.dropped_records = scan.uncommitted_records;
                        storage.truncate(&name, scan.committed_end)?;
                    }
                    let writer = storage.append(&name)?;
                    let by_key = scan
                        .entries
                        .iter()
                        .enumerate()
                        .map(|(i, e)| (e.key, i))
                        .collect();
                    next_seq = scan.next_seq;
                    chain = scan.chain;
                    data_records = scan.data_records;
                    active = Some(Active {
                        seq: active_seq,
                        name: name.clone(),
                        writer,
                        len: scan.committed_end,
                        buffer: Vec::new(),
                        first_seq,
                        chain_in: start.1,
                        data_in: start.2,
                        entries: scan.entries,
                        by_key,
                    });
                }
                Ok(_) => return Err(corrupt(active_seq, 0, "active segment belongs elsewhere")),
                Err(_) => {
                    // A header that never became durable: nothing after it can have been
                    // committed. Unless something committed-looking follows, remove the file.
                    if plausible_record_after(&bytes, 0, bytes.len(), next_seq) {
                        return Err(corrupt(
                            active_seq,
                            0,
                            "damaged header before committed records",
                        ));
                    }
                    storage.remove(&name)?;
                    // An empty file is the normal state right after a seal (its header goes out
                    // with the first batch); only a partial header is worth reporting.
                    recovery.removed_empty_segment = !bytes.is_empty();
                }
            }
        }
        let active = match active {
            Some(a) => a,
            None => new_active(
                &storage,
                &config,
                active_seq,
                (next_seq, chain, data_records),
            )?,
        };
        let last_commit = Commit {
            seq: next_seq.saturating_sub(1),
            chain_head: chain,
            data_records,
        };
        let committed_len = active.len;
        let archive = Self {
            committed_len,
            storage,
            config,
            sealed,
            index,
            active,
            next_seq,
            chain,
            data_records,
            last_commit,
            dirty: false,
            poisoned: false,
        };
        Ok((archive, recovery))
    }

    /// Appends a record (not yet durable: call [`Archive::commit`]). `kind` must be below
    /// 0xF0; the payload is opaque, at most [`MAX_PAYLOAD_LEN`] bytes.
    pub fn append(
        &mut self,
        kind: u8,
        key: &Key,
        payload: &[u8],
    ) -> Result<Location, ArchiveError> {
        let header = self.next_header(kind, key, payload.len())?;
        let hb = header.encode();
        let offset = self.active.len;
        let payload_hash = if payload.len() >= WRITE_BUFFER / 4 {
            self.write_large_record(&hb, payload)?
        } else {
            self.write_record(&hb, payload)?;
            blake3::hash(payload)
        };
        Ok(self.record_appended(&header, &hb, offset, &payload_hash))
    }

    /// Checks an append's arguments and the handle's state, and builds the record's header.
    fn next_header(
        &self,
        kind: u8,
        key: &Key,
        payload_len: usize,
    ) -> Result<RecordHeader, ArchiveError> {
        if self.poisoned {
            return Err(ArchiveError::Poisoned);
        }
        if kind >= RESERVED_KINDS {
            return Err(ArchiveError::ReservedKind);
        }
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(ArchiveError::PayloadTooLarge);
        }
        let len = u32::try_from(payload_len).map_err(|_| ArchiveError::PayloadTooLarge)?;
        Ok(RecordHeader {
            len,
            kind,
            seq: self.next_seq,
            key: *key,
            elided: false,
        })
    }

    /// The bookkeeping after a data record's bytes were handed to storage: chain, counters and
    /// the active segment's index.
    fn record_appended(
        &mut self,
        header: &RecordHeader,
        hb: &[u8; RECORD_HEADER_LEN],
        offset: u64,
        payload_hash: &blake3::Hash,
    ) -> Location {
        self.chain = chain_link(&self.chain, hb, payload_hash);
        self.data_records += 1;
        self.next_seq += 1;
        self.dirty = true;
        let entry = IndexEntry {
            key: header.key,
            offset,
            len: header.len,
            kind: header.kind,
            elided: false,
        };
        self.active
            .by_key
            .insert(header.key, self.active.entries.len());
        self.active.entries.push(entry);
        Location {
            segment: self.active.seq,
            offset,
            len: header.len,
            kind: header.kind,
            elided: false,
        }
    }

    /// A large record: its checksum and hash are computed on a second (scoped) thread while
    /// this one hands the header and payload to storage, so hashing overlaps the write.
    fn write_large_record(
        &mut self,
        hb: &[u8; RECORD_HEADER_LEN],
        payload: &[u8],
    ) -> Result<blake3::Hash, ArchiveError> {
        let checks = || (record_crc(hb, payload), blake3::hash(payload));
        let a = &mut self.active;
        a.buffer.extend_from_slice(hb);
        let (written, (crc, hash)) = std::thread::scope(|scope| {
            let worker = scope.spawn(checks);
            let written = a.writer.write_all_vectored(&[&a.buffer, payload]);
            // A worker that panicked (it cannot: pure functions) is redone here.
            (written, worker.join().unwrap_or_else(|_| checks()))
        });
        if let Err(e) = written {
            self.poisoned = true;
            return Err(e.into());
        }
        let a = &mut self.active;
        a.buffer.clear();
        a.buffer.extend_from_slice(&crc.to_le_bytes());
        a.len += (RECORD_OVERHEAD + payload.len()) as u64;
        Ok(hash)
    }

    /// [`Archive::append`] for a payload the caller hands over: a storage that keeps bytes in
    /// memory stores it without copying (the server appends upload bodies this way).
    pub fn append_owned(
        &mut self,
        kind: u8,
        key: &Key,
        payload: Vec<u8>,
    ) -> Result<Location, ArchiveError> {
        if payload.len() < WRITE_BUFFER / 4 {
            return self.append(kind, key, &payload);
        }
        let header = self.next_header(kind, key, payload.len())?;
        let hb = header.encode();
        let offset = self.active.len;
        let crc = record_crc(&hb, &payload);
        let payload_hash = blake3::hash(&payload);
        let payload_len = payload.len();
        let a = &mut self.active;
        a.buffer.extend_from_slice(&hb);
        if let Err(e) = a.writer.write_all_owned(&a.buffer, payload) {
            self.poisoned = true;
            return Err(e.into());
        }
        a.buffer.clear();
        a.buffer.extend_from_slice(&crc.to_le_bytes());
        a.len += (RECORD_OVERHEAD + payload_len) as u64;
        Ok(self.record_appended(&header, &hb, offset, &payload_hash))
    }

    fn write_record(
        &mut self,
        hb: &[u8; RECORD_HEADER_LEN],
        payload: &[u8],
    ) -> Result<(), ArchiveError> {
        let crc = record_crc(hb, payload).to_le_bytes();
        let a = &mut self.active;
        a.buffer.extend_from_slice(hb);
        a.buffer.extend_from_slice(payload);
        a.buffer.extend_from_slice(&crc);
        a.len += (RECORD_OVERHEAD + payload.len()) as u64;
        if a.buffer.len() >= WRITE_BUFFER
            && let Err(e) = flush(&mut a.writer, &mut a.buffer)
        {
            self.poisoned = true;
            return Err(e);
        }
        Ok(())
    }

    /// Bytes appended (records and their framing) since the last commit: what the next
    /// [`Archive::commit`] makes durable. A writer that commits in groups uses it to bound how
    /// much an interruption loses.
    pub fn uncommitted_bytes(&self) -> u64 {
        self.active.len - self.committed_len
    }

    /// Makes every appended record durable (one commit record, one sync: group commit) and
    /// returns what a client should remember. Only after `Ok` is anything acknowledged. A
    /// failure poisons this handle: nothing more is appended or acknowledged until the archive
    /// is reopened (B-11).
    pub fn commit(&mut self) -> Result<Commit, ArchiveError> {
        if self.poisoned {
            return Err(ArchiveError::Poisoned);
        }
        if !self.dirty {
            return Ok(self.last_commit);
        }
        let header = RecordHeader {
            len: COMMIT_PAYLOAD_LEN_U32,
            kind: KIND_COMMIT,
            seq: self.next_seq,
            key: self.chain,
            elided: false,
        };
        let payload = self.data_records.to_le_bytes();
        let mut footer = None;
        let result = self
            .write_record(&header.encode(), &payload)
            .and_then(|()| {
                // A segment this commit fills is sealed now: its footer goes out with the commit,
                // under the same sync.
                if self.active.len >= self.config.segment_target {
                    let (bytes, entries, index_offset) = self.footer(self.next_seq);
                    self.active.buffer.extend_from_slice(&bytes);
                    footer = Some((entries, index_offset));
                }
                let a = &mut self.active;
                flush(&mut a.writer, &mut a.buffer)?;
                a.writer.sync().map_err(ArchiveError::from)
            });
        if let Err(e) = result {
            self.poisoned = true;
            return Err(e);
        }
        let commit = Commit {
            seq: self.next_seq,
            chain_head: self.chain,
            data_records: self.data_records,
        };
        self.next_seq += 1;
        self.last_commit = commit;
        self.committed_len = self.active.len;
        self.dirty = false;
        if let Some((entries, index_offset)) = footer
            && let Err(e) = self.publish(entries, index_offset)
        {
            self.poisoned = true;
            return Err(e);
        }
        Ok(commit)
    }

    /// The sorted index and the trailer of the active segment, to follow its last commit
    /// (sequence number `last_seq`).
    fn footer(&self, last_seq: u64) -> (Vec<u8>, Vec<IndexEntry>, u64) {
        let mut entries = self.active.entries.clone();
        entries.sort_unstable();
        let index_offset = self.active.len;
        let mut footer = Vec::with_capacity(entries.len() * INDEX_ENTRY_LEN + TRAILER_LEN);
        for e in &entries {
            footer.extend_from_slice(&e.encode());
        }
        let trailer = Trailer {
            index_offset,
            index_count: entries.len() as u64,
            first_seq: self.active.first_seq,
            last_seq,
            chain_head: self.chain,
            index_crc: crc32c::crc32c(&footer),
        };
        footer.extend_from_slice(&trailer.encode());
        (footer, entries, index_offset)
    }

    /// Publishes the active segment (its footer already synced) under its sealed name, and
    /// starts the next one.
    fn publish(&mut self, entries: Vec<IndexEntry>, index_offset: u64) -> Result<(), ArchiveError> {
        let seq = self.active.seq;
        let sealed_name = segment_name(seq, false);
        self.storage.seal(&self.active.name, &sealed_name)?;
        self.index.insert(seq, entries.iter().map(|e| e.key));
        let cached = std::sync::OnceLock::new();
        let index_count = entries.len() as u64;
        if self.config.cache_sealed_indexes {
            let _ = cached.set(entries);
        }
        self.sealed.push(Sealed {
            seq,
            generation: 0,
            first_seq: self.active.first_seq,
            chain_in: self.active.chain_in,
            data_in: self.active.data_in,
            name: sealed_name,
            index_offset,
            index_count,
            rescued: None,
            cached,
        });
        let start = (self.next_seq, self.chain, self.data_records);
        self.active = new_active(&self.storage, &self.config, seq + 1, start)?;
        self.committed_len = self.active.len;
        Ok(())
    }

    /// Where the newest record with `key` is, if any.
    pub fn locate(&self, key: &Key) -> Result<Option<Location>, ArchiveError> {
        if let Some(&i) = self.active.by_key.get(key) {
            let e = self.active.entries[i];
            return Ok(Some(Location {
                segment: self.active.seq,
                offset: e.offset,
                len: e.len,
                kind: e.kind,
                elided: e.elided,
            }));
        }
        for slot in self.index.candidates(key) {
            let Some(s) = self.sealed.get(to_usize(slot)?) else {
                continue;
            };
            if let Some(e) = self.find_in_sealed(s, key)? {
                return Ok(Some(Location {
                    segment: s.seq,
                    offset: e.offset,
                    len: e.len,
                    kind: e.kind,
                    elided: e.elided,
                }));
            }
        }
        Ok(None)
    }

    /// Binary search of a sealed segment's on-disk index (the last entry for the key).
    fn find_in_sealed(&self, s: &Sealed, key: &Key) -> Result<Option<IndexEntry>, ArchiveError> {
        if let Some(entries) = &s.rescued {
            return Ok(entries.iter().rev().find(|e| &e.key == key).copied());
        }
        if self.config.cache_sealed_indexes {
            if s.cached.get().is_none() {
                let n = to_usize(s.index_count)?;
                let mut bytes = vec![0u8; n * INDEX_ENTRY_LEN];
                self.storage.read_at(&s.name, s.index_offset, &mut bytes)?;
                let entries = bytes
                    .chunks_exact(INDEX_ENTRY_LEN)
                    .map(|b| {
                        IndexEntry::decode(b)
                            .map_err(|_| corrupt(s.seq, s.index_offset, "index entry"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                // Another reader may have filled it meanwhile: either copy is the same.
                let _ = s.cached.set(entries);
            }
            if let Some(entries) = s.cached.get() {
                // The last entry with this key (the index is sorted by key).
                let end = entries.partition_point(|e| e.key <= *key);
                return Ok(end
                    .checked_sub(1)
                    .map(|i| entries[i])
                    .filter(|e| e.key == *key));
            }
        }
        let read = |i: u64| -> Result<IndexEntry, ArchiveError> {
            let mut b = [0u8; INDEX_ENTRY_LEN];
            self.storage
                .read_at(&s.name, s.index_offset + i * INDEX_ENTRY_LEN as u64, &mut b)?;
            IndexEntry::decode(&b).map_err(|_| corrupt(s.seq, s.index_offset, "index entry"))
        };
        // First entry with entry.key > key, then step back.
        let (mut lo, mut hi) = (0u64, s.index_count);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if read(mid)?.key <= *key {
                lo = mid + 1
            } else {
                hi = mid
            }
        }
        if lo == 0 {
            return Ok(None);
        }
        let e = read(lo - 1)?;
        Ok((e.key == *key).then_some(e))
    }

    /// Reads and checks the record at `loc`, returning its payload.
    pub fn read(&mut self, loc: &Location) -> Result<Vec<u8>, ArchiveError> {
        if loc.segment == self.active.seq && !self.active.buffer.is_empty() {
            let a = &mut self.active;
            if let Err(e) = flush(&mut a.writer, &mut a.buffer) {
                self.poisoned = true;
                return Err(e);
            }
        }
        self.read_flushed(loc)
    }

    /// [`Archive::read`] through a shared reference, for many readers at once: refuses a record
    /// of the active segment that may still sit in the write buffer (past the last commit), with
    /// [`ArchiveError::Uncommitted`].
    pub fn read_committed(&self, loc: &Location) -> Result<Vec<u8>, ArchiveError> {
        if loc.segment == self.active.seq
            && loc.offset + (RECORD_OVERHEAD as u64) + u64::from(loc.len) > self.committed_len
        {
            return Err(ArchiveError::Uncommitted);
        }
        self.read_flushed(loc)
    }

    fn read_flushed(&self, loc: &Location) -> Result<Vec<u8>, ArchiveError> {
        if loc.elided {
            return Err(ArchiveError::Elided {
                segment: loc.segment,
                offset: loc.offset,
            });
        }
        let name = if loc.segment == self.active.seq {
            &self.active.name
        } else {
            let s = self
                .sealed
                .get(to_usize(loc.segment)?)
                .ok_or_else(|| corrupt(loc.segment, loc.offset, "no such segment"))?;
            &s.name
        };
        if loc.len as usize > MAX_PAYLOAD_LEN {
            return Err(corrupt(
                loc.segment,
                loc.offset,
                "record length out of range",
            ));
        }
        let mut bytes = vec![0u8; RECORD_OVERHEAD + loc.len as usize];
        self.storage.read_at(name, loc.offset, &mut bytes)?;
        let (header, payload) = decode_record(&bytes)
            .map_err(|e| corrupt(loc.segment, loc.offset, format_reason(e)))?;
        if header.len != loc.len || header.kind != loc.kind || header.elided {
            return Err(corrupt(
                loc.segment,
                loc.offset,
                "record does not match its index entry",
            ));
        }
        let payload_len = payload.len();
        bytes.truncate(RECORD_HEADER_LEN + payload_len);
        bytes.drain(..RECORD_HEADER_LEN);
        Ok(bytes)
    }

    /// Every record of `kind` (key and location), in log order, read from the indexes only (no
    /// payload is read): how a caller lists, say, its snapshot records at open.
    pub fn records_of_kind(&self, kind: u8) -> Result<Vec<(Key, Location)>, ArchiveError> {
        let mut out = Vec::new();
        for s in 0..=self.active.seq {
            let mut found = self.segment_records(s)?;
            found.retain(|(_, l)| l.kind == kind);
            out.append(&mut found);
        }
        Ok(out)
    }

    /// Every data record of segment `segment` (key and location, elided ones included), in log
    /// order, from its index (no payload is read): what a caller that decides what to compact
    /// weighs.
    pub fn segment_records(&self, segment: u64) -> Result<Vec<(Key, Location)>, ArchiveError> {
        let to_location = |seq: u64| {
            move |e: &IndexEntry| {
                (
                    e.key,
                    Location {
                        segment: seq,
                        offset: e.offset,
                        len: e.len,
                        kind: e.kind,
                        elided: e.elided,
                    },
                )
            }
        };
        if segment == self.active.seq {
            return Ok(self
                .active
                .entries
                .iter()
                .map(to_location(segment))
                .collect());
        }
        let s = self
            .sealed
            .get(to_usize(segment)?)
            .ok_or(ArchiveError::NoSegment(segment))?;
        let mut entries = self.sealed_entries(s)?;
        entries.sort_by_key(|e| e.offset);
        Ok(entries.iter().map(to_location(segment)).collect())
    }

    /// A sealed segment's index entries (sorted by key), from its footer or the rescue scan.
    fn sealed_entries(&self, s: &Sealed) -> Result<Vec<IndexEntry>, ArchiveError> {
        if let Some(e) = &s.rescued {
            return Ok(e.clone());
        }
        if let Some(e) = s.cached.get() {
            return Ok(e.clone());
        }
        let len = s
            .index_count
            .checked_mul(INDEX_ENTRY_LEN as u64)
            .ok_or_else(|| corrupt(s.seq, s.index_offset, "index size"))?;
        let mut bytes = vec![0u8; to_usize(len)?];
        self.storage.read_at(&s.name, s.index_offset, &mut bytes)?;
        decode_index(&bytes).map_err(|_| corrupt(s.seq, s.index_offset, "index entry"))
    }

    /// The length of segment `segment` in storage (the active one: up to its last commit).
    pub fn segment_len(&self, segment: u64) -> Result<u64, ArchiveError> {
        if segment == self.active.seq {
            return Ok(self.committed_len);
        }
        let s = self
            .sealed
            .get(to_usize(segment)?)
            .ok_or(ArchiveError::NoSegment(segment))?;
        Ok(self.storage.len(&s.name)?)
    }

    /// Compacts sealed segment `segment`: writes its next generation, in which every record
    /// `elide` picks (given its key and current location) is **elided** (its payload replaced by
    /// its length and BLAKE3, `docs/format/archive.md` "Compaction"), publishes it atomically
    /// ([`Storage::publish`]), then removes the old generation. Sequence numbers, commits and the
    /// hash chain are unchanged, so every client's remembered chain head stays valid (B-8).
    ///
    /// The segment is read whole and checked first (framing, sequence, chain, trailer): a
    /// segment that does not verify is never rewritten ([`ArchiveError::Corrupt`]). The new
    /// generation is checked again before it is published. A crash at any point leaves the old
    /// generation, or both (the next [`Archive::open`] keeps the newer and removes the older),
    /// never neither. Nothing is rewritten if `elide` picks nothing that is not elided already.
    /// Memory: about twice the segment's length.
    pub fn compact<F>(&mut self, segment: u64, elide: F) -> Result<Compaction, ArchiveError>
    where
        F: FnMut(&Key, &Location) -> bool,
    {
        let prepared = self.prepare_compaction(segment, elide)?;
        self.finish_compaction(prepared)
    }

    /// The first half of [`Archive::compact`], which only reads the log: checks the segment,
    /// writes and publishes its next generation (if `elide` picks anything), and returns what
    /// [`Archive::finish_compaction`] needs to make it the segment. Several segments may be
    /// prepared at once, from several threads; until each is finished, the storage holds both
    /// generations of it, as after a crash there (the next open keeps the newer). Nothing may
    /// change the log between a preparation and its finish ([`ArchiveError::Config`] then).
    ///
    /// # Errors
    /// As [`Archive::compact`].
    pub fn prepare_compaction<F>(
        &self,
        segment: u64,
        mut elide: F,
    ) -> Result<PreparedCompaction, ArchiveError>
    where
        F: FnMut(&Key, &Location) -> bool,
    {
        if self.poisoned {
            return Err(ArchiveError::Poisoned);
        }
        if segment == self.active.seq {
            return Err(ArchiveError::NotSealed(segment));
        }
        let slot = to_usize(segment)?;
        let s = self
            .sealed
            .get(slot)
            .ok_or(ArchiveError::NoSegment(segment))?;
        let bad = |why| corrupt(segment, 0, why);
        if s.rescued.is_some() {
            return Err(bad("segment's footer is damaged; not compacted"));
        }
        let len = self.storage.len(&s.name)?;
        let mut bytes = vec![0u8; to_usize(len)?];
        self.storage.read_at(&s.name, 0, &mut bytes)?;
        let header = SegmentHeader::decode(&bytes).map_err(|_| bad("segment header"))?;
        if header.archive_id != self.config.archive_id
            || header.segment_seq != segment
            || header.first_record_seq != s.first_seq
            || header.generation != s.generation
        {
            return Err(bad("segment header does not match the log"));
        }
        let trailer = bytes
            .len()
            .checked_sub(TRAILER_LEN)
            .and_then(|at| Trailer::decode(&bytes[at..]).ok())
            .ok_or_else(|| bad("trailer"))?;
        let (records_end, _) = trailer.index_span(len).map_err(|_| bad("trailer"))?;
        let records_end = to_usize(records_end)?;
        let start = (s.first_seq, s.chain_in, s.data_in);
        let scan = scan_segment(&bytes, start, records_end, s.generation > 0);
        if scan.stopped.is_some()
            || scan.committed_end != records_end as u64
            || scan.chain != trailer.chain_head
            || scan.next_seq != trailer.last_seq + 1
        {
            return Err(bad("segment does not verify; not compacted"));
        }
        let generation = s
            .generation
            .checked_add(1)
            .ok_or(ArchiveError::Config("too many generations"))?;
        let mut out = Vec::with_capacity(bytes.len());
        out.extend_from_slice(
            &SegmentHeader {
                generation,
                ..header
            }
            .encode(),
        );
        let mut entries = Vec::with_capacity(scan.entries.len());
        let mut elided = 0u64;
        let mut pos = SEGMENT_HEADER_LEN;
        while pos < records_end {
            let (h, payload) = decode_record(&bytes[pos..records_end])
                .map_err(|e| corrupt(segment, pos as u64, format_reason(e)))?;
            let framed = h.framed_len();
            let offset = out.len() as u64;
            let location = Location {
                segment,
                offset: pos as u64,
                len: h.len,
                kind: h.kind,
                elided: h.elided,
            };
            if h.kind != KIND_COMMIT && !h.elided && elide(&h.key, &location) {
                let stored = ElidedPayload::of(payload)
                    .map_err(|_| corrupt(segment, pos as u64, "record length out of range"))?
                    .encode();
                let hb = RecordHeader {
                    len: ELIDED_PAYLOAD_LEN_U32,
                    elided: true,
                    ..h
                }
                .encode();
                out.extend_from_slice(&hb);
                out.extend_from_slice(&stored);
                out.extend_from_slice(&record_crc(&hb, &stored).to_le_bytes());
                elided += 1;
                entries.push(IndexEntry {
                    key: h.key,
                    offset,
                    len: ELIDED_PAYLOAD_LEN_U32,
                    kind: h.kind,
                    elided: true,
                });
            } else {
                out.extend_from_slice(&bytes[pos..pos + framed]);
                if h.kind != KIND_COMMIT {
                    entries.push(IndexEntry {
                        key: h.key,
                        offset,
                        len: h.len,
                        kind: h.kind,
                        elided: h.elided,
                    });
                }
            }
            pos += framed;
        }
        if elided == 0 {
            return Ok(PreparedCompaction {
                done: Compaction {
                    segment,
                    generation: s.generation,
                    elided: 0,
                    bytes_before: len,
                    bytes_after: len,
                },
                from_generation: s.generation,
                next: None,
            });
        }
        let index_offset = out.len() as u64;
        entries.sort_unstable();
        let index_start = out.len();
        for e in &entries {
            out.extend_from_slice(&e.encode());
        }
        let trailer = Trailer {
            index_offset,
            index_count: entries.len() as u64,
            index_crc: crc32c::crc32c(&out[index_start..]),
            ..trailer
        };
        out.extend_from_slice(&trailer.encode());
        // What is published must verify exactly as the old generation did.
        let check = scan_segment(&out, start, index_start, true);
        if check.stopped.is_some()
            || check.chain != scan.chain
            || check.next_seq != scan.next_seq
            || check.data_records != scan.data_records
        {
            return Err(bad("compacted generation does not verify"));
        }
        let name = generation_name(segment, generation);
        self.storage.publish(&name, &out)?;
        Ok(PreparedCompaction {
            done: Compaction {
                segment,
                generation,
                elided,
                bytes_before: len,
                bytes_after: out.len() as u64,
            },
            from_generation: s.generation,
            next: Some(Box::new(Sealed {
                seq: segment,
                generation,
                first_seq: start.0,
                chain_in: start.1,
                data_in: start.2,
                name,
                index_offset,
                index_count: entries.len() as u64,
                rescued: None,
                cached: {
                    let cached = std::sync::OnceLock::new();
                    if self.config.cache_sealed_indexes {
                        let _ = cached.set(entries);
                    }
                    cached
                },
            })),
        })
    }

    /// The second half of [`Archive::compact`]: the published generation becomes the segment,
    /// and the old one is removed.
    ///
    /// # Errors
    /// [`ArchiveError::Config`] if the segment changed since it was prepared (then nothing is
    /// done; the next open sorts out the generations); the storage's errors.
    pub fn finish_compaction(
        &mut self,
        prepared: PreparedCompaction,
    ) -> Result<Compaction, ArchiveError> {
        let PreparedCompaction {
            done,
            from_generation,
            next,
        } = prepared;
        let Some(next) = next else {
            return Ok(done);
        };
        let slot = to_usize(done.segment)?;
        let current = self
            .sealed
            .get_mut(slot)
            .ok_or(ArchiveError::NoSegment(done.segment))?;
        if current.generation != from_generation {
            return Err(ArchiveError::Config(
                "the segment changed between its compaction's preparation and finish",
            ));
        }
        let old = std::mem::replace(current, *next);
        // From here the new generation is the segment; if this removal fails, the next open
        // removes the old one.
        self.storage.remove(&old.name)?;
        Ok(done)
    }

    /// The generation of sealed segment `segment` (0 until its first compaction).
    pub fn segment_generation(&self, segment: u64) -> Option<u32> {
        self.sealed
            .get(usize::try_from(segment).ok()?)
            .map(|s| s.generation)
    }

    /// The newest payload stored under `key`.
    pub fn get(&mut self, key: &Key) -> Result<Option<Vec<u8>>, ArchiveError> {
        match self.locate(key)? {
            Some(loc) => self.read(&loc).map(Some),
            None => Ok(None),
        }
    }

    /// The last commit.
    pub fn last_commit(&self) -> Commit {
        self.last_commit
    }

    /// Number of sealed segments.
    pub fn sealed_segments(&self) -> u64 {
        self.sealed.len() as u64
    }

    /// The active segment's number.
    pub fn active_segment(&self) -> u64 {
        self.active.seq
    }

    /// Heap bytes of the sealed-segment index, and the number of records it covers.
    pub fn sealed_index_memory(&self) -> (usize, usize) {
        (self.index.heap_bytes(), self.index.len())
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Names of the sealed segments, then the active one, in order.
    pub fn segment_names(&self) -> Vec<(u64, String)> {
        let mut v: Vec<(u64, String)> = self
            .sealed
            .iter()
            .map(|s| (s.seq, s.name.clone()))
            .collect();
        v.push((self.active.seq, self.active.name.clone()));
        v
    }

    /// Consumes the handle, returning the storage (after flushing nothing: uncommitted records
    /// may or may not reach storage, exactly as in a crash).
    pub fn into_storage(self) -> S {
        self.storage
    }
}

fn flush<W: SegmentWriter>(w: &mut W, buffer: &mut Vec<u8>) -> Result<(), ArchiveError> {
    if !buffer.is_empty() {
        w.write_all(buffer)?;
        buffer.clear();
    }
    Ok(())
}

fn new_active<S: Storage>(
    storage: &S,
    config: &Config,
    seq: u64,
    (first_seq, chain_in, data_in): (u64, [u8; 32], u64),
) -> Result<Active<S::Writer>, ArchiveError> {
    let name = segment_name(seq, true);
    let writer = storage.create(&name)?;
    let header = SegmentHeader {
        archive_id: config.archive_id,
        segment_seq: seq,
        first_record_seq: first_seq,
        generation: 0,
    };
    // The header goes out with the first batch and becomes durable with its commit: until then
    // the segment holds nothing committed, and recovery removes a file whose header is missing.
    Ok(Active {
        seq,
        name,
        writer,
        len: SEGMENT_HEADER_LEN as u64,
        buffer: header.encode().to_vec(),
        first_seq,
        chain_in,
        data_in,
        entries: Vec::new(),
        by_key: HashMap::new(),
    })
}

struct OpenedSealed {
    entries: Vec<IndexEntry>,
    index_offset: u64,
    last_seq: u64,
    chain: [u8; 32],
    data_records: u64,
    rescued: bool,
}

/// Reads a sealed segment's trailer and index (or, if they are damaged, rescans its records).
fn open_sealed<S: Storage>(
    storage: &S,
    config: &Config,
    (seq, generation): (u64, u32),
    name: &str,
    (first_seq, chain, data_records): (u64, [u8; 32], u64),
    recovery: &mut Recovery,
) -> Result<OpenedSealed, ArchiveError> {
    let len = storage.len(name)?;
    let mut hb = [0u8; SEGMENT_HEADER_LEN];
    if len >= SEGMENT_HEADER_LEN as u64 {
        storage.read_at(name, 0, &mut hb)?;
    }
    match SegmentHeader::decode(&hb) {
        Ok(h) if h.archive_id != config.archive_id => {
            return Err(corrupt(seq, 0, "segment belongs to another archive"));
        }
        Ok(h) if h.segment_seq != seq || h.first_record_seq != first_seq => {
            return Err(corrupt(seq, 0, "segment header out of sequence"));
        }
        Ok(h) if h.generation != generation => {
            return Err(corrupt(
                seq,
                0,
                "segment header's generation is not its name's",
            ));
        }
        Ok(_) => {}
        Err(_) => recovery.damaged_headers.push(seq),
    }
    let compacted = generation > 0;
    if let Ok(found) = read_footer(
        storage,
        (seq, compacted),
        name,
        len,
        first_seq,
        data_records,
    ) {
        return Ok(found);
    }
    // The footer is damaged: index the segment by scanning its records.
    recovery.rescanned_segments.push(seq);
    let mut bytes = vec![0u8; to_usize(len)?];
    storage.read_at(name, 0, &mut bytes)?;
    let scan = scan_segment(
        &bytes,
        (first_seq, chain, data_records),
        bytes.len(),
        compacted,
    );
    if scan.next_seq == first_seq {
        return Err(corrupt(
            seq,
            SEGMENT_HEADER_LEN as u64,
            "sealed segment unreadable",
        ));
    }
    let index_offset = scan.committed_end;
    Ok(OpenedSealed {
        entries: scan.entries,
        index_offset,
        last_seq: scan.next_seq - 1,
        chain: scan.chain,
        data_records: scan.data_records,
        rescued: true,
    })
}

fn read_footer<S: Storage>(
    storage: &S,
    (seq, compacted): (u64, bool),
    name: &str,
    len: u64,
    first_seq: u64,
    data_records_before: u64,
) -> Result<OpenedSealed, ArchiveError> {
    let bad = |why| corrupt(seq, len, why);
    if len < (SEGMENT_HEADER_LEN + TRAILER_LEN) as u64 {
        return Err(bad("too short"));
    }
    let mut tb = [0u8; TRAILER_LEN];
    storage.read_at(name, len - TRAILER_LEN as u64, &mut tb)?;
    let t = Trailer::decode(&tb).map_err(|_| bad("trailer"))?;
    let (index_offset, index_bytes) = t.index_span(len).map_err(|_| bad("trailer fields"))?;
    if t.first_seq != first_seq || t.last_seq < first_seq {
        return Err(bad("trailer fields"));
    }
    let mut ib = vec![0u8; to_usize(index_bytes)?];
    storage.read_at(name, index_offset, &mut ib)?;
    let entries = t.open_index(&ib).map_err(|e| match e {
        FormatError::Checksum => bad("index checksum"),
        _ => bad("index entry"),
    })?;
    if !compacted && entries.iter().any(|e| e.elided) {
        return Err(bad("elided record in a version 1 segment's index"));
    }
    // Every data record of the segment has an index entry (verify checks this against the
    // records and the last commit's count).
    let data_records = data_records_before + t.index_count;
    Ok(OpenedSealed {
        entries,
        index_offset: t.index_offset,
        last_seq: t.last_seq,
        chain: t.chain_head,
        data_records,
        rescued: false,
    })
}

impl<S: Storage> Archive<S> {
    pub(crate) fn flush_for_verify(&mut self) -> Result<(), ArchiveError> {
        if self.poisoned {
            return Err(ArchiveError::Poisoned);
        }
        let a = &mut self.active;
        if let Err(e) = flush(&mut a.writer, &mut a.buffer) {
            self.poisoned = true;
            return Err(e);
        }
        Ok(())
    }

    /// Length of the active segment up to and including the last commit.
    pub(crate) fn active_committed_len(&self) -> u64 {
        if self.dirty {
            // Records after the last commit are not part of the committed log.
            self.committed_len
        } else {
            self.active.len
        }
    }
}
