//! User and token lifecycle (issue 28, item 4): suspending, resuming and removing a user, and
//! revoking one token by its id, over real TLS, with a real enrolled device.

// Test code: a panic here is a test failure with a message, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use cairn_server::{REVOCATION_REFRESH, SystemClock, UserState};
use cairn_token::{Capabilities, Capability, Clock, Role, TenantId, TokenId, TokenRequest, UserId};
use common::{App, Reply, enroll, seed, start_app, tid, uid};

/// The device's refresh with its secret.
async fn refresh(app: &App, device: &str, secret: &str) -> Reply {
    let resp = app
        .http
        .post(app.url(&format!("/v1/tenants/acme/devices/{device}/token")))
        .header("authorization", format!("Device {secret}"))
        .send()
        .await
        .unwrap();
    Reply {
        status: resp.status().as_u16(),
        body: resp.bytes().await.unwrap().to_vec(),
    }
}

async fn whoami(app: &App, token: &str) -> u16 {
    app.call("GET", "/v1/tenants/acme/whoami", Some(token), None)
        .await
        .status
}

async fn admin_call(app: &App, method: &str, path: &str) -> u16 {
    app.call(method, path, Some(&app.admin("acme")), None)
        .await
        .status
}

async fn state_of(app: &App, user: &str) -> UserState {
    app.services
        .db
        .user(&tid("acme"), &uid(user))
        .await
        .unwrap()
        .unwrap()
        .state
}

async fn actions(app: &App) -> Vec<String> {
    let log = app.services.db.audit_log(&tid("acme")).await.unwrap();
    log.into_iter().map(|(_, action, _, _)| action).collect()
}

/// Suspension refuses every token of the user at once (their own and their device's) and
/// their device's refresh; resuming gives all of it back. The user list shows the state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_user_is_refused_at_once_and_resumed() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    let (device, device_token, secret) = enroll(&app, "acme", "ana").await;
    let ana = app.token("acme", "ana", None, Role::User, &[Capability::BackupList]);
    let bo = app.token("acme", "bo", None, Role::User, &[Capability::BackupList]);
    assert_eq!(whoami(&app, &ana).await, 200);
    assert_eq!(whoami(&app, &device_token).await, 200);

    assert_eq!(
        admin_call(&app, "POST", "/v1/tenants/acme/users/ana/suspend").await,
        204
    );
    assert_eq!(whoami(&app, &ana).await, 401);
    assert_eq!(whoami(&app, &device_token).await, 401);
    assert_eq!(refresh(&app, &device, &secret).await.status, 401);
    // Nobody else is touched.
    assert_eq!(whoami(&app, &bo).await, 200);
    assert_eq!(state_of(&app, "ana").await, UserState::Suspended);
    let list = app
        .call(
            "GET",
            "/v1/tenants/acme/users",
            Some(&app.admin("acme")),
            None,
        )
        .await
        .json();
    let ana_row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == "ana")
        .unwrap();
    assert_eq!(ana_row["state"], "suspended");
    // Suspending twice is no error.
    assert_eq!(
        admin_call(&app, "POST", "/v1/tenants/acme/users/ana/suspend").await,
        204
    );

    assert_eq!(
        admin_call(&app, "POST", "/v1/tenants/acme/users/ana/resume").await,
        204
    );
    assert_eq!(whoami(&app, &ana).await, 200);
    assert_eq!(whoami(&app, &device_token).await, 200);
    let r = refresh(&app, &device, &secret).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(state_of(&app, "ana").await, UserState::Active);
    assert_eq!(
        actions(&app).await,
        [
            "device.add",
            "device.enroll",
            "user.suspend",
            "user.suspend",
            "user.resume"
        ]
    );
}

