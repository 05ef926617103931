//! The TLS policy and the listener against real clients on 127.0.0.1: S-10, S-11, S-15, S-16,
//! S-17 and S-18 of the security-test catalogue.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{ALL_VERSIONS, client, connect, day, healthz, start};

use cairn_server::{ALLOWED_GROUPS, CA_KEY, Limits, Pki, SERVER_KEY, ServerError, server_config};
use rustls::crypto::aws_lc_rs;
use rustls::pki_types::ServerName;
use rustls::{CipherSuite, SupportedCipherSuite, SupportedProtocolVersion};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// S-16: every suite rustls knows, offered alone: exactly the AES-256-GCM suites that match the
/// server's (ECDSA) certificate succeed, and the default client negotiates TLS 1.3 AES-256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s16_only_aes256_suites_are_negotiated() {
    let server = start(Limits::default()).await;
    let allowed = [
        CipherSuite::TLS13_AES_256_GCM_SHA384,
        CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
    ];
    assert_eq!(aws_lc_rs::ALL_CIPHER_SUITES.len(), 9);
    for suite in aws_lc_rs::ALL_CIPHER_SUITES {
        let version: &'static SupportedProtocolVersion = match suite {
            SupportedCipherSuite::Tls13(_) => &rustls::version::TLS13,
            SupportedCipherSuite::Tls12(_) => &rustls::version::TLS12,
        };
        let config = client(&server.ca, Some(vec![*suite]), &[version]);
        let result = connect(server.addr, config).await;
        let expect = allowed.contains(&suite.suite());
        assert_eq!(result.is_ok(), expect, "{:?}", suite.suite());
        if let Ok(tls) = result {
            assert_eq!(
                tls.get_ref().1.negotiated_cipher_suite().unwrap().suite(),
                suite.suite()
            );
            assert!(healthz(tls).await.ends_with("ok"));
        }
    }
    let tls = connect(server.addr, client(&server.ca, None, ALL_VERSIONS))
        .await
        .unwrap();
    let conn = tls.get_ref().1;
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(
        conn.negotiated_cipher_suite().unwrap().suite(),
        CipherSuite::TLS13_AES_256_GCM_SHA384
    );
    let group = conn.negotiated_key_exchange_group().unwrap().name();
    assert!(ALLOWED_GROUPS.contains(&group), "{group:?}");
}

/// S-15: TLS 1.3-only and TLS 1.2-only clients both succeed; a TLS 1.0 ClientHello is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s15_protocol_versions() {
    let server = start(Limits::default()).await;
    for version in ALL_VERSIONS {
        let tls = connect(server.addr, client(&server.ca, None, &[*version]))
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
        let response = healthz(tls).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    // TLS 1.0, TLS_RSA_WITH_AES_128_CBC_SHA, no extensions.
    let hello = client_hello(0x0301, &[0x002f], &[]);
    assert_eq!(first_reply(server.addr, &hello).await, Reply::Alert);
}

/// A ClientHello record: `version`, `suites`, then `extensions` (type, body) as given.
fn client_hello(version: u16, suites: &[u16], extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&version.to_be_bytes());
    body.extend_from_slice(&[0x42; 32]); // random
    body.push(0); // no session id
    body.extend_from_slice(&u16::try_from(suites.len() * 2).unwrap().to_be_bytes());
    for s in suites {
        body.extend_from_slice(&s.to_be_bytes());
    }
    body.extend_from_slice(&[1, 0]); // compression: null
    let mut exts = Vec::new();
    for (kind, data) in extensions {
        exts.extend_from_slice(&kind.to_be_bytes());
        exts.extend_from_slice(&u16::try_from(data.len()).unwrap().to_be_bytes());
        exts.extend_from_slice(data);
    }
    if !exts.is_empty() {
        body.extend_from_slice(&u16::try_from(exts.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&exts);
    }
    let mut handshake = vec![1u8];
    handshake.extend_from_slice(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
    handshake.extend_from_slice(&body);
    let mut record = vec![0x16, 0x03, 0x01];
    record.extend_from_slice(&u16::try_from(handshake.len()).unwrap().to_be_bytes());
    record.extend_from_slice(&handshake);
    record
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Handshake,
    Alert,
    Closed,
}

/// Sends raw bytes and classifies the server's first record.
async fn first_reply(addr: SocketAddr, bytes: &[u8]) -> Reply {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut first)).await {
        Ok(Ok(1)) if first[0] == 0x16 => Reply::Handshake,
        Ok(Ok(1)) if first[0] == 0x15 => Reply::Alert,
        Ok(Ok(0) | Err(_)) => Reply::Closed,
        other => panic!("unexpected reply {other:?} {first:?}"),
    }
}

