//! Key escrow for Cairn archive keys: wrap an [`ArchiveKey`](cairn_keys::ArchiveKey) to the
//! escrow authority (HPKE), under a user password (Argon2id), or under a KMS key (AES-KWP), in a
//! versioned envelope; and the one-way security modes that decide which of those may exist.
//!
//! | type | use |
//! | --- | --- |
//! | [`Envelope`], [`Header`], [`Stanza`] | the versioned envelope (`docs/format/escrow.md`) |
//! | [`Recipient`], [`Identity`] | wrap to / unwrap with one kind of key (age-style traits) |
//! | [`EscrowRecipient`], [`EscrowIdentity`], [`EscrowPublicKey`], [`EscrowSecretKey`] | the escrow authority (HPKE X25519 / HKDF-SHA256 / AES-256-GCM) |
//! | [`PasswordEscrowRecipient`], [`PasswordEscrowIdentity`] | archive-password mode: password, then escrow |
//! | [`PasswordRecipient`], [`PasswordIdentity`], [`Password`], [`Argon2Params`] | a password alone (endpoint-side copies) |
//! | [`Kek`], [`kek`] | a KMS/HSM key-encryption key (AES-KWP, exact-length policy) |
//! | [`Mode`], [`transition`], [`EscrowAction`] | security modes and their one-way upgrades |
//! | [`rotate_escrow`], [`Rotation`] | move escrowed copies to a new escrow key |
//!
//! # Example
//!
//! ```
//! use cairn_escrow::*;
//! use cairn_keys::ArchiveKey;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = ArchiveKey::generate()?;
//! let authority = EscrowSecretKey::generate()?;
//!
//! // Standard mode: the escrow authority can recover the key.
//! let header = Header::new(Mode::Standard, key.fingerprint(), "acme", "alice")?;
//! let envelope = Envelope::wrap(&key, header, &[&EscrowRecipient(authority.public().clone())])?;
//! let bytes = envelope.to_bytes();
//!
//! let recovered = Envelope::parse(&bytes)?.unwrap(&[&EscrowIdentity(authority.clone())])?;
//! assert_eq!(recovered.fingerprint(), key.fingerprint());
//!
//! // Modes only strengthen, and the server is told what to do with its copy.
//! assert_eq!(transition(Mode::Standard, Mode::CustomKey)?, EscrowAction::Delete);
//! assert!(transition(Mode::ArchivePassword, Mode::Standard).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! - The escrow stanza is HPKE base mode (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256
//!   and AES-256-GCM from the pinned `hpke` crate; `info` binds a version label, the tenant, the
//!   user and the archive key id, and the AAD is the envelope header plus the stanza's type, key
//!   id and parameters (K-2). Public keys and encapsulated keys that give an all-zero shared
//!   secret are refused.
//! - Password stanzas use Argon2id v0x13 with a 16-byte random salt; the costs are stored in the
//!   stanza, bounded below by a floor and above by a ceiling that is checked before any work
//!   (K-4). A key commitment, keyed by the password-derived key, is checked in constant time
//!   before the AEAD runs (K-6).
//! - Every unwrap ends by comparing the recovered key's fingerprint with the header's archive
//!   key id (constant time), which also binds AES-KW/KWP stanzas (no AAD) to their envelope.
//! - Failures to unwrap are one opaque error, whether the password was wrong or the bytes were
//!   damaged. Secret types are zeroized on drop and redacted in `Debug`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod envelope;
mod error;
mod header;
mod hpke;
pub mod kek;
mod mode;
mod password;
mod recipient;
mod rotate;
mod stanza;

pub use envelope::{Envelope, MAX_ENVELOPE_LEN, MAX_STANZAS};
pub use error::{EscrowError, ModeError};
pub use header::{Header, MAGIC, MAX_NAME_LEN, VERSION};
pub use hpke::{
    ENC_LEN, ESCROW_KEY_ID_LEN, EscrowIdentity, EscrowPublicKey, EscrowRecipient, EscrowSecretKey,
    KEY_ID_CONTEXT,
};
pub use kek::Kek;
pub use mode::{EscrowAction, Mode, transition};
pub use password::{
    AEAD_KEY_CONTEXT, Argon2Params, COMMITMENT_LABEL, PARAMS_LEN as PASSWORD_PARAMS_LEN,
    PAYLOAD_LEN as PASSWORD_PAYLOAD_LEN, Password, PasswordEscrowIdentity, PasswordEscrowRecipient,
    PasswordIdentity, PasswordRecipient, SALT_LEN, derive_kek,
};
pub use recipient::{Identity, Recipient};
pub use rotate::{Rotation, rotate_escrow};
pub use stanza::{
    MAX_KEY_ID_LEN, MAX_PARAMS_LEN, MAX_PAYLOAD_LEN, Stanza, WrapContext, stanza_type,
};
