//! The escrow keystore: each user's escrowed archive key (at most one record), with the
//! one-way security-mode rules enforced here, on the server (K-8): a mode is only ever
//! strengthened, and moving to a mode the server must not hold removes the escrowed copy in the
//! same transaction. Recovery is for administrators holding the recover capability, audited
//! whether it succeeds or not, and never hands out the key in the clear: the server unwraps the
//! escrow stanza and re-wraps the key to a public key the administrator supplies.

use cairn_escrow::{
    Envelope, EscrowAction, EscrowIdentity, EscrowPublicKey, EscrowRecipient, Mode, transition,
};

use cairn_token::{TenantId, UserId};

use crate::db::{Db, DbError, col};

/// Why a deposit or recovery was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// The body is not a valid envelope, or names another tenant or user than the path.
    #[error("invalid envelope")]
    Invalid,
    /// A weaker mode than the stored one (refused and audited).
    #[error("security mode downgrade refused")]
    Downgrade,
    /// Nothing escrowed for this user.
    #[error("not found")]
    NotFound,
    /// The stored mode is not one the server can recover from (archive password, custom key).
    #[error("the key is not recoverable by the server in this mode")]
    NotRecoverable,
    /// The escrow library failed (a stored envelope that does not open with the server's key).
    #[error("escrow: {0}")]
    Escrow(#[from] cairn_escrow::EscrowError),
    /// The database failed.
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<sqlx::Error> for KeystoreError {
    fn from(e: sqlx::Error) -> Self {
        Self::Db(DbError::Sql(e))
    }
}

/// What a deposit did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Deposited {
    /// The mode now in force (1 standard, 2 archive password, 3 custom key).
    pub mode: u8,
    /// Whether an envelope is now held (false in custom-key mode).
    pub escrowed: bool,
}

/// The stored mode and envelope of a user, if any.
///
/// # Errors
/// [`KeystoreError`].
pub(crate) async fn stored(
    db: &Db,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Option<(Mode, Option<Vec<u8>>)>, KeystoreError> {
    let row = sqlx::query("SELECT mode, envelope FROM escrow WHERE tenant = $1 AND user_id = $2")
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_optional(db.pool())
        .await?;
    row.map(|r| {
        let mode: i64 = col(&r, 0)?;
        let mode = u8::try_from(mode)
            .ok()
            .and_then(Mode::from_byte)
            .ok_or(KeystoreError::Db(DbError::Invalid("escrow mode")))?;
        Ok((mode, col(&r, 1)?))
    })
    .transpose()
}

/// Deposits `body` (an escrow envelope) for `tenant`/`user` on behalf of `actor`.
///
/// # Errors
/// [`KeystoreError`].
pub(crate) async fn deposit(
    db: &Db,
    tenant: &TenantId,
    user: &UserId,
    actor: &str,
    body: &[u8],
) -> Result<Deposited, KeystoreError> {
    let envelope = Envelope::parse(body).map_err(|_| KeystoreError::Invalid)?;
    let header = envelope.header();
    if header.tenant() != tenant.as_str() || header.user() != user.as_str() {
        return Err(KeystoreError::Invalid);
    }
    let to = header.mode();
    let mut tx = db.pool().begin().await?;
    let current: Option<i64> =
        sqlx::query("SELECT mode FROM escrow WHERE tenant = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| col(&r, 0))
            .transpose()?;
    let from = match current {
        Some(m) => u8::try_from(m)
            .ok()
            .and_then(Mode::from_byte)
            .ok_or(KeystoreError::Db(DbError::Invalid("escrow mode")))?,
        None => to,
    };
    let action = match transition(from, to) {
        Ok(a) => a,
        Err(_) => {
            drop(tx);
            db.audit(
                tenant,
                actor,
                "escrow.deposit",
                user.as_str(),
                "refused: downgrade",
            )
            .await?;
            return Err(KeystoreError::Downgrade);
        }
    };
    // Keep (same mode) replaces the envelope with the new wrap; Replace stores the new one
    // over the old; Delete stores none. Either way exactly one row remains.
    let envelope_bytes = match action {
        EscrowAction::Keep | EscrowAction::Replace if to.is_escrowed() => Some(envelope.to_bytes()),
        _ => None,
    };
    sqlx::query(
        "INSERT INTO escrow (tenant, user_id, mode, envelope, updated_unix)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (tenant, user_id)
         DO UPDATE SET mode = excluded.mode, envelope = excluded.envelope,
                       updated_unix = excluded.updated_unix",
    )
    .bind(tenant.as_str())
    .bind(user.as_str())
    .bind(i64::from(to.to_byte()))
    .bind(envelope_bytes.as_deref())
    .bind(db.unix_now())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    db.audit(tenant, actor, "escrow.deposit", user.as_str(), "ok")
        .await?;
    Ok(Deposited {
        mode: to.to_byte(),
        escrowed: envelope_bytes.is_some(),
    })
}

/// Recovers `tenant`/`user`'s key for `actor`: unwraps the escrowed copy with the server's
/// escrow identity and returns an envelope wrapping the key to `recipient` (32-byte X25519
/// public key) alone. Audited.
///
/// # Errors
/// [`KeystoreError`].
pub async fn recover(
    db: &Db,
    identity: &EscrowIdentity,
    tenant: &TenantId,
    user: &UserId,
    actor: &str,
    recipient: &[u8],
) -> Result<Vec<u8>, KeystoreError> {
    let outcome = recover_inner(db, identity, tenant, user, recipient).await;
    let note = match &outcome {
        Ok(_) => "ok",
        Err(KeystoreError::NotFound) => "refused: nothing escrowed",
        Err(KeystoreError::NotRecoverable) => "refused: mode is not recoverable",
        Err(KeystoreError::Invalid) => "refused: bad recipient",
        Err(_) => "failed",
    };
    db.audit(tenant, actor, "escrow.recover", user.as_str(), note)
        .await?;
    outcome
}

async fn recover_inner(
    db: &Db,
    identity: &EscrowIdentity,
    tenant: &TenantId,
    user: &UserId,
    recipient: &[u8],
) -> Result<Vec<u8>, KeystoreError> {
    let recipient = EscrowPublicKey::from_bytes(recipient).map_err(|_| KeystoreError::Invalid)?;
    let (mode, envelope) = stored(db, tenant, user)
        .await?
        .ok_or(KeystoreError::NotFound)?;
    if mode != Mode::Standard {
        return Err(KeystoreError::NotRecoverable);
    }
    let envelope = envelope.ok_or(KeystoreError::NotFound)?;
    let envelope = Envelope::parse(&envelope)?;
    let key = envelope.unwrap(&[identity])?;
    let rewrapped = Envelope::wrap(
        &key,
        envelope.header().clone(),
        &[&EscrowRecipient(recipient)],
    )?;
    Ok(rewrapped.to_bytes())
}
