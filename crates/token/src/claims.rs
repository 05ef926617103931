//! The claims of a Cairn token and their strict JSON form.
//!
//! The payload is a JSON object with exactly these members, all required (`dev` may be `null`):
//!
//! | key | type | meaning |
//! | --- | --- | --- |
//! | `iss` | string | issuer (the server's configured name) |
//! | `aud` | string | audience (the API the token is for) |
//! | `sub` | string, [`UserId`] | the user |
//! | `tid` | string, [`TenantId`] | the tenant (also bound as the implicit assertion) |
//! | `dev` | string ([`DeviceId`]) or `null` | the device, for a device's token |
//! | `role` | `"user"`, `"admin"` or `"service"` | [`Role`] |
//! | `cap` | array of distinct strings | [`Capability`] names |
//! | `iat`, `nbf`, `exp` | canonical RFC 3339 UTC strings | issued at, not before, expires |
//! | `jti` | string, [`TokenId`] | token id, for revocation |
//!
//! Unknown keys, duplicate keys, wrong types, unknown roles or capabilities and non-canonical
//! timestamps are all rejected; nothing is resolved "last wins".

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::ClaimsError;
use crate::id::{DeviceId, TenantId, TokenId, UserId};
use crate::time::Timestamp;

/// Who the token speaks for, which decides the reach of its capabilities (see
/// [`authorize`](crate::authorize())).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// An end user or one of their devices: reaches only that user's own resources.
    User,
    /// A tenant administrator: reaches every resource of their own tenant.
    Admin,
    /// A service account (SIEM export, automation): tenant-wide, never the `admin` capability.
    Service,
}

impl Role {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }

    /// The role of a wire name (`user`, `admin`, `service`); `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            "service" => Some(Role::Service),
            _ => None,
        }
    }
}

/// One thing a token may be used for. Routes name the capability they need.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// Upload sealed blocks and snapshot records.
    BackupPut,
    /// Download blocks and snapshots.
    BackupRead,
    /// List snapshots and archives.
    BackupList,
    /// Send file-event batches.
    EventsWrite,
    /// Query and export events.
    EventsRead,
    /// Deposit a wrapped key in escrow.
    EscrowDeposit,
    /// Recover a key from escrow.
    EscrowRecover,
    /// Administer the tenant (users, devices, tokens, security modes).
    Admin,
}

impl Capability {
    /// Every capability, in wire order.
    pub const ALL: [Capability; 8] = [
        Capability::BackupPut,
        Capability::BackupRead,
        Capability::BackupList,
        Capability::EventsWrite,
        Capability::EventsRead,
        Capability::EscrowDeposit,
        Capability::EscrowRecover,
        Capability::Admin,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::BackupPut => "backup:put",
            Capability::BackupRead => "backup:read",
            Capability::BackupList => "backup:list",
            Capability::EventsWrite => "events:write",
            Capability::EventsRead => "events:read",
            Capability::EscrowDeposit => "escrow:deposit",
            Capability::EscrowRecover => "escrow:recover",
            Capability::Admin => "admin",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

/// A set of [`Capability`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capabilities(u16);

impl Capabilities {
    /// The empty set.
    pub const NONE: Capabilities = Capabilities(0);

    /// The set of `caps`.
    pub fn of(caps: &[Capability]) -> Self {
        Self(caps.iter().fold(0, |acc, c| acc | c.bit()))
    }

    /// Whether `cap` is in the set.
    pub fn contains(self, cap: Capability) -> bool {
        self.0 & cap.bit() != 0
    }

    /// The members, in wire order.
    pub fn iter(self) -> impl Iterator<Item = Capability> {
        Capability::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(Capability::as_str))
            .finish()
    }
}

/// The verified claims of a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    /// `iss`: who issued the token.
    pub issuer: String,
    /// `aud`: which API the token is for.
    pub audience: String,
    /// `sub`: the user.
    pub subject: UserId,
    /// `tid`: the tenant.
    pub tenant: TenantId,
    /// `dev`: the device, for a device's token.
    pub device: Option<DeviceId>,
    /// `role`.
    pub role: Role,
    /// `cap`.
    pub capabilities: Capabilities,
    /// `iat`: when the token was issued.
    pub issued_at: Timestamp,
    /// `nbf`: the token is not valid before this instant.
    pub not_before: Timestamp,
    /// `exp`: the token is not valid after this instant.
    pub expires_at: Timestamp,
    /// `jti`: the token's id, for revocation.
    pub token_id: TokenId,
}

