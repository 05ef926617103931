//! What every handler shares: the services, the router's state, the API's errors, and the
//! helpers that scope a request to its owner.

use std::sync::Arc;

use axum::Extension;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_escrow::EscrowIdentity;
use cairn_token::Capability::Admin;
use cairn_token::{Capability, Owner, TenantId, UserId, VerifiedToken, Verifier, authorize};

use super::auth::RevocationList;
use crate::archives::{Archives, StoreError};
use crate::atrest::KeyRing;
use crate::db::Db;
use crate::metrics::Metrics;

pub(super) fn unix_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// What the handlers use.
pub struct Services {
    /// Metadata.
    pub db: Db,
    /// Users' archives.
    pub archives: Archives,
    /// The storage key ring (events at rest).
    pub ring: KeyRing,
    /// The escrow authority's identity (recovery).
    pub escrow: EscrowIdentity,
    /// Issues enrollment and device tokens with the key that signs now, and resolves the keys
    /// the verifier accepts (the set in the database, reloaded: `crate::signing`).
    pub issuer: crate::signing::KeySet,
    /// Revoked tokens and deauthorized devices (shared with the verifier).
    pub revoked: RevocationList,
    /// The clock tokens are issued by (the verifier's and the database's too).
    pub clock: crate::clock::SharedClock,
    /// Counters.
    pub metrics: Metrics,
    /// Rate limits (S-12).
    pub limits: crate::ratelimit::RateLimits,
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Services")
            .field("archives", &self.archives)
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}

/// What the router shares: the token verifier and the services.
pub struct AppState<K, C, R> {
    /// Checks bearer tokens; the path's tenant is each token's implicit assertion.
    pub verifier: Verifier<K, C, R>,
    /// The services behind the routes.
    pub services: Arc<Services>,
}

/// An answer with a fixed status and a fixed body: nothing from the request or the error
/// reaches the client (S-7); the detail goes to the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiError {
    /// 400.
    BadRequest,
    /// 401, for every token failure.
    Unauthorized,
    /// 403: the token is valid but lacks the capability or role for this function.
    Forbidden,
    /// 404, also for what the token may not reach.
    NotFound,
    /// 409: an id that already holds different bytes, or a state change that does not apply.
    Conflict,
    /// 410: the calling device was deauthorized; the agent removes its key.
    DeviceDeauthorized,
    /// 422: a well-formed request the server will not apply (an event batch from another
    /// device, a downgrade of the security mode).
    Refused,
    /// 507: the tenant's storage quota is used up.
    Quota,
    /// 429: over a rate limit; retry after this many seconds.
    TooMany(u64),
    /// 503: the archive is held by another server instance past the wait; retry.
    Unavailable,
    /// 500.
    Internal,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::BadRequest => (StatusCode::BAD_REQUEST, "bad request\n"),
            Self::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized\n"),
            Self::Forbidden => (StatusCode::FORBIDDEN, "forbidden\n"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not found\n"),
            Self::Conflict => (StatusCode::CONFLICT, "conflict\n"),
            Self::DeviceDeauthorized => (StatusCode::GONE, "device deauthorized\n"),
            Self::Refused => (StatusCode::UNPROCESSABLE_ENTITY, "refused\n"),
            Self::Quota => (StatusCode::INSUFFICIENT_STORAGE, "quota exceeded\n"),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n"),
            Self::Unavailable => {
                return (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "1".to_owned())],
                    "busy, retry\n",
                )
                    .into_response();
            }
            Self::TooMany(secs) => {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, secs.to_string())],
                    "too many requests\n",
                )
                    .into_response();
            }
        };
        (status, body).into_response()
    }
}

pub(super) fn internal(what: &str, e: &dyn std::fmt::Display) -> ApiError {
    tracing::error!(what, error = %e, "request failed");
    ApiError::Internal
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(_) => Self::Conflict,
            StoreError::NotFound => Self::NotFound,
            StoreError::Quota => Self::Quota,
            StoreError::Malformed => Self::BadRequest,
            StoreError::Busy => Self::Unavailable,
            StoreError::Refs(_) => Self::Conflict,
            other => internal("storage", &other),
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        internal("database", &e)
    }
}

pub(super) type Token = Extension<Arc<VerifiedToken>>;

pub(super) type Svc = Extension<Arc<Services>>;

/// The tenant of a verified token (the authentication layer checked it is the path's).
pub(super) fn tenant_of(token: &VerifiedToken) -> &TenantId {
    &token.claims().tenant
}

pub(super) fn actor(token: &VerifiedToken) -> String {
    let c = token.claims();
    match &c.device {
        Some(d) => format!("{}/{}", c.subject.as_str(), d.as_str()),
        None => c.subject.as_str().to_owned(),
    }
}

/// The user a user-scoped route names, checked against the token (404 when it may not reach
/// it, the same as when the user does not exist).
pub(super) async fn user_scope(
    svc: &Services,
    token: &VerifiedToken,
    user: &str,
    needed: Capability,
) -> Result<UserId, ApiError> {
    let user = UserId::new(user).map_err(|_| ApiError::BadRequest)?;
    let tenant = tenant_of(token);
    authorize(token, tenant, needed, Owner::User(&user)).map_err(|_| ApiError::NotFound)?;
    if svc.db.user(tenant, &user).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    Ok(user)
}

/// An administrative function of the token's tenant (S-5: the admin role and capability).
pub(super) fn admin_scope(token: &VerifiedToken) -> Result<(), ApiError> {
    authorize(token, tenant_of(token), Admin, Owner::Tenant).map_err(|_| ApiError::Forbidden)
}

pub(super) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal("storage task", &e))?
        .map_err(ApiError::from)
}

pub(super) fn binary(media_type: &'static str, body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(media_type))],
        body,
    )
        .into_response()
}
