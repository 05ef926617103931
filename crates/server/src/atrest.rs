//! The server's storage key ring: what it encrypts stored events with (the monitoring data it
//! may read, unlike backup blocks, which it never can). AES-256-GCM with a random 96-bit nonce
//! per record; every record names the id of the key that sealed it, the newest key seals, and
//! older keys stay for reading until the records they sealed are gone.
//!
//! On disk (`DATA/storage-keys`, mode 0600; sealed by the KEK when one is configured,
//! [`crate::kek`]): one key per line, `<id> <64 hex digits>`, oldest first; ids are `k1`, `k2`,
//! ... Rotation adds a line ([`crate::data::DataDir::rotate_storage_key`]).
//!
//! The ring also keys the file hashes in stored events per tenant ([`KeyRing::tenant_hash`]):
//! its root is derived from the first key (`k1`), which is why `k1` is never removed.

use std::fmt;
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
    /// BLAKE3 derive_key("cairn 2026-12-07 event hash root v1", k1).
    hash_root: Zeroizing<[u8; 32]>,
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
    /// A fresh key line for a ring that holds `existing` keys: `k<existing + 1> <hex>\n`.
    ///
    /// # Errors
    /// [`ServerError::Io`] if the random source fails.
    pub fn new_line(existing: usize) -> Result<Zeroizing<String>, ServerError> {
        let key = random32()?;
        Ok(Zeroizing::new(format!(
            "k{} {}\n",
            existing + 1,
            hex::encode(*key)
        )))
    }

    /// Reads a ring from its text (`origin` names it in errors).
    ///
    /// # Errors
    /// [`ServerError::Malformed`] (a malformed line, no key).
    pub fn parse(text: &str, origin: &Path) -> Result<Self, ServerError> {
        let mut keys = Vec::new();
        let mut hash_root = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || ServerError::Malformed {
                path: origin.to_path_buf(),
                what: "malformed key line",
            };
            let (id, hexkey) = line.split_once(' ').ok_or_else(bad)?;
            let mut key = Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(hexkey.trim(), &mut *key).map_err(|_| bad())?;
            if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(bad());
            }
            let cipher = Aes256Gcm::new_from_slice(&*key).map_err(|_| bad())?;
            if hash_root.is_none() {
                hash_root = Some(Zeroizing::new(blake3::derive_key(
                    "cairn 2026-12-07 event hash root v1",
                    &*key,
                )));
            }
            keys.push((id.to_owned(), cipher));
        }
        let hash_root = hash_root.ok_or_else(|| ServerError::Malformed {
            path: origin.to_path_buf(),
            what: "no key",
        })?;
        Ok(Self { keys, hash_root })
    }

    /// How many keys the ring holds.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the ring holds no key (never, once parsed).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The tenant-keyed form of a file digest: BLAKE3-keyed(tenant key, algorithm ‖ 0 ‖
    /// digest), the tenant key being BLAKE3-keyed(hash root, tenant). Stored events carry this
    /// instead of the digest the agent sent, so that no one without the ring (a disk holder,
    /// another tenant, a recipient of another tenant's export) can test a known file against
    /// them; the server computes it again to search by a digest an analyst supplies.
    #[must_use]
    pub fn tenant_hash(&self, tenant: &str, algorithm: &str, digest: &[u8]) -> [u8; 32] {
        let tenant_key =
            Zeroizing::new(*blake3::keyed_hash(&self.hash_root, tenant.as_bytes()).as_bytes());
        let mut h = blake3::Hasher::new_keyed(&tenant_key);
        h.update(algorithm.as_bytes());
        h.update(&[0]);
        h.update(digest);
        *h.finalize().as_bytes()
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

    fn ring(lines: usize) -> (String, KeyRing) {
        let mut text = String::new();
        for i in 0..lines {
            text.push_str(&KeyRing::new_line(i).unwrap());
        }
        let ring = KeyRing::parse(&text, Path::new("storage-keys")).unwrap();
        (text, ring)
    }

    #[test]
    fn rotation_keeps_old_keys_for_reading() {
        let (text, ring) = ring(1);
        let (id, sealed) = ring.seal(b"row 1", b"event").unwrap();
        assert_eq!(id, "k1");
        let sealed = sealed.clone();
        let text = format!("{text}{}", &*KeyRing::new_line(1).unwrap());
        let ring = KeyRing::parse(&text, Path::new("storage-keys")).unwrap();
        assert_eq!(ring.active_id(), "k2");
        assert_eq!(ring.len(), 2);
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

    #[test]
    fn tenant_hashes_differ_per_tenant_and_algorithm_and_survive_rotation() {
        let (text, ring1) = ring(1);
        let digest = [0xAB; 32];
        let a = ring1.tenant_hash("acme", "sha256", &digest);
        assert_ne!(a, digest);
        assert_ne!(a, ring1.tenant_hash("globex", "sha256", &digest));
        assert_ne!(a, ring1.tenant_hash("acme", "blake3", &digest));
        let rotated = format!("{text}{}", &*KeyRing::new_line(1).unwrap());
        let ring2 = KeyRing::parse(&rotated, Path::new("storage-keys")).unwrap();
        assert_eq!(ring2.tenant_hash("acme", "sha256", &digest), a);
        let (_, other) = ring(1);
        assert_ne!(other.tenant_hash("acme", "sha256", &digest), a);
    }
}
