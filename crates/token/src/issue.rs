//! Issuing tokens (the server's admin commands and tests).

use core::fmt;

use pasetors::version4::PublicToken;
use zeroize::Zeroizing;

use crate::claims::{Capabilities, Capability, Claims, Role};
use crate::encoding::MAX_TOKEN_LEN;
use crate::error::IssueError;
use crate::id::{DeviceId, TenantId, TokenId, UserId};
use crate::keys::SigningKey;
use crate::time::Timestamp;
use crate::verify::Policy;

/// A signed token: a bearer secret. `Debug` shows only its length; use [`BearerToken::expose`]
/// to put it in an `Authorization` header. Zeroized on drop.
pub struct BearerToken(Zeroizing<String>);

impl BearerToken {
    /// The token string (`v4.public.…`). Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BearerToken([REDACTED; {} bytes])", self.0.len())
    }
}

/// What a token is for: whose, which tenant, which role and capabilities, how long.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    /// The user.
    pub subject: UserId,
    /// The tenant (signed as the implicit assertion and the `tid` claim).
    pub tenant: TenantId,
    /// The device, for a device's token.
    pub device: Option<DeviceId>,
    /// The role.
    pub role: Role,
    /// The capabilities.
    pub capabilities: Capabilities,
    /// Seconds from issue to expiry; at most the policy's maximum lifetime.
    pub lifetime_secs: i64,
}

/// Signs tokens with one key under one [`Policy`] (issuer, audience, maximum lifetime).
pub struct Issuer {
    key: SigningKey,
    policy: Policy,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("key", &self.key)
            .field("policy", &self.policy)
            .finish()
    }
}

impl Issuer {
    /// An issuer signing with `key`.
    pub fn new(key: SigningKey, policy: Policy) -> Self {
        Self { key, policy }
    }

    /// The signing key.
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Issues a token at `now` with a fresh random token id.
    pub fn issue(&self, request: &TokenRequest, now: Timestamp) -> Result<BearerToken, IssueError> {
        let token_id = TokenId::random().map_err(|_| IssueError::Random)?;
        self.issue_with_id(request, now, token_id)
    }

    /// Issues a token at `now` with the given token id (for known-answer vectors; Ed25519
    /// signatures are deterministic, so the same inputs give the same token).
    pub fn issue_with_id(
        &self,
        request: &TokenRequest,
        now: Timestamp,
        token_id: TokenId,
    ) -> Result<BearerToken, IssueError> {
        if request.lifetime_secs < 1 || request.lifetime_secs > self.policy.max_lifetime() {
            return Err(IssueError::Lifetime);
        }
        if request.capabilities.contains(Capability::Admin) && request.role != Role::Admin {
            return Err(IssueError::AdminCapability);
        }
        let claims = Claims {
            issuer: self.policy.issuer().to_owned(),
            audience: self.policy.audience().to_owned(),
            subject: request.subject.clone(),
            tenant: request.tenant.clone(),
            device: request.device.clone(),
            role: request.role,
            capabilities: request.capabilities,
            issued_at: now,
            not_before: now,
            expires_at: now.saturating_add(request.lifetime_secs),
            token_id,
        };
        self.sign_claims(&claims)
    }

    /// Signs arbitrary claims exactly as given, without the issuer's checks. For tests that need
    /// tokens the verifier must reject (expired, over-long, wrong issuer).
    pub fn sign_claims(&self, claims: &Claims) -> Result<BearerToken, IssueError> {
        self.sign_raw(&claims.to_json(), &claims.tenant)
    }

    /// Signs an arbitrary payload with the right footer and tenant binding: the tool for tests
    /// of the strict claims parser (duplicate keys, wrong types). The result is a validly signed
    /// token whose payload the verifier must still refuse.
    pub fn sign_raw(&self, payload: &[u8], tenant: &TenantId) -> Result<BearerToken, IssueError> {
        let footer = format!(r#"{{"kid":"{}"}}"#, self.key.verifying_key().id());
        let assertion = format!("tenant:{tenant}");
        let token = PublicToken::sign(
            self.key.paseto(),
            payload,
            Some(footer.as_bytes()),
            Some(assertion.as_bytes()),
        )
        .map_err(|_| IssueError::Signing)?;
        if token.len() > MAX_TOKEN_LEN {
            return Err(IssueError::TooLarge);
        }
        Ok(BearerToken(Zeroizing::new(token)))
    }
}
