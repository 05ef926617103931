//! Retention policies through the API (issue 28, item 1; `docs/design/0009-retention-and-prune.md`
//! §5): defaults, the operator's floor, per-user overrides, who may read and change them, and
//! the delay on a change that keeps less. Prune, which applies them, is tested in `tests/prune.rs`.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use cairn_server::{RetentionPolicy, SHORTENING_DELAY_SECS};
use cairn_token::{Capability, Role};
use common::{App, Reply, seed, start_app, tid};

fn json(policy: &RetentionPolicy) -> Vec<u8> {
    serde_json::to_vec(policy).unwrap()
}

async fn put(app: &App, path: &str, token: &str, body: Vec<u8>) -> Reply {
    app.call("PUT", path, Some(token), Some(body)).await
}

fn policy_of(view: &serde_json::Value) -> RetentionPolicy {
    serde_json::from_value(view["policy"].clone()).unwrap()
}

fn now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

const TENANT: &str = "/v1/tenants/acme/retention";
const ANA: &str = "/v1/tenants/acme/users/ana/retention";

/// Nothing written: the defaults, with the floor. Keeping more takes effect at once; keeping
/// less under any rule waits the delay, the policy in effect unchanged meanwhile; both audited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_policy_keeps_more_at_once_and_less_only_after_the_delay() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    let admin = app.admin("acme");
    let view = app.call("GET", TENANT, Some(&admin), None).await.json();
    assert_eq!(view["source"], "default");
    assert_eq!(policy_of(&view), RetentionPolicy::DEFAULT);
    assert_eq!(view["floor"]["keep_within_days"], 7);
    assert!(view["pending"].is_null());

    let longer = RetentionPolicy {
        keep_daily: 365,
        ..RetentionPolicy::DEFAULT
    };
    let r = put(&app, TENANT, &admin, json(&longer)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let view = app.call("GET", TENANT, Some(&admin), None).await.json();
    assert_eq!(
        (view["source"].as_str(), policy_of(&view)),
        (Some("tenant"), longer)
    );

    let shorter = RetentionPolicy {
        keep_weekly: 4,
        ..longer
    };
    let before = now();
    let r = put(&app, TENANT, &admin, json(&shorter)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let view = app.call("GET", TENANT, Some(&admin), None).await.json();
    assert_eq!(policy_of(&view), longer, "a shortening took effect at once");
    let pending: RetentionPolicy = serde_json::from_value(view["pending"].clone()).unwrap();
    assert_eq!(pending, shorter);
    let from = view["pending_from_unix"].as_i64().unwrap();
    assert!(
        (before + SHORTENING_DELAY_SECS..=now() + SHORTENING_DELAY_SECS).contains(&from),
        "{from}"
    );
    let log = app.services.db.audit_log(&tid("acme")).await.unwrap();
    let outcomes: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|(_, a, t, o)| (a.as_str(), t.as_str(), o.as_str()))
        .collect();
    assert_eq!(outcomes[0], ("retention.set", "tenant", "ok: in effect"));
    assert_eq!(
        outcomes[1],
        (
            "retention.set",
            "tenant",
            format!("ok: keeps less, in effect from {from}").as_str()
        )
    );
}

