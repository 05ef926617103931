//! Legal holds (`docs/design/0009-retention-and-prune.md` §7): a tenant's admins place a hold on
//! a user (every device) or on one device, and lift it; both are audited. While a hold is in
//! place, none of the snapshots it covers is forgotten whatever the policy says (the retention
//! plan shows them kept, for the reason `hold`).

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_token::{DeviceId, UserId};

use super::state::{ApiError, Svc, Token, actor, admin_scope, tenant_of};
use crate::db::Lifted;

/// The longest reason a hold may carry (characters).
const MAX_REASON: usize = 1000;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceHold {
    user: String,
    #[serde(default)]
    device: Option<String>,
    reason: String,
}

fn refused(why: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("refused: {why}\n"),
    )
        .into_response()
}

/// The tenant's holds, in place and lifted, newest first.
pub(super) async fn list_holds(
    Extension(token): Token,
    Extension(svc): Svc,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let holds = svc.db.holds(tenant_of(&token), None).await?;
    Ok(axum::Json(serde_json::json!({ "holds": holds })).into_response())
}

/// Places a hold on a user or one of their devices.
pub(super) async fn place_hold(
    Extension(token): Token,
    Extension(svc): Svc,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let tenant = tenant_of(&token);
    let asked: PlaceHold = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest)?;
    let reason = asked.reason.trim();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Ok(refused(&format!(
            "a hold needs a reason of 1 to {MAX_REASON} characters"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Ok(refused("the reason may not hold control characters"));
    }
    let Ok(user) = UserId::new(&asked.user) else {
        return Ok(refused("no such user"));
    };
    if svc.db.user(tenant, &user).await?.is_none() {
        return Ok(refused("no such user"));
    }
    let device = match &asked.device {
        None => None,
        Some(d) => {
            let device: Option<DeviceId> = d.parse().ok();
            let row = match &device {
                Some(id) => svc.db.device(tenant, id).await?,
                None => None,
            };
            if row.is_none_or(|r| r.user != user) {
                return Ok(refused("no such device of this user"));
            }
            device
        }
    };
    let hold = svc
        .db
        .place_hold(tenant, &user, device.as_ref(), reason, &actor(&token))
        .await?;
    svc.db
        .audit(
            tenant,
            &actor(&token),
            "hold.place",
            &hold.target(),
            &format!("ok: hold {}: {reason}", hold.id),
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(hold)).into_response())
}

/// Lifts a hold (once).
pub(super) async fn lift_hold(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let tenant = tenant_of(&token);
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::NotFound);
    }
    let (outcome, hold) = svc.db.lift_hold(tenant, &id, &actor(&token)).await?;
    match (outcome, hold) {
        (Lifted::Now, Some(hold)) => {
            svc.db
                .audit(
                    tenant,
                    &actor(&token),
                    "hold.lift",
                    &hold.target(),
                    &format!("ok: hold {id}"),
                )
                .await?;
            Ok(axum::Json(hold).into_response())
        }
        (Lifted::Already, _) => Err(ApiError::Conflict),
        _ => Err(ApiError::NotFound),
    }
}
