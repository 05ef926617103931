//! Authentication at the router: S-1 (route inventory), S-4 (tenant-path canonicalization) and
//! the token checks of tenant routes, over real TLS on 127.0.0.1.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use cairn_server::listener::Limits;
use cairn_server::routes::{Access, AppState, ROUTES, SystemClock, router};
use cairn_token::{
    Capabilities, Capability, Clock, DeviceId, Issuer, KeyEntry, Keyring, MemoryRevocations,
    Policy, Role, SigningKey, TenantId, TokenRequest, UserId, Verifier,
};
use common::{Running, request, start_with, status};

struct Setup {
    server: Running,
    issuer: Issuer,
}

async fn setup() -> Setup {
    let policy = Policy::new("cairn-test", "cairn-server").unwrap();
    let key = SigningKey::from_seed(&[9; 32]).unwrap();
    let now = SystemClock.now();
    let mut keys = Keyring::new();
    keys.insert(KeyEntry {
        key: key.verifying_key().clone(),
        published_at: now.saturating_sub(3600),
        signs_from: now.saturating_sub(3600),
        retired_at: None,
    })
    .unwrap();
    let verifier = Verifier::new(policy.clone(), keys, SystemClock, MemoryRevocations::new());
    let app = router(Arc::new(AppState { verifier }));
    Setup {
        server: start_with(Limits::default(), app).await,
        issuer: Issuer::new(key, policy),
    }
}

fn token(issuer: &Issuer, tenant: &str, caps: &[Capability]) -> String {
    let request = TokenRequest {
        subject: UserId::new("alice").unwrap(),
        tenant: TenantId::new(tenant).unwrap(),
        device: Some(DeviceId::new("laptop-1").unwrap()),
        role: Role::User,
        capabilities: Capabilities::of(caps),
        lifetime_secs: 300,
    };
    issuer
        .issue(&request, SystemClock.now())
        .unwrap()
        .expose()
        .to_owned()
}

/// A concrete path for a route pattern.
fn concrete(path: &str, tenant: &str) -> String {
    path.replace("{tenant}", tenant)
}

/// S-1: every route in the table answers 401 without a token unless it is public; the table is
/// the router (a path outside it is 404); tenant routes live under `/v1/tenants/{tenant}/`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s1_every_route_has_an_auth_decision() {
    let s = setup().await;
    for route in ROUTES {
        let path = concrete(route.path, "acme");
        let response = request(&s.server, route.method, &path, None).await;
        match route.access {
            Access::Public => assert_eq!(status(&response), 200, "{route:?}"),
            Access::Tenant | Access::Capability(_) => {
                assert!(route.path.starts_with("/v1/tenants/{tenant}/"), "{route:?}");
                assert_eq!(status(&response), 401, "{route:?}: {response}");
                assert!(response.ends_with("unauthorized\n"), "{response}");
            }
        }
    }
    let response = request(&s.server, "GET", "/v1/tenants/acme/nothing-here", None).await;
    assert_eq!(status(&response), 404);
}

/// A valid token reaches its own tenant's route; another tenant's token, a garbled one, a
/// missing `Bearer ` prefix all get the same 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_reach_only_their_tenant() {
    let s = setup().await;
    let acme = token(&s.issuer, "acme", &[Capability::BackupPut]);
    let response = request(&s.server, "GET", "/v1/tenants/acme/whoami", Some(&acme)).await;
    assert_eq!(status(&response), 200, "{response}");
    assert!(
        response.ends_with("tenant=acme user=alice device=laptop-1 role=user\n"),
        "{response}"
    );
    let other = token(&s.issuer, "globex", &[Capability::BackupPut]);
    let mut garbled = acme.clone();
    garbled.pop();
    for bad in [Some(other.as_str()), Some(garbled.as_str()), Some(""), None] {
        let response = request(&s.server, "GET", "/v1/tenants/acme/whoami", bad).await;
        assert_eq!(status(&response), 401, "{response}");
        assert!(response.ends_with("unauthorized\n"));
    }
    // acme's token on globex's path: the tenant is the token's implicit assertion.
    let response = request(&s.server, "GET", "/v1/tenants/globex/whoami", Some(&acme)).await;
    assert_eq!(status(&response), 401);
}

/// S-4: tenant paths that are not canonical are refused before any lookup, token or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s4_tenant_paths_are_canonical() {
    let s = setup().await;
    let acme = token(&s.issuer, "acme", &[]);
    for path in [
        "/v1/tenants/%61cme/whoami",
        "/v1/tenants/ACME/whoami",
        "/v1/tenants/acme%2F/whoami",
        "/v1/tenants/acme//whoami",
        "/v1/tenants/./acme/whoami",
        "/v1/tenants/ac.me/whoami",
    ] {
        let response = request(&s.server, "GET", path, Some(&acme)).await;
        let code = status(&response);
        assert!(code == 400 || code == 404, "{path}: {response}");
        assert_ne!(code, 200, "{path}");
    }
}