/// Below the floor, past the maximum, a missing rule or an unknown field: refused, nothing
/// written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_below_the_floor_or_malformed_are_refused() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    let admin = app.admin("acme");
    let low = RetentionPolicy {
        keep_within_days: 1,
        ..RetentionPolicy::DEFAULT
    };
    let r = put(&app, TENANT, &admin, json(&low)).await;
    assert_eq!(r.status, 422);
    assert!(r.text().contains("keep_within_days"), "{}", r.text());
    let none_kept = RetentionPolicy {
        keep_last: 0,
        ..RetentionPolicy::DEFAULT
    };
    assert_eq!(
        put(&app, TENANT, &admin, json(&none_kept)).await.status,
        422
    );
    let huge = RetentionPolicy {
        keep_yearly: 40_000,
        ..RetentionPolicy::DEFAULT
    };
    assert_eq!(put(&app, TENANT, &admin, json(&huge)).await.status, 422);
    let mut extra = serde_json::to_value(RetentionPolicy::DEFAULT).unwrap();
    extra["keep_forever"] = serde_json::json!(true);
    let r = put(&app, TENANT, &admin, extra.to_string().into_bytes()).await;
    assert_eq!(r.status, 400);
    let missing = serde_json::json!({"keep_last": 3}).to_string().into_bytes();
    assert_eq!(put(&app, TENANT, &admin, missing).await.status, 400);
    let view = app.call("GET", TENANT, Some(&admin), None).await.json();
    assert_eq!(view["source"], "default");
    assert!(
        app.services
            .db
            .audit_log(&tid("acme"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// A user follows the tenant's policy until an admin gives them an override; they may read
/// their own, not another's, and change none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_reads_their_own_policy_and_only_admins_override_it() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    let admin = app.admin("acme");
    let ana = app.token("acme", "ana", None, Role::User, &[Capability::BackupList]);
    let tenant_policy = RetentionPolicy {
        keep_monthly: 36,
        ..RetentionPolicy::DEFAULT
    };
    assert_eq!(
        put(&app, TENANT, &admin, json(&tenant_policy)).await.status,
        200
    );
    let view = app.call("GET", ANA, Some(&ana), None).await.json();
    assert_eq!(
        (view["source"].as_str(), policy_of(&view)),
        (Some("tenant"), tenant_policy)
    );
    // Another user's policy is as absent as a user who does not exist.
    let bo = app
        .call(
            "GET",
            "/v1/tenants/acme/users/bo/retention",
            Some(&ana),
            None,
        )
        .await;
    assert_eq!(bo.status, 404);
    // Users change nothing, their own included; nor do they read the tenant's.
    assert_eq!(put(&app, ANA, &ana, json(&tenant_policy)).await.status, 403);
    assert_eq!(
        put(&app, TENANT, &ana, json(&tenant_policy)).await.status,
        403
    );
    assert_eq!(app.call("GET", TENANT, Some(&ana), None).await.status, 403);

    let legal = RetentionPolicy {
        keep_yearly: 10,
        ..tenant_policy
    };
    let r = put(&app, ANA, &admin, json(&legal)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let view = app.call("GET", ANA, Some(&ana), None).await.json();
    assert_eq!(
        (view["source"].as_str(), policy_of(&view)),
        (Some("user"), legal)
    );
    // The tenant's policy is untouched by the override, and an unknown user has none.
    let view = app.call("GET", TENANT, Some(&admin), None).await.json();
    assert_eq!(policy_of(&view), tenant_policy);
    let nobody = put(
        &app,
        "/v1/tenants/acme/users/nobody/retention",
        &admin,
        json(&legal),
    )
    .await;
    assert_eq!(nobody.status, 404);
}

/// The preview of what the policy in effect keeps: per device, newest first, with the rules
/// that keep each snapshot, over the times the server recorded; the user's own token may read
/// it, another user's may not; asking forgets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_shows_what_the_policy_keeps_per_device() {
    use cairn_token::{ManualClock, Timestamp};
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    let (laptop, laptop_token, _) = common::enroll(&app, "acme", "ana").await;
    let (desktop, _, _) = common::enroll(&app, "acme", "ana").await;
    let admin = app.admin("acme");
    // keep_last 2 and 7 days of everything, nothing else.
    let policy = RetentionPolicy {
        keep_last: 2,
        keep_hourly: 0,
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        keep_yearly: 0,
        keep_within_days: 7,
    };
    // Through the API this keeps less, so it waits out the delay; the plan follows the policy
    // in effect, so the test writes it as if the delay were over.
    let r = put(&app, ANA, &admin, json(&policy)).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["pending"], serde_json::to_value(policy).unwrap());
    // The laptop backed up once a day for 20 days; the desktop twice, long ago. Arrival times
    // are the database's, so its clock is moved to record them.
    let clock = std::sync::Arc::new(ManualClock::new(Timestamp::from_unix(0).unwrap()));
    let db = app.services.db.clone().with_clock(clock.clone());
    let (t, u) = (tid("acme"), common::uid("ana"));
    let at = |days_ago: i64| {
        clock.set(Timestamp::from_unix(now() - days_ago * 86_400).unwrap());
    };
    for d in 0..20 {
        at(20 - d);
        let id = format!("{d:064x}");
        let device = laptop.parse().unwrap();
        db.record_snapshot(&t, &u, &id, Some(&device), 100)
            .await
            .unwrap();
    }
    for (i, days) in [(100, 300), (101, 200)] {
        at(days);
        let device = desktop.parse().unwrap();
        db.record_snapshot(&t, &u, &format!("{i:064x}"), Some(&device), 100)
            .await
            .unwrap();
    }
    let path = "/v1/tenants/acme/users/ana/retention/plan";
    // Under the default still in effect (90 daily, 3 last), everything is kept.
    let r = app.call("GET", path, Some(&laptop_token), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        (r.json()["kept"].as_u64(), r.json()["forgotten"].as_u64()),
        (Some(22), Some(0))
    );
    app.services
        .db
        .set_retention(&t, Some(&u), &(policy, None))
        .await
        .unwrap();
    let r = app.call("GET", path, Some(&laptop_token), None).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let plan = r.json();
    assert_eq!(plan["source"], "user");
    let series = plan["series"].as_array().unwrap();
    assert_eq!(series.len(), 2);
    let of = |device: &str| {
        series
            .iter()
            .find(|s| s["device"] == device)
            .unwrap()
            .clone()
    };
    let laptop_plan = of(&laptop);
    let snaps = laptop_plan["snapshots"].as_array().unwrap();
    assert_eq!(snaps.len(), 20);
    // Newest first: 1..=6 days ago are within 7 days (the 7-day-old one is not), and the newest
    // two are kept by keep_last as well.
    let kept: Vec<bool> = snaps.iter().map(|s| s["keep"].as_bool().unwrap()).collect();
    assert_eq!(kept.iter().filter(|&&k| k).count(), 6, "{snaps:#?}");
    assert!(kept[..6].iter().all(|&k| k) && kept[6..].iter().all(|&k| !k));
    assert_eq!(snaps[0]["id"], format!("{:064x}", 19));
    assert_eq!(
        snaps[0]["reasons"],
        serde_json::json!(["newest", "keep_last", "keep_within_days"])
    );
    // The desktop's two old snapshots are both kept by keep_last, whatever their age.
    let desktop_plan = of(&desktop);
    let old = desktop_plan["snapshots"].as_array().unwrap();
    assert!(old.iter().all(|s| s["keep"] == true), "{old:#?}");
    assert_eq!(
        (plan["kept"].as_u64(), plan["forgotten"].as_u64()),
        (Some(8), Some(14))
    );
    // Asking forgets nothing; bo may not ask about ana.
    let again = app.call("GET", path, Some(&admin), None).await.json();
    assert_eq!(again["forgotten"], 14);
    assert_eq!(
        app.services.db.snapshot_rows(&t, &u).await.unwrap().len(),
        22
    );
    let bo = app.token("acme", "bo", None, Role::User, &[Capability::BackupList]);
    let r = app.call("GET", path, Some(&bo), None).await;
    assert!(r.status == 403 || r.status == 404, "{}", r.status);
}

/// The operator's floor (`server retention floor`) is in the database, so every instance and
/// every request follows it: raising it raises every policy below it at once (what the API
/// shows and what the plan applies), a policy below it is refused naming the rule, and the
/// view shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raised_floor_raises_every_policy_below_it() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana"]).await;
    let admin = app.admin("acme");
    let thin = RetentionPolicy {
        keep_daily: 0,
        keep_weekly: 0,
        keep_monthly: 0,
        keep_yearly: 0,
        keep_within_days: 7,
        ..RetentionPolicy::DEFAULT
    };
    // As if written long ago (a shortening through the API would wait its delay).
    let (t, u) = (tid("acme"), common::uid("ana"));
    app.services
        .db
        .set_retention(&t, Some(&u), &(thin, None))
        .await
        .unwrap();
    let floor = RetentionPolicy {
        keep_within_days: 14,
        keep_daily: 30,
        ..RetentionPolicy::FLOOR
    };
    app.services.db.set_retention_floor(&floor).await.unwrap();
    let view = app.call("GET", ANA, Some(&admin), None).await.json();
    assert_eq!(
        policy_of(&view),
        RetentionPolicy {
            keep_within_days: 14,
            keep_daily: 30,
            ..thin
        }
    );
    assert_eq!(view["floor"]["keep_daily"], 30);
    let plan = app
        .call("GET", &format!("{ANA}/plan"), Some(&admin), None)
        .await
        .json();
    assert_eq!(plan["policy"]["keep_within_days"], 14);
    let r = put(&app, ANA, &admin, json(&thin)).await;
    assert_eq!(r.status, 422, "{}", r.text());
    assert!(r.text().contains("keep_within_days") || r.text().contains("keep_daily"));
    assert_eq!(app.services.db.retention_floor().await.unwrap(), floor);
}
