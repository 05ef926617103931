//! The binary bodies of Cairn's storage API (`docs/format/wire.md`), as pure functions shared by
//! the agent and the server: id lists and block batches. Everything is little-endian; every
//! length is checked against the bytes that are there before anything is allocated.
//!
//! ```
//! use cairn_wire::{encode_batch, split_batch};
//!
//! let body = encode_batch(&[b"first".as_slice(), b"second".as_slice()]);
//! assert_eq!(split_batch(&body).unwrap(), [b"first".as_slice(), b"second".as_slice()]);
//! assert!(split_batch(&body[..body.len() - 1]).is_err());
//! ```

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(clippy::big_endian_bytes, clippy::host_endian_bytes)]

use cairn_seal::{BlockId, SealedHeader};

pub mod refs;

use refs::{RefList, RefsError};

/// Media type of an id list: 32-byte ids, back to back.
pub const IDS_MEDIA_TYPE: &str = "application/vnd.cairn.ids";
/// Media type of a block batch.
pub const BLOCKS_MEDIA_TYPE: &str = "application/vnd.cairn.blocks.v1";

/// The first bytes of a block batch.
pub const BATCH_MAGIC: [u8; 4] = *b"CRNK";
/// The batch format version.
pub const BATCH_VERSION: u8 = 1;
/// Batch header: magic, version, three reserved zero bytes, block count (u32).
pub const BATCH_HEADER_LEN: usize = 12;

/// Most ids in one id list.
pub const MAX_IDS: usize = 65_536;
/// Most blocks in one batch.
pub const MAX_BATCH_BLOCKS: usize = 4_096;
/// Largest batch body, in bytes (the upload route's body limit).
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// Media type of a snapshot upload with its reference list (`docs/format/wire.md` §5): the
/// sealed snapshot's length (u32), the sealed snapshot, then its [`RefList`].
pub const SNAPSHOT_MEDIA_TYPE: &str = "application/vnd.cairn.snapshot.v2";
/// Largest snapshot upload with its list, in bytes.
pub const MAX_SNAPSHOT_BODY: usize =
    4 + cairn_seal::MAX_SEALED_LEN + refs::REFS_HEADER_LEN + 32 * refs::MAX_REFS;

/// Why a body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// An id list whose length is not a multiple of 32, or with too many ids.
    #[error("malformed id list")]
    IdList,
    /// A batch header that is not magic, version 1, zero reserved bytes.
    #[error("malformed batch header")]
    Header,
    /// More blocks than allowed, or a batch larger than allowed.
    #[error("batch too large")]
    TooLarge,
    /// The block lengths do not add up to the body.
    #[error("batch framing does not match its length")]
    Framing,
    /// A block that is not a well-framed sealed block.
    #[error("block {0} is not a sealed block")]
    Block(usize),
    /// A snapshot upload's reference list is malformed.
    #[error("reference list: {0}")]
    Refs(#[from] RefsError),
}

/// Parses an id list.
///
/// # Errors
/// [`WireError::IdList`].
pub fn decode_ids(body: &[u8]) -> Result<Vec<BlockId>, WireError> {
    if !body.len().is_multiple_of(32) || body.len() / 32 > MAX_IDS {
        return Err(WireError::IdList);
    }
    Ok(body
        .chunks_exact(32)
        .map(|c| {
            let mut id = [0u8; 32];
            id.copy_from_slice(c);
            BlockId::from_bytes(id)
        })
        .collect())
}

/// Encodes an id list.
#[must_use]
pub fn encode_ids(ids: &[BlockId]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ids.len() * 32);
    for id in ids {
        out.extend_from_slice(id.as_bytes());
    }
    out
}

/// Encodes a block batch. Blocks longer than `u32::MAX` cannot be sealed blocks; they are the
/// caller's bug and make the result unparsable rather than silently truncated.
#[must_use]
pub fn encode_batch<B: AsRef<[u8]>>(blocks: &[B]) -> Vec<u8> {
    let total: usize = blocks.iter().map(|b| 4 + b.as_ref().len()).sum();
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + total);
    out.extend_from_slice(&BATCH_MAGIC);
    out.push(BATCH_VERSION);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(
        &u32::try_from(blocks.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    for b in blocks {
        let b = b.as_ref();
        out.extend_from_slice(&u32::try_from(b.len()).unwrap_or(u32::MAX).to_le_bytes());
        out.extend_from_slice(b);
    }
    out
}

/// Splits a block batch into its blocks (borrowed), checking the framing only.
///
/// # Errors
/// [`WireError::Header`], [`WireError::TooLarge`], [`WireError::Framing`].
pub fn split_batch(body: &[u8]) -> Result<Vec<&[u8]>, WireError> {
    if body.len() > MAX_BATCH_BYTES {
        return Err(WireError::TooLarge);
    }
    let (header, mut rest) = body
        .split_at_checked(BATCH_HEADER_LEN)
        .ok_or(WireError::Header)?;
    if header.get(..4) != Some(&BATCH_MAGIC[..])
        || header.get(4) != Some(&BATCH_VERSION)
        || header.get(5..8) != Some(&[0, 0, 0][..])
    {
        return Err(WireError::Header);
    }
    let count = header
        .get(8..12)
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or(WireError::Header)? as usize;
    if count > MAX_BATCH_BLOCKS {
        return Err(WireError::TooLarge);
    }
    let mut blocks = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, after) = rest.split_at_checked(4).ok_or(WireError::Framing)?;
        let len = <[u8; 4]>::try_from(len)
            .map(u32::from_le_bytes)
            .map_err(|_| WireError::Framing)? as usize;
        let (block, after) = after.split_at_checked(len).ok_or(WireError::Framing)?;
        blocks.push(block);
        rest = after;
    }
    if !rest.is_empty() {
        return Err(WireError::Framing);
    }
    Ok(blocks)
}

