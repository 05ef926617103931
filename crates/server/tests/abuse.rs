//! One token holder against the whole server (S-10, S-11, S-12; issue 27 item 2): a device that
//! opens connection after connection, each sending a request's headers and never its body, must
//! not make the server unreachable for another tenant's agents, and a body that stalls is cut
//! off with `408`.
//!
//! Bounded and on loopback: the attack runs for as long as the legitimate client takes to make
//! its requests, each under its own deadline.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use cairn_server::{Limits, RateConfig};
use cairn_token::{Capability, Role};
use common::{ALL_VERSIONS, App, client, connect, start_app_rates, status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A request's headers announcing a body that never comes.
fn stalled_upload(token: &str) -> String {
    format!(
        "POST /v1/tenants/evil/users/mallory/blocks HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {token}\r\nContent-Length: 1000000\r\n\r\n"
    )
}

/// What the server answers on one attacking connection (its status), or `None` when it closed
/// the connection without an answer or the attacker gave up waiting.
async fn attack_once(app: &App, token: &str, patience: Duration) -> Option<u16> {
    let mut tls = connect(app.server.addr, client(&app.server.ca, None, ALL_VERSIONS))
        .await
        .ok()?;
    tls.write_all(stalled_upload(token).as_bytes()).await.ok()?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tls.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(patience, read).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.starts_with("HTTP/1.1 ").then(|| status(&text))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_device_holding_connections_does_not_deny_another_tenant() {
    let limits = Limits {
        max_connections: 64,
        body_idle_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let rates = RateConfig {
        per_principal_connections: 4,
        per_tenant_connections: 8,
        per_principal_in_flight: 4,
        per_tenant_in_flight: 8,
        ..RateConfig::default()
    };
    let app = Arc::new(start_app_rates(limits, rates).await);
    let evil = app.token(
        "evil",
        "mallory",
        Some("laptop"),
        Role::User,
        &[Capability::BackupPut],
    );
    let good = app.token(
        "acme",
        "ana",
        Some("desk"),
        Role::User,
        &[Capability::BackupList],
    );

    // 200 attackers, each reconnecting as soon as the server answers or drops it: far more than
    // the server's 64 connections.
    let stop = Arc::new(AtomicBool::new(false));
    let refused = Arc::new(AtomicUsize::new(0));
    let timed_out = Arc::new(AtomicUsize::new(0));
    let mut attackers = Vec::new();
    for _ in 0..200 {
        let (app, evil, stop) = (Arc::clone(&app), evil.clone(), Arc::clone(&stop));
        let (refused, timed_out) = (Arc::clone(&refused), Arc::clone(&timed_out));
        attackers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match attack_once(&app, &evil, Duration::from_secs(10)).await {
                    Some(429) => refused.fetch_add(1, Ordering::Relaxed),
                    Some(408) => timed_out.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
            }
        }));
    }
    // The attack is under way once the server refuses the attacker's extra connections.
    let under_way = tokio::time::timeout(Duration::from_secs(30), async {
        while refused.load(Ordering::Relaxed) < 50 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(under_way.is_ok(), "the attacker was never refused");

    // Meanwhile another tenant's agent is served, every request within its own deadline, and
    // so is /healthz. A fresh client: its connection is opened during the attack.
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(client(&app.server.ca, None, ALL_VERSIONS))
        .resolve("localhost", app.server.addr)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut served = 0;
    for i in 0..50 {
        let path = if i % 10 == 9 {
            "/healthz"
        } else {
            "/v1/tenants/acme/whoami"
        };
        let r = http
            .get(app.url(path))
            .bearer_auth(&good)
            .send()
            .await
            .unwrap_or_else(|e| panic!("request {i} of the other tenant failed: {e}"));
        assert_eq!(r.status().as_u16(), 200, "request {i}: {path}");
        served += 1;
    }
    assert_eq!(served, 50);
    // The attacker's stalled bodies were cut off, not held.
    let cut = tokio::time::timeout(Duration::from_secs(30), async {
        while timed_out.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(cut.is_ok(), "no stalled body was answered 408");

    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.await.unwrap();
    }
    // The caps hold nothing once the attacker's connections are gone (the server notices each
    // close on its own time).
    let device = ("evil".to_owned(), "device:laptop".to_owned());
    let released = tokio::time::timeout(Duration::from_secs(30), async {
        while app.services.limits.connections_held(&device) > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        released.is_ok(),
        "the attacker's connections are still counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stops_arriving_is_answered_408_and_closed() {
    let limits = Limits {
        body_idle_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let app = start_app_rates(limits, RateConfig::default()).await;
    let evil = app.token(
        "evil",
        "mallory",
        Some("laptop"),
        Role::User,
        &[Capability::BackupPut],
    );
    let started = std::time::Instant::now();
    let code = attack_once(&app, &evil, Duration::from_secs(20)).await;
    assert_eq!(code, Some(408));
    // The answer came from the body deadline, not from the attacker's patience.
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_trickles_is_cut_at_the_total_deadline() {
    let limits = Limits {
        body_idle_timeout: Duration::from_secs(10),
        body_total_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    let app = start_app_rates(limits, RateConfig::default()).await;
    let evil = app.token(
        "evil",
        "mallory",
        Some("laptop"),
        Role::User,
        &[Capability::BackupPut],
    );
    let mut tls = connect(app.server.addr, client(&app.server.ca, None, ALL_VERSIONS))
        .await
        .unwrap();
    tls.write_all(stalled_upload(&evil).as_bytes())
        .await
        .unwrap();
    // One byte every 200 ms: never idle for 10 s, but the whole body would take days.
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let answered = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            tokio::select! {
                r = tls.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    if tls.write_all(b"x").await.is_err() {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(answered.is_ok(), "the trickling body was never cut off");
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status(&text), 408, "{text}");
}
