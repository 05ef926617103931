//! Every route the server answers, in one table, each with its access decision and body limit
//! (S-1, S-8): the router is built from [`ROUTES`] and nothing else, so a route cannot exist
//! without them. Handlers then scope the request to its owner with [`cairn_token::authorize`]:
//! a user's token reaches only that user's archive, escrow record and events; administrators
//! reach their own tenant only.
//!
//! Answers that could tell one tenant's or user's existence from another's are uniform: a
//! token not valid for the path's tenant always gets `401 unauthorized`, and a resource the
//! token may not reach gets the same `404 not found` as one that does not exist (S-2, S-3).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_escrow::EscrowIdentity;
use cairn_seal::BlockId;
use cairn_token::{
    Capabilities, Capability, Clock, DeviceId, Issuer, KeyResolver, Owner, Revocations, Role,
    TenantId, Timestamp, TokenId, TokenRequest, UserId, VerifiedToken, Verifier, authorize,
};

use crate::archives::{Archives, KIND_BLOCK, KIND_SNAPSHOT, StoreError};
use crate::atrest::KeyRing;
use crate::db::{Db, DeviceState};
use crate::events::{self, EventsError};
use crate::keystore::{self, KeystoreError};
use crate::wire;

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (liveness only).
    Public,
    /// Any valid token of the path's tenant.
    Tenant,
    /// A valid token of the path's tenant that carries this capability.
    Capability(Capability),
    /// The device secret of the path's device (`Authorization: Device <hex>`), checked by the
    /// handler: only the route that exchanges it for an access token.
    DeviceSecret,
}

/// One route: method, path pattern (axum syntax; tenant routes start with
/// `/v1/tenants/{tenant}/`), access, body limit and handler.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path pattern.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
    /// The largest request body it reads.
    pub max_body: usize,
    /// What answers it.
    pub handler: Handler,
}

impl PartialEq for Route {
    /// Routes are the same route when their method and path are (a path has one handler).
    fn eq(&self, other: &Self) -> bool {
        (self.method, self.path) == (other.method, other.path)
    }
}

impl Eq for Route {}

/// Body limit of routes that take no body or a small JSON one.
pub(crate) const SMALL_BODY: usize = 64 << 10;
/// Body limit of event ingest: the event schema's own bound.
pub(crate) const EVENTS_BODY: usize = cairn_events::Limits::MAX_BATCH_BYTES;
/// Body limit of id lists.
pub(crate) const IDS_BODY: usize = wire::MAX_IDS * 32;
/// Body limit of block uploads.
pub(crate) const BLOCKS_BODY: usize = wire::MAX_BATCH_BYTES;
/// Body limit of one snapshot record (a sealed block).
pub(crate) const SNAPSHOT_BODY: usize = cairn_seal::MAX_SEALED_LEN;

const fn route(
    method: &'static str,
    path: &'static str,
    access: Access,
    max_body: usize,
    handler: Handler,
) -> Route {
    Route {
        method,
        path,
        access,
        max_body,
        handler,
    }
}

/// A route's handler, for the method filter of its method.
pub type Handler = fn(axum::routing::MethodFilter) -> axum::routing::MethodRouter;

use Access::{Capability as Cap, DeviceSecret, Public, Tenant};
use Capability::{
    Admin, BackupList, BackupPut, BackupRead, EscrowDeposit, EscrowRecover, EventsRead, EventsWrite,
};
use axum::routing::on;

