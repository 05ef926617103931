//! F-11 in proptest form (`http_router`): arbitrary methods, paths, headers and bodies through the
//! whole router with no socket (`tower::ServiceExt::oneshot`). Never a 500, never a panic, and
//! error bodies are the fixed ones (nothing of the request is echoed, S-7).

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use cairn_server::{AppState, DataDir, ROUTES, SystemClock, router};
use cairn_token::{
    Capabilities, Capability, Clock, DeviceId, Role, TenantId, TokenRequest, UserId,
};
use proptest::prelude::*;
use tower::ServiceExt;

const FIXED: &[&str] = &[
    "bad request\n",
    "unauthorized\n",
    "forbidden\n",
    "not found\n",
    "conflict\n",
    "device deauthorized\n",
    "refused\n",
    "quota exceeded\n",
    "too many requests\n",
    "busy, retry\n",
    "",
];

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("v1".to_owned()),
        Just("tenants".to_owned()),
        Just("acme".to_owned()),
        Just("users".to_owned()),
        Just("ana".to_owned()),
        Just("blocks".to_owned()),
        Just("missing".to_owned()),
        Just("fetch".to_owned()),
        Just("snapshots".to_owned()),
        Just("escrow".to_owned()),
        Just("recover".to_owned()),
        Just("events".to_owned()),
        Just("export".to_owned()),
        Just("devices".to_owned()),
        Just("enroll".to_owned()),
        Just("token".to_owned()),
        Just("whoami".to_owned()),
        Just("0".repeat(64)),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        "[a-zA-Z0-9%._~-]{0,12}",
        "\\PC{0,6}",
    ]
}

/// A value for a path parameter: mostly ones that exist, sometimes anything.
fn param() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("acme".to_owned()),
        3 => Just("ana".to_owned()),
        2 => Just("ab".repeat(16)),
        2 => Just("0".repeat(64)),
        1 => "[a-z0-9-]{1,8}",
        1 => segment(),
    ]
}

/// A path: mostly a route of the table with its parameters filled (one segment sometimes
/// replaced), sometimes arbitrary segments.
fn path() -> impl Strategy<Value = (Option<&'static str>, String)> {
    let from_table = (
        0..ROUTES.len(),
        proptest::collection::vec(param(), 4),
        proptest::option::weighted(0.2, (0..8usize, segment())),
    )
        .prop_map(|(i, params, mutation)| {
            let route = &ROUTES[i];
            let path = route
                .path
                .replace("{tenant}", &params[0])
                .replace("{user}", &params[1])
                .replace("{device}", &params[2])
                .replace("{id}", &params[3]);
            let path = match mutation {
                Some((at, seg)) => {
                    let mut parts: Vec<String> = path.split('/').map(str::to_owned).collect();
                    let at = 1 + at % (parts.len() - 1);
                    parts[at] = seg;
                    parts.join("/")
                }
                None => path,
            };
            (Some(route.method), path)
        });
    let arbitrary = proptest::collection::vec(segment(), 0..8)
        .prop_map(|s| (None, format!("/{}", s.join("/"))));
    prop_oneof![4 => from_table, 1 => arbitrary]
}

fn method() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("GET"),
        Just("POST"),
        Just("PUT"),
        Just("DELETE"),
        Just("PATCH"),
        Just("HEAD"),
        Just("OPTIONS"),
    ]
}

#[test]
fn arbitrary_requests_never_panic_or_500() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::at(dir.path());
    let (app, token) = rt.block_on(async {
        data.init(&["localhost".to_owned()], time::OffsetDateTime::now_utc())
            .await
            .unwrap();
        // Limits out of the way: every case should reach the handlers.
        let rates = cairn_server::RateConfig {
            per_token_per_second: 1_000_000,
            per_token_burst: 1_000_000,
            per_tenant_per_second: 1_000_000,
            per_tenant_burst: 1_000_000,
            ..Default::default()
        };
        let services = data.services_with(rates).await.unwrap();
        services
            .db
            .add_tenant(&TenantId::new("acme").unwrap(), 1 << 20)
            .await
            .unwrap();
        services
            .db
            .add_user(
                &TenantId::new("acme").unwrap(),
                &UserId::new("ana").unwrap(),
                cairn_token::Role::User,
            )
            .await
            .unwrap();
        let request = TokenRequest {
            subject: UserId::new("ana").unwrap(),
            tenant: TenantId::new("acme").unwrap(),
            device: Some(DeviceId::new(&"ab".repeat(16)).unwrap()),
            role: Role::Admin,
            capabilities: Capabilities::of(&Capability::ALL),
            lifetime_secs: 3600,
        };
        let token = services
            .issuer
            .issue(&request, SystemClock.now())
            .unwrap()
            .expose()
            .to_owned();
        let verifier = data.verifier(SystemClock, &services).unwrap();
        (router(Arc::new(AppState { verifier, services })), token)
    });
    let config = ProptestConfig {
        cases: 1_000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(
        other_method in method(),
        same_method in proptest::bool::weighted(0.8),
        (route_method, path) in path(),
        query in proptest::option::of("[a-z_=&0-9%-]{0,30}"),
        auth in prop_oneof![
            1 => Just(None),
            4 => Just(Some(format!("Bearer {token}"))),
            1 => "\\PC{0,40}".prop_map(Some),
        ],
        extra in proptest::collection::vec(("[a-z-]{1,12}", "[ -~]{0,30}"), 0..4),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
    )| {
        let method = match route_method {
            Some(m) if same_method => m,
            _ => other_method,
        };
        let mut uri = path;
        if let Some(q) = query {
            uri.push('?');
            uri.push_str(&q);
        }
        let Ok(uri) = uri.parse::<axum::http::Uri>() else { return Ok(()) };
        let mut req = Request::builder().method(method).uri(uri.clone());
        if let Some(a) = &auth {
            req = req.header("authorization", a.as_str());
        }
        for (name, value) in &extra {
            req = req.header(name.as_str(), value.as_str());
        }
        let Ok(req) = req.body(Body::from(body)) else { return Ok(()) };
        let response = rt.block_on(app.clone().oneshot(req)).unwrap();
        let status = response.status().as_u16();
        prop_assert_ne!(status, 500, "{} {}", method, uri);
        let bytes = rt
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 24))
            .unwrap();
        if status >= 400 && status != 413 {
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(FIXED.contains(&text.as_ref()), "{status} {text:?} for {method} {uri}");
        }
    });
}
