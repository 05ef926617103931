//! A tenant's people and accounts: health, `whoami`, quota, audit log, users and their archives' view.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_token::Capability::BackupList;
use cairn_token::{Role, UserId};

use super::state::{ApiError, Svc, Token, actor, admin_scope, blocking, tenant_of, user_scope};

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
            })
        })
        .collect();
    snapshots.sort_by(|a, b| (a.received_unix, &a.id).cmp(&(b.received_unix, &b.id)));
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
