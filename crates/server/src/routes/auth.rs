//! Who is calling: the authentication middleware (token, tenant, revocation, admission) and
//! the revocation lists it checks.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_token::{
    Clock, DeviceId, KeyResolver, Revocations, TenantId, Timestamp, TokenId, UserId,
};

use super::Access;
use super::canonical_segment;
use super::state::{ApiError, AppState, Services};
use crate::admission::{Connection, Principal};
use crate::db::Db;
use crate::ratelimit::{Admitted, PeerAddr, Refusal};

/// How often an instance sharing its database with others reloads revocations: the longest a
/// token revoked (or a device deauthorized) through another instance still works here.
pub const REVOCATION_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Revoked token ids, deauthorized devices and suspended or removed users: loaded from the
/// database at start, updated by the routes that revoke, and reloaded every
/// [`REVOCATION_REFRESH`] so that a revocation made through another instance, or through the
/// server's command line, reaches this one.
#[derive(Clone, Debug, Default)]
pub struct RevocationList(Arc<RevokedInner>);

#[derive(Debug, Default)]
pub(super) struct RevokedInner {
    tokens: RwLock<HashSet<(TenantId, TokenId)>>,
    devices: RwLock<HashSet<(TenantId, DeviceId)>>,
    users: RwLock<InactiveUsers>,
}

/// Users whose tokens are refused. Unlike revocations, this can shrink (a user resumed), so a
/// reload replaces it, unless a change was made here while the reload read the database.
#[derive(Debug, Default)]
struct InactiveUsers {
    users: HashSet<(TenantId, UserId)>,
    /// Counts the changes made here.
    version: u64,
}

impl RevocationList {
    /// Loads both lists.
    ///
    /// # Errors
    /// [`crate::db::DbError`].
    pub async fn load(db: &Db) -> Result<Self, crate::db::DbError> {
        let tokens = db.revoked_tokens().await?;
        let devices = db.deauthorized_devices().await?;
        let users = db.inactive_users().await?;
        Ok(Self(Arc::new(RevokedInner {
            tokens: RwLock::new(tokens.into_iter().collect()),
            devices: RwLock::new(devices.into_iter().collect()),
            users: RwLock::new(InactiveUsers {
                users: users.into_iter().collect(),
                version: 0,
            }),
        })))
    }

    /// Adds the revocations the database lists now (they are final: nothing is ever removed),
    /// and takes its suspended and removed users.
    ///
    /// # Errors
    /// [`crate::db::DbError`].
    pub async fn refresh(&self, db: &Db) -> Result<(), crate::db::DbError> {
        let version = self.0.users.read().map_or(0, |u| u.version);
        let tokens = db.revoked_tokens().await?;
        let devices = db.deauthorized_devices().await?;
        let users = db.inactive_users().await?;
        if let Ok(mut t) = self.0.tokens.write() {
            t.extend(tokens);
        }
        if let Ok(mut d) = self.0.devices.write() {
            d.extend(devices);
        }
        if let Ok(mut u) = self.0.users.write() {
            // A suspension or resumption made here while the database was read is newer than
            // what was read: keep it, and take the database's list at the next reload.
            if u.version == version {
                u.users = users.into_iter().collect();
            }
        }
        Ok(())
    }

    /// Reloads from `db` every [`REVOCATION_REFRESH`] until the list is dropped everywhere
    /// else (the task holds only a weak reference).
    pub fn refresh_every_interval(&self, db: Db) {
        let weak = Arc::downgrade(&self.0);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REVOCATION_REFRESH);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                if let Err(e) = Self(inner).refresh(&db).await {
                    tracing::warn!(error = %e, "reloading revocations failed");
                }
            }
        });
    }

    pub(super) fn revoke_token(&self, tenant: &TenantId, token: &TokenId) {
        if let Ok(mut t) = self.0.tokens.write() {
            t.insert((tenant.clone(), token.clone()));
        }
    }

    pub(super) fn deauthorize(&self, tenant: &TenantId, device: &DeviceId) {
        if let Ok(mut d) = self.0.devices.write() {
            d.insert((tenant.clone(), device.clone()));
        }
    }

    /// Marks the user's tokens refused (`inactive`: suspended or removed) or accepted again.
    pub(super) fn set_user_inactive(&self, tenant: &TenantId, user: &UserId, inactive: bool) {
        if let Ok(mut u) = self.0.users.write() {
            let key = (tenant.clone(), user.clone());
            if inactive {
                u.users.insert(key);
            } else {
                u.users.remove(&key);
            }
            u.version += 1;
        }
    }

    /// Whether the user is suspended or removed (every token of theirs is refused).
    #[must_use]
    pub fn is_user_inactive(&self, tenant: &TenantId, user: &UserId) -> bool {
        // A poisoned lock fails closed.
        self.0
            .users
            .read()
            .map_or(true, |u| u.users.contains(&(tenant.clone(), user.clone())))
    }

    /// Whether the device was deauthorized.
    #[must_use]
    pub fn is_deauthorized(&self, tenant: &TenantId, device: &DeviceId) -> bool {
        // A poisoned lock fails closed.
        self.0
            .devices
            .read()
            .map_or(true, |d| d.contains(&(tenant.clone(), device.clone())))
    }
}

impl Revocations for RevocationList {
    fn is_revoked(&self, tenant: &TenantId, token: &TokenId) -> bool {
        self.0
            .tokens
            .read()
            .map_or(true, |t| t.contains(&(tenant.clone(), token.clone())))
    }

    fn tokens_valid_after(&self, _tenant: &TenantId) -> Option<Timestamp> {
        None
    }
}

