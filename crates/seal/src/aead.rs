//! The AEAD layer `cairn-seal` uses: AES-256-GCM and XChaCha20-Poly1305 behind one small API.
//!
//! Nonce lengths are fixed by type (`[u8; 12]` for AES-256-GCM, `[u8; 24]` for
//! XChaCha20-Poly1305), the tag is always 16 bytes and always the last 16 bytes of the
//! ciphertext, and every failure is the one opaque [`AeadError`]. Sealed blocks use a fresh
//! derived key per block with an all-zero nonce (see `docs/format/seal.md`); these functions take
//! the nonce explicitly so the Wycheproof vectors run through exactly this code.

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit};
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
    let mut buf = Vec::with_capacity(msg.len() + TAG_LEN);
    buf.extend_from_slice(msg);
    aes256gcm_seal_in_place(key, nonce, aad, &mut buf);
    buf
}

/// AES-256-GCM in place: `buf` holds the message and gets the tag appended.
pub fn aes256gcm_seal_in_place(key: &[u8; 32], nonce: &[u8; 12], aad: &[u8], buf: &mut Vec<u8>) {
    let tag = aes256gcm_seal_detached(key, nonce, aad, buf);
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
    let cipher = Aes256Gcm::new(key.into());
    // Encryption fails only for messages over 2^36 bytes, which no caller can pass (blocks are
    // bounded far below); an all-zero tag would then fail every open, never leak.
    cipher
        .encrypt_inout_detached(nonce.into(), aad, buf.into())
        .map(Into::into)
        .unwrap_or([0; TAG_LEN])
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
    Aes256Gcm::new(key.into())
        .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
        .map_err(|_| AeadError)
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
    let mut buf = ct.to_vec();
    aes256gcm_open_in_place(key, nonce, aad, &mut buf)?;
    Ok(buf)
}

/// AES-256-GCM in place: on success `buf` is truncated to the plaintext.
///
/// # Errors
/// [`AeadError`] if the input is shorter than a tag or does not authenticate.
pub fn aes256gcm_open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), AeadError> {
    let body = buf.len().checked_sub(TAG_LEN).ok_or(AeadError)?;
    let (ct, tag) = buf.split_at_mut(body);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| AeadError)?;
    Aes256Gcm::new(key.into())
        .decrypt_inout_detached(nonce.into(), aad, ct.into(), &tag.into())
        .map_err(|_| AeadError)?;
    buf.truncate(body);
    Ok(())
}

/// XChaCha20-Poly1305: encrypts `msg` and returns ciphertext ‖ 16-byte tag.
#[must_use]
pub fn xchacha_seal(key: &[u8; 32], nonce: &[u8; 24], aad: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(msg.len() + TAG_LEN);
    buf.extend_from_slice(msg);
    xchacha_seal_in_place(key, nonce, aad, &mut buf);
    buf
}

/// XChaCha20-Poly1305 in place: `buf` holds the message and gets the tag appended.
pub fn xchacha_seal_in_place(key: &[u8; 32], nonce: &[u8; 24], aad: &[u8], buf: &mut Vec<u8>) {
    let tag = xchacha_seal_detached(key, nonce, aad, buf);
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
    let cipher = XChaCha20Poly1305::new(key.into());
    // As for AES-GCM: fails only beyond 2^38 bytes, unreachable here.
    cipher
        .encrypt_inout_detached(nonce.into(), aad, buf.into())
        .map(Into::into)
        .unwrap_or([0; TAG_LEN])
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
    XChaCha20Poly1305::new(key.into())
        .decrypt_inout_detached(nonce.into(), aad, buf.into(), tag.into())
        .map_err(|_| AeadError)
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
    let mut buf = ct.to_vec();
    xchacha_open_in_place(key, nonce, aad, &mut buf)?;
    Ok(buf)
}

/// XChaCha20-Poly1305 in place: on success `buf` is truncated to the plaintext.
///
/// # Errors
/// [`AeadError`] if the input is shorter than a tag or does not authenticate.
pub fn xchacha_open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), AeadError> {
    let body = buf.len().checked_sub(TAG_LEN).ok_or(AeadError)?;
    let (ct, tag) = buf.split_at_mut(body);
    let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| AeadError)?;
    XChaCha20Poly1305::new(key.into())
        .decrypt_inout_detached(nonce.into(), aad, ct.into(), &tag.into())
        .map_err(|_| AeadError)?;
    buf.truncate(body);
    Ok(())
}