/// The route table.
pub const ROUTES: &[Route] = &[
    route("GET", "/healthz", Public, 0, |f| on(f, healthz)),
    route("GET", "/v1/tenants/{tenant}/whoami", Tenant, 0, |f| {
        on(f, whoami)
    }),
    route("GET", "/v1/tenants/{tenant}/quota", Cap(Admin), 0, |f| {
        on(f, quota)
    }),
    route("GET", "/v1/tenants/{tenant}/users", Cap(Admin), 0, |f| {
        on(f, list_users)
    }),
    route("GET", "/v1/tenants/{tenant}/audit", Cap(Admin), 0, |f| {
        on(f, audit_log)
    }),
    route(
        "POST",
        "/v1/tenants/{tenant}/users",
        Cap(Admin),
        SMALL_BODY,
        |f| on(f, add_user),
    ),
    route("GET", "/v1/tenants/{tenant}/devices", Cap(Admin), 0, |f| {
        on(f, list_devices)
    }),
    route(
        "POST",
        "/v1/tenants/{tenant}/devices",
        Cap(Admin),
        SMALL_BODY,
        |f| on(f, add_device),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/devices/{device}/enroll",
        Tenant,
        0,
        |f| on(f, enroll),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/devices/{device}/token",
        DeviceSecret,
        0,
        |f| on(f, refresh),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/devices/{device}/deauthorize",
        Cap(Admin),
        0,
        |f| on(f, deauthorize),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/users/{user}/blocks/missing",
        Cap(BackupPut),
        IDS_BODY,
        |f| on(f, missing),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/users/{user}/blocks",
        Cap(BackupPut),
        BLOCKS_BODY,
        |f| on(f, upload),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/users/{user}/blocks/fetch",
        Cap(BackupRead),
        IDS_BODY,
        |f| on(f, fetch),
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/users/{user}/snapshots",
        Cap(BackupList),
        0,
        |f| on(f, list_snapshots),
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/users/{user}/archive",
        Cap(BackupList),
        0,
        |f| on(f, user_archive),
    ),
    route(
        "PUT",
        "/v1/tenants/{tenant}/users/{user}/snapshots/{id}",
        Cap(BackupPut),
        SNAPSHOT_BODY,
        |f| on(f, put_snapshot),
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/users/{user}/snapshots/{id}",
        Cap(BackupRead),
        0,
        |f| on(f, get_snapshot),
    ),
    route(
        "PUT",
        "/v1/tenants/{tenant}/users/{user}/escrow",
        Cap(EscrowDeposit),
        SMALL_BODY,
        |f| on(f, deposit),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/users/{user}/escrow/recover",
        Cap(EscrowRecover),
        SMALL_BODY,
        |f| on(f, recover),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/events",
        Cap(EventsWrite),
        EVENTS_BODY,
        |f| on(f, ingest),
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/events",
        Cap(EventsRead),
        0,
        |f| on(f, search),
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/events/export",
        Cap(EventsRead),
        0,
        |f| on(f, export),
    ),
];

/// Capabilities of a device's credentials (what enrollment issues).
pub const DEVICE_CAPABILITIES: &[Capability] = &[
    BackupPut,
    BackupRead,
    BackupList,
    EventsWrite,
    EscrowDeposit,
];
/// How often an instance sharing its database with others reloads revocations: the longest a
/// token revoked (or a device deauthorized) through another instance still works here.
pub const REVOCATION_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);
/// Lifetime of a device's access token; the device refreshes it with its secret.
pub const DEVICE_TOKEN_LIFETIME_SECS: i64 = 3600;
/// Lifetime of an enrollment token (the token policy's ceiling).
pub const ENROLLMENT_TOKEN_LIFETIME_SECS: i64 = cairn_token::MAX_LIFETIME_CEILING_SECS;

/// Revoked token ids and deauthorized devices: loaded from the database at start, updated by
/// the routes that revoke, and (with several instances) reloaded every
/// [`REVOCATION_REFRESH`] so that a revocation made through one instance reaches the others.
#[derive(Clone, Debug, Default)]
pub struct RevocationList(Arc<RevokedInner>);

#[derive(Debug, Default)]
struct RevokedInner {
    tokens: RwLock<HashSet<(TenantId, TokenId)>>,
    devices: RwLock<HashSet<(TenantId, DeviceId)>>,
}

impl RevocationList {
    /// Loads both lists.
    ///
    /// # Errors
    /// [`crate::db::DbError`].
    pub async fn load(db: &Db) -> Result<Self, crate::db::DbError> {
        let tokens = db.revoked_tokens().await?;
        let devices = db.deauthorized_devices().await?;
        Ok(Self(Arc::new(RevokedInner {
            tokens: RwLock::new(tokens.into_iter().collect()),
            devices: RwLock::new(devices.into_iter().collect()),
        })))
    }

