//! The AEAD layer `cairn-seal` uses: AES-256-GCM and XChaCha20-Poly1305 behind one small API.
//!
//! Nonce lengths are fixed by type (`[u8; 12]` for AES-256-GCM, `[u8; 24]` for
//! XChaCha20-Poly1305), the tag is always 16 bytes and always the last 16 bytes of the
//! ciphertext, and every failure is the one opaque [`AeadError`]. Sealed blocks use a fresh
//! derived key per block with an all-zero nonce (see `docs/format/seal.md`); these functions take
//! the nonce explicitly so the Wycheproof vectors run through exactly this code.
//!
//! AES-256-GCM runs on AWS-LC (`aws-lc-rs`, the same provider rustls uses here), XChaCha20-Poly1305
//! on RustCrypto's `chacha20poly1305`; `docs/design/0007-aes-gcm-on-aws-lc.md` gives the reason
//! and `tests/cross.rs` checks AES-256-GCM against RustCrypto's `aes-gcm`.

use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInOut, KeyInit};

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
    // A 32-byte key always makes a key and sealing fails only past GCM's message limit (2^36
    // bytes), which no caller can reach; if either ever failed, the all-zero tag fails every open
    // and leaks nothing.
    let Some(cipher) = aws_lc_key(key) else {
        return [0; TAG_LEN];
    };
    cipher
        .seal_in_place_separate_tag(
            aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
            aws_lc_rs::aead::Aad::from(aad),
            buf,
        )
        .ok()
        .and_then(|tag| <[u8; TAG_LEN]>::try_from(tag.as_ref()).ok())
        .unwrap_or([0; TAG_LEN])
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

/// AES-256-GCM in place: `buf` holds ciphertext ‖ tag; on success it is truncated to the
/// plaintext. On error it is zeroized and emptied, so no unauthenticated plaintext is handed out.
///
/// # Errors
/// [`AeadError`] if `buf` is shorter than a tag or does not authenticate.
pub fn aes256gcm_open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), AeadError> {
    aes256gcm_open_within(key, nonce, aad, buf, 0)
}

/// AES-256-GCM within a buffer: `buf[start..]` holds ciphertext ‖ tag; on success the plaintext
/// is moved to the front as it is decrypted (no separate copy) and `buf` truncated to it. On
/// error `buf` is zeroized and emptied.
///
/// # Errors
/// [`AeadError`] if `buf[start..]` is shorter than a tag or does not authenticate.
pub fn aes256gcm_open_within(
    key: &[u8; 32],
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut Vec<u8>,
    start: usize,
) -> Result<(), AeadError> {
    let opened = aws_lc_key(key)
        .filter(|_| start <= buf.len())
        .ok_or(AeadError)
        .and_then(|cipher| {
            cipher
                .open_within(
                    aws_lc_rs::aead::Nonce::assume_unique_for_key(*nonce),
                    aws_lc_rs::aead::Aad::from(aad),
                    buf,
                    start..,
                )
                .map(|plain| plain.len())
                .map_err(|_| AeadError)
        });
    finish_open(buf, opened)
}

/// The AES-256-GCM key for `key` (AWS-LC; see `docs/design/0007-aes-gcm-on-aws-lc.md`). The
/// expanded key lives in memory AWS-LC allocated, which it zeroizes when the key is dropped.
fn aws_lc_key(key: &[u8; 32]) -> Option<aws_lc_rs::aead::LessSafeKey> {
    aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, key)
        .ok()
        .map(aws_lc_rs::aead::LessSafeKey::new)
}

/// Ends an in-place open: keeps the first `len` bytes on success, zeroizes everything on failure.
fn finish_open(buf: &mut Vec<u8>, opened: Result<usize, AeadError>) -> Result<(), AeadError> {
    match opened {
        Ok(len) => {
            buf.truncate(len);
            Ok(())
        }
        Err(e) => {
            zeroize::Zeroize::zeroize(buf);
            buf.clear();
            Err(e)
        }
    }
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
    // Sealing fails only past the AEAD's message limit, which no caller can reach; if it ever
    // did, the all-zero tag fails every open and leaks nothing.
    XChaCha20Poly1305::new(&(*key).into())
        .encrypt_inout_detached(&(*nonce).into(), aad, buf.into())
        .map(<[u8; TAG_LEN]>::from)
        .unwrap_or([0; TAG_LEN])
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

/// XChaCha20-Poly1305 in place: `buf` holds ciphertext ‖ tag; on success it is truncated to the
/// plaintext. On error it is zeroized and emptied (the tag is checked before anything is
/// decrypted).
///
/// # Errors
/// [`AeadError`] if `buf` is shorter than a tag or does not authenticate.
pub fn xchacha_open_in_place(
    key: &[u8; 32],
    nonce: &[u8; 24],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), AeadError> {
    let opened = buf
        .len()
        .checked_sub(TAG_LEN)
        .ok_or(AeadError)
        .and_then(|body| {
            let (ct, tag) = buf.split_at_mut(body);
            let tag = <[u8; TAG_LEN]>::try_from(&*tag).map_err(|_| AeadError)?;
            XChaCha20Poly1305::new(&(*key).into())
                .decrypt_inout_detached(&(*nonce).into(), aad, ct.into(), &tag.into())
                .map(|()| body)
                .map_err(|_| AeadError)
        });
    finish_open(buf, opened)
}
