//! Devices: registered, enrolled with a secret, seen, deauthorized.

use cairn_token::{DeviceId, TenantId, UserId};

use super::{Db, DbError, col, id_col};

/// Where a device is in its life: registered and waiting for its enrollment, enrolled, or
/// deauthorized (its credentials refused for good).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    /// Registered; its enrollment token not used yet.
    Pending,
    /// Enrolled: its secret and tokens are accepted.
    Active,
    /// Deauthorized: refused for good.
    Deauthorized,
}

impl DeviceState {
    /// The name the database and the API use.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Deauthorized => "deauthorized",
        }
    }

    /// The state of a name; `None` for anything else.
    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "active" => Some(Self::Active),
            "deauthorized" => Some(Self::Deauthorized),
            _ => None,
        }
    }
}

/// A device row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeviceRow {
    /// The device id (32 lowercase hex digits: the 16-byte id its event batches carry).
    pub id: DeviceId,
    /// Its user.
    pub user: UserId,
    /// A name for people.
    pub name: String,
    /// Where it is in its life.
    pub state: DeviceState,
    /// The enrollment token's id, while pending.
    #[serde(skip)]
    pub enrollment_jti: Option<String>,
    /// BLAKE3 of the device secret, once enrolled.
    #[serde(skip)]
    pub secret_hash: Option<Vec<u8>>,
    /// When it last called the server with its own credentials (Unix seconds).
    pub last_seen_unix: Option<i64>,
    /// The agent version it last reported (its `User-Agent`).
    pub agent_version: Option<String>,
    /// When it last stored a snapshot record (Unix seconds).
    pub last_backup_unix: Option<i64>,
    /// What its user's archive holds (bytes, as uploaded).
    pub archive_bytes: Option<i64>,
}

fn device_row(r: sqlx::any::AnyRow) -> Result<DeviceRow, DbError> {
    Ok(DeviceRow {
        id: id_col(&r, 0, "device id")?,
        user: id_col(&r, 1, "user id")?,
        name: col(&r, 2)?,
        state: DeviceState::parse(&col::<String>(&r, 3)?)
            .ok_or(DbError::Invalid("device state"))?,
        enrollment_jti: col(&r, 4)?,
        secret_hash: col(&r, 5)?,
        last_seen_unix: col(&r, 6)?,
        agent_version: col(&r, 7)?,
        last_backup_unix: col(&r, 8)?,
        archive_bytes: col(&r, 9)?,
    })
}

impl Db {
    /// Adds a pending device with its enrollment token's id.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn add_device(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        user: &UserId,
        name: &str,
        enrollment_jti: &str,
    ) -> Result<(), DbError> {
        let now = self.unix_now();
        sqlx::query(
            "INSERT INTO devices (tenant, id, user_id, name, state, enrollment_jti,
                                  created_unix, changed_unix)
             VALUES ($1, $2, $3, $4, 'pending', $5, $6, $6)",
        )
        .bind(tenant.as_str())
        .bind(device.as_str())
        .bind(user.as_str())
        .bind(name)
        .bind(enrollment_jti)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The device, if it exists.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn device(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Option<DeviceRow>, DbError> {
        let row = sqlx::query(
            "SELECT d.id, d.user_id, d.name, d.state, d.enrollment_jti, d.secret_hash,
                    d.last_seen_unix, d.agent_version, d.last_backup_unix, a.stored_bytes
               FROM devices d
               LEFT JOIN archives a ON a.tenant = d.tenant AND a.user_id = d.user_id
              WHERE d.tenant = $1 AND d.id = $2",
        )
        .bind(tenant.as_str())
        .bind(device.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(device_row).transpose()
    }

    /// Every device of the tenant.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn devices(&self, tenant: &TenantId) -> Result<Vec<DeviceRow>, DbError> {
        let rows = sqlx::query(
            "SELECT d.id, d.user_id, d.name, d.state, d.enrollment_jti, d.secret_hash,
                    d.last_seen_unix, d.agent_version, d.last_backup_unix, a.stored_bytes
               FROM devices d
               LEFT JOIN archives a ON a.tenant = d.tenant AND a.user_id = d.user_id
              WHERE d.tenant = $1 ORDER BY d.id",
        )
        .bind(tenant.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(device_row).collect()
    }

    /// Moves a device from `from` to `to`; `false` if it was not in state `from`.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn set_device_state(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        from: DeviceState,
        to: DeviceState,
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE devices SET state = $1, enrollment_jti = NULL, changed_unix = $2
             WHERE tenant = $3 AND id = $4 AND state = $5",
        )
        .bind(to.as_str())
        .bind(self.unix_now())
        .bind(tenant.as_str())
        .bind(device.as_str())
        .bind(from.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Activates a pending device (once) and records the hash of its secret.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn activate_device(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        secret_hash: &[u8; 32],
    ) -> Result<bool, DbError> {
        let done = sqlx::query(
            "UPDATE devices SET state = 'active', enrollment_jti = NULL, secret_hash = $1,
                                changed_unix = $2
             WHERE tenant = $3 AND id = $4 AND state = 'pending'",
        )
        .bind(&secret_hash[..])
        .bind(self.unix_now())
        .bind(tenant.as_str())
        .bind(device.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Every deauthorized device, as (tenant, device).
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn deauthorized_devices(&self) -> Result<Vec<(TenantId, DeviceId)>, DbError> {
        let rows = sqlx::query("SELECT tenant, id FROM devices WHERE state = 'deauthorized'")
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| Ok((id_col(&r, 0, "tenant id")?, id_col(&r, 1, "device id")?)))
            .collect()
    }

    /// Records that the device called with its own credentials now, and (if it said) its agent
    /// version.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn touch_device(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
        agent_version: Option<&str>,
    ) -> Result<(), DbError> {
        // At most one write a minute per device when nothing else changes: event ingest calls
        // this for every batch.
        let now = self.unix_now();
        sqlx::query(
            "UPDATE devices SET last_seen_unix = $1,
                                agent_version = COALESCE($2, agent_version)
              WHERE tenant = $3 AND id = $4
                AND (last_seen_unix IS NULL OR last_seen_unix < $5
                     OR ($2 IS NOT NULL AND (agent_version IS NULL OR agent_version <> $2)))",
        )
        .bind(now)
        .bind(agent_version)
        .bind(tenant.as_str())
        .bind(device.as_str())
        .bind(now - 60)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
