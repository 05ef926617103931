//! The byte layout (`docs/format/archive.md`): segment header, record framing, index entries and
//! the sealed-segment trailer. Pure functions over bytes; no I/O.

use crate::error::FormatError;

/// Segment header magic.
pub const SEGMENT_MAGIC: [u8; 8] = *b"CAIRNSEG";
/// Sealed-segment trailer magic.
pub const TRAILER_MAGIC: [u8; 8] = *b"CAIRNEND";
/// The format version of segments the log appends to (and of every segment before the first
/// compaction): records are stored whole.
pub const FORMAT_VERSION: u16 = 1;
/// The format version of a compacted segment generation: records may be elided
/// ([`ElidedPayload`]), and the header carries the generation. Readers accept both versions.
pub const FORMAT_VERSION_COMPACTED: u16 = 2;
/// Record flag bit 0 (version 2 only): the payload was elided; what is stored is an
/// [`ElidedPayload`].
pub const FLAG_ELIDED: u8 = 1;
/// Length of an elided record's stored payload: the original length (u32) and its BLAKE3.
pub const ELIDED_PAYLOAD_LEN: usize = 36;
const ELIDED_PAYLOAD_LEN_U32: u32 = 36;
const _: () = assert!(ELIDED_PAYLOAD_LEN_U32 as usize == ELIDED_PAYLOAD_LEN);
/// Length of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 64;
const SEGMENT_HEADER_LEN_U16: u16 = 64;
const _: () = assert!(SEGMENT_HEADER_LEN_U16 as usize == SEGMENT_HEADER_LEN);
/// Length of a record header (before the payload).
pub const RECORD_HEADER_LEN: usize = 48;
/// Length of the CRC32C after the payload.
pub const RECORD_CRC_LEN: usize = 4;
/// Framing bytes per record.
pub const RECORD_OVERHEAD: usize = RECORD_HEADER_LEN + RECORD_CRC_LEN;
/// Largest payload of one record: 72 MiB (a maximal sealed block is 69.2 MB).
pub const MAX_PAYLOAD_LEN: usize = 72 << 20;
/// Length of one index entry.
pub const INDEX_ENTRY_LEN: usize = 48;
/// Length of the sealed-segment trailer.
pub const TRAILER_LEN: usize = 96;
/// Record kinds at or above this are the log's own; callers use `0..RESERVED_KINDS`.
pub const RESERVED_KINDS: u8 = 0xF0;
/// The commit record's kind.
pub const KIND_COMMIT: u8 = 0xFF;
/// Length of a commit record's payload: the number of data records committed so far in the
/// archive (u64).
pub const COMMIT_PAYLOAD_LEN: usize = 8;
/// BLAKE3 `derive_key` context of the hash chain's first link.
pub const CHAIN_CONTEXT: &str = "cairn 2026-11-27 v1 archive chain";

/// A 32-byte record key (a block id, say); all zeros for records without one.
pub type Key = [u8; 32];

fn le_u16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// The first 64 bytes of every segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Which archive this segment belongs to (so a segment of another archive is refused).
    pub archive_id: [u8; 16],
    /// The segment's number: 0, 1, 2, … without gaps.
    pub segment_seq: u64,
    /// The sequence number of the segment's first record.
    pub first_record_seq: u64,
    /// The generation: 0 for a segment as the log wrote it (format version 1), and one more for
    /// each compaction (format version 2).
    pub generation: u32,
}

