//! The in-process server is the same server as `server serve`: built by `Server::builder`,
//! it runs the same maintenance while it serves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use cairn_server::data::DataDir;
use cairn_server::embedded::Embedded;
use cairn_server::ratelimit::RateConfig;
use cairn_server::server::Server;

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
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(&server.ca_pem().unwrap()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .resolve("localhost", server.addr())
        .build()
        .unwrap();
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
