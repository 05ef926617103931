//! The tenant's audit log.

use cairn_token::TenantId;

use super::{Db, DbError, col};

/// One entry of a tenant's audit log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRow {
    /// When (Unix seconds).
    pub at_unix: i64,
    /// Who (the token's user).
    pub actor: String,
    /// What.
    pub action: String,
    /// On what.
    pub target: String,
    /// How it ended.
    pub outcome: String,
}

impl Db {
    /// Appends to the audit log.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn audit(
        &self,
        tenant: &TenantId,
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO audit (tenant, actor, action, target, outcome, at_unix)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(tenant.as_str())
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(outcome)
        .bind(self.unix_now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The tenant's audit log with times, oldest first.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn audit_entries(&self, tenant: &TenantId) -> Result<Vec<AuditRow>, DbError> {
        let rows = sqlx::query(
            "SELECT at_unix, actor, action, target, outcome FROM audit
              WHERE tenant = $1 ORDER BY id",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(AuditRow {
                    at_unix: col(&r, 0)?,
                    actor: col(&r, 1)?,
                    action: col(&r, 2)?,
                    target: col(&r, 3)?,
                    outcome: col(&r, 4)?,
                })
            })
            .collect()
    }

    /// The tenant's audit log, oldest first: (actor, action, target, outcome).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn audit_log(
        &self,
        tenant: &TenantId,
    ) -> Result<Vec<(String, String, String, String)>, DbError> {
        let rows = sqlx::query(
            "SELECT actor, action, target, outcome FROM audit WHERE tenant = $1 ORDER BY id",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| Ok((col(&r, 0)?, col(&r, 1)?, col(&r, 2)?, col(&r, 3)?)))
            .collect()
    }
}
