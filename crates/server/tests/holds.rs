//! Legal holds (issue 28 item 3; `docs/design/0009-retention-and-prune.md` §7): an admin
//! places a hold on a user or one device; while it is in place the retention plan keeps every
//! snapshot it covers, whatever the policy; placing and lifting are audited; only admins may.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cairn_server::RetentionPolicy;
use cairn_token::{Capability, ManualClock, Role, Timestamp};
use common::{App, seed, start_app, tid, uid};

/// Keeps the newest snapshot and nothing else (written as in effect, as if its delay were over).
const LAST_ONE: RetentionPolicy = RetentionPolicy {
    keep_last: 1,
    keep_hourly: 0,
    keep_daily: 0,
    keep_weekly: 0,
    keep_monthly: 0,
    keep_yearly: 0,
    keep_within_days: 0,
};

const PLAN: &str = "/v1/tenants/acme/users/ana/retention/plan";
const HOLDS: &str = "/v1/tenants/acme/holds";

/// Ana has a laptop and a desktop, each with five snapshots a day apart, long ago.
async fn ana_with_two_devices(app: &App) -> (String, String) {
    seed(app, "acme", 1 << 30, &["ana", "bo"]).await;
    let (laptop, _, _) = common::enroll(app, "acme", "ana").await;
    let (desktop, _, _) = common::enroll(app, "acme", "ana").await;
    let (t, u) = (tid("acme"), uid("ana"));
    let clock = std::sync::Arc::new(ManualClock::new(
        Timestamp::from_unix(1_700_000_000).unwrap(),
    ));
    let db = app.services.db.clone().with_clock(clock.clone());
    for (n, device) in [&laptop, &desktop].into_iter().enumerate() {
        for i in 0..5 {
            clock.advance(86_400);
            let id = format!("{:064x}", n * 10 + i);
            db.record_snapshot(&t, &u, &id, Some(&device.parse().unwrap()), 10)
                .await
                .unwrap();
        }
    }
    app.services
        .db
        .set_retention(&t, Some(&u), &(LAST_ONE, None))
        .await
        .unwrap();
    (laptop, desktop)
}

