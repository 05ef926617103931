//! The archive key hierarchy: one random 256-bit root key per archive, and the subkeys
//! every other Cairn crate uses, derived from it with frozen BLAKE3 `derive_key` contexts.
//!
//! | type | use |
//! | --- | --- |
//! | [`ArchiveKey`] | the root secret of one user's (or device's) archive, generated on the endpoint |
//! | [`ChunkerKey`] | keys the content-defined chunker (`cairn-chunk`), so cut points are secret |
//! | [`BlockIdKey`] | keys the BLAKE3 block ids (`cairn-seal`), so the server cannot test for known files |
//! | [`BlockKey`] | the block-encryption key (`cairn-seal` derives per-block AEAD keys from it) |
//! | [`SnapshotKey`] | authenticates snapshot and tree objects (`cairn-backup`) |
//! | [`KeyFingerprint`] | a public, non-secret name for an [`ArchiveKey`] ("is this the right key?") |
//!
//! The derivation table, with the exact context strings, is specified in `docs/format/keys.md`
//! and frozen by known-answer vectors in `tests/vectors/derive.json`.
//!
//! # Example
//!
//! ```
//! use cairn_keys::ArchiveKey;
//!
//! # fn main() -> Result<(), cairn_keys::KeyError> {
//! let root = ArchiveKey::generate()?;
//! let chunker = root.chunker_key();
//! let ids = root.block_id_key();
//! // Subkeys are independent: knowing one says nothing about another or about the root.
//! assert_ne!(chunker.expose_secret(), ids.expose_secret());
//! // Debug output never shows key bytes.
//! assert_eq!(format!("{chunker:?}"), "ChunkerKey([REDACTED])");
//! // The fingerprint is public and stable for a given root.
//! assert_eq!(root.fingerprint(), ArchiveKey::try_from_slice(root.expose_secret())?.fingerprint());
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! - The root key comes from the operating system's CSPRNG ([`getrandom`]); nothing else in Cairn
//!   generates long-lived key material.
//! - Every subkey is `BLAKE3::derive_key(context, root)` with a context string that is globally
//!   unique, hard-coded and versioned. BLAKE3's KDF mode makes outputs under different contexts
//!   independent pseudo-random values; a subkey reveals nothing about the root or its siblings.
//! - All secret types zeroize their bytes on drop, print as `[REDACTED]` in `Debug`, implement no
//!   `Display`, compare in constant time, and expose their bytes only through `expose_secret()`,
//!   which exists for the escrow wrapper and the agent's key file. Intermediate copies made while
//!   deriving are zeroized too. Copies the caller makes from `expose_secret()` are the caller's
//!   to zeroize.
//! - Changing a context string or the derivation is a format change: it gets a new version and
//!   new vectors, never an edit in place.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use core::fmt;

use subtle::{Choice, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length in bytes of every key in the hierarchy.
pub const KEY_LEN: usize = 32;

/// Length in bytes of a [`KeyFingerprint`].
pub const FINGERPRINT_LEN: usize = 16;

/// The frozen BLAKE3 `derive_key` context strings, version 1. See `docs/format/keys.md`.
///
/// Each string is globally unique to Cairn and to one purpose. Never edit one: add a new version.
pub mod context {
    /// Context of [`ChunkerKey`](crate::ChunkerKey).
    pub const CHUNKER: &str = "cairn 2026-11-27 v1 chunker key";
    /// Context of [`BlockIdKey`](crate::BlockIdKey).
    pub const BLOCK_ID: &str = "cairn 2026-11-27 v1 block-id key";
    /// Context of [`BlockKey`](crate::BlockKey).
    pub const BLOCK: &str = "cairn 2026-11-27 v1 block-encryption key";
    /// Context of [`SnapshotKey`](crate::SnapshotKey).
    pub const SNAPSHOT: &str = "cairn 2026-11-27 v1 snapshot-authentication key";
    /// Context of [`KeyFingerprint`](crate::KeyFingerprint) (the first 16 bytes of the output).
    pub const FINGERPRINT: &str = "cairn 2026-11-27 v1 key fingerprint";

    /// Every context of version 1, with the name of the type it derives, in table order.
    pub const ALL: [(&str, &str); 5] = [
        ("ChunkerKey", CHUNKER),
        ("BlockIdKey", BLOCK_ID),
        ("BlockKey", BLOCK),
        ("SnapshotKey", SNAPSHOT),
        ("KeyFingerprint", FINGERPRINT),
    ];
}

/// Errors of this crate.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// Key material of the wrong length was supplied (keys are exactly [`KEY_LEN`] bytes).
    #[error("key material must be {expected} bytes, got {actual}")]
    InvalidLength {
        /// The required length.
        expected: usize,
        /// The length supplied.
        actual: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed")]
    Rng,
}

/// Defines a 32-byte secret newtype with the crate's secret-handling rules.
macro_rules! secret_key {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub struct $name([u8; KEY_LEN]);

        impl $name {
            /// Wraps existing key bytes (for example read back from a key file or unwrapped
            /// from escrow). The caller should zeroize its own copy.
            #[must_use]
            pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
                Self(bytes)
            }

            /// Copies key bytes from a slice, which must be exactly [`KEY_LEN`] bytes long.
            ///
            /// # Errors
            /// [`KeyError::InvalidLength`] if the slice has any other length.
            pub fn try_from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
                let array: [u8; KEY_LEN] =
                    bytes.try_into().map_err(|_| KeyError::InvalidLength {
                        expected: KEY_LEN,
                        actual: bytes.len(),
                    })?;
                Ok(Self(array))
            }

            /// The raw key bytes. Only for code that must store, wrap or feed the key to a
            /// primitive; never log or display them.
            #[must_use]
            pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }

        impl ConstantTimeEq for $name {
            fn ct_eq(&self, other: &Self) -> Choice {
                self.0.ct_eq(&other.0)
            }
        }

        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                self.ct_eq(other).into()
            }
        }

        impl Eq for $name {}
    };
}