    /// Adds what the database lists now (revocations are final: nothing is ever removed).
    ///
    /// # Errors
    /// [`crate::db::DbError`].
    pub async fn refresh(&self, db: &Db) -> Result<(), crate::db::DbError> {
        let tokens = db.revoked_tokens().await?;
        let devices = db.deauthorized_devices().await?;
        if let Ok(mut t) = self.0.tokens.write() {
            t.extend(tokens);
        }
        if let Ok(mut d) = self.0.devices.write() {
            d.extend(devices);
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

    fn revoke_token(&self, tenant: &TenantId, token: &TokenId) {
        if let Ok(mut t) = self.0.tokens.write() {
            t.insert((tenant.clone(), token.clone()));
        }
    }

    fn deauthorize(&self, tenant: &TenantId, device: &DeviceId) {
        if let Ok(mut d) = self.0.devices.write() {
            d.insert((tenant.clone(), device.clone()));
        }
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

use crate::metrics::Metrics;

fn unix_nanos() -> i64 {
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
    /// Issues enrollment and device tokens.
    pub issuer: Issuer,
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

fn internal(what: &str, e: &dyn std::fmt::Display) -> ApiError {
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
            other => internal("storage", &other),
        }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        internal("database", &e)
    }
}

/// The method filter of a route's method name.
fn method_filter(method: &str) -> axum::routing::MethodFilter {
    use axum::routing::MethodFilter;
    match method {
        "POST" => MethodFilter::POST,
        "PUT" => MethodFilter::PUT,
        "DELETE" => MethodFilter::DELETE,
        "PATCH" => MethodFilter::PATCH,
        "HEAD" => MethodFilter::HEAD,
        _ => MethodFilter::GET,
    }
}

/// The router: [`ROUTES`], each behind its access check and body limit.
pub fn router<K, C, R>(state: Arc<AppState<K, C, R>>) -> axum::Router
where
    K: KeyResolver + 'static,
    C: Clock + 'static,
    R: Revocations + 'static,
{
    let mut router = axum::Router::new();
    for route in ROUTES {
        let access = route.access;
        let limit = route.max_body;
        // The route's limit is one `RequestBodyLimitLayer` (413 for a `Content-Length` over it
        // before the body is read, 413 for a chunked body that grows past it). axum's own
        // `DefaultBodyLimit` is off: its extra wrapping of the body hid the length error from
        // the extractors, and a chunked body over the limit was answered 400.
        let mut h = (route.handler)(method_filter(route.method))
            .layer::<_, std::convert::Infallible>(DefaultBodyLimit::disable())
            .layer::<_, std::convert::Infallible>(tower_http::limit::RequestBodyLimitLayer::new(
                limit,
            ));
        if access != Access::Public {
            let state = Arc::clone(&state);
            h = h.route_layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let state = Arc::clone(&state);
                    async move { authenticate(&state, access, req, next).await }
                },
            ));
        }
        let (method, path) = (route.method, route.path);
        let services = Arc::clone(&state.services);
        h = h.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let services = Arc::clone(&services);
                async move {
                    let response = next.run(req).await;
                    services
                        .metrics
                        .request(method, path, response.status().as_u16());
                    response
                }
            },
        ));
        router = router.route(route.path, h);
    }
    router
        .merge(crate::console::router())
        .layer(Extension(Arc::clone(&state.services)))
}

