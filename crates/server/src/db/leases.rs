//! Archive leases: which server instance may write a user's archive now (shared mode), and
//! the PostgreSQL notifications of leases given back.

use cairn_token::{TenantId, UserId};

use super::{Db, DbError, Engine, col};

/// The PostgreSQL notification channel of released leases (payload `tenant/user`).
const LEASE_RELEASED: &str = "cairn_lease_released";

/// Leases given back by any instance ([`Db::lease_releases`]).
pub(crate) struct LeaseReleases(#[cfg(feature = "postgres")] sqlx::postgres::PgListener);

impl std::fmt::Debug for LeaseReleases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeaseReleases").finish_non_exhaustive()
    }
}

impl LeaseReleases {
    /// Waits for the next lease given back, of any archive (waiters then try again). The
    /// connection is made again if it drops (releases meanwhile are missed: waiters also wake
    /// at the lease's expiry).
    ///
    /// # Errors
    /// [`DbError`] if it cannot be made again.
    #[cfg(feature = "postgres")]
    pub(crate) async fn next(&mut self) -> Result<(), DbError> {
        self.0.recv().await?;
        Ok(())
    }

    /// Without PostgreSQL support there is no listener to wait on.
    ///
    /// # Errors
    /// Never: it waits forever.
    #[cfg(not(feature = "postgres"))]
    pub(crate) async fn next(&mut self) -> Result<(), DbError> {
        std::future::pending().await
    }
}

impl Db {
    /// Takes (or renews) the lease on a user's archive for `holder` until `expires_unix_ms`:
    /// `Some(epoch)` if it is now `holder`'s, `None` if another holder's lease has not expired.
    /// The epoch moves each time the lease changes hands, never when its holder renews it.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn take_lease(
        &self,
        tenant: &TenantId,
        user: &UserId,
        holder: &str,
        now_unix_ms: i64,
        expires_unix_ms: i64,
    ) -> Result<Option<i64>, DbError> {
        let fresh = sqlx::query(
            "INSERT INTO archive_leases (tenant, user_id, holder, epoch, expires_unix_ms)
             VALUES ($1, $2, $3, 1, $4) ON CONFLICT (tenant, user_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(holder)
        .bind(expires_unix_ms)
        .execute(&self.pool)
        .await?;
        if fresh.rows_affected() == 1 {
            return Ok(Some(1));
        }
        // One statement, so that two instances can never both take it: the row is theirs only
        // if it was already theirs or its holder's time had run out.
        let taken: Option<i64> = sqlx::query_scalar(
            "UPDATE archive_leases
                SET epoch = CASE WHEN holder = $3 THEN epoch ELSE epoch + 1 END,
                    holder = $3, expires_unix_ms = $4
              WHERE tenant = $1 AND user_id = $2 AND (holder = $3 OR expires_unix_ms <= $5)
             RETURNING epoch",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(holder)
        .bind(expires_unix_ms)
        .bind(now_unix_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(taken)
    }

    /// Ends `holder`'s lease at `epoch` now (another instance may take it at once); the epoch
    /// stays, so the same holder taking it back next finds its archive still current.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn release_lease(
        &self,
        tenant: &TenantId,
        user: &UserId,
        holder: &str,
        epoch: i64,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE archive_leases SET expires_unix_ms = 0
              WHERE tenant = $1 AND user_id = $2 AND holder = $3 AND epoch = $4",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(holder)
        .bind(epoch)
        .execute(&self.pool)
        .await?;
        if self.engine == Engine::Postgres {
            // Instances waiting for it take it now rather than at its expiry
            // (`Db::lease_releases`).
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(LEASE_RELEASED)
                .bind(format!("{tenant}/{user}"))
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// When the archive's current lease expires (Unix ms), if it has ever been leased.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn lease_expiry(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<i64>, DbError> {
        let expires: Option<i64> = sqlx::query_scalar(
            "SELECT expires_unix_ms FROM archive_leases WHERE tenant = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(expires)
    }

    /// On PostgreSQL, a connection that hears every lease given back by any instance
    /// ([`Db::release_lease`]); `None` on SQLite, where a waiting instance waits for the lease's
    /// expiry or a release by its own process.
    ///
    /// # Errors
    /// [`DbError`] if the listening connection cannot be made.
    #[cfg(feature = "postgres")]
    pub(crate) async fn lease_releases(&self) -> Result<Option<LeaseReleases>, DbError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect(url).await?;
        listener.listen(LEASE_RELEASED).await?;
        Ok(Some(LeaseReleases(listener)))
    }

    /// Without PostgreSQL support, never a listener.
    ///
    /// # Errors
    /// Never.
    #[cfg(not(feature = "postgres"))]
    pub(crate) async fn lease_releases(&self) -> Result<Option<LeaseReleases>, DbError> {
        Ok(None)
    }

    /// The lease's holder and epoch, if the archive has ever been leased.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn lease(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<(String, i64)>, DbError> {
        let row = sqlx::query(
            "SELECT holder, epoch FROM archive_leases WHERE tenant = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((col(&r, 0)?, col(&r, 1)?))).transpose()
    }
}
