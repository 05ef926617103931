//! The AEAD layer `cairn-seal` uses: AES-256-GCM and XChaCha20-Poly1305 behind one small API.
//!
//! Nonce lengths are fixed by type (`[u8; 12]` for AES-256-GCM, `[u8; 24]` for
//! XChaCha20-Poly1305), the tag is always 16 bytes and always the last 16 bytes of the
//! ciphertext, and every failure is the one opaque [`AeadError`]. Sealed blocks use a fresh
//! derived key per block with an all-zero nonce (see `docs/format/seal.md`); these functions take
//! the nonce explicitly so the Wycheproof vectors run through exactly this code.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Nonce, Tag};
use chacha20poly1305::XChaCha20Poly1305;

/// Length of every authentication tag.
pub const TAG_LEN: usize = 16;

/// Authentication failed, or the input was too short to hold a tag. Deliberately says nothing more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authenticated decryption failed")]
pub struct AeadError;

/// AES-256-GCM: encrypts `msg` and returns ciphertext ‖ 16-byte tag.
#[must_use]
pub fn aes256gcm_seal(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    seal_vec::<Aes256Gcm>(key, nonce, aad, msg)
}

/// AES-256-GCM in place: `buf` holds the message and gets the tag appended.
pub fn aes256gcm_seal_in_place(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) {
    let tag = seal_detached::<Aes256Gcm>(key, nonce, aad, buf);
    buf.extend_from_slice(&tag);
}

/// AES-256-GCM on a slice: encrypts `buf` in place and returns the tag.
#[must_use]
pub fn aes256gcm_seal_detached(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    seal_detached::<Aes256Gcm>(key, nonce, aad, buf)
}

/// AES-256-GCM: authenticates and decrypts ciphertext ‖ tag.
///
/// # Errors
/// [`AeadError`] if the input is shorter than a tag or does not authenticate.
pub fn aes256gcm_open(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, AeadError> {
    open_vec::<Aes256Gcm>(key, nonce, aad, ct)
}

/// AES-256-GCM on a slice: authenticates `buf` with `tag`, then decrypts it in place. On error
/// `buf` is left as it was (the tag is checked before anything is decrypted).
///
/// # Errors
/// [`AeadError`] if the ciphertext does not authenticate.
pub fn aes256gcm_open_detached(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    open_detached::<Aes256Gcm>(key, nonce, aad, buf, tag)
}

/// XChaCha20-Poly1305: encrypts `msg` and returns ciphertext ‖ 16-byte tag.
#[must_use]
pub fn xchacha_seal(key: &[u8; 32], nonce: &[u8; 24], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    seal_vec::<XChaCha20Poly1305>(key, nonce, aad, msg)
}

/// XChaCha20-Poly1305 in place: `buf` holds the message and gets the tag appended.
pub fn xchacha_seal_in_place(key: &[u8; 32], nonce: &[u8; 24], aad: &[u8], buf: &mut Vec<u8>) {
    let tag = seal_detached::<XChaCha20Poly1305>(key, nonce, aad, buf);
    buf.extend_from_slice(&tag);
}

/// XChaCha20-Poly1305 on a slice: encrypts `buf` in place and returns the tag.
#[must_use]
pub fn xchacha_seal_detached(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    seal_detached::<XChaCha20Poly1305>(key, nonce, aad, buf)
}

/// XChaCha20-Poly1305: authenticates and decrypts ciphertext ‖ tag.
///
/// # Errors
/// [`AeadError`] if the input is shorter than a tag or does not authenticate.
pub fn xchacha_open(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, AeadError> {
    open_vec::<XChaCha20Poly1305>(key, nonce, aad, ct)
}

/// XChaCha20-Poly1305 on a slice: authenticates `buf` with `tag`, then decrypts it in place.
///
/// # Errors
/// [`AeadError`] if the ciphertext does not authenticate.
pub fn xchacha_open_detached(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    open_detached::<XChaCha20Poly1305>(key, nonce, aad, buf, tag)
}

// The one implementation behind both algorithms. The public functions fix the key, nonce and tag
// sizes by type, so the conversions below cannot fail for them; if one ever did, sealing yields an
// all-zero tag (which fails every open, never leaks) and opening fails.

fn seal_detached<A: AeadInOut + KeyInit>(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    let (Ok(cipher), Ok(nonce)) = (A::new_from_slice(key), <&Nonce<A>>::try_from(nonce)) else {
        return [0; TAG_LEN];
    };
    // Encryption fails only past the AEAD's message limit (2^36 bytes for GCM), which no caller
    // can reach: blocks are bounded far below.
    cipher
        .encrypt_inout_detached(nonce, aad, buf.into())
        .ok()
        .and_then(|tag| <[u8; TAG_LEN]>::try_from(tag.as_slice()).ok())
        .unwrap_or([0; TAG_LEN])
}

fn open_detached<A: AeadInOut + KeyInit>(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), AeadError> {
    let cipher = A::new_from_slice(key).map_err(|_| AeadError)?;
    let nonce = <&Nonce<A>>::try_from(nonce).map_err(|_| AeadError)?;
    let tag = <&Tag<A>>::try_from(&tag[..]).map_err(|_| AeadError)?;
    cipher
        .decrypt_inout_detached(nonce, aad, buf.into(), tag)
        .map_err(|_| AeadError)
}

fn seal_vec<A: AeadInOut + KeyInit>(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    msg: &[u8],
) -> Vec<u8> {
    let mut buf = Vec::with_capacity(msg.len() + TAG_LEN);
    buf.extend_from_slice(msg);
    let tag = seal_detached::<A>(key, nonce, aad, &mut buf);
    buf.extend_from_slice(&tag);
    buf
}

fn open_vec<A: AeadInOut + KeyInit>(
    key: &[u8; 32],
    nonce: &[u8],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, AeadError> {
    let body = ct.len().checked_sub(TAG_LEN).ok_or(AeadError)?;
    let (ct, tag) = ct.split_at(body);
    let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| AeadError)?;
    let mut buf = ct.to_vec();
    open_detached::<A>(key, nonce, aad, &mut buf, tag)?;
    Ok(buf)
}
