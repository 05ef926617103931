//! The `Recipient` and `Identity` traits (in the style of age's).

use cairn_keys::ArchiveKey;

use crate::error::EscrowError;
use crate::stanza::{Stanza, WrapContext};

/// Something an archive key can be wrapped to: produces one stanza.
pub trait Recipient {
    /// Wraps `key` into a stanza bound to the envelope's header.
    fn wrap(&self, key: &ArchiveKey, ctx: &WrapContext<'_>) -> Result<Stanza, EscrowError>;
}

/// Something that can unwrap stanzas of its kind.
pub trait Identity {
    /// `None` if the stanza is not this identity's (another type, another key id): the
    /// envelope then tries the next. `Some(Err(EscrowError::Unwrap))` if it is, but does not
    /// open (wrong password, damaged bytes: deliberately the same error).
    fn unwrap(
        &self,
        stanza: &Stanza,
        ctx: &WrapContext<'_>,
    ) -> Option<Result<ArchiveKey, EscrowError>>;
}

/// A 32-byte unwrapped key as an [`ArchiveKey`], without leaving a copy behind.
pub(crate) fn archive_key_from(bytes: &[u8]) -> Result<ArchiveKey, EscrowError> {
    ArchiveKey::try_from_slice(bytes).map_err(|_| EscrowError::Unwrap)
}