impl SegmentHeader {
    /// The format version this header is written with: [`FORMAT_VERSION`] for generation 0,
    /// [`FORMAT_VERSION_COMPACTED`] after.
    pub fn version(&self) -> u16 {
        if self.generation == 0 {
            FORMAT_VERSION
        } else {
            FORMAT_VERSION_COMPACTED
        }
    }

    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&self.version().to_le_bytes());
        b[10..12].copy_from_slice(&SEGMENT_HEADER_LEN_U16.to_le_bytes());
        // 12..16 flags: zero.
        b[16..32].copy_from_slice(&self.archive_id);
        b[32..40].copy_from_slice(&self.segment_seq.to_le_bytes());
        b[40..48].copy_from_slice(&self.first_record_seq.to_le_bytes());
        // Version 2: 48..52 generation. The rest of 48..60 reserved: zero.
        b[48..52].copy_from_slice(&self.generation.to_le_bytes());
        let crc = crc32c::crc32c(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a header.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(FormatError::Truncated);
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err(FormatError::Magic);
        }
        if crc32c::crc32c(&b[..60]) != le_u32(b, 60) {
            return Err(FormatError::Checksum);
        }
        let version = le_u16(b, 8);
        if version != FORMAT_VERSION && version != FORMAT_VERSION_COMPACTED {
            return Err(FormatError::Version);
        }
        let generation = le_u32(b, 48);
        if usize::from(le_u16(b, 10)) != SEGMENT_HEADER_LEN
            || le_u32(b, 12) != 0
            || b[52..60].iter().any(|&x| x != 0)
            || (version == FORMAT_VERSION) != (generation == 0)
        {
            return Err(FormatError::Reserved);
        }
        let mut archive_id = [0u8; 16];
        archive_id.copy_from_slice(&b[16..32]);
        Ok(Self {
            archive_id,
            segment_seq: le_u64(b, 32),
            first_record_seq: le_u64(b, 40),
            generation,
        })
    }
}

/// A record header, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length.
    pub len: u32,
    /// Record kind (opaque to the log below [`RESERVED_KINDS`]).
    pub kind: u8,
    /// Sequence number: exactly one more than the previous record's, across segments.
    pub seq: u64,
    /// The record's key.
    pub key: Key,
    /// Flag bit 0: the payload was elided and what is stored is an [`ElidedPayload`] (format
    /// version 2 only; the segment scan refuses it in version 1).
    pub elided: bool,
}

impl RecordHeader {
    /// Encodes the 48-byte header.
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4] = self.kind;
        if self.elided {
            b[5] = FLAG_ELIDED;
        }
        // 6..8 reserved: zero.
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..48].copy_from_slice(&self.key);
        b
    }

    /// Decodes a header's fields (the CRC is checked with the payload).
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < RECORD_HEADER_LEN {
            return Err(FormatError::Truncated);
        }
        let len = le_u32(b, 0);
        if len as usize > MAX_PAYLOAD_LEN {
            return Err(FormatError::Length);
        }
        if b[5] & !FLAG_ELIDED != 0 || b[6] != 0 || b[7] != 0 {
            return Err(FormatError::Reserved);
        }
        let elided = b[5] & FLAG_ELIDED != 0;
        if elided && (len != ELIDED_PAYLOAD_LEN_U32 || b[4] >= RESERVED_KINDS) {
            return Err(FormatError::Length);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&b[16..48]);
        Ok(Self {
            len,
            kind: b[4],
            seq: le_u64(b, 8),
            key,
            elided,
        })
    }

    /// What the hash chain takes for this record: the header and the payload's BLAKE3. For an
    /// elided record, the **original** header (no flag, the original length) and the stored
    /// digest, which is exactly what the chain took before the record was elided.
    pub fn chain_input(
        &self,
        payload: &[u8],
    ) -> Result<([u8; RECORD_HEADER_LEN], blake3::Hash), FormatError> {
        if self.elided {
            let e = ElidedPayload::decode(payload)?;
            let original = Self {
                len: e.len,
                elided: false,
                ..*self
            };
            Ok((original.encode(), blake3::Hash::from_bytes(e.digest)))
        } else {
            Ok((self.encode(), blake3::hash(payload)))
        }
    }

    /// Total bytes of the framed record.
    pub fn framed_len(&self) -> usize {
        RECORD_OVERHEAD + self.len as usize
    }
}

/// What an elided record stores instead of its payload (format version 2): the original
/// payload's length and BLAKE3, so that the hash chain over the original record still verifies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ElidedPayload {
    /// The original payload's length.
    pub len: u32,
    /// The original payload's BLAKE3.
    pub digest: [u8; 32],
}

impl ElidedPayload {
    /// What eliding `payload` stores.
    pub fn of(payload: &[u8]) -> Result<Self, FormatError> {
        let len = u32::try_from(payload.len()).map_err(|_| FormatError::Length)?;
        if payload.len() > MAX_PAYLOAD_LEN {
            return Err(FormatError::Length);
        }
        Ok(Self {
            len,
            digest: *blake3::hash(payload).as_bytes(),
        })
    }

