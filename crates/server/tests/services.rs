//! The services over real TLS on 127.0.0.1 with a real HTTP client: devices, storage (B-16),
//! events (S-6), escrow (K-8), isolation (S-2, S-3, S-5) and quotas (S-12).

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::cast_possible_wrap
)]

mod common;

use std::sync::atomic::Ordering;

use cairn_escrow::{
    Argon2Params, Envelope, EscrowIdentity, EscrowPublicKey, EscrowRecipient, EscrowSecretKey,
    Header, Mode, Password, PasswordEscrowRecipient, PasswordRecipient,
};
use cairn_events::v1;
use cairn_keys::ArchiveKey;
use cairn_seal::{ArchiveId, BlockId, BlockKind, SealConfig, Sealer};
use cairn_server::wire;
use cairn_server::{Access, ROUTES};
use cairn_token::{Capability, Role};
use common::{App, Reply, enroll, seed, start_app};
use prost::Message;
use sqlx::Row;

fn sealer(seed: u8) -> Sealer {
    Sealer::new(
        &ArchiveKey::from_bytes([seed; 32]),
        ArchiveId::from_bytes([seed; 16]),
        SealConfig::default(),
    )
}

fn seal(s: &Sealer, kind: BlockKind, plain: &[u8]) -> (BlockId, Vec<u8>) {
    let b = s.seal(kind, plain).unwrap();
    (b.id(), b.into_bytes())
}

