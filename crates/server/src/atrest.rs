//! The server's storage key ring: what it encrypts stored events with (the monitoring data it
//! may read, unlike backup blocks, which it never can). AES-256-GCM with a random 96-bit nonce
//! per record; every record names the id of the key that sealed it, the newest key seals, and
//! older keys stay for reading until the records they sealed are gone.
//!
//! On disk (`DATA/storage-keys`, mode 0600): one key per line, `<id> <64 hex digits>`, oldest
//! first; ids are `k1`, `k2`, ... Rotation appends a line.

use std::fmt;
use std::io::Write;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::ServerError;

const NONCE_LEN: usize = 12;

/// Why a record could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AtRestError {
    /// The record names a key the ring does not hold.
    #[error("unknown storage key id")]
    UnknownKey,
    /// The record is damaged, or was moved to another row (its context differs).
    #[error("stored record does not authenticate")]
    Damaged,
    /// The random source failed.
    #[error("random source failed")]
    Random,
}

/// The ring of storage keys.
pub struct KeyRing {
    keys: Vec<(String, Aes256Gcm)>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("KeyRing").field("ids", &ids).finish()
    }
}

fn random32() -> Result<Zeroizing<[u8; 32]>, ServerError> {
    let mut k = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *k)
        .map_err(|e| ServerError::io("random source", std::io::Error::other(e)))?;
    Ok(k)
}

impl KeyRing {
    /// Appends a fresh key to the ring file (creating it, 0600); returns the new key's id.
    ///
    /// # Errors
    /// [`ServerError::Io`].
    pub fn rotate(path: &Path) -> Result<String, ServerError> {
        let existing = if path.exists() {
            Self::load(path)?.keys.len()
        } else {
            0
        };
        let id = format!("k{}", existing + 1);
        let key = random32()?;
        let line = Zeroizing::new(format!("{id} {}\n", hex::encode(*key)));
        let mut options = std::fs::OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options
            .open(path)
            .map_err(|e| ServerError::io(format!("opening {}", path.display()), e))?;
        f.write_all(line.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| ServerError::io(format!("writing {}", path.display()), e))?;
        Ok(id)
    }

    /// Reads the ring file.
    ///
    /// # Errors
    /// [`ServerError::Io`] or [`ServerError::Refused`] (a malformed line, no key, a file
    /// readable by others).
    pub fn load(path: &Path) -> Result<Self, ServerError> {
        crate::pki::check_private(path)?;
        let text = Zeroizing::new(
            std::fs::read_to_string(path)
                .map_err(|e| ServerError::io(format!("reading {}", path.display()), e))?,
        );
        let mut keys = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || ServerError::Refused(format!("{}: malformed key line", path.display()));
            let (id, hexkey) = line.split_once(' ').ok_or_else(bad)?;
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hexkey.trim(), &mut *key).map_err(|_| bad())?;
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            let cipher = Aes256Gcm::new_from_slice(&*key).map_err(|_| bad())?;
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(ServerError::Refused(format!("{}: no key", path.display())));
        }
        Ok(Self { keys })
    }

    /// The id of the key that seals new records.
    #[must_use]
    pub fn active_id(&self) -> &str {
        self.keys.last().map_or("", |(id, _)| id.as_str())
    }

    /// Seals `plaintext` bound to `context` (the row it belongs to) with the active key:
    /// `(key id, nonce ‖ ciphertext ‖ tag)`.
    ///
    /// # Errors
    /// [`AtRestError::Random`].
    pub fn seal(&self, context: &[u8], plaintext: &[u8]) -> Result<(&str, Vec<u8>), AtRestError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|_| AtRestError::Random)?;
        self.seal_with_nonce(nonce, context, plaintext)
    }

    /// Random nonces for `n` records in one call to the random source (a batch's worth).
    ///
    /// # Errors
    /// [`AtRestError::Random`].
    pub fn nonces(n: usize) -> Result<Vec<[u8; NONCE_LEN]>, AtRestError> {
        let mut bytes = vec![0u8; n * NONCE_LEN];
        getrandom::fill(&mut bytes).map_err(|_| AtRestError::Random)?;
        Ok(bytes
            .chunks_exact(NONCE_LEN)
            .map(|c| {
                let mut nonce = [0u8; NONCE_LEN];
                nonce.copy_from_slice(c);
                nonce
            })
            .collect())
    }

    /// [`KeyRing::seal`] with a nonce from [`KeyRing::nonces`] (each used once).
    ///
    /// # Errors
    /// [`AtRestError::UnknownKey`] if the ring is empty.
    pub fn seal_with_nonce(
        &self,
        nonce: [u8; NONCE_LEN],
        context: &[u8],
        plaintext: &[u8],
    ) -> Result<(&str, Vec<u8>), AtRestError> {
        let (id, cipher) = self.keys.last().ok_or(AtRestError::UnknownKey)?;
        let ct = cipher
            .encrypt(
                &Nonce::try_from(&nonce[..]).map_err(|_| AtRestError::Damaged)?,
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| AtRestError::Damaged)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok((id.as_str(), out))
    }

    /// Opens a record sealed by key `key_id` for `context`.
    ///
    /// # Errors
    /// [`AtRestError::UnknownKey`], [`AtRestError::Damaged`].
    pub fn open(
        &self,
        key_id: &str,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, AtRestError> {
        let (_, cipher) = self
            .keys
            .iter()
            .find(|(id, _)| id == key_id)
            .ok_or(AtRestError::UnknownKey)?;
        let (nonce, ct) = sealed
            .split_at_checked(NONCE_LEN)
            .ok_or(AtRestError::Damaged)?;
        cipher
            .decrypt(
                &Nonce::try_from(nonce).map_err(|_| AtRestError::Damaged)?,
                Payload {
                    msg: ct,
                    aad: context,
                },
            )
            .map_err(|_| AtRestError::Damaged)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_old_keys_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage-keys");
        assert_eq!(KeyRing::rotate(&path).unwrap(), "k1");
        let ring = KeyRing::load(&path).unwrap();
        let (id, sealed) = ring.seal(b"row 1", b"event").unwrap();
        assert_eq!(id, "k1");
        let sealed = sealed.clone();
        assert_eq!(KeyRing::rotate(&path).unwrap(), "k2");
        let ring = KeyRing::load(&path).unwrap();
        assert_eq!(ring.active_id(), "k2");
        assert_eq!(ring.open("k1", b"row 1", &sealed).unwrap(), b"event");
        assert_eq!(
            ring.open("k1", b"row 2", &sealed),
            Err(AtRestError::Damaged)
        );
        assert_eq!(
            ring.open("k9", b"row 1", &sealed),
            Err(AtRestError::UnknownKey)
        );
        assert_eq!(
            ring.open("k2", b"row 1", &sealed),
            Err(AtRestError::Damaged)
        );
        assert!(!format!("{ring:?}").contains(&hex::encode(&sealed[..4])));
    }
}
