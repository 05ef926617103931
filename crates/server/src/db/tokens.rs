//! Tokens as issued: the id, whose, what for, until when. Never the token itself: a row lets an
//! admin find a token to revoke, not use one.

use cairn_token::{DeviceId, TenantId, TokenId, UserId};

use super::{Db, DbError, col, id_col, opt_id_col};

/// How long a row stays after its token expired (seconds): long enough to answer "what was
/// this id" in an investigation, short enough that refreshes do not pile up.
const KEEP_EXPIRED_SECS: i64 = 7 * 86_400;

/// One token as issued.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IssuedRow {
    /// The token id (`jti`): what `…/tokens/{id}/revoke` takes.
    pub id: TokenId,
    /// Whose.
    pub subject: UserId,
    /// The device, for a device's token.
    pub device: Option<DeviceId>,
    /// The role (`user`, `admin`).
    pub role: String,
    /// Its capabilities, comma-separated (`backup:put,backup:read`).
    pub capabilities: String,
    /// What issued it: `enrollment` (a device's one-use enrollment token), `device` (the
    /// token an enrollment gives), `refresh` (a device's refresh by its secret), `bootstrap`
    /// (the first admin's), `cli` (`server token`).
    pub purpose: String,
    /// When (Unix seconds).
    pub issued_unix: i64,
    /// Until when.
    pub expires_unix: i64,
    /// Whether it was revoked.
    pub revoked: bool,
}

impl IssuedRow {
    /// The row for a token issued for `request` with id `id` at `now`.
    #[must_use]
    pub fn of(
        request: &cairn_token::TokenRequest,
        id: TokenId,
        now: cairn_token::Timestamp,
        purpose: &str,
    ) -> Self {
        Self {
            id,
            subject: request.subject.clone(),
            device: request.device.clone(),
            role: request.role.as_str().to_owned(),
            capabilities: request
                .capabilities
                .iter()
                .map(cairn_token::Capability::as_str)
                .collect::<Vec<_>>()
                .join(","),
            purpose: purpose.to_owned(),
            issued_unix: now.unix(),
            expires_unix: now.unix().saturating_add(request.lifetime_secs),
            revoked: false,
        }
    }
}

impl Db {
    /// Records a token as issued (and forgets the tenant's rows expired a week).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn record_issued(&self, tenant: &TenantId, row: &IssuedRow) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO issued_tokens (tenant, token_id, subject, device, role, capabilities,
                                        purpose, issued_unix, expires_unix)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (tenant, token_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(row.id.as_str())
        .bind(row.subject.as_str())
        .bind(row.device.as_ref().map(DeviceId::as_str))
        .bind(&row.role)
        .bind(&row.capabilities)
        .bind(&row.purpose)
        .bind(row.issued_unix)
        .bind(row.expires_unix)
        .execute(&self.pool)
        .await?;
        sqlx::query("DELETE FROM issued_tokens WHERE tenant = $1 AND expires_unix < $2")
            .bind(tenant.as_str())
            .bind(self.unix_now().saturating_sub(KEEP_EXPIRED_SECS))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The tenant's tokens that have not expired, newest first, each with whether it was
    /// revoked.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn issued_tokens(&self, tenant: &TenantId) -> Result<Vec<IssuedRow>, DbError> {
        let rows = sqlx::query(
            "SELECT i.token_id, i.subject, i.device, i.role, i.capabilities, i.purpose,
                    i.issued_unix, i.expires_unix, r.token_id
               FROM issued_tokens i
               LEFT JOIN revoked_tokens r ON r.tenant = i.tenant AND r.token_id = i.token_id
              WHERE i.tenant = $1 AND i.expires_unix > $2
              ORDER BY i.issued_unix DESC, i.token_id",
        )
        .bind(tenant.as_str())
        .bind(self.unix_now())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(IssuedRow {
                    id: id_col(r, 0, "token id")?,
                    subject: id_col(r, 1, "user id")?,
                    device: opt_id_col(r, 2, "device id")?,
                    role: col(r, 3)?,
                    capabilities: col(r, 4)?,
                    purpose: col(r, 5)?,
                    issued_unix: col(r, 6)?,
                    expires_unix: col(r, 7)?,
                    revoked: col::<Option<String>>(r, 8)?.is_some(),
                })
            })
            .collect()
    }
}