secret_key! {
    /// The 32-byte root secret of one archive. Generated on the endpoint, never sent anywhere
    /// except wrapped for escrow; every other key is derived from it.
    ArchiveKey
}

secret_key! {
    /// Keys the content-defined chunker, so that chunk boundaries are a secret function of the
    /// content (see `docs/format/chunk.md`).
    ChunkerKey
}

secret_key! {
    /// Keys the BLAKE3 hash that names blocks, so that equal plaintexts in different archives get
    /// unrelated ids and the server cannot confirm known files.
    BlockIdKey
}

secret_key! {
    /// The block-encryption key; `cairn-seal` derives the AEAD keys it uses from this one.
    BlockKey
}

secret_key! {
    /// Authenticates snapshot and tree objects, so a server cannot forge or reorder history.
    SnapshotKey
}

/// Runs BLAKE3's KDF into a zeroizing buffer.
fn derive(context: &str, root: &[u8; KEY_LEN]) -> Zeroizing<[u8; KEY_LEN]> {
    let mut hasher = blake3::Hasher::new_derive_key(context);
    hasher.update(root);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    hasher.finalize_xof().fill(out.as_mut());
    hasher.zeroize();
    out
}

impl ArchiveKey {
    /// Generates a fresh root key from the operating system's CSPRNG.
    ///
    /// # Errors
    /// [`KeyError::Rng`] if the OS generator is unavailable.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut()).map_err(|_| KeyError::Rng)?;
        Ok(Self(*bytes))
    }

    /// The chunker key (context [`context::CHUNKER`]).
    #[must_use]
    pub fn chunker_key(&self) -> ChunkerKey {
        ChunkerKey(*derive(context::CHUNKER, &self.0))
    }

    /// The block-id key (context [`context::BLOCK_ID`]).
    #[must_use]
    pub fn block_id_key(&self) -> BlockIdKey {
        BlockIdKey(*derive(context::BLOCK_ID, &self.0))
    }

    /// The block-encryption key (context [`context::BLOCK`]).
    #[must_use]
    pub fn block_key(&self) -> BlockKey {
        BlockKey(*derive(context::BLOCK, &self.0))
    }

    /// The snapshot-authentication key (context [`context::SNAPSHOT`]).
    #[must_use]
    pub fn snapshot_key(&self) -> SnapshotKey {
        SnapshotKey(*derive(context::SNAPSHOT, &self.0))
    }

    /// A public, non-secret name for this key (context [`context::FINGERPRINT`], truncated to
    /// [`FINGERPRINT_LEN`] bytes). Lets a tool say "wrong key" before trying to decrypt.
    #[must_use]
    pub fn fingerprint(&self) -> KeyFingerprint {
        let full = derive(context::FINGERPRINT, &self.0);
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&full[..FINGERPRINT_LEN]);
        KeyFingerprint(out)
    }
}

/// A public identifier of an [`ArchiveKey`]: 16 bytes of a one-way derivation, safe to log,
/// store and show. Displays as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyFingerprint([u8; FINGERPRINT_LEN]);

impl KeyFingerprint {
    /// Wraps stored fingerprint bytes.
    #[must_use]
    pub const fn from_bytes(bytes: [u8; FINGERPRINT_LEN]) -> Self {
        Self(bytes)
    }

    /// The fingerprint bytes.
    #[must_use]
    pub const fn as_bytes(&self) -> &[u8; FINGERPRINT_LEN] {
        &self.0
    }
}

impl fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyFingerprint({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_gives_distinct_keys() {
        let a = ArchiveKey::generate().unwrap();
        let b = ArchiveKey::generate().unwrap();
        assert_ne!(a, b);
        assert_ne!(a.expose_secret(), &[0u8; KEY_LEN]);
    }

    #[test]
    fn wrong_lengths_are_typed_errors() {
        for len in [0, 1, 31, 33, 64] {
            let err = ArchiveKey::try_from_slice(&vec![7u8; len]).unwrap_err();
            assert_eq!(
                err,
                KeyError::InvalidLength {
                    expected: KEY_LEN,
                    actual: len
                }
            );
        }
        assert!(ArchiveKey::try_from_slice(&[7u8; KEY_LEN]).is_ok());
    }

    #[test]
    fn equality_is_by_value() {
        let a = ArchiveKey::from_bytes([1; KEY_LEN]);
        let b = ArchiveKey::from_bytes([1; KEY_LEN]);
        let c = ArchiveKey::from_bytes([2; KEY_LEN]);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(bool::from(a.ct_eq(&b)));
        assert!(!bool::from(a.ct_eq(&c)));
    }

    #[test]
    fn zeroize_clears_bytes() {
        let mut k = BlockKey::from_bytes([0xAB; KEY_LEN]);
        k.zeroize();
        assert_eq!(k.expose_secret(), &[0u8; KEY_LEN]);
    }

    #[test]
    fn fingerprint_displays_as_hex() {
        let fp = KeyFingerprint::from_bytes([0x0f; FINGERPRINT_LEN]);
        assert_eq!(fp.to_string(), "0f".repeat(FINGERPRINT_LEN));
        assert_eq!(
            format!("{fp:?}"),
            format!("KeyFingerprint({})", "0f".repeat(16))
        );
    }
}
