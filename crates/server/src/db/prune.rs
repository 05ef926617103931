//! Prune's rows (`docs/design/0009-retention-and-prune.md` §5.4, §6): snapshots forgotten, and
//! the marks on blocks no kept snapshot reaches.

use std::collections::HashMap;

use cairn_token::{TenantId, UserId};

use super::{Db, DbError, col};
use crate::prune::PruneOptions;

/// Rows written per transaction.
const BATCH: usize = 5_000;

/// Rows per statement (each a multi-row `INSERT` or an `IN` list): few statements, under every
/// engine's limit on parameters.
const ROWS: usize = 200;

impl Db {
    /// The operator's prune settings (grace period, live threshold): the defaults until set.
    ///
    /// # Errors
    /// [`DbError`], or a stored value that does not parse ([`DbError::Invalid`]).
    pub async fn prune_options(&self) -> Result<PruneOptions, DbError> {
        self.operator_setting("prune", "prune settings")
            .await
            .map(Option::unwrap_or_default)
    }

    /// Sets the operator's prune settings.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn set_prune_options(&self, options: &PruneOptions) -> Result<(), DbError> {
        self.set_operator_setting("prune", options, "prune settings")
            .await
    }

    /// Claims the scheduled prune due at `now` for this instance: `true` if the last run
    /// (recorded in `operator_settings`) was at least `every_secs` ago and this call moved it
    /// to `now` (one instance wins; the others see the new time). The first call on a new
    /// database records `now` and claims nothing, so the first run is one interval later.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn claim_scheduled_prune(&self, now: i64, every_secs: i64) -> Result<bool, DbError> {
        let inserted = sqlx::query(
            "INSERT INTO operator_settings (name, value, changed_unix)
             VALUES ('prune_last_run', $1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(now.to_string())
        .bind(now)
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() == 1 {
            return Ok(false);
        }
        let claimed = sqlx::query(
            "UPDATE operator_settings SET value = $1, changed_unix = $2
              WHERE name = 'prune_last_run' AND changed_unix <= $3",
        )
        .bind(now.to_string())
        .bind(now)
        .bind(now.saturating_sub(every_secs))
        .execute(&self.pool)
        .await?;
        Ok(claimed.rows_affected() == 1)
    }

    /// Every archive, by tenant and user.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn all_archives(&self) -> Result<Vec<(TenantId, UserId)>, DbError> {
        let rows = sqlx::query("SELECT tenant, user_id FROM archives ORDER BY tenant, user_id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .filter_map(|r| {
                let (t, u): (String, String) = match (col(r, 0), col(r, 1)) {
                    (Ok(t), Ok(u)) => (t, u),
                    (Err(e), _) | (_, Err(e)) => return Some(Err(e)),
                };
                Some(Ok((TenantId::new(&t).ok()?, UserId::new(&u).ok()?)))
            })
            .collect()
    }

    /// Marks snapshots (hex ids) forgotten at `now`; one already forgotten keeps its time.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn forget_snapshots(
        &self,
        tenant: &TenantId,
        user: &UserId,
        ids: &[String],
        now: i64,
    ) -> Result<(), DbError> {
        for batch in ids.chunks(BATCH) {
            let mut tx = self.pool.begin().await?;
            for id in batch {
                sqlx::query(
                    "UPDATE snapshots SET forgotten_unix = $1
                      WHERE tenant = $2 AND user_id = $3 AND id = $4 AND forgotten_unix IS NULL",
                )
                .bind(now)
                .bind(tenant.as_str())
                .bind(user.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// The archive's marks: block id (hex) to when it was marked.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn prune_marks(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<HashMap<String, i64>, DbError> {
        let rows = sqlx::query(
            "SELECT id, marked_unix FROM prune_marks WHERE tenant = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok((col(r, 0)?, col(r, 1)?))).collect()
    }

    /// Whether the archive has any mark (one cheap query before [`Db::prune_marks`]).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn has_prune_marks(&self, tenant: &TenantId, user: &UserId) -> Result<bool, DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FROM (SELECT 1 FROM prune_marks
              WHERE tenant = $1 AND user_id = $2 LIMIT 1) AS one",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(col::<i64>(&row, 0)? > 0)
    }

    /// Marks blocks (hex id, bytes) at `now`; a block already marked keeps its time. Rows go
    /// in 200 a statement, 5,000 a transaction.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn add_prune_marks(
        &self,
        tenant: &TenantId,
        user: &UserId,
        marks: &[(String, i64)],
        now: i64,
    ) -> Result<(), DbError> {
        for batch in marks.chunks(BATCH) {
            let mut tx = self.pool.begin().await?;
            for rows in batch.chunks(ROWS) {
                let values: Vec<String> = (0..rows.len())
                    .map(|i| {
                        let p = 2 * i + 4;
                        format!("($1, $2, ${p}, $3, ${})", p + 1)
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO prune_marks (tenant, user_id, id, marked_unix, bytes)
                     VALUES {} ON CONFLICT (tenant, user_id, id) DO NOTHING",
                    values.join(", ")
                );
                let mut q = sqlx::query(&sql)
                    .bind(tenant.as_str())
                    .bind(user.as_str())
                    .bind(now);
                for (id, bytes) in rows {
                    q = q.bind(id).bind(bytes);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }

    /// Removes the marks of these blocks (hex ids): referenced again, uploaded again, or
    /// elided. 200 ids a statement, 5,000 a transaction.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn clear_prune_marks(
        &self,
        tenant: &TenantId,
        user: &UserId,
        ids: &[String],
    ) -> Result<(), DbError> {
        for batch in ids.chunks(BATCH) {
            let mut tx = self.pool.begin().await?;
            for rows in batch.chunks(ROWS) {
                let list: Vec<String> = (0..rows.len()).map(|i| format!("${}", i + 3)).collect();
                let sql = format!(
                    "DELETE FROM prune_marks WHERE tenant = $1 AND user_id = $2 AND id IN ({})",
                    list.join(", ")
                );
                let mut q = sqlx::query(&sql).bind(tenant.as_str()).bind(user.as_str());
                for id in rows {
                    q = q.bind(id);
                }
                q.execute(&mut *tx).await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}
