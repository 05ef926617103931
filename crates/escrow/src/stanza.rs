//! Stanzas: one recipient's wrapped copy of the key, and what a recipient sees of the envelope
//! it works on (`docs/format/escrow.md`). Below [`crate::recipient`] and [`crate::envelope`],
//! which both use them.

use crate::error::EscrowError;
use crate::header::{Header, push_short};

/// Longest stanza key id, in bytes.
pub const MAX_KEY_ID_LEN: usize = 64;
/// Longest stanza parameter block, in bytes.
pub const MAX_PARAMS_LEN: usize = 64;
/// Longest stanza payload, in bytes.
pub const MAX_PAYLOAD_LEN: usize = 1024;

/// Stanza types (the first byte of a stanza).
pub mod stanza_type {
    /// HPKE base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM, to the escrow
    /// authority.
    pub const HPKE: u8 = 1;
    /// Argon2id to a key-encryption key, key commitment, AES-256-GCM.
    pub const PASSWORD: u8 = 2;
    /// A password stanza's payload, sealed again with HPKE to the escrow authority (the
    /// archive-password mode).
    pub const PASSWORD_ESCROW: u8 = 3;
    /// AES-256 key wrap with padding (RFC 5649) under a KMS/HSM key-encryption key.
    pub const KEK: u8 = 4;
}

/// One recipient's wrapped copy of the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    /// The stanza type ([`stanza_type`]); unknown types are kept and skipped.
    pub kind: u8,
    /// Which key of its type unwraps it (an escrow key id, a KMS key id), possibly empty.
    pub key_id: Vec<u8>,
    /// Type-specific parameters (Argon2 costs and salt), authenticated with the stanza.
    pub params: Vec<u8>,
    /// The wrapped key.
    pub payload: Vec<u8>,
}

impl Stanza {
    pub(crate) fn check_limits(&self) -> Result<(), EscrowError> {
        if self.key_id.len() > MAX_KEY_ID_LEN
            || self.params.len() > MAX_PARAMS_LEN
            || self.payload.len() > MAX_PAYLOAD_LEN
        {
            return Err(EscrowError::Malformed);
        }
        Ok(())
    }

    /// This stanza's associated data under `header` (see [`Stanza::aad`]).
    pub(crate) fn own_aad(&self, header: &[u8]) -> Vec<u8> {
        Self::aad(header, self.kind, &self.key_id, &self.params)
    }

    /// The stanza's associated data: the header, then type, key id and parameters.
    pub(crate) fn aad(header: &[u8], kind: u8, key_id: &[u8], params: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(header.len() + 3 + key_id.len() + params.len());
        aad.extend_from_slice(header);
        aad.push(kind);
        push_short(&mut aad, key_id);
        push_short(&mut aad, params);
        aad
    }
}

/// What a [`crate::Recipient`] or [`crate::Identity`] sees of the envelope it works on.
#[derive(Debug)]
pub struct WrapContext<'a> {
    /// The header.
    pub header: &'a Header,
    /// The header's bytes.
    pub header_bytes: &'a [u8],
}