fn batch(device: &str, sequence: u64, paths: &[&str]) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    v1::EventBatch {
        device_id: hex::decode(device).unwrap(),
        agent_version: "test".into(),
        batch_sequence: sequence,
        events: paths
            .iter()
            .enumerate()
            .map(|(i, p)| v1::FileEvent {
                event_id: vec![i as u8 + 1; 16],
                observed_unix_nanos: now - 1_000_000_000 + i as i64,
                activity: if i % 2 == 0 {
                    v1::Activity::Create as i32
                } else {
                    v1::Activity::Update as i32
                },
                file: Some(v1::File {
                    path: (*p).into(),
                    size: 10,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
    }
    .encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn devices_enroll_once_refresh_and_are_deauthorized() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana"]).await;
    let admin = app.admin("acme");
    let body = serde_json::json!({"user": "ana", "name": "laptop"}).to_string();
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/devices",
            Some(&admin),
            Some(body.into()),
        )
        .await;
    let j = r.json();
    let device = j["device"].as_str().unwrap().to_owned();
    assert_eq!(device.len(), 32);
    let enrollment = j["token"].as_str().unwrap().to_owned();
    // The enrollment token reaches nothing but enrollment.
    let r = app
        .call(
            "GET",
            "/v1/tenants/acme/users/ana/snapshots",
            Some(&enrollment),
            None,
        )
        .await;
    assert_eq!(r.status, 403);
    let enroll_path = format!("/v1/tenants/acme/devices/{device}/enroll");
    let r = app
        .call("POST", &enroll_path, Some(&enrollment), None)
        .await;
    assert_eq!(r.status, 200);
    let j = r.json();
    let token = j["token"].as_str().unwrap().to_owned();
    let secret = j["secret"].as_str().unwrap().to_owned();
    // Once only: the enrollment token is revoked.
    let again = app
        .call("POST", &enroll_path, Some(&enrollment), None)
        .await;
    assert_eq!(
        (again.status, again.text().as_str()),
        (401, "unauthorized\n")
    );
    // A device token cannot enroll (it is not an enrollment token).
    let r = app.call("POST", &enroll_path, Some(&token), None).await;
    assert_eq!(r.status, 404);
    let r = app
        .call("GET", "/v1/tenants/acme/whoami", Some(&token), None)
        .await;
    assert_eq!(
        r.text(),
        format!("tenant=acme user=ana device={device} role=user\n")
    );

    // The secret refreshes the access token; a wrong secret is a plain 401.
    let refresh = format!("/v1/tenants/acme/devices/{device}/token");
    let with_secret = |s: String| {
        let app = &app;
        let refresh = refresh.clone();
        async move {
            let resp = app
                .http
                .post(app.url(&refresh))
                .header("authorization", format!("Device {s}"))
                .send()
                .await
                .unwrap();
            Reply {
                status: resp.status().as_u16(),
                body: resp.bytes().await.unwrap().to_vec(),
            }
        }
    };
    let r = with_secret(secret.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let fresh = r.json()["token"].as_str().unwrap().to_owned();
    let r = app
        .call("GET", "/v1/tenants/acme/whoami", Some(&fresh), None)
        .await;
    assert_eq!(r.status, 200);
    let wrong = with_secret("00".repeat(32)).await;
    assert_eq!(
        (wrong.status, wrong.text().as_str()),
        (401, "unauthorized\n")
    );
    let r = app.call("POST", &refresh, None, None).await;
    assert_eq!(r.status, 401);

    // Deauthorize: every token of the device and its secret get the distinct 410.
    let r = app
        .call(
            "POST",
            &format!("/v1/tenants/acme/devices/{device}/deauthorize"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    for t in [&token, &fresh] {
        let r = app
            .call("GET", "/v1/tenants/acme/whoami", Some(t), None)
            .await;
        assert_eq!(
            (r.status, r.text().as_str()),
            (410, "device deauthorized\n")
        );
    }
    assert_eq!(with_secret(secret).await.status, 410);
    let log = app
        .services
        .db
        .audit_log(&common::tid("acme"))
        .await
        .unwrap();
    let actions: Vec<&str> = log.iter().map(|(_, a, _, _)| a.as_str()).collect();
    assert_eq!(
        actions,
        ["device.add", "device.enroll", "device.deauthorize"]
    );
}

/// B-16: uploads are checked, appended opaque and immutable; identical re-uploads are
/// idempotent; a different body under an existing id is refused; nothing deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b16_storage_is_append_only() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana"]).await;
    let (_, token, _) = enroll(&app, "acme", "ana").await;
    let s = sealer(1);
    let blocks: Vec<(BlockId, Vec<u8>)> = (0..20u8)
        .map(|i| seal(&s, BlockKind::DATA, &vec![i; 5000 + usize::from(i)]))
        .collect();
    let ids: Vec<BlockId> = blocks.iter().map(|(i, _)| *i).collect();
    let base = "/v1/tenants/acme/users/ana";
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks/missing"),
            Some(&token),
            Some(wire::encode_ids(&ids)),
        )
        .await;
    assert_eq!(wire::decode_ids(&r.body).unwrap(), ids);
    let bodies: Vec<&[u8]> = blocks.iter().map(|(_, b)| &b[..]).collect();
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks"),
            Some(&token),
            Some(wire::encode_batch(&bodies)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["stored"], 20);
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks/missing"),
            Some(&token),
            Some(wire::encode_ids(&ids)),
        )
        .await;
    assert!(wire::decode_ids(&r.body).unwrap().is_empty());
    // Identical bytes again: idempotent, nothing charged.
    let used = app
        .services
        .db
        .quota(&common::tid("acme"))
        .await
        .unwrap()
        .unwrap()
        .used_bytes;
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks"),
            Some(&token),
            Some(wire::encode_batch(&bodies[..3])),
        )
        .await;
    assert_eq!(
        (
            r.json()["stored"].clone(),
            r.json()["already_present"].clone()
        ),
        (0.into(), 3.into())
    );
    assert_eq!(
        app.services
            .db
            .quota(&common::tid("acme"))
            .await
            .unwrap()
            .unwrap()
            .used_bytes,
        used
    );
    // A different body under an existing id: the same plaintext sealed again (fresh salt)
    // gives the same id and other bytes. Refused, with the rest of its batch.
    let (same_id, other_bytes) = seal(&s, BlockKind::DATA, &vec![0u8; 5000]);
    assert_eq!(same_id, ids[0]);
    assert_ne!(other_bytes, blocks[0].1);
    let (new_id, new_bytes) = seal(&s, BlockKind::DATA, b"new block");
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks"),
            Some(&token),
            Some(wire::encode_batch(&[&new_bytes[..], &other_bytes[..]])),
        )
        .await;
    assert_eq!((r.status, r.text().as_str()), (409, "conflict\n"));
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks/missing"),
            Some(&token),
            Some(wire::encode_ids(&[new_id])),
        )
        .await;
    assert_eq!(
        wire::decode_ids(&r.body).unwrap(),
        [new_id],
        "all or nothing"
    );
    // Fetch returns exactly what was stored.
    let r = app
        .call(
            "POST",
            &format!("{base}/blocks/fetch"),
            Some(&token),
            Some(wire::encode_ids(&ids)),
        )
        .await;
    assert_eq!(r.status, 200);
    let got = wire::split_batch(&r.body).unwrap();
    assert_eq!(got, bodies);
    let opened = s.open(BlockKind::DATA, &ids[0], got[0]).unwrap();
    assert_eq!(opened.as_slice(), &vec![0u8; 5000][..]);
    // Not a sealed block, bad framing, an id list of the wrong length: 400, nothing stored.
    for bad in [
        wire::encode_batch(&[vec![7u8; 300]]),
        b"CRNK\x01\0\0\0\x05\0\0\0".to_vec(),
        vec![0u8; 31],
    ] {
        let r = app
            .call("POST", &format!("{base}/blocks"), Some(&token), Some(bad))
            .await;
        assert_eq!(r.status, 400);
    }
    // Snapshots: the header must name the path's id; then listed and read back.
    let (snap_id, snap) = seal(&s, BlockKind::SNAPSHOT, b"snapshot record");
    let r = app
        .call(
            "PUT",
            &format!("{base}/snapshots/{}", hex::encode(ids[1].as_bytes())),
            Some(&token),
            Some(snap.clone()),
        )
        .await;
    assert_eq!(r.status, 400);
    let snap_path = format!("{base}/snapshots/{}", hex::encode(snap_id.as_bytes()));
    let r = app
        .call("PUT", &snap_path, Some(&token), Some(snap.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app
        .call("GET", &format!("{base}/snapshots"), Some(&token), None)
        .await;
    assert_eq!(wire::decode_ids(&r.body).unwrap(), [snap_id]);
    let r = app.call("GET", &snap_path, Some(&token), None).await;
    assert_eq!(r.body, snap);
    // A block is not a snapshot and the other way round.
    let r = app
        .call(
            "GET",
            &format!("{base}/snapshots/{}", hex::encode(ids[2].as_bytes())),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(r.status, 404);
    // Nothing deletes, renames or overwrites: no such method on any storage path.
    for (method, path) in [
        ("DELETE", snap_path.clone()),
        ("DELETE", format!("{base}/blocks")),
        ("PUT", format!("{base}/blocks")),
        ("PATCH", snap_path.clone()),
    ] {
        let r = app.call(method, &path, Some(&token), None).await;
        assert_eq!(r.status, 405, "{method} {path}");
    }
    let r = app.call("GET", &snap_path, Some(&token), None).await;
    assert_eq!(r.body, snap);
}

/// S-12: concurrent uploads that together pass the tenant's quota store at most the quota.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s12_quota_is_enforced_atomically() {
    let app = start_app().await;
    let users: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
    let names: Vec<&str> = users.iter().map(String::as_str).collect();
    // Each upload is ~100 KB; the quota holds about 7 of them.
    seed(&app, "acme", 700_000, &names).await;
    let admin = app.admin("acme");
    let mut tasks = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let s = sealer(i as u8);
        let blocks: Vec<Vec<u8>> = (0..4u8)
            .map(|j| {
                seal(
                    &s,
                    BlockKind::DATA,
                    &random_bytes(25_000, i as u64 * 16 + u64::from(j)),
                )
                .1
            })
            .collect();
        let body = wire::encode_batch(&blocks);
        let bytes: usize = blocks.iter().map(Vec::len).sum();
        let path = format!("/v1/tenants/acme/users/{user}/blocks");
        let http = app.http.clone();
        let url = app.url(&path);
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .bearer_auth(admin)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), bytes)
        }));
    }
    let mut stored = 0;
    let mut ok = 0;
    for t in tasks {
        let (status, bytes) = t.await.unwrap();
        match status {
            200 => {
                ok += 1;
                stored += bytes;
            }
            507 => {}
            other => panic!("unexpected {other}"),
        }
    }
    let quota = app
        .services
        .db
        .quota(&common::tid("acme"))
        .await
        .unwrap()
        .unwrap();
    assert!((1..20).contains(&ok), "{ok} uploads succeeded");
    assert!(stored as i64 <= quota.quota_bytes);
    assert_eq!(quota.used_bytes, stored as i64);
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// S-6 and the event service: provenance from the token, idempotent batches, search filters
/// and paging, OCSF export, sealed at rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s6_events_are_labelled_from_the_token() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bob"]).await;
    let (dev_a, tok_a, _) = enroll(&app, "acme", "ana").await;
    let (dev_b, tok_b, _) = enroll(&app, "acme", "bob").await;
    // A batch naming another device: refused, counted, nothing stored.
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tok_a),
            Some(batch(&dev_b, 1, &["/x"])),
        )
        .await;
    assert_eq!((r.status, r.text().as_str()), (422, "refused\n"));
    assert_eq!(
        app.services
            .metrics
            .provenance_rejections
            .load(Ordering::Relaxed),
        1
    );
    let paths = [
        "/home/ana/a.txt",
        "/home/ana/docs/b.pdf",
        "/tmp/c",
        "/home/ana/docs/d.pdf",
    ];
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tok_a),
            Some(batch(&dev_a, 1, &paths)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({"accepted": 4, "duplicate": false})
    );
    // The same (device, sequence) again: acknowledged, not stored twice.
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tok_a),
            Some(batch(&dev_a, 1, &paths)),
        )
        .await;
    assert_eq!(
        r.json(),
        serde_json::json!({"accepted": 0, "duplicate": true})
    );
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tok_b),
            Some(batch(&dev_b, 1, &["/home/bob/z"])),
        )
        .await;
    assert_eq!(r.json()["accepted"], 1);
    // A malformed batch: 400.
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&tok_a),
            Some(vec![0xff; 10]),
        )
        .await;
    assert_eq!(r.status, 400);

    let admin = app.admin("acme");
    let search = |q: &str, t: &str| {
        let path = format!("/v1/tenants/acme/events?{q}");
        let t = t.to_owned();
        let app = &app;
        async move { app.call("GET", &path, Some(&t), None).await }
    };
    let all = search("", &admin).await.json();
    assert_eq!(all["events"].as_array().unwrap().len(), 5);
    let r = search("path_prefix=/home/ana/docs/", &admin).await.json();
    let got: Vec<&str> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(got, ["/home/ana/docs/b.pdf", "/home/ana/docs/d.pdf"]);
    let r = search(&format!("device={dev_b}"), &admin).await.json();
    assert_eq!(r["events"].as_array().unwrap().len(), 1);
    let r = search("activity=3", &admin).await.json();
    assert_eq!(r["events"].as_array().unwrap().len(), 2);
    // Labels come from the token: tenant and user in every stored event.
    for e in all["events"].as_array().unwrap() {
        assert_eq!(e["metadata"]["tenant_uid"], "acme", "{e}");
    }
    // Paging: two at a time, all five, in order, no repeats.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let q = match &after {
            Some(a) => format!("limit=2&after={a}"),
            None => "limit=2".to_owned(),
        };
        let page = search(&q, &admin).await.json();
        for e in page["events"].as_array().unwrap() {
            seen.push(e["file"]["path"].as_str().unwrap().to_owned());
        }
        match page["next"].as_str() {
            Some(n) => after = Some(n.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5);
    // Paging within one device's batches (filters and cursor together).
    let page = search(&format!("device={dev_a}&limit=3"), &admin)
        .await
        .json();
    assert_eq!(page["events"].as_array().unwrap().len(), 3);
    let next = page["next"].as_str().unwrap().to_owned();
    let page = search(&format!("device={dev_a}&limit=3&after={next}"), &admin)
        .await
        .json();
    let rest: Vec<&str> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(rest, ["/home/ana/docs/d.pdf"]);
    assert!(page["next"].is_null(), "{page}");
    // Time ranges: every event was observed in the last few seconds.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64;
    let hour = 3_600_000_000_000_i64;
    let count = |r: serde_json::Value| r["events"].as_array().unwrap().len();
    assert_eq!(
        count(search(&format!("from={}", now - hour), &admin).await.json()),
        5
    );
    assert_eq!(
        count(search(&format!("from={}", now + hour), &admin).await.json()),
        0
    );
    assert_eq!(
        count(search(&format!("to={}", now - hour), &admin).await.json()),
        0
    );
    assert_eq!(
        count(
            search(
                &format!("from={}&to={}&activity=1", now - hour, now + hour),
                &admin
            )
            .await
            .json()
        ),
        3
    );
    // A user's own token sees only that user's events, even when asking for another's.
    let own = app.token("acme", "bob", None, Role::User, &[Capability::EventsRead]);
    let r = search("user=ana", &own).await.json();
    let users: Vec<&str> = r["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["file"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["/home/bob/z"]);
    // OCSF NDJSON export.
    let r = app
        .call("GET", "/v1/tenants/acme/events/export", Some(&admin), None)
        .await;
    let text = r.text();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().all(|l| l["class_uid"] == 1001));
    // At rest, the event rows hold no path in clear.
    let rows = sqlx::query("SELECT sealed FROM events")
        .fetch_all(app.services.db.pool())
        .await
        .unwrap();
    assert_eq!(rows.len(), 5);
    for row in rows {
        let sealed: Vec<u8> = row.get(0);
        assert!(!sealed.windows(6).any(|w| w == b"/home/"));
    }
}