    /// Encodes the 36 bytes.
    pub fn encode(&self) -> [u8; ELIDED_PAYLOAD_LEN] {
        let mut b = [0u8; ELIDED_PAYLOAD_LEN];
        b[0..4].copy_from_slice(&self.len.to_le_bytes());
        b[4..36].copy_from_slice(&self.digest);
        b
    }

    /// Decodes the 36 bytes; an original length above [`MAX_PAYLOAD_LEN`] is refused.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() != ELIDED_PAYLOAD_LEN {
            return Err(FormatError::Length);
        }
        let len = le_u32(b, 0);
        if len as usize > MAX_PAYLOAD_LEN {
            return Err(FormatError::Length);
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&b[4..36]);
        Ok(Self { len, digest })
    }
}

/// CRC32C over a record's header and payload.
pub fn record_crc(header: &[u8; RECORD_HEADER_LEN], payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), payload)
}

/// Decodes one framed record at the start of `b`: header, payload and CRC. Returns the header
/// and the payload slice. `Truncated` means `b` ends inside the record.
pub fn decode_record(b: &[u8]) -> Result<(RecordHeader, &[u8]), FormatError> {
    let header = RecordHeader::decode(b)?;
    let total = header.framed_len();
    if b.len() < total {
        return Err(FormatError::Truncated);
    }
    let mut hb = [0u8; RECORD_HEADER_LEN];
    hb.copy_from_slice(&b[..RECORD_HEADER_LEN]);
    let payload = &b[RECORD_HEADER_LEN..RECORD_HEADER_LEN + header.len as usize];
    if record_crc(&hb, payload) != le_u32(b, total - RECORD_CRC_LEN) {
        return Err(FormatError::Checksum);
    }
    Ok((header, payload))
}

/// The chain's first link for an archive.
pub fn chain_start(archive_id: &[u8; 16]) -> [u8; 32] {
    blake3::derive_key(CHAIN_CONTEXT, archive_id)
}

/// The next link: `keyed_hash(prev, header || BLAKE3(payload))`.
pub fn chain_next(prev: &[u8; 32], header: &[u8; RECORD_HEADER_LEN], payload: &[u8]) -> [u8; 32] {
    chain_link(prev, header, &blake3::hash(payload))
}

/// The next link, given `BLAKE3(payload)` already computed.
pub fn chain_link(
    prev: &[u8; 32],
    header: &[u8; RECORD_HEADER_LEN],
    payload_hash: &blake3::Hash,
) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(prev);
    h.update(header);
    h.update(payload_hash.as_bytes());
    *h.finalize().as_bytes()
}

/// One entry of a sealed segment's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexEntry {
    /// The record key.
    pub key: Key,
    /// Offset of the record's first byte in the segment.
    pub offset: u64,
    /// The payload length.
    pub len: u32,
    /// The record kind.
    pub kind: u8,
    /// Whether the record is elided (byte 45, flag bit 0; format version 2 only).
    pub elided: bool,
}

impl IndexEntry {
    /// Encodes the 48-byte entry.
    pub fn encode(&self) -> [u8; INDEX_ENTRY_LEN] {
        let mut b = [0u8; INDEX_ENTRY_LEN];
        b[0..32].copy_from_slice(&self.key);
        b[32..40].copy_from_slice(&self.offset.to_le_bytes());
        b[40..44].copy_from_slice(&self.len.to_le_bytes());
        b[44] = self.kind;
        if self.elided {
            b[45] = FLAG_ELIDED;
        }
        b
    }

    /// Decodes an entry.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < INDEX_ENTRY_LEN {
            return Err(FormatError::Truncated);
        }
        if b[45] & !FLAG_ELIDED != 0 || b[46..48].iter().any(|&x| x != 0) {
            return Err(FormatError::Reserved);
        }
        let len = le_u32(b, 40);
        if len as usize > MAX_PAYLOAD_LEN {
            return Err(FormatError::Length);
        }
        let elided = b[45] & FLAG_ELIDED != 0;
        if elided && len != ELIDED_PAYLOAD_LEN_U32 {
            return Err(FormatError::Length);
        }
        let mut key = [0u8; 32];
        key.copy_from_slice(&b[0..32]);
        Ok(Self {
            key,
            offset: le_u64(b, 32),
            len,
            kind: b[44],
            elided,
        })
    }
}

