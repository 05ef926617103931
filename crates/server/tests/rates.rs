//! S-12 rate limits (per token and tenant from the verified token; failed authentication per
//! socket address, whatever `X-Forwarded-For` says) and the operator's `/metrics`.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cairn_server::{Limits, MetricsOptions, RateConfig};
use cairn_token::{Capability, Role};
use common::start_app_rates;

fn slow(per_token_burst: u32, auth_failure_burst: u32) -> RateConfig {
    RateConfig {
        per_token_per_second: 1,
        per_token_burst,
        per_tenant_per_second: 1_000,
        per_tenant_burst: 1_000,
        auth_failures_per_minute: 1,
        auth_failure_burst,
        ..RateConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_a_token_gets_a_burst_then_429_with_retry_after() {
    let app = start_app_rates(Limits::default(), slow(5, 100)).await;
    let t1 = app.token("acme", "ana", None, Role::User, &[Capability::BackupList]);
    let t2 = app.token("acme", "bob", None, Role::User, &[Capability::BackupList]);
    for _ in 0..5 {
        let r = app
            .call("GET", "/v1/tenants/acme/whoami", Some(&t1), None)
            .await;
        assert_eq!(r.status, 200);
    }
    let r = app
        .http
        .get(app.url("/v1/tenants/acme/whoami"))
        .bearer_auth(&t1)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    // Another token of the same tenant has its own budget.
    let r = app
        .call("GET", "/v1/tenants/acme/whoami", Some(&t2), None)
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_a_tenant_shares_one_budget() {
    let rates = RateConfig {
        per_tenant_per_second: 1,
        per_tenant_burst: 4,
        ..slow(100, 100)
    };
    let app = start_app_rates(Limits::default(), rates).await;
    let mut codes = Vec::new();
    for i in 0..6 {
        let t = app.token("acme", &format!("u{i}"), None, Role::User, &[]);
        codes.push(
            app.call("GET", "/v1/tenants/acme/whoami", Some(&t), None)
                .await
                .status,
        );
    }
    assert_eq!(codes, [200, 200, 200, 200, 429, 429]);
    // Another tenant is not affected.
    let t = app.token("globex", "u", None, Role::User, &[]);
    assert_eq!(
        app.call("GET", "/v1/tenants/globex/whoami", Some(&t), None)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_failed_authentication_is_limited_per_address_not_per_header() {
    let app = start_app_rates(Limits::default(), slow(100, 3)).await;
    let mut codes = Vec::new();
    for i in 0..6 {
        // Rotating X-Forwarded-For values: the limit is keyed on the socket's address.
        let r = app
            .http
            .get(app.url("/v1/tenants/acme/whoami"))
            .bearer_auth("v4.public.not-a-token")
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes, [401, 401, 401, 429, 429, 429]);
    // Device-secret failures count the same way.
    let r = app
        .call(
            "POST",
            &format!("/v1/tenants/acme/devices/{}/token", "0".repeat(32)),
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 429);
}

/// Issue 27, item 3: behind one address (a NAT, the TCP pass-through balancer of
/// docs/deploy.md) a client that keeps failing authentication does not lock out the valid
/// clients beside it: its failures get 429, their valid tokens are served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_tokens_are_not_limited_by_other_clients_failures_at_one_address() {
    let app = start_app_rates(Limits::default(), slow(1_000, 3)).await;
    let good = app.token("acme", "ana", None, Role::User, &[]);
    let (mut served, mut bad_codes) = (0, Vec::new());
    for _ in 0..40 {
        // The bad client and the valid one take turns from the same address.
        let bad = app
            .call(
                "GET",
                "/v1/tenants/acme/whoami",
                Some("v4.public.forged"),
                None,
            )
            .await;
        bad_codes.push(bad.status);
        let ok = app
            .call("GET", "/v1/tenants/acme/whoami", Some(&good), None)
            .await;
        assert_eq!(ok.status, 200, "a valid token was refused: {}", ok.text());
        served += 1;
    }
    assert_eq!(served, 40);
    // The failing client itself is still limited: past its burst, 429.
    assert_eq!(&bad_codes[..3], [401, 401, 401]);
    assert!(bad_codes[3..].iter().all(|&c| c == 429), "{bad_codes:?}");
}

/// Issue 27, item 2: a device's budget is the device's, not its token's: a token refreshed
/// (a new token id) brings no fresh budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devices_tokens_share_one_budget() {
    let app = start_app_rates(Limits::default(), slow(5, 100)).await;
    let device = "0123456789abcdef0123456789abcdef";
    let first = app.token("acme", "ana", Some(device), Role::User, &[]);
    for _ in 0..5 {
        let r = app
            .call("GET", "/v1/tenants/acme/whoami", Some(&first), None)
            .await;
        assert_eq!(r.status, 200);
    }
    let fresh = app.token("acme", "ana", Some(device), Role::User, &[]);
    assert_ne!(first, fresh);
    let r = app
        .call("GET", "/v1/tenants/acme/whoami", Some(&fresh), None)
        .await;
    assert_eq!(
        r.status, 429,
        "a fresh token of the same device got a fresh budget"
    );
    // Another device of the same user has its own.
    let other = app.token("acme", "ana", Some(&"f".repeat(32)), Role::User, &[]);
    let r = app
        .call("GET", "/v1/tenants/acme/whoami", Some(&other), None)
        .await;
    assert_eq!(r.status, 200);
}

/// Issue 27, item 2: token refresh is limited per device: 300 refreshes in a row no longer
/// each get a new token (and with it, before, a new budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_refresh_is_limited_per_device() {
    let rates = RateConfig {
        refreshes_per_minute: 1,
        refresh_burst: 5,
        ..RateConfig::default()
    };
    let app = start_app_rates(Limits::default(), rates).await;
    let db = &app.services.db;
    db.add_tenant(&common::tid("acme"), 1 << 30).await.unwrap();
    db.add_user(
        &common::tid("acme"),
        &common::uid("ana"),
        cairn_token::Role::User,
    )
    .await
    .unwrap();
    let admin = app.admin("acme");
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/devices",
            Some(&admin),
            Some(br#"{"user":"ana","name":"laptop"}"#.to_vec()),
        )
        .await;
    let j = r.json();
    let device = j["device"].as_str().unwrap().to_owned();
    let enrollment = j["token"].as_str().unwrap().to_owned();
    let r = app
        .call(
            "POST",
            &format!("/v1/tenants/acme/devices/{device}/enroll"),
            Some(&enrollment),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let secret = r.json()["secret"].as_str().unwrap().to_owned();
    let mut codes = Vec::new();
    for _ in 0..300 {
        let r = app
            .http
            .post(app.url(&format!("/v1/tenants/acme/devices/{device}/token")))
            .header("authorization", format!("Device {secret}"))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert!(codes[..5].iter().all(|&c| c == 200), "{:?}", &codes[..5]);
    assert!(
        codes[5..].iter().all(|&c| c == 429),
        "refreshes past the burst: {codes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_failures_and_quota() {
    let app = start_app_rates(Limits::default(), RateConfig::default()).await;
    app.services
        .db
        .add_tenant(&common::tid("acme"), 1_000_000)
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cairn_server::serve_metrics(
        listener,
        app.services.clone(),
        MetricsOptions::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    // Tenant figures only when asked for, on a second port.
    let tenants_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tenants_addr = tenants_listener.local_addr().unwrap();
    tokio::spawn(cairn_server::serve_metrics(
        tenants_listener,
        app.services.clone(),
        MetricsOptions { per_tenant: true },
        std::future::pending(),
    ));
    let t = app.token("acme", "ana", None, Role::User, &[]);
    for _ in 0..3 {
        assert_eq!(
            app.call("GET", "/v1/tenants/acme/whoami", Some(&t), None)
                .await
                .status,
            200
        );
    }
    assert_eq!(
        app.call("GET", "/v1/tenants/acme/whoami", None, None)
            .await
            .status,
        401
    );
    let text = app
        .http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "cairn_http_requests_total{method=\"GET\",route=\"/v1/tenants/{tenant}/whoami\",status=\"200\"} 3",
        "cairn_http_requests_total{method=\"GET\",route=\"/v1/tenants/{tenant}/whoami\",status=\"401\"} 1",
        "cairn_auth_failures_total 1",
        "cairn_archive_lost_records_total 0",
        "cairn_archives_damaged 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // No token, secret or key material: only routes and numbers; no tenant names by default.
    assert!(!text.contains("v4.public"));
    assert!(!text.contains("acme"), "a tenant name by default:\n{text}");
    let text = app
        .http
        .get(format!("http://{tenants_addr}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "cairn_quota_bytes{tenant=\"acme\"} 1000000",
        "cairn_quota_used_bytes{tenant=\"acme\"} 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let _ = stop.send(());
}