async fn forgotten(app: &App, device: &str) -> usize {
    let plan = app
        .call("GET", PLAN, Some(&app.admin("acme")), None)
        .await
        .json();
    let series = plan["series"].as_array().unwrap();
    let s = series.iter().find(|s| s["device"] == device).unwrap();
    s["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["keep"] == false)
        .count()
}

async fn place(app: &App, token: &str, body: serde_json::Value) -> common::Reply {
    app.call(
        "POST",
        HOLDS,
        Some(token),
        Some(body.to_string().into_bytes()),
    )
    .await
}

/// A hold on the user keeps everything of every device, with the reason `hold`; lifting it
/// gives the policy back its say; both are audited and listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_hold_keeps_every_snapshot_until_it_is_lifted() {
    let app = start_app().await;
    let (laptop, desktop) = ana_with_two_devices(&app).await;
    let admin = app.admin("acme");
    assert_eq!(forgotten(&app, &laptop).await, 4);
    assert_eq!(forgotten(&app, &desktop).await, 4);

    let r = place(
        &app,
        &admin,
        serde_json::json!({"user": "ana", "reason": "matter 2026-114: departure review"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let hold = r.json();
    let id = hold["id"].as_str().unwrap().to_owned();
    assert_eq!(hold["user"], "ana");
    assert!(hold["device"].is_null());
    assert!(hold["lifted_unix"].is_null());
    assert_eq!(forgotten(&app, &laptop).await, 0);
    assert_eq!(forgotten(&app, &desktop).await, 0);
    let plan = app.call("GET", PLAN, Some(&admin), None).await.json();
    assert_eq!(plan["holds"][0]["id"], id.as_str());
    assert_eq!(plan["forgotten"], 0);
    let last = plan["series"][0]["snapshots"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["reasons"], serde_json::json!(["hold"]));

    let lift = format!("{HOLDS}/{id}/lift");
    let r = app.call("POST", &lift, Some(&admin), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["lifted_unix"].is_i64());
    assert_eq!(forgotten(&app, &laptop).await, 4);
    // Lifted once; an unknown or malformed id is not found.
    assert_eq!(
        app.call("POST", &lift, Some(&admin), None).await.status,
        409
    );
    let unknown = format!("{HOLDS}/{}/lift", "0".repeat(32));
    assert_eq!(
        app.call("POST", &unknown, Some(&admin), None).await.status,
        404
    );
    let bad = format!("{HOLDS}/not-hex/lift");
    assert_eq!(app.call("POST", &bad, Some(&admin), None).await.status, 404);

    // The list keeps the lifted hold, and the audit log both steps.
    let list = app.call("GET", HOLDS, Some(&admin), None).await.json();
    assert_eq!(list["holds"].as_array().unwrap().len(), 1);
    assert!(list["holds"][0]["lifted_by"].is_string());
    let log = app.services.db.audit_log(&tid("acme")).await.unwrap();
    let actions: Vec<&str> = log
        .iter()
        .filter(|e| e.1.starts_with("hold."))
        .map(|e| e.1.as_str())
        .collect();
    assert_eq!(actions, ["hold.place", "hold.lift"]);
    assert!(
        log.iter()
            .any(|e| e.1 == "hold.place" && e.3.contains("matter 2026-114"))
    );
}

/// A hold on one device keeps that device's snapshots only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_hold_covers_that_device_only() {
    let app = start_app().await;
    let (laptop, desktop) = ana_with_two_devices(&app).await;
    let admin = app.admin("acme");
    let r = place(
        &app,
        &admin,
        serde_json::json!({"user": "ana", "device": laptop, "reason": "lost laptop"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.json()["device"], laptop.as_str());
    assert_eq!(forgotten(&app, &laptop).await, 0);
    assert_eq!(forgotten(&app, &desktop).await, 4);
}

/// Only admins place, list and lift holds; a hold needs a reason, a user of the tenant, and a
/// device of that user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_are_for_admins_and_need_a_reason_and_a_real_target() {
    let app = start_app().await;
    let (laptop, _) = ana_with_two_devices(&app).await;
    let (bo_laptop, bo_token, _) = common::enroll(&app, "acme", "bo").await;
    let admin = app.admin("acme");
    let ana = app.token("acme", "ana", None, Role::User, &[Capability::BackupList]);
    let body = serde_json::json!({"user": "ana", "reason": "x"});
    for token in [&ana, &bo_token] {
        assert_eq!(place(&app, token, body.clone()).await.status, 403);
        assert_eq!(app.call("GET", HOLDS, Some(token), None).await.status, 403);
    }
    for (body, why) in [
        (serde_json::json!({"user": "ana", "reason": "  "}), "reason"),
        (
            serde_json::json!({"user": "ana", "reason": "a\u{7}b"}),
            "control",
        ),
        (
            serde_json::json!({"user": "ana", "reason": "x".repeat(1001)}),
            "reason",
        ),
        (
            serde_json::json!({"user": "zed", "reason": "x"}),
            "no such user",
        ),
        (
            serde_json::json!({"user": "Not An Id", "reason": "x"}),
            "no such user",
        ),
        (
            serde_json::json!({"user": "ana", "device": bo_laptop, "reason": "x"}),
            "device",
        ),
        (
            serde_json::json!({"user": "ana", "device": "nothex", "reason": "x"}),
            "device",
        ),
    ] {
        let r = place(&app, &admin, body.clone()).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        assert!(r.text().contains(why), "{body}: {}", r.text());
    }
    let r = place(&app, &admin, serde_json::json!({"user": "ana", "why": "x"})).await;
    assert_eq!(r.status, 400);
    // Nothing was placed by any of that.
    let list = app.call("GET", HOLDS, Some(&admin), None).await.json();
    assert!(list["holds"].as_array().unwrap().is_empty());
    assert_eq!(forgotten(&app, &laptop).await, 4);
}