/// K-8: modes only strengthen; moving to custom key deletes the escrowed copy; recovery is for
/// admins with the capability, audited, and re-wraps the key to the admin's own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8_escrow_modes_only_strengthen() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana"]).await;
    let (_, device_token, _) = enroll(&app, "acme", "ana").await;
    let escrow_pub = EscrowPublicKey::from_bytes(&app.data.escrow_public().unwrap()).unwrap();
    let key = ArchiveKey::from_bytes([42; 32]);
    let header = |mode| Header::new(mode, key.fingerprint(), "acme", "ana").unwrap();
    let standard = Envelope::wrap(
        &key,
        header(Mode::Standard),
        &[&EscrowRecipient(escrow_pub.clone())],
    )
    .unwrap()
    .to_bytes();
    let path = "/v1/tenants/acme/users/ana/escrow";
    let r = app
        .call("PUT", path, Some(&device_token), Some(standard.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // An envelope for another user is refused.
    let other = Envelope::wrap(
        &key,
        Header::new(Mode::Standard, key.fingerprint(), "acme", "bob").unwrap(),
        &[&EscrowRecipient(escrow_pub.clone())],
    )
    .unwrap();
    let r = app
        .call("PUT", path, Some(&device_token), Some(other.to_bytes()))
        .await;
    assert_eq!(r.status, 400);

    // Recovery: an admin with the capability gets the key wrapped to their own key.
    let recovery = EscrowSecretKey::generate().unwrap();
    let admin = app.admin("acme");
    let recover = "/v1/tenants/acme/users/ana/escrow/recover";
    let body = recovery.public().to_bytes().to_vec();
    let r = app
        .call("POST", recover, Some(&admin), Some(body.clone()))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let rewrapped = Envelope::parse(&r.body).unwrap();
    let got = rewrapped.unwrap(&[&EscrowIdentity(recovery)]).unwrap();
    assert_eq!(got.expose_secret(), key.expose_secret());
    // S-5: a device or user token, even holding the capability, cannot recover.
    let user_recover = app.token(
        "acme",
        "ana",
        None,
        Role::User,
        &[Capability::EscrowRecover],
    );
    for t in [&device_token, &user_recover] {
        let r = app.call("POST", recover, Some(t), Some(body.clone())).await;
        assert_eq!(r.status, 403);
    }

    // Strengthen to archive password: the server can no longer recover.
    let params = Argon2Params::FLOOR;
    let pw =
        PasswordEscrowRecipient::new(escrow_pub.clone(), Password::new("correct horse"), params)
            .unwrap();
    let locked = Envelope::wrap(&key, header(Mode::ArchivePassword), &[&pw])
        .unwrap()
        .to_bytes();
    let r = app
        .call("PUT", path, Some(&device_token), Some(locked))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = app
        .call("POST", recover, Some(&admin), Some(body.clone()))
        .await;
    assert_eq!(r.status, 409);
    // Downgrade: refused and audited, by the device and by the admin alike.
    for t in [&device_token, &admin] {
        let r = app.call("PUT", path, Some(t), Some(standard.clone())).await;
        assert_eq!(r.status, 403);
    }
    // Custom key: the escrowed copy is gone from the database.
    let custom = PasswordRecipient::new(Password::new("only mine"), params).unwrap();
    let custom = Envelope::wrap(&key, header(Mode::CustomKey), &[&custom])
        .unwrap()
        .to_bytes();
    let r = app
        .call("PUT", path, Some(&device_token), Some(custom))
        .await;
    assert_eq!(r.json(), serde_json::json!({"mode": 3, "escrowed": false}));
    let row =
        sqlx::query("SELECT mode, envelope FROM escrow WHERE tenant = 'acme' AND user_id = 'ana'")
            .fetch_one(app.services.db.pool())
            .await
            .unwrap();
    assert_eq!(row.get::<i64, _>(0), 3);
    assert!(row.get::<Option<Vec<u8>>, _>(1).is_none());
    let r = app.call("POST", recover, Some(&admin), Some(body)).await;
    assert_eq!(r.status, 409);
    let log = app
        .services
        .db
        .audit_log(&common::tid("acme"))
        .await
        .unwrap();
    let escrow: Vec<(&str, &str)> = log
        .iter()
        .filter(|(_, a, _, _)| a.starts_with("escrow"))
        .map(|(_, a, _, o)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        escrow,
        [
            ("escrow.deposit", "ok"),
            ("escrow.recover", "ok"),
            ("escrow.deposit", "ok"),
            ("escrow.recover", "refused: mode is not recoverable"),
            ("escrow.deposit", "refused: downgrade"),
            ("escrow.deposit", "refused: downgrade"),
            ("escrow.deposit", "ok"),
            ("escrow.recover", "refused: mode is not recoverable"),
        ]
    );
}

/// A fingerprint of everything the server holds for `tenant`: its rows in every table and its
/// segment files (staged and published).
async fn tenant_state(app: &App, tenant: &str) -> String {
    let mut out = String::new();
    for (table, key) in [
        ("tenants", "id"),
        ("users", "tenant"),
        ("devices", "tenant"),
        ("revoked_tokens", "tenant"),
        ("archives", "tenant"),
        ("event_batches", "tenant"),
        ("events", "tenant"),
        ("escrow", "tenant"),
        ("audit", "tenant"),
        ("snapshots", "tenant"),
        ("archive_leases", "tenant"),
    ] {
        let rows = sqlx::query(&format!(
            "SELECT * FROM {table} WHERE {key} = $1 ORDER BY 1, 2, 3"
        ))
        .bind(tenant)
        .fetch_all(app.services.db.pool())
        .await
        .unwrap();
        out.push_str(&format!("{table}: {} rows\n", rows.len()));
        for row in rows {
            use sqlx::{Column, ValueRef};
            for (i, col) in row.columns().iter().enumerate() {
                let raw = row.try_get_raw(i).unwrap();
                let text = if raw.is_null() {
                    "NULL".to_owned()
                } else {
                    row.try_get::<Vec<u8>, _>(i)
                        .map(hex::encode)
                        .or_else(|_| row.try_get::<i64, _>(i).map(|v| v.to_string()))
                        .unwrap_or_default()
                };
                out.push_str(&format!("{}={} ", col.name(), text));
            }
            out.push('\n');
        }
    }
    for dir in [
        app.data.root().join("segments/tenants").join(tenant),
        app.data.root().join("staging").join(tenant),
    ] {
        let mut files = Vec::new();
        walk(&dir, &mut files);
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            out.push_str(&format!("{} {}\n", f.display(), blake3::hash(&bytes)));
        }
    }
    out
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Tenants `a` and `b` with two users each, each with a device, blocks, a snapshot, events and
/// an escrowed key.
async fn two_tenants(app: &App) -> Vec<(String, String, String)> {
    let escrow_pub = EscrowPublicKey::from_bytes(&app.data.escrow_public().unwrap()).unwrap();
    let mut devices = Vec::new();
    for tenant in ["a", "b"] {
        seed(app, tenant, 1 << 30, &["u1", "u2"]).await;
        for (n, user) in ["u1", "u2"].into_iter().enumerate() {
            let (device, token, _) = enroll(app, tenant, user).await;
            let base = format!("/v1/tenants/{tenant}/users/{user}");
            // The same content in both tenants (same key, so the same ids): separate objects.
            let s = sealer(9);
            let (_, block) = seal(&s, BlockKind::DATA, b"the same block in every archive");
            let r = app
                .call(
                    "POST",
                    &format!("{base}/blocks"),
                    Some(&token),
                    Some(wire::encode_batch(&[block])),
                )
                .await;
            assert_eq!(r.status, 200);
            let (snap_id, snap) = seal(
                &s,
                BlockKind::SNAPSHOT,
                format!("{tenant}/{user}").as_bytes(),
            );
            let r = app
                .call(
                    "PUT",
                    &format!("{base}/snapshots/{}", hex::encode(snap_id.as_bytes())),
                    Some(&token),
                    Some(snap),
                )
                .await;
            assert_eq!(r.status, 200);
            let r = app
                .call(
                    "POST",
                    &format!("/v1/tenants/{tenant}/events"),
                    Some(&token),
                    Some(batch(&device, 1, &["/f"])),
                )
                .await;
            assert_eq!(r.status, 200);
            let key = ArchiveKey::from_bytes([n as u8; 32]);
            let env = Envelope::wrap(
                &key,
                Header::new(Mode::Standard, key.fingerprint(), tenant, user).unwrap(),
                &[&EscrowRecipient(escrow_pub.clone())],
            )
            .unwrap();
            let r = app
                .call(
                    "PUT",
                    &format!("{base}/escrow"),
                    Some(&token),
                    Some(env.to_bytes()),
                )
                .await;
            assert_eq!(r.status, 200);
            devices.push((tenant.to_owned(), user.to_owned(), device));
        }
    }
    devices
}

/// A concrete path for a route pattern.
fn concrete(route: &str, tenant: &str, user: &str, device: &str, id: &str) -> String {
    route
        .replace("{tenant}", tenant)
        .replace("{user}", user)
        .replace("{device}", device)
        .replace("{id}", id)
}

/// A plausible body for a route, so that a refusal is about authorization, not the body.
fn body_for(path: &str) -> Option<Vec<u8>> {
    if path.ends_with("/blocks/missing") || path.ends_with("/blocks/fetch") {
        Some(vec![0; 32])
    } else if path.ends_with("/users") {
        Some(br#"{"id":"intruder","role":"admin"}"#.to_vec())
    } else if path.ends_with("/devices") {
        Some(br#"{"user":"u1","name":"intruder"}"#.to_vec())
    } else {
        Some(Vec::new())
    }
}

/// S-2: with tenant `a`'s tokens (an admin with every capability, a device), every tenant route
/// and method on tenant `b`'s paths answers exactly what a tenant that does not exist answers,
/// and nothing of `b` changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s2_cross_tenant_matrix() {
    let app = start_app().await;
    let devices = two_tenants(&app).await;
    let b_device = &devices[2].2;
    let before = tenant_state(&app, "b").await;
    let a_admin = app.admin("a");
    let (_, a_token, _) = enroll(&app, "a", "u1").await;
    let snap = "0".repeat(64);
    let mut calls = 0;
    for route in ROUTES.iter().filter(|r| r.access != Access::Public) {
        for token in [&a_admin, &a_token] {
            let on_b = concrete(route.path, "b", "u1", b_device, &snap);
            let on_none = concrete(route.path, "nobody", "u1", b_device, &snap);
            let got = app
                .call(route.method, &on_b, Some(token), body_for(&on_b))
                .await;
            let none = app
                .call(route.method, &on_none, Some(token), body_for(&on_none))
                .await;
            assert_eq!(got, none, "{} {on_b}", route.method);
            assert!(
                matches!(got.status, 401 | 403 | 404),
                "{} {on_b}: {got:?}",
                route.method
            );
            calls += 2;
        }
    }
    assert!(calls >= 40);
    assert_eq!(tenant_state(&app, "b").await, before, "tenant b changed");
}

/// S-3: within a tenant, a user's device reaches only its user's archive, escrow and events; the
/// other user's resources answer like a user that does not exist. Identical content in two
/// tenants is two objects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_bola_within_a_tenant() {
    let app = start_app().await;
    let devices = two_tenants(&app).await;
    let before = tenant_state(&app, "a").await;
    let (_, u1_token, _) = enroll(&app, "a", "u1").await;
    let u1_state = tenant_state(&app, "a").await;
    assert_ne!(before, u1_state);
    let snap = "0".repeat(64);
    let user_routes = ROUTES.iter().filter(|r| r.path.contains("{user}"));
    for route in user_routes {
        let other = concrete(route.path, "a", "u2", &devices[1].2, &snap);
        let nobody = concrete(route.path, "a", "nobody", &devices[1].2, &snap);
        let got = app
            .call(route.method, &other, Some(&u1_token), body_for(&other))
            .await;
        let none = app
            .call(route.method, &nobody, Some(&u1_token), body_for(&nobody))
            .await;
        assert_eq!(got, none, "{} {other}", route.method);
        assert!(
            matches!(got.status, 403 | 404),
            "{} {other}: {got:?}",
            route.method
        );
    }
    // S-5: the device cannot call tenant administration.
    for route in ROUTES
        .iter()
        .filter(|r| r.access == Access::Capability(Capability::Admin))
    {
        let path = concrete(route.path, "a", "u2", &devices[1].2, &snap);
        let r = app
            .call(route.method, &path, Some(&u1_token), body_for(&path))
            .await;
        assert_eq!(r.status, 403, "{} {path}", route.method);
    }
    assert_eq!(
        tenant_state(&app, "a").await,
        u1_state,
        "u1's calls changed tenant a"
    );
    // The same sealed content in a and b: separate segment files (or objects, in a shared
    // store) under each tenant.
    let files = |tenant: &str| -> Vec<String> {
        if let Some(store) = app.data.backends().s3_store().unwrap() {
            use futures_util::TryStreamExt;
            let prefix = object_store::path::Path::from(format!("tenants/{tenant}/users/u1"));
            let listed: Vec<object_store::ObjectMeta> = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(store.list(Some(&prefix)).try_collect())
            })
            .unwrap();
            return listed.into_iter().map(|m| m.location.to_string()).collect();
        }
        let mut v = Vec::new();
        walk(
            &app.data.root().join(format!("staging/{tenant}/u1")),
            &mut v,
        );
        v.into_iter().map(|p| p.display().to_string()).collect()
    };
    let (a_files, b_files) = (files("a"), files("b"));
    assert!(!a_files.is_empty() && !b_files.is_empty());
}

