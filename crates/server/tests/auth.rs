//! Authentication at the router: S-1 (route inventory), S-4 (tenant-path canonicalization) and
//! the token checks of tenant routes, over real TLS on 127.0.0.1.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cairn_server::{Access, ROUTES};
use cairn_token::{Capability, Role};
use common::{App, request, start_app, status};

struct Setup {
    server: App,
}

async fn setup() -> Setup {
    Setup {
        server: start_app().await,
    }
}

fn token(app: &App, tenant: &str, caps: &[Capability]) -> String {
    app.token(tenant, "alice", Some("laptop-1"), Role::User, caps)
}

/// A concrete path for a route pattern.
fn concrete(path: &str, tenant: &str) -> String {
    path.replace("{tenant}", tenant)
        .replace("{user}", "alice")
        .replace("{device}", "laptop-1")
        .replace("{id}", &"0".repeat(64))
}

/// S-1: every route in the table answers 401 without a token unless it is public; the table is
/// the router (a path outside it is 404); tenant routes live under `/v1/tenants/{tenant}/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_every_route_has_an_auth_decision() {
    let s = setup().await;
    for route in ROUTES {
        let path = concrete(route.path, "acme");
        let response = request(&s.server.server, route.method, &path, None).await;
        match route.access {
            Access::Public => assert_eq!(status(&response), 200, "{route:?}"),
            Access::Tenant | Access::Capability(_) | Access::DeviceSecret => {
                assert!(route.path.starts_with("/v1/tenants/{tenant}/"), "{route:?}");
                assert_eq!(status(&response), 401, "{route:?}: {response}");
                assert!(response.ends_with("unauthorized\n"), "{response}");
            }
        }
    }
    let response = request(
        &s.server.server,
        "GET",
        "/v1/tenants/acme/nothing-here",
        None,
    )
    .await;
    assert_eq!(status(&response), 404);
}

/// A valid token reaches its own tenant's route; another tenant's token, a garbled one, a
/// missing `Bearer ` prefix all get the same 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reach_only_their_tenant() {
    let s = setup().await;
    let acme = token(&s.server, "acme", &[Capability::BackupPut]);
    let response = request(
        &s.server.server,
        "GET",
        "/v1/tenants/acme/whoami",
        Some(&acme),
    )
    .await;
    assert_eq!(status(&response), 200, "{response}");
    assert!(
        response.ends_with("tenant=acme user=alice device=laptop-1 role=user\n"),
        "{response}"
    );
    let other = token(&s.server, "globex", &[Capability::BackupPut]);
    let mut garbled = acme.clone();
    garbled.pop();
    for bad in [Some(other.as_str()), Some(garbled.as_str()), Some(""), None] {
        let response = request(&s.server.server, "GET", "/v1/tenants/acme/whoami", bad).await;
        assert_eq!(status(&response), 401, "{response}");
        assert!(response.ends_with("unauthorized\n"));
    }
    // acme's token on globex's path: the tenant is the token's implicit assertion.
    let response = request(
        &s.server.server,
        "GET",
        "/v1/tenants/globex/whoami",
        Some(&acme),
    )
    .await;
    assert_eq!(status(&response), 401);
}

/// S-4: tenant paths that are not canonical are refused before any lookup, token or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_tenant_paths_are_canonical() {
    let s = setup().await;
    let acme = token(&s.server, "acme", &[]);
    for path in [
        "/v1/tenants/%61cme/whoami",
        "/v1/tenants/ACME/whoami",
        "/v1/tenants/acme%2F/whoami",
        "/v1/tenants/acme//whoami",
        "/v1/tenants/./acme/whoami",
        "/v1/tenants/ac.me/whoami",
    ] {
        let response = request(&s.server.server, "GET", path, Some(&acme)).await;
        let code = status(&response);
        assert!(code == 400 || code == 404, "{path}: {response}");
        assert_ne!(code, 200, "{path}");
    }
}
