//! A tenant's people and accounts: health, `whoami`, quota, audit log, users (added, suspended,
//! resumed, removed), token revocation, and users' archives' view.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_token::Capability::BackupList;
use cairn_token::{Role, TokenId, UserId, VerifiedToken};

use super::state::{
    ApiError, Services, Svc, Token, actor, admin_scope, blocking, tenant_of, user_scope,
};
use crate::db::UserState;

pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// Who the token says the caller is: lets an agent check its credentials.
pub(super) async fn whoami(Extension(token): Token) -> String {
    let c = token.claims();
    format!(
        "tenant={} user={} device={} role={}\n",
        c.tenant.as_str(),
        c.subject.as_str(),
        c.device.as_ref().map_or("-", |d| d.as_str()),
        c.role.as_str()
    )
}

pub(super) async fn quota(
    Extension(token): Token,
    Extension(svc): Svc,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let q = svc
        .db
        .quota(tenant_of(&token))
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(axum::Json(q).into_response())
}

pub(super) async fn audit_log(
    Extension(token): Token,
    Extension(svc): Svc,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let log = svc.db.audit_entries(tenant_of(&token)).await?;
    Ok(axum::Json(log).into_response())
}

/// A user's archive as the console shows it: its size, and each snapshot record with when it
/// arrived and from which device (the server cannot read snapshots).
#[derive(serde::Serialize)]
pub(super) struct ArchiveView {
    user: String,
    stored_bytes: i64,
    /// `healthy`, or `damaged` once an opening found acknowledged data missing
    /// (`Archives::check_witness`), with `damage` saying what and since when.
    health: &'static str,
    damage: Option<crate::db::Damage>,
    snapshots: Vec<crate::db::SnapshotRow>,
}

pub(super) async fn user_archive(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, BackupList).await?;
    let tenant = tenant_of(&token).clone();
    let s = Arc::clone(&svc);
    let (t, u) = (tenant.clone(), user.clone());
    let ids = blocking(move || s.archives.snapshots(&t, &u)).await?;
    let mut known: HashMap<String, crate::db::SnapshotRow> = svc
        .db
        .snapshot_rows(&tenant, &user)
        .await?
        .into_iter()
        .map(|r| (r.id.clone(), r))
        .collect();
    // The archive is the truth; the table adds what was seen of each record's arrival
    // (records stored before it existed have none).
    let mut snapshots: Vec<crate::db::SnapshotRow> = ids
        .iter()
        .map(|id| {
            let id = hex::encode(id.as_bytes());
            known.remove(&id).unwrap_or(crate::db::SnapshotRow {
                id,
                device: None,
                bytes: 0,
                received_unix: 0,
                forgotten_unix: None,
                received_seq: 0,
            })
        })
        .collect();
    snapshots.sort_by(|a, b| {
        (a.received_unix, a.received_seq, &a.id).cmp(&(b.received_unix, b.received_seq, &b.id))
    });
    // Read after the archive was opened above: an opening that found damage has marked it.
    let damage = svc.db.damage(&tenant, &user).await?;
    Ok(axum::Json(ArchiveView {
        health: if damage.is_some() {
            "damaged"
        } else {
            "healthy"
        },
        damage,
        user: user.as_str().to_owned(),
        stored_bytes: svc.db.stored_bytes(&tenant, &user).await?.unwrap_or(0),
        snapshots,
    })
    .into_response())
}

pub(super) async fn list_users(
    Extension(token): Token,
    Extension(svc): Svc,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let users = svc.db.users(tenant_of(&token)).await?;
    Ok(axum::Json(users).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewUser {
    id: String,
    role: String,
}

pub(super) async fn add_user(
    Extension(token): Token,
    Extension(svc): Svc,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let new: NewUser = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest)?;
    let user = UserId::new(&new.id).map_err(|_| ApiError::BadRequest)?;
    let role = Role::parse(&new.role).ok_or(ApiError::BadRequest)?;
    let tenant = tenant_of(&token);
    if !svc.db.add_user(tenant, &user, role).await? {
        return Err(ApiError::Conflict);
    }
    svc.db
        .audit(tenant, &actor(&token), "user.add", user.as_str(), "ok")
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

/// Suspends a user: every token of theirs, their devices' included, is refused at once on this
/// instance and within [`super::REVOCATION_REFRESH`] on the others, and their devices cannot
/// refresh. Undone by [`resume_user`]. An admin cannot suspend themselves.
pub(super) async fn suspend_user(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_suspended(&token, &svc, &user, true).await
}

/// Resumes a suspended user: their tokens are accepted again (a removed user stays removed).
pub(super) async fn resume_user(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    set_suspended(&token, &svc, &user, false).await
}

async fn set_suspended(
    token: &VerifiedToken,
    svc: &Services,
    user: &str,
    suspend: bool,
) -> Result<Response, ApiError> {
    admin_scope(token)?;
    let user = UserId::new(user).map_err(|_| ApiError::NotFound)?;
    let tenant = tenant_of(token);
    if suspend && user == token.claims().subject {
        return Err(ApiError::Conflict);
    }
    match svc.db.set_user_suspended(tenant, &user, suspend).await? {
        None => Err(ApiError::NotFound),
        Some(UserState::Removed) => Err(ApiError::Conflict),
        Some(_) => {
            svc.revoked.set_user_inactive(tenant, &user, suspend);
            let action = if suspend {
                "user.suspend"
            } else {
                "user.resume"
            };
            svc.db
                .audit(tenant, &actor(token), action, user.as_str(), "ok")
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}

/// Removes a user for good: their tokens are refused as a suspended user's are, and every
/// device of theirs is deauthorized (its next call is told to remove its key). The archive
/// stays. An admin cannot remove themselves.
pub(super) async fn remove_user(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let user = UserId::new(&user).map_err(|_| ApiError::NotFound)?;
    let tenant = tenant_of(&token);
    if user == token.claims().subject {
        return Err(ApiError::Conflict);
    }
    let Some(devices) = svc.db.remove_user(tenant, &user).await? else {
        return Err(ApiError::NotFound);
    };
    svc.revoked.set_user_inactive(tenant, &user, true);
    let actor = actor(&token);
    for device in &devices {
        svc.revoked.deauthorize(tenant, device);
        svc.db
            .audit(
                tenant,
                &actor,
                "device.deauthorize",
                device.as_str(),
                "ok: its user was removed",
            )
            .await?;
    }
    svc.db
        .audit(tenant, &actor, "user.remove", user.as_str(), "ok")
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Revokes one token by its id (`jti`), whatever its kind: at once on this instance, within
/// [`super::REVOCATION_REFRESH`] on the others.
/// The tenant's tokens that have not expired (id, whose, what for, until when, revoked), newest
/// first: what an admin picks from to revoke. Never the tokens themselves.
pub(super) async fn list_tokens(
    Extension(token): Token,
    Extension(svc): Svc,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let tokens = svc.db.issued_tokens(tenant_of(&token)).await?;
    Ok(axum::Json(serde_json::json!({ "tokens": tokens })).into_response())
}

pub(super) async fn revoke_token(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, jti)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let jti = TokenId::new(&jti).map_err(|_| ApiError::BadRequest)?;
    let tenant = tenant_of(&token);
    svc.db.revoke_token(tenant, &jti).await?;
    svc.revoked.revoke_token(tenant, &jti);
    svc.db
        .audit(tenant, &actor(&token), "token.revoke", jti.as_str(), "ok")
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