/// S-8 for every route of the table: a `Content-Length` one byte over the route's own limit is
/// answered 413 before any body is sent (the request carries a valid token with every
/// capability, so the limit, not authentication, is what answers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s8_every_route_limits_its_body() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana"]).await;
    let admin = app.admin("acme");
    for route in ROUTES.iter().filter(|r| r.access != Access::Public) {
        let path = concrete(route.path, "acme", "ana", &"ab".repeat(16), &"0".repeat(64));
        let mut tls = common::connect(
            app.server.addr,
            common::client(&app.server.ca, None, common::ALL_VERSIONS),
        )
        .await
        .unwrap();
        let head = format!(
            "{} {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {admin}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            route.method,
            route.max_body + 1
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tls.read_to_end(&mut answer),
        )
        .await
        .expect("answered without the body")
        .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{} {path}: {answer}",
            route.method
        );
    }
}

/// Migration 0002 on a database written under 0001 alone: each batch learns its user and its
/// events' row-id range, so events stored before the upgrade are still found.
#[tokio::test]
async fn migration_0002_indexes_events_stored_before_it() {
    let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
    sqlx::raw_sql(include_str!("../migrations/sqlite/0001_init.sql"))
        .execute(&pool)
        .await
        .unwrap();
    sqlx::raw_sql(
        "INSERT INTO event_batches VALUES ('acme', 'd1', 7, 2, 1);
         INSERT INTO event_batches VALUES ('acme', 'd2', 1, 1, 1);
         INSERT INTO events (tenant, user_id, device, batch_sequence, batch_index,
                             observed_nanos, activity, key_id, sealed)
         VALUES ('acme', 'ana', 'd1', 7, 0, 5, 1, 'k', x''),
                ('acme', 'ana', 'd1', 7, 1, 6, 1, 'k', x''),
                ('acme', 'bob', 'd2', 1, 0, 7, 1, 'k', x'');",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::raw_sql(include_str!(
        "../migrations/portable/0002_event_indexes.sql"
    ))
    .execute(&pool)
    .await
    .unwrap();
    let rows = sqlx::query(
        "SELECT device, user_id, first_event, last_event FROM event_batches ORDER BY device",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let got: Vec<(String, String, i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        got,
        [
            ("d1".into(), "ana".into(), 1, 2),
            ("d2".into(), "bob".into(), 3, 3)
        ]
    );
}

