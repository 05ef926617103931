//! The envelope: a versioned header and one stanza per recipient (`docs/format/escrow.md`).

use cairn_keys::{ArchiveKey, KeyFingerprint};

use crate::error::EscrowError;
use crate::header::{Header, MAGIC, MAX_NAME_LEN, VERSION, push_short};
use crate::mode::Mode;
use crate::recipient::{Identity, Recipient};
use crate::stanza::{MAX_KEY_ID_LEN, MAX_PARAMS_LEN, MAX_PAYLOAD_LEN, Stanza, WrapContext};

/// Most stanzas in one envelope.
pub const MAX_STANZAS: usize = 8;
/// Longest envelope, in bytes: a parser rejects anything longer before reading it.
pub const MAX_ENVELOPE_LEN: usize = 4
    + 1
    + 1
    + 16
    + 2 * (1 + MAX_NAME_LEN)
    + 1
    + MAX_STANZAS * (1 + 1 + MAX_KEY_ID_LEN + 1 + MAX_PARAMS_LEN + 2 + MAX_PAYLOAD_LEN);

/// An archive key wrapped to one or more recipients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    header: Header,
    stanzas: Vec<Stanza>,
}

impl Envelope {
    /// Wraps `key` to every recipient. The header's archive key id must be `key`'s fingerprint,
    /// and the recipients must fit the header's mode (see [`Envelope::check_mode`]).
    pub fn wrap(
        key: &ArchiveKey,
        header: Header,
        recipients: &[&dyn Recipient],
    ) -> Result<Self, EscrowError> {
        if key.fingerprint() != header.archive_key_id() {
            return Err(EscrowError::Identifier);
        }
        let header_bytes = header.to_bytes();
        let ctx = WrapContext {
            header: &header,
            header_bytes: &header_bytes,
        };
        let stanzas = recipients
            .iter()
            .map(|r| r.wrap(key, &ctx))
            .collect::<Result<Vec<_>, _>>()?;
        let envelope = Self { header, stanzas };
        envelope.check_mode()?;
        for s in &envelope.stanzas {
            s.check_limits()?;
        }
        Ok(envelope)
    }

