//! Block sealing: what leaves the endpoint. A chunk of a file (or a tree or snapshot object) is
//! named by a keyed BLAKE3 id, compressed with zstd when that pays, padded to a Padmé length,
//! and encrypted with AES-256-GCM (default) or XChaCha20-Poly1305 under a fresh per-block key.
//! The server stores the result opaque and can check only its framing ([`SealedHeader::parse`]).
//!
//! | item | use |
//! | --- | --- |
//! | [`Sealer`] | seals and opens blocks of one archive (holds its [`BlockIdKey`] and [`BlockKey`]) |
//! | [`BlockId`] | keyed BLAKE3 id of a block's kind and plaintext: the dedup key, and the post-decrypt commitment |
//! | [`SealedHeader`] | key-less framing check of a sealed block (for the server) |
//! | [`SealConfig`] | AEAD choice and zstd level, validated |
//! | `hazmat` (feature `hazmat`) | the raw AEAD layer and sealing with a caller-chosen salt: for known-answer vectors, Wycheproof and fuzzing, never for production |
//! | [`decompress_bounded`], [`padding`] | the bounded zstd decoder and the Padmé function |
//!
//! # Example
//!
//! ```
//! use cairn_keys::ArchiveKey;
//! use cairn_seal::{ArchiveId, BlockKind, SealConfig, Sealer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let root = ArchiveKey::generate()?;
//! let sealer = Sealer::new(&root, ArchiveId::from_bytes([7; 16]), SealConfig::default());
//!
//! let chunk = b"some file contents ".repeat(1000);
//! let sealed = sealer.seal(BlockKind::DATA, &chunk)?;
//! // Anyone can check the framing; only the key holder can open.
//! let header = cairn_seal::SealedHeader::parse(sealed.as_bytes())?;
//! assert_eq!(header.id, sealed.id());
//! let opened = sealer.open(BlockKind::DATA, &sealed.id(), sealed.as_bytes())?;
//! assert_eq!(opened, chunk);
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! - **Ids** are `BLAKE3-keyed(BlockIdKey, kind ‖ plaintext)`: equal plaintexts in different
//!   archives get unrelated ids, so the server cannot test for known files (A-9).
//! - **Keys and nonces** (A-6): each block has a random 192-bit salt; its AEAD key is
//!   `BLAKE3 derive_key("cairn 2026-11-27 v1 seal block key", BlockKey ‖ salt)` and the nonce is all
//!   zero. Every key encrypts exactly one message, so there is no nonce budget to exhaust; salts
//!   collide with probability about `n² / 2^193` after `n` blocks.
//! - **AAD** binds the whole header (format version, algorithm, kind, flags, salt, block id) and
//!   the archive id (zero-padded to 128 bytes), so a block cannot be moved to another archive, relabelled as another kind,
//!   or passed off under another id (A-5, B-7).
//! - **Open** authenticates before it parses anything secret, bounds decompression by the
//!   authenticated length (A-8), then recomputes the id and compares it in constant time with the
//!   expected one, which is also the key commitment (A-7). Every failure after the framing check is
//!   the one opaque [`SealError::Open`].
//! - **Lengths**: the encrypted body is padded to a Padmé size, so sealed sizes reveal
//!   `O(log log n)` bits of the compressed length instead of the exact chunk length (B-19).
//!   Compression ratios still leak through the padded size (B-20): never seal secrets together
//!   with attacker-chosen data in one block.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::big_endian_bytes, clippy::host_endian_bytes)]

/// Doors that are safe only in the hands of a test: the raw AEAD layer (any key, any nonce) and
/// sealing with a caller-chosen salt (a repeated salt repeats a block key). Behind the `hazmat`
/// feature, which only this crate's tests and the fuzz targets turn on.
#[cfg(feature = "hazmat")]
pub mod hazmat {
    use crate::{BlockKind, SealError, SealedBlock, Sealer};

    /// The AEAD layer sealed blocks use: AES-256-GCM on AWS-LC and XChaCha20-Poly1305, fixed
    /// nonce types, one opaque error. Run through the Wycheproof vectors (A-1..A-4).
    pub mod aead {
        pub use crate::aead::*;
    }