/// A batch of one event on a file the disk holder is assumed to know: its path and digests.
fn known_file_batch(device: &str) -> Vec<u8> {
    let mut b = v1::EventBatch::decode(&batch(device, 1, &[KNOWN_PATH])[..]).unwrap();
    let file = b.events[0].file.as_mut().unwrap();
    file.sha256 = KNOWN_SHA256.to_vec();
    file.blake3 = KNOWN_BLAKE3.to_vec();
    b.encode_to_vec()
}

/// Tenant `acme` with user `ana`, whose enrolled device sends [`known_file_batch`]; returns the
/// device id.
async fn send_known_file(app: &App) -> String {
    seed(app, "acme", 1 << 30, &["ana"]).await;
    let (device, token, _) = enroll(app, "acme", "ana").await;
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/events",
            Some(&token),
            Some(known_file_batch(&device)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    device
}

const KNOWN_PATH: &str = "/home/ana/merger/acquisition-plan.docx";
const KNOWN_SHA256: [u8; 32] = [0x5A; 32];
const KNOWN_BLAKE3: [u8; 32] = [0xB3; 32];

/// Whether any file under `root` holds any of `needles`.
fn holds_any(root: &std::path::Path, needles: &[&[u8]]) -> Vec<String> {
    let mut files = Vec::new();
    walk(root, &mut files);
    let mut found = Vec::new();
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        for n in needles {
            if bytes.windows(n.len()).any(|w| w == *n) {
                found.push(format!(
                    "{} holds {:?}",
                    f.display(),
                    String::from_utf8_lossy(n)
                ));
            }
        }
    }
    found
}