/// Whether a path segment is canonical: `[a-z0-9-]{1,64}` (ids, and the fixed words of our
/// paths). Anything else (percent-encoding, dots, upper case, empty) is refused before lookup.
fn canonical_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks the path is canonical and the bearer token is valid for its tenant (and carries the
/// route's capability, and its device is not deauthorized), then passes the verified token to
/// the handler.
async fn authenticate<K: KeyResolver, C: Clock, R: Revocations>(
    state: &AppState<K, C, R>,
    access: Access,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    // S-4: every segment canonical (the version segment `v1` included).
    if !path.split('/').skip(1).all(canonical_segment) {
        return ApiError::BadRequest.into_response();
    }
    let Some(tenant) = path
        .strip_prefix("/v1/tenants/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|t| TenantId::new(t).ok())
    else {
        return ApiError::BadRequest.into_response();
    };
    // S-12: failures are counted per socket address; an address over its budget gets 429 for
    // every request that fails authentication, never for one that passes (many clients share
    // an address behind a NAT or a TCP pass-through balancer).
    let peer = req
        .extensions()
        .get::<crate::ratelimit::PeerAddr>()
        .map(|p| p.0.ip());
    let limits = &state.services.limits;
    let connection = req
        .extensions()
        .get::<Arc<crate::admission::Connection>>()
        .cloned();
    if access == Access::DeviceSecret {
        // The handler checks the secret against the path's device; a failure counts against
        // the address like a bad token.
        let response = next.run(req).await;
        if response.status() == StatusCode::UNAUTHORIZED {
            let over = peer.and_then(|ip| limits.failed(ip));
            let blocked = peer.and_then(|ip| limits.blocked(ip));
            if let Some(secs) = over.or(blocked) {
                return ApiError::TooMany(secs).into_response();
            }
        }
        return response;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let metrics = &state.services.metrics;
    let refuse = || {
        metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        let over = peer.and_then(|ip| limits.failed(ip));
        match over.or_else(|| peer.and_then(|ip| limits.blocked(ip))) {
            Some(secs) => ApiError::TooMany(secs).into_response(),
            None => ApiError::Unauthorized.into_response(),
        }
    };
    let Some(token) = token else {
        tracing::info!(
            tenant = tenant.as_str(),
            step = "no bearer token",
            "token refused"
        );
        return refuse();
    };
    let verified = match state.verifier.verify(token, &tenant) {
        Ok(v) => v,
        Err(refused) => {
            // The step that failed (never any part of the token).
            tracing::info!(tenant = tenant.as_str(), step = ?refused.reason(), "token refused");
            return refuse();
        }
    };
    // Budgets and caps are the principal's: the device of a device token (whatever token it
    // refreshed to), else the user.
    let claims = verified.claims();
    let principal = (
        tenant.as_str().to_owned(),
        claims.device.as_ref().map_or_else(
            || format!("user:{}", claims.subject.as_str()),
            |d| format!("device:{}", d.as_str()),
        ),
    );
    let _admitted = match limits.admit(&principal, connection.as_deref()) {
        Ok(admitted) => admitted,
        Err(crate::ratelimit::Refusal::Rate(secs)) => {
            return ApiError::TooMany(secs).into_response();
        }
        Err(crate::ratelimit::Refusal::InFlight) => return ApiError::TooMany(1).into_response(),
        Err(crate::ratelimit::Refusal::Connections) => {
            tracing::info!(
                tenant = tenant.as_str(),
                principal = principal.1.as_str(),
                "connection refused: the principal or its tenant holds as many as it may"
            );
            let mut response = ApiError::TooMany(1).into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    if let Some(device) = &verified.claims().device
        && state.services.revoked.is_deauthorized(&tenant, device)
    {
        return ApiError::DeviceDeauthorized.into_response();
    }
    if let Access::Capability(needed) = access
        && !verified.claims().capabilities.contains(needed)
    {
        return ApiError::Forbidden.into_response();
    }
    req.extensions_mut().insert(Arc::new(verified));
    next.run(req).await
}

type Token = Extension<Arc<VerifiedToken>>;
type Svc = Extension<Arc<Services>>;

/// The tenant of a verified token (the authentication layer checked it is the path's).
fn tenant_of(token: &VerifiedToken) -> &TenantId {
    &token.claims().tenant
}

fn actor(token: &VerifiedToken) -> String {
    let c = token.claims();
    match &c.device {
        Some(d) => format!("{}/{}", c.subject.as_str(), d.as_str()),
        None => c.subject.as_str().to_owned(),
    }
}

/// The user a user-scoped route names, checked against the token (404 when it may not reach
/// it, the same as when the user does not exist).
async fn user_scope(
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
fn admin_scope(token: &VerifiedToken) -> Result<(), ApiError> {
    authorize(token, tenant_of(token), Admin, Owner::Tenant).map_err(|_| ApiError::Forbidden)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| internal("storage task", &e))?
        .map_err(ApiError::from)
}

fn binary(media_type: &'static str, body: Vec<u8>) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(media_type))],
        body,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

/// Who the token says the caller is: lets an agent check its credentials.
async fn whoami(Extension(token): Token) -> String {
    let c = token.claims();
    format!(
        "tenant={} user={} device={} role={}\n",
        c.tenant.as_str(),
        c.subject.as_str(),
        c.device.as_ref().map_or("-", |d| d.as_str()),
        c.role.as_str()
    )
}

async fn quota(Extension(token): Token, Extension(svc): Svc) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let q = svc
        .db
        .quota(tenant_of(&token))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(q).into_response())
}

async fn audit_log(Extension(token): Token, Extension(svc): Svc) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let log = svc.db.audit_entries(tenant_of(&token)).await?;
    Ok(axum::Json(log).into_response())
}

/// A user's archive as the console shows it: its size, and each snapshot record with when it
/// arrived and from which device (the server cannot read snapshots).
#[derive(serde::Serialize)]
struct ArchiveView {
    user: String,
    stored_bytes: i64,
    /// `healthy`, or `damaged` once an opening found acknowledged data missing
    /// (`Archives::check_witness`), with `damage` saying what and since when.
    health: &'static str,
    damage: Option<crate::db::Damage>,
    snapshots: Vec<crate::db::SnapshotRow>,
}

async fn user_archive(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupList).await?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let (t, u) = (tenant.clone(), user.clone());
    let ids = blocking(move || s.archives.snapshots(&t, &u)).await?;
    let mut known: HashMap<String, crate::db::SnapshotRow> = svc
        .db
        .snapshot_rows(&tenant, &user)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    // The archive is the truth; the table adds what was seen of each record's arrival
    // (records stored before it existed have none).
    let mut snapshots: Vec<crate::db::SnapshotRow> = ids
        .iter()
        .map(|id| {
            let id = hex::encode(id.as_bytes());
            known.remove(&id).unwrap_or(crate::db::SnapshotRow {
                id,
                device: None,
                bytes: 0,
                received_unix: 0,
            })
        })
        .collect();
    snapshots.sort_by(|a, b| (a.received_unix, &a.id).cmp(&(b.received_unix, &b.id)));
    // Read after the archive was opened above: an opening that found damage has marked it.
    let damage = svc.db.damage(&tenant, &user).await?;
    Ok(axum::Json(ArchiveView {
        health: if damage.is_some() {
            "damaged"
        } else {
            "healthy"
        },
        damage,
        user: user.as_str().to_owned(),
        stored_bytes: svc.db.stored_bytes(&tenant, &user).await?.unwrap_or(0),
        snapshots,
    })
    .into_response())
}

async fn list_users(Extension(token): Token, Extension(svc): Svc) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let users = svc.db.users(tenant_of(&token)).await?;
    Ok(axum::Json(users).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUser {
    id: String,
    role: String,
}

async fn add_user(
    Extension(token): Token,
    Extension(svc): Svc,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let new: NewUser = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest)?;
    let user = UserId::new(&new.id).map_err(|_| ApiError::BadRequest)?;
    let role = Role::parse(&new.role).ok_or(ApiError::BadRequest)?;
    let tenant = tenant_of(&token);
    if !svc.db.add_user(tenant, &user, role).await? {
        return Err(ApiError::Conflict);
    }
    svc.db
        .audit(tenant, &actor(&token), "user.add", user.as_str(), "ok")
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

async fn list_devices(Extension(token): Token, Extension(svc): Svc) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let devices = svc.db.devices(tenant_of(&token)).await?;
    Ok(axum::Json(devices).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NewDevice {
    user: String,
    name: String,
}

#[derive(serde::Serialize)]
struct Credentials {
    device: String,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// At enrollment: the user the device backs up for, and the server's escrow public key
    /// (X25519, hex) that the agent wraps its archive key to in the standard mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    escrow_public_key: Option<String>,
}

fn issue(
    svc: &Services,
    tenant: &TenantId,
    user: UserId,
    device: DeviceId,
    caps: &[Capability],
    lifetime_secs: i64,
) -> Result<(String, String), ApiError> {
    let request = TokenRequest {
        subject: user,
        tenant: tenant.clone(),
        device: Some(device),
        role: Role::User,
        capabilities: Capabilities::of(caps),
        lifetime_secs,
    };
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|e| internal("random", &e))?;
    let jti = TokenId::new(&hex::encode(jti)).map_err(|e| internal("token id", &e))?;
    let token = svc
        .issuer
        .issue_with_id(&request, svc.clock.now(), jti.clone())
        .map_err(|e| internal("issuing a token", &e))?;
    Ok((jti.as_str().to_owned(), token.expose().to_owned()))
}

/// Registers a device of a user and returns its enrollment token (one use, a week).
async fn add_device(
    Extension(token): Token,
    Extension(svc): Svc,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let new: NewDevice = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest)?;
    let user = UserId::new(&new.user).map_err(|_| ApiError::BadRequest)?;
    if new.name.is_empty() || new.name.len() > 256 || new.name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest);
    }
    let tenant = tenant_of(&token);
    if svc.db.user(tenant, &user).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| internal("random", &e))?;
    let device = DeviceId::new(&hex::encode(raw)).map_err(|e| internal("device id", &e))?;
    let (jti, enrollment) = issue(
        &svc,
        tenant,
        user.clone(),
        device.clone(),
        &[],
        ENROLLMENT_TOKEN_LIFETIME_SECS,
    )?;
    svc.db
        .add_device(tenant, &device, &user, &new.name, &jti)
        .await?;
    svc.db
        .audit(tenant, &actor(&token), "device.add", device.as_str(), "ok")
        .await?;
    let body = Credentials {
        device: device.as_str().to_owned(),
        token: enrollment,
        secret: None,
        user: None,
        escrow_public_key: None,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// Turns an enrollment token into the device's credentials (once).
async fn enroll(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, device)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let claims = token.claims();
    let tenant = tenant_of(&token);
    // No device has a name that is not an id.
    let device = DeviceId::new(&device).map_err(|_| ApiError::NotFound)?;
    let row = svc
        .db
        .device(tenant, &device)
        .await?
        .ok_or(ApiError::NotFound)?;
    let is_enrollment_token = claims.capabilities == Capabilities::NONE
        && claims.role == Role::User
        && claims.device.as_ref() == Some(&device)
        && claims.subject == row.user
        && row.enrollment_jti.as_deref() == Some(claims.token_id.as_str());
    if !is_enrollment_token || row.state != DeviceState::Pending {
        return Err(ApiError::NotFound);
    }
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *secret).map_err(|e| internal("random", &e))?;
    let hash = blake3::hash(&*secret);
    if !svc
        .db
        .activate_device(tenant, &device, hash.as_bytes())
        .await?
    {
        // Another enrollment won the race.
        return Err(ApiError::NotFound);
    }
    svc.db
        .touch_device(tenant, &device, agent_version(&headers).as_deref())
        .await?;
    svc.db.revoke_token(tenant, &claims.token_id).await?;
    svc.revoked.revoke_token(tenant, &claims.token_id);
    let device_id = device.clone();
    let (_, credentials) = issue(
        &svc,
        tenant,
        claims.subject.clone(),
        device_id,
        DEVICE_CAPABILITIES,
        DEVICE_TOKEN_LIFETIME_SECS,
    )?;
    svc.db
        .audit(
            tenant,
            &actor(&token),
            "device.enroll",
            device.as_str(),
            "ok",
        )
        .await?;
    Ok(axum::Json(Credentials {
        device: device.as_str().to_owned(),
        token: credentials,
        secret: Some(hex::encode(*secret)),
        user: Some(claims.subject.as_str().to_owned()),
        escrow_public_key: Some(hex::encode(svc.escrow.0.public().to_bytes())),
    })
    .into_response())
}