    /// Seals with a caller-chosen salt, for known-answer vectors and fuzzing. The salt MUST be
    /// unique per block under the sealer's key: [`Sealer::seal`] draws it from the OS.
    ///
    /// # Errors
    /// [`SealError::TooLarge`] over [`crate::MAX_PLAINTEXT_LEN`].
    pub fn seal_with_salt(
        sealer: &Sealer,
        kind: BlockKind,
        plaintext: &[u8],
        salt: [u8; crate::format::SALT_LEN],
    ) -> Result<SealedBlock, SealError> {
        sealer.seal_salted(kind, plaintext, salt)
    }
}

// Some of its functions serve only the `hazmat` door (Wycheproof, benchmarks).
#[cfg_attr(not(feature = "hazmat"), allow(dead_code, unreachable_pub))]
mod aead;
mod compress;
mod format;
pub mod padding;

use core::fmt;

use cairn_keys::{ArchiveKey, BlockIdKey, BlockKey};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use compress::decompress_bounded;
pub use format::{HEADER_LEN, MAGIC, SealedHeader};

/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Largest plaintext a block may hold (and the decompression bound): 64 MiB, the chunker's ceiling.
pub const MAX_PLAINTEXT_LEN: usize = 64 * 1024 * 1024;

/// Length of the encrypted body's own header (plaintext length, payload length).
pub const INNER_HEADER_LEN: usize = 8;

/// Largest sealed block: header, Padmé-padded body holding an uncompressed maximum plaintext
/// (Padmé(8 + 64 MiB) = 66 MiB), tag. A unit test checks the arithmetic.
pub const MAX_SEALED_LEN: usize = HEADER_LEN + 69_206_016 + aead::TAG_LEN;

/// Smallest sealed block: header, an empty body (inner header only), tag.
pub const MIN_SEALED_LEN: usize = HEADER_LEN + INNER_HEADER_LEN + aead::TAG_LEN;

/// Default zstd level, chosen by measurement (see `docs/format/seal.md`).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Accepted zstd levels (negative levels are zstd's fast modes).
pub const ZSTD_LEVELS: core::ops::RangeInclusive<i32> = -7..=19;

/// BLAKE3 `derive_key` context of the per-block AEAD key (key material: `BlockKey ‖ salt`).
pub const BLOCK_KEY_CONTEXT: &str = "cairn 2026-11-27 v1 seal block key";

/// Errors of this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SealError {
    /// The input is not a sealed block: wrong magic, size, padding size or reserved bits. This
    /// is decided from public bytes alone, without a key.
    #[error("not a sealed block: {0}")]
    Malformed(&'static str),
    /// An [`Identified`] block was named by a sealer with another id key.
    #[error("the block was identified by another sealer")]
    WrongSealer,
    /// The block names a format version this crate does not read.
    #[error("unsupported sealed-block version {0}")]
    UnsupportedVersion(u8),
    /// The block names an AEAD algorithm this crate does not know.
    #[error("unknown AEAD algorithm {0}")]
    UnknownAlgorithm(u8),
    /// A plaintext is larger than [`MAX_PLAINTEXT_LEN`].
    #[error("plaintext of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The offending length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The zstd level is outside [`ZSTD_LEVELS`].
    #[error("zstd level {0} is outside {min}..={max}", min = ZSTD_LEVELS.start(), max = ZSTD_LEVELS.end())]
    InvalidLevel(i32),
    /// A zstd frame was invalid or did not expand to exactly the expected length.
    #[error("invalid or oversized compressed data")]
    Decompress,
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
    /// The block did not open: wrong key, wrong archive, wrong kind, wrong id, or any change to
    /// any byte. Deliberately says nothing more.
    #[error("the block failed to open")]
    Open,
}

/// The AEAD that seals a block; recorded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// AES-256-GCM (hardware-accelerated on x86-64 and ARMv8). The default.
    #[default]
    Aes256Gcm,
    /// XChaCha20-Poly1305, for CPUs without AES instructions.
    XChaCha20Poly1305,
}

impl Algorithm {
    /// The header byte.
    #[must_use]
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Aes256Gcm => 1,
            Self::XChaCha20Poly1305 => 2,
        }
    }

    /// Parses the header byte.
    ///
    /// # Errors
    /// [`SealError::UnknownAlgorithm`].
    pub const fn from_byte(b: u8) -> Result<Self, SealError> {
        match b {
            1 => Ok(Self::Aes256Gcm),
            2 => Ok(Self::XChaCha20Poly1305),
            other => Err(SealError::UnknownAlgorithm(other)),
        }
    }
}