/// Parses an uploaded batch: framing, then each block's sealed-block framing (what the server
/// can check without a key). Returns each block's id (from its header) with its bytes.
///
/// # Errors
/// Any [`WireError`].
pub fn decode_upload(body: &[u8]) -> Result<Vec<(BlockId, &[u8])>, WireError> {
    split_batch(body)?
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            SealedHeader::parse(b)
                .map(|h| (h.id, b))
                .map_err(|_| WireError::Block(i))
        })
        .collect()
}

/// A snapshot upload with its reference list.
#[must_use]
pub fn encode_snapshot(sealed: &[u8], refs: &RefList) -> Vec<u8> {
    let list = refs.encode();
    let mut out = Vec::with_capacity(4 + sealed.len() + list.len());
    out.extend_from_slice(
        &u32::try_from(sealed.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    out.extend_from_slice(sealed);
    out.extend_from_slice(&list);
    out
}

/// Parses a snapshot upload: the sealed snapshot's framing (its id, from its header) and its
/// reference list ([`RefList::decode`]).
///
/// # Errors
/// [`WireError::TooLarge`], [`WireError::Framing`], [`WireError::Block`] (the snapshot is not
/// a sealed block), [`WireError::Refs`].
pub fn decode_snapshot(body: &[u8]) -> Result<(BlockId, &[u8], RefList), WireError> {
    if body.len() > MAX_SNAPSHOT_BODY {
        return Err(WireError::TooLarge);
    }
    let (len, rest) = body.split_at_checked(4).ok_or(WireError::Framing)?;
    let len = <[u8; 4]>::try_from(len)
        .map(u32::from_le_bytes)
        .map_err(|_| WireError::Framing)? as usize;
    if len > cairn_seal::MAX_SEALED_LEN {
        return Err(WireError::TooLarge);
    }
    let (sealed, list) = rest.split_at_checked(len).ok_or(WireError::Framing)?;
    let id = SealedHeader::parse(sealed)
        .map(|h| h.id)
        .map_err(|_| WireError::Block(0))?;
    Ok((id, sealed, RefList::decode(list)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_roundtrip_and_bounds() {
        let ids: Vec<BlockId> = (0..3u8).map(|i| BlockId::from_bytes([i; 32])).collect();
        assert_eq!(decode_ids(&encode_ids(&ids)), Ok(ids));
        assert_eq!(decode_ids(&[0; 33]), Err(WireError::IdList));
        assert_eq!(
            decode_ids(&vec![0; 32 * (MAX_IDS + 1)]),
            Err(WireError::IdList)
        );
        assert_eq!(decode_ids(&[]), Ok(vec![]));
    }

    #[test]
    fn batch_framing() {
        let blocks: Vec<Vec<u8>> = vec![vec![1; 10], vec![], vec![2; 3]];
        let body = encode_batch(&blocks);
        let split = split_batch(&body).map(|v| v.into_iter().map(<[u8]>::to_vec).collect());
        assert_eq!(split, Ok(blocks));
        // Every truncation and one extra byte are framing errors, never a panic.
        for cut in 0..body.len() {
            assert!(split_batch(&body[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = body.clone();
        longer.push(0);
        assert_eq!(split_batch(&longer), Err(WireError::Framing));
        let mut bad = body.clone();
        bad[5] = 1;
        assert_eq!(split_batch(&bad), Err(WireError::Header));
        let mut many = body;
        many[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(split_batch(&many), Err(WireError::TooLarge));
    }

    #[test]
    fn upload_needs_sealed_blocks() {
        let body = encode_batch(&[vec![0u8; 200]]);
        assert_eq!(decode_upload(&body), Err(WireError::Block(0)));
    }
}
