//! Wrapping under a symmetric key-encryption key held by a KMS or HSM: AES-256 key wrap with
//! padding (RFC 5649, the default) or without (RFC 3394), with an exact-length policy enforced
//! before the `aes-kw` crate is called (K-7).

use core::fmt;

use aes_kw::{KeyInit, KwAes256, KwpAes256};
use cairn_keys::ArchiveKey;
use zeroize::Zeroizing;

use crate::error::EscrowError;
use crate::recipient::{Identity, Recipient, archive_key_from};
use crate::stanza::{Stanza, WrapContext, stanza_type};

/// A wrapped 32-byte key is exactly this long in both KW and KWP; nothing else is passed to
/// `aes-kw` (which on its own accepts some invalid 8-byte inputs as an empty key).
pub const WRAPPED_LEN: usize = 40;
/// The only key length wrapped.
pub const KEY_LEN: usize = 32;

/// Which NIST SP 800-38F mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyWrap {
    /// AES-KWP (RFC 5649), the default.
    Kwp = 1,
    /// AES-KW (RFC 3394), for KMSs that only speak it.
    Kw = 2,
}

/// Wraps a 32-byte key.
pub fn wrap(
    mode: KeyWrap,
    kek: &[u8; 32],
    key: &[u8; KEY_LEN],
) -> Result<[u8; WRAPPED_LEN], EscrowError> {
    let mut out = [0u8; WRAPPED_LEN];
    let written = match mode {
        KeyWrap::Kwp => KwpAes256::new(kek.into())
            .wrap_key(key, &mut out)
            .map(<[u8]>::len),
        KeyWrap::Kw => KwAes256::new(kek.into())
            .wrap_key(key, &mut out)
            .map(<[u8]>::len),
    };
    match written {
        Ok(WRAPPED_LEN) => Ok(out),
        _ => Err(EscrowError::Wrap),
    }
}

/// Unwraps a 32-byte key. Anything but exactly [`WRAPPED_LEN`] bytes is refused before the
/// primitive runs, and a result of any other length than 32 is refused after.
pub fn unwrap(
    mode: KeyWrap,
    kek: &[u8; 32],
    wrapped: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, EscrowError> {
    if wrapped.len() != WRAPPED_LEN {
        return Err(EscrowError::Unwrap);
    }
    let mut buf = Zeroizing::new([0u8; WRAPPED_LEN]);
    let len = match mode {
        KeyWrap::Kwp => KwpAes256::new(kek.into())
            .unwrap_key(wrapped, buf.as_mut())
            .map(<[u8]>::len),
        KeyWrap::Kw => KwAes256::new(kek.into())
            .unwrap_key(wrapped, buf.as_mut())
            .map(<[u8]>::len),
    }
    .map_err(|_| EscrowError::Unwrap)?;
    if len != KEY_LEN {
        return Err(EscrowError::Unwrap);
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    key.copy_from_slice(&buf[..KEY_LEN]);
    Ok(key)
}

/// Longest KMS key id, in bytes.
pub const MAX_KEK_ID_LEN: usize = 64;

/// A key-encryption key and its KMS id (`[A-Za-z0-9._:/+=@-]{1,64}`, e.g. an ARN suffix).
/// Zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct Kek {
    id: String,
    key: Zeroizing<[u8; 32]>,
    mode: KeyWrap,
}

impl Kek {
    /// A KEK with its id, wrapping with AES-KWP.
    pub fn new(id: &str, key: [u8; 32]) -> Result<Self, EscrowError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_KEK_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._:/+=@-".contains(&b));
        if !ok {
            return Err(EscrowError::Identifier);
        }
        Ok(Self {
            id: id.to_owned(),
            key: Zeroizing::new(key),
            mode: KeyWrap::Kwp,
        })
    }

    /// The same KEK, wrapping with `mode` instead.
    pub fn with_mode(mut self, mode: KeyWrap) -> Self {
        self.mode = mode;
        self
    }

    /// The KMS key id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kek({:?}, [REDACTED], {:?})", self.id, self.mode)
    }
}

/// Wraps under a KEK (stanza type 4). AES-KW/KWP authenticate no associated data: the header
/// binding comes from the check every unwrap makes, that the key's fingerprint is the header's
/// archive key id.
impl Recipient for Kek {
    fn wrap(&self, key: &ArchiveKey, _ctx: &WrapContext<'_>) -> Result<Stanza, EscrowError> {
        let wrapped = wrap(self.mode, &self.key, key.expose_secret())?;
        Ok(Stanza {
            kind: stanza_type::KEK,
            key_id: self.id.as_bytes().to_vec(),
            params: vec![self.mode as u8],
            payload: wrapped.to_vec(),
        })
    }
}

impl Identity for Kek {
    fn unwrap(
        &self,
        stanza: &Stanza,
        _ctx: &WrapContext<'_>,
    ) -> Option<Result<ArchiveKey, EscrowError>> {
        if stanza.kind != stanza_type::KEK || stanza.key_id != self.id.as_bytes() {
            return None;
        }
        let mode = match stanza.params.as_slice() {
            [1] => KeyWrap::Kwp,
            [2] => KeyWrap::Kw,
            _ => return Some(Err(EscrowError::Unwrap)),
        };
        Some(unwrap(mode, &self.key, &stanza.payload).and_then(|k| archive_key_from(k.as_ref())))
    }
}
