//! The sealed-block byte layout (`docs/format/seal.md`): header encoding, key-less framing checks,
//! the AAD, and the encrypted body's own header and padding.

use crate::padding::{is_padme, padme};
use crate::{
    ArchiveId, BlockId, BlockKind, FORMAT_VERSION, INNER_HEADER_LEN, MAX_PLAINTEXT_LEN,
    MAX_SEALED_LEN, MIN_SEALED_LEN, SealError, aead::TAG_LEN,
};

/// The first four bytes of every sealed block.
pub const MAGIC: [u8; 4] = *b"CRNB";

/// Length of the fixed header.
pub const HEADER_LEN: usize = 64;

/// Length of the per-block salt.
pub(crate) const SALT_LEN: usize = 24;

/// Header flag: the payload is a zstd frame.
const FLAG_COMPRESSED: u8 = 0x01;

/// The public header of a sealed block, readable without a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealedHeader {
    /// Format version (1).
    pub version: u8,
    /// The AEAD that sealed the body.
    pub algorithm: crate::Algorithm,
    /// What the block holds.
    pub kind: BlockKind,
    /// Whether the payload is zstd-compressed.
    pub compressed: bool,
    /// The per-block salt the AEAD key is derived from.
    pub salt: [u8; SALT_LEN],
    /// The block's id.
    pub id: BlockId,
}

impl SealedHeader {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&MAGIC);
        h[4] = self.version;
        h[5] = self.algorithm.to_byte();
        h[6] = self.kind.0;
        h[7] = if self.compressed { FLAG_COMPRESSED } else { 0 };
        h[8..32].copy_from_slice(&self.salt);
        h[32..64].copy_from_slice(self.id.as_bytes());
        h
    }

    /// Checks the framing of a whole sealed block and returns its header. Needs no key: this is
    /// what a server can verify (magic, version, algorithm, reserved bits, and that the body has a
    /// valid Padmé size within the bounds).
    ///
    /// # Errors
    /// [`SealError::Malformed`], [`SealError::UnsupportedVersion`], [`SealError::UnknownAlgorithm`].
    pub fn parse(sealed: &[u8]) -> Result<Self, SealError> {
        if sealed.len() < MIN_SEALED_LEN {
            return Err(SealError::Malformed(
                "shorter than the smallest sealed block",
            ));
        }
        if sealed.len() > MAX_SEALED_LEN {
            return Err(SealError::Malformed("longer than the largest sealed block"));
        }
        let (h, _) = sealed.split_at(HEADER_LEN);
        if h[..4] != MAGIC {
            return Err(SealError::Malformed("bad magic"));
        }
        if h[4] != FORMAT_VERSION {
            return Err(SealError::UnsupportedVersion(h[4]));
        }
        let algorithm = crate::Algorithm::from_byte(h[5])?;
        if h[7] & !FLAG_COMPRESSED != 0 {
            return Err(SealError::Malformed("reserved flag bits set"));
        }
        let body = sealed.len() - HEADER_LEN - TAG_LEN;
        if !is_padme(body as u64) {
            return Err(SealError::Malformed("body length is not a padded size"));
        }
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&h[8..32]);
        let mut id = [0u8; 32];
        id.copy_from_slice(&h[32..64]);
        Ok(Self {
            version: h[4],
            algorithm,
            kind: BlockKind(h[6]),
            compressed: h[7] & FLAG_COMPRESSED != 0,
            salt,
            id: BlockId::from_bytes(id),
        })
    }
}

/// Length of the associated data: header, archive id, zeros up to a multiple of 64 bytes.
///
/// The zeros cost nothing in security and keep the ciphertext aligned to the 4-block batches of
/// the vectorised Poly1305 and GHASH backends (with an 80-byte AAD, RustCrypto's AVX2 Poly1305
/// falls back to one block at a time: XChaCha20-Poly1305 sealing measured 40 % slower).
pub(crate) const AAD_LEN: usize = 128;

/// The associated data: the whole header, the archive id, then zeros to [`AAD_LEN`].
pub(crate) fn aad(header: &[u8], archive: &ArchiveId) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[..HEADER_LEN].copy_from_slice(&header[..HEADER_LEN]);
    aad[HEADER_LEN..HEADER_LEN + 16].copy_from_slice(archive.as_bytes());
    aad
}

/// The encrypted body's length for a payload: Padmé of inner header + payload. Payloads are at
/// most [`MAX_PLAINTEXT_LEN`], so the result fits easily; it saturates rather than wraps.
pub(crate) fn body_len(payload_len: usize) -> usize {
    let len = u64::try_from(INNER_HEADER_LEN.saturating_add(payload_len)).unwrap_or(u64::MAX);
    usize::try_from(padme(len)).unwrap_or(usize::MAX)
}

/// A length known to be at most [`MAX_PLAINTEXT_LEN`] as the `u32` the format stores.
pub(crate) fn len_u32(len: usize) -> u32 {
    u32::try_from(len.min(MAX_PLAINTEXT_LEN)).unwrap_or(u32::MAX)
}

/// Parses a decrypted body: `(plaintext length, payload)`. `None` unless the body is canonical:
/// lengths in bounds, padded to exactly the Padmé size, padding all zero.
pub(crate) fn parse_body(inner: &[u8]) -> Option<(usize, &[u8])> {
    let (head, rest) = inner.split_at_checked(INNER_HEADER_LEN)?;
    let plain_len = usize::try_from(u32::from_le_bytes(head[..4].try_into().ok()?)).ok()?;
    let payload_len = usize::try_from(u32::from_le_bytes(head[4..8].try_into().ok()?)).ok()?;
    if plain_len > MAX_PLAINTEXT_LEN || payload_len > rest.len() {
        return None;
    }
    if body_len(payload_len) != inner.len() {
        return None;
    }
    let (payload, pad) = rest.split_at(payload_len);
    pad.iter().all(|&b| b == 0).then_some((plain_len, payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_sealed_len_is_the_padded_maximum() {
        assert_eq!(
            MAX_SEALED_LEN,
            HEADER_LEN + body_len(MAX_PLAINTEXT_LEN) + TAG_LEN
        );
        assert_eq!(MIN_SEALED_LEN, HEADER_LEN + body_len(0) + TAG_LEN);
    }
}