/// Removal is final: the user's tokens are refused, their devices are deauthorized (told to
/// remove their keys), and neither resuming nor adding the user again undoes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_user_loses_their_devices_for_good() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    let (device, device_token, secret) = enroll(&app, "acme", "ana").await;
    let ana = app.token("acme", "ana", None, Role::User, &[Capability::BackupList]);

    assert_eq!(
        admin_call(&app, "DELETE", "/v1/tenants/acme/users/ana").await,
        204
    );
    assert_eq!(whoami(&app, &ana).await, 401);
    let r = app
        .call("GET", "/v1/tenants/acme/whoami", Some(&device_token), None)
        .await;
    assert_eq!(
        (r.status, r.text().as_str()),
        (410, "device deauthorized\n")
    );
    assert_eq!(refresh(&app, &device, &secret).await.status, 410);
    assert_eq!(state_of(&app, "ana").await, UserState::Removed);
    let row = app
        .services
        .db
        .device(&tid("acme"), &cairn_token::DeviceId::new(&device).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.state, cairn_server::DeviceState::Deauthorized);

    assert_eq!(
        admin_call(&app, "POST", "/v1/tenants/acme/users/ana/resume").await,
        409
    );
    assert_eq!(
        admin_call(&app, "POST", "/v1/tenants/acme/users/ana/suspend").await,
        409
    );
    let again = serde_json::json!({"id": "ana", "role": "user"}).to_string();
    let r = app
        .call(
            "POST",
            "/v1/tenants/acme/users",
            Some(&app.admin("acme")),
            Some(again.into()),
        )
        .await;
    assert_eq!(r.status, 409);
    assert_eq!(whoami(&app, &ana).await, 401);
    assert_eq!(
        actions(&app).await,
        [
            "device.add",
            "device.enroll",
            "device.deauthorize",
            "user.remove"
        ]
    );
}

/// One token is revoked by its id; another token of the same user keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_revoked_by_its_id() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    let issue = |id: &str| {
        let request = TokenRequest {
            subject: UserId::new("ana").unwrap(),
            tenant: TenantId::new("acme").unwrap(),
            device: None,
            role: Role::User,
            capabilities: Capabilities::of(&[Capability::BackupList]),
            lifetime_secs: 600,
        };
        app.services
            .issuer
            .issue_with_id(&request, SystemClock.now(), TokenId::new(id).unwrap())
            .unwrap()
            .expose()
            .to_owned()
    };
    let first = issue("first-token-0123456789");
    let second = issue("second-token-0123456789");
    assert_eq!(whoami(&app, &first).await, 200);
    assert_eq!(
        admin_call(
            &app,
            "POST",
            "/v1/tenants/acme/tokens/first-token-0123456789/revoke"
        )
        .await,
        204
    );
    assert_eq!(whoami(&app, &first).await, 401);
    assert_eq!(whoami(&app, &second).await, 200);
    assert_eq!(
        admin_call(&app, "POST", "/v1/tenants/acme/tokens/short/revoke").await,
        400
    );
    assert_eq!(actions(&app).await, ["token.revoke"]);
}

/// Only the tenant's admins may do any of it, never on themselves, never in another tenant.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_tenants_admins_suspend_remove_and_revoke() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    assert!(
        app.services
            .db
            .add_tenant(&tid("globex"), 1 << 30)
            .await
            .unwrap()
    );
    let ana = app.token(
        "acme",
        "ana",
        None,
        Role::User,
        &[Capability::BackupList, Capability::EventsRead],
    );
    let globex = app.admin("globex");
    let root = app.admin("acme");
    for (method, path) in [
        ("POST", "/v1/tenants/acme/users/bo/suspend"),
        ("POST", "/v1/tenants/acme/users/bo/resume"),
        ("DELETE", "/v1/tenants/acme/users/bo"),
        (
            "POST",
            "/v1/tenants/acme/tokens/first-token-0123456789/revoke",
        ),
    ] {
        let as_user = app.call(method, path, Some(&ana), None).await.status;
        assert_eq!(as_user, 403, "{method} {path}");
        let as_other = app.call(method, path, Some(&globex), None).await.status;
        assert_eq!(as_other, 401, "{method} {path}");
    }
    assert_eq!(state_of(&app, "bo").await, UserState::Active);
    // The admin's own account (user `root`, which the admin token names).
    assert!(
        app.services
            .db
            .add_user(&tid("acme"), &uid("root"), Role::Admin)
            .await
            .unwrap()
    );
    for (method, path) in [
        ("POST", "/v1/tenants/acme/users/root/suspend"),
        ("DELETE", "/v1/tenants/acme/users/root"),
    ] {
        let r = app.call(method, path, Some(&root), None).await.status;
        assert_eq!(r, 409, "{method} {path}");
    }
    assert_eq!(
        admin_call(&app, "POST", "/v1/tenants/acme/users/nobody/suspend").await,
        404
    );
    assert!(actions(&app).await.is_empty());
}

