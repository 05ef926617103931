//! F-11 (`http_router`): arbitrary methods, paths, headers and bodies through the server's whole
//! router with no socket (`tower::ServiceExt::oneshot`), against a real data directory (SQLite,
//! local segments) made once per process. Never a panic, never a 500; an error body is one of
//! the fixed ones (nothing of the request is echoed, S-7). The proptest form of the same check
//! runs with the tests (`crates/server/tests/router_props.rs`).
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::Request;
use cairn_server::{AppState, DataDir, ROUTES, SystemClock, router};
use cairn_token::{
    Capabilities, Capability, Clock, DeviceId, Role, TenantId, TokenRequest, UserId,
};
use libfuzzer_sys::fuzz_target;
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

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];

struct App {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    token: String,
    _dir: tempfile::TempDir,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let dir = tempfile::tempdir().expect("temporary directory");
        let data = DataDir::at(dir.path());
        let (router, token) = rt.block_on(async {
            data.init(&["localhost".to_owned()], time::OffsetDateTime::now_utc())
                .await
                .expect("init");
            // Limits out of the way: every input should reach the handlers.
            let rates = cairn_server::RateConfig {
                per_token_per_second: 1_000_000,
                per_token_burst: 1_000_000,
                per_tenant_per_second: 1_000_000,
                per_tenant_burst: 1_000_000,
                ..Default::default()
            };
            let services = data.services_with(rates).await.expect("services");
            services
                .db
                .add_tenant(&cairn_token::TenantId::new("acme").unwrap(), 1 << 20)
                .await
                .expect("tenant");
            services
                .db
                .add_user(
                    &cairn_token::TenantId::new("acme").unwrap(),
                    &cairn_token::UserId::new("ana").unwrap(),
                    cairn_token::Role::User,
                )
                .await
                .expect("user");
            let request = TokenRequest {
                subject: UserId::new("ana").expect("user id"),
                tenant: TenantId::new("acme").expect("tenant id"),
                device: Some(DeviceId::new(&"ab".repeat(16)).expect("device id")),
                role: Role::Admin,
                capabilities: Capabilities::of(&Capability::ALL),
                lifetime_secs: 24 * 3600,
            };
            let token = services
                .issuer
                .issue(&request, SystemClock.now())
                .expect("token")
                .expose()
                .to_owned();
            let verifier = data.verifier(SystemClock, &services).expect("verifier");
            (router(Arc::new(AppState { verifier, services })), token)
        });
        App {
            rt,
            router,
            token,
            _dir: dir,
        }
    })
}

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    /// Which route of the table to start from; past the table, `path` alone.
    route: u8,
    /// Replaces the route's parameters (or is the whole path).
    path: String,
    query: Option<String>,
    /// 0: no authorization, 1: garbage from `garbage`, else the valid admin token.
    auth: u8,
    garbage: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let app = app();
    let method = METHODS[usize::from(input.method) % METHODS.len()];
    let mut uri = match ROUTES.get(usize::from(input.route)) {
        Some(route) => route
            .path
            .replace("{tenant}", "acme")
            .replace("{user}", "ana")
            .replace("{device}", &input.path)
            .replace("{id}", &input.path),
        None => input.path.clone(),
    };
    if let Some(q) = &input.query {
        uri.push('?');
        uri.push_str(q);
    }
    let Ok(uri) = uri.parse::<axum::http::Uri>() else {
        return;
    };
    let mut req = Request::builder().method(method).uri(uri);
    match input.auth % 3 {
        0 => {}
        1 => req = req.header("authorization", input.garbage.as_str()),
        _ => req = req.header("authorization", format!("Bearer {}", app.token)),
    }
    for (name, value) in input.headers.iter().take(8) {
        req = req.header(name.as_str(), value.as_str());
    }
    let Ok(req) = req.body(Body::from(input.body)) else {
        return;
    };
    let response = app
        .rt
        .block_on(app.router.clone().oneshot(req))
        .expect("infallible");
    let status = response.status().as_u16();
    assert_ne!(status, 500);
    let bytes = app
        .rt
        .block_on(axum::body::to_bytes(response.into_body(), 1 << 24))
        .expect("body");
    if status >= 400 && status != 413 {
        assert!(
            FIXED.contains(&String::from_utf8_lossy(&bytes).as_ref()),
            "{status} {:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
});
