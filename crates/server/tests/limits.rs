//! Request limits and error hygiene over real TLS on 127.0.0.1: S-7 (a panicking handler is a
//! bare 500 and the server keeps serving), S-8 (body limits), S-9 (header limits).

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cairn_server::{Limits, base_router};
use common::{ALL_VERSIONS, Running, client, connect, start_with, status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn server() -> Running {
    let app = base_router()
        .route(
            "/panic",
            axum::routing::get(|| async {
                if std::hint::black_box(true) {
                    panic!("boom: secret detail /etc/cairn/keys");
                }
                "unreachable"
            }),
        )
        .route(
            "/echo",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
    let limits = Limits {
        max_body_bytes: 1000,
        // Below hyper's own default (100), so the test sees ours at work.
        max_headers: 50,
        ..Limits::default()
    };
    start_with(limits, app).await
}

/// Sends raw bytes on a fresh TLS connection and returns everything the server answers.
async fn raw(server: &Running, bytes: &[u8]) -> String {
    let mut tls = connect(server.addr, client(&server.ca, None, ALL_VERSIONS))
        .await
        .unwrap();
    tls.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    // The server may close before reading everything we sent: a reset is an answer too.
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s7_a_panicking_handler_is_a_bare_500() {
    let s = server().await;
    for _ in 0..3 {
        let r = raw(
            &s,
            b"GET /panic HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status(&r), 500, "{r}");
        assert!(r.ends_with("internal error\n"), "{r}");
        assert!(!r.contains("boom") && !r.contains("/etc"), "{r}");
    }
    let r = raw(
        &s,
        b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&r), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_bodies_are_limited() {
    let s = server().await;
    // Within the limit.
    let mut ok = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n".to_vec();
    ok.extend_from_slice(&[b'x'; 1000]);
    let r = raw(&s, &ok).await;
    assert_eq!(status(&r), 200, "{r}");
    assert!(r.ends_with("1000"));
    // A declared length over the limit: 413 without sending the body at all.
    let r = raw(&s, b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 1001\r\n\r\n").await;
    assert_eq!(status(&r), 413, "{r}");
    // A chunked body that grows past the limit is cut off.
    let mut chunked = b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(b"190\r\n");
        chunked.extend_from_slice(&[b'y'; 0x190]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = raw(&s, &chunked).await;
    assert_eq!(status(&r), 413, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s9_headers_are_limited() {
    let s = server().await;
    let with_headers = |n: usize, value_len: usize| {
        let mut req = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n".to_vec();
        for i in 0..n {
            req.extend_from_slice(format!("x-h{i}: {}\r\n", "v".repeat(value_len)).as_bytes());
        }
        req.extend_from_slice(b"\r\n");
        req
    };
    // 48 extra headers + Host + Connection = 50: served.
    let r = raw(&s, &with_headers(48, 8)).await;
    assert_eq!(status(&r), 200, "{r}");
    // 51 headers in all: refused.
    let r = raw(&s, &with_headers(49, 8)).await;
    assert_eq!(status(&r), 431, "{r}");
    // 20 KiB of headers: refused.
    let r = raw(&s, &with_headers(20, 1024)).await;
    assert_eq!(status(&r), 431, "{r}");
}

/// S-8 on the real upload route: a chunked body that grows past the route's 64 MiB gets the
/// documented 413, as a declared length over it does (it was a 400).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_a_chunked_upload_over_the_route_limit_is_413() {
    let app = common::start_app().await;
    let token = app.token(
        "acme",
        "ana",
        Some("laptop"),
        cairn_token::Role::User,
        &[cairn_token::Capability::BackupPut],
    );
    let limit = cairn_server::ROUTES
        .iter()
        .find(|r| r.method == "POST" && r.path == "/v1/tenants/{tenant}/users/{user}/blocks")
        .unwrap()
        .max_body;
    let mut tls = connect(app.server.addr, client(&app.server.ca, None, ALL_VERSIONS))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/tenants/acme/users/ana/blocks HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {token}\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let piece = vec![b'z'; 1 << 20];
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        // One MiB more than the limit; the server may stop reading (and close) before the end.
        for _ in 0..=(limit >> 20) {
            let frame = [b"100000\r\n".as_slice(), &piece, b"\r\n"].concat();
            if wr.write_all(&frame).await.is_err() {
                return;
            }
        }
        let _ = wr.write_all(b"0\r\n\r\n").await;
    });
    let mut out = Vec::new();
    let _ = rd.read_to_end(&mut out).await;
    writer.await.unwrap();
    let r = String::from_utf8_lossy(&out);
    assert_eq!(status(&r), 413, "{r}");
}