/// S-17: the config values, and a TLS 1.2 ClientHello without the extended master secret is
/// refused while the same hello with it gets a ServerHello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s17_tls12_hygiene() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::at(dir.path());
    let now = OffsetDateTime::now_utc();
    pki.init(&["localhost".to_owned()], now - day(), now + day())
        .unwrap();
    let loaded = pki.load("localhost", now).unwrap();
    let config = server_config(loaded.chain, loaded.key).unwrap();
    assert!(config.require_ems);
    assert_eq!(config.max_early_data_size, 0);
    let groups: Vec<_> = config
        .crypto_provider()
        .kx_groups
        .iter()
        .map(|g| g.name())
        .collect();
    assert_eq!(groups, ALLOWED_GROUPS);

    let server = start(Limits::default()).await;
    let base = vec![
        (0x000a, vec![0, 2, 0x00, 0x1d]), // supported_groups: x25519
        (0x000b, vec![1, 0]),             // ec_point_formats: uncompressed
        (0x000d, vec![0, 2, 0x04, 0x03]), // signature_algorithms: ecdsa_secp256r1_sha256
    ];
    let suite = [0xc02c]; // TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
    let without = client_hello(0x0303, &suite, &base);
    assert_eq!(first_reply(server.addr, &without).await, Reply::Alert);
    let mut with_ems = base.clone();
    with_ems.push((0x0017, vec![])); // extended_master_secret
    let with = client_hello(0x0303, &suite, &with_ems);
    assert_eq!(first_reply(server.addr, &with).await, Reply::Handshake);
}

/// S-18: key files are 0600 from creation; the server refuses a readable key, a certificate
/// for another host, and one that is expired or not yet valid, with a clear error.
#[test]
fn s18_certificates_are_checked_before_serving() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::at(dir.path().join("pki"));
    let now = OffsetDateTime::now_utc();
    pki.init(
        &["localhost".to_owned(), "127.0.0.1".to_owned()],
        now - day(),
        now + day(),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for name in [CA_KEY, SERVER_KEY] {
            let mode = std::fs::metadata(pki.dir().join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    // The chain validates against the CA, for both names.
    let loaded = pki.load("localhost", now).unwrap();
    assert_eq!(loaded.chain.len(), 2);
    pki.load("127.0.0.1", now).unwrap();
    assert!(!format!("{loaded:?}").contains("BEGIN"));
    let refused = |r: Result<_, ServerError>| match r {
        Err(e @ (ServerError::Unservable { .. } | ServerError::NotPrivate { .. })) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let why = refused(pki.load("example.com", now));
    assert!(why.contains("server.pem"), "{why}");
    let why = refused(pki.load("localhost", now + day() * 2));
    assert!(why.to_lowercase().contains("expired"), "{why}");
    let why = refused(pki.load("localhost", now - day() * 2));
    assert!(
        why.to_lowercase().contains("not valid yet") || why.to_lowercase().contains("notvalidyet"),
        "{why}"
    );
    // Init never overwrites.
    assert!(matches!(
        pki.init(&["localhost".to_owned()], now, now + day()),
        Err(ServerError::Io { .. })
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = pki.dir().join(SERVER_KEY);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let why = refused(pki.load("localhost", now));
        assert!(why.contains("0600"), "{why}");
    }
}

/// S-10: a client that connects and says nothing, or half a ClientHello, is dropped at the
/// handshake deadline; one that sends half a request is dropped at the header deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s10_slow_clients_are_dropped() {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start(limits).await;
    let hello = client_hello(0x0303, &[0xc02c], &[]);
    for prefix in [&[][..], &hello[..hello.len() / 2]] {
        let mut tcp = TcpStream::connect(server.addr).await.unwrap();
        tcp.write_all(prefix).await.unwrap();
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0) | Err(_))), "not dropped: {read:?}");
    }
    let mut tls = connect(server.addr, client(&server.ca, None, ALL_VERSIONS))
        .await
        .unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: loc")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "half a request was not dropped");
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
}

/// S-11: with the cap reached, a new client waits (its handshake does not start) and is served
/// as soon as a connection closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s11_connection_cap() {
    let limits = Limits {
        max_connections: 2,
        header_read_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let server = start(limits).await;
    let config = || client(&server.ca, None, ALL_VERSIONS);
    let first = connect(server.addr, config()).await.unwrap();
    let _second = connect(server.addr, config()).await.unwrap();
    // The server holds both and waits for one to close before it accepts again (a server
    // without the cap never gets there).
    let at_cap = tokio::time::timeout(Duration::from_secs(10), async {
        while !server.connections.at_cap() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(at_cap.is_ok(), "the server never reached its cap");
    assert_eq!(server.connections.open(), 2);
    // A third client connects (the kernel queues it) and starts its handshake; the server
    // accepts nothing while both connections stay open, so the handshake cannot complete.
    let (queued_tx, queued) = tokio::sync::oneshot::channel();
    let waiting = tokio::spawn({
        let addr = server.addr;
        let config = config();
        async move {
            let tcp = TcpStream::connect(addr).await?;
            let _ = queued_tx.send(());
            TlsConnector::from(Arc::new(config))
                .connect(ServerName::try_from("localhost").unwrap(), tcp)
                .await
        }
    });
    queued.await.unwrap();
    assert_eq!(server.connections.accepted(), 2, "accepted over the cap");
    assert!(server.connections.at_cap());
    assert!(
        !waiting.is_finished(),
        "a third connection was served over the cap"
    );
    drop(first);
    let third = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting client was never served")
        .unwrap()
        .unwrap();
    assert!(healthz(third).await.ends_with("ok"));
}