/// The wire form. serde's derive rejects duplicate and unknown keys and wrong types; every field
/// is required (`dev` through `deserialize_with`, which turns off serde's "missing Option is
/// None" default).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire<'a> {
    #[serde(borrow)]
    iss: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    aud: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    sub: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    tid: std::borrow::Cow<'a, str>,
    #[serde(borrow, deserialize_with = "required_nullable")]
    dev: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    role: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    cap: Vec<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    iat: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    nbf: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    exp: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    jti: std::borrow::Cow<'a, str>,
}

fn required_nullable<'de, D>(d: D) -> Result<Option<std::borrow::Cow<'de, str>>, D::Error>
where
    D: Deserializer<'de>,
{
    Option::<std::borrow::Cow<'de, str>>::deserialize(d)
}

/// Longest issuer or audience string accepted, in bytes.
pub const MAX_NAME_CLAIM_LEN: usize = 256;

fn name_claim(s: &str, err: ClaimsError) -> Result<String, ClaimsError> {
    if s.is_empty() || s.len() > MAX_NAME_CLAIM_LEN || s.chars().any(char::is_control) {
        Err(err)
    } else {
        Ok(s.to_owned())
    }
}

impl Claims {
    /// Parses the strict JSON form. Checks types and syntax only; whether the claims are
    /// acceptable now (times, issuer, tenant) is the [`Verifier`](crate::Verifier)'s job.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ClaimsError> {
        let wire: Wire<'_> = serde_json::from_slice(bytes).map_err(|_| ClaimsError::Json)?;
        let mut capabilities = Capabilities::NONE;
        for name in &wire.cap {
            let cap = Capability::parse(name).ok_or(ClaimsError::UnknownCapability)?;
            if capabilities.contains(cap) {
                return Err(ClaimsError::DuplicateCapability);
            }
            capabilities = Capabilities(capabilities.0 | cap.bit());
        }
        Ok(Self {
            issuer: name_claim(&wire.iss, ClaimsError::Issuer)?,
            audience: name_claim(&wire.aud, ClaimsError::Audience)?,
            subject: UserId::new(&wire.sub).map_err(|_| ClaimsError::Subject)?,
            tenant: TenantId::new(&wire.tid).map_err(|_| ClaimsError::Tenant)?,
            device: match &wire.dev {
                None => None,
                Some(d) => Some(DeviceId::new(d).map_err(|_| ClaimsError::Device)?),
            },
            role: Role::parse(&wire.role).ok_or(ClaimsError::Role)?,
            capabilities,
            issued_at: Timestamp::parse_rfc3339(&wire.iat).map_err(|_| ClaimsError::Time)?,
            not_before: Timestamp::parse_rfc3339(&wire.nbf).map_err(|_| ClaimsError::Time)?,
            expires_at: Timestamp::parse_rfc3339(&wire.exp).map_err(|_| ClaimsError::Time)?,
            token_id: TokenId::new(&wire.jti).map_err(|_| ClaimsError::TokenId)?,
        })
    }

    /// The strict JSON form, members in the order of the table above.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = Wire {
            iss: self.issuer.as_str().into(),
            aud: self.audience.as_str().into(),
            sub: self.subject.as_str().into(),
            tid: self.tenant.as_str().into(),
            dev: self.device.as_ref().map(|d| d.as_str().into()),
            role: self.role.as_str().into(),
            cap: self
                .capabilities
                .iter()
                .map(|c| c.as_str().into())
                .collect(),
            iat: self.issued_at.to_rfc3339().into(),
            nbf: self.not_before.to_rfc3339().into(),
            exp: self.expires_at.to_rfc3339().into(),
            jti: self.token_id.as_str().into(),
        };
        // Serialising strings and a vector of strings to a Vec cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}