/// Issue 27 item 7: with a key-encryption key outside the data directory, a copy of the data
/// directory (and of the database, which holds the sealed events) tells its holder who was
/// active when, and nothing of what: no path, no file name, no hash, and no key to open them.
/// The server, holding the KEK, serves the events; the hashes it stores and exports are keyed
/// per tenant, so even a reader of the export cannot test a known file's digest against them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_the_data_directory_learns_no_event_content_without_the_kek() {
    let kek_dir = tempfile::tempdir().unwrap();
    let kek = kek_dir.path().join("cairn.kek");
    let app = common::start_app_kek(
        cairn_server::Limits::default(),
        cairn_server::RateConfig::default(),
        Some(&kek),
    )
    .await;
    let device = send_known_file(&app).await;

    // The server, with the KEK: the event in full, its hashes keyed for this tenant.
    let admin = app.admin("acme");
    let r = app
        .call("GET", "/v1/tenants/acme/events", Some(&admin), None)
        .await
        .json();
    let event = &r["events"][0];
    assert_eq!(event["file"]["path"], KNOWN_PATH);
    let hashes = event["file"]["hashes"].as_array().unwrap();
    let keyed = hex::encode(
        app.services
            .ring
            .tenant_hash("acme", "sha256", &KNOWN_SHA256),
    );
    assert_eq!(hashes[0]["value"], keyed.as_str());
    assert_eq!(
        hashes[0]["algorithm"],
        cairn_events::ocsf::TENANT_KEYED_SHA256
    );
    let shown: String = event.to_string();
    for plain in [hex::encode(KNOWN_SHA256), hex::encode(KNOWN_BLAKE3)] {
        assert!(
            !shown.contains(&plain),
            "a plain digest is exported: {shown}"
        );
    }

    // The disk holder: every secret file is sealed, and the ring does not open without the KEK.
    let root = app.data.root().to_path_buf();
    for name in ["storage-keys", "escrow.key", "token-signing.key"] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        assert!(
            cairn_server::sealed_by(&text).is_some(),
            "{name} is not sealed"
        );
    }
    assert!(kek.exists(), "init made the KEK file");
    let copy = cairn_server::DataDir::at(&root).with_backends(app.data.backends().clone());
    let e = copy.storage_ring().unwrap_err().to_string();
    assert!(e.contains("sealed by KEK"), "{e}");
    let e = copy.services().await.unwrap_err().to_string();
    assert!(e.contains("sealed by KEK"), "{e}");
    // Nothing under the data directory (database included, on the embedded default) holds the
    // path, the file name, or either digest, raw or in hex.
    let name = KNOWN_PATH.rsplit('/').next().unwrap();
    let (sha_hex, b3_hex) = (hex::encode(KNOWN_SHA256), hex::encode(KNOWN_BLAKE3));
    let needles: [&[u8]; 6] = [
        KNOWN_PATH.as_bytes(),
        name.as_bytes(),
        &KNOWN_SHA256,
        &KNOWN_BLAKE3,
        sha_hex.as_bytes(),
        b3_hex.as_bytes(),
    ];
    let found = holds_any(&root, &needles);
    assert!(found.is_empty(), "{found:?}");
    // What the holder does learn: the clear index columns of each event row (who, which
    // device, when, which activity), as docs/threat-model.md lists.
    let row = sqlx::query("SELECT tenant, user_id, device, activity, key_id FROM events")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    let user: String = row.try_get(1).unwrap();
    let dev: String = row.try_get(2).unwrap();
    let activity: i64 = row.try_get(3).unwrap();
    assert_eq!(
        (user.as_str(), dev.as_str(), activity),
        ("ana", device.as_str(), 1)
    );
}

