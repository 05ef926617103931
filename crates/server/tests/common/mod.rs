//! Shared by the server's integration tests: a real server on 127.0.0.1 and TLS clients.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::sync::Arc;

use cairn_server::{
    AppState, Connections, DataDir, Limits, Pki, RateConfig, Services, SystemClock, base_router,
    router, serve_counted, server_config,
};
use cairn_token::{
    Capabilities, Capability, Clock, DeviceId, Role, TenantId, TokenRequest, UserId,
};
use rustls::crypto::aws_lc_rs;
use rustls::{ClientConfig, SupportedCipherSuite, SupportedProtocolVersion};
use rustls_pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub struct Running {
    pub addr: SocketAddr,
    pub ca: CertificateDer<'static>,
    /// What the server's accept loop holds.
    pub connections: Arc<Connections>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn day() -> time::Duration {
    time::Duration::days(1)
}

pub async fn start(limits: Limits) -> Running {
    start_with(limits, base_router()).await
}

/// A server serving `app`.
pub async fn start_with(limits: Limits, app: axum::Router) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::at(dir.path().join("pki"));
    let now = OffsetDateTime::now_utc();
    pki.init(&["localhost".to_owned()], now - day(), now + day())
        .unwrap();
    start_in(dir, limits, app).await
}

/// A server serving `app` with the PKI already made under `dir/pki`.
pub async fn start_in(dir: tempfile::TempDir, limits: Limits, app: axum::Router) -> Running {
    let now = OffsetDateTime::now_utc();
    let loaded = Pki::at(dir.path().join("pki"))
        .load("localhost", now)
        .unwrap();
    let config = server_config(loaded.chain, loaded.key).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let connections = Arc::new(Connections::default());
    tokio::spawn(serve_counted(
        listener,
        config,
        app,
        limits,
        Arc::clone(&connections),
        async move {
            let _ = stopped.await;
        },
    ));
    Running {
        addr,
        ca: loaded.ca,
        connections,
        stop: Some(stop),
        _dir: dir,
    }
}

pub fn client(
    ca: &CertificateDer<'static>,
    suites: Option<Vec<SupportedCipherSuite>>,
    versions: &[&'static SupportedProtocolVersion],
) -> ClientConfig {
    let mut provider = aws_lc_rs::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

pub async fn connect(
    addr: SocketAddr,
    config: ClientConfig,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// `GET /healthz` over an established connection.
pub async fn healthz(mut tls: TlsStream<TcpStream>) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    out
}

pub const ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// One HTTP/1.1 request over a fresh TLS connection; the whole response as text.
pub async fn request(server: &Running, method: &str, path: &str, token: Option<&str>) -> String {
    let mut tls = connect(server.addr, client(&server.ca, None, ALL_VERSIONS))
        .await
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tls.read_to_string(&mut out).await.unwrap();
    out
}

/// The status code of a response.
pub fn status(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// A whole server over a fresh data directory: every service, the real router, real TLS.
pub struct App {
    pub server: Running,
    pub services: Arc<Services>,
    pub data: DataDir,
    pub http: reqwest::Client,
}

pub async fn start_app() -> App {
    start_app_with(Limits::default()).await
}

/// Rate limits out of the way (tests of isolation make many failing calls on purpose);
/// `tests/rates.rs` tests the limits themselves.
pub async fn start_app_with(limits: Limits) -> App {
    let generous = RateConfig {
        auth_failures_per_minute: 1_000_000,
        auth_failure_burst: 1_000_000,
        ..RateConfig::default()
    };
    start_app_rates(limits, generous).await
}

pub async fn start_app_rates(limits: Limits, rates: RateConfig) -> App {
    start_app_kek(limits, rates, None).await
}

/// [`start_app_rates`] with the data directory's secrets sealed by the KEK in `kek` (made by
/// `init` if missing).
pub async fn start_app_kek(
    limits: Limits,
    rates: RateConfig,
    kek: Option<&std::path::Path>,
) -> App {
    let dir = tempfile::tempdir().unwrap();
    // The embedded defaults, or PostgreSQL and S3 (CAIRN_TEST_BACKENDS=shared, scripts/test.sh).
    let backends = cairn_server::testenv::from_env().await.unwrap();
    let mut data = DataDir::at(dir.path()).with_backends(backends);
    if let Some(kek) = kek {
        data = data.with_kek_file(kek);
    }
    data.init(&["localhost".to_owned()], OffsetDateTime::now_utc())
        .await
        .unwrap();
    let services = data.services_with(rates).await.unwrap();
    let verifier = data.verifier(SystemClock, &services).unwrap();
    let app = router(Arc::new(AppState {
        verifier,
        services: Arc::clone(&services),
    }));
    let server = start_in(dir, limits, app).await;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(client(&server.ca, None, ALL_VERSIONS))
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    App {
        server,
        services,
        data,
        http,
    }
}

/// A reply: status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.server.addr.port())
    }

    /// One request with an optional bearer token and body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        Reply {
            status,
            body: resp.bytes().await.unwrap().to_vec(),
        }
    }

    /// A token for `user` (and `device`) of `tenant`.
    pub fn token(
        &self,
        tenant: &str,
        user: &str,
        device: Option<&str>,
        role: Role,
        caps: &[Capability],
    ) -> String {
        let request = TokenRequest {
            subject: UserId::new(user).unwrap(),
            tenant: TenantId::new(tenant).unwrap(),
            device: device.map(|d| DeviceId::new(d).unwrap()),
            role,
            capabilities: Capabilities::of(caps),
            lifetime_secs: 600,
        };
        self.services
            .issuer
            .issue(&request, SystemClock.now())
            .unwrap()
            .expose()
            .to_owned()
    }

    /// An admin token of `tenant` with every capability.
    pub fn admin(&self, tenant: &str) -> String {
        self.token(tenant, "root", None, Role::Admin, &Capability::ALL)
    }
}

/// A tenant id, for the database's calls.
pub fn tid(tenant: &str) -> TenantId {
    TenantId::new(tenant).unwrap()
}

/// A user id, for the database's calls.
pub fn uid(user: &str) -> UserId {
    UserId::new(user).unwrap()
}

/// Tenant `t` with `users`; returns nothing (direct database seeding, as the operator's
/// `tenant add` and `user add` do).
pub async fn seed(app: &App, tenant: &str, quota: i64, users: &[&str]) {
    let db = &app.services.db;
    let tenant = tid(tenant);
    assert!(db.add_tenant(&tenant, quota).await.unwrap());
    for u in users {
        assert!(
            db.add_user(&tenant, &uid(u), cairn_token::Role::User)
                .await
                .unwrap()
        );
    }
}

/// Registers and enrolls a device of `user` through the API: (device id, access token, secret).
pub async fn enroll(app: &App, tenant: &str, user: &str) -> (String, String, String) {
    let admin = app.admin(tenant);
    let body = serde_json::json!({"user": user, "name": "laptop"}).to_string();
    let r = app
        .call(
            "POST",
            &format!("/v1/tenants/{tenant}/devices"),
            Some(&admin),
            Some(body.into()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let j = r.json();
    let device = j["device"].as_str().unwrap().to_owned();
    let enrollment = j["token"].as_str().unwrap().to_owned();
    let r = app
        .call(
            "POST",
            &format!("/v1/tenants/{tenant}/devices/{device}/enroll"),
            Some(&enrollment),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    (
        device,
        j["token"].as_str().unwrap().to_owned(),
        j["secret"].as_str().unwrap().to_owned(),
    )
}
