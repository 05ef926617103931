//! Tenants and their storage quotas: the charge for an append, made and given back atomically.

use cairn_token::{TenantId, UserId};

use super::{Db, DbError, col, id_col};

/// A tenant's storage quota and use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Quota {
    /// The most bytes the tenant may store.
    pub quota_bytes: i64,
    /// What it stores now.
    pub used_bytes: i64,
}

impl Db {
    /// Adds a tenant with a storage quota. Returns `false` if it exists.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn add_tenant(&self, tenant: &TenantId, quota_bytes: i64) -> Result<bool, DbError> {
        let done = sqlx::query(
            "INSERT INTO tenants (id, quota_bytes, created_unix) VALUES ($1, $2, $3)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(quota_bytes)
        .bind(self.unix_now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether the tenant exists.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn tenant_exists(&self, tenant: &TenantId) -> Result<bool, DbError> {
        Ok(sqlx::query("SELECT 1 FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }

    /// Sets a tenant's quota.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn set_quota(&self, tenant: &TenantId, quota_bytes: i64) -> Result<bool, DbError> {
        let done = sqlx::query("UPDATE tenants SET quota_bytes = $1 WHERE id = $2")
            .bind(quota_bytes)
            .bind(tenant.as_str())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The tenant's quota and use.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn quota(&self, tenant: &TenantId) -> Result<Option<Quota>, DbError> {
        let row = sqlx::query("SELECT quota_bytes, used_bytes FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Quota {
                quota_bytes: col(&r, 0)?,
                used_bytes: col(&r, 1)?,
            })
        })
        .transpose()
    }

    /// Every tenant's quota and use, by tenant id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn quotas(&self) -> Result<Vec<(TenantId, Quota)>, DbError> {
        let rows = sqlx::query("SELECT id, quota_bytes, used_bytes FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok((
                    id_col(&r, 0, "tenant id")?,
                    Quota {
                        quota_bytes: col(&r, 1)?,
                        used_bytes: col(&r, 2)?,
                    },
                ))
            })
            .collect()
    }

    /// Charges `bytes` to the tenant's quota and the user's stored total, in one transaction:
    /// `false` (and nothing charged) if that would pass the tenant's quota. The quota check is
    /// one atomic statement, so concurrent charges can never pass it together.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn reserve(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: i64,
    ) -> Result<bool, DbError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE tenants SET used_bytes = used_bytes + $1
             WHERE id = $2 AND used_bytes + $1 <= quota_bytes",
        )
        .bind(bytes)
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query(
            "UPDATE archives SET stored_bytes = stored_bytes + $1
             WHERE tenant = $2 AND user_id = $3",
        )
        .bind(bytes)
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Sets a user's stored total to `actual` (what their archive holds, counted when it is
    /// opened) and moves the tenant's total by the difference, in one transaction; returns the
    /// difference. A charge whose append a crash lost (the server killed between the two) is
    /// given back here.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn reconcile(
        &self,
        tenant: &TenantId,
        user: &UserId,
        actual: i64,
    ) -> Result<i64, DbError> {
        let mut tx = self.pool.begin().await?;
        let stored: Option<i64> =
            sqlx::query("SELECT stored_bytes FROM archives WHERE tenant = $1 AND user_id = $2")
                .bind(tenant.as_str())
                .bind(user.as_str())
                .fetch_optional(&mut *tx)
                .await?
                .map(|r| col(&r, 0))
                .transpose()?;
        let Some(stored) = stored else {
            return Ok(0);
        };
        let delta = actual - stored;
        if delta != 0 {
            sqlx::query("UPDATE archives SET stored_bytes = $1 WHERE tenant = $2 AND user_id = $3")
                .bind(actual)
                .bind(tenant.as_str())
                .bind(user.as_str())
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE tenants SET used_bytes = CASE WHEN used_bytes + $1 < 0 THEN 0 ELSE used_bytes + $1 END
                 WHERE id = $2",
            )
            .bind(delta)
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(delta)
    }

    /// Gives back a charge that was not used (the append failed).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn release(
        &self,
        tenant: &TenantId,
        user: &UserId,
        bytes: i64,
    ) -> Result<bool, DbError> {
        self.reserve(tenant, user, -bytes).await
    }
}
