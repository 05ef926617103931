//! Errors. Callers outside the crate see [`Unauthorized`] (one uniform message) and [`Denied`];
//! the structured [`Reason`] is for logs and never carries token bytes, keys or signatures.

use core::fmt;

/// A token was not accepted. `Display` is always `unauthorized`, whatever the reason, so that a
/// response built from it tells an attacker nothing; [`Unauthorized::reason`] is for logs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Unauthorized {
    reason: Reason,
}

impl Unauthorized {
    pub(crate) fn new(reason: Reason) -> Self {
        Self { reason }
    }

    /// Why, for a structured log line. Contains no part of the token.
    pub fn reason(&self) -> Reason {
        self.reason
    }
}

impl fmt::Display for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unauthorized")
    }
}

impl fmt::Debug for Unauthorized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Unauthorized({:?})", self.reason)
    }
}

impl std::error::Error for Unauthorized {}

/// Why a token was rejected, in the order the verifier checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Reason {
    /// Longer than [`MAX_TOKEN_LEN`](crate::MAX_TOKEN_LEN); nothing was decoded.
    Oversize,
    /// Not a PASETO token at all (a JWT, an empty string, garbage).
    NotPaseto,
    /// A PASETO token of another version (`v1`..`v3`).
    WrongVersion,
    /// A `v4.local` token (or any purpose but `public`).
    WrongPurpose,
    /// Wrong number of `.`-separated parts, an empty part, or no footer.
    Malformed,
    /// A part is not canonical unpadded base64url.
    Encoding,
    /// The footer is longer than [`MAX_FOOTER_LEN`](crate::MAX_FOOTER_LEN).
    FooterTooLarge,
    /// The footer is not exactly `{"kid":"k4.pid.…"}`.
    Footer,
    /// The key id is not in the keyring.
    UnknownKey,
    /// The key is known but not valid now (not yet published, or past its retirement window),
    /// or the token was issued after the key retired.
    KeyNotValid,
    /// The signature does not verify (tampering, another tenant's scope, another key).
    Signature,
    /// The payload is not the strict claims JSON.
    Claims,
    /// `iss` is not this verifier's issuer.
    Issuer,
    /// `aud` is not this verifier's audience.
    Audience,
    /// `tid` differs from the request's tenant (only reachable with a mis-issued token: the
    /// signature already binds the request's tenant).
    TenantMismatch,
    /// `exp` has passed (beyond the leeway).
    Expired,
    /// `nbf` is still in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is in the future (beyond the leeway), or after `nbf` or `exp`.
    IssuedAt,
    /// `exp - iat` exceeds the maximum lifetime.
    Lifetime,
    /// The token id is on the deny list.
    Revoked,
    /// Issued before the tenant's "tokens valid after" watermark.
    BeforeWatermark,
}

/// An authorization decision that said no (HTTP 403, not 401: the token itself was valid).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The token is for another tenant than the request.
    #[error("forbidden")]
    OtherTenant,
    /// The token lacks the capability the route needs.
    #[error("forbidden")]
    MissingCapability,
    /// The resource belongs to another user, or another device of a device-bound token.
    #[error("forbidden")]
    NotOwner,
    /// The role may not use this capability (only admins hold `admin`).
    #[error("forbidden")]
    RoleNotAllowed,
}

/// An identifier failed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Empty or too long.
    #[error("identifier length out of range")]
    Length,
    /// A character outside the canonical set.
    #[error("identifier has a character outside its canonical set")]
    Charset,
}

/// A timestamp failed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// Not the canonical `YYYY-MM-DDTHH:MM:SSZ` spelling.
    #[error("timestamp is not canonical RFC 3339 UTC")]
    NotCanonical,
    /// Before 1970 or after 9999.
    #[error("timestamp out of range")]
    OutOfRange,
}

/// The claims JSON failed strict parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClaimsError {
    /// Not JSON, or a key missing, duplicated, unknown or of the wrong type.
    #[error("claims are not the strict claims object")]
    Json,
    /// `iss` empty, too long or with control characters.
    #[error("bad issuer")]
    Issuer,
    /// `aud` empty, too long or with control characters.
    #[error("bad audience")]
    Audience,
    /// `sub` is not a user id.
    #[error("bad subject")]
    Subject,
    /// `tid` is not a tenant id.
    #[error("bad tenant id")]
    Tenant,
    /// `dev` is not a device id.
    #[error("bad device id")]
    Device,
    /// `role` is not a known role.
    #[error("unknown role")]
    Role,
    /// `cap` names an unknown capability.
    #[error("unknown capability")]
    UnknownCapability,
    /// `cap` names a capability twice.
    #[error("duplicate capability")]
    DuplicateCapability,
    /// `iat`, `nbf` or `exp` is not a canonical timestamp.
    #[error("bad timestamp")]
    Time,
    /// `jti` is not a token id.
    #[error("bad token id")]
    TokenId,
}

/// A key or keyring operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not a canonical point, or a small-order point.
    #[error("weak or invalid Ed25519 public key")]
    WeakPublicKey,
    /// The all-zero seed.
    #[error("invalid signing key seed")]
    WeakSeed,
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
    /// Not a `k4.pid` key id.
    #[error("invalid key id")]
    KeyId,
    /// Windows out of order.
    #[error("key windows out of order")]
    Window,
    /// The key id is already in the keyring.
    #[error("key already in keyring")]
    Duplicate,
    /// No such key id.
    #[error("unknown key id")]
    Unknown,
}

/// Issuing a token failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The lifetime is zero or above the policy's maximum.
    #[error("token lifetime out of range")]
    Lifetime,
    /// Only the admin role may hold the admin capability.
    #[error("admin capability requires the admin role")]
    AdminCapability,
    /// The issuer or audience is empty, too long or has control characters.
    #[error("bad issuer or audience")]
    Name,
    /// The token would exceed the size limit.
    #[error("token too large")]
    TooLarge,
    /// The operating system's random source failed.
    #[error("random source failed")]
    Random,
    /// Signing failed.
    #[error("signing failed")]
    Signing,
}
