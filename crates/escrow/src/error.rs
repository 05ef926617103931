//! Errors. Unwrapping failures are deliberately opaque: a wrong password, a wrong key and a
//! damaged envelope give the same [`EscrowError::Unwrap`] (K-6).

/// What went wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EscrowError {
    /// The bytes are not an envelope of a version we read (framing, lengths, limits).
    #[error("malformed escrow envelope")]
    Malformed,
    /// The envelope's format version is not one this crate reads.
    #[error("unsupported escrow envelope version")]
    UnsupportedVersion,
    /// The stanzas do not fit the envelope's mode (an escrow stanza in an archive-password
    /// envelope, say), or no stanza was given.
    #[error("stanzas inconsistent with the security mode")]
    ModeMismatch,
    /// No stanza of the envelope matches any identity offered.
    #[error("no identity matches any stanza of the envelope")]
    NoMatchingStanza,
    /// A matching stanza did not unwrap: wrong password, wrong key or damaged envelope (one
    /// error for all, on purpose).
    #[error("could not unwrap the archive key")]
    Unwrap,
    /// Password-hashing parameters below the floor (on wrap) or above the ceiling (on wrap or
    /// unwrap; checked before any work).
    #[error("password hashing parameters out of bounds")]
    Parameters,
    /// A public key is not usable (wrong length, or a low-order point giving an all-zero
    /// shared secret).
    #[error("invalid public key")]
    PublicKey,
    /// A tenant, user or key id is not in its canonical form.
    #[error("invalid identifier")]
    Identifier,
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
    /// Wrapping failed in the underlying primitive.
    #[error("wrapping failed")]
    Wrap,
}

/// A security-mode change that is not allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ModeError {
    /// The requested mode is weaker than the current one; modes only ever strengthen.
    #[error("security mode can only be strengthened")]
    Downgrade,
}
