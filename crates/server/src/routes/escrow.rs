//! Escrowed keys: deposit and audited recovery.

use axum::Extension;
use axum::body::Bytes;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use cairn_token::Capability::{EscrowDeposit, EscrowRecover};
use cairn_token::Role;

use super::state::{ApiError, Svc, Token, actor, binary, internal, tenant_of, user_scope};
use crate::keystore::{self, KeystoreError};

impl From<KeystoreError> for ApiError {
    fn from(e: KeystoreError) -> Self {
        match e {
            KeystoreError::Invalid => Self::BadRequest,
            KeystoreError::Downgrade => Self::Forbidden,
            KeystoreError::NotFound => Self::NotFound,
            KeystoreError::NotRecoverable => Self::Conflict,
            other => internal("keystore", &other),
        }
    }
}

pub(super) async fn deposit(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = user_scope(&svc, &token, &user, EscrowDeposit).await?;
    let done = keystore::deposit(&svc.db, tenant_of(&token), &user, &actor(&token), &body).await?;
    Ok(axum::Json(done).into_response())
}

/// Recovery: an administrator with the recover capability, for a user of their tenant; the
/// body is the 32-byte X25519 public key the recovered key is re-wrapped to.
pub(super) async fn recover(
    Extension(token): Token,
    Extension(svc): Svc,
    Path((_, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if token.claims().role != Role::Admin {
        return Err(ApiError::Forbidden);
    }
    let user = user_scope(&svc, &token, &user, EscrowRecover).await?;
    let envelope = keystore::recover(
        &svc.db,
        &svc.escrow,
        tenant_of(&token),
        &user,
        &actor(&token),
        &body,
    )
    .await?;
    Ok(binary("application/octet-stream", envelope))
}