/// A suspension written to the database by someone else (another instance, or `server user
/// suspend` on the host) reaches a running server within the revocation refresh, and so does
/// the resumption.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspension_made_elsewhere_reaches_a_running_server() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana", "bo"]).await;
    let ana = app.token("acme", "ana", None, Role::User, &[Capability::BackupList]);
    assert_eq!(whoami(&app, &ana).await, 200);
    let db = &app.services.db;
    let until = |want: u16| {
        let ana = ana.clone();
        let app = &app;
        async move {
            // Several refresh periods: the condition, not the time, ends the wait.
            tokio::time::timeout(REVOCATION_REFRESH * 10, async {
                while whoami(app, &ana).await != want {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .is_ok()
        }
    };
    db.set_user_suspended(&tid("acme"), &uid("ana"), true)
        .await
        .unwrap();
    assert!(until(401).await, "the suspension never reached the server");
    db.set_user_suspended(&tid("acme"), &uid("ana"), false)
        .await
        .unwrap();
    assert!(until(200).await, "the resumption never reached the server");
}

/// Tokens are recorded as issued (id, whose, what for, until when; never the token): an admin
/// lists them, revokes one by the id the list gives, and the list says it is revoked. Only
/// admins may list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_lists_issued_tokens_and_revokes_one_from_the_list() {
    let app = start_app().await;
    seed(&app, "acme", 1 << 30, &["ana"]).await;
    let (device, access, secret) = enroll(&app, "acme", "ana").await;
    assert_eq!(refresh(&app, &device, &secret).await.status, 200);
    let admin = app.admin("acme");
    let list = app
        .call("GET", "/v1/tenants/acme/tokens", Some(&admin), None)
        .await;
    assert_eq!(list.status, 200, "{}", list.text());
    let tokens = list.json()["tokens"].as_array().unwrap().clone();
    let mut purposes: Vec<&str> = tokens
        .iter()
        .map(|t| t["purpose"].as_str().unwrap())
        .collect();
    purposes.sort_unstable();
    // The enrollment token, the token the enrollment gave, the refresh's (all in one second
    // here, so in no particular order).
    assert_eq!(purposes, ["device", "enrollment", "refresh"], "{tokens:#?}");
    let of = |tokens: &[serde_json::Value], purpose: &str| {
        tokens
            .iter()
            .find(|t| t["purpose"] == purpose)
            .unwrap()
            .clone()
    };
    assert!(
        tokens
            .iter()
            .all(|t| t["subject"] == "ana" && t["device"] == device.as_str())
    );
    let caps = of(&tokens, "device")["capabilities"].clone();
    assert!(caps.as_str().unwrap().contains("backup:put"), "{caps}");
    assert_eq!(of(&tokens, "enrollment")["capabilities"], "");
    // The enrollment token was used, which revokes it; the others stand.
    assert_eq!(of(&tokens, "enrollment")["revoked"], true);
    assert_eq!(of(&tokens, "device")["revoked"], false);
    assert_eq!(of(&tokens, "refresh")["revoked"], false);
    // No token bytes anywhere in the answer.
    assert!(!list.text().contains("v4.public."));
    assert!(!list.text().contains(&access[10..40]));

    // Revoke the enrollment's device token by the listed id: refused at once.
    let id = of(&tokens, "device")["id"].as_str().unwrap().to_owned();
    let r = app
        .call(
            "POST",
            &format!("/v1/tenants/acme/tokens/{id}/revoke"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(whoami(&app, &access).await, 401);
    let after = app
        .call("GET", "/v1/tenants/acme/tokens", Some(&admin), None)
        .await
        .json();
    let after = after["tokens"].as_array().unwrap();
    assert_eq!(of(after, "device")["revoked"], true);
    assert_eq!(of(after, "refresh")["revoked"], false);

    // A device's token may not list.
    let fresh = refresh(&app, &device, &secret).await.json()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = app
        .call("GET", "/v1/tenants/acme/tokens", Some(&fresh), None)
        .await;
    assert_eq!(r.status, 403);
}
