//! Legal holds (`docs/design/0009-retention-and-prune.md` §7): placed on a user or one of their
//! devices, lifted, never deleted.

use cairn_token::{DeviceId, TenantId, UserId};

use super::{Db, DbError, col, id_col, opt_id_col};

/// One hold, in place or lifted.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HoldRow {
    /// Its id (32 hex digits).
    pub id: String,
    /// The user it covers.
    pub user: UserId,
    /// The one device it covers; `None`: every device of the user.
    pub device: Option<DeviceId>,
    /// Why (the matter, the ticket): what the admin wrote.
    pub reason: String,
    /// Who placed it.
    pub placed_by: String,
    /// When (Unix seconds).
    pub placed_unix: i64,
    /// Who lifted it, once lifted.
    pub lifted_by: Option<String>,
    /// When it was lifted.
    pub lifted_unix: Option<i64>,
}

impl HoldRow {
    /// Whether it is in place.
    #[must_use]
    pub fn active(&self) -> bool {
        self.lifted_unix.is_none()
    }

    /// What the audit log names: `user`, or `user/device`.
    #[must_use]
    pub fn target(&self) -> String {
        match &self.device {
            Some(d) => format!("{}/{}", self.user.as_str(), d.as_str()),
            None => self.user.as_str().to_owned(),
        }
    }

    /// Whether it covers the snapshots `device` stored (`None`: stored by no recorded device,
    /// which only a user-wide hold covers).
    #[must_use]
    pub fn covers(&self, device: Option<&DeviceId>) -> bool {
        self.active() && (self.device.is_none() || self.device.as_ref() == device)
    }
}

/// What lifting a hold did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifted {
    /// It was in place and is lifted now.
    Now,
    /// It had been lifted before.
    Already,
    /// No hold of that id in the tenant.
    Unknown,
}

const COLUMNS: &str = "id, user_id, device, reason, placed_by, placed_unix, lifted_by, lifted_unix";

fn hold_row(r: &sqlx::any::AnyRow) -> Result<HoldRow, DbError> {
    Ok(HoldRow {
        id: col(r, 0)?,
        user: id_col(r, 1, "user id")?,
        device: opt_id_col(r, 2, "device id")?,
        reason: col(r, 3)?,
        placed_by: col(r, 4)?,
        placed_unix: col(r, 5)?,
        lifted_by: col(r, 6)?,
        lifted_unix: col(r, 7)?,
    })
}

impl Db {
    /// Places a hold on `user` (every device) or on one of their devices.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn place_hold(
        &self,
        tenant: &TenantId,
        user: &UserId,
        device: Option<&DeviceId>,
        reason: &str,
        by: &str,
    ) -> Result<HoldRow, DbError> {
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| DbError::Invalid("random source"))?;
        let row = HoldRow {
            id: hex::encode(id),
            user: user.clone(),
            device: device.cloned(),
            reason: reason.to_owned(),
            placed_by: by.to_owned(),
            placed_unix: self.unix_now(),
            lifted_by: None,
            lifted_unix: None,
        };
        sqlx::query(
            "INSERT INTO holds (tenant, id, user_id, device, reason, placed_by, placed_unix)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(tenant.as_str())
        .bind(&row.id)
        .bind(user.as_str())
        .bind(device.map(DeviceId::as_str))
        .bind(reason)
        .bind(by)
        .bind(row.placed_unix)
        .execute(&self.pool)
        .await?;
        Ok(row)
    }

    /// The tenant's holds (or one user's), in place and lifted, newest first.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn holds(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
    ) -> Result<Vec<HoldRow>, DbError> {
        let rows =
            match user {
                Some(user) => {
                    sqlx::query(&format!(
                        "SELECT {COLUMNS} FROM holds WHERE tenant = $1 AND user_id = $2
                      ORDER BY placed_unix DESC, id"
                    ))
                    .bind(tenant.as_str())
                    .bind(user.as_str())
                    .fetch_all(&self.pool)
                    .await?
                }
                None => sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM holds WHERE tenant = $1 ORDER BY placed_unix DESC, id"
                ))
                .bind(tenant.as_str())
                .fetch_all(&self.pool)
                .await?,
            };
        rows.iter().map(hold_row).collect()
    }

    /// Lifts hold `id`; a hold is lifted once.
    ///
    /// # Errors
    /// [`DbError`].
    pub async fn lift_hold(
        &self,
        tenant: &TenantId,
        id: &str,
        by: &str,
    ) -> Result<(Lifted, Option<HoldRow>), DbError> {
        let lifted = sqlx::query(
            "UPDATE holds SET lifted_by = $1, lifted_unix = $2
              WHERE tenant = $3 AND id = $4 AND lifted_unix IS NULL",
        )
        .bind(by)
        .bind(self.unix_now())
        .bind(tenant.as_str())
        .bind(id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM holds WHERE tenant = $1 AND id = $2"
        ))
        .bind(tenant.as_str())
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(hold_row)
        .transpose()?;
        let outcome = match (lifted, &row) {
            (0, None) => Lifted::Unknown,
            (0, Some(_)) => Lifted::Already,
            _ => Lifted::Now,
        };
        Ok((outcome, row))
    }
}