/// Exchanges a device's secret for a fresh access token. A wrong or missing secret, an unknown
/// device, a pending one: the same 401. A deauthorized device: 410, so that the agent removes
/// its key.
/// The agent version a request reports: its `User-Agent` if that is `cairn-agent/VERSION`
/// (printable, at most 64 bytes); anything else is not recorded.
fn agent_version(headers: &axum::http::HeaderMap) -> Option<String> {
    let ua = headers.get(header::USER_AGENT)?.to_str().ok()?;
    let version = ua.strip_prefix("cairn-agent/")?;
    (!version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b)))
    .then(|| version.to_owned())
}

async fn refresh(
    Extension(svc): Svc,
    Path((tenant, device)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    use subtle::ConstantTimeEq;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Device "))
        .and_then(|h| {
            let mut s = zeroize::Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(h, &mut *s).ok().map(|()| s)
        });
    let fail = || {
        svc.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        ApiError::Unauthorized
    };
    let (Some(presented), Ok(tenant_id), Ok(device_id)) =
        (presented, TenantId::new(&tenant), DeviceId::new(&device))
    else {
        return Err(fail());
    };
    let Some(row) = svc.db.device(&tenant_id, &device_id).await? else {
        return Err(fail());
    };
    let Some(stored) = &row.secret_hash else {
        return Err(fail());
    };
    // Constant time; a stored hash of another length compares unequal.
    let hash = blake3::hash(&*presented);
    if !bool::from(hash.as_bytes()[..].ct_eq(stored.as_slice())) {
        return Err(fail());
    }
    if row.state == DeviceState::Deauthorized {
        return Err(ApiError::DeviceDeauthorized);
    }
    if row.state != DeviceState::Active {
        return Err(fail());
    }
    // Each refresh is a new token: without this budget, refreshing would be a way around
    // every per-principal limit, and a cheap way to make the server sign.
    if let Some(secs) = svc.limits.refresh(&tenant, &device) {
        return Err(ApiError::TooMany(secs));
    }
    let (_, token) = issue(
        &svc,
        &tenant_id,
        row.user,
        device_id.clone(),
        DEVICE_CAPABILITIES,
        DEVICE_TOKEN_LIFETIME_SECS,
    )?;
    svc.db
        .touch_device(&tenant_id, &device_id, agent_version(&headers).as_deref())
        .await?;
    Ok(axum::Json(Credentials {
        device,
        token,
        secret: None,
        user: None,
        escrow_public_key: None,
    })
    .into_response())
}

/// Deauthorizes a device: its tokens stop working, and its next call is told to remove its key.
async fn deauthorize(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, device)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let tenant = tenant_of(&token);
    let device = DeviceId::new(&device).map_err(|_| ApiError::NotFound)?;
    let row = svc
        .db
        .device(tenant, &device)
        .await?
        .ok_or(ApiError::NotFound)?;
    if row.state == DeviceState::Deauthorized
        || !svc
            .db
            .set_device_state(tenant, &device, row.state, DeviceState::Deauthorized)
            .await?
    {
        return Err(ApiError::Conflict);
    }
    svc.revoked.deauthorize(tenant, &device);
    svc.db
        .audit(
            tenant,
            &actor(&token),
            "device.deauthorize",
            device.as_str(),
            "ok",
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn missing(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupPut).await?;
    let ids = wire::decode_ids(&body).map_err(|_| ApiError::BadRequest)?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let missing = blocking(move || s.archives.missing(&tenant, &user, &ids)).await?;
    Ok(binary(wire::IDS_MEDIA_TYPE, wire::encode_ids(&missing)))
}

async fn upload(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupPut).await?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let stored = blocking(move || {
        // Framing and each block's public header are checked before anything is stored.
        let blocks = wire::decode_upload(&body).map_err(|_| StoreError::Malformed)?;
        s.archives.put(&tenant, &user, KIND_BLOCK, &blocks)
    })
    .await?;
    svc.metrics
        .bytes_stored
        .fetch_add(stored.bytes, Ordering::Relaxed);
    Ok(axum::Json(stored).into_response())
}

