//! Devices: registration, enrollment, refresh with the device secret, deauthorization.

use std::sync::atomic::Ordering;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_token::Capability::{BackupList, BackupPut, BackupRead, EscrowDeposit, EventsWrite};
use cairn_token::{
    Capabilities, Capability, Clock, DeviceId, Role, TenantId, TokenId, TokenRequest, UserId,
};

use super::state::{ApiError, Services, Svc, Token, actor, admin_scope, internal, tenant_of};
use crate::db::DeviceState;
use crate::db::IssuedRow;

/// Capabilities of a device's credentials (what enrollment issues).
pub const DEVICE_CAPABILITIES: &[Capability] = &[
    BackupPut,
    BackupRead,
    BackupList,
    EventsWrite,
    EscrowDeposit,
];

/// Lifetime of a device's access token; the device refreshes it with its secret.
pub const DEVICE_TOKEN_LIFETIME_SECS: i64 = 3600;

/// Lifetime of an enrollment token (the token policy's ceiling).
pub const ENROLLMENT_TOKEN_LIFETIME_SECS: i64 = cairn_token::MAX_LIFETIME_CEILING_SECS;

pub(super) async fn list_devices(
    Extension(token): Token,
    Extension(svc): Svc,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let devices = svc.db.devices(tenant_of(&token)).await?;
    Ok(axum::Json(devices).into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NewDevice {
    user: String,
    name: String,
}

#[derive(serde::Serialize)]
pub(super) struct Credentials {
    device: String,
    token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    /// At enrollment: the user the device backs up for, and the server's escrow public key
    /// (X25519, hex) that the agent wraps its archive key to in the standard mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    escrow_public_key: Option<String>,
}

pub(super) async fn issue(
    svc: &Services,
    tenant: &TenantId,
    user: UserId,
    device: DeviceId,
    caps: &[Capability],
    lifetime_secs: i64,
    purpose: &str,
) -> Result<(String, String), ApiError> {
    let request = TokenRequest {
        subject: user,
        tenant: tenant.clone(),
        device: Some(device),
        role: Role::User,
        capabilities: Capabilities::of(caps),
        lifetime_secs,
    };
    let mut jti = [0u8; 16];
    getrandom::fill(&mut jti).map_err(|e| internal("random", &e))?;
    let jti = TokenId::new(&hex::encode(jti)).map_err(|e| internal("token id", &e))?;
    let now = svc.clock.now();
    let token = svc
        .issuer
        .issue_with_id(&request, now, jti.clone())
        .map_err(|e| internal("issuing a token", &e))?;
    let id = jti.as_str().to_owned();
    svc.db
        .record_issued(tenant, &IssuedRow::of(&request, jti, now, purpose))
        .await?;
    Ok((id, token.expose().to_owned()))
}

/// Registers a device of a user and returns its enrollment token (one use, a week).
pub(super) async fn add_device(
    Extension(token): Token,
    Extension(svc): Svc,
    body: Bytes,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let new: NewDevice = serde_json::from_slice(&body).map_err(|_| ApiError::BadRequest)?;
    let user = UserId::new(&new.user).map_err(|_| ApiError::BadRequest)?;
    if new.name.is_empty() || new.name.len() > 256 || new.name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest);
    }
    let tenant = tenant_of(&token);
    if svc.db.user(tenant, &user).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| internal("random", &e))?;
    let device = DeviceId::new(&hex::encode(raw)).map_err(|e| internal("device id", &e))?;
    let (jti, enrollment) = issue(
        &svc,
        tenant,
        user.clone(),
        device.clone(),
        &[],
        ENROLLMENT_TOKEN_LIFETIME_SECS,
        "enrollment",
    )
    .await?;
    svc.db
        .add_device(tenant, &device, &user, &new.name, &jti)
        .await?;
    svc.db
        .audit(tenant, &actor(&token), "device.add", device.as_str(), "ok")
        .await?;
    let body = Credentials {
        device: device.as_str().to_owned(),
        token: enrollment,
        secret: None,
        user: None,
        escrow_public_key: None,
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

/// Turns an enrollment token into the device's credentials (once).
pub(super) async fn enroll(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, device)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    let claims = token.claims();
    let tenant = tenant_of(&token);
    // No device has a name that is not an id.
    let device = DeviceId::new(&device).map_err(|_| ApiError::NotFound)?;
    let row = svc
        .db
        .device(tenant, &device)
        .await?
        .ok_or(ApiError::NotFound)?;
    let is_enrollment_token = claims.capabilities == Capabilities::NONE
        && claims.role == Role::User
        && claims.device.as_ref() == Some(&device)
        && claims.subject == row.user
        && row.enrollment_jti.as_deref() == Some(claims.token_id.as_str());
    if !is_enrollment_token || row.state != DeviceState::Pending {
        return Err(ApiError::NotFound);
    }
    let mut secret = zeroize::Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut *secret).map_err(|e| internal("random", &e))?;
    let hash = blake3::hash(&*secret);
    if !svc
        .db
        .activate_device(tenant, &device, hash.as_bytes())
        .await?
    {
        // Another enrollment won the race.
        return Err(ApiError::NotFound);
    }
    svc.db
        .touch_device(tenant, &device, agent_version(&headers).as_deref())
        .await?;
    svc.db.revoke_token(tenant, &claims.token_id).await?;
    svc.revoked.revoke_token(tenant, &claims.token_id);
    let device_id = device.clone();
    let (_, credentials) = issue(
        &svc,
        tenant,
        claims.subject.clone(),
        device_id,
        DEVICE_CAPABILITIES,
        DEVICE_TOKEN_LIFETIME_SECS,
        "device",
    )
    .await?;
    svc.db
        .audit(
            tenant,
            &actor(&token),
            "device.enroll",
            device.as_str(),
            "ok",
        )
        .await?;
    Ok(axum::Json(Credentials {
        device: device.as_str().to_owned(),
        token: credentials,
        secret: Some(hex::encode(*secret)),
        user: Some(claims.subject.as_str().to_owned()),
        escrow_public_key: Some(hex::encode(svc.escrow.0.public().to_bytes())),
    })
    .into_response())
}