    /// Builds an envelope from parts (for rotation and for tests that need hostile envelopes).
    pub fn from_parts(header: Header, stanzas: Vec<Stanza>) -> Result<Self, EscrowError> {
        let envelope = Self { header, stanzas };
        for s in &envelope.stanzas {
            s.check_limits()?;
        }
        if envelope.stanzas.len() > MAX_STANZAS {
            return Err(EscrowError::Malformed);
        }
        envelope.check_mode()?;
        Ok(envelope)
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The stanzas.
    pub fn stanzas(&self) -> &[Stanza] {
        &self.stanzas
    }

    /// The stanzas must fit the mode: at least one stanza; `Standard` holds at least one
    /// escrow (HPKE) stanza; `ArchivePassword` holds only password-then-escrow stanzas (a plain
    /// escrow, KEK or password stanza would let someone skip the password or the escrow key);
    /// `CustomKey` holds no stanza the server or a KMS could open (password stanzas only, kept
    /// on the endpoint). Unknown stanza types are allowed only in `Standard`.
    pub fn check_mode(&self) -> Result<(), EscrowError> {
        use crate::stanza::stanza_type::*;
        if self.stanzas.is_empty() || self.stanzas.len() > MAX_STANZAS {
            return Err(EscrowError::ModeMismatch);
        }
        let ok = match self.header.mode() {
            Mode::Standard => self.stanzas.iter().any(|s| s.kind == HPKE),
            Mode::ArchivePassword => self.stanzas.iter().all(|s| s.kind == PASSWORD_ESCROW),
            Mode::CustomKey => self.stanzas.iter().all(|s| s.kind == PASSWORD),
        };
        if ok {
            Ok(())
        } else {
            Err(EscrowError::ModeMismatch)
        }
    }

    /// Unwraps the key with the first identity that matches a stanza. Stanzas no identity
    /// claims are skipped; a claimed stanza that fails gives [`EscrowError::Unwrap`] (or
    /// [`EscrowError::Parameters`] when its Argon2 costs are out of bounds, found before any
    /// work); none claimed gives [`EscrowError::NoMatchingStanza`]. The result is checked
    /// against the header's archive key id in constant time.
    pub fn unwrap(&self, identities: &[&dyn Identity]) -> Result<ArchiveKey, EscrowError> {
        let header_bytes = self.header.to_bytes();
        let ctx = WrapContext {
            header: &self.header,
            header_bytes: &header_bytes,
        };
        let mut error = EscrowError::NoMatchingStanza;
        for stanza in &self.stanzas {
            for identity in identities {
                match identity.unwrap(stanza, &ctx) {
                    None => {}
                    Some(Ok(key)) if fingerprint_matches(&key, &self.header.archive_key_id()) => {
                        return Ok(key);
                    }
                    // Parameters out of bounds say nothing about the password (they are
                    // checked before it is used), so that one is reported as itself.
                    Some(Err(EscrowError::Parameters)) => error = EscrowError::Parameters,
                    Some(_) if error != EscrowError::Parameters => error = EscrowError::Unwrap,
                    Some(_) => {}
                }
            }
        }
        Err(error)
    }

    /// The envelope's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.header.to_bytes();
        out.push(u8::try_from(self.stanzas.len()).unwrap_or(u8::MAX));
        for s in &self.stanzas {
            out.push(s.kind);
            push_short(&mut out, &s.key_id);
            push_short(&mut out, &s.params);
            let len = u16::try_from(s.payload.len()).unwrap_or(u16::MAX);
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&s.payload);
        }
        out
    }

    /// Parses an envelope: every length is checked against the input and the limits before
    /// it is used; trailing bytes are an error; the mode must fit the stanzas.
    pub fn parse(bytes: &[u8]) -> Result<Self, EscrowError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EscrowError::Malformed);
        }
        let mut r = Reader(bytes);
        if r.take(4)? != MAGIC {
            return Err(EscrowError::Malformed);
        }
        if r.byte()? != VERSION {
            return Err(EscrowError::UnsupportedVersion);
        }
        let mode = Mode::from_byte(r.byte()?).ok_or(EscrowError::Malformed)?;
        let mut id = [0u8; 16];
        id.copy_from_slice(r.take(16)?);
        let tenant = core::str::from_utf8(r.short()?).map_err(|_| EscrowError::Malformed)?;
        let user = core::str::from_utf8(r.short()?).map_err(|_| EscrowError::Malformed)?;
        let header = Header::new(mode, KeyFingerprint::from_bytes(id), tenant, user)
            .map_err(|_| EscrowError::Malformed)?;
        let count = usize::from(r.byte()?);
        if count == 0 || count > MAX_STANZAS {
            return Err(EscrowError::Malformed);
        }
        let mut stanzas = Vec::with_capacity(count);
        for _ in 0..count {
            let kind = r.byte()?;
            let key_id = r.short()?.to_vec();
            let params = r.short()?.to_vec();
            let len = r.take(2)?;
            let len = usize::from(u16::from_le_bytes([len[0], len[1]]));
            let payload = r.take(len)?.to_vec();
            let stanza = Stanza {
                kind,
                key_id,
                params,
                payload,
            };
            stanza.check_limits()?;
            stanzas.push(stanza);
        }
        if !r.0.is_empty() {
            return Err(EscrowError::Malformed);
        }
        let envelope = Self { header, stanzas };
        envelope.check_mode()?;
        Ok(envelope)
    }
}

fn fingerprint_matches(key: &ArchiveKey, id: &KeyFingerprint) -> bool {
    use subtle::ConstantTimeEq;
    key.fingerprint().as_bytes().ct_eq(id.as_bytes()).into()
}

/// A cursor that never reads past its slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EscrowError> {
        if n > self.0.len() {
            return Err(EscrowError::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, EscrowError> {
        Ok(self.take(1)?[0])
    }

    fn short(&mut self) -> Result<&'a [u8], EscrowError> {
        let n = usize::from(self.byte()?);
        self.take(n)
    }
}