async fn fetch(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupRead).await?;
    let ids = wire::decode_ids(&body).map_err(|_| ApiError::BadRequest)?;
    if ids.len() > wire::MAX_BATCH_BLOCKS {
        return Err(ApiError::BadRequest);
    }
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let blocks = blocking(move || s.archives.get(&tenant, &user, KIND_BLOCK, &ids)).await?;
    Ok(binary(wire::BLOCKS_MEDIA_TYPE, wire::encode_batch(&blocks)))
}

async fn list_snapshots(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupList).await?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let ids = blocking(move || s.archives.snapshots(&tenant, &user)).await?;
    Ok(binary(wire::IDS_MEDIA_TYPE, wire::encode_ids(&ids)))
}

fn parse_id(hex_id: &str) -> Result<BlockId, ApiError> {
    let mut id = [0u8; 32];
    hex::decode_to_slice(hex_id, &mut id).map_err(|_| ApiError::BadRequest)?;
    Ok(BlockId::from_bytes(id))
}

async fn put_snapshot(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupPut).await?;
    let id = parse_id(&id)?;
    let header = cairn_seal::SealedHeader::parse(&body).map_err(|_| ApiError::BadRequest)?;
    if header.id != id {
        return Err(ApiError::BadRequest);
    }
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let len = i64::try_from(body.len()).map_err(|_| ApiError::BadRequest)?;
    let (t, u) = (tenant.clone(), user.clone());
    let stored =
        blocking(move || s.archives.put(&t, &u, KIND_SNAPSHOT, &[(id, &body[..])])).await?;
    svc.db
        .record_snapshot(
            &tenant,
            &user,
            &hex::encode(id.as_bytes()),
            token.claims().device.as_ref(),
            len,
        )
        .await?;
    Ok(axum::Json(stored).into_response())
}

