//! The console's files and headers, and the API routes it uses, without a browser (the browser
//! test is the root crate's `tests/console.rs`): every console response carries the strict
//! Content-Security-Policy and the other headers; the page has no inline script or style; the
//! script never parses server data as HTML; the audit and archive routes answer as documented.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cairn_server::CONTENT_SECURITY_POLICY;
use cairn_token::{Capability, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_files_carry_strict_headers() {
    let app = common::start_app().await;
    for (path, kind) in [
        ("/console/", "text/html"),
        ("/console/console.js", "text/javascript"),
        ("/console/console.css", "text/css"),
    ] {
        let resp = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let h = resp.headers();
        let header = |name: &str| h.get(name).unwrap().to_str().unwrap().to_owned();
        assert!(header("content-type").starts_with(kind), "{path}");
        assert_eq!(header("content-security-policy"), CONTENT_SECURITY_POLICY);
        assert_eq!(header("x-content-type-options"), "nosniff");
        assert_eq!(header("x-frame-options"), "DENY");
        assert_eq!(header("referrer-policy"), "no-referrer");
        assert_eq!(header("cache-control"), "no-store");
    }
    let csp = CONTENT_SECURITY_POLICY;
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
    // `/console` sends the browser to `/console/`.
    let plain = reqwest::Client::builder()
        .use_preconfigured_tls(common::client(&app.server.ca, None, common::ALL_VERSIONS))
        .resolve("localhost", app.server.addr)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = plain.get(app.url("/console")).send().await.unwrap();
    assert_eq!(resp.status(), 308);
    assert_eq!(resp.headers()["location"], "/console/");
}

#[test]
fn console_sources_keep_the_rules() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/console");
    let html = std::fs::read_to_string(format!("{dir}/index.html")).unwrap();
    let js = std::fs::read_to_string(format!("{dir}/console.js")).unwrap();
    // No inline script or style for the CSP to allow.
    assert!(!html.contains("<script>") && !html.contains("style="));
    assert!(!html.contains("<style"));
    // No HTML parsing of data, no storage of the token.
    for banned in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
        "new Function",
        "localStorage.set",
        "sessionStorage.set",
        "document.cookie =",
    ] {
        assert!(!js.contains(banned), "console.js uses {banned}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_and_archive_routes() {
    let app = common::start_app().await;
    let db = &app.services.db;
    assert!(db.add_tenant(&common::tid("acme"), 1 << 30).await.unwrap());
    assert!(
        db.add_user(
            &common::tid("acme"),
            &common::uid("ana"),
            cairn_token::Role::User
        )
        .await
        .unwrap()
    );
    assert!(
        db.add_user(
            &common::tid("acme"),
            &common::uid("root"),
            cairn_token::Role::Admin
        )
        .await
        .unwrap()
    );
    let admin = app.admin("acme");
    // An audited action, then the log.
    let r = app
        .call("GET", "/v1/tenants/acme/audit", Some(&admin), None)
        .await;
    assert_eq!(r.status, 200);
    let log: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert!(log.is_array());
    // The archive view of a user with no backup yet.
    let r = app
        .call(
            "GET",
            "/v1/tenants/acme/users/ana/archive",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["user"], "ana");
    assert_eq!(v["snapshots"], serde_json::json!([]));
    // A user's token: no audit log, and no other user's archive.
    let user = app.token("acme", "ana", None, Role::User, &[Capability::BackupList]);
    let r = app
        .call("GET", "/v1/tenants/acme/audit", Some(&user), None)
        .await;
    assert_eq!(r.status, 403);
    let r = app
        .call(
            "GET",
            "/v1/tenants/acme/users/ana/archive",
            Some(&user),
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    let r = app
        .call(
            "GET",
            "/v1/tenants/acme/users/root/archive",
            Some(&user),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
}
