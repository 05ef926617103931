//! Tenant-bound bearer tokens for Cairn's API: PASETO v4.public (Ed25519) with the request's
//! tenant as the implicit assertion, strict claims, a keyring with rotation windows, revocation
//! and a deny-by-default authorization helper.
//!
//! | type | use |
//! | --- | --- |
//! | [`Issuer`], [`TokenRequest`], [`BearerToken`] | mint tokens (server admin commands, tests) |
//! | [`SigningKey`], [`VerifyingKey`], [`KeyId`] | Ed25519 keys and their PASERK `k4.pid` ids |
//! | [`Keyring`], [`KeyEntry`], [`KeyResolver`] | which keys verify, and when (rotation) |
//! | [`Verifier`], [`Policy`], [`VerifiedToken`] | check a token for a request's tenant |
//! | [`Clock`], [`ManualClock`], [`Timestamp`] | injected time |
//! | [`Revocations`], [`MemoryRevocations`] | token-id deny list, per-tenant watermark |
//! | [`authorize()`], [`Owner`], [`Capability`], [`Role`] | allow or deny one request |
//! | [`Unauthorized`], [`Reason`], [`Denied`] | the uniform 401, its log reason, the 403 |
//!
//! The token format, claims, limits and the rotation procedure are specified in
//! `docs/format/token.md`.
//!
//! # Example
//!
//! ```
//! use cairn_token::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = Timestamp::parse_rfc3339("2026-11-27T13:00:00Z")?;
//! let policy = Policy::new("https://cairn.example", "cairn-api")?;
//! let issuer = Issuer::new(SigningKey::generate()?, policy.clone());
//!
//! let mut keyring = Keyring::new();
//! keyring.insert(KeyEntry {
//!     key: issuer.key().verifying_key().clone(),
//!     published_at: now,
//!     signs_from: now,
//!     retired_at: None,
//! })?;
//! let verifier = Verifier::new(policy, keyring, ManualClock::new(now), MemoryRevocations::new());
//!
//! let acme = TenantId::new("acme")?;
//! let alice = UserId::new("alice")?;
//! let token = issuer.issue(
//!     &TokenRequest {
//!         subject: alice.clone(),
//!         tenant: acme.clone(),
//!         device: None,
//!         role: Role::User,
//!         capabilities: Capabilities::of(&[Capability::BackupPut, Capability::BackupRead]),
//!         lifetime_secs: 600,
//!     },
//!     now,
//! )?;
//!
//! // The request's path names the tenant; the token must have been minted for it.
//! let verified = verifier.verify(token.expose(), &acme)?;
//! authorize(&verified, &acme, Capability::BackupPut, Owner::User(&alice))?;
//!
//! // Another tenant's route: the signature itself fails.
//! let globex = TenantId::new("globex")?;
//! let err = verifier.verify(token.expose(), &globex).unwrap_err();
//! assert_eq!(err.to_string(), "unauthorized");
//! assert_eq!(err.reason(), Reason::Signature);
//!
//! // Alice cannot reach Bob's archive, nor use a capability she was not given.
//! let bob = UserId::new("bob")?;
//! assert!(authorize(&verified, &acme, Capability::BackupRead, Owner::User(&bob)).is_err());
//! assert!(authorize(&verified, &acme, Capability::EscrowRecover, Owner::User(&alice)).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! # Security notes
//!
//! - No algorithm agility: only `v4.public.` tokens are parsed; JWTs, `v4.local`, `v1`..`v3` are
//!   rejected by their header before anything is decoded.
//! - The order of checks is fixed: size (4 KiB, before decoding), header, strict base64url
//!   (canonical, so one token has one spelling), footer (256 B, exactly `{"kid":…}`), key id
//!   syntax (a PASERK `k4.pid`, never used as a path or query), key lookup and window, Ed25519
//!   signature over the PAE of header, payload, footer and `tenant:<tenant>`, then the claims.
//!   No claim is read from an unverified payload.
//! - Tokens are signed by `pasetors` and verified with `ed25519-dalek`'s `verify_strict` over
//!   the PASETO pre-authentication encoding (non-canonical `S`, small-order `A` and `R` are
//!   refused); keyring keys are validated when added.
//! - Claims are parsed into a strict type: every claim required, unknown or duplicate keys and
//!   wrong types rejected, timestamps only in canonical RFC 3339 UTC.
//! - Failures are one [`Unauthorized`] whose `Display` is `unauthorized`; [`Reason`] names the
//!   failed step without any token bytes. [`BearerToken`], [`SigningKey`] and [`Unauthorized`]
//!   never print a token, signature or key in `Debug`.
//! - The library never reads the system clock: time comes from the injected [`Clock`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod authorize;
mod claims;
mod encoding;
mod error;
mod id;
mod issue;
mod keys;
mod time;
mod verify;

pub use authorize::{Owner, authorize};
pub use claims::{Capabilities, Capability, Claims, MAX_NAME_CLAIM_LEN, Role};
pub use encoding::{MAX_FOOTER_LEN, MAX_TOKEN_LEN};
pub use error::{
    ClaimsError, Denied, IdError, IssueError, KeyError, Reason, TimeError, Unauthorized,
};
pub use id::{
    DeviceId, MAX_NAME_LEN, MAX_TOKEN_ID_LEN, MIN_TOKEN_ID_LEN, TenantId, TokenId, UserId,
};
pub use issue::{BearerToken, Issuer, TokenRequest};
pub use keys::{KEY_ID_LEN, KeyEntry, KeyId, KeyResolver, Keyring, SigningKey, VerifyingKey};
pub use time::{Clock, MAX_TIMESTAMP, MIN_TIMESTAMP, ManualClock, Timestamp};
pub use verify::{
    DEFAULT_LEEWAY_SECS, DEFAULT_MAX_LIFETIME_SECS, MAX_CACHE_ENTRIES, MAX_LEEWAY_SECS,
    MAX_LIFETIME_CEILING_SECS, MemoryRevocations, Policy, PolicyError, Revocations, VerifiedToken,
    Verifier,
};
