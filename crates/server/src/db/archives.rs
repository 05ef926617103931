//! Each user's archive: its id, the witness of acknowledged commits, damage marks, snapshot
//! arrivals and the bytes it holds.

use cairn_token::{DeviceId, TenantId, UserId};

use super::{Db, DbError, col, opt_id_col};

/// Why an archive is marked damaged ([`Db::damage`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Damage {
    /// When the server found it (Unix seconds).
    pub since_unix: i64,
    /// Acknowledged data records found missing, over every opening that found some.
    pub lost_records: i64,
    /// What was found, for the operator.
    pub detail: String,
}

/// One snapshot record as the server saw it arrive.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotRow {
    /// Its id (64 hex digits).
    pub id: String,
    /// The device whose token stored it.
    pub device: Option<DeviceId>,
    /// The sealed record's size.
    pub bytes: i64,
    /// When it arrived (Unix seconds).
    pub received_unix: i64,
    /// When prune forgot it (Unix seconds): no longer listed, its blocks no longer kept for it.
    pub forgotten_unix: Option<i64>,
    /// Its place among the archive's arrivals (0 for a row made before they were counted).
    pub received_seq: i64,
}

impl Db {
    /// The user's archive id, made (16 random bytes) on first use.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn archive_id(&self, tenant: &TenantId, user: &UserId) -> Result<[u8; 16], DbError> {
        let mut fresh = [0u8; 16];
        getrandom::fill(&mut fresh).map_err(|_| DbError::Invalid("random source"))?;
        sqlx::query(
            "INSERT INTO archives (tenant, user_id, archive_id) VALUES ($1, $2, $3)
             ON CONFLICT (tenant, user_id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(&fresh[..])
        .execute(&self.pool)
        .await?;
        let row = sqlx::query("SELECT archive_id FROM archives WHERE tenant = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .fetch_one(&self.pool)
            .await?;
        let id: Vec<u8> = col(&row, 0)?;
        <[u8; 16]>::try_from(id.as_slice()).map_err(|_| DbError::Invalid("archive id"))
    }

    /// Records that the user's archive acknowledged a commit leaving `records` data records
    /// and chain head `chain` (the witness an opening is checked against). Never moves the
    /// witness back: a slower instance's older commit changes nothing.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn acknowledge(
        &self,
        tenant: &TenantId,
        user: &UserId,
        records: i64,
        chain: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE archives SET acked_records = $1, acked_chain = $2
              WHERE tenant = $3 AND user_id = $4 AND acked_records <= $1",
        )
        .bind(records)
        .bind(chain)
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// What the user's archive acknowledged last: data records and chain head (none before the
    /// first acknowledged commit).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn witness(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<(i64, Option<String>)>, DbError> {
        let row = sqlx::query(
            "SELECT acked_records, acked_chain FROM archives WHERE tenant = $1 AND user_id = $2",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((col(&r, 0)?, col(&r, 1)?))).transpose()
    }

    /// Marks the user's archive damaged: `lost` more acknowledged records are gone, for the
    /// reason `detail`; the witness becomes what the archive holds now (`records`, `chain`), so
    /// that later commits are checked from there. The mark stays until
    /// [`Db::clear_damage`].
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn mark_damaged(
        &self,
        tenant: &TenantId,
        user: &UserId,
        lost: i64,
        detail: &str,
        records: i64,
        chain: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "UPDATE archives SET lost_records = lost_records + $1, damaged_unix = $2, damage = $3,
                                 acked_records = $4, acked_chain = $5
              WHERE tenant = $6 AND user_id = $7",
        )
        .bind(lost)
        .bind(self.unix_now())
        .bind(detail)
        .bind(records)
        .bind(chain)
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The user's archive's health: `None` for an archive never found damaged (or not made).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn damage(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<Damage>, DbError> {
        let row = sqlx::query(
            "SELECT damaged_unix, lost_records, damage FROM archives
              WHERE tenant = $1 AND user_id = $2 AND damaged_unix IS NOT NULL",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Damage {
                since_unix: col(&r, 0)?,
                lost_records: col(&r, 1)?,
                detail: col::<Option<String>>(&r, 2)?.unwrap_or_default(),
            })
        })
        .transpose()
    }

    /// Archives marked damaged, over every tenant.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn damaged_archives(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) FROM archives WHERE damaged_unix IS NOT NULL")
            .fetch_one(&self.pool)
            .await?;
        col(&row, 0)
    }

    /// Clears the damage mark of the user's archive (an operator looked into it); `false` if
    /// it had none. The lost-record count stays, as history.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn clear_damage(&self, tenant: &TenantId, user: &UserId) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE archives SET damaged_unix = NULL, damage = NULL
              WHERE tenant = $1 AND user_id = $2 AND damaged_unix IS NOT NULL",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a snapshot record's arrival (once per id; the device, if a device stored it,
    /// also gets its last backup time).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn record_snapshot(
        &self,
        tenant: &TenantId,
        user: &UserId,
        id: &str,
        device: Option<&DeviceId>,
        bytes: i64,
    ) -> Result<(), DbError> {
        let now = self.unix_now();
        sqlx::query(
            "INSERT INTO snapshots (tenant, user_id, id, device, bytes, received_unix, received_seq)
             VALUES ($1, $2, $3, $4, $5, $6,
                     (SELECT COALESCE(MAX(received_seq), 0) + 1 FROM snapshots
                       WHERE tenant = $1 AND user_id = $2))
             ON CONFLICT (tenant, user_id, id) DO NOTHING",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .bind(id)
        .bind(device.map(DeviceId::as_str))
        .bind(bytes)
        .bind(now)
        .execute(&self.pool)
        .await?;
        if let Some(device) = device {
            sqlx::query(
                "UPDATE devices SET last_backup_unix = $1, last_seen_unix = $1
                  WHERE tenant = $2 AND id = $3",
            )
            .bind(now)
            .bind(tenant.as_str())
            .bind(device.as_str())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// What was recorded of the user's snapshot records' arrivals, by id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn snapshot_rows(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Vec<SnapshotRow>, DbError> {
        let rows = sqlx::query(
            "SELECT id, device, bytes, received_unix, forgotten_unix, received_seq FROM snapshots
              WHERE tenant = $1 AND user_id = $2 ORDER BY received_unix, received_seq, id",
        )
        .bind(tenant.as_str())
        .bind(user.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                Ok(SnapshotRow {
                    id: col(&r, 0)?,
                    device: opt_id_col(&r, 1, "device id")?,
                    bytes: col(&r, 2)?,
                    received_unix: col(&r, 3)?,
                    forgotten_unix: col(&r, 4)?,
                    received_seq: col::<Option<i64>>(&r, 5)?.unwrap_or(0),
                })
            })
            .collect()
    }

    /// What the user's archive holds (bytes as uploaded), if it exists.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn stored_bytes(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<i64>, DbError> {
        sqlx::query("SELECT stored_bytes FROM archives WHERE tenant = $1 AND user_id = $2")
            .bind(tenant.as_str())
            .bind(user.as_str())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| col(&r, 0))
            .transpose()
    }
}
