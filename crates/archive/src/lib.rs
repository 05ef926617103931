//! Cairn's append-only archive log: typed, opaque records in segments, framed with CRC32C,
//! committed with a BLAKE3 hash chain, sealed with an on-disk index; crash recovery and
//! verification.
//!
//! | type | use |
//! | --- | --- |
//! | [`Archive`], [`Config`] | open (with recovery), append, commit, look up, read, verify, compact |
//! | [`Commit`], [`Location`], [`Recovery`], [`Compaction`], [`VerifyReport`], [`Damage`] | what each returns |
//! | [`Storage`], [`SegmentWriter`] | where segments live: the trait the log needs |
//! | [`MemoryStorage`], [`DirStorage`] | in memory; a local directory with fsync discipline |
//! | [`format`](mod@format) | the byte layout (`docs/format/archive.md`), as pure functions |
//! | [`faulty`] | a fault-injecting storage for crash tests (crash, power loss, torn write, ENOSPC, EIO) |
//!
//! # Example
//!
//! ```
//! use cairn_archive::{Archive, Config, MemoryStorage};
//!
//! # fn main() -> Result<(), cairn_archive::ArchiveError> {
//! let storage = MemoryStorage::new();
//! let config = Config::new(*b"example archive!");
//! let (mut log, _) = Archive::open(storage.clone(), config)?;
//! let key = [7u8; 32];
//! log.append(1, &key, b"an opaque sealed block")?;
//! let commit = log.commit()?; // durable from here on: acknowledge now
//! drop(log);
//!
//! let (mut log, recovery) = Archive::open(storage, config)?;
//! assert_eq!(recovery.truncated_bytes, 0);
//! assert_eq!(log.get(&key)?.as_deref(), Some(&b"an opaque sealed block"[..]));
//! assert_eq!(log.last_commit(), commit);
//! assert!(log.verify(|_, _, _| Ok(()))?.is_clean());
//! # Ok(())
//! # }
//! ```
//!
//! # Security and durability notes
//!
//! - Payloads are opaque: the log never interprets them; kinds below 0xF0 are the caller's,
//!   kept and verified, never interpreted.
//! - Every record carries a CRC32C over its header and payload (torn writes, bit rot) and a
//!   sequence number one more than the previous record's (drops, duplicates, reordering).
//! - Commit records carry the head of a BLAKE3 hash chain over every data record so far
//!   (header and payload hash); a client that remembers the head detects rewritten history.
//! - A commit returns only after the storage's `sync`; a failed write or sync poisons the
//!   handle, which never reports success afterwards (B-11).
//! - Recovery cuts only a tail after the last commit (torn write, garbage, uncommitted
//!   records); damage followed by committed records is an error for `verify`/repair, never a
//!   silent truncation.
//! - Compaction ([`Archive::compact`]) elides records (payload replaced by its length and
//!   BLAKE3) in a new generation of a sealed segment; the chain, commits and sequence numbers
//!   are unchanged, so a remembered chain head still verifies after a prune.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::big_endian_bytes, clippy::host_endian_bytes)]

mod archive;
mod error;
pub mod faulty;
pub mod format;
mod index;
mod storage;
mod verify;

pub use archive::{
    Archive, Commit, Compaction, Config, DEFAULT_SEGMENT_TARGET, Location, MAX_SEGMENT_TARGET,
    MIN_SEGMENT_TARGET, PreparedCompaction, Recovery, generation_name, segment_name,
};
pub use error::{ArchiveError, FormatError};
pub use format::{Key, MAX_PAYLOAD_LEN};
pub use index::MAX_SEALED_SEGMENTS;
pub use storage::{DirStorage, FileWriter, MemoryStorage, MemoryWriter, SegmentWriter, Storage};
pub use verify::{Damage, VerifyReport};