/// What a block holds. Bound into the id and the AAD, so a block cannot be passed off as
/// another kind. Values 3..=255 are reserved for later object types and are carried as-is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKind(pub u8);

impl BlockKind {
    /// A chunk of file contents.
    pub const DATA: Self = Self(0);
    /// A directory tree object.
    pub const TREE: Self = Self(1);
    /// A snapshot object.
    pub const SNAPSHOT: Self = Self(2);
}

/// The public name of an archive (16 bytes), bound into every block's AAD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ArchiveId([u8; 16]);

impl ArchiveId {
    /// Wraps 16 bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// A block id: `BLAKE3-keyed(BlockIdKey, kind ‖ plaintext)`. Public (the server indexes by it),
/// but unlinkable across archives.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId([u8; 32]);

impl BlockId {
    /// Wraps 32 bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl ConstantTimeEq for BlockId {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({self})")
    }
}

/// Sealing options, validated by [`SealConfig::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealConfig {
    algorithm: Algorithm,
    zstd_level: i32,
}

impl Default for SealConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Aes256Gcm,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }
}

impl SealConfig {
    /// Validates the options.
    ///
    /// # Errors
    /// [`SealError::InvalidLevel`] if the level is outside [`ZSTD_LEVELS`].
    pub fn new(algorithm: Algorithm, zstd_level: i32) -> Result<Self, SealError> {
        if !ZSTD_LEVELS.contains(&zstd_level) {
            return Err(SealError::InvalidLevel(zstd_level));
        }
        Ok(Self {
            algorithm,
            zstd_level,
        })
    }

    /// The AEAD new blocks are sealed with (any known one opens).
    #[must_use]
    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The zstd level.
    #[must_use]
    pub const fn zstd_level(&self) -> i32 {
        self.zstd_level
    }
}

/// Length of a block's salt.
pub const SALT_LEN: usize = format::SALT_LEN;

/// A fresh salt from the operating system's CSPRNG, for [`Sealer::seal_into`].
///
/// # Errors
/// [`SealError::Rng`] if the OS generator fails.
pub fn random_salt() -> Result<[u8; SALT_LEN], SealError> {
    let mut salt = [0u8; SALT_LEN];
    getrandom::fill(&mut salt).map_err(|_| SealError::Rng)?;
    Ok(salt)
}

/// A plaintext named by [`Sealer::identify`] (owned) or [`Sealer::identify_borrowed`] (`P` a
/// borrowed `&[u8]`: a pipeline that asks its store right away seals straight from its read
/// buffer, without copying the block), ready for [`Sealer::seal_identified`].
#[derive(Clone, PartialEq, Eq)]
pub struct Identified<P = Vec<u8>> {
    id: BlockId,
    kind: BlockKind,
    plaintext: P,
    id_key_tag: [u8; 16],
}

impl<P: AsRef<[u8]>> Identified<P> {
    /// The block's id.
    #[must_use]
    pub fn id(&self) -> BlockId {
        self.id
    }

    /// The block's kind.
    #[must_use]
    pub fn kind(&self) -> BlockKind {
        self.kind
    }

    /// The plaintext.
    #[must_use]
    pub fn plaintext(&self) -> &[u8] {
        self.plaintext.as_ref()
    }
}

impl<P: AsRef<[u8]>> fmt::Debug for Identified<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identified")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("len", &self.plaintext.as_ref().len())
            .finish_non_exhaustive()
    }
}

/// A sealed block: the bytes to store, and its id.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBlock {
    id: BlockId,
    bytes: Vec<u8>,
}

impl SealedBlock {
    /// The block's id (also in its header).
    #[must_use]
    pub fn id(&self) -> BlockId {
        self.id
    }

