//! Every route the server answers, in one table, each with its access decision and body limit
//! (S-1, S-8): the router is built from [`ROUTES`] and nothing else, so a route cannot exist
//! without them. Handlers then scope the request to its owner with [`cairn_token::authorize`]:
//! a user's token reaches only that user's archive, escrow record and events; administrators
//! reach their own tenant only.
//!
//! Answers that could tell one tenant's or user's existence from another's are uniform: a
//! token not valid for the path's tenant always gets `401 unauthorized`, and a resource the
//! token may not reach gets the same `404 not found` as one that does not exist (S-2, S-3).
//!
//! | module | what |
//! | --- | --- |
//! | this one | the table ([`ROUTES`]) and the router built from it |
//! | `auth` | the middleware every request passes: token, tenant, revocations, admission |
//! | `state` | what handlers share: [`Services`], [`AppState`], [`ApiError`], owner scoping |
//! | `tenants` | health, `whoami`, quota, audit log, users, a user's archive view |
//! | `devices` | device registration, enrollment, refresh by device secret, deauthorization |
//! | `backups` | blocks an archive lacks, block upload and fetch, snapshot records |
//! | `escrow` | escrowed keys: deposit, audited recovery |
//! | `events` | file events: ingest, search, OCSF export |
//! | `retention` | retention policies: the tenant's, users' overrides; the plan of what they keep |
//! | `holds` | legal holds on users and devices |

mod auth;
mod backups;
mod devices;
mod escrow;
mod events;
mod holds;
mod retention;
mod state;
mod tenants;

use std::sync::Arc;

use axum::Extension;
use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware::Next;
use cairn_token::{Capability, Clock, KeyResolver, Revocations};

use self::auth::authenticate;
use self::backups::{fetch, get_snapshot, list_snapshots, missing, put_snapshot, upload};
use self::devices::{add_device, deauthorize, enroll, list_devices, refresh};
use self::escrow::{deposit, recover};
use self::events::{export, ingest, search};
use self::holds::{lift_hold, list_holds, place_hold};
use self::retention::{
    get_tenant_retention, get_user_retention, get_user_retention_plan, post_user_prune,
    put_tenant_retention, put_user_retention,
};
use self::tenants::{
    add_user, audit_log, healthz, list_tokens, list_users, quota, remove_user, resume_user,
    revoke_token, suspend_user, user_archive, whoami,
};
use crate::wire;

pub use self::auth::{REVOCATION_REFRESH, RevocationList};
pub use self::devices::{
    DEVICE_CAPABILITIES, DEVICE_TOKEN_LIFETIME_SECS, ENROLLMENT_TOKEN_LIFETIME_SECS,
};
pub use self::events::MAX_EXPORT;
pub use self::retention::{prune_user, scheduled_prune};
pub use self::state::{ApiError, AppState, Services};

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

/// Body limit of one snapshot record (a sealed block) with its reference list.
pub(crate) const SNAPSHOT_BODY: usize = wire::MAX_SNAPSHOT_BODY;

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
    route(
        "POST",
        "/v1/tenants/{tenant}/users/{user}/suspend",
        Cap(Admin),
        0,
        |f| on(f, suspend_user),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/users/{user}/resume",
        Cap(Admin),
        0,
        |f| on(f, resume_user),
    ),
    route(
        "DELETE",
        "/v1/tenants/{tenant}/users/{user}",
        Cap(Admin),
        0,
        |f| on(f, remove_user),
    ),
    route("GET", "/v1/tenants/{tenant}/tokens", Cap(Admin), 0, |f| {
        on(f, list_tokens)
    }),
    route(
        "POST",
        "/v1/tenants/{tenant}/tokens/{id}/revoke",
        Cap(Admin),
        0,
        |f| on(f, revoke_token),
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/retention",
        Cap(Admin),
        0,
        |f| on(f, get_tenant_retention),
    ),
    route(
        "PUT",
        "/v1/tenants/{tenant}/retention",
        Cap(Admin),
        SMALL_BODY,
        |f| on(f, put_tenant_retention),
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/users/{user}/retention",
        Cap(BackupList),
        0,
        |f| on(f, get_user_retention),
    ),
    route(
        "PUT",
        "/v1/tenants/{tenant}/users/{user}/retention",
        Cap(Admin),
        SMALL_BODY,
        |f| on(f, put_user_retention),
    ),
    route("GET", "/v1/tenants/{tenant}/holds", Cap(Admin), 0, |f| {
        on(f, list_holds)
    }),
    route(
        "POST",
        "/v1/tenants/{tenant}/holds",
        Cap(Admin),
        SMALL_BODY,
        |f| on(f, place_hold),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/holds/{id}/lift",
        Cap(Admin),
        0,
        |f| on(f, lift_hold),
    ),
    route(
        "GET",
        "/v1/tenants/{tenant}/users/{user}/retention/plan",
        Cap(BackupList),
        0,
        |f| on(f, get_user_retention_plan),
    ),
    route(
        "POST",
        "/v1/tenants/{tenant}/users/{user}/prune",
        Cap(Admin),
        0,
        |f| on(f, post_user_prune),
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
