//! Every route the server answers, in one table, each with its access decision (S-1): the
//! router is built from [`ROUTES`] and nothing else, so a route cannot exist without one.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_token::{
    Capability, Clock, KeyResolver, Revocations, TenantId, Timestamp, VerifiedToken, Verifier,
};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (liveness only).
    Public,
    /// Any valid token of the path's tenant.
    Tenant,
    /// A valid token of the path's tenant that carries this capability.
    Capability(Capability),
}

/// One route: method, path pattern (axum syntax; tenant routes start with
/// `/v1/tenants/{tenant}/`) and access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route {
    /// The HTTP method.
    pub method: &'static str,
    /// The path pattern.
    pub path: &'static str,
    /// Who may call it.
    pub access: Access,
}

/// The route table.
pub const ROUTES: &[Route] = &[
    Route {
        method: "GET",
        path: "/healthz",
        access: Access::Public,
    },
    Route {
        method: "GET",
        path: "/v1/tenants/{tenant}/whoami",
        access: Access::Tenant,
    },
];

/// What the handlers share: the token verifier.
pub struct AppState<K, C, R> {
    /// Checks bearer tokens; the path's tenant is each token's implicit assertion.
    pub verifier: Verifier<K, C, R>,
}

/// The wall clock, for tokens' time checks.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        Timestamp::from_unix(secs).unwrap_or(Timestamp::MAX)
    }
}

/// The uniform answer to a request without a valid token for the path's tenant: one status and
/// one body whatever the reason (the reason goes to the log, never to the client).
fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "unauthorized\n").into_response()
}

/// The answer to a path that is not in canonical form (S-4).
fn bad_path() -> Response {
    (StatusCode::BAD_REQUEST, "bad request\n").into_response()
}

/// The method filter of a route's method name (an unknown name matches nothing useful: the
/// inventory test requests every route by its name and would see 405).
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

/// The router: [`ROUTES`], each behind its access check.
pub fn router<K, C, R>(state: Arc<AppState<K, C, R>>) -> axum::Router
where
    K: KeyResolver + 'static,
    C: Clock + 'static,
    R: Revocations + 'static,
{
    let mut router = axum::Router::new();
    for route in ROUTES {
        let filter = method_filter(route.method);
        let handler = match route.path {
            "/healthz" => axum::routing::on(filter, healthz),
            "/v1/tenants/{tenant}/whoami" => axum::routing::on(filter, whoami),
            // A route in the table without a handler is a programming error caught by the
            // route-inventory test (it answers 500 rather than being silently absent).
            _ => axum::routing::any(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
        };
        let access = route.access;
        let handler = if access == Access::Public {
            handler
        } else {
            let state = Arc::clone(&state);
            handler.route_layer(axum::middleware::from_fn(
                move |req: Request, next: Next| {
                    let state = Arc::clone(&state);
                    async move { authenticate(&state, access, req, next).await }
                },
            ))
        };
        router = router.route(route.path, handler);
    }
    router
}

/// Checks the path is canonical and the bearer token is valid for its tenant (and carries the
/// route's capability), then passes the verified token to the handler.
async fn authenticate<K: KeyResolver, C: Clock, R: Revocations>(
    state: &AppState<K, C, R>,
    access: Access,
    mut req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    // S-4: no percent-encoding, empty, `.` or `..` segments anywhere in a tenant route.
    if path.contains('%')
        || path
            .split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad_path();
    }
    let Some(tenant) = path
        .strip_prefix("/v1/tenants/")
        .and_then(|rest| rest.split('/').next())
        .and_then(|t| TenantId::new(t).ok())
    else {
        return bad_path();
    };
    let token = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = token else {
        return unauthorized();
    };
    let verified = match state.verifier.verify(token, &tenant) {
        Ok(v) => v,
        Err(_reason) => return unauthorized(),
    };
    if let Access::Capability(needed) = access
        && !verified.claims().capabilities.contains(needed)
    {
        return (StatusCode::FORBIDDEN, "forbidden\n").into_response();
    }
    req.extensions_mut().insert(Arc::new(verified));
    next.run(req).await
}

async fn healthz() -> &'static str {
    "ok"
}

/// Who the token says the caller is: lets an agent check its credentials.
async fn whoami(axum::Extension(token): axum::Extension<Arc<VerifiedToken>>) -> String {
    let c = token.claims();
    format!(
        "tenant={} user={} device={} role={}\n",
        c.tenant.as_str(),
        c.subject.as_str(),
        c.device.as_ref().map_or("-", |d| d.as_str()),
        c.role.as_str()
    )
}