/// The last 96 bytes of a sealed segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trailer {
    /// Where the index starts.
    pub index_offset: u64,
    /// Number of index entries.
    pub index_count: u64,
    /// Sequence number of the segment's first record.
    pub first_seq: u64,
    /// Sequence number of its last record (a commit).
    pub last_seq: u64,
    /// The chain head after the segment's last data record.
    pub chain_head: [u8; 32],
    /// CRC32C of the index bytes.
    pub index_crc: u32,
}

impl Trailer {
    /// Encodes the trailer.
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..8].copy_from_slice(&TRAILER_MAGIC);
        b[8..16].copy_from_slice(&self.index_offset.to_le_bytes());
        b[16..24].copy_from_slice(&self.index_count.to_le_bytes());
        b[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        b[32..40].copy_from_slice(&self.last_seq.to_le_bytes());
        b[40..72].copy_from_slice(&self.chain_head);
        b[72..76].copy_from_slice(&self.index_crc.to_le_bytes());
        // 76..92 reserved: zero.
        let crc = crc32c::crc32c(&b[..92]);
        b[92..96].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes and checks a trailer.
    pub fn decode(b: &[u8]) -> Result<Self, FormatError> {
        if b.len() < TRAILER_LEN {
            return Err(FormatError::Truncated);
        }
        if b[0..8] != TRAILER_MAGIC {
            return Err(FormatError::Magic);
        }
        if crc32c::crc32c(&b[..92]) != le_u32(b, 92) {
            return Err(FormatError::Checksum);
        }
        if b[76..92].iter().any(|&x| x != 0) {
            return Err(FormatError::Reserved);
        }
        let mut chain_head = [0u8; 32];
        chain_head.copy_from_slice(&b[40..72]);
        Ok(Self {
            index_offset: le_u64(b, 8),
            index_count: le_u64(b, 16),
            first_seq: le_u64(b, 24),
            last_seq: le_u64(b, 32),
            chain_head,
            index_crc: le_u32(b, 72),
        })
    }

    /// Where the index this trailer describes lies in a sealed segment of `segment_len` bytes:
    /// `(offset, length)`. The index starts after the segment header and ends where the
    /// trailer begins; [`FormatError::Length`] otherwise (or if its size overflows).
    pub fn index_span(&self, segment_len: u64) -> Result<(u64, u64), FormatError> {
        let len = self
            .index_count
            .checked_mul(INDEX_ENTRY_LEN as u64)
            .ok_or(FormatError::Length)?;
        let fits = self.index_offset >= SEGMENT_HEADER_LEN as u64
            && self
                .index_offset
                .checked_add(len)
                .and_then(|end| end.checked_add(TRAILER_LEN as u64))
                == Some(segment_len);
        if fits {
            Ok((self.index_offset, len))
        } else {
            Err(FormatError::Length)
        }
    }

    /// The entries of the index this trailer describes, from its bytes: checked against the
    /// trailer's CRC32C first ([`FormatError::Checksum`]), then decoded ([`decode_index`]).
    pub fn open_index(&self, index: &[u8]) -> Result<Vec<IndexEntry>, FormatError> {
        if crc32c::crc32c(index) != self.index_crc {
            return Err(FormatError::Checksum);
        }
        decode_index(index)
    }
}

/// Decodes an index: consecutive [`IndexEntry`]s, its length a multiple of
/// [`INDEX_ENTRY_LEN`] ([`FormatError::Length`] otherwise). Never
/// [`FormatError::Checksum`]: the index's checksum is the trailer's ([`Trailer::open_index`]).
pub fn decode_index(bytes: &[u8]) -> Result<Vec<IndexEntry>, FormatError> {
    if !bytes.len().is_multiple_of(INDEX_ENTRY_LEN) {
        return Err(FormatError::Length);
    }
    bytes
        .chunks_exact(INDEX_ENTRY_LEN)
        .map(IndexEntry::decode)
        .collect()
}