    /// The sealed bytes.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The sealed bytes, owned.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl fmt::Debug for SealedBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedBlock")
            .field("id", &self.id)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Seals and opens the blocks of one archive. Cheap to share across threads.
pub struct Sealer {
    id_key: BlockIdKey,
    /// Names this sealer's id key (a keyed hash of a constant, not the key): an [`Identified`]
    /// block carries it, so one sealer never seals another's ids.
    id_key_tag: [u8; 16],
    block_key: BlockKey,
    archive: ArchiveId,
    config: SealConfig,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("archive", &self.archive)
            .field("config", &self.config)
            .field("keys", &"[REDACTED]")
            .finish()
    }
}

impl Sealer {
    /// A sealer for the archive whose root key is `root`.
    #[must_use]
    pub fn new(root: &ArchiveKey, archive: ArchiveId, config: SealConfig) -> Self {
        Self::from_keys(root.block_id_key(), root.block_key(), archive, config)
    }

    /// A sealer from the two subkeys it uses.
    #[must_use]
    pub fn from_keys(
        id_key: BlockIdKey,
        block_key: BlockKey,
        archive: ArchiveId,
        config: SealConfig,
    ) -> Self {
        let mut id_key_tag = [0u8; 16];
        id_key_tag.copy_from_slice(
            &blake3::keyed_hash(id_key.expose_secret(), b"cairn seal identified tag").as_bytes()
                [..16],
        );
        Self {
            id_key,
            id_key_tag,
            block_key,
            archive,
            config,
        }
    }

    /// The archive this sealer belongs to.
    #[must_use]
    pub fn archive(&self) -> ArchiveId {
        self.archive
    }

    /// The id a plaintext of this kind gets in this archive (without sealing it): lets a
    /// backup skip blocks the archive already holds.
    #[must_use]
    pub fn block_id(&self, kind: BlockKind, plaintext: &[u8]) -> BlockId {
        let mut h = blake3::Hasher::new_keyed(self.id_key.expose_secret());
        h.update(&[kind.0]);
        h.update(plaintext);
        BlockId(*h.finalize().as_bytes())
    }

    /// Seals a plaintext with a fresh random salt.
    ///
    /// # Errors
    /// [`SealError::TooLarge`] over [`MAX_PLAINTEXT_LEN`]; [`SealError::Rng`] if the OS RNG fails.
    pub fn seal(&self, kind: BlockKind, plaintext: &[u8]) -> Result<SealedBlock, SealError> {
        self.seal_salted(kind, plaintext, random_salt()?)
    }

    fn seal_salted(
        &self,
        kind: BlockKind,
        plaintext: &[u8],
        salt: [u8; format::SALT_LEN],
    ) -> Result<SealedBlock, SealError> {
        let mut bytes = Vec::new();
        let id = self.seal_into(kind, plaintext, salt, &mut bytes)?;
        Ok(SealedBlock { id, bytes })
    }