async fn get_snapshot(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user, id)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupRead).await?;
    let id = parse_id(&id)?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let mut records =
        blocking(move || s.archives.get(&tenant, &user, KIND_SNAPSHOT, &[id])).await?;
    Ok(binary(
        "application/octet-stream",
        records.pop().unwrap_or_default(),
    ))
}

impl From<KeystoreError> for ApiError {
    fn from(e: KeystoreError) -> Self {
        match e {
            KeystoreError::Invalid => Self::BadRequest,
            KeystoreError::Downgrade => Self::Forbidden,
            KeystoreError::NotFound => Self::NotFound,
            KeystoreError::NotRecoverable => Self::Conflict,
            other => internal("keystore", &other),
        }
    }
}

async fn deposit(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, EscrowDeposit).await?;
    let done = keystore::deposit(&svc.db, tenant_of(&token), &user, &actor(&token), &body).await?;
    Ok(axum::Json(done).into_response())
}

/// Recovery: an administrator with the recover capability, for a user of their tenant; the
/// body is the 32-byte X25519 public key the recovered key is re-wrapped to.
async fn recover(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if token.claims().role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let user = user_scope(&svc, &token, &user, EscrowRecover).await?;
    let envelope = keystore::recover(
        &svc.db,
        &svc.escrow,
        tenant_of(&token),
        &user,
        &actor(&token),
        &body,
    )
    .await?;
    Ok(binary("application/octet-stream", envelope))
}

