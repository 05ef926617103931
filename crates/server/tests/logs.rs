//! X-4: no secret reaches a log line. Every log record of a whole session (enrollment, refresh,
//! refused tokens, uploads, events with a provenance refusal, escrow deposit and recovery,
//! deauthorization) is captured at TRACE level and searched for every secret in play.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use cairn_escrow::{Envelope, EscrowPublicKey, EscrowRecipient, EscrowSecretKey, Header, Mode};
use cairn_keys::ArchiveKey;
use cairn_token::{Capability, Role};
use common::start_app;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x4_no_secret_in_any_log_line() {
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .init();

    let app = start_app().await;
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
    let mut secrets: Vec<String> = vec![admin.clone()];

    // Enrollment and refresh: the enrollment token, the device token, the device secret.
    let body = br#"{"user":"ana","name":"laptop"}"#.to_vec();
    let r = app
        .call("POST", "/v1/tenants/acme/devices", Some(&admin), Some(body))
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
    let j = r.json();
    let token = j["token"].as_str().unwrap().to_owned();
    let secret = j["secret"].as_str().unwrap().to_owned();
    secrets.extend([enrollment.clone(), token.clone(), secret.clone()]);
    // Refused: a reused enrollment token, a garbled token, a wrong secret.
    app.call(
        "POST",
        &format!("/v1/tenants/acme/devices/{device}/enroll"),
        Some(&enrollment),
        None,
    )
    .await;
    let mut garbled = token.clone();
    garbled.pop();
    app.call("GET", "/v1/tenants/acme/whoami", Some(&garbled), None)
        .await;
    secrets.push(garbled);
    let resp = app
        .http
        .post(app.url(&format!("/v1/tenants/acme/devices/{device}/token")))
        .header("authorization", format!("Device {}", "ab".repeat(32)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);

    // Events, including one refused for provenance (logged as a warning).
    let other = cairn_events::v1::EventBatch {
        device_id: vec![9; 16],
        agent_version: "t".into(),
        batch_sequence: 1,
        events: vec![cairn_events::v1::FileEvent {
            event_id: vec![1; 16],
            observed_unix_nanos: i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos(),
            )
            .unwrap()
                - 1_000_000_000,
            activity: cairn_events::v1::Activity::Create as i32,
            file: Some(cairn_events::v1::File {
                path: "/x".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
    };
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&token),
            Some(prost::Message::encode_to_vec(&other)),
        )
        .await;
    assert_eq!(r.status, 422);

    // Escrow: deposit and an audited recovery.
    let escrow_pub = EscrowPublicKey::from_bytes(&app.data.escrow_public().unwrap()).unwrap();
    let key = ArchiveKey::from_bytes([77; 32]);
    let envelope = Envelope::wrap(
        &key,
        Header::new(Mode::Standard, key.fingerprint(), "acme", "ana").unwrap(),
        &[&EscrowRecipient(escrow_pub)],
    )
    .unwrap();
    let r = app
        .call(
            "PUT",
            "/v1/tenants/acme/users/ana/escrow",
            Some(&token),
            Some(envelope.to_bytes()),
        )
        .await;
    assert_eq!(r.status, 200);
    let recovery = EscrowSecretKey::generate().unwrap();
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/users/ana/escrow/recover",
            Some(&admin),
            Some(recovery.public().to_bytes().to_vec()),
        )
        .await;
    assert_eq!(r.status, 200);
    let user_token = app.token(
        "acme",
        "ana",
        None,
        Role::User,
        &[Capability::EscrowRecover],
    );
    secrets.push(user_token.clone());
    app.call(
        "POST",
        "/v1/tenants/acme/users/ana/escrow/recover",
        Some(&user_token),
        Some(vec![1; 32]),
    )
    .await;
    secrets.push(hex::encode(key.expose_secret()));

    // Deauthorization and the 410 that follows.
    app.call(
        "POST",
        &format!("/v1/tenants/acme/devices/{device}/deauthorize"),
        Some(&admin),
        None,
    )
    .await;
    app.call("GET", "/v1/tenants/acme/whoami", Some(&token), None)
        .await;

    // The server's own keys, from the data directory.
    for file in ["escrow.key", "token-signing.key", "storage-keys"] {
        let text = std::fs::read_to_string(app.data.root().join(file)).unwrap();
        for word in text.split_whitespace().filter(|w| w.len() >= 64) {
            secrets.push(word.to_owned());
        }
    }

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("token refused"),
        "the session logged nothing useful:\n{text}"
    );
    // Each refusal names the step that failed (the used enrollment token is revoked, the
    // garbled token's last part is not canonical base64), never the token.
    for line in text.lines().filter(|l| l.contains("token refused")) {
        assert!(line.contains("step="), "{line}");
    }
    for step in ["step=Revoked", "step=Encoding"] {
        assert!(
            text.lines()
                .any(|l| l.contains("token refused") && l.contains(step)),
            "no refusal names {step}:\n{text}"
        );
    }
    assert!(text.contains("event batch names another device"), "{text}");
    for s in &secrets {
        // Any 16-character window of a secret would be a leak.
        let probe = &s[s.len().saturating_sub(24)..s.len().saturating_sub(8)];
        assert!(
            !text.contains(probe),
            "a secret ({}…) is in the logs",
            &s[..8]
        );
    }
    assert!(!text.contains("v4.public."), "a token is in the logs");
}
