//! The in-process server is the same server as `server serve`: built by `Server::builder`,
//! it runs the same maintenance while it serves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_server::{DataDir, Embedded, RateConfig, Server};
use cairn_token::{ManualClock, Timestamp};

/// An HTTPS client that trusts `server`'s CA and reaches it as `localhost`.
fn client(server: &Embedded) -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&server.ca_pem().unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("localhost", server.addr())
        .build()
        .unwrap()
}

/// The rate limiters' keys of an idle client are forgotten while the embedded server runs
/// (before `Server::builder`, only the `server` binary ran that cleanup, so an embedded
/// server remembered every token and address it ever saw).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_server_forgets_idle_rate_limit_keys() {
    let dir = tempfile::tempdir().unwrap();
    // A token's budget refills one request per second: three requests are forgotten about
    // three seconds after the last one.
    let rates = RateConfig {
        per_token_per_second: 1,
        per_token_burst: 5,
        ..RateConfig::default()
    };
    let builder = Server::builder()
        .rates(rates)
        .maintenance_every(Duration::from_millis(50));
    let server = Embedded::start_built(
        DataDir::at(dir.path().join("data")),
        "127.0.0.1:0".parse().unwrap(),
        builder,
    )
    .await
    .unwrap();
    let token = server.add_tenant("acme", "ana", 1 << 30).await.unwrap();
    let http = client(&server);
    for _ in 0..3 {
        let r = http
            .get(format!("{}/v1/tenants/acme/whoami", server.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let limits = &server.services().limits;
    assert!(limits.keys_held() > 0, "the requests left no key");
    let deadline = Instant::now() + Duration::from_secs(30);
    while limits.keys_held() > 0 {
        assert!(
            Instant::now() < deadline,
            "{} keys still held half a minute after the last request",
            limits.keys_held()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await.unwrap();
}

/// The clock given to `Server::builder` is the one tokens are issued and checked by and the
/// database records times by: a server whose clock says 2030 serves a token issued by it in
/// 2030 (the wall clock would find it not yet valid), records its audit entries in 2030, and
/// refuses the token once its clock has moved past the token's 15 minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_servers_clock_is_the_one_it_is_built_with() {
    let dir = tempfile::tempdir().unwrap();
    let in_2030 = Timestamp::from_unix(1_893_456_000).unwrap();
    let clock = ManualClock::new(in_2030);
    let server = Embedded::start_built(
        DataDir::at(dir.path().join("data")),
        "127.0.0.1:0".parse().unwrap(),
        Server::builder().clock(std::sync::Arc::new(clock.clone())),
    )
    .await
    .unwrap();
    let token = server.add_tenant("acme", "ana", 1 << 30).await.unwrap();
    let http = client(&server);
    let call = |path: &str| {
        http.get(format!("{}{path}", server.url()))
            .bearer_auth(&token)
            .send()
    };
    let r = http
        .post(format!("{}/v1/tenants/acme/devices", server.url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(r#"{"user":"ana","name":"laptop"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201, "{:?}", r.text().await);
    let audit: serde_json::Value = serde_json::from_slice(
        &call("/v1/tenants/acme/audit")
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let times: Vec<i64> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at_unix"].as_i64().unwrap())
        .collect();
    assert!(!times.is_empty(), "{audit}");
    assert!(times.iter().all(|&t| t == in_2030.unix()), "{times:?}");
    clock.advance(16 * 60);
    assert_eq!(
        call("/v1/tenants/acme/whoami")
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    server.shutdown().await.unwrap();
}