/// Without a KEK the secrets are plain (the server warns), and a copy of the data directory
/// reads every event, hashes included: it can key a known digest itself. Giving the same
/// directory a KEK later seals the secret files in place; the events stay readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_kek_a_copy_reads_every_event_and_a_kek_given_later_seals_the_secrets() {
    let app = start_app().await;
    let device = send_known_file(&app).await;
    let root = app.data.root().to_path_buf();
    let read_event = |ring: &cairn_server::KeyRing, sealed: &[u8], key_id: &str| {
        // The row's AAD: tenant, user, device, batch sequence 1, index 0.
        let mut ctx = b"cairn-event-v1\0".to_vec();
        for part in ["acme", "ana", device.as_str()] {
            ctx.extend_from_slice(part.as_bytes());
            ctx.push(0);
        }
        ctx.extend_from_slice(&1u64.to_le_bytes());
        ctx.extend_from_slice(&0u64.to_le_bytes());
        v1::StoredEvent::decode(&ring.open(key_id, &ctx, sealed).unwrap()[..]).unwrap()
    };
    let row = sqlx::query("SELECT key_id, sealed FROM events")
        .fetch_one(app.services.db.pool())
        .await
        .unwrap();
    let (key_id, sealed): (String, Vec<u8>) = (row.try_get(0).unwrap(), row.try_get(1).unwrap());
    let copy = cairn_server::DataDir::at(&root);
    let ring = copy.storage_ring().unwrap();
    let stored = read_event(&ring, &sealed, &key_id);
    let file = stored.event.unwrap().file.unwrap();
    assert_eq!(file.path, KNOWN_PATH);
    assert_eq!(
        file.sha256,
        ring.tenant_hash("acme", "sha256", &KNOWN_SHA256)
    );

    // A KEK given later: the plain secret files are sealed in place on first use.
    let kek_dir = tempfile::tempdir().unwrap();
    let kek = kek_dir.path().join("cairn.kek");
    cairn_server::Kek::generate(&kek, &root).unwrap();
    let sealed_dir = cairn_server::DataDir::at(&root).with_kek_file(&kek);
    let ring = sealed_dir.storage_ring().unwrap();
    sealed_dir.signing_key().unwrap();
    sealed_dir.escrow_identity().unwrap();
    for name in ["storage-keys", "escrow.key", "token-signing.key"] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        assert!(cairn_server::sealed_by(&text).is_some(), "{name}");
    }
    assert_eq!(
        read_event(&ring, &sealed, &key_id)
            .event
            .unwrap()
            .file
            .unwrap()
            .path,
        KNOWN_PATH
    );
    assert!(
        copy.storage_ring().is_err(),
        "the plain copy's reader still opens the ring"
    );
    // A rotation keeps the ring sealed and the old key.
    assert_eq!(sealed_dir.rotate_storage_key().unwrap(), "k2");
    let text = std::fs::read_to_string(root.join("storage-keys")).unwrap();
    assert!(cairn_server::sealed_by(&text).is_some());
    let ring = sealed_dir.storage_ring().unwrap();
    assert_eq!(ring.len(), 2);
    assert_eq!(
        read_event(&ring, &sealed, &key_id)
            .event
            .unwrap()
            .file
            .unwrap()
            .path,
        KNOWN_PATH
    );
}