impl From<EventsError> for ApiError {
    fn from(e: EventsError) -> Self {
        match e {
            EventsError::Invalid(_) | EventsError::BadCursor => Self::BadRequest,
            EventsError::Provenance => Self::Refused,
            other => internal("events", &other),
        }
    }
}

async fn ingest(
    Extension(token): Token,
    Extension(svc): Svc,
    body: Bytes,
) -> Result<Response, ApiError> {
    let claims = token.claims();
    // Events come from devices: the batch's device must be the token's (S-6).
    let Some(device) = &claims.device else {
        return Err(ApiError::Forbidden);
    };
    let sender = events::Sender {
        tenant: claims.tenant.as_str(),
        user: claims.subject.as_str(),
        device: device.as_str(),
    };
    svc.db.touch_device(&claims.tenant, device, None).await?;
    let done = match events::ingest(&svc.db, &svc.ring, &sender, &body, unix_nanos()).await {
        Err(EventsError::Provenance) => {
            svc.metrics
                .provenance_rejections
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                tenant = sender.tenant,
                device = sender.device,
                "event batch names another device"
            );
            return Err(ApiError::Refused);
        }
        other => other?,
    };
    svc.metrics
        .events_ingested
        .fetch_add(done.accepted as u64, Ordering::Relaxed);
    Ok(axum::Json(done).into_response())
}

/// The users whose events a token may read: a user's token only their own.
fn event_scope(token: &VerifiedToken) -> Result<Option<&str>, ApiError> {
    let c = token.claims();
    match c.role {
        Role::Admin | Role::Service => Ok(None),
        Role::User => {
            authorize(token, &c.tenant, EventsRead, Owner::User(&c.subject))
                .map_err(|_| ApiError::Forbidden)?;
            Ok(Some(c.subject.as_str()))
        }
    }
}

#[derive(serde::Serialize)]
struct SearchPage<'a> {
    events: Vec<cairn_events::ocsf::FileSystemActivity<'a>>,
    next: Option<String>,
}

async fn search(
    Extension(token): Token,
    Extension(svc): Svc,
    query: Result<Query<events::Query>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // The extractor's own rejection would echo the query: answer the fixed 400 instead.
    let Query(query) = query.map_err(|_| ApiError::BadRequest)?;
    let only = event_scope(&token)?;
    let page = events::search(&svc.db, &svc.ring, tenant_of(&token).as_str(), &query, only).await?;
    let body = SearchPage {
        events: page
            .events
            .iter()
            .map(|e| cairn_events::ocsf::to_ocsf(e, env!("CARGO_PKG_VERSION")))
            .collect(),
        next: page.next.clone(),
    };
    Ok(axum::Json(body).into_response())
}

/// Most events one export answer carries; the `cairn-next` header continues.
pub const MAX_EXPORT: usize = 50_000;

/// OCSF NDJSON for SIEMs: one File System Activity object per line.
async fn export(
    Extension(token): Token,
    Extension(svc): Svc,
    query: Result<Query<events::Query>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(mut query) = query.map_err(|_| ApiError::BadRequest)?;
    let only = event_scope(&token)?;
    let tenant = tenant_of(&token);
    let mut out = Vec::new();
    let mut written = 0;
    let next = loop {
        let page = events::search(&svc.db, &svc.ring, tenant.as_str(), &query, only).await?;
        written +=
            cairn_events::ocsf::write_ndjson(&page.events, env!("CARGO_PKG_VERSION"), &mut out)
                .map_err(|e| internal("export", &e))?;
        match page.next {
            Some(next) if written < MAX_EXPORT => query.after = Some(next),
            other => break other,
        }
    };
    let mut response = binary("application/x-ndjson", out);
    if let Some(next) = next
        && let Ok(v) = HeaderValue::from_str(&next)
    {
        response.headers_mut().insert("cairn-next", v);
    }
    Ok(response)
}
