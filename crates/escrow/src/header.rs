//! The envelope header: whose key it is and how it is protected (`docs/format/escrow.md`). Every
//! stanza is bound to it.

use cairn_keys::KeyFingerprint;

use crate::error::EscrowError;
use crate::mode::Mode;

/// The envelope magic.
pub const MAGIC: [u8; 4] = *b"CRNE";
/// The format version this crate writes and reads.
pub const VERSION: u8 = 1;
/// Longest tenant or user id, in bytes.
pub const MAX_NAME_LEN: usize = 63;

/// `[a-z0-9-]{1,63}`: the canonical tenant and user ids (the same rule as `cairn-token`'s).
fn check_name(s: &str) -> Result<(), EscrowError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EscrowError::Identifier)
    }
}

/// Whose key this is, and how it is protected. Every stanza is bound to all of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    mode: Mode,
    archive_key_id: KeyFingerprint,
    tenant: String,
    user: String,
}

impl Header {
    /// A header; tenant and user must be canonical ids (`[a-z0-9-]{1,63}`).
    pub fn new(
        mode: Mode,
        archive_key_id: KeyFingerprint,
        tenant: &str,
        user: &str,
    ) -> Result<Self, EscrowError> {
        check_name(tenant)?;
        check_name(user)?;
        Ok(Self {
            mode,
            archive_key_id,
            tenant: tenant.to_owned(),
            user: user.to_owned(),
        })
    }

    /// The security mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The fingerprint of the wrapped archive key.
    pub fn archive_key_id(&self) -> KeyFingerprint {
        self.archive_key_id
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The user.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The header's bytes: the AAD prefix of every stanza.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.tenant.len() + self.user.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.mode.to_byte());
        out.extend_from_slice(self.archive_key_id.as_bytes());
        push_short(&mut out, self.tenant.as_bytes());
        push_short(&mut out, self.user.as_bytes());
        out
    }

    /// The HPKE `info`: a version label, then tenant, user and archive key id, each
    /// length-prefixed (K-2).
    pub(crate) fn hpke_info(&self) -> Vec<u8> {
        let mut info = Vec::with_capacity(64);
        push_short(&mut info, b"cairn escrow v1");
        push_short(&mut info, self.tenant.as_bytes());
        push_short(&mut info, self.user.as_bytes());
        info.extend_from_slice(self.archive_key_id.as_bytes());
        info
    }
}

/// Appends a one-byte length and the bytes (callers keep them under 256).
pub(crate) fn push_short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(bytes);
}
