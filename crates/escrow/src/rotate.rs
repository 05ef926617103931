//! Escrow key rotation (K-9): move every escrowed copy from one escrow key to another.

use crate::envelope::Envelope;
use crate::error::EscrowError;
use crate::hpke::{EscrowIdentity, EscrowPublicKey, EscrowRecipient, EscrowSecretKey};
use crate::mode::Mode;
use crate::recipient::{Identity, Recipient};
use crate::stanza::{Stanza, WrapContext, stanza_type};

/// The outcome of [`rotate_escrow`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The envelope already names the new key and not the old one: nothing to do (rotation is
    /// idempotent).
    Unchanged,
    /// The re-wrapped envelope, to store in place of the old one. It no longer names the old
    /// key, which can then be destroyed.
    Rewrapped(Envelope),
}

/// Re-wraps the escrowed copies of `envelope` from `old` to `new`. In the standard mode the
/// key is unwrapped with `old` and wrapped to `new`; in the archive-password mode only the outer
/// HPKE layer moves, so no password is needed. Other stanzas (KEK) are kept as they are.
pub fn rotate_escrow(
    envelope: &Envelope,
    old: &EscrowSecretKey,
    new: &EscrowPublicKey,
) -> Result<Rotation, EscrowError> {
    let escrow_kinds = [stanza_type::HPKE, stanza_type::PASSWORD_ESCROW];
    let names = |id: [u8; 16]| {
        envelope
            .stanzas()
            .iter()
            .any(|s| escrow_kinds.contains(&s.kind) && s.key_id == id)
    };
    if names(new.id()) && !names(old.public().id()) {
        return Ok(Rotation::Unchanged);
    }
    let header = envelope.header().clone();
    let header_bytes = header.to_bytes();
    let ctx = WrapContext {
        header: &header,
        header_bytes: &header_bytes,
    };
    let old_id = old.public().id();
    let mut stanzas: Vec<Stanza> = Vec::with_capacity(envelope.stanzas().len());
    let mut moved = false;
    for stanza in envelope.stanzas() {
        let is_old = escrow_kinds.contains(&stanza.kind) && stanza.key_id == old_id;
        let is_new = escrow_kinds.contains(&stanza.kind) && stanza.key_id == new.id();
        if is_new {
            continue; // re-created below from the old copy; never two for one key
        }
        if !is_old {
            stanzas.push(stanza.clone());
            continue;
        }
        match (header.mode(), stanza.kind) {
            (Mode::Standard, stanza_type::HPKE) => {
                let key = EscrowIdentity(old.clone())
                    .unwrap(stanza, &ctx)
                    .unwrap_or(Err(EscrowError::Unwrap))?;
                if key.fingerprint() != header.archive_key_id() {
                    return Err(EscrowError::Unwrap);
                }
                stanzas.push(EscrowRecipient(new.clone()).wrap(&key, &ctx)?);
            }
            (Mode::ArchivePassword, stanza_type::PASSWORD_ESCROW) => {
                stanzas.push(crate::password::reseal_password_escrow(
                    stanza, &ctx, old, new,
                )?);
            }
            _ => return Err(EscrowError::ModeMismatch),
        }
        moved = true;
    }
    if !moved {
        return Err(EscrowError::NoMatchingStanza);
    }
    Ok(Rotation::Rewrapped(Envelope::from_parts(header, stanzas)?))
}
