//! Errors.

use std::io;

/// A structure failed to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The bytes end inside the structure.
    #[error("truncated")]
    Truncated,
    /// Wrong magic bytes.
    #[error("bad magic")]
    Magic,
    /// A CRC32C does not match.
    #[error("checksum mismatch")]
    Checksum,
    /// An unknown format version.
    #[error("unsupported format version")]
    Version,
    /// A reserved field or flag is not zero.
    #[error("reserved field not zero")]
    Reserved,
    /// A length above the limit.
    #[error("length out of range")]
    Length,
}

/// An archive operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The storage failed. After a failed write or sync the archive refuses further appends
    /// ([`ArchiveError::Poisoned`]) until it is reopened, which runs recovery.
    #[error("storage: {0}")]
    Io(#[from] io::Error),
    /// A previous write or sync failed; nothing more is appended or acknowledged by this
    /// handle (B-11). Reopen the archive.
    #[error("archive is poisoned by an earlier storage failure; reopen it")]
    Poisoned,
    /// The record is not committed yet (it may still be in the write buffer); use
    /// [`Archive::read`](crate::Archive::read) through `&mut`, or commit first.
    #[error("record not committed yet")]
    Uncommitted,
    /// A payload is longer than [`MAX_PAYLOAD_LEN`](crate::MAX_PAYLOAD_LEN).
    #[error("payload too large")]
    PayloadTooLarge,
    /// The kind is one the log reserves for itself (≥ 0xF0).
    #[error("record kind reserved by the log")]
    ReservedKind,
    /// The record was elided by a compaction (`docs/format/archive.md`, "Compaction"): its
    /// payload is gone, only its length and digest are left in the chain.
    #[error("record in segment {segment} at offset {offset} was elided by a compaction")]
    Elided {
        /// The segment's number.
        segment: u64,
        /// Byte offset of the record in the segment.
        offset: u64,
    },
    /// There is no segment of that number.
    #[error("no segment {0}")]
    NoSegment(u64),
    /// Only a sealed segment can be compacted; the active one is still appended to.
    #[error("segment {0} is active: only sealed segments are compacted")]
    NotSealed(u64),
    /// The configuration is out of bounds.
    #[error("invalid configuration: {0}")]
    Config(&'static str),
    /// Damage that recovery must not repair silently: a bad sealed segment, a gap in the
    /// segment sequence, a segment of another archive, a chain mismatch, or corruption followed
    /// by committed records in the active segment.
    #[error("archive damaged in segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment's number.
        segment: u64,
        /// Byte offset in the segment.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
}