    /// Seals into a caller-owned buffer (cleared first), so a pipeline can reuse one allocation
    /// per worker; returns the block id. The salt MUST be unique per block: draw it with
    /// [`random_salt`].
    ///
    /// # Errors
    /// [`SealError::TooLarge`] over [`MAX_PLAINTEXT_LEN`].
    pub fn seal_into(
        &self,
        kind: BlockKind,
        plaintext: &[u8],
        salt: [u8; format::SALT_LEN],
        out: &mut Vec<u8>,
    ) -> Result<BlockId, SealError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let id = self.block_id(kind, plaintext);
        self.seal_known(kind, plaintext, id, salt, out);
        Ok(id)
    }

    /// Names a plaintext without sealing it: a backup asks the store which ids it lacks, then
    /// seals only those with [`seal_identified`](Self::seal_identified), which reuses the id
    /// instead of hashing the plaintext a second time.
    #[must_use]
    pub fn identify(&self, kind: BlockKind, plaintext: Vec<u8>) -> Identified {
        Identified {
            id: self.block_id(kind, &plaintext),
            kind,
            plaintext,
            id_key_tag: self.id_key_tag,
        }
    }

    /// Names a borrowed plaintext without sealing or copying it: as [`identify`](Self::identify).
    #[must_use]
    pub fn identify_borrowed<'a>(
        &self,
        kind: BlockKind,
        plaintext: &'a [u8],
    ) -> Identified<&'a [u8]> {
        Identified {
            id: self.block_id(kind, plaintext),
            kind,
            plaintext,
            id_key_tag: self.id_key_tag,
        }
    }

    /// Seals an [`Identified`] plaintext (made by this sealer) with a fresh random salt.
    ///
    /// # Errors
    /// [`SealError::TooLarge`] over [`MAX_PLAINTEXT_LEN`]; [`SealError::Rng`] if the OS RNG fails;
    /// [`SealError::WrongSealer`] if `block` was identified by a sealer with another id key (its
    /// id would not match the plaintext under this one).
    pub fn seal_identified<P: AsRef<[u8]>>(
        &self,
        block: &Identified<P>,
    ) -> Result<SealedBlock, SealError> {
        let plaintext = block.plaintext.as_ref();
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(SealError::TooLarge {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        if block.id_key_tag != self.id_key_tag {
            return Err(SealError::WrongSealer);
        }
        let mut bytes = Vec::new();
        self.seal_known(block.kind, plaintext, block.id, random_salt()?, &mut bytes);
        Ok(SealedBlock {
            id: block.id,
            bytes,
        })
    }

    /// Seals `plaintext` (at most [`MAX_PLAINTEXT_LEN`] bytes) whose id under this sealer is `id`.
    fn seal_known(
        &self,
        kind: BlockKind,
        plaintext: &[u8],
        id: BlockId,
        salt: [u8; format::SALT_LEN],
        out: &mut Vec<u8>,
    ) {
        // Body: plaintext length ‖ payload length ‖ payload ‖ zeros up to a Padmé size. The
        // buffer is sized once for the largest body (the plaintext stored as it is: a kept
        // frame is shorter), and the frame is compressed straight into it.
        out.clear();
        out.reserve(HEADER_LEN + format::body_len(plaintext.len()) + aead::TAG_LEN);
        out.resize(HEADER_LEN + INNER_HEADER_LEN, 0);
        let compressed = compress::compress_into(plaintext, self.config.zstd_level, out);
        if !compressed {
            out.extend_from_slice(plaintext);
        }
        let payload_len = out.len() - HEADER_LEN - INNER_HEADER_LEN;
        let header = SealedHeader {
            version: FORMAT_VERSION,
            algorithm: self.config.algorithm,
            kind,
            compressed,
            salt,
            id,
        };
        out[..HEADER_LEN].copy_from_slice(&header.encode());
        out[HEADER_LEN..HEADER_LEN + 4]
            .copy_from_slice(&format::len_u32(plaintext.len()).to_le_bytes());
        out[HEADER_LEN + 4..HEADER_LEN + INNER_HEADER_LEN]
            .copy_from_slice(&format::len_u32(payload_len).to_le_bytes());
        out.resize(HEADER_LEN + format::body_len(payload_len), 0);

        let (head, body) = out.split_at_mut(HEADER_LEN);
        let aad = format::aad(head, &self.archive);
        let key = self.derive_block_key(&salt);
        let tag = match header.algorithm {
            Algorithm::Aes256Gcm => aead::aes256gcm_seal_detached(&key, &[0; 12], &aad, body),
            Algorithm::XChaCha20Poly1305 => aead::xchacha_seal_detached(&key, &[0; 24], &aad, body),
        };
        out.extend_from_slice(&tag);
    }

    /// Opens a sealed block that must be of `kind` and named `expected` in this archive, and
    /// returns its plaintext.
    ///
    /// # Errors
    /// [`SealError::Malformed`], [`SealError::UnsupportedVersion`] or
    /// [`SealError::UnknownAlgorithm`] for framing that any observer could reject;
    /// [`SealError::Open`] for everything else (wrong key, archive, kind or id; any modification).
    pub fn open(
        &self,
        kind: BlockKind,
        expected: &BlockId,
        sealed: &[u8],
    ) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::new();
        self.open_into(kind, expected, sealed, &mut out)?;
        Ok(out)
    }

    /// Opens into a caller-owned buffer (cleared first; on error it is left empty).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_into(
        &self,
        kind: BlockKind,
        expected: &BlockId,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        out.clear();
        let result = self.open_inner(kind, expected, sealed, out);
        if result.is_err() {
            // Whatever was decrypted before a later check failed is not handed out.
            zeroize::Zeroize::zeroize(out);
            out.clear();
        }
        result
    }

    /// [`open`](Self::open) for sealed bytes the caller hands over. An AES-256-GCM block is
    /// decrypted where it lies, without the copy `open` makes first (a block's worth of memory
    /// traffic per block restored). On error the buffer is zeroized.
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_owned(
        &self,
        kind: BlockKind,
        expected: &BlockId,
        mut sealed: Vec<u8>,
    ) -> Result<Vec<u8>, SealError> {
        let result = self.open_owned_inner(kind, expected, &mut sealed);
        if result.is_err() {
            zeroize::Zeroize::zeroize(&mut sealed);
            sealed.clear();
        }
        result.map(|()| sealed)
    }

    fn open_inner(
        &self,
        kind: BlockKind,
        expected: &BlockId,
        sealed: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let header = Self::slot_checked(kind, expected, sealed)?;
        let (head, body_and_tag) = sealed.split_at(HEADER_LEN);
        let aad = format::aad(head, &self.archive);
        out.extend_from_slice(body_and_tag);
        self.open_at(kind, expected, &header, &aad, out, 0)
    }

    fn open_owned_inner(
        &self,
        kind: BlockKind,
        expected: &BlockId,
        buf: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let header = Self::slot_checked(kind, expected, buf)?;
        let aad = format::aad(&buf[..HEADER_LEN], &self.archive);
        self.open_at(kind, expected, &header, &aad, buf, HEADER_LEN)
    }

    /// Authenticates and decrypts `buf[start..]` (body ‖ tag), then checks what it holds.
    /// AES-256-GCM moves the plaintext to the front as it decrypts; XChaCha20-Poly1305 has the
    /// body moved there first (nothing to move when `start` is 0).
    fn open_at(
        &self,
        kind: BlockKind,
        expected: &BlockId,
        header: &SealedHeader,
        aad: &[u8],
        buf: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), SealError> {
        let key = self.derive_block_key(&header.salt);
        match header.algorithm {
            Algorithm::Aes256Gcm => aead::aes256gcm_open_within(&key, &[0; 12], aad, buf, start),
            Algorithm::XChaCha20Poly1305 => {
                buf.drain(..start);
                aead::xchacha_open_in_place(&key, &[0; 24], aad, buf)
            }
        }
        .map_err(|_| SealError::Open)?;
        self.opened_body(kind, expected, header, buf)
    }

    /// The key-less checks, then the slot check: a valid block of this archive stored under
    /// another id (or kind) is refused before anything is decrypted.
    fn slot_checked(
        kind: BlockKind,
        expected: &BlockId,
        sealed: &[u8],
    ) -> Result<SealedHeader, SealError> {
        let header = SealedHeader::parse(sealed)?;
        let id_ok = header.id.ct_eq(expected) & subtle::Choice::from(u8::from(header.kind == kind));
        if !bool::from(id_ok) {
            return Err(SealError::Open);
        }
        Ok(header)
    }

    /// The checks after decryption: `out` holds the authenticated body and becomes the
    /// plaintext, whose id must be the one the header claims.
    fn opened_body(
        &self,
        kind: BlockKind,
        expected: &BlockId,
        header: &SealedHeader,
        out: &mut Vec<u8>,
    ) -> Result<(), SealError> {
        let (plain_len, payload) = format::parse_body(out).ok_or(SealError::Open)?;
        if header.compressed {
            let plain = decompress_bounded(payload, plain_len).map_err(|_| SealError::Open)?;
            zeroize::Zeroize::zeroize(out);
            *out = plain;
        } else if payload.len() == plain_len {
            out.copy_within(INNER_HEADER_LEN..INNER_HEADER_LEN + plain_len, 0);
            out.truncate(plain_len);
        } else {
            return Err(SealError::Open);
        }
        // Post-decrypt commitment: the plaintext must hash to the id the header claims.
        let actual = self.block_id(kind, out);
        if !bool::from(actual.ct_eq(expected)) {
            return Err(SealError::Open);
        }
        Ok(())
    }

    fn derive_block_key(&self, salt: &[u8; format::SALT_LEN]) -> Zeroizing<[u8; 32]> {
        let mut h = blake3::Hasher::new_derive_key(BLOCK_KEY_CONTEXT);
        h.update(self.block_key.expose_secret());
        h.update(salt);
        let key = Zeroizing::new(*h.finalize().as_bytes());
        zeroize::Zeroize::zeroize(&mut h);
        key
    }
}