/// Exchanges a device's secret for a fresh access token. A wrong or missing secret, an unknown
/// device, a pending one: the same 401. A deauthorized device: 410, so that the agent removes
/// its key.
/// The agent version a request reports: its `User-Agent` if that is `cairn-agent/VERSION`
/// (printable, at most 64 bytes); anything else is not recorded.
pub(super) fn agent_version(headers: &axum::http::HeaderMap) -> Option<String> {
    let ua = headers.get(header::USER_AGENT)?.to_str().ok()?;
    let version = ua.strip_prefix("cairn-agent/")?;
    (!version.is_empty()
        && version.len() <= 64
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b)))
    .then(|| version.to_owned())
}

pub(super) async fn refresh(
    Extension(svc): Svc,
    Path((tenant, device)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
) -> Result<Response, ApiError> {
    use subtle::ConstantTimeEq;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Device "))
        .and_then(|h| {
            let mut s = zeroize::Zeroizing::new([0u8; 32]);
            hex::decode_to_slice(h, &mut *s).ok().map(|()| s)
        });
    let fail = || {
        svc.metrics.auth_failures.fetch_add(1, Ordering::Relaxed);
        ApiError::Unauthorized
    };
    let (Some(presented), Ok(tenant_id), Ok(device_id)) =
        (presented, TenantId::new(&tenant), DeviceId::new(&device))
    else {
        return Err(fail());
    };
    let Some(row) = svc.db.device(&tenant_id, &device_id).await? else {
        return Err(fail());
    };
    let Some(stored) = &row.secret_hash else {
        return Err(fail());
    };
    // Constant time; a stored hash of another length compares unequal.
    let hash = blake3::hash(&*presented);
    if !bool::from(hash.as_bytes()[..].ct_eq(stored.as_slice())) {
        return Err(fail());
    }
    if row.state == DeviceState::Deauthorized {
        return Err(ApiError::DeviceDeauthorized);
    }
    if row.state != DeviceState::Active {
        return Err(fail());
    }
    // A suspended user's devices get no new token (a removed user's are deauthorized).
    if svc.revoked.is_user_inactive(&tenant_id, &row.user) {
        return Err(fail());
    }
    // Each refresh is a new token: without this budget, refreshing would be a way around
    // every per-principal limit, and a cheap way to make the server sign.
    if let Some(secs) = svc.limits.refresh(&tenant, &device) {
        return Err(ApiError::TooMany(secs));
    }
    let (_, token) = issue(
        &svc,
        &tenant_id,
        row.user,
        device_id.clone(),
        DEVICE_CAPABILITIES,
        DEVICE_TOKEN_LIFETIME_SECS,
        "refresh",
    )
    .await?;
    svc.db
        .touch_device(&tenant_id, &device_id, agent_version(&headers).as_deref())
        .await?;
    Ok(axum::Json(Credentials {
        device,
        token,
        secret: None,
        user: None,
        escrow_public_key: None,
    })
    .into_response())
}

/// Deauthorizes a device: its tokens stop working, and its next call is told to remove its key.
pub(super) async fn deauthorize(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, device)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    admin_scope(&token)?;
    let tenant = tenant_of(&token);
    let device = DeviceId::new(&device).map_err(|_| ApiError::NotFound)?;
    let row = svc
        .db
        .device(tenant, &device)
        .await?
        .ok_or(ApiError::NotFound)?;
    if row.state == DeviceState::Deauthorized
        || !svc
            .db
            .set_device_state(tenant, &device, row.state, DeviceState::Deauthorized)
            .await?
    {
        return Err(ApiError::Conflict);
    }
    svc.revoked.deauthorize(tenant, &device);
    svc.db
        .audit(
            tenant,
            &actor(&token),
            "device.deauthorize",
            device.as_str(),
            "ok",
        )
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