/// Checks the path is canonical and the bearer token is valid for its tenant (and carries the
/// route's capability, and its device is not deauthorized), then passes the verified token to
/// the handler. Each step is a function below, in the order they run.
pub(super) async fn authenticate<K: KeyResolver, C: Clock, R: Revocations>(
    state: &AppState<K, C, R>,
    access: Access,
    mut req: Request,
    next: Next,
) -> Response {
    let tenant = match path_tenant(req.uri().path()) {
        Ok(tenant) => tenant,
        Err(e) => return e.into_response(),
    };
    let caller = Caller::of(&req, &state.services);
    if access == Access::DeviceSecret {
        // The handler checks the secret against the path's device; a failure counts against
        // the address like a bad token.
        let response = next.run(req).await;
        return caller.count_secret_failure(response);
    }
    let Some(token) = bearer(&req) else {
        tracing::info!(
            tenant = tenant.as_str(),
            step = "no bearer token",
            "token refused"
        );
        return caller.refuse();
    };
    let verified = match state.verifier.verify(token, &tenant) {
        Ok(v) => v,
        Err(refused) => {
            // The step that failed (never any part of the token).
            tracing::info!(tenant = tenant.as_str(), step = ?refused.reason(), "token refused");
            return caller.refuse();
        }
    };
    let principal = principal(&tenant, verified.claims());
    let _admitted = match caller.admit(&principal) {
        Ok(admitted) => admitted,
        Err(refusal) => return refused_admission(refusal, &principal),
    };
    if let Some(device) = &verified.claims().device
        && state.services.revoked.is_deauthorized(&tenant, device)
    {
        return ApiError::DeviceDeauthorized.into_response();
    }
    // After the device check: a removed user's devices are told to remove their keys.
    if state
        .services
        .revoked
        .is_user_inactive(&tenant, &verified.claims().subject)
    {
        tracing::info!(
            tenant = tenant.as_str(),
            step = "user suspended or removed",
            "token refused"
        );
        return caller.refuse();
    }
    if let Access::Capability(needed) = access
        && !verified.claims().capabilities.contains(needed)
    {
        return ApiError::Forbidden.into_response();
    }
    req.extensions_mut().insert(Arc::new(verified));
    next.run(req).await
}

/// The path's tenant, once every segment is canonical (S-4: the version segment `v1`
/// included).
fn path_tenant(path: &str) -> Result<TenantId, ApiError> {
    if !path.split('/').skip(1).all(canonical_segment) {
        return Err(ApiError::BadRequest);
    }
    path.strip_prefix("/v1/tenants/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|t| TenantId::new(t).ok())
        .ok_or(ApiError::BadRequest)
}

/// The bearer token of the request, if it carries one.
fn bearer(req: &Request) -> Option<&str> {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// Budgets and caps are the principal's: the device of a device token (whatever token it
/// refreshed to), else the user.
fn principal(tenant: &TenantId, claims: &cairn_token::Claims) -> Principal {
    (
        tenant.as_str().to_owned(),
        claims.device.as_ref().map_or_else(
            || format!("user:{}", claims.subject.as_str()),
            |d| format!("device:{}", d.as_str()),
        ),
    )
}

/// Where a request came from (its socket address and connection) and the services that count
/// what it does.
struct Caller<'s> {
    peer: Option<IpAddr>,
    connection: Option<Arc<Connection>>,
    services: &'s Services,
}

impl<'s> Caller<'s> {
    fn of(req: &Request, services: &'s Services) -> Self {
        Self {
            peer: req.extensions().get::<PeerAddr>().map(|p| p.0.ip()),
            connection: req.extensions().get::<Arc<Connection>>().cloned(),
            services,
        }
    }

    /// S-12: failures are counted per socket address; an address over its budget gets 429
    /// for every request that fails authentication, never for one that passes (many clients
    /// share an address behind a NAT or a TCP pass-through balancer).
    fn refuse(&self) -> Response {
        self.services
            .metrics
            .auth_failures
            .fetch_add(1, Ordering::Relaxed);
        match self.failed().or_else(|| self.blocked()) {
            Some(secs) => ApiError::TooMany(secs).into_response(),
            None => ApiError::Unauthorized.into_response(),
        }
    }

    /// A device-secret route's answer, with a refused secret counted as [`Caller::refuse`]
    /// counts a refused token.
    fn count_secret_failure(&self, response: Response) -> Response {
        if response.status() == StatusCode::UNAUTHORIZED {
            let over = self.failed();
            if let Some(secs) = over.or_else(|| self.blocked()) {
                return ApiError::TooMany(secs).into_response();
            }
        }
        response
    }

    fn failed(&self) -> Option<u64> {
        self.peer.and_then(|ip| self.services.limits.failed(ip))
    }

    fn blocked(&self) -> Option<u64> {
        self.peer.and_then(|ip| self.services.limits.blocked(ip))
    }

    /// The principal's rate, its requests in flight and its connections (and its tenant's).
    fn admit(&self, principal: &Principal) -> Result<Admitted, Refusal> {
        self.services
            .limits
            .admit(principal, self.connection.as_deref())
    }
}

/// The answer to a request its principal's limits refused.
fn refused_admission(refusal: Refusal, principal: &Principal) -> Response {
    match refusal {
        Refusal::Rate(secs) => ApiError::TooMany(secs).into_response(),
        Refusal::InFlight => ApiError::TooMany(1).into_response(),
        Refusal::Connections => {
            tracing::info!(
                tenant = principal.0.as_str(),
                principal = principal.1.as_str(),
                "connection refused: the principal or its tenant holds as many as it may"
            );
            let mut response = ApiError::TooMany(1).into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
    }
}
