//! Signing keys, verifying keys, key ids and the keyring of verifying keys with their windows.

use core::fmt;
use std::collections::HashMap;

use pasetors::keys::{AsymmetricPublicKey, AsymmetricSecretKey};
use pasetors::paserk::{FormatAsPaserk, Id};
use pasetors::version4::V4;
use zeroize::Zeroizing;

use crate::error::KeyError;
use crate::time::Timestamp;

/// Length of a key id: `k4.pid.` and 44 base64url characters.
pub const KEY_ID_LEN: usize = 7 + 44;

/// The PASERK `k4.pid` of a verifying key: a hash of the key, so an id cannot name another key.
/// Goes in every token's footer as `{"kid":"k4.pid.…"}`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a key id: exactly `k4.pid.` followed by 44 base64url characters. Anything else
    /// (paths, SQL, NUL bytes, look-alikes, other PASERK types) is rejected without a lookup.
    pub fn parse(s: &str) -> Result<Self, KeyError> {
        let body = s.strip_prefix("k4.pid.").ok_or(KeyError::KeyId)?;
        if body.len() == 44 && crate::encoding::is_canonical_base64url(body.as_bytes()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(KeyError::KeyId)
        }
    }

    fn of(key: &AsymmetricPublicKey<V4>) -> Result<Self, KeyError> {
        let mut s = String::with_capacity(KEY_ID_LEN);
        Id::from(key).fmt(&mut s).map_err(|_| KeyError::KeyId)?;
        Self::parse(&s)
    }

    /// The PASERK string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// An Ed25519 public key that verifies tokens. Validated on construction: canonical encoding,
/// not a small-order point.
#[derive(Clone)]
pub struct VerifyingKey {
    key: AsymmetricPublicKey<V4>,
    /// The same key, decompressed once, for `verify_strict`.
    point: ed25519_dalek::VerifyingKey,
    id: KeyId,
}

impl VerifyingKey {
    /// From the 32-byte Ed25519 encoding.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        ed25519_compact::PublicKey::new(*bytes)
            .validate()
            .map_err(|_| KeyError::WeakPublicKey)?;
        let point =
            ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::WeakPublicKey)?;
        if point.is_weak() {
            return Err(KeyError::WeakPublicKey);
        }
        let key = AsymmetricPublicKey::<V4>::from(bytes).map_err(|_| KeyError::WeakPublicKey)?;
        let id = KeyId::of(&key)?;
        Ok(Self { key, point, id })
    }

    /// The 32-byte Ed25519 encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key.as_bytes());
        out
    }

    /// This key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    pub(crate) fn point(&self) -> &ed25519_dalek::VerifyingKey {
        &self.point
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("id", &self.id)
            .finish()
    }
}

/// An Ed25519 signing key (the issuer's secret). Zeroized on drop, redacted in `Debug`.
pub struct SigningKey {
    secret: AsymmetricSecretKey<V4>,
    public: VerifyingKey,
}

impl SigningKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|_| KeyError::Random)?;
        Self::from_seed(&seed)
    }

    /// From a 32-byte Ed25519 seed (as stored in the server's key file). An all-zero seed is
    /// rejected (it is never random, and `pasetors` would panic on it).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        if seed.iter().all(|&b| b == 0) {
            return Err(KeyError::WeakSeed);
        }
        let pair = ed25519_compact::KeyPair::from_seed(ed25519_compact::Seed::new(*seed));
        let public_bytes: [u8; 32] = *pair.pk;
        let mut secret_bytes = Zeroizing::new([0u8; 64]);
        secret_bytes[..32].copy_from_slice(seed);
        secret_bytes[32..].copy_from_slice(&public_bytes);
        let secret = AsymmetricSecretKey::<V4>::from(secret_bytes.as_ref())
            .map_err(|_| KeyError::WeakSeed)?;
        let public = VerifyingKey::from_bytes(&public_bytes)?;
        Ok(Self { secret, public })
    }

    /// The 32-byte seed, for the server's key file (mode 0600). The caller owns the copy.
    pub fn expose_seed(&self) -> Zeroizing<[u8; 32]> {
        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&self.secret.as_bytes()[..32]);
        seed
    }

    /// The matching verifying key.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.public
    }

    pub(crate) fn paseto(&self) -> &AsymmetricSecretKey<V4> {
        &self.secret
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", self.public.id())
            .finish_non_exhaustive()
    }
}

/// A verifying key and its life: published to verifiers, used for signing, retired.
///
/// A key verifies tokens from `published_at` until `retired_at + max_lifetime + leeway`, and
/// only tokens issued (`iat`) no later than `retired_at + leeway`: a retired key cannot mint
/// new tokens even if it leaks, and every token it signed dies on schedule.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    /// The key.
    pub key: VerifyingKey,
    /// When verifiers start accepting it (step 1 of the rotation procedure).
    pub published_at: Timestamp,
    /// When the issuer starts signing with it (step 2, after propagation).
    pub signs_from: Timestamp,
    /// When the issuer stopped signing with it, if it has.
    pub retired_at: Option<Timestamp>,
}

/// Finds the entry for a key id. The [`Keyring`] is the in-memory implementation; a server with
/// keys in a database implements this over its cache. Called only with a syntactically valid
/// [`KeyId`], never with attacker bytes that failed parsing.
pub trait KeyResolver: Send + Sync {
    /// The entry for `id`, if known.
    fn resolve(&self, id: &KeyId) -> Option<KeyEntry>;
}

/// The verifying keys a server accepts, by id.
#[derive(Clone, Debug, Default)]
pub struct Keyring {
    entries: HashMap<KeyId, KeyEntry>,
}

impl Keyring {
    /// An empty keyring (which accepts nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key. Its windows must be ordered (`published_at <= signs_from <= retired_at`) and
    /// its id new.
    pub fn insert(&mut self, entry: KeyEntry) -> Result<(), KeyError> {
        if entry.signs_from < entry.published_at
            || entry.retired_at.is_some_and(|r| r < entry.signs_from)
        {
            return Err(KeyError::Window);
        }
        if self.entries.contains_key(entry.key.id()) {
            return Err(KeyError::Duplicate);
        }
        self.entries.insert(entry.key.id().clone(), entry);
        Ok(())
    }

    /// Marks a key retired at `at` (no new tokens after it). Retiring twice keeps the earlier
    /// instant.
    pub fn retire(&mut self, id: &KeyId, at: Timestamp) -> Result<(), KeyError> {
        let entry = self.entries.get_mut(id).ok_or(KeyError::Unknown)?;
        if at < entry.signs_from {
            return Err(KeyError::Window);
        }
        entry.retired_at = Some(entry.retired_at.map_or(at, |r| r.min(at)));
        Ok(())
    }

    /// Removes a key entirely (after `retired_at + max_lifetime + leeway` it verifies nothing).
    pub fn remove(&mut self, id: &KeyId) -> Option<KeyEntry> {
        self.entries.remove(id)
    }

    /// The key the issuer should sign with at `now`: the unretired key with the latest
    /// `signs_from <= now`.
    pub fn signer_at(&self, now: Timestamp) -> Option<&KeyId> {
        self.entries
            .values()
            .filter(|e| e.signs_from <= now && e.retired_at.is_none_or(|r| now < r))
            .max_by_key(|e| e.signs_from)
            .map(|e| e.key.id())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl KeyResolver for Keyring {
    fn resolve(&self, id: &KeyId) -> Option<KeyEntry> {
        self.entries.get(id).cloned()
    }
}
